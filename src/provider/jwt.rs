//! JWTs verified against the provider's JWKS with jsonwebtoken (bearer access tokens and
//! back-channel logout tokens): asymmetric algorithms only, the key found by `kid` (JWKS
//! refetched once, rate-limited, when the `kid` is unknown).

use super::Provider;
use crate::error::JwtError;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Asymmetric algorithms only: `none` and HMAC (which would need a shared secret) never.
pub(crate) const ALLOWED_ALGS: [Algorithm; 9] = [
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

/// Verifies `token`'s signature and the rules `configure` sets on a [`Validation`] whose
/// algorithm, issuer and leeway are already filled in. Returns the claims.
pub(crate) async fn verify(
    provider: &Provider,
    token: &str,
    configure: impl FnOnce(&mut Validation),
) -> Result<Map<String, Value>, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(JwtError::Malformed)?;
    if !ALLOWED_ALGS.contains(&header.alg) {
        return Err(JwtError::DisallowedAlg(header.alg));
    }
    let discovered = provider.get().await?;
    let find = |jwks: &jsonwebtoken::jwk::JwkSet| match &header.kid {
        Some(kid) => jwks.find(kid).cloned(),
        None if jwks.keys.len() == 1 => jwks.keys.first().cloned(),
        None => None,
    };
    let jwk = match find(&discovered.jwks) {
        Some(k) => k,
        None => provider
            .refetch_jwks()
            .await
            .and_then(|reloaded| find(&reloaded.jwks))
            .ok_or(JwtError::NoMatchingKey)?,
    };
    let issuer = &provider.config().issuer;
    let mut rules = Validation::new(header.alg);
    rules.set_issuer(&[issuer.as_str(), issuer.trim_end_matches('/')]);
    rules.leeway = 30;
    configure(&mut rules);
    let decode = |jwk: &jsonwebtoken::jwk::Jwk| {
        let key = DecodingKey::from_jwk(jwk).map_err(JwtError::UnusableKey)?;
        Ok::<_, JwtError>(jsonwebtoken::decode::<Map<String, Value>>(
            token, &key, &rules,
        )?)
    };
    let data = match decode(&jwk) {
        // A provider that signs without `kid` and rotated its only key: the signature
        // fails against the cached key. Refetch (rate-limited) and try once more.
        Err(JwtError::Signature(_)) if header.kid.is_none() => {
            let jwk = provider
                .refetch_jwks()
                .await
                .and_then(|reloaded| find(&reloaded.jwks))
                .ok_or(JwtError::NoMatchingKey)?;
            decode(&jwk)?
        }
        other => other?,
    };
    // jsonwebtoken checks time against the system clock; check ours too (tests move it).
    if let Some(exp) = data.claims.get("exp").and_then(Value::as_i64) {
        if exp + 30 < provider.clock().now() {
            return Err(JwtError::Expired);
        }
    }
    Ok(data.claims)
}

/// Longest JWT payload whose `iss` is read before verification (the token's signature is
/// checked after, against the keys of the provider `iss` names).
const MAX_UNVERIFIED_PAYLOAD: usize = 16 * 1024;

/// The `iss` claim of a compact JWT, *unverified*: only to choose which provider's keys
/// verify it. `None` when the token is not a JWT or names no issuer.
pub(crate) fn unverified_issuer(token: &str) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: Option<String>,
    }
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > MAX_UNVERIFIED_PAYLOAD {
        return None;
    }
    let json = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Issuer>(&json).ok()?.iss
}

#[cfg(test)]
mod issuer_tests {
    use super::unverified_issuer;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.sig",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn the_issuer_is_read_from_the_payload() {
        assert_eq!(
            unverified_issuer(&jwt(r#"{"iss":"https://a.example","sub":"x"}"#)).as_deref(),
            Some("https://a.example")
        );
        assert_eq!(unverified_issuer(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(unverified_issuer(&jwt(r#"{"iss":7}"#)), None);
        assert_eq!(unverified_issuer(&jwt("not json")), None);
        assert_eq!(unverified_issuer("opaque-token"), None);
        assert_eq!(unverified_issuer("a.b.c.d"), None);
        let huge = format!(r#"{{"iss":"{}"}}"#, "x".repeat(20_000));
        assert_eq!(unverified_issuer(&jwt(&huge)), None);
    }
}
