//! `provider.response_mode = "form_post"` (docs/behaviour.md §4): the provider POSTs the
//! authorization response to the redirect URI; the state cookie is `SameSite=None; Secure`
//! so a browser sends it with that cross-site POST.

use crate::common::*;
use reqwest::StatusCode;

async fn form_post_gateway() -> Harness {
    Harness::with(Options {
        provider: "response_mode = \"form_post\"".into(),
        ..Options::default()
    })
    .await
}

/// The action and hidden fields of the provider's auto-submitting form.
fn form_of(page: &str) -> (String, Vec<(String, String)>) {
    let unescape = |s: &str| {
        s.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    let attr = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[start..].find('"')? + start;
        Some(unescape(&tag[start..end]))
    };
    let form_tag = page
        .split("<form")
        .nth(1)
        .expect("a form")
        .split('>')
        .next()
        .unwrap();
    let action = attr(form_tag, "action").expect("an action");
    let fields = page
        .split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = tag.split('>').next()?;
            Some((attr(tag, "name")?, attr(tag, "value")?))
        })
        .collect();
    (action, fields)
}

/// Starts a login at `/app` and signs `user` in; returns the provider's form.
async fn provider_form(h: &Harness, b: &Browser) -> (String, Vec<(String, String)>) {
    let start = b.get(&h.url("/app")).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let state_cookie = set_cookies(&start)
        .into_iter()
        .find(|c| c.starts_with("oidc_state_"))
        .expect("a state cookie");
    assert!(
        state_cookie.contains("SameSite=None") && state_cookie.contains("; Secure"),
        "sent with the provider's cross-site POST: {state_cookie}"
    );
    let authorize = location(&start);
    assert!(authorize.contains("response_mode=form_post"), "{authorize}");
    assert_eq!(b.get(&authorize).await.status(), StatusCode::OK);
    let page = b.post_form(&authorize, &[("username", "alice")]).await;
    assert_eq!(page.status(), StatusCode::OK, "the provider answers a form");
    form_of(&page.text().await.unwrap())
}

#[tokio::test]
async fn a_form_post_login_completes_with_the_posted_response() {
    let h = form_post_gateway().await;
    let b = Browser::new();
    let (action, fields) = provider_form(&h, &b).await;
    assert_eq!(action, h.url("/oauth2/callback"));
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["code", "state", "iss"]);
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let done = b.post_form(&action, &pairs).await;
    assert_eq!(
        done.status(),
        StatusCode::FOUND,
        "{}",
        done.text().await.unwrap_or_default()
    );
    assert_eq!(location(&done), "/app");
    assert!(sets_session_cookie(&done));
    let app = b.get(&h.url("/app")).await;
    assert_eq!(app.status(), StatusCode::OK);
    let echo = Echo::of(app).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_code_in_the_query_does_not_finish_a_form_post_login() {
    let h = form_post_gateway().await;
    let b = Browser::new();
    let (action, fields) = provider_form(&h, &b).await;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter())
        .finish();
    let r = b.get(&format!("{action}?{query}")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(!sets_session_cookie(&r));
    let page = r.text().await.unwrap();
    assert!(page.contains("response mode"), "{page}");
    assert_eq!(
        h.op.counters().code_grants,
        0,
        "the code was never exchanged"
    );
}

#[tokio::test]
async fn a_posted_response_does_not_finish_a_query_login() {
    let h = Harness::start().await;
    let b = Browser::new();
    let callback = h.callback_for(&b, "/app", "alice").await;
    let query = callback.split_once('?').unwrap().1.to_string();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let r = b
        .post_form(
            &h.url("/oauth2/callback"),
            &pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("response mode"));
    assert_eq!(h.op.counters().code_grants, 0);
}

#[tokio::test]
async fn a_post_that_is_no_authorization_response_is_an_invalid_request() {
    let h = form_post_gateway().await;
    let b = Browser::new();
    let r = b
        .post_form(&h.url("/oauth2/callback"), &[("hello", "x")])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Invalid request"));
    // Oversized: refused without reading it all.
    let big = "a".repeat(64 * 1024);
    let r = b
        .post_form(
            &h.url("/oauth2/callback"),
            &[("state", "s"), ("code", &big)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
