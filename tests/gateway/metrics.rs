//! `/metrics` (docs/behaviour.md §12.1): the OpenMetrics text a Prometheus scrapes, with
//! the request and upstream duration histograms by route and status class, provider call
//! durations by endpoint and outcome, refusals by reason, cache hits and misses, and the
//! connection and session gauges, all moving with what the gateway did.
use crate::common::*;
use reqwest::StatusCode;

const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

async fn scrape(h: &Harness) -> String {
    let r = reqwest::get(format!("http://{}/metrics", h.gw.admin_addrs[0]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    r.text().await.unwrap()
}

/// The value of the sample `name{labels}` (labels in the order the text has them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn histograms_counters_and_gauges_follow_the_traffic() {
    let h = Harness::with(Options {
        server: ADMIN.into(),
        session: r#"store = "memory""#.into(),
        ..Options::default()
    })
    .await;
    let before = scrape(&h).await;
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(
        sample(
            &before,
            r#"oidc_gateway_request_duration_seconds_count{route="/public",status="2xx"}"#
        ),
        Some(0.0),
        "{before}"
    );

    let b = Browser::new();
    for _ in 0..3 {
        assert_eq!(b.get(&h.url("/public/x")).await.status(), StatusCode::OK);
    }
    // A login: redirects (3xx on "/"), the hooks, the provider's token endpoint.
    assert_eq!(h.login(&b, "/", "alice").await.status(), StatusCode::OK);
    // Refused: a dot segment (`..;` is one for Tomcat, and clients do not resolve it).
    let raw = raw_client();
    let r = raw.get(h.url("/public/..;/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A claim rule refused.
    assert_eq!(
        b.get(&h.url("/admins/x")).await.status(),
        StatusCode::FORBIDDEN
    );

    let text = scrape(&h).await;
    let count =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        count(r#"oidc_gateway_request_duration_seconds_count{route="/public",status="2xx"}"#),
        3.0
    );
    assert!(
        count(
            r#"oidc_gateway_request_duration_seconds_bucket{le="+Inf",route="/public",status="2xx"}"#
        ) >= 3.0
    );
    assert_eq!(
        count(r#"oidc_gateway_upstream_duration_seconds_count{route="/public"}"#),
        3.0
    );
    assert!(count(r#"oidc_gateway_request_duration_seconds_count{route="/",status="3xx"}"#) >= 1.0);
    assert!(
        count(r#"oidc_gateway_request_duration_seconds_count{route="(hook)",status="3xx"}"#) >= 1.0
    );
    assert_eq!(
        count(r#"oidc_gateway_request_duration_seconds_count{route="/admins",status="4xx"}"#),
        1.0
    );
    assert_eq!(
        count(r#"oidc_gateway_refusals_total{reason="claim_rule"}"#),
        1.0
    );
    assert_eq!(
        count(r#"oidc_gateway_refusals_total{reason="dot_segment"}"#),
        1.0
    );
    assert_eq!(
        count(r#"oidc_gateway_request_duration_seconds_count{route="(none)",status="4xx"}"#),
        1.0
    );
    // The provider: metadata and keys at start, the code at login.
    for endpoint in ["discovery", "jwks", "token"] {
        let series = format!(
            r#"oidc_gateway_provider_call_duration_seconds_count{{endpoint="{endpoint}",outcome="ok"}}"#
        );
        assert!(count(&series) >= 1.0, "{series}");
    }
    assert_eq!(count("oidc_gateway_logins_completed_total"), 1.0);
    assert_eq!(count("oidc_gateway_memory_sessions"), 1.0);
    // The scrape's own connection is on the admin listener: not counted. The browser's
    // keep-alive connection to the proxied listener is.
    assert!(count("oidc_gateway_open_connections") >= 1.0);
    assert_eq!(count("oidc_gateway_in_flight_requests"), 0.0);
    assert_eq!(count("oidc_gateway_config_generation"), 1.0);
}

#[tokio::test]
async fn the_token_cache_counts_hits_misses_and_its_size() {
    let h = Harness::with(Options {
        server: ADMIN.into(),
        ..Options::default()
    })
    .await;
    let token = h.op.issue_access_token("alice", "openid", 300);
    for _ in 0..3 {
        assert_eq!(
            bearer_status(&h.base, "/api/x", &token).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        bearer_status(&h.base, "/api/x", "not-a-token").await,
        StatusCode::UNAUTHORIZED
    );
    let text = scrape(&h).await;
    let count =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    // The first use of each token misses, the repeats hit.
    assert_eq!(
        count(r#"oidc_gateway_cache_misses_total{cache="token"}"#),
        2.0
    );
    assert_eq!(
        count(r#"oidc_gateway_cache_hits_total{cache="token"}"#),
        2.0
    );
    assert_eq!(count(r#"oidc_gateway_cache_entries{cache="token"}"#), 2.0);
    assert!(count(r#"oidc_gateway_cache_bytes{cache="token"}"#) > 0.0);
    assert_eq!(
        count(r#"oidc_gateway_refusals_total{reason="bearer_invalid_token"}"#),
        1.0
    );
    assert!(
        count(
            r#"oidc_gateway_provider_call_duration_seconds_count{endpoint="introspection",outcome="ok"}"#
        ) >= 2.0
    );
}

/// conf/grafana-dashboard.json is built on these names: every `oidc_gateway_*` series its
/// queries use is one the gateway serves (a renamed metric would leave a panel empty).
#[tokio::test]
async fn the_grafana_dashboard_queries_only_served_metrics() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 16, "{exprs:?}");
    // Every family the gateway can serve: with [redis] and the memory store, after one
    // request of each kind, so that labelled families have a series.
    let Some(redis) = RedisServer::start_or_skip("dashboard metrics") else {
        return;
    };
    let h = Harness::with(Options {
        server: ADMIN.into(),
        session: r#"store = "memory""#.into(),
        redis: Some(format!("url = \"{}\"", redis.url())),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    assert_eq!(h.login(&b, "/", "alice").await.status(), StatusCode::OK);
    let token = h.op.issue_access_token("alice", "openid", 300);
    assert_eq!(
        bearer_status(&h.base, "/api/x", &token).await,
        StatusCode::OK
    );
    assert_eq!(
        b.get(&h.url("/admins/x")).await.status(),
        StatusCode::FORBIDDEN
    );
    let text = scrape(&h).await;
    let served: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for expr in &exprs {
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("oidc_gateway_"))
        {
            assert!(
                served.contains(name),
                "{name} (in {expr}) is not served:\n{text}"
            );
        }
    }
}
