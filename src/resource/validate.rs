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
    let active = claims.get("active") == Some(&Value::Bool(true))
        && is_access_token(&claims, gw.config.oauth.require_token_type);
    Ok((active, if active { claims } else { Map::new() }))
}

/// Whether an active introspection result is an access token. RFC 7662 lets the endpoint
/// describe any token, and providers answer `active: true` for refresh tokens too; each
/// marks the kind its own way: `token_type` ("Bearer" for access tokens; "refresh_token"
/// at some providers, left out for refresh tokens by node oidc-provider and Doorkeeper),
/// Keycloak's `typ` ("Bearer", "Refresh", "Offline", "ID"), Ory Hydra's `token_use`.
/// A token marked as anything but an access token is refused; an unmarked one only
/// passes when `require_token_type` is off.
fn is_access_token(claims: &Map<String, Value>, require_marked: bool) -> bool {
    let field = |name: &str| claims.get(name).and_then(Value::as_str);
    let mut marked = false;
    if let Some(t) = field("token_type") {
        if !t.eq_ignore_ascii_case("bearer") {
            tracing::info!(
                token_type = t,
                "introspected token is not a bearer access token"
            );
            return false;
        }
        marked = true;
    }
    if let Some(t) = field("token_use") {
        if t != "access_token" {
            tracing::info!(token_use = t, "introspected token is not an access token");
            return false;
        }
        marked = true;
    }
    if let Some(t) = field("typ") {
        if t.eq_ignore_ascii_case("bearer") {
            marked = true;
        } else if ["refresh", "offline", "id", "logout"]
            .iter()
            .any(|k| t.eq_ignore_ascii_case(k))
        {
            tracing::info!(typ = t, "introspected token is not an access token");
            return false;
        }
    }
    if !marked && require_marked {
        tracing::info!(
            "the introspection response does not say the token is an access token \
             (no token_type; see oauth.require_token_type)"
        );
    }
    marked || !require_marked
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

#[cfg(test)]
mod tests {
    use super::is_access_token;
    use serde_json::{json, Map, Value};

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn only_access_tokens_pass_introspection() {
        let at = claims(json!({"active": true, "token_type": "Bearer"}));
        assert!(is_access_token(&at, true));
        let kc_at = claims(json!({"active": true, "typ": "Bearer"}));
        assert!(is_access_token(&kc_at, true));
        let hydra_at = claims(json!({"active": true, "token_use": "access_token"}));
        assert!(is_access_token(&hydra_at, true));
        for refresh in [
            json!({"active": true, "token_type": "refresh_token"}),
            json!({"active": true, "token_type": "DPoP"}),
            json!({"active": true, "typ": "Refresh"}),
            json!({"active": true, "typ": "Offline"}),
            json!({"active": true, "token_use": "refresh_token"}),
        ] {
            assert!(
                !is_access_token(&claims(refresh.clone()), false),
                "{refresh}"
            );
        }
        // node oidc-provider: a refresh token is the one without token_type.
        let unmarked = claims(json!({"active": true, "sub": "alice"}));
        assert!(!is_access_token(&unmarked, true));
        assert!(is_access_token(&unmarked, false));
    }
}
