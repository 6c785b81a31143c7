//! The per-request pipeline: where is this request going (hook or route), who is making
//! it (session cookie or bearer token), may they (claim rules), and what the upstream
//! learns about them (identity headers) before the proxy forwards it.

use crate::authz;
use crate::clock::Clock;
use crate::config::{AuthKind, Config, RouteConfig, UnauthAction};
use crate::error::GatewayError;
use crate::hooks;
use crate::identity::IdentityHeaders;
use crate::observe::Metrics;
use crate::oidc::{login, provider::Provider};
use crate::proxy::forwarded::{request_ctx, RequestCtx};
use crate::proxy::Upstream;
use crate::response::{self, Body};
use crate::router::Router;
use crate::session::{Loaded, Sessions};
use http::header::HeaderValue;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a request needs, built once at start from a validated config.
pub struct Gateway {
    pub config: Config,
    pub clock: Clock,
    pub provider: Arc<Provider>,
    pub sessions: Sessions,
    pub identity: IdentityHeaders,
    pub router: Router,
    pub upstream: Upstream,
    pub metrics: Metrics,
    pub refresh_flights: crate::refresh::Flights,
    pub resource: crate::resource::Resource,
}

impl Gateway {
    pub fn new(config: Config, clock: Clock) -> Gateway {
        Gateway {
            provider: Arc::new(Provider::new(config.provider.clone(), clock.clone())),
            sessions: Sessions::new(&config.session, clock.clone()),
            identity: IdentityHeaders::new(&config.headers),
            router: Router::new(&config.routes),
            upstream: Upstream::new(&config.server),
            metrics: Metrics::default(),
            refresh_flights: crate::refresh::Flights::default(),
            resource: crate::resource::Resource::new(&config.oauth),
            clock,
            config,
        }
    }

    /// Handles one request from `peer`.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Response<Body> {
        self.metrics.requests.inc();
        let Some(ctx) = request_ctx(
            &self.config.server,
            request.uri(),
            request.headers(),
            peer,
            tls,
        ) else {
            return response::page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The request has no valid Host.",
                None,
            );
        };
        if request.uri().path() == self.config.redirect_path() {
            let (parts, body) = request.into_parts();
            // Boxed, like every rarely taken arm below: an async fn's future is as large as
            // its largest arm, and hyper keeps one per connection, idle or not.
            return Box::pin(hooks::dispatch(self, &ctx, &parts, body)).await;
        }
        let route = match self.router.route(request.uri().path()) {
            Ok(Some(route)) => route,
            Ok(None) => {
                return response::page(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "No application is configured at this address.",
                    None,
                )
            }
            Err(_) => {
                return response::page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    "The path contains dot segments.",
                    None,
                )
            }
        };
        let (mut parts, body) = request.into_parts();
        self.identity.scrub(&mut parts.headers);
        crate::proxy::hop::drop_connection_named(&mut parts.headers);
        match route.auth {
            AuthKind::None => {
                self.forward(route, parts, Body::Left(body), &ctx, Vec::new())
                    .await
            }
            AuthKind::OpenIdConnect => self.openid_connect(route, parts, body, &ctx).await,
            AuthKind::OAuth20 => crate::resource::handle(self, route, parts, body, &ctx).await,
        }
    }

    /// A route behind login: a valid session goes through with identity headers; anyone
    /// else is sent to log in, refused, or passed anonymously per `unauth_action`.
    async fn openid_connect(
        &self,
        route: &RouteConfig,
        mut parts: Parts,
        body: Incoming,
        ctx: &RequestCtx,
    ) -> Response<Body> {
        let session = match self.sessions.load(&parts.headers).await {
            Loaded::Valid(session) => session,
            other => {
                let clear = match other {
                    Loaded::Invalid(reason) => {
                        tracing::debug!(?reason, "session cookie refused");
                        self.sessions.clear_cookies(&parts.headers, ctx.secure())
                    }
                    _ => Vec::new(),
                };
                return self.unauthenticated(route, parts, body, ctx, clear).await;
            }
        };
        let (session, mut cookies) =
            match crate::refresh::ensure_fresh(self, session, &parts.headers, ctx).await {
                crate::refresh::Freshness::Fresh(session, cookies) => (session, cookies),
                crate::refresh::Freshness::Expired(clear) => {
                    return self.unauthenticated(route, parts, body, ctx, clear).await;
                }
            };
        if !route.require_claims.is_empty() {
            let claims = session.merged_claims();
            if let Some(rule) = authz::first_failing(&route.require_claims, &claims) {
                tracing::info!(sub = %session.sub, rule = rule.as_str(), "claim rule not satisfied");
                return GatewayError::Forbidden(rule.as_str().to_string()).into_response();
            }
        }
        if cookies.is_empty() && self.sessions.needs_touch(&session) {
            cookies = self
                .sessions
                .touch(&session, ctx.secure(), &parts.headers)
                .await;
        }
        let identity = session
            .identity
            .get_or_init(|| self.identity.for_session(&session));
        parts.headers.reserve(identity.len());
        for (name, value) in identity.iter() {
            parts.headers.insert(name.clone(), value.clone());
        }
        self.forward(route, parts, Body::Left(body), ctx, cookies)
            .await
    }

    async fn unauthenticated(
        &self,
        route: &RouteConfig,
        parts: Parts,
        body: Incoming,
        ctx: &RequestCtx,
        clear: Vec<HeaderValue>,
    ) -> Response<Body> {
        let resp = match route.unauth_action {
            UnauthAction::Pass => {
                return self
                    .forward(route, parts, Body::Left(body), ctx, clear)
                    .await
            }
            UnauthAction::Unauthorized => login::unauthorized(),
            UnauthAction::Auth if !login::is_browser_navigation(&parts.headers) => {
                login::unauthorized()
            }
            UnauthAction::Auth => {
                let return_to = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let start =
                    login::start(self, ctx, &parts.headers, &parts.method, return_to, clear);
                return Box::pin(start).await;
            }
        };
        response::with_cookies(resp, clear)
    }

    /// Strips the gateway's cookies and forwards; `cookies` are Set-Cookie values to add to
    /// the upstream's response.
    pub async fn forward(
        &self,
        route: &RouteConfig,
        mut parts: Parts,
        body: Body,
        ctx: &RequestCtx,
        cookies: Vec<HeaderValue>,
    ) -> Response<Body> {
        self.sessions.strip_gateway_cookies(&mut parts.headers);
        self.metrics.proxied.inc();
        match self
            .upstream
            .forward(route, Request::from_parts(parts, body), ctx)
            .await
        {
            Ok(resp) => response::with_cookies(resp, cookies),
            Err(e) => {
                self.metrics.upstream_errors.inc();
                response::with_cookies(e.into_response(), cookies)
            }
        }
    }
}
