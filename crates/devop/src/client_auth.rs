//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic` (RFC 6749 §2.3.1) or `client_secret_post`, exactly one of them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{HeaderMap, AUTHORIZATION};
use percent_encoding::percent_decode_str;

use super::error::TokenError;
use super::http::Params;
use super::provider::Provider;

/// Succeeds when the request authenticates the registered client by exactly one method.
pub(crate) fn authenticate(
    op: &Provider,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(), TokenError> {
    let basic = basic_credentials(headers)?;
    let body_secret = params.get("client_secret");
    match (basic, body_secret) {
        (Some(_), Some(_)) => Err(TokenError::MultipleClientAuth),
        (Some((id, secret)), None) => {
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(TokenError::ClientIdMismatch);
            }
            check(op, &id, &secret, true)
        }
        (None, Some(secret)) => {
            let id = params
                .get("client_id")
                .ok_or(TokenError::ClientAuthFailed { basic: false })?;
            check(op, id, secret, false)
        }
        (None, None) => Err(TokenError::NoClientAuth),
    }
}

fn check(op: &Provider, id: &str, secret: &str, basic: bool) -> Result<(), TokenError> {
    // Evaluate both so timing does not tell which one was wrong.
    let id_ok = id == op.client_id;
    let secret_ok = op.secret_matches(secret);
    if id_ok && secret_ok {
        Ok(())
    } else {
        Err(TokenError::ClientAuthFailed { basic })
    }
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`, if that scheme is used.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, TokenError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| TokenError::MalformedBasic)?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| TokenError::MalformedBasic)?;
    let decoded = String::from_utf8(decoded).map_err(|_| TokenError::MalformedBasic)?;
    let (id, secret) = decoded.split_once(':').ok_or(TokenError::MalformedBasic)?;
    Ok(Some((form_decode(id)?, form_decode(secret)?)))
}

/// RFC 6749 §2.3.1: the id and secret are form-urlencoded before being joined.
fn form_decode(s: &str) -> Result<String, TokenError> {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| TokenError::MalformedBasic)
}
