//! Tracing (docs/behaviour.md §12.6): W3C Trace Context propagation to the upstream, always
//! on, and the spans of a request (`request`, `upstream`, `provider`, `redis`), which cost
//! nothing unless OTLP export is on (`[telemetry]`, the `otlp` feature: `otlp.rs`).
//!
//! Propagation: a trusted proxy's valid `traceparent` gives the request its trace id and
//! parent (its `tracestate` is passed on as it came); any other request starts a new trace.
//! The upstream receives a `traceparent` with that trace id and the gateway's own span id
//! for the upstream call as parent id. Client-sent values from other peers are replaced.
//!
//! The spans are `tracing` spans with target [`SPANS`], which no log layer shows: without
//! an OTLP exporter, every span macro here finds its callsite disabled (one atomic load) and
//! returns a disabled span, and nothing else is done. Only `request` is entered (it is the
//! parent of the others); `upstream`, `provider` and `redis` are leaves, made before their
//! call (their parent is the span current then) and dropped after it: no future wrapper,
//! so no deeper future nesting.

#[cfg(feature = "otlp")]
mod otlp;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use rand::RngCore;
use tracing::field::Empty;
use tracing::Span;

#[cfg(feature = "otlp")]
pub use otlp::Export;

/// The target of the gateway's spans; log layers leave it out, the OTLP layer takes only it.
pub const SPANS: &str = "oidc_gateway::spans";

/// Whether the OTLP layer takes `meta`: the gateway's spans, nothing else (no event, so no
/// log line becomes a span event).
pub(crate) fn exported(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == SPANS
}

pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The longest `tracestate` passed on (W3C: vendors propagate at least 512 characters).
const MAX_TRACESTATE_LEN: usize = 512;

/// `traceparent`'s sampled flag.
const SAMPLED: u8 = 0x01;

/// A `traceparent` (version 00): trace id, parent id and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a W3C Trace Context `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase
    /// hex, neither id all zeros. Anything else (another version included) is `None`.
    pub(crate) fn parse(value: &[u8]) -> Option<TraceParent> {
        let value = value.trim_ascii();
        if value.len() != 55 || !value.starts_with(b"00-") || value[35] != b'-' || value[52] != b'-'
        {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        let mut flags = [0u8; 1];
        hex_decode(&value[3..35], &mut trace_id)?;
        hex_decode(&value[36..52], &mut parent_id)?;
        hex_decode(&value[53..55], &mut flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags: flags[0],
        })
    }

    /// Whether the caller may have recorded the trace (the sampled flag).
    pub(crate) fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The header value: one allocation (the 55 bytes), shared by clones.
    pub(crate) fn header(&self) -> HeaderValue {
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_encode(&self.trace_id, &mut text[3..35]);
        hex_encode(&self.parent_id, &mut text[36..52]);
        hex_encode(&[self.flags], &mut text[53..55]);
        HeaderValue::from_maybe_shared(Bytes::from_owner(text))
            .expect("hex is a valid header value")
    }
}

fn hex_decode(hex: &[u8], out: &mut [u8]) -> Option<()> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(())
}

