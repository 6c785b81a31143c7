//! `X-Request-Id` (docs/behaviour.md §12.4): every request has one, the upstream receives it
//! and the client gets the same one back, on proxied responses and on the gateway's own
//! pages and redirects. A client's own is believed only from a trusted proxy, and only when
//! it is sane.

use crate::common::*;
use reqwest::header::HeaderValue;
use reqwest::{Client, Response, StatusCode};

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn id_of(r: &Response) -> String {
    let ids: Vec<_> = r.headers().get_all("x-request-id").iter().collect();
    assert_eq!(
        ids.len(),
        1,
        "one X-Request-Id on a {}: {ids:?}",
        r.status()
    );
    ids[0].to_str().unwrap().to_string()
}

/// A generated id: 16 base64url characters.
fn assert_generated(id: &str) {
    assert_eq!(id.len(), 16, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{id}"
    );
}

/// Sends `GET /public/x` with `X-Request-Id: sent` (if any); returns the id the upstream
/// received (exactly one) and the one the client got back.
async fn round_trip(h: &Harness, sent: Option<HeaderValue>) -> (String, String) {
    let mut req = client().get(h.url("/public/x"));
    if let Some(sent) = sent {
        req = req.header("x-request-id", sent);
    }
    let r = req.send().await.unwrap();
    let back = id_of(&r);
    let echo = Echo::of(r).await;
    let upstream = echo.headers("x-request-id");
    assert_eq!(upstream.len(), 1, "one X-Request-Id upstream: {upstream:?}");
    (upstream[0].clone(), back)
}

#[tokio::test]
async fn the_upstream_and_the_client_get_the_same_request_id() {
    let h = Harness::start().await;
    let (upstream, back) = round_trip(&h, None).await;
    assert_eq!(upstream, back);
    assert_generated(&back);
    let (again, _) = round_trip(&h, None).await;
    assert_ne!(again, upstream, "one id per request");

    // A client's `Connection` header cannot keep it from the upstream.
    let r = client()
        .get(h.url("/public/x"))
        .header("connection", "x-request-id")
        .header("x-request-id", "client-chosen-id-0")
        .send()
        .await
        .unwrap();
    let back = id_of(&r);
    assert_eq!(
        Echo::of(r).await.headers("x-request-id"),
        vec![back.clone()]
    );
    assert_generated(&back);

    // The gateway's own answers carry one too: a login redirect, a 401, a hook's answer,
    // a 400 page, and the upstream's own X-Request-Id is replaced by the gateway's.
    let c = client();
    let mut seen = vec![upstream, again, back];
    for (path, accept, status) in [
        ("/app", "text/html", StatusCode::FOUND),
        ("/strict", "*/*", StatusCode::UNAUTHORIZED),
        (
            "/oauth2/callback?info=json",
            "*/*",
            StatusCode::UNAUTHORIZED,
        ),
        ("/a%00b", "*/*", StatusCode::BAD_REQUEST),
    ] {
        let r = c
            .get(h.url(path))
            .header("accept", accept)
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        let id = id_of(&r);
        assert_generated(&id);
        assert!(!seen.contains(&id), "{path}: {id} reused");
        seen.push(id);
    }
}

#[tokio::test]
async fn a_client_sent_request_id_is_replaced_unless_from_a_trusted_proxy() {
    let h = Harness::start().await;
    let sent = HeaderValue::from_static("client-chosen-id-1");
    let (upstream, back) = round_trip(&h, Some(sent)).await;
    assert_eq!(upstream, back);
    assert_ne!(back, "client-chosen-id-1");
    assert_generated(&back);

    // The test client's address is a trusted proxy here.
    let h = Harness::with(Options {
        server: r#"trusted_proxies = ["127.0.0.1"]"#.into(),
        ..Options::default()
    })
    .await;
    for kept in [
        "proxy-id-42".to_string(),
        "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8".to_string(),
        "x".repeat(128),
    ] {
        let (upstream, back) = round_trip(&h, Some(HeaderValue::from_str(&kept).unwrap())).await;
        assert_eq!(upstream, kept);
        assert_eq!(back, kept);
    }
}

#[tokio::test]
async fn an_insane_request_id_from_a_trusted_proxy_is_replaced() {
    let h = Harness::with(Options {
        server: r#"trusted_proxies = ["127.0.0.1"]"#.into(),
        ..Options::default()
    })
    .await;
    for insane in [
        HeaderValue::from_str(&"x".repeat(129)).unwrap(),
        HeaderValue::from_static("tab\there"),
        HeaderValue::from_static("a space"),
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        HeaderValue::from_static(""),
    ] {
        let (upstream, back) = round_trip(&h, Some(insane.clone())).await;
        assert_eq!(upstream, back, "{insane:?}");
        assert_generated(&back);
    }
}
