//! Deciding whether a bearer token is good: locally for JWTs when `oauth.jwt` is on
//! (signature against the provider JWKS, allowed algorithms, `iss`, `exp`, `aud`), else by
//! RFC 7662 introspection at the provider.

use super::cache::Validation;
use crate::gateway::Gateway;
use crate::oidc::client_authenticated_post;
use crate::oidc::jwt::{self, JwtError};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The provider could not be asked (unreachable, 5xx, refused our credentials).
    #[error("token validation unavailable: {0}")]
    Unavailable(String),
}

/// Validates `token`; an invalid token is `Ok` with `active: false`.
pub async fn validate(gw: &Gateway, token: &str) -> Result<Validation, ValidateError> {
    let now = gw.clock.now();
    let (active, claims) = if gw.config.oauth.jwt && looks_like_jwt(token) {
        match verify_jwt(gw, token).await? {
            Some(claims) => (true, claims),
            None => (false, Map::new()),
        }
    } else {
        introspect(gw, token).await?
    };
    let exp = claims.get("exp").and_then(Value::as_i64);
    let active = active && exp.is_none_or(|e| e > now);
    let ttl = gw.resource.cache.ttl_for(active, exp, now);
    Ok(Validation {
        active,
        claims,
        exp,
        ttl,
        headers: Default::default(),
    })
}

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// RFC 7662 introspection, client authenticated as at the token endpoint.
async fn introspect(
    gw: &Gateway,
    token: &str,
) -> Result<(bool, Map<String, Value>), ValidateError> {
    let endpoint = match &gw.config.oauth.introspection_endpoint {
        Some(url) => url.to_string(),
        None => {
            let loaded = gw
                .provider
                .get()
                .await
                .map_err(|e| ValidateError::Unavailable(e.0))?;
            loaded
                .extra()
                .introspection_endpoint
                .as_ref()
                .map(|u| u.to_string())
                .ok_or_else(|| {
                    ValidateError::Unavailable("the provider has no introspection_endpoint".into())
                })?
        }
    };
    let request = client_authenticated_post(
        gw.provider.config(),
        &endpoint,
        &[("token", token), ("token_type_hint", "access_token")],
    )
    .map_err(|e| ValidateError::Unavailable(e.to_string()))?;
    gw.metrics.introspections.inc();
    let response = gw
        .provider
        .http()
        .call(request)
        .await
        .map_err(|e| ValidateError::Unavailable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(ValidateError::Unavailable(format!(
            "the introspection endpoint answered {}",
            response.status()
        )));
    }
    let claims: Map<String, Value> = serde_json::from_slice(response.body()).map_err(|_| {
        ValidateError::Unavailable("the introspection response is not a JSON object".into())
    })?;
    let active = claims.get("active") == Some(&Value::Bool(true));
    Ok((active, if active { claims } else { Map::new() }))
}

/// Local JWT validation; `None` for a token that fails any check.
async fn verify_jwt(
    gw: &Gateway,
    token: &str,
) -> Result<Option<Map<String, Value>>, ValidateError> {
    let audience = gw.config.oauth.audience.clone();
    let result = jwt::verify(&gw.provider, token, |rules| {
        rules.set_required_spec_claims(&["exp", "iss"]);
        rules.validate_nbf = true;
        match &audience {
            Some(aud) => rules.set_audience(&[aud]),
            None => rules.validate_aud = false,
        }
    })
    .await;
    match result {
        Ok(claims) => Ok(Some(claims)),
        Err(JwtError::Unavailable(cause)) => Err(ValidateError::Unavailable(cause)),
        Err(JwtError::Invalid(check)) => {
            tracing::debug!(%check, "JWT access token rejected");
            Ok(None)
        }
    }
}
