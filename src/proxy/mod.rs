//! Forwarding to the upstream app: the pooled keep-alive client, URI rewriting,
//! hop-by-hop and forwarded headers, streamed bodies both ways, WebSocket (and any other
//! `Upgrade`) tunnelling, and the 502/504 distinction.

mod forwarded;
pub(crate) mod hop;

use crate::config::{RouteConfig, ServerConfig};
use crate::error::GatewayError;
use crate::outbound::{error_chain, https_connector, HttpsConnector};
use crate::request::RequestCtx;
use crate::response::Body;
use crate::telemetry;
use forwarded::set_forwarded_headers;
use http::header::{HeaderValue, CONNECTION, HOST, UPGRADE};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;

/// The upstream client, shared by all routes; pools keep-alive connections per host.
pub(crate) struct Upstream {
    client: Client<HttpsConnector, Body>,
    timeout: Duration,
}

impl Upstream {
    pub(crate) fn new(cfg: &ServerConfig) -> Upstream {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(https_connector(cfg.upstream_connect_timeout));
        Upstream {
            client,
            timeout: cfg.upstream_timeout,
        }
    }

    /// Sends `request` (whose identity headers are already in place) to the route's
    /// upstream and returns its response, tunnelling upgrades.
    pub(crate) async fn forward(
        &self,
        route: &RouteConfig,
        mut request: Request<Body>,
        ctx: &RequestCtx,
    ) -> Result<Response<Body>, GatewayError> {
        // Only the protocols the route allows (WebSocket by default): an `Upgrade: h2c`
        // tunnel would carry later requests past routing and header scrubbing.
        let upgrade = hop::upgrade_protocol(request.headers()).filter(|p| route.allows_upgrade(p));
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));

        *request.uri_mut() = upstream_uri(route, request.uri())?;
        *request.version_mut() = Version::HTTP_11;
        let headers = request.headers_mut();
        hop::remove_hop_by_hop(headers);
        set_forwarded_headers(headers, ctx);
        if route.preserve_host {
            if let Ok(v) = HeaderValue::from_str(&ctx.host) {
                headers.insert(HOST, v);
            }
        } else {
            headers.remove(HOST);
        }
        if let Some(proto) = &upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, proto.clone());
        }

        let span = telemetry::upstream_span(target_host(route), &mut request);
        let call = tokio::time::timeout(self.timeout, self.client.request(request));
        let mut response = match call.await {
            Err(_) => {
                telemetry::upstream_outcome(&span, Err("timeout"));
                return Err(GatewayError::UpstreamTimeout);
            }
            Ok(Err(e)) => {
                telemetry::upstream_outcome(&span, Err("unreachable"));
                return Err(GatewayError::UpstreamUnreachable(error_chain(&e)));
            }
            Ok(Ok(r)) => r,
        };
        telemetry::upstream_outcome(&span, Ok(response.status()));

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
                let (parts, body) = response.into_parts();
                return Ok(Response::from_parts(parts, Body::Left(body)));
            }
        }
        let (mut parts, body) = response.into_parts();
        hop::remove_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::Left(body)))
    }
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}

/// The upstream's host, for its span (never userinfo).
fn target_host(route: &RouteConfig) -> &str {
    route.upstream.authority.host()
}

/// The upstream's scheme and authority, its base path, then the request's path and query.
/// Without a base path (the usual case) nothing is formatted or parsed.
fn upstream_uri(route: &RouteConfig, uri: &Uri) -> Result<Uri, GatewayError> {
    let target = &route.upstream;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(target.scheme.clone());
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = if target.base_path.is_empty() {
        uri.path_and_query().cloned()
    } else {
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Some(format!("{}{pq}", target.base_path).parse().map_err(|_| {
            GatewayError::BadRequest("the request target cannot be forwarded".into())
        })?)
    };
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts)
        .map_err(|_| GatewayError::BadRequest("the request target cannot be forwarded".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthKind, UnauthAction};

    fn route(upstream: &str) -> RouteConfig {
        RouteConfig {
            path: "/".into(),
            upstream: crate::config::UpstreamTarget::new(url::Url::parse(upstream).unwrap())
                .unwrap(),
            auth: AuthKind::None,
            unauth_action: UnauthAction::Auth,
            require_claims: vec![],
            preserve_host: false,
            upgrades: vec!["websocket".into()],
            case_insensitive: false,
            providers: vec![0],
        }
    }

    #[test]
    fn uri_joins_base_path_and_keeps_query() {
        let u = upstream_uri(
            &route("http://127.0.0.1:7000"),
            &"/a/b?x=1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(u, "http://127.0.0.1:7000/a/b?x=1");
        let u = upstream_uri(&route("https://app.internal/base/"), &"/a".parse().unwrap()).unwrap();
        assert_eq!(u, "https://app.internal/base/a");
    }
}
