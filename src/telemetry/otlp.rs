//! OTLP export of the spans (feature `otlp`, `[telemetry]`): the tracing-opentelemetry layer
//! over an SDK tracer (parent-based ratio sampling), a bounded queue of ended spans, and a
//! background task that sends them in batches to `<otlp_endpoint>/v1/traces` (OTLP/HTTP,
//! protobuf) with our own hyper client.
//!
//! The export runs on its own single-threaded runtime: a collector that is down or slow
//! costs requests nothing. A request only puts its ended spans in the queue (`try_send`); a
//! full queue drops them, and drops and failed exports are counted and logged at most once a
//! minute.

use super::{TraceParent, SAMPLED, TRACEPARENT};
use crate::config::TelemetryConfig;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Ended spans waiting for export; past this, new ones are dropped (and counted).
const QUEUE: usize = 2048;
/// Spans per export request.
const BATCH: usize = 512;
/// Queued spans are sent at least this often.
const EVERY: Duration = Duration::from_secs(2);
/// One export request, retries included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Drops and failed exports are logged at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// How long shutting down waits for the last spans to be sent.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// The running OTLP exporter: keep it for the process's life, and call
/// [`Export::shutdown`] on the way out to send what is queued.
pub struct Export {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    flushes: mpsc::UnboundedSender<std::sync::mpsc::SyncSender<()>>,
    /// The export task's runtime (one thread), stopped without waiting when dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export").finish_non_exhaustive()
    }
}

impl Export {
    /// Starts the exporter for `config`: nothing is sent until spans end.
    pub(crate) fn start(config: &TelemetryConfig) -> Result<Export, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| format!("telemetry: cannot start the export thread: {e}"))?;
        let client = Hyper::new();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(config.traces_url())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
        // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read; `service_name` wins.
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        exporter.set_resource(&resource);
        let (spans, queued) = mpsc::channel(QUEUE);
        let (flushes, flush_requests) = mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicU64::new(0));
        runtime.spawn(export_loop(
            exporter,
            queued,
            flush_requests,
            Arc::clone(&dropped),
        ));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Queue { spans, dropped })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("oidc-gateway");
        Ok(Export {
            provider,
            tracer,
            flushes,
            runtime: Some(runtime),
        })
    }

    /// The layer that turns spans into OpenTelemetry spans; give it only the gateway's
    /// ([`super::exported`]).
    pub(crate) fn layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .boxed()
    }

    /// Sends every span queued so far; waits at most `timeout`. Blocks the calling thread.
    pub fn flush(&self, timeout: Duration) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.flushes.send(done).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }

    /// Sends what is queued (within 5 s) and stops exporting.
    pub fn shutdown(self) {
        self.flush(SHUTDOWN_FLUSH);
        let _ = self.provider.shutdown();
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Allowed anywhere, an async context included; the thread is not waited for.
            runtime.shutdown_background();
        }
    }
}

/// Makes `span` (the `request` span, not yet started) the child of a trusted proxy's span.
pub(super) fn set_remote_parent(span: &Span, parent: &TraceParent, state: Option<&HeaderValue>) {
    if span.is_disabled() {
        return;
    }
    let state = state
        .and_then(|s| s.to_str().ok())
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.parent_id),
        TraceFlags::new(parent.flags & SAMPLED),
        true,
        state,
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// Puts `span`'s trace id, span id and sampled flag in the request's `traceparent`.
pub(super) fn put_span_in_traceparent(span: &Span, headers: &mut HeaderMap) {
    let context = span.context();
    let own = context.span().span_context().clone();
    if !own.is_valid() {
        return;
    }
    let parent = TraceParent {
        trace_id: own.trace_id().to_bytes(),
        parent_id: own.span_id().to_bytes(),
        flags: if own.is_sampled() { SAMPLED } else { 0 },
    };
    headers.insert(TRACEPARENT, parent.header());
}

