//! The token endpoint: authorization_code (with PKCE and code-reuse revocation) and
//! refresh_token (with rotation and reuse detection) grants.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::request::Parts;
use http::StatusCode;
use hyper::body::Incoming;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::client_auth::authenticate;
use super::error::TokenError;
use super::http::{json, read_form, Params, Resp};
use super::mint::{has_scope, token_response, Issue};
use super::provider::{constant_time_eq, lock, Provider};
use super::store::{random_token, AuthCode, PkceMethod, RefreshToken};

pub(crate) async fn handle(op: &Provider, parts: Parts, body: Incoming) -> Resp {
    let params = match read_form(&parts.headers, body).await {
        Ok(params) => params,
        Err(err) => return TokenError::from(err).response(),
    };
    let grant_type = params.get("grant_type");
    let is_refresh = grant_type == Some("refresh_token");
    if is_refresh {
        op.count(|c| c.refresh_grants += 1);
    } else if grant_type == Some("authorization_code") {
        op.count(|c| c.code_grants += 1);
    }
    match grant(op, &parts, &params) {
        Ok(body) => json(StatusCode::OK, &body),
        Err(err) => {
            if is_refresh {
                op.count(|c| c.refresh_failures += 1);
            }
            tracing::debug!(error = %err, "token request refused");
            err.response()
        }
    }
}

fn grant(op: &Provider, parts: &Parts, params: &Params) -> Result<Value, TokenError> {
    if let Some(name) = params.repeated() {
        return Err(TokenError::RepeatedParameter(name.to_owned()));
    }
    let grant_type = params
        .get("grant_type")
        .ok_or(TokenError::MissingParameter("grant_type"))?;
    authenticate(op, &parts.headers, params)?;
    match grant_type {
        "authorization_code" => code_grant(op, params),
        "refresh_token" => refresh_grant(op, params),
        other => Err(TokenError::UnsupportedGrantType(other.to_owned())),
    }
}

fn code_grant(op: &Provider, params: &Params) -> Result<Value, TokenError> {
    let code = params
        .get("code")
        .ok_or(TokenError::MissingParameter("code"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or(TokenError::MissingParameter("redirect_uri"))?;
    let record = redeem_code(op, code, redirect_uri, params.get("code_verifier"))?;
    let issue = Issue {
        login: &record.login,
        scope: &record.scope,
        refresh_scope: &record.scope,
        nonce: record.nonce.as_deref(),
        grant_id: &record.grant_id,
        keep_refresh: None,
    };
    Ok(token_response(op, &issue))
}

/// Checks a code in oidc-provider's order and consumes it. A second redemption revokes
/// every token issued from the first (RFC 6749 §4.1.2).
fn redeem_code(
    op: &Provider,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Result<AuthCode, TokenError> {
    let now = op.now();
    let mut store = lock(&op.store);
    let record = store.code_mut(code).ok_or(TokenError::CodeNotFound)?;
    if record.client_id != op.client_id {
        return Err(TokenError::CodeClientMismatch);
    }
    if now >= record.expires_at {
        return Err(TokenError::CodeExpired);
    }
    check_pkce(record, verifier)?;
    if record.redirect_uri != redirect_uri {
        return Err(TokenError::RedirectUriMismatch);
    }
    if record.consumed {
        let grant_id = record.grant_id.clone();
        store.revoke_grant(&grant_id);
        return Err(TokenError::CodeConsumed);
    }
    record.consumed = true;
    Ok(record.clone())
}

/// RFC 7636 §4.6. Without a challenge, a verifier is an error too (a downgrade sign).
fn check_pkce(record: &AuthCode, verifier: Option<&str>) -> Result<(), TokenError> {
    let (pkce, verifier) = match (&record.pkce, verifier) {
        (None, None) => return Ok(()),
        (None, Some(_)) => return Err(TokenError::PkceVerifierUnexpected),
        (Some(_), None) => return Err(TokenError::PkceVerifierMissing),
        (Some(pkce), Some(verifier)) => (pkce, verifier),
    };
    if !is_pkce_value(verifier) {
        return Err(TokenError::PkceMismatch);
    }
    let computed = match pkce.method {
        PkceMethod::S256 => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        PkceMethod::Plain => verifier.to_owned(),
    };
    if constant_time_eq(computed.as_bytes(), pkce.challenge.as_bytes()) {
        Ok(())
    } else {
        Err(TokenError::PkceMismatch)
    }
}

/// RFC 7636 §4.1/§4.2 syntax: 43-128 characters of `[A-Za-z0-9-._~]`.
pub(crate) fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn refresh_grant(op: &Provider, params: &Params) -> Result<Value, TokenError> {
    if params.get("scope").is_some() {
        op.count(|c| c.refresh_scope_params += 1);
    }
    let token = params
        .get("refresh_token")
        .ok_or(TokenError::MissingParameter("refresh_token"))?;
    if op.refuses_refresh() {
        return Err(TokenError::RefreshRefused);
    }
    let rotate = op.rotates_refresh_tokens();
    let (record, scope) = rotate_refresh(op, token, params.get("scope"), rotate)?;
    let issue = Issue {
        login: &record.login,
        scope: &scope,
        refresh_scope: &record.scope,
        nonce: None,
        grant_id: &record.grant_id,
        keep_refresh: (!rotate).then_some(token),
    };
    Ok(token_response(op, &issue))
}

/// Checks the refresh token (and any narrowed scope), then (when rotating) marks it used
/// and returns it with the scope of the new access token. Presenting a used one again
/// revokes its whole grant, as oidc-provider does with rotation: a replayed refresh token
/// means it leaked.
fn rotate_refresh(
    op: &Provider,
    token: &str,
    requested_scope: Option<&str>,
    rotate: bool,
) -> Result<(RefreshToken, String), TokenError> {
    let now = op.now();
    let mut store = lock(&op.store);
    let record = store
        .refresh_mut(token)
        .ok_or(TokenError::RefreshNotFound)?;
    if record.client_id != op.client_id {
        return Err(TokenError::RefreshClientMismatch);
    }
    if now >= record.exp {
        return Err(TokenError::RefreshExpired);
    }
    if record.consumed {
        let grant_id = record.grant_id.clone();
        store.revoke_grant(&grant_id);
        return Err(TokenError::RefreshConsumed);
    }
    let scope = match requested_scope {
        Some(requested) => narrowed_scope(&record.scope, requested)?,
        None => record.scope.clone(),
    };
    record.consumed = rotate;
    Ok((record.clone(), scope))
}

/// RFC 6749 §6: a requested scope must be a subset of the original grant.
fn narrowed_scope(granted: &str, requested: &str) -> Result<String, TokenError> {
    let requested: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
    if requested.iter().all(|s| has_scope(granted, s)) {
        Ok(requested.join(" "))
    } else {
        Err(TokenError::ScopeExceedsGrant)
    }
}

/// A fresh grant id for tokens minted outside a login (test helpers).
pub(crate) fn new_grant_id() -> String {
    random_token()
}
