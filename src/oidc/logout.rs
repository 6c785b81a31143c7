//! RP-initiated logout (`<redirect_uri>?logout=<url>`): validate the target, revoke the
//! refresh token, end the session (cookies cleared, id deny-listed so a replayed cookie is
//! refused), then send the browser to the provider's end_session_endpoint or the target.

use super::client_authenticated_post;
use crate::gateway::Gateway;
use crate::proxy::forwarded::RequestCtx;
use crate::redirect::validate_redirect;
use crate::response::{self, Body};
use crate::session::Loaded;
use http::header::HeaderMap;
use http::{Response, StatusCode};

pub async fn logout(
    gw: &Gateway,
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
    let loaded = gw.provider.get().await.ok();
    let mut cookies = gw.sessions.clear_cookies(headers, ctx.secure());
    if let Some(session) = &session {
        if let (Some(rt), Some(endpoint)) = (
            &session.refresh_token,
            loaded
                .as_ref()
                .and_then(|l| l.extra().revocation_endpoint.clone()),
        ) {
            revoke(gw, endpoint.as_str(), rt, "refresh_token").await;
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
    let end_session = loaded
        .as_ref()
        .and_then(|l| l.extra().end_session_endpoint.clone());
    let resp = match (end_session, session.as_ref()) {
        (Some(mut url), Some(session)) => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(hint) = &session.id_token {
                    q.append_pair("id_token_hint", hint);
                }
                q.append_pair("client_id", &gw.provider.config().client_id);
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

pub fn logged_out_page() -> Response<Body> {
    response::page(
        StatusCode::OK,
        "Logged out",
        "You have been logged out.",
        Some(("/", "Log in again")),
    )
}

/// RFC 7009 revocation; failures are logged, never fatal to the logout.
pub async fn revoke(gw: &Gateway, endpoint: &str, token: &str, hint: &str) {
    let request = match client_authenticated_post(
        gw.provider.config(),
        endpoint,
        &[("token", token), ("token_type_hint", hint)],
    ) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build revocation request");
            return;
        }
    };
    match gw.provider.http().call(request).await {
        Ok(r) if r.status().is_success() => tracing::debug!("token revoked"),
        Ok(r) => tracing::warn!(status = r.status().as_u16(), "revocation refused"),
        Err(e) => tracing::warn!(error = %e, "revocation failed"),
    }
}
