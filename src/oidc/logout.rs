//! RP-initiated logout (`<redirect_uri>?logout=<url>`): validate the target, revoke the
//! refresh token, end the session (cookies cleared, id deny-listed so a replayed cookie is
//! refused), then send the browser to the provider's end_session_endpoint or the target.

use crate::error::JwtError;
use crate::outbound::Endpoint;
use crate::provider::{client_authenticated_post, unverified_issuer, verify_jwt, Provider};
use crate::redirect::validate_redirect;
use crate::request::{RequestCtx, BODY_READ_TIMEOUT};
use crate::response::{self, Body};
use crate::secret::Secret;
use crate::services::Services;
use crate::session::Loaded;
use http::header::HeaderMap;
use http::{Response, StatusCode};
use serde_json::{Map, Value};

pub(crate) async fn logout(
    gw: &Services,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    target: &str,
) -> Response<Body> {
    let target = if target.is_empty() {
        None
    } else {
        match validate_redirect(target, &ctx.host, &gw.config.hooks.redirect_urls_allowed) {
            Ok(url) => Some(url),
            Err(e) => {
                tracing::info!(reason = %e, "logout target refused");
                return response::page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    &format!("The logout target is not allowed: {e}."),
                    None,
                );
            }
        }
    };
    let session = match gw.sessions.load(headers).await {
        Loaded::Valid(s) => Some(s),
        _ => None,
    };
    // The session's provider (the default without a session): revocation and
    // end_session are that provider's. A session whose provider is no longer configured
    // is ended here only.
    let provider = match &session {
        Some(s) => gw.providers.of_session(s).map(|(_, p)| p),
        None => Some(gw.providers.default_provider()),
    };
    let discovered = match provider {
        Some(p) => p.get().await.ok(),
        None => None,
    };
    let mut cookies = gw.sessions.clear_cookies(headers, ctx.secure());
    if let Some(session) = &session {
        if let (Some(rt), Some(endpoint), Some(provider)) = (
            &session.refresh_token,
            discovered
                .as_ref()
                .and_then(|d| d.extra().revocation_endpoint.clone()),
            provider,
        ) {
            revoke(provider, endpoint.as_str(), rt, "refresh_token").await;
        }
        cookies = gw.sessions.end(session, ctx.secure(), headers).await;
        gw.metrics.sessions_ended.inc();
        tracing::info!(sub = %session.sub, "logged out");
    }
    // Absolute, so the provider can send the browser back.
    let absolute_target = target.as_ref().map(|t| {
        if t.starts_with('/') {
            format!("{}{t}", ctx.origin())
        } else {
            t.clone()
        }
    });
    let end_session = discovered
        .as_ref()
        .and_then(|d| d.extra().end_session_endpoint.clone());
    let resp = match (end_session, session.as_ref(), provider) {
        (Some(mut url), Some(session), Some(provider)) => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(hint) = &session.id_token {
                    q.append_pair("id_token_hint", hint.expose());
                }
                q.append_pair("client_id", &provider.config().client_id);
                if let Some(t) = &absolute_target {
                    q.append_pair("post_logout_redirect_uri", t);
                }
            }
            response::redirect(url.as_str())
        }
        _ => match target {
            Some(t) => response::redirect(&t),
            None => logged_out_page(),
        },
    };
    response::with_cookies(resp, cookies)
}

fn logged_out_page() -> Response<Body> {
    response::page(
        StatusCode::OK,
        "Logged out",
        "You have been logged out.",
        Some(("/", "Log in again")),
    )
}

/// RFC 7009 revocation; failures are logged, never fatal to the logout.
async fn revoke(provider: &Provider, endpoint: &str, token: &Secret, hint: &str) {
    let request = match client_authenticated_post(
        provider,
        endpoint,
        &[("token", token.expose()), ("token_type_hint", hint)],
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build revocation request");
            return;
        }
    };
    match provider.http().call(Endpoint::Revocation, request).await {
        Ok(r) if r.status().is_success() => tracing::debug!("token revoked"),
        Ok(r) => tracing::warn!(status = r.status().as_u16(), "revocation refused"),
        Err(e) => tracing::warn!(error = %e, "revocation failed"),
    }
}

/// The event a back-channel logout token must carry.
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Largest logout request body read.
const MAX_LOGOUT_BODY: usize = 64 * 1024;

