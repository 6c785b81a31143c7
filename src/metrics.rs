//! What `/metrics` serves (docs/behaviour.md §12.1), in the OpenMetrics text format through
//! `prometheus-client`: counters, gauges and duration histograms.
//!
//! The request path only touches handles resolved in advance (a route's histograms are
//! looked up once per config generation, see [`RouteMetrics`]), so a request costs a few
//! relaxed atomic additions and two clock reads; label lookups happen on rare paths only
//! (provider calls, refusals). Values the gateway already holds elsewhere (provider
//! readiness, Redis state, cache sizes) are copied in at scrape time ([`Scrape`]).
//!
//! A leaf module: it knows no other part of the gateway.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of every duration histogram: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `Content-Type` of the `/metrics` answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A duration histogram on atomics (prometheus-client's own takes a lock per observation).
/// Clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct Histogram(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(BUCKETS.len());
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0u64); BUCKETS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            let bound = BUCKETS.get(i).copied().unwrap_or(f64::MAX);
            *slot = (bound, self.0.buckets[i].load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointOutcome {
    endpoint: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    cache: String,
}

/// A cache's hits, misses and evictions (for size), shared with the cache itself.
#[derive(Clone, Debug, Default)]
pub struct CacheCounters {
    pub hits: Counter,
    pub misses: Counter,
    pub evictions: Counter,
}

/// One route's histograms, resolved once per config generation.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    /// Request duration by status class: 1xx … 5xx.
    by_class: [Histogram; 5],
    pub upstream: Histogram,
}

impl RouteMetrics {
    /// Records a finished request with `status`.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].observe(elapsed);
    }
}

