//! The admin listener: `/healthz` (process up), `/readyz` (provider metadata loaded; Redis ok or degraded) and
//! `/metrics` (Prometheus). Never served on the proxied port.

use crate::redis_link::Health;
use crate::response::{self, Body};
use crate::services::Services;
use http::{Request, Response, StatusCode};

pub(crate) fn handle<B>(gw: &Services, req: Request<B>) -> Response<Body> {
    match req.uri().path() {
        "/healthz" => response::text(StatusCode::OK, "ok\n"),
        "/readyz" if gw.provider.is_ready() => response::text(StatusCode::OK, readiness(gw)),
        "/readyz" => response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider metadata not loaded\n",
        ),
        "/metrics" => {
            let mut resp = response::text(
                StatusCode::OK,
                gw.metrics.render(
                    gw.provider.is_ready(),
                    gw.provider.http().shed_calls(),
                    gw.replicas.status().as_ref(),
                ),
            );
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        _ => response::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `ready`, and with `[redis]` a line on it. A Redis that is down leaves the gateway
/// ready (degraded): every replica would otherwise be taken out of the load balancer at
/// once, while cookie sessions still work without Redis.
fn readiness(gw: &Services) -> String {
    let Some(status) = gw.replicas.status() else {
        return "ready\n".to_string();
    };
    match (&status.health, status.subscribed) {
        (Health::Degraded(cause), _) => {
            format!("ready\nredis: degraded ({cause}); logouts and refreshes are local until it is back\n")
        }
        (_, false) => "ready\nredis: degraded (not subscribed yet); logouts and refreshes are local until it is back\n".to_string(),
        (_, true) => "ready\nredis: ok\n".to_string(),
    }
}
