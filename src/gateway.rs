//! The per-request pipeline: where is this request going (hook or route), who is making
//! it (session cookie or bearer token), may they (claim rules), and what the upstream
//! learns about them (identity headers) before the proxy forwards it. Stages return an
//! outcome (an identity, or a response to send); only this pipeline forwards.

use crate::authz;
use crate::clock::Clock;
use crate::config::{AuthKind, Config, RouteConfig, UnauthAction};
use crate::error::GatewayError;
use crate::forward_auth;
use crate::hooks;
use crate::identity::IdentityHeaders;
use crate::metrics::{InProgress, RouteMetrics};
use crate::observe::{self, Access, AccessNote, Matched};
use crate::oidc::{chooser, login, preserve_post};
use crate::provider::Provider;
use crate::proxy::{hop, Upstream};
use crate::refresh::{self, Freshness};
use crate::request::{self, Asker, RequestCtx, X_REQUEST_ID};
use crate::resource::{self, Bearer};
use crate::response::{self, Body};
use crate::router::{RouteError, Router};
use crate::services::Services;
use crate::session::{Headers, InvalidReason, Loaded, Session};
use http::header::{HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::time::Instant;

/// Everything a request needs, built once at start from a validated config: the shared
/// services the stages use, and what only the pipeline uses (routes, upstream client,
/// identity headers).
pub struct Gateway {
    pub services: Services,
    router: Router,
    upstream: Upstream,
    identity: IdentityHeaders,
    /// `Strict-Transport-Security` for responses on TLS listeners (`server.hsts`).
    pub(crate) hsts: Option<HeaderValue>,
    /// Duration histograms of each of `router`'s routes (same order), of the redirect
    /// URI's hooks, and of requests no route took.
    route_metrics: Vec<RouteMetrics>,
    hook_metrics: RouteMetrics,
    unrouted_metrics: RouteMetrics,
}

impl Gateway {
    pub fn new(config: Config, clock: Clock) -> Gateway {
        Gateway::with_services(Services::new(config, clock))
    }

    /// The gateway for a reloaded config: routes, upstream clients and identity headers are
    /// built anew, the services keep what did not change ([`Services::reloaded`]).
    pub fn reloaded(&self, config: Config) -> Gateway {
        Gateway::with_services(self.services.reloaded(config))
    }

    fn with_services(services: Services) -> Gateway {
        let config = &services.config;
        let router = Router::new(&config.routes);
        let metrics = &services.metrics;
        Gateway {
            route_metrics: router
                .routes()
                .iter()
                .map(|r| metrics.route(&r.label()))
                .collect(),
            hook_metrics: metrics.route("(hook)"),
            unrouted_metrics: metrics.route("(none)"),
            router,
            upstream: Upstream::new(&config.server),
            identity: IdentityHeaders::new(&config.headers),
            hsts: config
                .server
                .hsts
                .and_then(|d| HeaderValue::from_str(&format!("max-age={}", d.as_secs())).ok()),
            services,
        }
    }

    /// Handles one request from `peer`: routes it (hook or route) and runs its route's
    /// stages. Every response carries the request's id (`X-Request-Id`, also sent
    /// upstream); with `log.access` on, the request is timed and logged once its response
    /// head is ready. It runs in its trace ([`Trace`](crate::telemetry::Trace): the
    /// `traceparent` sent upstream, and the `request` span).
    ///
    /// Not an async fn: the span's wrapper is the one level of future nesting added.
    pub fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> impl std::future::Future<Output = Response<Body>> + '_ {
        // `serve` asks is_trusted again: a few comparisons, not worth a parameter.
        let trusted = request::is_trusted(&self.services.config.server, peer);
        let trace = crate::telemetry::Trace::incoming(trusted, request.method(), request.headers());
        let span = trace.span().clone();
        tracing::Instrument::instrument(self.serve(request, peer, tls, trace), span)
    }

    /// [`Gateway::handle`], in the request's span.
    async fn serve(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
        trace: crate::telemetry::Trace,
    ) -> Response<Body> {
        let services = &self.services;
        services.metrics.requests.inc();
        let started = Instant::now();
        let _in_flight = InProgress::new(&services.metrics.in_flight);
        let server = &services.config.server;
        let trusted = request::is_trusted(server, peer);
        let id = request::request_id(trusted, request.headers());
        let log = &services.config.log;
        let access = log.access.then(|| Access::start(&request));
        let (mut parts, body) = request.into_parts();
        // A block rather than a nested async fn: one level less of nested futures.
        let (mut response, matched) = 'routed: {
            // A forward-auth check becomes the front proxy's request it is about.
            let forward_auth = match &server.forward_auth_path {
                Some(fa) if forward_auth::is_check(fa, parts.uri.path()) => {
                    let asker = if trusted {
                        forward_auth::into_original(&mut parts, fa)
                    } else {
                        Err(GatewayError::UntrustedForwardAuth)
                    };
                    match asker {
                        Ok(asker) => Some(asker),
                        Err(refused) => {
                            let response = self.refuse(refused);
                            self.unrouted_metrics
                                .observe(response.status().as_u16(), started.elapsed());
                            break 'routed (response, Matched::Nothing);
                        }
                    }
                }
                _ => None,
            };
            let Some(mut ctx) = request::request_ctx_trusted(
                server,
                &parts.uri,
                &parts.headers,
                peer,
                trusted,
                tls,
            ) else {
                let response = self.refuse(GatewayError::BadHost);
                self.unrouted_metrics
                    .observe(response.status().as_u16(), started.elapsed());
                break 'routed (response, Matched::Nothing);
            };
            ctx.forward_auth = forward_auth;
            let path = parts.uri.path();
            if path == services.config.redirect_path() || Some(path) == server.login_path.as_deref()
            {
                // Boxed, like every rarely taken arm below: an async fn's future is as
                // large as its largest arm, and hyper keeps one per connection, idle or not.
                let response = if ctx.forward_auth.is_some() {
                    // The gateway's own paths: the front proxy lets them through to it.
                    forward_auth::answer(&self.identity, &HeaderMap::new(), Vec::new())
                } else if path == services.config.redirect_path() {
                    Box::pin(hooks::dispatch(services, &ctx, &parts, body)).await
                } else {
                    Box::pin(forward_auth::login(services, &ctx, &parts)).await
                };
                self.hook_metrics
                    .observe(response.status().as_u16(), started.elapsed());
                break 'routed (response, Matched::Hook);
            }
            let refused = match self.router.route_indexed(&ctx.host, parts.uri.path()) {
                Ok(Some((index, route))) => {
                    let bearer = route.auth == AuthKind::OAuth20;
                    self.identity.scrub_route(&mut parts.headers, bearer);
                    hop::drop_connection_named(&mut parts.headers);
                    // After the client's `Connection` names are dropped, so that they cannot
                    // drop it; replaces any client-sent one.
                    parts.headers.insert(X_REQUEST_ID, id.clone());
                    trace.forward(&route.path, &mut parts.headers);
                    // `route.allow_anonymous_methods` (CORS preflights): as if `auth = "none"`.
                    let auth = if route.anonymous_methods.contains(&parts.method) {
                        AuthKind::None
                    } else {
                        route.auth
                    };
                    let response = match auth {
                        AuthKind::None => {
                            self.forward(route, parts, Body::Left(body), &ctx, Vec::new())
                                .await
                        }
                        AuthKind::OpenIdConnect => {
                            self.openid_connect(route, parts, body, &ctx).await
                        }
                        AuthKind::OAuth20 => self.oauth20(route, parts, body, &ctx).await,
                    };
                    self.route_metrics[index]
                        .observe(response.status().as_u16(), started.elapsed());
                    break 'routed (response, Matched::Route(route));
                }
                Ok(None) => GatewayError::NoRoute,
                Err(RouteError::DotSegment) => GatewayError::DotSegment,
                Err(RouteError::Control) => {
                    GatewayError::BadPath("The path contains a control character.")
                }
                Err(RouteError::Encoding) => GatewayError::BadPath("The path is not valid UTF-8."),
            };
            let response = self.refuse(refused);
            self.unrouted_metrics
                .observe(response.status().as_u16(), started.elapsed());
            (response, Matched::Nothing)
        };
        if let Some(access) = access {
            access.finish(&id, matched, &mut response, log.hash_sub);
        }
        response.headers_mut().insert(X_REQUEST_ID, id);
        trace.finish(response.status());
        response
    }

    /// `route`'s histograms (`route` is one of `self.router`'s).
    fn metrics_of(&self, route: &RouteConfig) -> &RouteMetrics {
        self.router
            .routes()
            .iter()
            .position(|r| std::ptr::eq(r, route))
            .map_or(&self.unrouted_metrics, |i| &self.route_metrics[i])
    }

    /// The access note of `response` when the access log is on; `None` (and nothing done)
    /// when it is off.
    fn note<'r>(&self, response: &'r mut Response<Body>) -> Option<&'r mut AccessNote> {
        if self.services.config.log.access {
            Some(observe::note(response))
        } else {
            None
        }
    }

    /// `error`'s response; with the access log on, its text is the line's `reason`.
    fn refuse(&self, error: GatewayError) -> Response<Body> {
        self.services.metrics.refused(error.kind());
        let reason = self.services.config.log.access.then(|| error.to_string());
        let mut response = error.into_response();
        if let (Some(reason), Some(note)) = (reason, self.note(&mut response)) {
            note.reason = Some(reason.into());
        }
        response
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
            // A session from a provider this route does not accept is no session here:
            // a browser logs in at one the route does accept (the chooser when several).
            Loaded::Valid(session) if !accepts(services, route, &session) => {
                let why = "session from a provider this route does not accept";
                return self
                    .unauthenticated(route, parts, body, ctx, Vec::new(), why)
                    .await;
            }
            Loaded::Valid(session) => session,
            other => {
                let (clear, why) = match other {
                    Loaded::Invalid(reason) => {
                        tracing::debug!(?reason, "session cookie refused");
                        let clear = services
                            .sessions
                            .clear_cookies(&parts.headers, ctx.secure());
                        (clear, session_refused(reason))
                    }
                    _ => (Vec::new(), "no session"),
                };
                return self
                    .unauthenticated(route, parts, body, ctx, clear, why)
                    .await;
            }
        };
        let (session, mut cookies) =
            match refresh::ensure_fresh(services, session, &parts.headers, ctx).await {
                Freshness::Fresh(session, cookies) => (session, cookies),
                Freshness::Expired(clear) => {
                    let why = "session expired: the access token could not be refreshed";
                    return self
                        .unauthenticated(route, parts, body, ctx, clear, why)
                        .await;
                }
            };
        if !route.require_claims.is_empty() {
            let claims = session.merged_claims();
            if let Some(rule) = authz::first_failing(&route.require_claims, &claims) {
                tracing::info!(sub = %session.sub, rule = rule.as_str(), "claim rule not satisfied");
                let mut refused = self.refuse(GatewayError::Forbidden(rule.as_str().to_string()));
                if let Some(note) = self.note(&mut refused) {
                    note.sub = Some(session.sub.clone());
                }
                return response::with_cookies(refused, cookies);
            }
        }
        if cookies.is_empty() && services.sessions.needs_touch(&session) {
            cookies = services
                .sessions
                .touch(&session, ctx.secure(), &parts.headers)
                .await;
        }
        let build = || self.identity.session_identity(&session);
        let cached = session.identity(build);
        self.insert_current(&mut parts.headers, cached, route, build);
        let mut response = self
            .forward(route, parts, Body::Left(body), ctx, cookies)
            .await;
        if let Some(note) = self.note(&mut response) {
            note.sub = Some(session.sub.clone());
        }
        response
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
                let build = || {
                    self.identity
                        .token_identity(&token, validation.exp, &validation.claims)
                };
                let cached = validation.headers.get_or_init(build);
                self.identity
                    .scrub_after_bearer(&mut parts.headers, route.header_list);
                self.insert_current(&mut parts.headers, cached, route, build);
                let mut response = self.forward(route, parts, body, ctx, Vec::new()).await;
                if let Some(note) = self.note(&mut response) {
                    let sub = validation.claims.get("sub").and_then(|s| s.as_str());
                    note.sub = sub.map(str::to_string);
                }
                response
            }
            Bearer::Anonymous(body) => {
                self.identity
                    .scrub_after_bearer(&mut parts.headers, route.header_list);
                self.forward(route, parts, body, ctx, Vec::new()).await
            }
            Bearer::Refused(error) => self.refuse(error),
        }
    }

    /// Puts `route`'s identity headers in place: `cached`, unless an earlier config's
    /// builder made them (a reload changed how they are built), then `build`'s, uncached.
    /// A function of its own so that the rebuilt headers are not kept across the
    /// forwarding await.
    fn insert_current(
        &self,
        headers: &mut HeaderMap,
        cached: &Headers,
        route: &RouteConfig,
        build: impl FnOnce() -> Headers,
    ) {
        if cached.builder() == self.identity.builder() {
            insert_identity(headers, cached, route.header_list);
        } else {
            insert_identity(headers, &build(), route.header_list);
        }
    }

    /// No usable session: pass anonymously, refuse, or start a login; `why` is the access
    /// line's reason when the request is not passed.
    async fn unauthenticated(
        &self,
        route: &RouteConfig,
        parts: Parts,
        body: Incoming,
        ctx: &RequestCtx,
        clear: Vec<HeaderValue>,
        why: &'static str,
    ) -> Response<Body> {
        let mut resp = match route.unauth_action {
            UnauthAction::Pass => {
                return self
                    .forward(route, parts, Body::Left(body), ctx, clear)
                    .await
            }
            UnauthAction::Auth
                if route.preserve_post
                    && parts.method == http::Method::POST
                    && ctx.forward_auth.is_none()
                    && login::is_browser_navigation(&parts.headers) =>
            {
                // One provider: `route.preserve_post` with several is a config error.
                let provider = self.services.providers.at(route.providers[0]);
                Box::pin(self.keep_post_and_login(provider, parts, body, ctx, clear)).await
            }
            UnauthAction::Auth
                if login::is_browser_navigation(&parts.headers)
                    && ctx.forward_auth != Some(Asker::StatusOnly) =>
            {
                let return_to = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                if let [index] = route.providers[..] {
                    let provider = self.services.providers.at(index);
                    let start = login::start(
                        &self.services,
                        provider,
                        ctx,
                        &parts.headers,
                        &parts.method,
                        return_to,
                        clear,
                    );
                    Box::pin(start).await
                } else {
                    chooser::page(&self.services, &route.providers, return_to, clear)
                }
            }
            UnauthAction::Auth | UnauthAction::Unauthorized => {
                self.services.metrics.refused("unauthenticated");
                response::with_cookies(login::unauthorized(), clear)
            }
        };
        if let Some(note) = self.note(&mut resp) {
            note.reason = Some(why.into());
        }
        resp
    }

    /// A browser's form POST on a `preserve_post` route: kept for after the login it starts,
    /// or refused with a page that says why (`oidc::preserve_post`).
    async fn keep_post_and_login(
        &self,
        provider: &Provider,
        parts: Parts,
        body: Incoming,
        ctx: &RequestCtx,
        clear: Vec<HeaderValue>,
    ) -> Response<Body> {
        let response = match preserve_post::keep_and_login(
            &self.services,
            provider,
            ctx,
            &parts,
            body,
        )
        .await
        {
            Ok(response) => response,
            Err(error) => self.refuse(error),
        };
        response::with_cookies(response, clear)
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
        if ctx.forward_auth.is_some() {
            return forward_auth::answer(&self.identity, &parts.headers, cookies);
        }
        let Some(target) = &route.upstream else {
            // A forward-auth-only route (`upstream = ""`).
            return response::with_cookies(self.refuse(GatewayError::NoRoute), cookies);
        };
        services.sessions.strip_gateway_cookies(&mut parts.headers);
        services.metrics.proxied.inc();
        let started = Instant::now();
        let mut response = match self
            .upstream
            .forward(route, target, Request::from_parts(parts, body), ctx)
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                services.metrics.upstream_errors.inc();
                self.refuse(e)
            }
        };
        let upstream = started.elapsed();
        self.metrics_of(route).upstream.observe(upstream);
        if services.config.log.access {
            observe::note(&mut response).upstream = Some(upstream);
        }
        response::with_cookies(response, cookies)
    }
}

