//! Logging set-up (`[log]`: format, level, the access log), with the OTLP span layer of
//! `[telemetry]` next to it (`crate::telemetry`). The metrics are in `crate::metrics`.

use crate::config::{
    parse_log_level, AuthKind, LogConfig, LogFormat, RouteConfig, TelemetryConfig,
};
use crate::response::Body;
use crate::telemetry::{self, Export};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Body as _;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt::Write;
use std::time::{Duration, Instant};
use tracing::Subscriber;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

/// Changes the log level of the running process (`[log] level` on a config reload).
pub struct LogControl {
    filter: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

impl LogControl {
    /// Filters by `directives` (a `log.level` value) from now on. An invalid value is an
    /// error and changes nothing. When `RUST_LOG` was set at start, it stays in force: the
    /// value is checked, and `Ok` returned without a change ([`LogControl::env_overrides`]).
    pub fn set_level(&self, directives: &str) -> Result<(), String> {
        let filter = parse_log_level(directives)?;
        if self.from_env {
            return Ok(());
        }
        self.filter
            .reload(filter)
            .map_err(|e| format!("the log filter cannot be changed: {e}"))
    }

    /// Whether `RUST_LOG` decides the level (set when logging started), not `log.level`.
    pub fn env_overrides(&self) -> bool {
        self.from_env
    }
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("from_env", &self.from_env)
            .finish_non_exhaustive()
    }
}

/// The formatting layer of `format` writing to `writer`: tracing's text lines, or one JSON
/// object per line with the event's fields at the top level (`timestamp`, `level`,
/// `target`, then the fields). The gateway's spans (`telemetry::SPANS`, for OTLP export)
/// never show in it, whatever the level.
pub fn fmt_layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // The hint says "no bound of its own": without one, the subscriber could not bound the
    // level, and every disabled `debug!` on the request path would still be evaluated.
    let logged = || {
        filter_fn(|meta| meta.target() != telemetry::SPANS).with_max_level_hint(LevelFilter::TRACE)
    };
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(logged())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .with_writer(writer)
            .with_filter(logged())
            .boxed(),
    }
}

/// The subscriber for `config` writing to `writer`, and the handle that changes its level.
/// `env` is `RUST_LOG`: when set (not blank) it wins over `config.level`; its invalid
/// directives are skipped, each named on stderr. With `export`, the gateway's spans go to
/// it; they are never logged.
fn subscriber<W>(
    config: &LogConfig,
    writer: W,
    ansi: bool,
    env: Option<&str>,
    export: Option<&Export>,
) -> Result<(impl Subscriber + Send + Sync + 'static, LogControl), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let env = env.filter(|v| !v.trim().is_empty());
    let filter = match env {
        Some(directives) => EnvFilter::builder().parse_lossy(directives),
        None => parse_log_level(&config.level).map_err(|e| format!("log.level: {e}"))?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    // fmt_layer leaves the spans out too, but from inside: said here, a span no layer
    // wants is not even made.
    let logged = filter.and(
        filter_fn(|meta| meta.target() != telemetry::SPANS).with_max_level_hint(LevelFilter::TRACE),
    );
    // Filtered even without an exporter: an unfiltered layer (`None` too) would enable
    // every span for every layer.
    let exporting = export.is_some();
    // The gateway's spans are at INFO; without an exporter nothing passes (OFF).
    let exported = filter_fn(move |meta| exporting && telemetry::exported(meta))
        .with_max_level_hint(if exporting {
            LevelFilter::INFO
        } else {
            LevelFilter::OFF
        });
    let subscriber = tracing_subscriber::registry()
        // Per layer: the level decides what is logged, not which spans are exported.
        .with(fmt_layer(config.format, writer, ansi).with_filter(logged))
        .with(export.map(|export| export.layer()).with_filter(exported));
    let control = LogControl {
        filter: handle,
        from_env: env.is_some(),
    };
    Ok((subscriber, control))
}

/// Installs the process's tracing subscriber from `[log]`, writing to stderr (colours only
/// for text on a terminal). `RUST_LOG`, when set, wins over `log.level`. With `[telemetry]`,
/// also starts the OTLP exporter of the spans: keep it, and shut it down on exit.
pub fn init_logging(
    config: &LogConfig,
    telemetry: Option<&TelemetryConfig>,
) -> Result<(LogControl, Option<Export>), String> {
    let ansi =
        config.format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_logging_to(config, telemetry, std::io::stderr, ansi)
}

/// [`init_logging`] writing to `writer` instead of stderr.
pub fn init_logging_to<W>(
    config: &LogConfig,
    telemetry: Option<&TelemetryConfig>,
    writer: W,
    ansi: bool,
) -> Result<(LogControl, Option<Export>), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let env = std::env::var("RUST_LOG").ok();
    let export = telemetry.map(Export::start).transpose()?;
    let (subscriber, control) = subscriber(config, writer, ansi, env.as_deref(), export.as_ref())?;
    subscriber
        .try_init()
        .map_err(|e| format!("logging cannot be set up: {e}"))?;
    Ok((control, export))
}

