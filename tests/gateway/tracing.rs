//! Trace context propagation (docs/behaviour.md §12.6): the upstream always receives one
//! valid W3C `traceparent`. A trusted proxy's trace id is kept (the parent id is the
//! gateway's own) and its `tracestate` passed on; anyone else's, and an invalid one, start a
//! new trace, and their `tracestate` is dropped. Runs without the `otlp` feature.

use crate::common::*;
use reqwest::Client;

const THEIRS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A `traceparent` split into trace id, parent id and flags, checked to be valid W3C.
fn parsed(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    let hex = |s: &str, len: usize| {
        assert_eq!(s.len(), len, "{value}");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "lowercase hex: {value}"
        );
        assert!(s.bytes().any(|b| b != b'0'), "not all zeros: {value}");
    };
    assert_eq!(parts[0], "00", "{value}");
    hex(parts[1], 32);
    hex(parts[2], 16);
    assert_eq!(parts[3].len(), 2, "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// Sends `GET /public/x` with `headers`; returns the `traceparent` the upstream received
/// (exactly one) and its `tracestate` values.
async fn upstream_trace(
    h: &Harness,
    headers: &[(&str, &str)],
) -> ((String, String, String), Vec<String>) {
    let mut req = client().get(h.url("/public/x"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let echo = Echo::of(req.send().await.unwrap()).await;
    let parents = echo.headers("traceparent");
    assert_eq!(parents.len(), 1, "one traceparent upstream: {parents:?}");
    (parsed(&parents[0]), echo.headers("tracestate"))
}

fn trusting() -> Options {
    Options {
        server: r#"trusted_proxies = ["127.0.0.1"]"#.into(),
        ..Options::default()
    }
}

#[tokio::test]
async fn the_upstream_receives_a_valid_traceparent() {
    let h = Harness::start().await;
    let ((trace, parent, flags), state) = upstream_trace(&h, &[]).await;
    assert_eq!(flags, "01", "a new trace is sampled");
    assert!(state.is_empty(), "{state:?}");
    let ((again, other_parent, _), _) = upstream_trace(&h, &[]).await;
    assert_ne!(again, trace, "a new trace per request");
    assert_ne!(other_parent, parent);
    // A client's `Connection` header cannot remove it.
    let ((_, _, _), _) = upstream_trace(&h, &[("connection", "traceparent")]).await;
}

#[tokio::test]
async fn a_trusted_proxys_trace_is_kept_with_a_new_parent_and_its_tracestate() {
    let h = Harness::with(trusting()).await;
    let ((trace, parent, flags), state) = upstream_trace(
        &h,
        &[
            ("traceparent", THEIRS),
            ("tracestate", "vendor=a1,other=b2"),
        ],
    )
    .await;
    assert_eq!(trace, TRACE_ID);
    assert_ne!(parent, PARENT_ID, "the gateway's own span is the parent");
    assert_eq!(flags, "01");
    assert_eq!(state, ["vendor=a1,other=b2"]);
    // Each request gets its own parent id; an unsampled trace stays unsampled.
    let unsampled = THEIRS.replace("-01", "-00");
    let ((trace, second, flags), state) = upstream_trace(&h, &[("traceparent", &unsampled)]).await;
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE_ID, "00"));
    assert_ne!(second, parent);
    assert!(state.is_empty(), "{state:?}");
}

#[tokio::test]
async fn an_untrusted_clients_trace_context_is_replaced() {
    let h = Harness::start().await;
    let ((trace, parent, flags), state) =
        upstream_trace(&h, &[("traceparent", THEIRS), ("tracestate", "vendor=a1")]).await;
    assert_ne!(trace, TRACE_ID);
    assert_ne!(parent, PARENT_ID);
    assert_eq!(flags, "01");
    assert!(state.is_empty(), "tracestate dropped: {state:?}");
}

#[tokio::test]
async fn an_invalid_traceparent_from_a_trusted_proxy_is_replaced() {
    let h = Harness::with(trusting()).await;
    for invalid in [
        THEIRS.to_uppercase(),
        THEIRS.replace(TRACE_ID, &"0".repeat(32)),
        THEIRS.replace(PARENT_ID, &"0".repeat(16)),
        THEIRS.replacen("00-", "01-", 1),
        THEIRS.replacen("00-", "ff-", 1),
        format!("{THEIRS}-extra"),
        "00-4bf92f3577b34da6-00f067aa0ba902b7-01".into(),
        "garbage".into(),
    ] {
        let ((trace, _, flags), state) = upstream_trace(
            &h,
            &[("traceparent", &invalid), ("tracestate", "vendor=a1")],
        )
        .await;
        assert_ne!(trace, TRACE_ID, "{invalid}");
        assert_eq!(flags, "01", "{invalid}");
        assert!(state.is_empty(), "{invalid}: tracestate dropped: {state:?}");
    }
}
