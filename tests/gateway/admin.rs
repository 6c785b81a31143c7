//! The admin listener (docs/behaviour.md §12.1): `/healthz` answers while the process
//! runs, `/readyz` only once the provider's discovery document and JWKS are loaded, both
//! in JSON naming each check; `/metrics` in Prometheus text. Never on the proxied port.
//! (A degraded Redis, still 200, is checked by `common::wait_for_readyz` in the replica
//! and Redis TLS suites.)
use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

async fn admin_get(h: &Harness, path: &str) -> reqwest::Response {
    let addr = h.gw.admin_addrs[0];
    reqwest::get(format!("http://{addr}{path}")).await.unwrap()
}

/// The status and JSON body of an admin endpoint, checking its content type.
async fn admin_json(h: &Harness, path: &str) -> (StatusCode, Value) {
    let r = admin_get(h, path).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let status = r.status();
    let text = r.text().await.unwrap();
    // `status` comes first, for whoever reads it by eye.
    assert!(text.starts_with(r#"{"status":""#), "{text}");
    (status, serde_json::from_str(&text).unwrap())
}

/// Polls `/readyz` (bounded) until it answers `status`.
async fn readyz_when(h: &Harness, status: StatusCode) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (got, body) = admin_json(h, "/readyz").await;
        if got == status {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never answered {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `checks.listeners` of a gateway with one proxied listener.
fn listeners(h: &Harness) -> Value {
    json!({ "status": "ok", "bound": [h.gw.addr().to_string()] })
}

#[tokio::test]
async fn readyz_follows_the_provider_and_healthz_the_process() {
    let down = Harness::with(Options {
        server: ADMIN.into(),
        issuer: Some("http://127.0.0.1:9".into()),
        ..Options::default()
    })
    .await;
    let (status, health) = admin_json(&down, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        health,
        json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })
    );
    // Not ready: nothing loaded, and why (the failed attempt, once it has ended).
    let ready = readyz_when(&down, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(ready["status"], "not_ready", "{ready}");
    let provider = &ready["checks"]["provider"];
    assert_eq!(provider["status"], "failed", "{ready}");
    assert_eq!(provider["discovery"], false, "{ready}");
    assert_eq!(provider["jwks"], false, "{ready}");
    assert!(
        provider["detail"]
            .as_str()
            .unwrap()
            .starts_with("discovery document not loaded"),
        "{ready}"
    );
    assert_eq!(ready["checks"]["listeners"], listeners(&down), "{ready}");
    // No [redis]: no redis check.
    assert_eq!(ready["checks"].as_object().unwrap().len(), 2, "{ready}");
    let text = ready.to_string();
    assert!(
        !text.contains("gateway-secret") && !text.contains(PASSPHRASE),
        "{text}"
    );

    let up = Harness::with(Options {
        server: ADMIN.into(),
        ..Options::default()
    })
    .await;
    // The metadata loads in the background: wait for the condition (bounded).
    let ready = readyz_when(&up, StatusCode::OK).await;
    assert_eq!(
        ready,
        json!({
            "status": "ready",
            "checks": {
                "provider": { "status": "ok", "discovery": true, "jwks": true },
                "listeners": listeners(&up),
            },
            "config": { "generation": 1 },
        })
    );
    let metrics = admin_get(&up, "/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("oidc_gateway_provider_ready 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oidc_gateway_provider_calls_shed_total 0"),
        "{metrics}"
    );
    assert_eq!(
        admin_get(&up, "/nope").await.status(),
        StatusCode::NOT_FOUND
    );
    // Not on the proxied port: there it is just a path of the routes.
    let proxied = Browser::new().get(&up.url("/healthz")).await;
    assert_ne!(proxied.text().await.unwrap(), "ok\n");
}

/// A provider whose discovery document loads but whose JWKS does not (503): `/readyz`
/// tells the two apart and stays 503.
#[tokio::test]
async fn readyz_is_not_ready_while_the_jwks_fails() {
    let issuer = provider_without_jwks().await;
    let h = Harness::with(Options {
        server: ADMIN.into(),
        issuer: Some(issuer),
        ..Options::default()
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let (status, body) = admin_json(&h, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        if body["checks"]["provider"]["discovery"] == true {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready["status"], "not_ready", "{ready}");
    let provider = &ready["checks"]["provider"];
    assert_eq!(provider["status"], "failed", "{ready}");
    assert_eq!(provider["jwks"], false, "{ready}");
    let detail = provider["detail"].as_str().unwrap();
    assert!(detail.starts_with("JWKS not loaded"), "{detail}");
    assert_eq!(ready["checks"]["listeners"], listeners(&h), "{ready}");
}

/// A minimal OP on loopback: a valid discovery document, and 503 for everything else
/// (its JWKS). Returns its issuer.
async fn provider_without_jwks() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let metadata = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
    .to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let metadata = metadata.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let (status, body) = if head.starts_with("GET /.well-known/openid-configuration ") {
                    ("200 OK", metadata.as_str())
                } else {
                    ("503 Service Unavailable", "{}")
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    issuer
}

/// `oidc-gateway probe URL` (the container's HEALTHCHECK): exit 0 on a 2xx, 1 otherwise.
#[tokio::test]
async fn probe_exits_zero_only_on_a_2xx() {
    let h = Harness::with(Options {
        server: ADMIN.into(),
        ..Options::default()
    })
    .await;
    let admin = h.gw.admin_addrs[0];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while admin_get(&h, "/readyz").await.status() != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Run off the runtime: the probed gateway lives on it.
    let probe = |url: String| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
                .args(["probe", &url])
                .env("RUST_LOG", "off")
                .output()
                .unwrap()
                .status
                .code()
        })
        .await
        .unwrap()
    };
    assert_eq!(probe(format!("http://{admin}/readyz")).await, Some(0));
    assert_eq!(probe(format!("http://{admin}/nope")).await, Some(1));
    assert_eq!(
        probe(format!("http://127.0.0.1:{}/readyz", closed_port())).await,
        Some(1)
    );
    assert_eq!(probe("https://127.0.0.1:1/readyz".into()).await, Some(1));
}
