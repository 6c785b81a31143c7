//! Deciding whether a bearer token is good at one provider: locally for JWTs when
//! `oauth.jwt` is on (signature against the provider's JWKS, allowed algorithms, `iss`,
//! `exp`, its `aud`), else by RFC 7662 introspection at the provider.

use crate::error::{JwtError, ProviderUnavailable};
use crate::outbound::Endpoint;
use crate::provider::{self, client_authenticated_post, Provider};
use crate::services::{Services, Validation};
use serde_json::{Map, Value};

/// The provider could not be asked (unreachable, 5xx, refused our credentials).
type Unavailable = ProviderUnavailable;

fn unavailable(cause: impl std::fmt::Display) -> Unavailable {
    ProviderUnavailable(cause.to_string())
}

/// Validates `token` at the default provider; an invalid token is `Ok` with
/// `active: false`.
pub async fn validate(gw: &Services, token: &str) -> Result<Validation, Unavailable> {
    validate_at(gw, 0, token).await
}

/// Validates `token` at the provider at `index` of the config's `providers`: a JWT (with
/// `oauth.jwt`) against its keys and audiences, anything else by introspection there.
pub(crate) async fn validate_at(
    gw: &Services,
    index: usize,
    token: &str,
) -> Result<Validation, Unavailable> {
    let now = gw.clock.now();
    let provider = gw.providers.at(index);
    let (active, claims) = if gw.config.oauth.jwt && looks_like_jwt(token) {
        match verify_jwt(provider, token).await? {
            Some(claims) => (true, claims),
            None => (false, Map::new()),
        }
    } else {
        introspect(gw, index, provider, token).await?
    };
    let exp = claims.get("exp").and_then(Value::as_i64);
    let active = active && exp.is_none_or(|e| e > now);
    let ttl = gw.token_cache.ttl_for(active, exp, now);
    Ok(Validation {
        active,
        claims,
        exp,
        ttl,
        headers: Default::default(),
    })
}

pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// RFC 7662 introspection at `provider` (the one at `index`), client authenticated as at
/// its token endpoint. `oauth.introspection_endpoint` is the default provider's.
async fn introspect(
    gw: &Services,
    index: usize,
    provider: &Provider,
    token: &str,
) -> Result<(bool, Map<String, Value>), Unavailable> {
    let configured = gw
        .config
        .oauth
        .introspection_endpoint
        .as_ref()
        .filter(|_| index == 0);
    let endpoint = match configured {
        Some(url) => url.to_string(),
        None => {
            let discovered = provider.get().await?;
            discovered
                .extra()
                .introspection_endpoint
                .as_ref()
                .map(|u| u.to_string())
                .ok_or_else(|| unavailable("the provider has no introspection_endpoint"))?
        }
    };
    let request = client_authenticated_post(
        provider,
        &endpoint,
        &[("token", token), ("token_type_hint", "access_token")],
    )
    .await
    .map_err(unavailable)?;
    gw.metrics.introspections.inc();
    let response = provider
        .http()
        .call(Endpoint::Introspection, request)
        .await
        .map_err(unavailable)?;
    let status = response.status();
    if !status.is_success() {
        if refuses_the_token(status, response.body()) {
            tracing::info!(%status, "the introspection endpoint refused the token itself");
            return Ok((false, Map::new()));
        }
        return Err(unavailable(format_args!(
            "the introspection endpoint answered {status}"
        )));
    }
    let claims: Map<String, Value> = serde_json::from_slice(response.body())
        .map_err(|_| unavailable("the introspection response is not a JSON object"))?;
    let active = claims.get("active") == Some(&Value::Bool(true))
        && is_access_token(&claims, gw.config.oauth.require_token_type);
    Ok((active, if active { claims } else { Map::new() }))
}

