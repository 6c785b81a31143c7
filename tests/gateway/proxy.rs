//! The proxy (docs/behaviour.md §11): routing, upstream failures (502/504), WebSocket tunnelling,
//! HTTP/2 from clients, bodies streamed both ways, hop-by-hop and `X-Forwarded-*` headers.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::{StatusCode, Version};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Guards against a hang (a bug) turning into a stuck test; never a speed assertion.
const HANG: Duration = Duration::from_secs(20);

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn routes_match_the_longest_prefix_on_segment_boundaries() {
    let h = Harness::start().await;
    let b = Browser::new();
    for (path, status) in [
        ("/public", StatusCode::OK),
        ("/public/", StatusCode::OK),
        ("/public/a/b?c=d", StatusCode::OK),
        ("/publicity", StatusCode::FOUND),
        ("/public-x", StatusCode::FOUND),
        ("/PUBLIC/x", StatusCode::FOUND),
        ("/", StatusCode::FOUND),
    ] {
        let r = b.get(&h.url(path)).await;
        assert_eq!(r.status(), status, "{path}");
    }
    let echo = Echo::of(b.get(&h.url("/public/a/b?c=d")).await).await;
    assert_eq!(echo.0["path"], "/public/a/b");
    assert_eq!(echo.0["query"], "c=d");
    assert_eq!(echo.0["method"], "GET");
    assert_eq!(
        echo.header("host").unwrap(),
        h.echo.addr().to_string(),
        "Host is the upstream's unless preserve_host"
    );
}

