//! ID-token checks (signature against the JWKS, refetched once on an unknown key id;
//! allowed algorithm, never `none`; `iss`; `aud`/`azp`; `exp`; `iat` within 10 minutes;
//! `nonce`) and turning a verified token into its claims.

use super::provider::{Loaded, Provider};
use chrono::{DateTime, TimeZone, Utc};
use openidconnect::core::CoreIdToken;
use openidconnect::{ClaimsVerificationError, Nonce, SignatureVerificationError};
use serde_json::{Map, Value};
use std::str::FromStr;
use std::sync::Arc;

/// How old an ID token's `iat` may be.
const MAX_IAT_AGE: i64 = 600;
/// Clock skew tolerated for `iat` in the future.
const SKEW: i64 = 60;

/// A verified ID token: its raw form and every claim as the provider sent it.
pub struct VerifiedIdToken {
    pub raw: String,
    pub claims: Map<String, Value>,
}

impl VerifiedIdToken {
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Verifies `raw`. `nonce` is checked when given (login); on refresh there is none.
/// The error names the failed check.
pub async fn verify_id_token(
    provider: &Provider,
    loaded: Arc<Loaded>,
    raw: &str,
    nonce: Option<&str>,
) -> Result<VerifiedIdToken, String> {
    let token = CoreIdToken::from_str(raw).map_err(|e| format!("malformed: {e}"))?;
    match check(provider, &loaded, &token, nonce) {
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => {
            let Some(reloaded) = provider.refetch_jwks().await else {
                return Err(
                    "signature: no key in the provider's JWKS matches the token's key id".into(),
                );
            };
            check(provider, &reloaded, &token, nonce).map_err(describe)?;
        }
        other => other.map_err(describe)?,
    }
    let claims: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(raw)
        .map_err(|e| format!("malformed claims: {e}"))?;
    if !claims.get("sub").is_some_and(Value::is_string) {
        return Err("sub: missing".into());
    }
    Ok(VerifiedIdToken {
        raw: raw.to_string(),
        claims,
    })
}

fn check(
    provider: &Provider,
    loaded: &Loaded,
    token: &CoreIdToken,
    nonce: Option<&str>,
) -> Result<(), ClaimsVerificationError> {
    let now = provider.clock().now();
    let verifier = loaded
        .client
        .id_token_verifier()
        // SPEC §4: `aud` must contain client_id; other audiences are allowed, and then the
        // library requires `azp` to be client_id.
        .set_other_audience_verifier_fn(|_| true)
        .set_time_fn(move || to_datetime(now))
        .set_issue_time_verifier_fn(move |iat: DateTime<Utc>| {
            let iat = iat.timestamp();
            if now - iat > MAX_IAT_AGE {
                Err(format!(
                    "iat: issued {}s ago (limit {MAX_IAT_AGE}s)",
                    now - iat
                ))
            } else if iat > now + SKEW {
                Err("iat: issued in the future".into())
            } else {
                Ok(())
            }
        });
    match nonce {
        Some(n) => token
            .claims(&verifier, &Nonce::new(n.to_string()))
            .map(|_| ()),
        None => token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map(|_| ()),
    }
}

fn to_datetime(epoch: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(epoch, 0).single().unwrap_or_default()
}

/// Names the failed check for pages and logs.
fn describe(e: ClaimsVerificationError) -> String {
    use ClaimsVerificationError as C;
    use SignatureVerificationError as S;
    match e {
        // openidconnect reports our iat check as Expired; its message already names it.
        C::Expired(m) if m.starts_with("iat") => m,
        C::Expired(m) => format!("exp: {m}"),
        C::InvalidAudience(m) => format!("aud: {m}"),
        C::InvalidIssuer(m) => format!("iss: {m}"),
        C::InvalidNonce(m) => format!("nonce: {m}"),
        C::InvalidSubject(m) => format!("sub: {m}"),
        C::InvalidAuthTime(m) => format!("auth_time: {m}"),
        C::SignatureVerification(s) => match s {
            S::NoSignature => "alg: unsigned tokens (alg none) are not accepted".into(),
            S::DisallowedAlg(m) | S::UnsupportedAlg(m) => format!("alg: {m}"),
            S::NoMatchingKey => "signature: no matching key".into(),
            other => format!("signature: {other}"),
        },
        other => other.to_string(),
    }
}
