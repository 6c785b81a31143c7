//! Pushed Authorization Requests (RFC 9126): the client POSTs its authorization request
//! (client authenticated) and gets a `request_uri` the browser's authorization request
//! then carries alone, with `client_id`. A reference lives [`PAR_TTL`] seconds and may be
//! used for the form's GET and its POST within that time.

use http::request::Parts;
use http::StatusCode;
use hyper::body::Incoming;
use serde_json::json;

use super::client_auth::authenticate;
use super::error::TokenError;
use super::http::{json, read_form, Resp};
use super::provider::{lock, Provider};
use super::store::random_token;

/// Seconds a pushed request may be referred to.
pub(crate) const PAR_TTL: i64 = 60;
const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

pub(crate) async fn handle(op: &Provider, parts: Parts, body: Incoming) -> Resp {
    let params = match read_form(&parts.headers, body).await {
        Ok(params) => params,
        Err(err) => return TokenError::from(err).response(),
    };
    if let Some(name) = params.repeated() {
        return TokenError::RepeatedParameter(name.to_owned()).response();
    }
    if let Err(err) = authenticate(op, &parts.headers, &params) {
        return err.response();
    }
    if params.get("request_uri").is_some() {
        return json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request", "error_description": "request_uri must not be pushed"}),
        );
    }
    // The authorization request alone is kept: client credentials are not part of it.
    let kept: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.pairs().filter(|(k, _)| {
            !matches!(
                *k,
                "client_secret" | "client_assertion" | "client_assertion_type"
            )
        }))
        .finish();
    let request_uri = format!("{REQUEST_URI_PREFIX}{}", random_token());
    let now = op.now();
    let mut pushed = lock(&op.pushed);
    pushed.retain(|_, (_, expires)| *expires > now);
    pushed.insert(request_uri.clone(), (kept, now + PAR_TTL));
    op.count(|c| c.pushed_requests += 1);
    json(
        StatusCode::CREATED,
        &json!({"request_uri": request_uri, "expires_in": PAR_TTL}),
    )
}

/// The query of the pushed request `request_uri` names, if it is live and `client_id`
/// is its client's.
pub(crate) fn resolve(op: &Provider, request_uri: &str, client_id: Option<&str>) -> Option<String> {
    let pushed = lock(&op.pushed);
    let (query, expires) = pushed.get(request_uri)?;
    if *expires <= op.now() {
        return None;
    }
    let same_client = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "client_id")
        .is_some_and(|(_, v)| Some(v.as_ref()) == client_id);
    same_client.then(|| query.clone())
}
