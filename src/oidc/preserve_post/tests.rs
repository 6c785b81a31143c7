use super::*;
use http::header::{CACHE_CONTROL, ORIGIN};
use http_body_util::BodyExt;

fn ctx() -> RequestCtx {
    RequestCtx {
        scheme: "https",
        host: "app.example.com".into(),
        peer: "127.0.0.1".parse().unwrap(),
        trusted: false,
        forward_auth: None,
    }
}

fn head(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn fields_decode_in_order_with_repeats() {
    assert_eq!(
        fields("a=1&b=x+y&a=%C3%A9t%C3%A9&&empty=&bare&q=%3D%26%2B").unwrap(),
        pairs(&[
            ("a", "1"),
            ("b", "x y"),
            ("a", "été"),
            ("empty", ""),
            ("bare", ""),
            ("q", "=&+"),
        ])
    );
    assert_eq!(fields("").unwrap(), vec![]);
    // A '%' without two hex digits stays, as browsers' parsers keep it.
    assert_eq!(
        fields("p=100%&r=%zz&s=%4").unwrap(),
        pairs(&[("p", "100%"), ("r", "%zz"), ("s", "%4")])
    );
    assert_eq!(fields("n%3Dame=v=w").unwrap(), pairs(&[("n=ame", "v=w")]));
    // "%+1" is not a byte (from_str_radix would take the sign).
    assert_eq!(fields("x=%+1").unwrap(), pairs(&[("x", "% 1")]));
}

#[test]
fn fields_that_would_not_come_back_intact_are_refused() {
    assert_eq!(fields("a=%E9t%E9"), Err(NotKept::NotUtf8), "latin-1");
    assert_eq!(fields("a=%C3"), Err(NotKept::NotUtf8), "cut UTF-8");
    assert_eq!(fields("a=x%00y"), Err(NotKept::NotUtf8), "NUL");
    assert_eq!(
        decodable(Bytes::from_static(b"a=\xff")),
        Err(NotKept::NotUtf8)
    );
    assert_eq!(
        decodable(Bytes::from_static(b"a=caf\xc3\xa9")).as_deref(),
        Ok("a=café")
    );
}

#[test]
fn only_same_origin_url_encoded_utf8_forms_within_the_bound() {
    let form = ("content-type", "application/x-www-form-urlencoded");
    let same = ("sec-fetch-site", "same-origin");
    assert_eq!(check_head(&head(&[form, same]), &ctx()), Ok(()));
    for ok in [
        "application/x-www-form-urlencoded; charset=UTF-8",
        "Application/X-WWW-Form-Urlencoded;charset=\"utf-8\"",
    ] {
        let h = head(&[("content-type", ok), same]);
        assert_eq!(check_head(&h, &ctx()), Ok(()), "{ok}");
    }
    for (ct, why) in [
        ("multipart/form-data; boundary=x", NotKept::MediaType),
        ("application/json", NotKept::MediaType),
        ("text/plain", NotKept::MediaType),
        (
            "application/x-www-form-urlencoded; charset=ISO-8859-1",
            NotKept::NotUtf8,
        ),
    ] {
        let h = head(&[("content-type", ct), same]);
        assert_eq!(check_head(&h, &ctx()), Err(why), "{ct}");
    }
    assert_eq!(check_head(&head(&[same]), &ctx()), Err(NotKept::MediaType));
    let gzip = head(&[form, same, ("content-encoding", "gzip")]);
    assert_eq!(check_head(&gzip, &ctx()), Err(NotKept::MediaType));
    let large = head(&[form, same, ("content-length", "65537")]);
    assert_eq!(check_head(&large, &ctx()), Err(NotKept::TooLarge));
    let at_bound = head(&[form, same, ("content-length", "65536")]);
    assert_eq!(check_head(&at_bound, &ctx()), Ok(()));
}

#[test]
fn cross_origin_forms_are_not_kept() {
    let form = ("content-type", "application/x-www-form-urlencoded");
    for site in ["cross-site", "same-site", "none"] {
        let h = head(&[form, ("sec-fetch-site", site)]);
        assert_eq!(check_head(&h, &ctx()), Err(NotKept::CrossOrigin), "{site}");
    }
    // Sec-Fetch-Site decides when present, even beside a matching Origin.
    let h = head(&[
        form,
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://app.example.com"),
    ]);
    assert_eq!(check_head(&h, &ctx()), Err(NotKept::CrossOrigin));
    // Without it (older browsers), Origin must be the gateway's own.
    let h = head(&[form, (ORIGIN.as_str(), "https://app.example.com")]);
    assert_eq!(check_head(&h, &ctx()), Ok(()));
    for other in [
        "https://evil.example",
        "http://app.example.com",
        "https://app.example.com:8443",
        "null",
    ] {
        let h = head(&[form, (ORIGIN.as_str(), other)]);
        assert_eq!(check_head(&h, &ctx()), Err(NotKept::CrossOrigin), "{other}");
    }
    assert_eq!(
        check_head(&head(&[form]), &ctx()),
        Ok(()),
        "neither header: not a browser, so not a cross-site request a browser was made to send"
    );
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_page_resubmits_escaped_fields_under_a_nonce_csp() {
    let fields = pairs(&[
        ("title", "<script>alert(1)</script>"),
        ("q\"uote", "it's \"fine\" & <b>"),
        ("tag", "a"),
        ("tag", "b"),
        ("submit", "x"),
        ("text", "line 1\r\nline 2"),
    ]);
    let response = page("/app/save?x=1&y=\"2\"", &fields, "N0nce-_1");
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers().clone();
    assert_eq!(h[CACHE_CONTROL], "no-store");
    assert_eq!(h["referrer-policy"], "strict-origin");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'; "), "{csp}");
    assert!(csp.contains("script-src 'nonce-N0nce-_1'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-eval") && !csp.contains("script-src 'unsafe-inline'"));
    let html = text(response).await;
    assert!(
        html.contains("<form method=\"post\" action=\"/app/save?x=1&amp;y=&quot;2&quot;\">"),
        "{html}"
    );
    let inputs = [
        r#"<input type="hidden" name="title" value="&lt;script&gt;alert(1)&lt;/script&gt;">"#,
        r#"<input type="hidden" name="q&quot;uote" value="it&#39;s &quot;fine&quot; &amp; &lt;b&gt;">"#,
        r#"<input type="hidden" name="tag" value="a">"#,
        r#"<input type="hidden" name="tag" value="b">"#,
        r#"<input type="hidden" name="submit" value="x">"#,
        "<input type=\"hidden\" name=\"text\" value=\"line 1\r\nline 2\">",
    ];
    let mut at = 0;
    for input in inputs {
        let found = html[at..]
            .find(input)
            .unwrap_or_else(|| panic!("{input} in order in {html}"));
        at += found + input.len();
    }
    assert!(!html.contains("<script>alert"), "{html}");
    // One script, carrying the nonce, that does not rely on `form.submit` (shadowed by the
    // field named "submit").
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(html.contains(
        "<script nonce=\"N0nce-_1\">HTMLFormElement.prototype.submit.call(document.forms[0]);</script>"
    ));
    assert!(html.contains("<noscript>") && html.contains("<button type=\"submit\">"));
}

#[test]
fn a_kept_form_is_sealed_for_its_purpose_only() {
    use crate::session::{Codec, Deployment};
    let codec = Codec::new(
        &[crate::secret::Secret::new("0123456789abcdef0123")],
        &Deployment {
            issuer: "https://idp.example.com",
            client_id: "gateway",
        },
    );
    let sealed = codec.seal(Purpose::KeptPost, b"{}");
    assert!(codec.open(Purpose::KeptPost, &sealed).is_ok());
    assert!(codec.open(Purpose::StoredSession, &sealed).is_err());
    let other = codec.seal(Purpose::StoredSession, b"{}");
    assert!(codec.open(Purpose::KeptPost, &other).is_err());
}
