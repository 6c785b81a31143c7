//! Bearer-token routes (`auth = "oauth20"`, an OAuth 2.0 resource server): find the token,
//! validate it (cached), apply claim rules, pass the identity upstream; and the
//! `remove_at_cache` hook.

pub mod cache;
pub mod token;
pub mod validate;

use crate::authz;
use crate::config::{RouteConfig, UnauthAction};
use crate::gateway::Gateway;
use crate::proxy::forwarded::RequestCtx;
use crate::response::{self, Body};
use bytes::Bytes;
use cache::TokenCache;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use token::Found;

/// Bearer-route state kept for the life of the process.
pub struct Resource {
    pub cache: TokenCache,
}

impl Resource {
    pub fn new(cfg: &crate::config::OAuthConfig) -> Resource {
        Resource {
            cache: TokenCache::new(cfg.introspection_cache, cfg.cache_max_bytes),
        }
    }
}

fn bearer_error(status: StatusCode, error: &'static str) -> Response<Body> {
    let mut resp = response::text(status, format!("{} {error}\n", status.as_u16()));
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_str(&format!("Bearer error=\"{error}\"")).expect("static header"),
    );
    resp
}

fn is_cors_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS && parts.headers.contains_key("access-control-request-method")
}

pub async fn handle(
    gw: &Gateway,
    route: &RouteConfig,
    mut parts: Parts,
    body: Incoming,
    ctx: &RequestCtx,
) -> Response<Body> {
    let sources = &gw.config.oauth.accept_token_as;
    let (form, body): (Option<Bytes>, Body) = if token::wants_form_body(sources, &parts) {
        match Limited::new(body, token::MAX_FORM_BODY).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                (Some(bytes.clone()), Body::Right(Full::new(bytes)))
            }
            Err(_) => {
                return response::text(StatusCode::PAYLOAD_TOO_LARGE, "413 form body too large\n");
            }
        }
    } else {
        (None, Body::Left(body))
    };
    let token = match token::find(sources, &parts, form.as_deref()) {
        Found::One(t) => t,
        // A preflight carries no credentials; `unauth_action = "pass"` lets anonymous
        // requests through (without identity headers: they were scrubbed).
        Found::None if is_cors_preflight(&parts) || route.unauth_action == UnauthAction::Pass => {
            return gw.forward(route, parts, body, ctx, Vec::new()).await;
        }
        Found::None | Found::Ambiguous => {
            gw.metrics.bearer_rejected.inc();
            return bearer_error(StatusCode::UNAUTHORIZED, "invalid_request");
        }
    };
    if !token::is_plausible(&token) {
        gw.metrics.bearer_rejected.inc();
        return bearer_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let validation = match gw
        .resource
        .cache
        // Boxed when polled, i.e. only on a cache miss: the validation future is large.
        .get_or_validate(&token, async {
            Box::pin(validate::validate(gw, &token)).await
        })
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "bearer token could not be validated");
            return response::page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Identity provider unreachable",
                "The access token cannot be validated right now.",
                None,
            );
        }
    };
    let still_valid = validation.exp.is_none_or(|e| e > gw.clock.now());
    if !validation.active || !still_valid {
        gw.metrics.bearer_rejected.inc();
        return bearer_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    if let Some(rule) = authz::first_failing(&route.require_claims, &validation.claims) {
        tracing::info!(rule = rule.as_str(), "bearer token lacks a required claim");
        gw.metrics.bearer_rejected.inc();
        return bearer_error(StatusCode::FORBIDDEN, "insufficient_scope");
    }
    gw.metrics.bearer_accepted.inc();
    // Built once per cached validation (the token is part of its key), then reused.
    let identity = validation.headers.get_or_init(|| {
        gw.identity
            .for_token(&token, validation.exp, &validation.claims)
    });
    parts.headers.reserve(identity.len());
    for (name, value) in identity.iter() {
        parts.headers.insert(name.clone(), value.clone());
    }
    gw.forward(route, parts, body, ctx, Vec::new()).await
}

/// `<redirect_uri>?remove_at_cache=<token>`: knowing the token is the credential.
pub async fn remove_from_cache(gw: &Gateway, token: &str) -> Response<Body> {
    if token.is_empty() {
        return response::text(
            StatusCode::BAD_REQUEST,
            "400 remove_at_cache needs a token\n",
        );
    }
    if gw.resource.cache.remove(token).await {
        response::text(StatusCode::OK, "200 removed\n")
    } else {
        response::text(StatusCode::NOT_FOUND, "404 not cached\n")
    }
}