/// What `/metrics` copies in from the rest of the gateway when it is scraped.
#[derive(Debug, Default)]
pub struct Scrape {
    pub provider_ready: bool,
    pub config_generation: u64,
    /// `Some` with `[redis]`: (up, errors since start).
    pub redis: Option<(bool, u64)>,
    /// Sessions held by the memory store (`None` with another store).
    pub memory_sessions: Option<u64>,
    /// Entries and weighed bytes of each cache, by name.
    pub caches: Vec<(&'static str, u64, u64)>,
}

/// Every metric of one process; shared by every config generation, so that counters run
/// on across reloads.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Counter,
    pub proxied: Counter,
    pub upstream_errors: Counter,
    pub logins_started: Counter,
    pub logins_completed: Counter,
    pub login_failures: Counter,
    pub sessions_ended: Counter,
    pub refreshes: Counter,
    pub refresh_failures: Counter,
    pub bearer_accepted: Counter,
    pub bearer_rejected: Counter,
    pub introspections: Counter,
    pub config_reloads: Counter,
    pub config_reload_failures: Counter,
    pub open_connections: Gauge,
    pub in_flight: Gauge,
    pub token_cache: CacheCounters,
    request_duration: Family<RouteStatus, Histogram>,
    upstream_duration: Family<RouteLabel, Histogram>,
    provider_calls: Family<EndpointOutcome, Histogram>,
    refusals: Family<Reason, Counter>,
    refresh_outcomes: Family<Outcome, Counter>,
    // Copied in at scrape time.
    provider_ready: Gauge,
    /// Calls to the provider refused because `provider.max_concurrent_calls` were in
    /// flight (counted here, not per provider: a reload may replace the provider).
    pub provider_calls_shed: Counter,
    config_generation: Gauge,
    redis_up: Gauge,
    redis_errors: Counter,
    memory_sessions: Gauge,
    cache_entries: Family<CacheLabel, Gauge>,
    cache_bytes: Family<CacheLabel, Gauge>,
    cache_hits: Family<CacheLabel, Counter>,
    cache_misses: Family<CacheLabel, Counter>,
    cache_evictions: Family<CacheLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("oidc_gateway");
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let requests = counter("requests", "Requests received on the proxied listeners");
        let proxied = counter("proxied", "Requests forwarded to an upstream");
        let upstream_errors = counter(
            "upstream_errors",
            "Upstream connection failures and timeouts",
        );
        let logins_started = counter("logins_started", "Redirects to the provider");
        let logins_completed = counter("logins_completed", "Sessions created by a login");
        let login_failures = counter("login_failures", "Callbacks that did not create a session");
        let sessions_ended = counter("sessions_ended", "Sessions ended by logout");
        let refreshes = counter("refreshes", "Refresh grants sent to the provider");
        let refresh_failures = counter("refresh_failures", "Refresh grants that failed");
        let bearer_accepted = counter("bearer_accepted", "Bearer tokens accepted");
        let bearer_rejected = counter("bearer_rejected", "Bearer tokens rejected");
        let introspections = counter("introspections", "Introspection calls sent to the provider");
        let config_reloads = counter(
            "config_reloads",
            "Configuration reloads applied (SIGHUP or run --watch)",
        );
        let config_reload_failures = counter(
            "config_reload_failures",
            "Configuration reloads refused (the file had problems; nothing changed)",
        );
        let provider_calls_shed = counter(
            "provider_calls_shed",
            "Calls to the provider refused because provider.max_concurrent_calls were in flight",
        );
        let redis_errors = counter(
            "redis_errors",
            "Redis calls that failed or timed out (with [redis])",
        );
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let open_connections = gauge(
            "open_connections",
            "Open client connections on the proxied listeners",
        );
        let in_flight = gauge("in_flight_requests", "Requests being handled now");
        let provider_ready = gauge(
            "provider_ready",
            "Whether the provider's discovery document and JWKS are loaded",
        );
        let config_generation = gauge(
            "config_generation",
            "The running configuration: 1 at start, one more per reload",
        );
        let redis_up = gauge(
            "redis_up",
            "Whether Redis answers and the replicas' subscription is up (with [redis])",
        );
        let memory_sessions = gauge(
            "memory_sessions",
            "Sessions held by the memory store (session.store = \"memory\")",
        );
        let request_duration = Family::default();
        registry.register(
            "request_duration_seconds",
            "Time to the response head, by route (the route's path; (hook) for the redirect URI, (none) when no route matched) and status class",
            request_duration.clone(),
        );
        let upstream_duration = Family::default();
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to its response head, by route",
            upstream_duration.clone(),
        );
        let provider_calls = Family::default();
        registry.register(
            "provider_call_duration_seconds",
            "Calls to the provider by endpoint (discovery, jwks, token, refresh, introspection, userinfo, revocation) and outcome (ok: a 2xx; refused: another status; error: no answer; shed)",
            provider_calls.clone(),
        );
        let refusals = Family::default();
        registry.register(
            "refusals",
            "Requests the gateway answered itself with an error, by reason",
            refusals.clone(),
        );
        let refresh_outcomes: Family<Outcome, Counter> = Family::default();
        // Known label values start at 0, so that rates have a series from the start.
        for outcome in ["refreshed", "refused", "unavailable"] {
            refresh_outcomes.get_or_create_owned(&Outcome {
                outcome: outcome.to_string(),
            });
        }
        registry.register(
            "refresh_outcomes",
            "Refresh grants by outcome (refreshed; refused: the provider said no; unavailable: it could not be reached)",
            refresh_outcomes.clone(),
        );
        let mut family_gauge = |name: &str, help: &str| {
            let f: Family<CacheLabel, Gauge> = Family::default();
            registry.register(name, help, f.clone());
            f
        };
        let cache_entries = family_gauge("cache_entries", "Entries in each cache");
        let cache_bytes = family_gauge(
            "cache_bytes",
            "Weighed size of each cache (the bound is its max bytes)",
        );
        let mut family_counter = |name: &str, help: &str| {
            let f: Family<CacheLabel, Counter> = Family::default();
            registry.register(name, help, f.clone());
            f
        };
        let cache_hits = family_counter("cache_hits", "Lookups answered from a cache");
        let cache_misses = family_counter("cache_misses", "Lookups a cache could not answer");
        let cache_evictions = family_counter(
            "cache_evictions",
            "Entries a cache dropped to stay within its size",
        );
        Metrics {
            registry,
            requests,
            proxied,
            upstream_errors,
            logins_started,
            logins_completed,
            login_failures,
            sessions_ended,
            refreshes,
            refresh_failures,
            bearer_accepted,
            bearer_rejected,
            introspections,
            config_reloads,
            config_reload_failures,
            open_connections,
            in_flight,
            token_cache: CacheCounters::default(),
            request_duration,
            upstream_duration,
            provider_calls,
            refusals,
            refresh_outcomes,
            provider_ready,
            provider_calls_shed,
            config_generation,
            redis_up,
            redis_errors,
            memory_sessions,
            cache_entries,
            cache_bytes,
            cache_hits,
            cache_misses,
            cache_evictions,
        }
    }

    /// The histograms of the route at `path`; `(hook)` and `(none)` name requests for the
    /// redirect URI and requests no route matched.
    pub fn route(&self, path: &str) -> RouteMetrics {
        let class = |status: &str| {
            self.request_duration.get_or_create_owned(&RouteStatus {
                route: path.to_string(),
                status: status.to_string(),
            })
        };
        RouteMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            upstream: self.upstream_duration.get_or_create_owned(&RouteLabel {
                route: path.to_string(),
            }),
        }
    }

    /// One call to the provider's `endpoint`, answered (or not) after `elapsed`.
    pub fn provider_call(&self, endpoint: &str, outcome: &str, elapsed: Duration) {
        self.provider_calls
            .get_or_create(&EndpointOutcome {
                endpoint: endpoint.to_string(),
                outcome: outcome.to_string(),
            })
            .observe(elapsed);
    }

    /// A request the gateway refused itself, for `reason` (a short snake_case name).
    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A refresh attempt's outcome.
    pub fn refresh_outcome(&self, outcome: &str) {
        self.refresh_outcomes
            .get_or_create(&Outcome {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text, with `scrape`'s values copied in.
    pub fn render(&self, scrape: &Scrape) -> String {
        self.provider_ready.set(i64::from(scrape.provider_ready));
        self.config_generation
            .set(i64::try_from(scrape.config_generation).unwrap_or(i64::MAX));
        if let Some((up, errors)) = scrape.redis {
            self.redis_up.set(i64::from(up));
            self.redis_errors.inner().store(errors, Ordering::Relaxed);
        }
        if let Some(n) = scrape.memory_sessions {
            self.memory_sessions
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for &(cache, entries, bytes) in &scrape.caches {
            let label = CacheLabel {
                cache: cache.to_string(),
            };
            let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.cache_entries
                .get_or_create(&label)
                .set(as_i64(entries));
            self.cache_bytes.get_or_create(&label).set(as_i64(bytes));
        }
        let token = CacheLabel {
            cache: "token".to_string(),
        };
        let copy = |from: &Counter, to: &Family<CacheLabel, Counter>| {
            to.get_or_create(&token)
                .inner()
                .store(from.get(), Ordering::Relaxed);
        };
        copy(&self.token_cache.hits, &self.cache_hits);
        copy(&self.token_cache.misses, &self.cache_misses);
        copy(&self.token_cache.evictions, &self.cache_evictions);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts one thing in progress (a connection, a request) in `gauge` until dropped.
pub struct InProgress(Gauge);

impl InProgress {
    pub fn new(gauge: &Gauge) -> InProgress {
        gauge.inc();
        InProgress(gauge.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_into_the_right_bucket_and_render_cumulatively() {
        let m = Metrics::new();
        let route = m.route("/app");
        route.observe(200, Duration::from_micros(300));
        route.observe(204, Duration::from_millis(30));
        route.observe(503, Duration::from_secs(60));
        let text = m.render(&Scrape::default());
        let line = |s: &str| text.lines().any(|l| l == s);
        assert!(
            line(
                r#"oidc_gateway_request_duration_seconds_bucket{le="0.0005",route="/app",status="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(
            line(
                r#"oidc_gateway_request_duration_seconds_bucket{le="0.05",route="/app",status="2xx"} 2"#
            ),
            "{text}"
        );
        assert!(
            line(r#"oidc_gateway_request_duration_seconds_count{route="/app",status="2xx"} 2"#),
            "{text}"
        );
        assert!(
            line(
                r#"oidc_gateway_request_duration_seconds_bucket{le="10.0",route="/app",status="5xx"} 0"#
            ),
            "{text}"
        );
        assert!(
            line(
                r#"oidc_gateway_request_duration_seconds_bucket{le="+Inf",route="/app",status="5xx"} 1"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn in_progress_counts_until_dropped() {
        let m = Metrics::new();
        let a = InProgress::new(&m.in_flight);
        let b = InProgress::new(&m.in_flight);
        assert_eq!(m.in_flight.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(m.in_flight.get(), 0);
    }
}
