//! Bearer-token routes (`auth = "oauth20"`, an OAuth 2.0 resource server): find the token,
//! validate it (cached), apply the route's claim rules. Returns who the token speaks for,
//! or the refusal; the pipeline forwards.

pub(crate) mod token;
pub mod validate;

use crate::authz;
use crate::config::{RouteConfig, UnauthAction};
use crate::error::{BearerError, GatewayError, ProviderUnavailable};
use crate::provider::unverified_issuer;
use crate::request::BODY_READ_TIMEOUT;
use crate::services::token_cache::key_at;
use crate::services::{Services, Validation};
use bytes::Bytes;
use http::request::Parts;
use http::Method;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::sync::Arc;
use token::Found;

use crate::response::Body;

/// What a bearer-token route decided about a request.
pub(crate) enum Bearer {
    /// A valid token that meets the route's rules: forward with its identity.
    Authenticated {
        token: String,
        validation: Arc<Validation>,
        body: Body,
    },
    /// No token where none is needed (a CORS preflight, `unauth_action = "pass"`):
    /// forward without identity.
    Anonymous(Body),
    Refused(GatewayError),
}

fn is_cors_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS && parts.headers.contains_key("access-control-request-method")
}

fn refuse(gw: &Services, error: BearerError) -> Bearer {
    gw.metrics.bearer_rejected.inc();
    Bearer::Refused(GatewayError::Bearer(error))
}

/// Finds and checks the request's bearer token. Reads a form body only when the token may
/// be in it (`accept_token_as` has `post`), and hands the body back either way.
pub(crate) async fn authenticate(
    gw: &Services,
    route: &RouteConfig,
    parts: &Parts,
    body: Incoming,
) -> Bearer {
    let sources = &gw.config.oauth.accept_token_as;
    let (form, body): (Option<Bytes>, Body) = if token::wants_form_body(sources, parts) {
        let read = Limited::new(body, token::MAX_FORM_BODY).collect();
        match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
            Ok(Ok(collected)) => {
                let bytes = collected.to_bytes();
                (Some(bytes.clone()), Body::Right(Full::new(bytes)))
            }
            Ok(Err(_)) => return Bearer::Refused(GatewayError::FormTooLarge),
            Err(_) => return Bearer::Refused(GatewayError::BodyTimeout),
        }
    } else {
        (None, Body::Left(body))
    };
    let token = match token::find(sources, parts, form.as_deref()) {
        Found::One(t) => t,
        // A preflight carries no credentials; `unauth_action = "pass"` lets anonymous
        // requests through (without identity headers: they were scrubbed).
        Found::None if is_cors_preflight(parts) || route.unauth_action == UnauthAction::Pass => {
            return Bearer::Anonymous(body);
        }
        Found::None | Found::Ambiguous => return refuse(gw, BearerError::InvalidRequest),
    };
    if !token::is_plausible(&token) {
        return refuse(gw, BearerError::InvalidToken);
    }
    let validation = match validation(gw, route, &token).await {
        Ok(Some(v)) => v,
        Ok(None) => return refuse(gw, BearerError::InvalidToken),
        Err(cause) => {
            return Bearer::Refused(GatewayError::BearerUnavailable(Arc::unwrap_or_clone(cause)))
        }
    };
    let still_valid = validation.exp.is_none_or(|e| e > gw.clock.now());
    if !validation.active || !still_valid {
        return refuse(gw, BearerError::InvalidToken);
    }
    if let Some(rule) = authz::first_failing(&route.require_claims, &validation.claims) {
        tracing::info!(rule = rule.as_str(), "bearer token lacks a required claim");
        return refuse(gw, BearerError::InsufficientScope);
    }
    gw.metrics.bearer_accepted.inc();
    Bearer::Authenticated {
        token,
        validation,
        body,
    }
}

/// `token`'s validation at the route's providers (`None`: none may vouch for it). A JWT
/// (with `oauth.jwt`) is checked at the provider its (unverified) `iss` names, if the
/// route accepts that one; an opaque token is introspected at the route's providers in
/// order until one says it is active, so only providers the route trusts see it. Each
/// provider's result is cached under its own key.
async fn validation(
    gw: &Services,
    route: &RouteConfig,
    token: &str,
) -> Result<Option<Arc<Validation>>, Arc<ProviderUnavailable>> {
    if gw.config.oauth.jwt && validate::looks_like_jwt(token) {
        // A cached result first: reading `iss` costs a decode per request, a lookup does
        // not (a JWT is only ever cached under the key of the provider it names).
        for &index in &route.providers {
            if let Some(found) = gw.token_cache.cached(&cache_key(gw, index, token)).await {
                return Ok(Some(found));
            }
        }
        let index = unverified_issuer(token)
            .and_then(|iss| gw.providers.by_issuer(&iss).map(|(i, _)| i))
            .filter(|i| route.providers.contains(i));
        return match index {
            Some(index) => at_provider(gw, index, token).await.map(Some),
            None => {
                tracing::debug!("JWT access token from an issuer this route does not accept");
                Ok(None)
            }
        };
    }
    let mut last = None;
    let mut unavailable = None;
    for &index in &route.providers {
        match at_provider(gw, index, token).await {
            Ok(v) if v.active => return Ok(Some(v)),
            Ok(v) => last = Some(v),
            Err(cause) => unavailable = unavailable.or(Some(cause)),
        }
    }
    // An inactive answer from every provider that answered is only final when all did.
    match unavailable {
        Some(cause) => Err(cause),
        None => Ok(last),
    }
}

/// The (cached, single-flight, with `[redis]` maybe shared) validation of `token` at the
/// provider at `index`.
async fn at_provider(
    gw: &Services,
    index: usize,
    token: &str,
) -> Result<Arc<Validation>, Arc<ProviderUnavailable>> {
    let key = cache_key(gw, index, token);
    gw.token_cache
        // Boxed when polled, i.e. only on a cache miss: the validation future is large.
        .get_or_validate_key(key, async {
            let validate = validate::validate_at(gw, index, token);
            Box::pin(gw.replicas.shared_validation(&key, validate)).await
        })
        .await
}

/// The cache key of `token`'s validation at the provider at `index`.
fn cache_key(gw: &Services, index: usize, token: &str) -> crate::services::token_cache::Key {
    let name = (index > 0).then(|| gw.providers.at(index).config().name.as_str());
    key_at(name, token)
}
