//! Client authentication at the token, introspection, revocation and PAR endpoints:
//! `client_secret_basic` (RFC 6749 §2.3.1), `client_secret_post`, or an RFC 7523 JWT
//! assertion (`private_key_jwt` against the registered public key, `client_secret_jwt`
//! with the secret as HMAC key), exactly one of them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{HeaderMap, AUTHORIZATION};
use percent_encoding::percent_decode_str;

use super::error::TokenError;
use super::http::Params;
use super::provider::{lock, Provider};

/// Succeeds when the request authenticates the registered client by exactly one method.
pub(crate) fn authenticate(
    op: &Provider,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(), TokenError> {
    let basic = basic_credentials(headers)?;
    let body_secret = params.get("client_secret");
    let assertion = params.get("client_assertion");
    let method = match (&basic, body_secret, assertion) {
        (Some(_), None, None) => "client_secret_basic",
        (None, Some(_), None) => "client_secret_post",
        (None, None, Some(a)) => assertion_method(a),
        (None, None, None) => return Err(TokenError::NoClientAuth),
        _ => return Err(TokenError::MultipleClientAuth),
    };
    if let Some(required) = lock(&op.client_auth).required.as_deref() {
        if required != method {
            return Err(TokenError::ClientAuthMethodRefused(method));
        }
    }
    if let Some(assertion) = assertion {
        verify_assertion(op, params, assertion, method)?;
        lock(&op.client_auth).used.push(method.to_string());
        return Ok(());
    }
    let result = match (basic, body_secret) {
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
    };
    if result.is_ok() {
        lock(&op.client_auth).used.push(method.to_string());
    }
    result
}

/// RFC 7523 §2.2: the assertion type names a JWT bearer assertion.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest `exp - iat` accepted, as oidc-provider's default clock rules allow.
const MAX_ASSERTION_LIFETIME: i64 = 300;

/// `client_secret_jwt` for an HMAC-signed assertion, else `private_key_jwt` (read from
/// the unverified header only to pick the key; the signature is checked next).
fn assertion_method(assertion: &str) -> &'static str {
    match jsonwebtoken::decode_header(assertion).map(|h| h.alg) {
        Ok(
            jsonwebtoken::Algorithm::HS256
            | jsonwebtoken::Algorithm::HS384
            | jsonwebtoken::Algorithm::HS512,
        ) => "client_secret_jwt",
        _ => "private_key_jwt",
    }
}

/// Checks a client assertion: type, signature (the registered public key, or the secret),
/// `iss` = `sub` = client_id, `aud` this provider (issuer or one of its endpoints), `exp`
/// in the future and at most [`MAX_ASSERTION_LIFETIME`] after `iat`, a `jti` not seen before.
fn verify_assertion(
    op: &Provider,
    params: &Params,
    assertion: &str,
    method: &str,
) -> Result<(), TokenError> {
    let failed = |why: &'static str| TokenError::AssertionRefused(why);
    if params.get("client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err(failed("client_assertion_type is not jwt-bearer"));
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| failed("not a JWT"))?;
    let key = if method == "client_secret_jwt" {
        jsonwebtoken::DecodingKey::from_secret(op.client_secret().as_bytes())
    } else {
        let policy = lock(&op.client_auth);
        let jwk = policy
            .public_key
            .as_ref()
            .ok_or(failed("no public key is registered for private_key_jwt"))?;
        if header.kid.is_some() && header.kid != jwk.common.key_id {
            return Err(failed("kid is not the registered key's"));
        }
        jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|_| failed("unusable registered key"))?
    };
    let iss = &op.issuer;
    let audiences = [
        iss.clone(),
        format!("{iss}/token"),
        format!("{iss}/introspect"),
        format!("{iss}/revoke"),
        format!("{iss}/par"),
    ];
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.set_issuer(&[op.client_id.as_str()]);
    validation.sub = Some(op.client_id.clone());
    validation.set_audience(&audiences);
    validation.leeway = 0;
    // The OP's clock, not the system's: tests move it.
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation)
        .map_err(|_| failed("signature, iss, sub or aud is wrong"))?
        .claims;
    let now = op.now();
    let exp = claims["exp"]
        .as_i64()
        .ok_or(failed("exp is not a number"))?;
    let iat = claims["iat"].as_i64().unwrap_or(now);
    if exp <= now {
        return Err(failed("expired"));
    }
    if exp - iat > MAX_ASSERTION_LIFETIME {
        return Err(failed("lives too long"));
    }
    let jti = claims["jti"].as_str().ok_or(failed("no jti"))?;
    if !lock(&op.client_auth).seen_jti.insert(jti.to_string()) {
        return Err(failed("jti already used"));
    }
    if params.get("client_id").is_some_and(|id| id != op.client_id) {
        return Err(TokenError::ClientIdMismatch);
    }
    Ok(())
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