fn logout_token_error(description: &str) -> Response<Body> {
    response::json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({"error": "invalid_request", "error_description": description}),
    )
}

/// OpenID Connect Back-Channel Logout 1.0: `POST <redirect_uri>?logout=backchannel` with a
/// `logout_token`. Ends every session with its `sid` (or, without one, its `sub`), in
/// every store including the cookie store.
pub(crate) async fn backchannel(gw: &Services, body: hyper::body::Incoming) -> Response<Body> {
    use http_body_util::{BodyExt, Limited};
    let read = Limited::new(body, MAX_LOGOUT_BODY).collect();
    let collected = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(collected)) => collected,
        Ok(Err(_)) => return logout_token_error("the request body is too large or broken"),
        Err(_) => {
            return response::json(
                StatusCode::REQUEST_TIMEOUT,
                &serde_json::json!({"error": "invalid_request", "error_description": "the request body was not received in time"}),
            )
        }
    };
    let bytes = collected.to_bytes();
    let tokens: Vec<String> = form_urlencoded::parse(&bytes)
        .filter(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .collect();
    let [token] = tokens.as_slice() else {
        return logout_token_error("exactly one logout_token is required");
    };
    // The token's (unverified) issuer picks the provider whose keys and client id verify
    // it; its sessions alone are ended (logout records are per issuer). With one
    // provider, that one checks every token (and names the failed check).
    let provider = match unverified_issuer(token)
        .as_deref()
        .and_then(|iss| gw.providers.by_issuer(iss))
    {
        Some((_, provider)) => provider,
        None if gw.providers.iter().nth(1).is_none() => gw.providers.default_provider(),
        None => {
            tracing::info!("back-channel logout token rejected: iss names no configured provider");
            return logout_token_error("logout_token rejected: iss: not a configured provider");
        }
    };
    let client_id = provider.config().client_id.clone();
    let claims = match verify_jwt(provider, token, |rules| {
        rules.set_audience(&[client_id]);
        rules.set_required_spec_claims(&["iss", "aud", "iat"]);
    })
    .await
    {
        Ok(claims) => claims,
        Err(JwtError::Unavailable(cause)) => {
            tracing::warn!(%cause, "back-channel logout: provider keys unavailable");
            return response::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": "temporarily_unavailable"}),
            );
        }
        Err(check) => {
            tracing::info!(%check, "back-channel logout token rejected");
            return logout_token_error(&format!("logout_token rejected: {check}"));
        }
    };
    let checked = match check_logout_claims(&claims, gw.clock.now()) {
        // This replica's memory first, then (with `[redis]`) every other replica's.
        Ok((_, jti))
            if gw.sessions.seen_logout_jti(jti) || !gw.replicas.claim_logout_jti(jti).await =>
        {
            Err(LogoutTokenError::Replayed)
        }
        Ok((target, _)) => Ok(target),
        Err(e) => Err(e),
    };
    match checked {
        Ok(LogoutTarget::Sid { iss, sid }) => gw.sessions.end_by_sid(iss, sid),
        Ok(LogoutTarget::Sub { iss, sub }) => gw.sessions.end_by_sub(iss, sub),
        Err(why) => {
            tracing::info!(check = %why, "back-channel logout token rejected");
            return logout_token_error(&why.to_string());
        }
    }
    gw.metrics.sessions_ended.inc();
    tracing::info!("back-channel logout accepted");
    let mut resp = response::text(StatusCode::OK, "");
    resp.headers_mut().remove(http::header::CONTENT_TYPE);
    resp
}

/// How old a logout token's `iat` may be. Accepted `jti`s are remembered longer than this
/// (`session::LOGOUT_JTI_TTL`), so a replay inside the window is always caught.
pub(crate) const LOGOUT_IAT_WINDOW: i64 = 600;
/// How far in the future a logout token's `iat` may be (clock skew).
const LOGOUT_IAT_SKEW: i64 = 60;

/// Why a logout token whose signature, `iss` and `aud` are good is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LogoutTokenError {
    #[error("events: the back-channel logout event is missing")]
    NoEvent,
    #[error("nonce: a logout token must not carry one")]
    Nonce,
    #[error("sid/sub: the token names no session or subject")]
    NoSessionOrSubject,
    #[error("iat: not recent")]
    StaleIssuedAt,
    #[error("jti: missing")]
    NoJti,
    #[error("jti: this logout token was already used")]
    Replayed,
}

