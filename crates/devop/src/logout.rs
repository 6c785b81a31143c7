//! RP-initiated logout (`end_session_endpoint`): validates `id_token_hint`, `client_id`
//! and `post_logout_redirect_uri`, then redirects or shows a signed-out page.

use http::request::Parts;
use http::{Method, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::error::LogoutError;
use super::http::{html, read_form, redirect, with_query, Params, Resp};
use super::pages;
use super::provider::{lock, Provider};

pub(crate) async fn handle(op: &Provider, parts: Parts, body: Incoming) -> Resp {
    let params = if parts.method == Method::POST {
        match read_form(&parts.headers, body).await {
            Ok(params) => params,
            Err(err) => return LogoutError::from(err).response(),
        }
    } else {
        Params::parse(parts.uri.query().unwrap_or("").as_bytes())
    };
    match validate(op, &params) {
        Ok(target) => {
            op.count(|c| c.end_sessions += 1);
            signed_out(target, params.get("state"))
        }
        Err(err) => err.response(),
    }
}

/// Returns the validated post_logout_redirect_uri, if one was asked for.
fn validate<'p>(op: &Provider, params: &'p Params) -> Result<Option<&'p str>, LogoutError> {
    if let Some(name) = params.repeated() {
        return Err(LogoutError::RepeatedParameter(name.to_owned()));
    }
    let hint = params.get("id_token_hint");
    if let Some(hint) = hint {
        check_hint(op, hint)?;
    }
    let client_id = params.get("client_id");
    if client_id.is_some_and(|id| id != op.client_id) {
        return Err(LogoutError::UnknownClient);
    }
    let Some(target) = params.get("post_logout_redirect_uri") else {
        return Ok(None);
    };
    // OpenID RP-Initiated Logout §2: the target is only trusted for an identified client.
    if hint.is_none() && client_id.is_none() {
        return Err(LogoutError::PostLogoutUriWithoutClient);
    }
    if !op.is_post_logout_redirect_uri(target) {
        return Err(LogoutError::UnregisteredPostLogoutUri);
    }
    Ok(Some(target))
}

/// Signature and issuer must be ours and the audience our client; expiry is not checked
/// (a hint is usually an old ID token).
fn check_hint(op: &Provider, hint: &str) -> Result<(), LogoutError> {
    let claims = lock(&op.keys).verify(hint)?;
    if claims.get("iss").and_then(Value::as_str) != Some(op.issuer.as_str()) {
        return Err(LogoutError::IdTokenHintWrongIssuer);
    }
    let for_us = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == op.client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&op.client_id)),
        _ => false,
    };
    if !for_us {
        return Err(LogoutError::IdTokenHintWrongAudience);
    }
    Ok(())
}

fn signed_out(target: Option<&str>, state: Option<&str>) -> Resp {
    match (target, state) {
        (Some(target), Some(state)) => redirect(&with_query(target, &[("state", state)])),
        (Some(target), None) => redirect(target),
        (None, _) => html(StatusCode::OK, pages::signed_out()),
    }
}
