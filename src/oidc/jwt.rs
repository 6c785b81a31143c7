//! JWTs verified against the provider's JWKS with jsonwebtoken (bearer access tokens and
//! back-channel logout tokens): asymmetric algorithms only, the key found by `kid` (JWKS
//! refetched once, rate-limited, when the `kid` is unknown).

use super::provider::Provider;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Asymmetric algorithms only: `none` and HMAC (which would need a shared secret) never.
pub const ALLOWED_ALGS: [Algorithm; 9] = [
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

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The provider's keys could not be had.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The token fails a check; the string names it.
    #[error("{0}")]
    Invalid(String),
}

/// Verifies `token`'s signature and the rules `configure` sets on a [`Validation`] whose
/// algorithm, issuer and leeway are already filled in. Returns the claims.
pub async fn verify(
    provider: &Provider,
    token: &str,
    configure: impl FnOnce(&mut Validation),
) -> Result<Map<String, Value>, JwtError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| JwtError::Invalid(format!("malformed: {e}")))?;
    if !ALLOWED_ALGS.contains(&header.alg) {
        return Err(JwtError::Invalid(format!(
            "alg: {:?} is not allowed",
            header.alg
        )));
    }
    let loaded = provider
        .get()
        .await
        .map_err(|e| JwtError::Unavailable(e.0))?;
    let find = |jwks: &jsonwebtoken::jwk::JwkSet| match &header.kid {
        Some(kid) => jwks.find(kid).cloned(),
        None if jwks.keys.len() == 1 => jwks.keys.first().cloned(),
        None => None,
    };
    let jwk = match find(&loaded.jwks) {
        Some(k) => k,
        None => provider
            .refetch_jwks()
            .await
            .and_then(|reloaded| find(&reloaded.jwks))
            .ok_or_else(|| {
                JwtError::Invalid("signature: no key in the provider's JWKS matches the kid".into())
            })?,
    };
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|e| JwtError::Invalid(format!("signature: unusable key: {e}")))?;
    let issuer = &provider.config().issuer;
    let mut rules = Validation::new(header.alg);
    rules.set_issuer(&[issuer.as_str(), issuer.trim_end_matches('/')]);
    rules.leeway = 30;
    configure(&mut rules);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &rules)
        .map_err(|e| JwtError::Invalid(describe(&e)))?;
    // jsonwebtoken checks time against the system clock; check ours too (tests move it).
    if let Some(exp) = data.claims.get("exp").and_then(Value::as_i64) {
        if exp + 30 < provider.clock().now() {
            return Err(JwtError::Invalid("exp: the token has expired".into()));
        }
    }
    Ok(data.claims)
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => "signature: invalid".into(),
        K::ExpiredSignature => "exp: the token has expired".into(),
        K::InvalidIssuer => "iss: not the provider".into(),
        K::InvalidAudience => "aud: not for this client".into(),
        K::ImmatureSignature => "nbf: not yet valid".into(),
        K::MissingRequiredClaim(c) => format!("{c}: missing"),
        K::InvalidAlgorithm => "alg: does not match the key".into(),
        other => format!("invalid: {other:?}"),
    }
}
