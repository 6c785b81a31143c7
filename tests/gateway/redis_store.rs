//! The redis session store end to end: a full login keeps the session in a real
//! redis-server, a second gateway (a replica) on the same Redis serves the same browser, and
//! a logout on one is refused on the other (docs/behaviour.md §5, §7).
use crate::common::*;
use reqwest::StatusCode;

const REDIS_STORE: &str = "store = \"redis\"";

fn redis_section(server: &RedisServer) -> Option<String> {
    Some(format!("url = \"{}\"", server.url()))
}

#[tokio::test]
async fn login_with_the_redis_store_is_shared_by_replicas_and_logout_ends_it_everywhere() {
    let Some(redis) = RedisServer::start_or_skip("redis_store login") else {
        return;
    };
    let h = Harness::with(Options {
        session: REDIS_STORE.into(),
        redis: redis_section(&redis),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/hello", "alice").await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));

    // The cookie is a short sealed id; the session itself is in Redis.
    let cookie = b
        .cookie_value(&h.url("/"), "oidc_session")
        .expect("session cookie");
    assert!(cookie.len() < 100, "{} bytes", cookie.len());
    assert!(b.cookie_value(&h.url("/"), "oidc_session_chunks").is_none());

    // A replica: another gateway process with the same passphrase, provider and Redis.
    let replica = Harness::with(Options {
        session: REDIS_STORE.into(),
        redis: redis_section(&redis),
        issuer: Some(h.op.issuer()),
        ..Options::default()
    })
    .await;
    let cookies = b.cookie_header(&h.url("/"));
    let on_replica = raw_client()
        .get(replica.url("/from-replica"))
        .header("cookie", &cookies)
        .header("accept", "*/*")
        .send()
        .await
        .unwrap();
    let echo = Echo::of(on_replica).await;
    assert_eq!(echo.0["path"], "/from-replica");
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));

    // Logout on the first gateway; the pre-logout cookie, replayed at the replica, is
    // sent to log in again rather than to the app.
    let r = b
        .get(&h.hook_url(&format!("logout={}", enc("/public/bye"))))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(clears_session_cookie(&r));
    let replayed = raw_client()
        .get(replica.url("/from-replica"))
        .header("cookie", &cookies)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::FOUND);
    assert!(
        location(&replayed).starts_with(&h.op.issuer()),
        "a login redirect, got {}",
        location(&replayed)
    );
    assert!(clears_session_cookie(&replayed));
}

/// Runs a login up to the callback and returns the callback's response.
async fn callback_response(h: &Harness, b: &Browser, path: &str) -> reqwest::Response {
    let start = b.get(&h.url(path)).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let authorize = location(&start);
    let consented = b.post_form(&authorize, &[("username", "alice")]).await;
    assert_eq!(consented.status(), StatusCode::FOUND);
    b.get(&location(&consented)).await
}

#[tokio::test]
async fn redis_down_at_start_up_does_not_stop_the_gateway() {
    let Some(probe) = RedisServer::start_or_skip("redis_down_at_start_up") else {
        return;
    };
    // A port where Redis will be, but is not yet.
    let port = probe.port();
    drop(probe);
    let h = Harness::with(Options {
        session: REDIS_STORE.into(),
        redis: Some(format!(
            "url = \"redis://127.0.0.1:{port}/0\"\ntimeout = \"500ms\""
        )),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let public = b.get(&h.url("/public/x")).await;
    assert_eq!(public.status(), StatusCode::OK);

    // Logging in cannot finish without the store: an error page, not a crash or a hang.
    let failed = callback_response(&h, &b, "/hello").await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!sets_session_cookie(&failed));

    // Redis comes up: logins work (after the store's short reconnect back-off).
    let _redis = RedisServer::start_on(port);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let echo = Echo::of(h.login(&b, "/hello", "alice").await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
}
