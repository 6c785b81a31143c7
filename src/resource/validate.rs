//! Deciding whether a bearer token is good: locally for JWTs when `oauth.jwt` is on
//! (signature against the provider JWKS, allowed algorithms, `iss`, `exp`, `aud`), else by
//! RFC 7662 introspection at the provider.

use super::cache::Validation;
use crate::gateway::Gateway;
use crate::oidc::client_authenticated_post;
use jsonwebtoken::{Algorithm, DecodingKey, Validation as JwtRules};
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

/// Asymmetric algorithms only: `none` and HMAC (which would need a shared secret) never.
const ALLOWED_ALGS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Local JWT validation; `None` for a token that fails any check.
async fn verify_jwt(
    gw: &Gateway,
    token: &str,
) -> Result<Option<Map<String, Value>>, ValidateError> {
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return Ok(None);
    };
    if !ALLOWED_ALGS.contains(&header.alg) {
        return Ok(None);
    }
    let mut loaded = gw
        .provider
        .get()
        .await
        .map_err(|e| ValidateError::Unavailable(e.0))?;
    let find = |jwks: &jsonwebtoken::jwk::JwkSet| match &header.kid {
        Some(kid) => jwks.find(kid).cloned(),
        None if jwks.keys.len() == 1 => jwks.keys.first().cloned(),
        None => None,
    };
    let jwk = match find(&loaded.jwks) {
        Some(k) => k,
        None => match gw.provider.refetch_jwks().await {
            Some(reloaded) => {
                loaded = reloaded;
                match find(&loaded.jwks) {
                    Some(k) => k,
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        },
    };
    let Ok(key) = DecodingKey::from_jwk(&jwk) else {
        return Ok(None);
    };
    let mut rules = JwtRules::new(header.alg);
    rules.set_issuer(&[
        gw.provider.config().issuer.as_str(),
        gw.provider.config().issuer.trim_end_matches('/'),
    ]);
    rules.set_required_spec_claims(&["exp", "iss"]);
    rules.leeway = 30;
    rules.validate_nbf = true;
    match &gw.config.oauth.audience {
        Some(aud) => rules.set_audience(&[aud]),
        None => rules.validate_aud = false,
    }
    // jsonwebtoken checks exp against the system clock; check ours too (tests move it).
    match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &rules) {
        Ok(data) => {
            let exp = data.claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
            Ok((exp > gw.clock.now()).then_some(data.claims))
        }
        Err(_) => Ok(None),
    }
}