/// The target of the access log's events.
pub const ACCESS_TARGET: &str = "oidc_gateway::access";

/// A request being timed for the access log. Made only when `log.access` is on: with it
/// off, requests read no clock and allocate nothing for it.
pub(crate) struct Access {
    started: Instant,
    method: Method,
    /// The request target (its reference-counted bytes shared, not copied); only its path
    /// is logged, never the query, which can hold tokens.
    target: Option<PathAndQuery>,
}

/// What the pipeline's stages learned about a request for its access line (who, why it
/// was refused, how long the upstream took), carried in the response's extensions. Stages
/// add it only when the access log is on ([`note`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct AccessNote {
    /// The session's or bearer token's `sub`.
    pub sub: Option<String>,
    /// Why the request was refused: the failed check (a `GatewayError`'s text, or the
    /// reason a session cookie was not accepted). Never a token or cookie value.
    pub reason: Option<Cow<'static, str>>,
    /// From sending the request upstream to its response head.
    pub upstream: Option<Duration>,
}

/// The access note of `response`, added if it has none.
pub(crate) fn note(response: &mut Response<Body>) -> &mut AccessNote {
    response
        .extensions_mut()
        .get_or_insert_default::<AccessNote>()
}

/// Where the pipeline sent a request, for its access line.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Matched<'a> {
    /// Refused before a route was chosen (bad host, no route, bad path).
    Nothing,
    /// A redirect-URI hook request (callback, logout, info, …).
    Hook,
    Route(&'a RouteConfig),
}