/// The span processor: ended, sampled spans go to the bounded queue, or are dropped.
#[derive(Debug)]
struct Queue {
    spans: mpsc::Sender<SpanData>,
    dropped: Arc<AtomicU64>,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.spans.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// [`Export::flush`] flushes (with a bound on the wait).
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Sends the queued spans in batches: when `BATCH` are waiting, every `EVERY`, and on a
/// flush request (acknowledged once sent). Runs until the exporter is dropped.
async fn export_loop(
    exporter: opentelemetry_otlp::SpanExporter,
    mut queued: mpsc::Receiver<SpanData>,
    mut flush_requests: mpsc::UnboundedReceiver<std::sync::mpsc::SyncSender<()>>,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut report = Report::default();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            span = queued.recv() => {
                let Some(span) = span else { break };
                batch.push(span);
                if batch.len() >= BATCH {
                    send(&exporter, &mut batch, &mut report).await;
                }
            }
            _ = tick.tick() => {
                send(&exporter, &mut batch, &mut report).await;
                let _ = report.log(&dropped);
            }
            done = flush_requests.recv() => {
                let Some(done) = done else { break };
                while let Ok(span) = queued.try_recv() {
                    batch.push(span);
                    if batch.len() >= BATCH {
                        send(&exporter, &mut batch, &mut report).await;
                    }
                }
                send(&exporter, &mut batch, &mut report).await;
                let _ = report.log(&dropped);
                let _ = done.send(());
            }
        }
    }
}

async fn send(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: &mut Vec<SpanData>,
    report: &mut Report,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::replace(batch, Vec::with_capacity(BATCH));
    let count = spans.len() as u64;
    let error = match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(spans)).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {EXPORT_TIMEOUT:?}"),
    };
    report.failed += count;
    report.error = Some(error);
}

/// Spans lost since the last warning, and when that was.
#[derive(Default)]
struct Report {
    failed: u64,
    error: Option<String>,
    dropped_before: u64,
    logged: Option<Instant>,
}

impl Report {
    /// Logs the spans lost (queue full, or export failed) since the last warning, at most
    /// once every `REPORT_EVERY`; whether it did.
    fn log(&mut self, dropped: &AtomicU64) -> bool {
        if self.logged.is_some_and(|at| at.elapsed() < REPORT_EVERY) {
            return false;
        }
        let dropped_total = dropped.load(Ordering::Relaxed);
        let dropped = dropped_total - self.dropped_before;
        if dropped == 0 && self.failed == 0 {
            return false;
        }
        tracing::warn!(
            dropped,
            failed = self.failed,
            error = self.error.as_deref(),
            "spans not exported to the OTLP collector (dropped: the queue was full; failed: the collector did not take them)"
        );
        self.dropped_before = dropped_total;
        self.failed = 0;
        self.error = None;
        self.logged = Some(Instant::now());
        true
    }
}

/// The export's HTTP client: hyper on the export runtime, https with the system's roots
/// (else the bundled Mozilla roots), a bounded response.
#[derive(Debug)]
struct Hyper {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Hyper {
    fn new() -> Hyper {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        http.set_nodelay(true);
        let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(b) => b,
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
        };
        let connector = builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Hyper {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for Hyper {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let work = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, 64 * 1024).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        tokio::time::timeout(EXPORT_TIMEOUT, work)
            .await
            .map_err(|_| HttpError::from("the collector did not answer in time"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_are_logged_at_most_once_a_minute() {
        let dropped = AtomicU64::new(0);
        let mut report = Report::default();
        assert!(!report.log(&dropped), "nothing lost, nothing said");
        dropped.store(3, Ordering::Relaxed);
        assert!(report.log(&dropped));
        dropped.store(5, Ordering::Relaxed);
        report.failed = 512;
        assert!(!report.log(&dropped), "not again within the minute");
        report.logged = Some(Instant::now() - REPORT_EVERY);
        assert!(
            report.log(&dropped),
            "the two drops and the failed batch since"
        );
        assert_eq!((report.failed, report.dropped_before), (0, 5));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (spans, _queued) = mpsc::channel(1);
        let queue = Queue {
            spans,
            dropped: Arc::default(),
        };
        let tracer_provider = SdkTracerProvider::builder().build();
        let tracer = tracer_provider.tracer("t");
        let span = |_| {
            use opentelemetry::trace::Tracer as _;
            tracer.start("s").exported_data().expect("a recorded span")
        };
        for i in 0..3 {
            queue.on_end(span(i));
        }
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
    }
}