fn hex_encode(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// Random bytes, never all zeros (an all-zero id is invalid).
fn random_id<const N: usize>() -> [u8; N] {
    let mut id = [0u8; N];
    while id == [0u8; N] {
        rand::thread_rng().fill_bytes(&mut id);
    }
    id
}

/// A `tracestate` worth passing on: 1 to 512 printable ASCII characters.
fn sane_tracestate(value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    !v.trim_ascii().is_empty()
        && v.len() <= MAX_TRACESTATE_LEN
        && v.iter().all(|b| (0x20..=0x7e).contains(b))
}

/// The trace context of one request on the proxied listeners, and its `request` span.
pub(crate) struct Trace {
    /// A trusted proxy's valid `traceparent`; `None` starts a new trace.
    parent: Option<TraceParent>,
    /// The trusted proxy's `tracestate`, only with `parent`.
    state: Option<HeaderValue>,
    /// `request`: disabled (and free) unless OTLP export is on.
    span: Span,
}

impl Trace {
    /// Reads `traceparent`/`tracestate` when the peer is a trusted proxy (nothing is parsed
    /// for other peers) and opens the `request` span, a child of the proxy's span.
    pub(crate) fn incoming(trusted: bool, method: &Method, headers: &HeaderMap) -> Trace {
        let mut parents = headers.get_all(TRACEPARENT).iter();
        let parent = match (trusted, parents.next(), parents.next()) {
            // One header only: two traceparents are not a trace context.
            (true, Some(value), None) => TraceParent::parse(value.as_bytes()),
            _ => None,
        };
        let state = match parent {
            Some(_) => tracestate(headers),
            None => None,
        };
        let span = tracing::info_span!(
            target: SPANS,
            "request",
            otel.kind = "server",
            http.request.method = %method,
            http.route = Empty,
            http.response.status_code = Empty,
            otel.status_code = Empty,
        );
        #[cfg(feature = "otlp")]
        if let Some(parent) = &parent {
            otlp::set_remote_parent(&span, parent, state.as_ref());
        }
        Trace {
            parent,
            state,
            span,
        }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// For a request going to `route`'s upstream: records the route and replaces any
    /// `traceparent`/`tracestate` with the request's own (see the module docs). The parent
    /// id is a new span id; with OTLP on, [`upstream_span`] puts its span's id there.
    pub(crate) fn forward(&self, route: &str, headers: &mut HeaderMap) {
        self.span.record("http.route", route);
        let parent = TraceParent {
            trace_id: self.parent.map_or_else(random_id, |p| p.trace_id),
            parent_id: random_id(),
            // A new trace is sampled: the upstream decides as if it had started it.
            flags: match self.parent {
                Some(p) if !p.sampled() => 0,
                _ => SAMPLED,
            },
        };
        headers.insert(TRACEPARENT, parent.header());
        match &self.state {
            Some(state) => headers.insert(TRACESTATE, state.clone()),
            None => headers.remove(TRACESTATE),
        };
    }

    /// Records the response status on the `request` span (5xx marks it failed).
    pub(crate) fn finish(&self, status: StatusCode) {
        if self.span.is_disabled() {
            return;
        }
        self.span
            .record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            self.span.record("otel.status_code", "error");
        }
    }
}

/// The proxy's `tracestate`: one header as it is (no copy), several joined by commas.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all(TRACESTATE).iter();
    let first = all.next()?;
    let state = match all.next() {
        None => first.clone(),
        Some(_) => {
            let joined: Vec<&[u8]> = headers
                .get_all(TRACESTATE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            HeaderValue::from_bytes(&joined.join(&b","[..])).ok()?
        }
    };
    sane_tracestate(&state).then_some(state)
}

/// The `upstream` span, around sending `request` to `host`. With OTLP on, the request's
/// `traceparent` (set by [`Trace::forward`]) is rewritten to carry this span's ids, so the
/// upstream's spans are its children.
pub(crate) fn upstream_span<B>(host: &str, request: &mut http::Request<B>) -> Span {
    let span = tracing::info_span!(
        target: SPANS,
        "upstream",
        otel.kind = "client",
        http.request.method = %request.method(),
        server.address = host,
        http.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    );
    #[cfg(feature = "otlp")]
    if !span.is_disabled() {
        otlp::put_span_in_traceparent(&span, request.headers_mut());
    }
    #[cfg(not(feature = "otlp"))]
    let _ = request;
    span
}

/// Records how an upstream call ended: its status, or why it failed (`timeout`,
/// `unreachable`).
pub(crate) fn upstream_outcome(span: &Span, outcome: Result<StatusCode, &'static str>) {
    if span.is_disabled() {
        return;
    }
    match outcome {
        Ok(status) => {
            span.record("http.response.status_code", status.as_u16());
        }
        Err(kind) => {
            span.record("error.type", kind);
            span.record("otel.status_code", "error");
        }
    }
}

/// The `provider` span of a call to the provider's `endpoint` (`discovery`, `token`, …):
/// named `provider <endpoint>`, with the endpoint and the response status; never a URL.
pub(crate) fn provider_span(endpoint: &'static str) -> Span {
    tracing::info_span!(
        target: SPANS,
        "provider",
        otel.name = %format_args!("provider {endpoint}"),
        otel.kind = "client",
        endpoint,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    )
}

/// Records a provider call's response status (`None`: no response).
pub(crate) fn provider_outcome(span: &Span, status: Option<StatusCode>) {
    if span.is_disabled() {
        return;
    }
    if let Some(status) = status {
        span.record("http.response.status_code", status.as_u16());
    }
    if !status.is_some_and(|s| s.is_success()) {
        span.record("otel.status_code", "error");
    }
}

/// The `redis <COMMAND>` span of one command or pipeline: `operation` gives the command
/// name(s), and is called only when the span is enabled. Never a key or a value.
pub(crate) fn redis_span<D: std::fmt::Display>(operation: impl FnOnce() -> D) -> Span {
    let span = tracing::info_span!(
        target: SPANS,
        "redis",
        otel.name = Empty,
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = Empty,
        otel.status_code = Empty,
    );
    if !span.is_disabled() {
        let operation = operation().to_string();
        span.record("otel.name", format!("redis {operation}"));
        span.record("db.operation.name", operation);
    }
    span
}

/// Records whether a Redis call succeeded.
pub(crate) fn redis_outcome(span: &Span, ok: bool) {
    if !ok {
        span.record("otel.status_code", "error");
    }
}

/// The OTLP exporter of a binary built without the `otlp` feature: there is none (a
/// `[telemetry]` section is a configuration error there).
#[cfg(not(feature = "otlp"))]
#[derive(Debug)]
pub enum Export {}

#[cfg(not(feature = "otlp"))]
impl Export {
    pub(crate) fn start(_config: &crate::config::TelemetryConfig) -> Result<Export, String> {
        Err("telemetry.otlp_endpoint: this binary was built without the otlp feature".into())
    }

    /// Exports what is queued; waits at most `timeout`.
    pub fn flush(&self, _timeout: std::time::Duration) {
        match *self {}
    }

    /// Exports what is queued and stops.
    pub fn shutdown(self) {
        match self {}
    }

    pub(crate) fn layer<S>(&self) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips() {
        let p = TraceParent::parse(VALID.as_bytes()).unwrap();
        assert_eq!(p.trace_id[0], 0x4b);
        assert_eq!(p.parent_id[7], 0xb7);
        assert!(p.sampled());
        assert_eq!(p.header(), VALID);
        let p = TraceParent::parse(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ")
            .unwrap();
        assert!(!p.sampled());
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00",
            // Another version, uppercase hex, all-zero ids, a missing dash, a short id,
            // trailing data, a non-hex flag.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    fn forwarded(trusted: bool, sent: &[(&str, &str)]) -> HeaderMap {
        let trace = Trace::incoming(trusted, &Method::GET, &headers(sent));
        let mut out = headers(sent);
        trace.forward("/", &mut out);
        out
    }

    #[test]
    fn a_trusted_proxys_trace_is_continued_with_a_new_parent() {
        let out = forwarded(true, &[("traceparent", VALID), ("tracestate", "a=1,b=2")]);
        let sent = TraceParent::parse(out[TRACEPARENT].as_bytes()).unwrap();
        let theirs = TraceParent::parse(VALID.as_bytes()).unwrap();
        assert_eq!(sent.trace_id, theirs.trace_id);
        assert_ne!(sent.parent_id, theirs.parent_id);
        assert!(sent.sampled());
        assert_eq!(out[TRACESTATE], "a=1,b=2");
        // Several tracestate headers are one list.
        let mut two = headers(&[("traceparent", VALID), ("tracestate", "a=1")]);
        two.append(TRACESTATE, HeaderValue::from_static("b=2"));
        let trace = Trace::incoming(true, &Method::GET, &two);
        trace.forward("/", &mut two);
        assert_eq!(
            two.get_all(TRACESTATE).iter().collect::<Vec<_>>(),
            ["a=1,b=2"]
        );
    }

    #[test]
    fn anyone_else_starts_a_new_trace() {
        let theirs = TraceParent::parse(VALID.as_bytes()).unwrap();
        let cases: [(bool, &[(&str, &str)]); 4] = [
            (false, &[("traceparent", VALID), ("tracestate", "a=1")]),
            (true, &[("traceparent", "00-xyz"), ("tracestate", "a=1")]),
            (true, &[("tracestate", "a=1")]),
            (false, &[]),
        ];
        for (trusted, sent) in cases {
            let out = forwarded(trusted, sent);
            let new = TraceParent::parse(out[TRACEPARENT].as_bytes()).unwrap();
            assert_ne!(new.trace_id, theirs.trace_id, "{sent:?}");
            assert!(new.sampled());
            assert!(out.get(TRACESTATE).is_none(), "{sent:?}");
            assert_eq!(out.get_all(TRACEPARENT).iter().count(), 1);
        }
        // Two traceparents from a trusted proxy are not a trace context.
        let mut two = headers(&[("traceparent", VALID)]);
        two.append(TRACEPARENT, HeaderValue::from_static(VALID));
        let trace = Trace::incoming(true, &Method::GET, &two);
        trace.forward("/", &mut two);
        let new = TraceParent::parse(two[TRACEPARENT].as_bytes()).unwrap();
        assert_ne!(new.trace_id, theirs.trace_id);
        // An unsampled trace stays unsampled; an odd tracestate is dropped.
        let unsampled = VALID.replace("-01", "-00");
        let out = forwarded(
            true,
            &[("traceparent", &unsampled), ("tracestate", "a=\u{e9}")],
        );
        assert!(!TraceParent::parse(out[TRACEPARENT].as_bytes())
            .unwrap()
            .sampled());
        assert!(out.get(TRACESTATE).is_none());
        let long = "a=".to_string() + &"x".repeat(MAX_TRACESTATE_LEN);
        let out = forwarded(true, &[("traceparent", VALID), ("tracestate", &long)]);
        assert!(out.get(TRACESTATE).is_none());
    }

    #[test]
    fn without_a_subscriber_the_spans_are_disabled() {
        let trace = Trace::incoming(false, &Method::GET, &HeaderMap::new());
        assert!(trace.span().is_disabled());
        let mut request = http::Request::new(());
        assert!(upstream_span("app", &mut request).is_disabled());
        assert!(provider_span("token").is_disabled());
        let mut called = false;
        assert!(redis_span(|| {
            called = true;
            "GET"
        })
        .is_disabled());
        assert!(!called, "the command name is not looked at");
    }
}