/// Whether an error answer is about the token (malformed, too large: the token is simply
/// not valid) rather than about us (our client credentials, or the provider failing).
/// RFC 7662 says an endpoint answers `active: false` for any bad token, but some answer
/// 400 `invalid_request` or 413 for one they cannot parse.
pub(crate) fn refuses_the_token(status: http::StatusCode, body: &[u8]) -> bool {
    use http::StatusCode;
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return true;
    }
    if status != StatusCode::BAD_REQUEST {
        return false;
    }
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
    // invalid_client / unauthorized_client (sent as 400 by some providers) are ours.
    !matches!(
        error.as_deref(),
        Some("invalid_client" | "unauthorized_client")
    )
}

/// Whether an active introspection result is an access token. RFC 7662 lets the endpoint
/// describe any token, and providers answer `active: true` for refresh tokens too; each
/// marks the kind its own way: `token_type` ("Bearer" for access tokens; "refresh_token"
/// at some providers, left out for refresh tokens by node oidc-provider and Doorkeeper),
/// Keycloak's `typ` ("Bearer", "Refresh", "Offline", "ID"), Ory Hydra's `token_use`.
/// A token marked as anything but an access token is refused; an unmarked one only
/// passes when `require_token_type` is off.
pub(crate) fn is_access_token(claims: &Map<String, Value>, require_marked: bool) -> bool {
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

/// Whether a JWT's `typ` header allows it to be an access token: `at+jwt` (RFC 9068),
/// `JWT`, or none. Anything else (`logout+jwt`, `dpop+jwt`, …) is another kind of token.
fn access_token_type(typ: Option<&str>) -> bool {
    let Some(typ) = typ else {
        return true;
    };
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("jwt")
}

/// The checks of a JWT access token beyond signature, `iss`, `exp`, `nbf` and `aud`: its
/// `typ` and no `nonce` (an ID token carries one; an access token never does).
async fn verify_access_jwt(
    provider: &Provider,
    token: &str,
) -> Result<Map<String, Value>, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(JwtError::Malformed)?;
    if !access_token_type(header.typ.as_deref()) {
        return Err(JwtError::NotAccessToken(header.typ.unwrap_or_default()));
    }
    // The provider's own audiences (`audience`, else `oauth.audience`).
    let audience = &provider.config().audience;
    let claims = provider::verify_jwt(provider, token, |rules| {
        rules.set_required_spec_claims(&["exp", "iss", "aud"]);
        rules.validate_nbf = true;
        rules.set_audience(audience);
    })
    .await?;
    if claims.contains_key("nonce") {
        return Err(JwtError::Nonce);
    }
    Ok(claims)
}

/// Local JWT validation; `None` for a token that fails any check.
async fn verify_jwt(
    provider: &Provider,
    token: &str,
) -> Result<Option<Map<String, Value>>, Unavailable> {
    let result = verify_access_jwt(provider, token).await;
    match result {
        Ok(claims) => Ok(Some(claims)),
        Err(JwtError::Unavailable(cause)) => Err(cause),
        Err(check) => {
            tracing::debug!(%check, "JWT access token rejected");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{access_token_type, is_access_token, refuses_the_token};

    #[test]
    fn only_access_token_types_pass() {
        for ok in [
            None,
            Some("at+jwt"),
            Some("AT+JWT"),
            Some("application/at+jwt"),
            Some("JWT"),
        ] {
            assert!(access_token_type(ok), "{ok:?}");
        }
        for bad in ["logout+jwt", "dpop+jwt", "secevent+jwt", "id_token", ""] {
            assert!(!access_token_type(Some(bad)), "{bad}");
        }
    }
    use http::StatusCode;

    #[test]
    fn which_error_answers_mean_an_invalid_token() {
        let refuses =
            |s: u16, b: &str| refuses_the_token(StatusCode::from_u16(s).unwrap(), b.as_bytes());
        assert!(refuses(400, r#"{"error":"invalid_request"}"#));
        assert!(refuses(400, "not json"));
        assert!(refuses(413, ""));
        assert!(!refuses(400, r#"{"error":"invalid_client"}"#));
        assert!(!refuses(401, r#"{"error":"invalid_client"}"#));
        assert!(!refuses(500, ""));
        assert!(!refuses(503, ""));
    }
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