/// Whether `route` accepts sessions from the provider `session` was logged in at (one
/// the config still has, with the session's issuer).
fn accepts(services: &Services, route: &RouteConfig, session: &Session) -> bool {
    services
        .providers
        .of_session(session)
        .is_some_and(|(index, _)| route.providers.contains(&index))
}

/// The access log's reason for a session cookie that was not accepted.
fn session_refused(reason: InvalidReason) -> &'static str {
    match reason {
        InvalidReason::ChunkCount => "session cookie refused: chunk count",
        InvalidReason::ChunkMissing => "session cookie refused: chunk missing",
        InvalidReason::TooLarge => "session cookie refused: too large",
        InvalidReason::Encoding => "session cookie refused: encoding",
        InvalidReason::Unsealed(_) => "session cookie refused: does not open",
        InvalidReason::Malformed => "session cookie refused: malformed",
        InvalidReason::Expired => "session cookie refused: expired",
        InvalidReason::NotFound => "session cookie refused: not in the store",
        InvalidReason::Ended => "session cookie refused: ended by logout",
        InvalidReason::LoggedOut => "session cookie refused: logged out by the provider",
    }
}

/// Puts the identity headers of a route sending header list `list` in place, replacing
/// any of the same name.
fn insert_identity(headers: &mut HeaderMap, identity: &Headers, list: usize) {
    let (common, own) = identity.for_list(list);
    headers.reserve(common.len() + own.len());
    for (name, value) in common.iter().chain(own) {
        headers.insert(name.clone(), value.clone());
    }
}
