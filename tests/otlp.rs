//! OTLP export (docs/behaviour.md §12.6), with the `otlp` feature: a collector in the test
//! (an OTLP/HTTP listener that decodes every POST to /v1/traces) receives the spans of a
//! real gateway configured with `[telemetry] otlp_endpoint`: the provider calls of start-up
//! and of a login (discovery, JWKS, token), and a proxied request carrying a trusted proxy's
//! `traceparent` (its `request` span in the proxy's trace, under the proxy's span, and its
//! `upstream` span, whose id the upstream received as parent id). No span attribute holds a
//! token, a cookie value or a query string.
//!
//! Its own test binary: the exporter is installed in the process-wide tracing subscriber.
//! `.ci/run` runs it as `cargo test --features otlp --test otlp`.
#![cfg(feature = "otlp")]

mod common;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use oidc_gateway::config::Config;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// One POST to /v1/traces: its decoded body, and the bytes as received.
type Post = (ExportTraceServiceRequest, Vec<u8>);

/// What the collector received; `stall` makes it answer 3 s late.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Post>>>, Arc<AtomicBool>);

impl Received {
    /// Every span received so far, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for (request, _) in self.0.lock().unwrap().iter() {
            for resource in &request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| attr(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }

    /// Every request body as received (protobuf: strings are in it as they are).
    fn raw(&self) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, raw)| raw.clone())
            .collect()
    }
}

/// An OTLP/HTTP collector on 127.0.0.1: answers POST /v1/traces (protobuf) with 200.
async fn start_collector() -> (std::net::SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        if store.1.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        }
                        let ok = request.method() == http::Method::POST
                            && request.uri().path() == "/v1/traces"
                            && request.headers()["content-type"] == "application/x-protobuf";
                        let body = request.into_body().collect().await?.to_bytes();
                        let status = if ok {
                            let decoded = ExportTraceServiceRequest::decode(body.clone())
                                .expect("an OTLP protobuf body");
                            store.0.lock().unwrap().push((decoded, body.to_vec()));
                            200
                        } else {
                            404
                        };
                        let mut response = http::Response::new(Full::new(bytes::Bytes::new()));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, hyper::Error>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            any_value::Value::StringValue(s) => s.clone(),
            any_value::Value::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's name, ids and attributes on one line, for assertion messages.
