//! Time and connection limits (issue 12, item 10): `server.max_connections`,
//! `server.keepalive_timeout`, the read deadline on bodies the gateway reads itself, and
//! the cap on concurrent calls to the provider. Every wait here is for a condition, bounded; none
//! asserts how fast anything is.
use crate::common::*;
use reqwest::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one keep-alive HTTP/1.1 request on `stream` and reads its response head.
async fn request(stream: &mut TcpStream, host: &str, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    read_some(stream).await
}

async fn read_some(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 16 * 1024];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_and_existing_ones_keep_working() {
    let h = Harness::with(Options {
        server: "max_connections = 2".into(),
        ..Options::default()
    })
    .await;
    let host = h.host();
    let mut a = TcpStream::connect(h.gw.addr()).await.unwrap();
    let mut b = TcpStream::connect(h.gw.addr()).await.unwrap();
    assert!(request(&mut a, &host, "/public/a")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(request(&mut b, &host, "/public/b")
        .await
        .starts_with("HTTP/1.1 200"));
    // A third connection is not served while both slots are taken...
    let mut c = TcpStream::connect(h.gw.addr()).await.unwrap();
    c.write_all(format!("GET /public/c HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), c.read(&mut buf)).await;
    assert!(early.is_err(), "the third connection waits for a slot");
    // ...the existing ones keep working...
    assert!(request(&mut a, &host, "/public/a2")
        .await
        .starts_with("HTTP/1.1 200"));
    // ...and it is served as soon as one closes.
    drop(b);
    let answer = tokio::time::timeout(Duration::from_secs(30), read_some(&mut c))
        .await
        .expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let h = Harness::with(Options {
        server: r#"keepalive_timeout = "1s""#.into(),
        ..Options::default()
    })
    .await;
    let mut conn = TcpStream::connect(h.gw.addr()).await.unwrap();
    assert!(request(&mut conn, &h.host(), "/public/x")
        .await
        .starts_with("HTTP/1.1 200"));
    // The server closes it: read returns 0 bytes (EOF). Bounded wait for the condition,
    // shorter than hyper's own 30 s header timeout, so only keepalive_timeout can pass it.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), conn.read(&mut buf))
        .await
        .expect("the idle connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "EOF, not data");
}

/// A back-channel logout whose body trickles in too slowly is answered 408 instead of
/// holding the gateway's task.
#[tokio::test]
async fn a_body_the_gateway_reads_has_a_deadline() {
    let h = Harness::start().await;
    let mut conn = TcpStream::connect(h.gw.addr()).await.unwrap();
    let head = format!(
        "POST /oauth2/callback?logout=backchannel HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nlogout_tok",
        h.host()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(60), read_some(&mut conn))
        .await
        .expect("answered after the read deadline");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A flood of distinct bogus bearer tokens against a slow provider: calls beyond
/// `provider.max_concurrent_calls` are not made; those requests get 503 with
/// `Retry-After`, and the provider sees no more than the cap at once.
#[tokio::test]
async fn calls_to_the_provider_are_capped() {
    let h = Harness::with(Options {
        provider: "max_concurrent_calls = 2".into(),
        routes: Some(
            "[[route]]\npath = \"/\"\nupstream = \"{upstream}\"\nauth = \"oauth20\"\n".into(),
        ),
        ..Options::default()
    })
    .await;
    // Metadata first, so the flood is all introspection.
    let warm = h.op.issue_access_token("alice", "openid", 300);
    let r = raw_client()
        .get(h.url("/x"))
        .bearer_auth(&warm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.op.set_introspection_delay(Duration::from_millis(400));
    let before = h.op.counters().introspections;
    let requests = (0..12).map(|i| {
        let url = h.url("/x");
        async move {
            raw_client()
                .get(url)
                .bearer_auth(format!("bogus-token-{i}"))
                .send()
                .await
                .unwrap()
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let shed: Vec<_> = answers
        .iter()
        .filter(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!shed.is_empty(), "some calls were shed");
    for r in &shed {
        assert_eq!(r.headers()["retry-after"], "5");
    }
    for r in &answers {
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::SERVICE_UNAVAILABLE].contains(&r.status()),
            "{}",
            r.status()
        );
    }
    let made = h.op.counters().introspections - before;
    assert_eq!(
        made as usize,
        answers.len() - shed.len(),
        "a shed call never reaches the provider"
    );
}
