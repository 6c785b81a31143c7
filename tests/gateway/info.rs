//! The session info hook (docs/behaviour.md §9) and session lifetimes (docs/behaviour.md §5, issue 3): inactivity is
//! extended on use without re-sealing the cookie on every request; max_duration is
//! absolute.
use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn info_json_has_the_configured_members_with_their_types() {
    let h = Harness::start().await;
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/app", "alice").await).await;
    let login_time = h.clock.now();

    let r = b.get(&h.hook_url("info=json")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ct = r.headers().get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
    let info: Value = r.json().await.unwrap();
    let obj = info.as_object().expect("a JSON object");

    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_token",
            "access_token_expires",
            "exp",
            "iat",
            "id_token",
            "remote_user",
            "timeout",
            "userinfo"
        ],
        "the default [hooks] info members, and no refresh_token"
    );

    let iat = info["iat"].as_i64().expect("iat is an integer");
    assert!((iat - h.clock.now()).abs() <= 2, "iat is now: {iat}");
    assert_eq!(
        info["access_token"].as_str(),
        echo.header("oidc_access_token").as_deref()
    );
    let expires = info["access_token_expires"]
        .as_str()
        .expect("access_token_expires is a string");
    assert!(expires.bytes().all(|b| b.is_ascii_digit()), "{expires}");
    assert_eq!(
        Some(expires),
        echo.header("oidc_access_token_expires").as_deref()
    );
    let expires: i64 = expires.parse().unwrap();
    assert!((expires - (login_time + 300)).abs() <= 2, "{expires}");

    assert!(info["id_token"].is_object());
    assert_eq!(info["id_token"]["sub"], "alice");
    assert_eq!(info["id_token"]["iss"], h.op.issuer());
    assert!(info["userinfo"].is_object());
    assert_eq!(info["userinfo"]["sub"], "alice");
    assert_eq!(info["userinfo"]["locale"], "en-US", "userinfo claims");

    // Defaults: max_duration 8h, inactivity_timeout 5m.
    let exp = info["exp"].as_i64().expect("exp is an integer");
    assert!((exp - (login_time + 8 * 3600)).abs() <= 2, "exp {exp}");
    let timeout = info["timeout"].as_i64().expect("timeout is an integer");
    assert!(
        (timeout - (login_time + 300)).abs() <= 2,
        "timeout {timeout}"
    );
    assert_eq!(info["remote_user"], "alice");
}