/// What a logout token ends: the sessions of one OP session, or of one subject.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LogoutTarget<'a> {
    Sid { iss: &'a str, sid: &'a str },
    Sub { iss: &'a str, sub: &'a str },
}

/// The checks jsonwebtoken does not know: the event, no nonce, sid/sub, a recent iat and
/// a jti (whose replay the caller checks). Returns what to end and the jti.
pub(crate) fn check_logout_claims(
    claims: &Map<String, Value>,
    now: i64,
) -> Result<(LogoutTarget<'_>, &str), LogoutTokenError> {
    let event_ok = claims
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|e| e.get(BACKCHANNEL_EVENT).is_some_and(Value::is_object));
    if !event_ok {
        return Err(LogoutTokenError::NoEvent);
    }
    if claims.contains_key("nonce") {
        return Err(LogoutTokenError::Nonce);
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let iss = text("iss").unwrap_or_default();
    let target = match (text("sid"), text("sub")) {
        (Some(sid), _) => LogoutTarget::Sid { iss, sid },
        (None, Some(sub)) => LogoutTarget::Sub { iss, sub },
        (None, None) => return Err(LogoutTokenError::NoSessionOrSubject),
    };
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    if now - iat > LOGOUT_IAT_WINDOW || iat - now > LOGOUT_IAT_SKEW {
        return Err(LogoutTokenError::StaleIssuedAt);
    }
    let jti = text("jti").ok_or(LogoutTokenError::NoJti)?;
    Ok((target, jti))
}

/// Longest `sid` accepted from a front-channel logout request (providers use ids of a few
/// dozen characters).
const MAX_SID_LEN: usize = 256;
/// Longest `iss` accepted from a front-channel logout request.
const MAX_ISS_LEN: usize = 1024;

/// OpenID Connect Front-Channel Logout 1.0: `GET <redirect_uri>?logout=get&sid=…&iss=…`,
/// loaded by the provider in a frame of the browser that logs out. Ends that browser's own
/// session (its cookie), and only when the given `iss`/`sid` name it. The request carries
/// no proof, so it never affects another browser: logouts that reach every session come
/// only from verified back-channel logout tokens.
pub(crate) async fn frontchannel(
    gw: &Services,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    sid: Option<&str>,
    iss: Option<&str>,
) -> Response<Body> {
    let bad = |why: &str| response::page(StatusCode::BAD_REQUEST, "Invalid request", why, None);
    if sid.is_some_and(|s| s.len() > MAX_SID_LEN) || iss.is_some_and(|i| i.len() > MAX_ISS_LEN) {
        return bad("The sid or iss parameter is too long.");
    }
    if iss.is_some_and(|iss| gw.providers.by_issuer(iss).is_none()) {
        return bad("The issuer is not one of this gateway's providers.");
    }
    let sid = sid.filter(|s| !s.is_empty());
    let session = match gw.sessions.load(headers).await {
        Loaded::Valid(session) => Some(session),
        _ => None,
    };
    let Some(session) = session else {
        if sid.is_none() {
            return bad("Front-channel logout needs a sid or a session.");
        }
        return response::page(StatusCode::OK, "Logged out", "No session to end.", None);
    };
    // Without a sid the frame's own session is the one to end (as mod_auth_openidc does).
    let named = sid.is_none_or(|sid| session.sid.as_deref() == Some(sid));
    // The session's provider must be configured, and be the one `iss` names if given.
    let provider = gw.providers.of_session(&session).map(|(_, p)| p.config());
    let issuer_ok = provider.is_some_and(|p| iss.is_none_or(|iss| p.is_issuer(iss)));
    if !named || !issuer_ok {
        tracing::info!("front-channel logout names another session; nothing ended");
        return response::page(StatusCode::OK, "Logged out", "No session to end.", None);
    }
    let cookies = gw.sessions.end(&session, ctx.secure(), headers).await;
    gw.metrics.sessions_ended.inc();
    tracing::info!("front-channel logout accepted");
    let page = response::page(
        StatusCode::OK,
        "Logged out",
        "The session has been ended.",
        None,
    );
    response::with_cookies(page, cookies)
}

#[cfg(test)]
mod tests;