fn describe(span: &Span) -> String {
    let attributes: Vec<String> = span
        .attributes
        .iter()
        .map(|kv| {
            format!(
                "{}={}",
                kv.key,
                attr(&span.attributes, &kv.key).unwrap_or_default()
            )
        })
        .collect();
    format!(
        "{} trace={} span={} parent={} kind={} [{}]",
        span.name,
        hex(&span.trace_id),
        hex(&span.span_id),
        hex(&span.parent_span_id),
        span.kind,
        attributes.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_in_the_proxys_trace_without_secrets() {
    let (collector, received) = start_collector().await;
    // Sessions in Redis when redis-server is there (CI has it): its calls are traced too.
    let redis = RedisServer::start_or_skip("otlp: the redis spans");
    let options = Options {
        session: if redis.is_some() {
            "store = \"redis\"".into()
        } else {
            String::new()
        },
        redis: redis.as_ref().map(|r| format!("url = \"{}\"", r.url())),
        server: r#"trusted_proxies = ["127.0.0.1"]"#.into(),
        headers: "pass_access_token = true".into(),
        telemetry: Some(format!(
            "otlp_endpoint = \"http://{collector}\"\nservice_name = \"gateway-under-test\"\n"
        )),
        ..Options::default()
    };
    // Logging and export first, as `run` does: the start-up's discovery and JWKS calls are
    // traced too.
    let text = toml("http://127.0.0.1:9", "http://127.0.0.1:9", &options);
    let config = Config::from_toml(&text, "test", None).expect("config with [telemetry]");
    let (_control, export) =
        oidc_gateway::observe::init_logging(&config.log, config.telemetry.as_ref())
            .expect("logging and export start");
    let export = export.expect("[telemetry] starts an exporter");

    let h = Harness::with(options).await;
    let browser = Browser::new();
    let r = h.login(&browser, "/app", "alice").await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let info = h.info(&browser).await;
    let access_token = info["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    let cookie = browser
        .cookie_value(&h.url("/"), "oidc_session")
        .expect("session cookie");

    // A proxied request from a trusted proxy that is in a trace, with a query to keep out.
    let query_secret = "q-secret-0123456789";
    let r = browser
        .get_with(
            &h.url(&format!("/app/traced?token={query_secret}")),
            &[("traceparent", &format!("00-{TRACE_ID}-{PARENT_ID}-01"))],
        )
        .await;
    let echo = Echo::of(r).await;
    assert_eq!(echo.header("oidc_access_token"), Some(access_token.clone()));
    let sent = echo.header("traceparent").expect("traceparent upstream");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE_ID, "01"),
        "{sent}"
    );
    let upstream_parent = parts[2].to_string();

    // The spans arrive (batched in the background: flush until they are all there).
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        tokio::task::block_in_place(|| export.flush(Duration::from_secs(5)));
        let spans = received.spans();
        let has = |name: &str| spans.iter().any(|(_, s)| s.name == name);
        let traced_request = spans
            .iter()
            .any(|(_, s)| s.name == "request" && hex(&s.trace_id) == TRACE_ID);
        let done = traced_request
            && has("upstream")
            && (redis.is_none() || spans.iter().any(|(_, s)| s.name.starts_with("redis ")))
            && ["discovery", "jwks", "token"]
                .iter()
                .all(|e| has(&format!("provider {e}")));
        if done {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans missing; received:\n{}",
            spans
                .iter()
                .map(|(_, s)| describe(s))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let listing = spans
        .iter()
        .map(|(_, s)| describe(s))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("received spans:\n{listing}");
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "gateway-under-test"),
        "service.name: {listing}"
    );

    // The request span: the proxy's trace, under the proxy's span; method, route, status.
    let request = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "request" && hex(&s.trace_id) == TRACE_ID)
        .unwrap();
    assert_eq!(
        hex(&request.parent_span_id),
        PARENT_ID,
        "{}",
        describe(request)
    );
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(
        attr(&request.attributes, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attr(&request.attributes, "http.route").as_deref(),
        Some("/")
    );
    assert_eq!(
        attr(&request.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );

    // Its upstream span: the request's child, and the parent the upstream was given.
    let upstream = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "upstream" && s.parent_span_id == request.span_id)
        .unwrap_or_else(|| panic!("an upstream span under the request:\n{listing}"));
    assert_eq!(upstream.trace_id, request.trace_id);
    assert_eq!(
        hex(&upstream.span_id),
        upstream_parent,
        "{}",
        describe(upstream)
    );
    assert_eq!(upstream.kind, SpanKind::Client as i32);
    assert_eq!(
        attr(&upstream.attributes, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attr(&upstream.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );

    // The provider calls, each naming its endpoint; the token exchange in the callback's
    // request span.
    for endpoint in ["discovery", "jwks", "token"] {
        let call = spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.name == format!("provider {endpoint}"))
            .unwrap();
        assert_eq!(
            attr(&call.attributes, "endpoint").as_deref(),
            Some(endpoint)
        );
        assert_eq!(call.kind, SpanKind::Client as i32);
        assert_eq!(
            attr(&call.attributes, "http.response.status_code").as_deref(),
            Some("200")
        );
    }
    let token = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "provider token")
        .unwrap();
    let callback = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.span_id == token.parent_span_id)
        .unwrap_or_else(|| panic!("the token call's parent:\n{listing}"));
    assert_eq!(callback.name, "request", "{}", describe(callback));

    // Redis calls: the command names only.
    for (_, call) in spans.iter().filter(|(_, s)| s.name.starts_with("redis ")) {
        let operation = attr(&call.attributes, "db.operation.name").unwrap_or_default();
        assert_eq!(call.name, format!("redis {operation}"));
        assert!(
            operation
                .split(' ')
                .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_uppercase())),
            "{}",
            describe(call)
        );
        assert_eq!(
            attr(&call.attributes, "db.system.name").as_deref(),
            Some("redis")
        );
    }

    // No secret anywhere in what the collector received (protobuf keeps strings as they
    // are), nor in any decoded attribute.
    let secrets = [
        ("access token", access_token.as_str()),
        ("session cookie", cookie.as_str()),
        ("query", query_secret),
        ("client secret", "gateway-secret"),
        ("passphrase", PASSPHRASE),
        // Every Redis key starts with the prefix.
        ("a Redis key", "oidc_gateway:"),
    ];
    for raw in received.raw() {
        for (what, secret) in secrets {
            assert!(
                !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the {what} was exported"
            );
        }
    }
    for (_, span) in &spans {
        for kv in &span.attributes {
            let value = attr(&span.attributes, &kv.key).unwrap_or_default();
            for (what, secret) in secrets {
                assert!(!value.contains(secret), "{what} in {}", describe(span));
            }
            assert!(!value.contains('?'), "no query string: {}", describe(span));
        }
    }

    // A collector that stops answering costs requests nothing: spans wait in the queue
    // (or are dropped), and a flush gives up at its bound.
    received.1.store(true, Ordering::Relaxed);
    let client = raw_client();
    for _ in 0..3 {
        let _ = client.get(h.url("/public/warm")).send().await.unwrap();
        tokio::task::block_in_place(|| export.flush(Duration::from_millis(100)));
    }
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let started = Instant::now();
        let r = client
            .get(h.url(&format!("/public/stalled/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "slowest request: {slowest:?}"
    );
    let started = Instant::now();
    tokio::task::block_in_place(|| export.flush(Duration::from_millis(300)));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "flush is bounded"
    );

    received.1.store(false, Ordering::Relaxed);
    tokio::task::block_in_place(|| export.shutdown());
}