#[tokio::test]
async fn info_members_follow_the_hooks_config() {
    let h = Harness::with(Options {
        hooks: r#"info = ["access_token_expires", "timeout", "refresh_token"]"#.into(),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    h.login(&b, "/app", "alice").await;
    let info = h.info(&b).await;
    let mut keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["access_token_expires", "refresh_token", "timeout"]);
    assert!(info["access_token_expires"].is_string());
    assert!(info["timeout"].is_i64());
}

#[tokio::test]
async fn info_without_a_session_is_401() {
    let h = Harness::start().await;
    let stranger = Browser::new();
    let r = stranger.get(&h.hook_url("info=json")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("location").is_none());
    let r = stranger.get(&h.hook_url("info=html")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A tampered cookie is no session either.
    let b = Browser::new();
    h.login(&b, "/app", "alice").await;
    let r = raw_client()
        .get(h.hook_url("info=json"))
        .header("cookie", tamper_session_cookie(&b.cookie_header(&h.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // An idle-expired session too.
    h.clock.advance(301);
    let r = b.get(&h.hook_url("info=json")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn info_html_escapes_every_value() {
    let h = Harness::start().await;
    let hostile = "<script>alert('x')</script>&\"";
    let claims = json!({ "nickname": hostile, "<b>k": "v" });
    h.op.set_user_claims("alice", claims.as_object().unwrap().clone());
    let b = Browser::new();
    h.login(&b, "/app", "alice").await;

    // The JSON form carries the value as is.
    assert_eq!(h.info(&b).await["id_token"]["nickname"], hostile);

    let r = b.get(&h.hook_url("info=html")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ct = r.headers().get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("text/html"), "{ct}");
    assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script>"), "unescaped: {html}");
    assert!(!html.contains("<b>"), "unescaped claim name: {html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(html.contains("alice"));
    // The gateway's page layout (the sans-serif style of its other pages), under its CSP.
    assert!(html.contains("font-family:system-ui"), "{html}");
    assert!(html.contains("<h1>Session info</h1>"));
    assert_eq!(
        r_csp(&h, &b).await,
        "default-src 'none'; style-src 'unsafe-inline'"
    );
}

async fn r_csp(h: &Harness, b: &Browser) -> String {
    let r = b.get(&h.hook_url("info=html")).await;
    r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn info_in_other_formats_is_415() {
    let h = Harness::start().await;
    let b = Browser::new();
    h.login(&b, "/app", "alice").await;
    for format in ["xml", "", "JSON", "json%20", "text"] {
        let r = b.get(&h.hook_url(&format!("info={format}"))).await;
        assert_eq!(
            r.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "info={format}"
        );
    }
}

/// Inactivity: back-to-back requests re-seal nothing; after a meaningful part of the
/// timeout the cookie is re-sealed, which extends the session; idle past it ends it.
#[tokio::test]
async fn inactivity_timeout_extends_on_use_without_resealing_every_request() {
    let h = Harness::with(Options {
        session: "inactivity_timeout = \"5m\"\nmax_duration = \"8h\"".into(),
        ..Options::default()
    })
    .await;
    h.op.set_access_token_ttl(86_400);
    let b = Browser::new();
    h.login(&b, "/app", "alice").await;
    let timeout0 = h.info(&b).await["timeout"].as_i64().unwrap();

    for _ in 0..3 {
        let r = b.get(&h.url("/app")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            set_cookies(&r).is_empty(),
            "re-sealed: {:?}",
            set_cookies(&r)
        );
    }
    h.clock.advance(10);
    let r = b.get(&h.url("/app")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(set_cookies(&r).is_empty(), "re-sealed after 10 s");

    // 200 s idle (two thirds of the timeout): this request extends the session.
    h.clock.advance(190);
    let r = b.get(&h.url("/app")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        sets_session_cookie(&r),
        "not re-sealed: {:?}",
        set_cookies(&r)
    );
    let timeout1 = h.info(&b).await["timeout"].as_i64().unwrap();
    assert!(timeout1 >= timeout0 + 200, "{timeout1} vs {timeout0}");
    let r = b.get(&h.url("/app")).await;
    assert!(
        set_cookies(&r).is_empty(),
        "re-sealed right after re-sealing"
    );

    // 290 s after login's timeout would have ended it, the extended session lives on.
    h.clock.advance(290);
    let r = b.get(&h.url("/app")).await;
    assert_eq!(r.status(), StatusCode::OK, "extended by use");

    // Idle longer than the timeout: log in again.
    h.clock.advance(301);
    let r = b.get(&h.url("/app")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(location(&r).starts_with(&h.op.issuer()));
    assert!(clears_session_cookie(&r), "{:?}", set_cookies(&r));
}

#[tokio::test]
async fn max_duration_is_absolute() {
    let h = Harness::with(Options {
        session: "inactivity_timeout = \"5m\"\nmax_duration = \"10m\"".into(),
        ..Options::default()
    })
    .await;
    h.op.set_access_token_ttl(86_400);
    let b = Browser::new();
    h.login(&b, "/app", "alice").await;
    let exp = h.info(&b).await["exp"].as_i64().unwrap();

    // Busy all along: a request every 4 minutes keeps the inactivity timer fresh.
    for _ in 0..2 {
        h.clock.advance(240);
        let r = b.get(&h.url("/app")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(
        h.info(&b).await["exp"].as_i64().unwrap(),
        exp,
        "exp never moves"
    );
    h.clock.advance(121);
    let r = b.get(&h.url("/app")).await;
    assert_eq!(r.status(), StatusCode::FOUND, "ended by max_duration");
    assert!(location(&r).starts_with(&h.op.issuer()));
    let r = b.get(&h.hook_url("info=json")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_info_hook_is_off_by_default() {
    let h = Harness::with(Options {
        default_info_hook: true,
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    h.login(&b, "/app", "alice").await;
    for format in ["json", "html"] {
        let r = b.get(&h.hook_url(&format!("info={format}"))).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{format}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("eyJ"), "no token in the answer: {body}");
    }
    // The session itself works: the app is reachable.
    assert_eq!(b.get(&h.url("/app")).await.status(), StatusCode::OK);
}
