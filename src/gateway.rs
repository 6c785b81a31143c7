//! The per-request pipeline: where is this request going (hook or route), who is making
//! it (session cookie or bearer token), may they (claim rules), and what the upstream
//! learns about them (identity headers) before the proxy forwards it. Stages return an
//! outcome (an identity, or a response to send); only this pipeline forwards.

use crate::authz;
use crate::clock::Clock;
use crate::config::{AuthKind, Config, RouteConfig, UnauthAction};
use crate::error::GatewayError;
use crate::hooks;
use crate::identity::IdentityHeaders;
use crate::oidc::login;
use crate::proxy::{hop, Upstream};
use crate::refresh::{self, Freshness};
use crate::request::{request_ctx, RequestCtx};
use crate::resource::{self, Bearer};
use crate::response::{self, Body};
use crate::router::{RouteError, Router};
use crate::services::Services;
use crate::session::{Headers, Loaded};
use http::header::{HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;

/// Everything a request needs, built once at start from a validated config: the shared
/// services the stages use, and what only the pipeline uses (routes, upstream client,
/// identity headers).
pub struct Gateway {
    pub services: Services,
    router: Router,
    upstream: Upstream,
    identity: IdentityHeaders,
}

impl Gateway {
    pub fn new(config: Config, clock: Clock) -> Gateway {
        Gateway {
            router: Router::new(&config.routes),
            upstream: Upstream::new(&config.server),
            identity: IdentityHeaders::new(&config.headers),
            services: Services::new(config, clock),
        }
    }

    /// Handles one request from `peer`.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Response<Body> {
        let services = &self.services;
        services.metrics.requests.inc();
        let Some(ctx) = request_ctx(
            &services.config.server,
            request.uri(),
            request.headers(),
            peer,
            tls,
        ) else {
            return GatewayError::BadHost.into_response();
        };
        if request.uri().path() == services.config.redirect_path() {
            let (parts, body) = request.into_parts();
            // Boxed, like every rarely taken arm below: an async fn's future is as large as
            // its largest arm, and hyper keeps one per connection, idle or not.
            return Box::pin(hooks::dispatch(services, &ctx, &parts, body)).await;
        }
        let route = match self.router.route(request.uri().path()) {
            Ok(Some(route)) => route,
            Ok(None) => return GatewayError::NoRoute.into_response(),
            Err(RouteError::DotSegment) => return GatewayError::DotSegment.into_response(),
            Err(RouteError::Control) => {
                return GatewayError::BadPath("The path contains a control character.")
                    .into_response()
            }
            Err(RouteError::Encoding) => {
                return GatewayError::BadPath("The path is not valid UTF-8.").into_response()
            }
        };
        let (mut parts, body) = request.into_parts();
        self.identity.scrub(&mut parts.headers);
        hop::drop_connection_named(&mut parts.headers);
        match route.auth {
            AuthKind::None => {
                self.forward(route, parts, Body::Left(body), &ctx, Vec::new())
                    .await
            }
            AuthKind::OpenIdConnect => self.openid_connect(route, parts, body, &ctx).await,
            AuthKind::OAuth20 => self.oauth20(route, parts, body, &ctx).await,
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
        let services = &self.services;
        let session = match services.sessions.load(&parts.headers).await {
            Loaded::Valid(session) => session,
            other => {
                let clear = match other {
                    Loaded::Invalid(reason) => {
                        tracing::debug!(?reason, "session cookie refused");
                        services
                            .sessions
                            .clear_cookies(&parts.headers, ctx.secure())
                    }
                    _ => Vec::new(),
                };
                return self.unauthenticated(route, parts, body, ctx, clear).await;
            }
        };
        let (session, mut cookies) =
            match refresh::ensure_fresh(services, session, &parts.headers, ctx).await {
                Freshness::Fresh(session, cookies) => (session, cookies),
                Freshness::Expired(clear) => {
                    return self.unauthenticated(route, parts, body, ctx, clear).await;
                }
            };
        if !route.require_claims.is_empty() {
            let claims = session.merged_claims();
            if let Some(rule) = authz::first_failing(&route.require_claims, &claims) {
                tracing::info!(sub = %session.sub, rule = rule.as_str(), "claim rule not satisfied");
                let refused = GatewayError::Forbidden(rule.as_str().to_string()).into_response();
                return response::with_cookies(refused, cookies);
            }
        }
        if cookies.is_empty() && services.sessions.needs_touch(&session) {
            cookies = services
                .sessions
                .touch(&session, ctx.secure(), &parts.headers)
                .await;
        }
        let identity = session.identity(|| self.identity.for_session(&session));
        insert_identity(&mut parts.headers, identity);
        self.forward(route, parts, Body::Left(body), ctx, cookies)
            .await
    }

    /// A bearer-token route: the token's identity goes upstream, or the refusal goes back.
    async fn oauth20(
        &self,
        route: &RouteConfig,
        mut parts: Parts,
        body: Incoming,
        ctx: &RequestCtx,
    ) -> Response<Body> {
        match resource::authenticate(&self.services, route, &parts, body).await {
            Bearer::Authenticated {
                token,
                validation,
                body,
            } => {
                // Built once per cached validation (the token is part of its key).
                let identity = validation.headers.get_or_init(|| {
                    self.identity
                        .for_token(&token, validation.exp, &validation.claims)
                        .into()
                });
                insert_identity(&mut parts.headers, identity);
                self.forward(route, parts, body, ctx, Vec::new()).await
            }
            Bearer::Anonymous(body) => self.forward(route, parts, body, ctx, Vec::new()).await,
            Bearer::Refused(error) => error.into_response(),
        }
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
                let start = login::start(
                    &self.services,
                    ctx,
                    &parts.headers,
                    &parts.method,
                    return_to,
                    clear,
                );
                return Box::pin(start).await;
            }
        };
        response::with_cookies(resp, clear)
    }

    /// Strips the gateway's cookies and forwards; `cookies` are Set-Cookie values to add to
    /// the upstream's response.
    async fn forward(
        &self,
        route: &RouteConfig,
        mut parts: Parts,
        body: Body,
        ctx: &RequestCtx,
        cookies: Vec<HeaderValue>,
    ) -> Response<Body> {
        let services = &self.services;
        services.sessions.strip_gateway_cookies(&mut parts.headers);
        services.metrics.proxied.inc();
        match self
            .upstream
            .forward(route, Request::from_parts(parts, body), ctx)
            .await
        {
            Ok(resp) => response::with_cookies(resp, cookies),
            Err(e) => {
                services.metrics.upstream_errors.inc();
                response::with_cookies(e.into_response(), cookies)
            }
        }
    }
}

/// Puts the identity headers in place, replacing any of the same name.
fn insert_identity(headers: &mut HeaderMap, identity: &Headers) {
    headers.reserve(identity.len());
    for (name, value) in identity.iter() {
        headers.insert(name.clone(), value.clone());
    }
}