/// A protected route nested under an open one cannot be reached anonymously through any
/// spelling a Java server or nginx would map to it (`;params`, `..;`, encoded dots, `//`,
/// case on IIS-style routes).
#[tokio::test]
async fn a_protected_route_under_an_open_one_has_no_anonymous_spelling() {
    let h = Harness::with(Options {
        routes: Some(
            r#"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "none"

[[route]]
path = "/open/admin"
upstream = "{upstream}"
auth = "openid-connect"
unauth_action = "401"

[[route]]
path = "/open/iis"
upstream = "{upstream}"
auth = "openid-connect"
unauth_action = "401"
case_insensitive = true
"#
            .into(),
        ),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    assert_eq!(b.get(&h.url("/open/x")).await.status(), StatusCode::OK);
    for path in [
        "/open/admin",
        "/open;x/admin",
        "/open/admin;jsessionid=1",
        "/open;/admin/x",
        "/open/admin%3bx",
        "//open//admin",
        "/open/%61dmin",
        "/open/IIS/x",
        "/open/Iis",
    ] {
        let r = b.get(&h.url(path)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    for path in [
        "/open/x/..;/admin",
        "/open/x/%2e%2e;/admin",
        "/open/%c0%ae%c0%ae/admin",
        "/open/%00/admin",
    ] {
        let r = b.get(&h.url(path)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
    }
}

#[tokio::test]
async fn no_matching_route_is_a_404_page() {
    let h = Harness::with(Options {
        routes: Some(format!(
            "[[route]]\npath = \"/app\"\nupstream = \"{}\"\nauth = \"none\"\n",
            "http://127.0.0.1:9"
        )),
        ..Options::default()
    })
    .await;
    let r = Browser::new().get(&h.url("/elsewhere")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_no_store(&r);
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_page() {
    let h = Harness::with(Options {
        upstream: Some(format!("http://127.0.0.1:{}", closed_port())),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let r = b.get(&h.url("/public/x")).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_no_store(&r);
    assert!(r.text().await.unwrap().contains("unreachable"));
    // Behind login too, and the gateway keeps answering.
    let r = h.login(&b, "/app", "alice").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_no_store(&r);
    let r = b.get(&h.url("/app")).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504_page() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let (held_tx, mut held_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            // Keep the connection open without ever answering.
            let _ = held_tx.send(stream);
        }
    });
    let h = Harness::with(Options {
        server: r#"upstream_timeout = "300ms""#.into(),
        upstream: Some(format!("http://{addr}")),
        ..Options::default()
    })
    .await;
    let r = tokio::time::timeout(HANG, Browser::new().get(&h.url("/public/slow")))
        .await
        .expect("the gateway gives up on the upstream");
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_no_store(&r);
    assert!(held_rx.recv().await.is_some(), "the upstream was contacted");
}

#[tokio::test]
async fn upstream_statuses_and_headers_pass_through() {
    let h = Harness::start().await;
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    // The echo answers /status/NNN with NNN; the gateway must not replace the upstream's
    // own error responses with its pages.
    for code in [201u16, 404, 500, 502, 503] {
        let r = b.get(&h.url(&format!("/status/{code}"))).await;
        assert_eq!(r.status().as_u16(), code);
        assert_eq!(
            r.headers()["content-type"],
            "application/json",
            "the upstream's body, not a gateway page"
        );
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!(echo["path"], format!("/status/{code}"));
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let h = Harness::start().await;
    let r = Browser::new()
        .client
        .get(h.url("/public/x"))
        .header("connection", "x-hop-one, X-Hop-Two")
        .header("x-hop-one", "1")
        .header("x-hop-two", "2")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("proxy-connection", "keep-alive")
        .header("x-end-to-end", "kept")
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    for gone in [
        "x-hop-one",
        "x-hop-two",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(echo.header(gone).is_none(), "{gone}: {:?}", echo.names());
    }
    assert_eq!(echo.header("x-end-to-end").as_deref(), Some("kept"));
}

/// Only WebSocket is tunnelled by default: `Upgrade: h2c` would open a raw tunnel that
/// carries every later request on the connection past routing and header scrubbing. The
/// request goes through as a plain one, without its upgrade headers.
#[tokio::test]
async fn upgrades_other_than_websocket_are_not_tunnelled() {
    let h = Harness::start().await;
    for protocol in ["h2c", "websocket, h2c", "TLS/1.0"] {
        let r = Browser::new()
            .client
            .get(h.url("/public/x"))
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", protocol)
            .header("http2-settings", "AAMAAABkAAQAAP__")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{protocol}");
        let echo = Echo::of(r).await;
        for gone in ["upgrade", "http2-settings"] {
            assert!(
                echo.header(gone).is_none(),
                "{protocol}: {gone}: {:?}",
                echo.names()
            );
        }
        assert_ne!(
            echo.header("connection").as_deref(),
            Some("upgrade"),
            "{protocol}"
        );
    }
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_clients_are_replaced() {
    let h = Harness::start().await;
    let b = Browser::new();
    let spoofed = |req: reqwest::RequestBuilder| {
        req.header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-host", "evil.test")
            .header("x-forwarded-proto", "https")
    };
    let echo = Echo::of(
        spoofed(b.client.get(h.url("/public/x")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.headers("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(
        echo.headers("x-forwarded-host"),
        vec![h.gw.addr().to_string()]
    );
    assert_eq!(echo.headers("x-forwarded-proto"), vec!["http"]);

    // Nor do they steer the login: redirect URI and cookies follow the real request.
    let r = spoofed(b.client.get(h.url("/app"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = query_of(&location(&r));
    assert_eq!(q["redirect_uri"], h.url("/oauth2/callback"));
    assert!(!set_cookies(&r)[0].contains("Secure"));
}

#[tokio::test]
async fn forwarded_headers_from_trusted_proxies_are_believed_and_appended() {
    let h = Harness::with(Options {
        server: r#"trusted_proxies = ["127.0.0.1/32"]"#.into(),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let req = |path: &str| {
        b.client
            .get(h.url(path))
            .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
            .header("x-forwarded-host", "app.example")
            .header("x-forwarded-proto", "https")
    };
    let echo = Echo::of(req("/public/x").send().await.unwrap()).await;
    assert_eq!(
        echo.headers("x-forwarded-for"),
        vec!["203.0.113.7, 10.0.0.1, 127.0.0.1"]
    );
    assert_eq!(echo.headers("x-forwarded-host"), vec!["app.example"]);
    assert_eq!(echo.headers("x-forwarded-proto"), vec!["https"]);

    let r = req("/app").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = query_of(&location(&r));
    assert_eq!(q["redirect_uri"], "https://app.example/oauth2/callback");
    assert!(set_cookies(&r)[0].contains("Secure"));

    // Without forwarded headers, the trusted proxy's own request is taken as is.
    let echo = Echo::of(b.get(&h.url("/public/x")).await).await;
    assert_eq!(echo.headers("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(echo.headers("x-forwarded-proto"), vec!["http"]);
}

/// Client-describing headers that frameworks trust for IP allow-lists and routing
/// (`X-Real-IP`, `Forwarded`, `X-Original-URL`, …) are dropped from untrusted clients and
/// kept from trusted proxies.
#[tokio::test]
async fn client_describing_headers_pass_only_from_trusted_proxies() {
    const SPOOFABLE: [(&str, &str); 10] = [
        ("forwarded", "for=6.6.6.6;host=evil.test"),
        ("x-real-ip", "6.6.6.6"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/admin"),
        ("x-forwarded-server", "evil.test"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("true-client-ip", "6.6.6.6"),
        ("x-client-ip", "6.6.6.6"),
        ("client-ip", "6.6.6.6"),
    ];
    let send = |h: &Harness| {
        let mut req = Browser::new().client.get(h.url("/public/x"));
        for (name, value) in SPOOFABLE {
            req = req.header(name, value);
        }
        req.header("x-kept", "1").send()
    };
    let untrusted = Harness::start().await;
    let echo = Echo::of(send(&untrusted).await.unwrap()).await;
    for (name, _) in SPOOFABLE {
        assert!(echo.header(name).is_none(), "{name}: {:?}", echo.names());
    }
    assert_eq!(echo.header("x-kept").as_deref(), Some("1"));

    let trusted = Harness::with(Options {
        server: r#"trusted_proxies = ["127.0.0.1/32"]"#.into(),
        ..Options::default()
    })
    .await;
    let echo = Echo::of(send(&trusted).await.unwrap()).await;
    for (name, value) in SPOOFABLE {
        assert_eq!(echo.header(name).as_deref(), Some(value), "{name}");
    }
}

/// `server.allowed_hosts`: a request for another host is a 400 before any redirect URI or
/// cookie is derived from its Host.
#[tokio::test]
async fn requests_for_other_hosts_are_refused_when_hosts_are_listed() {
    let h = Harness::with(Options {
        server: r#"allowed_hosts = ["127.0.0.1"]"#.into(),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    assert_eq!(b.get(&h.url("/public/x")).await.status(), StatusCode::OK);
    let r = b
        .client
        .get(h.url("/app"))
        .header("host", "evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        set_cookies(&r).is_empty(),
        "no state cookie for another host"
    );
    let r = b
        .client
        .get(h.url("/app"))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// `server.public_url` decides the scheme, `Secure` and the redirect URI's host, whatever
/// the request says.
#[tokio::test]
async fn public_url_decides_scheme_secure_and_redirect_uri() {
    let h = Harness::with(Options {
        server: r#"public_url = "https://gw.example:8443""#.into(),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let r = b
        .client
        .get(h.url("/app"))
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = query_of(&location(&r));
    assert_eq!(q["redirect_uri"], "https://gw.example:8443/oauth2/callback");
    let state = set_cookies(&r);
    assert!(state[0].contains("Secure"), "{state:?}");
    let echo = Echo::of(b.get(&h.url("/public/x")).await).await;
    assert_eq!(echo.headers("x-forwarded-proto"), vec!["https"]);
    assert_eq!(echo.headers("x-forwarded-host"), vec!["gw.example:8443"]);
}

#[tokio::test]
async fn http2_clients_are_served_and_proxied() {
    let h = Harness::start().await;
    let h2 = Browser::http2();
    let r = h2.get(&h.url("/public/h2?q=1")).await;
    assert_eq!(r.version(), Version::HTTP_2);
    let echo = Echo::of(r).await;
    assert_eq!(echo.0["path"], "/public/h2");
    assert_eq!(echo.0["version"], "HTTP/1.1", "upstream leg is HTTP/1.1");

    // Unauthenticated over HTTP/2: the same login redirect.
    let r = h2.get(&h.url("/app")).await;
    assert_eq!(r.version(), Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(location(&r).starts_with(&h.op.issuer()));

    // A session made over HTTP/1.1 works over HTTP/2, bodies included.
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let body = vec![7u8; 3 * 1024 * 1024 + 5];
    let r = client
        .post(h.url("/app/upload"))
        .header("cookie", b.cookie_header(&h.base))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_2);
    let echo = Echo::of(r).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    assert_eq!(echo.body_len(), body.len() as u64);
    assert_eq!(echo.0["method"], "POST");
}

#[tokio::test]
async fn large_request_bodies_reach_the_upstream() {
    let h = Harness::start().await;
    let b = Browser::new();
    let body = vec![b'x'; 5 * 1024 * 1024 + 3];
    let r = b
        .client
        .post(h.url("/public/upload"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(Echo::of(r).await.body_len(), body.len() as u64);

    Echo::of(h.login(&b, "/", "alice").await).await;
    let r = b
        .client
        .put(h.url("/app/upload"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    assert_eq!(echo.body_len(), body.len() as u64);
    assert_eq!(echo.0["method"], "PUT");
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
}

/// Reads an HTTP/1.1 request head from `reader`; returns its lines.
async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end().to_string();
        if line.is_empty() {
            return lines;
        }
        lines.push(line);
    }
}

#[tokio::test]
async fn request_bodies_are_streamed_not_buffered() {
    // The upstream reports the first body bytes it sees; the client only sends the rest
    // after that, so a gateway that buffered the whole body would never deliver them.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    let (first_tx, first_rx) = oneshot::channel::<Vec<u8>>();
    let (total_tx, total_rx) = oneshot::channel::<usize>();
    tokio::spawn(async move {
        let (stream, _) = upstream.accept().await.unwrap();
        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader).await;
        assert!(head[0].starts_with("POST /public/stream "), "{head:?}");
        // Chunked on the upstream leg as well: read chunk by chunk.
        let mut total = 0;
        let mut first_tx = Some(first_tx);
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await.unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut data = vec![0u8; size + 2];
            reader.read_exact(&mut data).await.unwrap();
            if size == 0 {
                break;
            }
            total += size;
            if let Some(tx) = first_tx.take() {
                let _ = tx.send(data[..size].to_vec());
            }
        }
        let _ = total_tx.send(total);
        let mut stream = reader.into_inner();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .await
            .unwrap();
    });
    let h = Harness::with(Options {
        upstream: Some(format!("http://{addr}")),
        ..Options::default()
    })
    .await;
    let mut client = TcpStream::connect(h.gw.addr()).await.unwrap();
    client
        .write_all(
            format!(
                "POST /public/stream HTTP/1.1\r\nhost: {}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
                h.gw.addr()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(HANG, first_rx)
        .await
        .expect("the first chunk reached the upstream before the body ended")
        .unwrap();
    assert_eq!(first, b"first");
    let rest = vec![b'r'; 1 << 20];
    client
        .write_all(format!("{:x}\r\n", rest.len()).as_bytes())
        .await
        .unwrap();
    client.write_all(&rest).await.unwrap();
    client.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    let total = tokio::time::timeout(HANG, total_rx).await.unwrap().unwrap();
    assert_eq!(total, 5 + rest.len());
    let mut response = String::new();
    let mut reader = BufReader::new(client);
    reader.read_line(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn response_bodies_are_streamed_not_buffered() {
    // The upstream sends one chunk, then waits until the client has seen it.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (stream, _) = upstream.accept().await.unwrap();
        let mut reader = BufReader::new(stream);
        read_head(&mut reader).await;
        let mut stream = reader.into_inner();
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
                  transfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
            )
            .await
            .unwrap();
        stream.flush().await.unwrap();
        go_rx.await.unwrap();
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..128 {
            stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .unwrap();
            stream.write_all(&chunk).await.unwrap();
            stream.write_all(b"\r\n").await.unwrap();
        }
        stream.write_all(b"0\r\n\r\n").await.unwrap();
    });
    let h = Harness::with(Options {
        upstream: Some(format!("http://{addr}")),
        ..Options::default()
    })
    .await;
    let mut r = tokio::time::timeout(HANG, Browser::new().get(&h.url("/public/download")))
        .await
        .expect("response head arrives before the body is complete");
    assert_eq!(r.status(), StatusCode::OK);
    let first = tokio::time::timeout(HANG, r.chunk())
        .await
        .expect("first chunk arrives before the rest is sent")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first");
    go_tx.send(()).unwrap();
    let mut total = first.len();
    while let Some(chunk) = r.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, 5 + 128 * 64 * 1024);
}

/// A WebSocket echo upstream; sends the handshake headers it received on the channel.
async fn start_ws_echo() -> (String, mpsc::UnboundedReceiver<http::HeaderMap>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                // The Err type is tungstenite's (the callback signature is fixed).
                #[allow(clippy::result_large_err)]
                let callback = |req: &Request, resp: Response| {
                    let _ = tx.send(req.headers().clone());
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let (mut write, mut read) = ws.split();
                while let Some(Ok(msg)) = read.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if write.send(msg).await.is_err() {
                            return;
                        }
                    } else if msg.is_close() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

async fn ws_round_trip(url: &str, cookie: Option<&str>) -> Result<(), WsError> {
    let mut request = url.into_client_request().unwrap();
    if let Some(c) = cookie {
        request.headers_mut().insert("cookie", c.parse().unwrap());
    }
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..3 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let back = tokio::time::timeout(HANG, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back.to_text().unwrap(), text);
    }
    let blob: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    let back = tokio::time::timeout(HANG, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(back.into_data().as_ref(), &blob[..]);
    ws.close(None).await.unwrap();
    Ok(())
}

#[tokio::test]
async fn websockets_are_tunnelled_on_open_and_logged_in_routes() {
    let (upstream, mut handshakes) = start_ws_echo().await;
    let h = Harness::with(Options {
        upstream: Some(upstream),
        headers: r#"remote_user_header = "X-Remote-User""#.into(),
        ..Options::default()
    })
    .await;
    let ws_base = h.base.replacen("http://", "ws://", 1);

    // auth = none, with spoofed identity on the upgrade request.
    let mut request = format!("{ws_base}/public/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("oidc_claim_sub", "mallory".parse().unwrap());
    request
        .headers_mut()
        .insert("x-remote-user", "mallory".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.to_text().unwrap(), "ping");
    ws.close(None).await.unwrap();
    let seen = handshakes.recv().await.unwrap();
    assert!(seen.get("oidc_claim_sub").is_none());
    assert!(seen.get("x-remote-user").is_none());
    ws_round_trip(&format!("{ws_base}/public/ws"), None)
        .await
        .unwrap();
    handshakes.recv().await.unwrap();

    // A logged-in route without a session: no tunnel, the upstream is never asked.
    match ws_round_trip(&format!("{ws_base}/app/ws"), None).await {
        Err(WsError::Http(resp)) => {
            assert!(
                resp.status() == StatusCode::UNAUTHORIZED,
                "{}",
                resp.status()
            );
        }
        other => panic!("upgrade without a session must be refused: {other:?}"),
    }
    assert!(handshakes.try_recv().is_err());

    // With a session: tunnelled, and the upstream's handshake carries the identity.
    let b = Browser::new();
    let authorize = h.start_login(&b, "/app").await;
    let callback = h.authorize(&b, &authorize, "alice").await;
    assert_eq!(b.get(&callback).await.status(), StatusCode::FOUND);
    let cookie = b.cookie_header(&h.base);
    ws_round_trip(&format!("{ws_base}/app/ws"), Some(&cookie))
        .await
        .unwrap();
    let seen = handshakes.recv().await.unwrap();
    assert_eq!(seen["oidc_claim_sub"], "alice");
    assert_eq!(seen["x-remote-user"], "alice");
    assert!(seen.get("oidc_access_token").is_some());
    assert!(
        seen.get("cookie").is_none(),
        "session cookie not forwarded: {:?}",
        seen.get("cookie")
    );
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn preserve_host_sends_the_clients_host_and_the_base_path_is_kept() {
    let h = Harness::with(Options {
        routes: Some(
            r#"
[[route]]
path = "/kept"
upstream = "{upstream}"
auth = "none"
preserve_host = true

[[route]]
path = "/based"
upstream = "{upstream}/base/"
auth = "none"
"#
            .into(),
        ),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let echo = Echo::of(b.get(&h.url("/kept/x")).await).await;
    assert_eq!(echo.header("host").unwrap(), h.gw.addr().to_string());
    let echo = Echo::of(b.get(&h.url("/based/x?y=1")).await).await;
    assert_eq!(echo.0["path"], "/base/based/x");
    assert_eq!(echo.0["query"], "y=1");
    assert_eq!(echo.header("host").unwrap(), h.echo.addr().to_string());
}
