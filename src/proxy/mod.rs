//! Forwarding to the upstream app: the pooled keep-alive client, URI rewriting,
//! hop-by-hop and forwarded headers, streamed bodies both ways, WebSocket (and any other
//! `Upgrade`) tunnelling, and the 502/504 distinction.

mod forwarded;
pub(crate) mod hop;

use crate::config::{RouteConfig, ServerConfig, UpstreamTarget};
use crate::error::GatewayError;
use crate::outbound::{error_chain, https_connector, HttpsConnector};
use crate::request::RequestCtx;
use crate::response::Body;
use crate::telemetry;
use crate::worker;
use forwarded::set_forwarded_headers;
use http::header::{HeaderValue, CONNECTION, HOST, UPGRADE};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;

/// The upstream clients, shared by all routes: one per worker thread
/// ([`worker::current`]), each pooling keep-alive connections per host. A worker's
/// requests use its own pool, whose connections its own runtime drives: no lock shared
/// between threads at checkout, no wake-up of another thread to send.
pub(crate) struct Upstream {
    /// Index 0 serves requests from threads that are not workers.
    clients: Box<[Client<HttpsConnector, Body>]>,
    timeout: Duration,
}

impl Upstream {
    pub(crate) fn new(cfg: &ServerConfig) -> Upstream {
        let connector = https_connector(cfg.upstream_connect_timeout);
        let clients = (0..=cfg.workers)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(1024)
                    .build(connector.clone())
            })
            .collect();
        Upstream {
            clients,
            timeout: cfg.upstream_timeout,
        }
    }

    /// The calling worker's client.
    fn client(&self) -> &Client<HttpsConnector, Body> {
        &self.clients[worker::current() % self.clients.len()]
    }

    /// Sends `request` (whose identity headers are already in place) to the route's
    /// upstream and returns its response, tunnelling upgrades.
    pub(crate) async fn forward(
        &self,
        route: &RouteConfig,
        target: &UpstreamTarget,
        mut request: Request<Body>,
        ctx: &RequestCtx,
    ) -> Result<Response<Body>, GatewayError> {
        // Only the protocols the route allows (WebSocket by default): an `Upgrade: h2c`
        // tunnel would carry later requests past routing and header scrubbing.
        let upgrade = hop::upgrade_protocol(request.headers()).filter(|p| route.allows_upgrade(p));
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));

        *request.uri_mut() = upstream_uri(target, request.uri())?;
        *request.version_mut() = Version::HTTP_11;
        let headers = request.headers_mut();
        hop::remove_hop_by_hop(headers);
        set_forwarded_headers(headers, ctx);
        headers.insert(
            HOST,
            if route.preserve_host {
                ctx.host.header()
            } else {
                target.host.clone()
            },
        );
        if let Some(proto) = &upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, proto.clone());
        }

        let span = telemetry::upstream_span(target.authority.host(), &mut request);
        let call = tokio::time::timeout(self.timeout, self.client().request(request));
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

/// The upstream's scheme and authority, its base path, then the request's path and query.
/// Without a base path (the usual case) nothing is formatted or parsed.
fn upstream_uri(target: &UpstreamTarget, uri: &Uri) -> Result<Uri, GatewayError> {
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

    fn target(upstream: &str) -> UpstreamTarget {
        UpstreamTarget::new(url::Url::parse(upstream).unwrap()).unwrap()
    }

    #[test]
    fn uri_joins_base_path_and_keeps_query() {
        let u = upstream_uri(
            &target("http://127.0.0.1:7000"),
            &"/a/b?x=1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(u, "http://127.0.0.1:7000/a/b?x=1");
        let u = upstream_uri(
            &target("https://app.internal/base/"),
            &"/a".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(u, "https://app.internal/base/a");
    }
}
