//! ID-token checks (signature against the JWKS, refetched once on an unknown key id;
//! allowed algorithm, never `none`; `iss`; `aud`/`azp`; `exp`; `iat` within 10 minutes;
//! `nonce`) and turning a verified token into its claims.

use super::{Discovered, Provider};
use crate::error::IdTokenError;
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
pub(crate) struct VerifiedIdToken {
    pub(crate) raw: String,
    pub(crate) claims: Map<String, Value>,
}

impl VerifiedIdToken {
    pub(crate) fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Verifies `raw`. `nonce` is checked when given (login); on refresh there is none.
/// The error names the failed check.
pub(crate) async fn verify_id_token(
    provider: &Provider,
    discovered: Arc<Discovered>,
    raw: &str,
    nonce: Option<&str>,
) -> Result<VerifiedIdToken, IdTokenError> {
    let token = CoreIdToken::from_str(raw).map_err(IdTokenError::Malformed)?;
    match check(provider, &discovered, &token, nonce) {
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => {
            let Some(reloaded) = provider.refetch_jwks().await else {
                return Err(IdTokenError::NoMatchingKey);
            };
            check(provider, &reloaded, &token, nonce)?;
        }
        // A provider that signs without `kid` and rotated its only key: the signature
        // fails against the cached key. Refetch (rate-limited) and try once more.
        Err(
            e @ ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::CryptoError(_),
            ),
        ) if names_no_key(raw) => match provider.refetch_jwks().await {
            Some(reloaded) => check(provider, &reloaded, &token, nonce)?,
            None => return Err(e.into()),
        },
        other => other?,
    }
    let claims: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(raw)
        .map_err(IdTokenError::MalformedClaims)?;
    if !claims.get("sub").is_some_and(Value::is_string) {
        return Err(IdTokenError::NoSubject);
    }
    check_azp(&claims, &provider.config().client_id)?;
    Ok(VerifiedIdToken {
        raw: raw.to_string(),
        claims,
    })
}

fn check(
    provider: &Provider,
    discovered: &Discovered,
    token: &CoreIdToken,
    nonce: Option<&str>,
) -> Result<(), ClaimsVerificationError> {
    let now = provider.clock().now();
    let verifier = discovered
        .client
        .id_token_verifier()
        // docs/behaviour.md §4: `aud` must contain client_id; other audiences only when
        // trusted (`azp` is checked after: openidconnect 4.1 does not).
        .set_other_audience_verifier_fn(|aud| {
            provider
                .config()
                .trusted_audiences
                .iter()
                .any(|t| t == aud.as_str())
        })
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

/// Whether the token's header has no `kid`.
fn names_no_key(raw: &str) -> bool {
    jsonwebtoken::decode_header(raw).is_ok_and(|h| h.kid.is_none())
}

/// OpenID Connect Core §3.1.3.7: with several audiences `azp` must be present, and when
/// present it must be the client.
fn check_azp(claims: &Map<String, Value>, client_id: &str) -> Result<(), IdTokenError> {
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").map(Value::as_str) {
        Some(Some(azp)) if azp == client_id => Ok(()),
        Some(_) => Err(IdTokenError::Azp),
        None if several => Err(IdTokenError::Azp),
        None => Ok(()),
    }
}

fn to_datetime(epoch: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(epoch, 0).single().unwrap_or_default()
}
