//! The admin listener (docs/behaviour.md §12.1): `/healthz` answers while the process
//! runs, `/readyz` only once the provider's metadata is loaded, `/metrics` in Prometheus
//! text. Never on the proxied port.
use crate::common::*;
use reqwest::StatusCode;
use std::time::Duration;

const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

async fn admin_get(h: &Harness, path: &str) -> reqwest::Response {
    let addr = h.gw.admin_addrs[0];
    reqwest::get(format!("http://{addr}{path}")).await.unwrap()
}

#[tokio::test]
async fn readyz_follows_the_provider_and_healthz_the_process() {
    let down = Harness::with(Options {
        server: ADMIN.into(),
        issuer: Some("http://127.0.0.1:9".into()),
        ..Options::default()
    })
    .await;
    assert_eq!(admin_get(&down, "/healthz").await.status(), StatusCode::OK);
    let r = admin_get(&down, "/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("not loaded"));

    let up = Harness::with(Options {
        server: ADMIN.into(),
        ..Options::default()
    })
    .await;
    // The metadata loads in the background: wait for the condition (bounded).
    let mut ready = false;
    for _ in 0..300 {
        if admin_get(&up, "/readyz").await.status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz turns 200 once the provider is loaded");
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
