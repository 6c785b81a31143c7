//! Logging set-up and the counters behind `/metrics` (Prometheus text format).

use crate::redis_link::{Health, RedisStatus};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Process-wide counters; cheap relaxed atomics on the request path.
#[derive(Default)]
pub(crate) struct Metrics {
    pub requests: Counter,
    pub proxied: Counter,
    pub(crate) upstream_errors: Counter,
    pub(crate) logins_started: Counter,
    pub(crate) logins_completed: Counter,
    pub(crate) login_failures: Counter,
    pub(crate) sessions_ended: Counter,
    pub refreshes: Counter,
    pub refresh_failures: Counter,
    pub(crate) bearer_accepted: Counter,
    pub(crate) bearer_rejected: Counter,
    pub introspections: Counter,
}

impl Metrics {
    pub(crate) fn render(
        &self,
        ready: bool,
        provider_calls_shed: u64,
        redis: Option<&RedisStatus>,
    ) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &Counter); 12] = [
            (
                "requests_total",
                "Requests received on the proxied listeners.",
                &self.requests,
            ),
            (
                "proxied_total",
                "Requests forwarded to an upstream.",
                &self.proxied,
            ),
            (
                "upstream_errors_total",
                "Upstream connection failures and timeouts.",
                &self.upstream_errors,
            ),
            (
                "logins_started_total",
                "Redirects to the provider.",
                &self.logins_started,
            ),
            (
                "logins_completed_total",
                "Sessions created by a login.",
                &self.logins_completed,
            ),
            (
                "login_failures_total",
                "Callbacks that did not create a session.",
                &self.login_failures,
            ),
            (
                "sessions_ended_total",
                "Sessions ended by logout.",
                &self.sessions_ended,
            ),
            (
                "refreshes_total",
                "Refresh grants sent to the provider.",
                &self.refreshes,
            ),
            (
                "refresh_failures_total",
                "Refresh grants that failed.",
                &self.refresh_failures,
            ),
            (
                "bearer_accepted_total",
                "Bearer tokens accepted.",
                &self.bearer_accepted,
            ),
            (
                "bearer_rejected_total",
                "Bearer tokens rejected.",
                &self.bearer_rejected,
            ),
            (
                "introspections_total",
                "Introspection calls sent to the provider.",
                &self.introspections,
            ),
        ];
        for (name, help, counter) in rows {
            let _ = writeln!(out, "# HELP oidc_gateway_{name} {help}");
            let _ = writeln!(out, "# TYPE oidc_gateway_{name} counter");
            let _ = writeln!(out, "oidc_gateway_{name} {}", counter.get());
        }
        let _ = writeln!(
            out,
            "# HELP oidc_gateway_provider_calls_shed_total Calls to the provider refused because provider.max_concurrent_calls were in flight."
        );
        let _ = writeln!(out, "# TYPE oidc_gateway_provider_calls_shed_total counter");
        let _ = writeln!(
            out,
            "oidc_gateway_provider_calls_shed_total {provider_calls_shed}"
        );
        let _ = writeln!(
            out,
            "# HELP oidc_gateway_provider_ready Whether provider metadata is loaded."
        );
        let _ = writeln!(out, "# TYPE oidc_gateway_provider_ready gauge");
        let _ = writeln!(out, "oidc_gateway_provider_ready {}", u8::from(ready));
        if let Some(redis) = redis {
            let _ = writeln!(
                out,
                "# HELP oidc_gateway_redis_errors_total Redis calls that failed or timed out."
            );
            let _ = writeln!(out, "# TYPE oidc_gateway_redis_errors_total counter");
            let _ = writeln!(out, "oidc_gateway_redis_errors_total {}", redis.errors);
            let _ = writeln!(
                out,
                "# HELP oidc_gateway_redis_up Whether Redis answers and the replicas' subscription is up."
            );
            let _ = writeln!(out, "# TYPE oidc_gateway_redis_up gauge");
            let up = redis.subscribed && !matches!(redis.health, Health::Degraded(_));
            let _ = writeln!(out, "oidc_gateway_redis_up {}", u8::from(up));
        }
        out
    }
}

/// Installs the tracing subscriber: `RUST_LOG` or `info`, to stderr.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
