//! RP-initiated logout (docs/behaviour.md §7) and redirect-target validation (docs/behaviour.md §10): valid targets
//! end the session everywhere (refresh token revoked, cookies cleared, old cookie refused,
//! browser sent through the OP's end_session_endpoint); hostile targets are refused with
//! the session kept.

use crate::common::*;
use reqwest::StatusCode;
use std::collections::HashMap;

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn logout_url(h: &Harness, target: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
    h.url(&format!("/oauth2/callback?logout={encoded}"))
}

/// A harness that passes the raw ID token and refresh token upstream, so tests can see them.
async fn with_tokens_visible() -> Harness {
    Harness::with(Options {
        headers: r#"
pass_id_token = ["claims", "serialized"]
pass_refresh_token = true
"#
        .into(),
        ..Options::default()
    })
    .await
}

/// A refresh grant at the OP's token endpoint, as the gateway's client.
async fn refresh_grant(h: &Harness, refresh_token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{}/token", h.op.issuer()))
        .basic_auth("gateway", Some("gateway-secret"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn logout_revokes_ends_the_session_and_goes_through_the_op() {
    let h = with_tokens_visible().await;
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/", "alice").await).await;
    let id_token = echo.header("oidc_id_token").unwrap();
    let refresh_token = echo.header("oidc_refresh_token").unwrap();
    let before_logout = b.cookie_header(&h.base);
    assert_eq!(h.op.counters().revocations, 0);

    let r = b.get(&logout_url(&h, "/public/bye")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_no_store(&r);
    assert!(clears_cookie(&r, "oidc_session"), "{:?}", set_cookies(&r));
    let end_session = location(&r);
    assert!(
        end_session.starts_with(&format!("{}/end_session?", h.op.issuer())),
        "{end_session}"
    );
    let q = query_of(&end_session);
    assert_eq!(q["id_token_hint"], id_token);
    assert_eq!(q["post_logout_redirect_uri"], h.url("/public/bye"));
    assert_eq!(q["client_id"], "gateway");

    // The refresh token was revoked at the OP before the browser left.
    assert_eq!(h.op.counters().revocations, 1);
    assert_eq!(
        refresh_grant(&h, &refresh_token).await,
        StatusCode::BAD_REQUEST,
        "revoked refresh token refused by the OP"
    );

    // The OP accepts the hint and sends the browser to the target.
    let r = b.get(&end_session).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), h.url("/public/bye"));
    assert_eq!(h.op.counters().end_sessions, 1);

    // The browser has no session any more.
    assert!(b.cookie_value(&h.base, "oidc_session").is_none());
    let r = b.get(&h.url("/")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(location(&r).starts_with(&h.op.issuer()));

    // Replaying the pre-logout cookie does not bring the session back.
    let r = get_with_cookie(&h.url("/"), &before_logout).await;
    assert_eq!(r.status(), StatusCode::FOUND, "replayed cookie");
    assert!(location(&r).starts_with(&format!("{}/authorize?", h.op.issuer())));
    assert!(clears_cookie(&r, "oidc_session"));
    let echo = Echo::of(get_with_cookie(&h.url("/pass/x"), &before_logout).await).await;
    assert!(echo.header("oidc_claim_sub").is_none(), "replayed on pass");
    let r = get_with_cookie(&h.url("/oauth2/callback?info=json"), &before_logout).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "replayed on info");
    // A second logout with the old cookie revokes nothing more.
    let r = get_with_cookie(&logout_url(&h, "/public/bye"), &before_logout).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(h.op.counters().revocations, 1);
}

#[tokio::test]
async fn logout_to_an_absolute_url_on_this_host() {
    let h = with_tokens_visible().await;
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    let r = b.get(&logout_url(&h, &h.url("/"))).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = query_of(&location(&r));
    assert_eq!(q["post_logout_redirect_uri"], h.url("/"));
    let r = b.get(&location(&r)).await;
    assert_eq!(location(&r), h.url("/"));
}

#[tokio::test]
async fn logout_without_a_target_ends_at_the_op_without_post_logout_redirect() {
    let h = with_tokens_visible().await;
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/", "alice").await).await;
    let r = b.get(&h.url("/oauth2/callback?logout=")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(clears_cookie(&r, "oidc_session"));
    let q = query_of(&location(&r));
    assert_eq!(q["id_token_hint"], echo.header("oidc_id_token").unwrap());
    assert!(!q.contains_key("post_logout_redirect_uri"));
    let r = b.get(&location(&r)).await;
    assert_eq!(r.status(), StatusCode::OK, "the OP's signed-out page");
    assert_eq!(h.op.counters().revocations, 1);
    assert_eq!(b.get(&h.url("/")).await.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn logout_without_a_session_goes_straight_to_the_target_or_a_page() {
    let h = Harness::start().await;
    let b = Browser::new();
    let r = b.get(&logout_url(&h, "/public/bye")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_no_store(&r);
    assert_eq!(location(&r), "/public/bye");
    let r = b.get(&h.url("/oauth2/callback?logout=")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_no_store(&r);
    assert!(r.text().await.unwrap().contains("Logged out"));
    assert_eq!(h.op.counters().revocations, 0);
}

/// Targets that would send the browser off this host (or run script). `{host}` is the
/// gateway's host:port. Each is what the gateway sees after query decoding.
fn hostile_targets(host: &str) -> Vec<String> {
    let list = [
        "//evil.com",
        "///evil.com",
        "////evil.com",
        "//evil.com/",
        "//evil.com:443/x",
        "https://evil.com",
        "http://evil.com",
        "https://evil.com/",
        "HTTPS://EVIL.COM/",
        "/\\evil.com",
        "\\/evil.com",
        "\\\\evil.com",
        "/\\/evil.com",
        "/\\\\evil.com",
        "\\\\\\evil.com",
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "javascript://%0aalert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "%2f%2fevil.com",
        "/%2f%2fevil.com",
        "/%2fevil.com",
        "/%5cevil.com",
        "/%5C%5Cevil.com",
        "%5c%5cevil.com",
        "/http://evil.com",
        "/https:evil.com",
        "http:evil.com",
        "https:/evil.com",
        "/\r\nLocation: https://evil.com",
        "/%0d%0aLocation:%20https://evil.com",
        "/%0aevil.com",
        "/%09/evil.com",
        "/%00//evil.com",
        "\r\n//evil.com",
        "\t//evil.com",
        "/\t/evil.com",
        " //evil.com",
        "//evil.com%00",
        "https://{host}@evil.com/",
        "https://evil.com\\@{host}/",
        "https://evil.com#@{host}/",
        "https://evil.com?@{host}/",
        "http://{host}.evil.com/",
        "https://evil.com:{port}/",
        "ftp://evil.com/",
        "//evil\u{3002}com",
        "//%65vil.com",
        "//evil.com\\@{host}",
    ];
    let port = host.rsplit(':').next().unwrap();
    let mut out: Vec<String> = list
        .iter()
        .map(|t| t.replace("{host}", host).replace("{port}", port))
        .collect();
    out.push(format!("/{}", "a".repeat(16 * 1024)));
    out
}

#[tokio::test]
async fn hostile_logout_targets_are_refused_and_the_session_is_kept() {
    let h = Harness::start().await;
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    let host = h.gw.addr().to_string();
    let targets = hostile_targets(&host);
    assert!(targets.len() >= 40);
    let mut accepted = Vec::new();
    for target in &targets {
        let r = b.get(&logout_url(&h, target)).await;
        if r.status() != StatusCode::BAD_REQUEST {
            accepted.push(format!(
                "{target:?} -> {} {:?}",
                r.status(),
                r.headers().get("location")
            ));
            continue;
        }
        assert_no_store(&r);
        assert!(set_cookies(&r).is_empty(), "{target:?}: session untouched");
        let page = r.text().await.unwrap();
        assert!(page.contains("not allowed"), "{target:?}: {page}");
        assert!(!page.contains("<script>"), "{target:?}: escaped");
    }
    assert!(
        accepted.is_empty(),
        "accepted hostile targets:\n{}",
        accepted.join("\n")
    );
    assert_eq!(h.op.counters().revocations, 0, "nothing was revoked");
    let echo = Echo::of(b.get(&h.url("/x")).await).await;
    assert_eq!(
        echo.header("oidc_claim_sub").as_deref(),
        Some("alice"),
        "session kept"
    );
}

#[tokio::test]
async fn raw_encoded_hostile_targets_in_the_query_are_refused_too() {
    let h = Harness::start().await;
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    for raw in [
        "%2F%2Fevil.com",
        "%2f%5cevil.com",
        "%5C%5Cevil.com",
        "https%3A%2F%2Fevil.com",
        "%2F%0D%0ASet-Cookie%3A%20x%3D1",
        "javascript%3Aalert(1)",
        "%252f%252fevil.com",
    ] {
        let r = b
            .get(&h.url(&format!("/oauth2/callback?logout={raw}")))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{raw}");
        assert!(set_cookies(&r).is_empty(), "{raw}");
    }
    assert_eq!(b.get(&h.url("/x")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn redirect_urls_allowed_replaces_the_same_host_rule() {
    let h = Harness::with(Options {
        hooks: r#"redirect_urls_allowed = ["https://partner\\.example/.*"]"#.into(),
        ..Options::default()
    })
    .await;
    for target in [
        "https://evil.com/",
        "/public/bye",
        "https://partner.example.evil.com/",
    ] {
        let b = Browser::new();
        Echo::of(h.login(&b, "/", "alice").await).await;
        let r = b.get(&logout_url(&h, target)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{target}");
        assert_eq!(
            b.get(&h.url("/x")).await.status(),
            StatusCode::OK,
            "{target}"
        );
    }
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    let r = b.get(&logout_url(&h, "https://partner.example/bye")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = query_of(&location(&r));
    assert_eq!(q["post_logout_redirect_uri"], "https://partner.example/bye");
    assert!(clears_cookie(&r, "oidc_session"));
}
