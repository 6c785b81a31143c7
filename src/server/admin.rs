//! The admin listener: `/healthz` (process up), `/readyz` (provider metadata loaded) and
//! `/metrics` (Prometheus). Never served on the proxied port.

use crate::response::{self, Body};
use crate::services::Services;
use http::{Request, Response, StatusCode};

pub(crate) fn handle<B>(gw: &Services, req: Request<B>) -> Response<Body> {
    match req.uri().path() {
        "/healthz" => response::text(StatusCode::OK, "ok\n"),
        "/readyz" if gw.provider.is_ready() => response::text(StatusCode::OK, "ready\n"),
        "/readyz" => response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider metadata not loaded\n",
        ),
        "/metrics" => {
            let mut resp = response::text(
                StatusCode::OK,
                gw.metrics
                    .render(gw.provider.is_ready(), gw.provider.http().shed_calls()),
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