fn auth_name(auth: AuthKind) -> &'static str {
    match auth {
        AuthKind::None => "none",
        AuthKind::OpenIdConnect => "openid-connect",
        AuthKind::OAuth20 => "oauth20",
    }
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// The first 8 bytes of SHA-256 of `sub`, in hex: the same user gives the same value, and
/// the value does not show who it is (for a guessable `sub` such as an e-mail address, it
/// is a pseudonym, not anonymity).
pub(crate) fn hash_sub(sub: &str) -> String {
    let digest = Sha256::digest(sub.as_bytes());
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Access {
    pub(crate) fn start<B>(request: &Request<B>) -> Access {
        Access {
            started: Instant::now(),
            method: request.method().clone(),
            target: request.uri().path_and_query().cloned(),
        }
    }

    /// Logs the request's access line, taking the stages' note off `response`. Called when
    /// the response head is ready: `duration_ms` does not include streaming the body, and
    /// `bytes` is the body's length when known (`Content-Length`, or a body the gateway
    /// wrote itself); a streamed body of unknown length is not counted.
    pub(crate) fn finish(
        self,
        id: &HeaderValue,
        matched: Matched<'_>,
        response: &mut Response<Body>,
        hash: bool,
    ) {
        let note = response
            .extensions_mut()
            .remove::<AccessNote>()
            .unwrap_or_default();
        let (route, auth) = match matched {
            Matched::Nothing => (None, None),
            Matched::Hook => (None, Some("hook")),
            Matched::Route(r) => (Some(r.path.as_str()), Some(auth_name(r.auth))),
        };
        let sub = match note.sub {
            Some(sub) if hash => Some(hash_sub(&sub)),
            sub => sub,
        };
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = %id.to_str().unwrap_or("-"),
            method = %self.method,
            path = %self.target.as_ref().map_or("/", PathAndQuery::path),
            route = route.map(tracing::field::display),
            auth = auth.map(tracing::field::display),
            status = response.status().as_u16(),
            bytes = response.body().size_hint().exact(),
            duration_ms = millis(self.started.elapsed()),
            upstream_ms = note.upstream.map(millis),
            sub = sub.as_deref(),
            reason = note.reason.as_deref(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The subscriber's level hint is what lets `debug!`/`trace!` on the request path cost
    /// nothing: with a filter that gives none, every disabled event is still evaluated.
    #[test]
    fn the_level_bounds_every_event_and_span_callsite() {
        for (level, want) in [("info", LevelFilter::INFO), ("warn", LevelFilter::WARN)] {
            let config = LogConfig {
                level: level.into(),
                ..LogConfig::default()
            };
            let (subscriber, _) = subscriber(&config, std::io::sink, false, None, None).unwrap();
            assert_eq!(subscriber.max_level_hint(), Some(want), "{level}");
        }
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    impl Sink {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    fn config(format: LogFormat, level: &str) -> LogConfig {
        LogConfig {
            format,
            level: level.into(),
            ..LogConfig::default()
        }
    }

    #[test]
    fn levels_are_checked() {
        assert!(parse_log_level("info").is_ok());
        assert!(parse_log_level(" warn , oidc_gateway=debug,oidc_gateway::access=off ").is_ok());
        assert!(parse_log_level("oidc_gateway[request]=trace").is_ok());
        for bad in ["", " ", "infoo", "info,oidc_gateway=loud", "=info"] {
            assert!(parse_log_level(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_level_changes_at_run_time_unless_rust_log_is_set() {
        let sink = Sink::default();
        let (logger, control) = subscriber(
            &config(LogFormat::Text, "warn"),
            sink.clone(),
            false,
            None,
            None,
        )
        .unwrap();
        tracing::subscriber::with_default(logger, || {
            tracing::info!("first info");
            tracing::warn!("first warn");
            // An invalid value changes nothing.
            assert!(control.set_level("info,oidc_gateway=loud").is_err());
            tracing::info!("still filtered");
            control.set_level("info").unwrap();
            tracing::info!("second info");
            tracing::debug!("second debug");
        });
        let out = sink.take();
        assert!(
            !out.contains("first info") && out.contains("first warn"),
            "{out}"
        );
        assert!(!out.contains("still filtered"), "{out}");
        assert!(
            out.contains("second info") && !out.contains("second debug"),
            "{out}"
        );
        assert!(!control.env_overrides());

        // RUST_LOG wins: set_level checks the value and keeps the filter.
        let sink = Sink::default();
        let (logger, control) = subscriber(
            &config(LogFormat::Text, "info"),
            sink.clone(),
            false,
            Some("error"),
            None,
        )
        .unwrap();
        tracing::subscriber::with_default(logger, || {
            assert!(control.set_level("infoo").is_err());
            control.set_level("debug").unwrap();
            tracing::warn!("a warning");
            tracing::error!("an error");
        });
        let out = sink.take();
        assert!(
            !out.contains("a warning") && out.contains("an error"),
            "{out}"
        );
        assert!(control.env_overrides());
    }

    #[test]
    fn the_gateway_spans_are_never_logged_and_cost_nothing_without_export() {
        let sink = Sink::default();
        let (logger, _control) = subscriber(
            &config(LogFormat::Text, "trace"),
            sink.clone(),
            false,
            None,
            None,
        )
        .unwrap();
        tracing::subscriber::with_default(logger, || {
            let span = telemetry::provider_span("token");
            assert!(span.is_disabled(), "no layer wants it");
            span.in_scope(|| tracing::info!("inside"));
        });
        let out = sink.take();
        assert!(out.contains("inside"), "{out}");
        assert!(!out.contains("provider"), "{out}");
    }

    #[test]
    fn json_lines_carry_the_fields_at_the_top_level() {
        let sink = Sink::default();
        let (logger, _control) = subscriber(
            &config(LogFormat::Json, "info"),
            sink.clone(),
            false,
            None,
            None,
        )
        .unwrap();
        tracing::subscriber::with_default(logger, || {
            tracing::info!(target: ACCESS_TARGET, request_id = "r1", status = 200u16, sub = None::<&str>);
        });
        let out = sink.take();
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["target"], ACCESS_TARGET);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["request_id"], "r1");
        assert_eq!(line["status"], 200);
        assert!(
            line.get("sub").is_none(),
            "an absent field is left out: {out}"
        );
        assert!(line["timestamp"].is_string());
    }

    #[test]
    fn hashed_sub_is_a_stable_hex_prefix() {
        let h = hash_sub("alice");
        assert_eq!(h.len(), 16);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(h, hash_sub("alice"));
        assert_ne!(h, hash_sub("bob"));
        // SHA-256("alice") starts 2bd806c97f0e00af.
        assert_eq!(h, "2bd806c97f0e00af");
    }
}
