//! The authorization response: match it to the login this browser started, exchange the
//! code (with the PKCE verifier and client authentication), verify the ID token, fetch
//! userinfo, and create a new session.

use super::preserve_post;
use super::state;
use crate::error::{printable, GatewayError, IdTokenError};
use crate::outbound::Endpoint;
use crate::provider::{code_grant, verify_id_token, Provider};
use crate::request::{RequestCtx, BODY_READ_TIMEOUT};
use crate::response::{self, Body};
use crate::secret::{random_id, Secret};
use crate::services::Services;
use crate::session::Session;
use http::header::HeaderMap;
use http::Response;
use openidconnect::{OAuth2TokenResponse, RedirectUrl, TokenResponse};
use serde_json::{Map, Value};

/// The parameters of an authorization response.
#[derive(Default)]
pub(crate) struct AuthResponse {
    pub(crate) code: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
    pub(crate) iss: Option<String>,
}

impl AuthResponse {
    pub(crate) fn parse(query: &str) -> AuthResponse {
        let mut r = AuthResponse::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "code" => &mut r.code,
                "state" => &mut r.state,
                "error" => &mut r.error,
                "error_description" => &mut r.error_description,
                "iss" => &mut r.iss,
                _ => continue,
            };
            slot.get_or_insert_with(|| v.into_owned());
        }
        r
    }
}

/// Largest form_post body read: an authorization response is a code, a state, an issuer
/// and maybe an error text.
const MAX_FORM_POST_BODY: usize = 16 * 1024;

/// The authorization response of a `response_mode=form_post` login, read from the POSTed
/// form (bounded, within [`BODY_READ_TIMEOUT`]); `None` when the POST is not one (no
/// `state`, or neither `code` nor `error`, or not a form).
pub(crate) async fn read_form_post(
    headers: &HeaderMap,
    body: hyper::body::Incoming,
) -> Result<Option<AuthResponse>, GatewayError> {
    use http_body_util::{BodyExt, Limited};
    let is_form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Ok(None);
    }
    let read = Limited::new(body, MAX_FORM_POST_BODY).collect();
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => return Err(GatewayError::FormTooLarge),
        Err(_) => return Err(GatewayError::BodyTimeout),
    };
    let params = AuthResponse::parse(&String::from_utf8_lossy(&bytes));
    let is_response = params.state.is_some() && (params.code.is_some() || params.error.is_some());
    Ok(is_response.then_some(params))
}

/// The code of an authorization response, once it is neither an error nor from another
/// issuer; `iss_required` when the provider said it always names itself (RFC 9207).
fn code_of(params: AuthResponse, issuer: &str, iss_required: bool) -> Result<String, GatewayError> {
    if let Some(error) = params.error {
        return Err(GatewayError::ProviderError {
            error: printable(&error),
            description: params.error_description.as_deref().map(printable),
        });
    }
    // RFC 9207: when the provider names itself, it must be ours (mix-up defence).
    if params.iss.as_ref().is_some_and(|iss| iss != issuer) {
        return Err(GatewayError::LoginMismatch(
            "the response names another issuer",
        ));
    }
    // RFC 9207 §2.4: a provider that names itself must always do so; a response without
    // `iss` may come from another provider (mix-up).
    if iss_required && params.iss.is_none() {
        return Err(GatewayError::LoginMismatch(
            "the response does not name its issuer",
        ));
    }
    params
        .code
        .ok_or_else(|| GatewayError::BadRequest("the authorization response has no code".into()))
}

/// Handles the callback; always clears the state cookie it used.
pub(crate) async fn finish(
    gw: &Services,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    params: AuthResponse,
    posted: bool,
) -> Response<Body> {
    let now = gw.clock.now();
    let state_param = params.state.clone().unwrap_or_default();
    let (login, cookie_name) = match state::take(
        gw.sessions.codec(),
        &gw.config.session,
        headers,
        &state_param,
        now,
    ) {
        Ok(found) => found,
        Err(e) => {
            gw.metrics.login_failures.inc();
            gw.metrics.refused("login_mismatch");
            let mut resp = GatewayError::LoginMismatch(e.reason()).into_response();
            if e != state::StateError::Missing {
                let name = format!("{}{}", gw.config.session.state_cookie_prefix, state_param);
                resp = response::with_cookies(
                    resp,
                    state::expire(&name, ctx.secure()).into_iter().collect(),
                );
            }
            return resp;
        }
    };
    let clear_state: Vec<_> = state::expire(&cookie_name, ctx.secure())
        .into_iter()
        .collect();
    // A code must come the way the login asked for it: one in a URL when the provider was
    // told to POST it was not sent by the provider (it may have leaked from a log or a
    // referrer), and a POSTed one for a query login is another flow's. An error response
    // carries nothing to misuse and is shown either way.
    if login.form_post != posted && params.code.is_some() {
        if let Some(id) = &login.kept_post {
            preserve_post::discard(gw, id).await;
        }
        gw.metrics.login_failures.inc();
        gw.metrics.refused("login_mismatch");
        let e = GatewayError::LoginMismatch(
            "the response did not come in the response mode the login asked for",
        );
        return response::with_cookies(e.into_response(), clear_state);
    }
    let kept_post = login.kept_post.clone();
    match complete(gw, ctx, headers, params, login).await {
        Ok((location, mut cookies)) => {
            gw.metrics.logins_completed.inc();
            cookies.extend(clear_state);
            let response = match kept_post {
                None => response::redirect(&location),
                Some(id) => preserve_post::resubmit(gw, &id, &location).await,
            };
            response::with_cookies(response, cookies)
        }
        Err(e) => {
            if let Some(id) = kept_post {
                preserve_post::discard(gw, &id).await;
            }
            gw.metrics.login_failures.inc();
            gw.metrics.refused(e.kind());
            response::with_cookies(e.into_response(), clear_state)
        }
    }
}

async fn complete(
    gw: &Services,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    params: AuthResponse,
    login: state::LoginState,
) -> Result<(String, Vec<http::HeaderValue>), GatewayError> {
    // The provider the login was started at (a state sealed before states named theirs:
    // the default).
    let provider = if login.provider.is_empty() {
        Some(gw.providers.default_provider())
    } else {
        gw.providers.by_name(&login.provider).map(|(_, p)| p)
    };
    let provider = provider.ok_or(GatewayError::LoginMismatch(
        "the login was started at a provider that is no longer configured",
    ))?;
    let cfg = provider.config();
    // Loaded first, used after: a provider's error response is shown even while the
    // provider's metadata cannot be had.
    let discovered = provider.get().await;
    let iss_required = discovered
        .as_ref()
        .is_ok_and(|d| d.extra().authorization_response_iss_parameter_supported == Some(true));
    let code = code_of(params, &cfg.issuer, iss_required)?;
    let discovered = discovered?;

    let redirect_url = RedirectUrl::new(login.redirect_uri.clone())
        .map_err(|_| GatewayError::LoginMismatch("the stored redirect URI is invalid"))?;
    let tokens = code_grant(
        provider,
        &discovered,
        code,
        redirect_url,
        login.pkce_verifier,
    )
    .await
    .map_err(GatewayError::TokenExchange)?;

    let raw_id_token = tokens.id_token().ok_or(IdTokenError::Missing)?.to_string();
    let id_token = verify_id_token(
        provider,
        discovered.clone(),
        &raw_id_token,
        Some(&login.nonce),
    )
    .await?;
    let sub = id_token.str_claim("sub").unwrap_or_default().to_string();
    let access_token = Secret::new(tokens.access_token().secret().clone());

    let userinfo = match (cfg.userinfo, discovered.metadata.userinfo_endpoint()) {
        (true, Some(endpoint)) => {
            Some(fetch_userinfo(provider, endpoint.url().as_str(), &access_token, &sub).await?)
        }
        _ => None,
    };

    let now = gw.clock.now();
    let session = Session {
        id: random_id(),
        iss: id_token.str_claim("iss").unwrap_or_default().to_string(),
        sub,
        sid: id_token.str_claim("sid").map(str::to_string),
        id_token_claims: id_token.claims,
        userinfo,
        access_token: Some(access_token),
        access_token_expires: tokens.expires_in().map(|d| now + d.as_secs() as i64),
        refresh_token: tokens
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone())),
        id_token: Some(Secret::new(id_token.raw)),
        created_at: now,
        created_ms: gw.clock.now_ms(),
        last_seen: now,
        provider: cfg.name.clone(),
    };
    let cookies = gw.sessions.save(&session, ctx.secure(), headers).await?;
    tracing::info!(sub = %session.sub, provider = %cfg.name, "login completed");
    Ok((login.return_to, cookies))
}

/// Calls the userinfo endpoint; its `sub` must equal the ID token's.
async fn fetch_userinfo(
    provider: &Provider,
    endpoint: &str,
    access_token: &Secret,
    sub: &str,
) -> Result<Map<String, Value>, GatewayError> {
    let response = provider
        .http()
        .get(Endpoint::Userinfo, endpoint, Some(access_token.expose()))
        .await
        .map_err(|e| GatewayError::Userinfo(e.to_string()))?;
    if !response.status().is_success() {
        return Err(GatewayError::Userinfo(format!(
            "the userinfo endpoint answered {}",
            response.status()
        )));
    }
    let claims: Map<String, Value> = serde_json::from_slice(response.body()).map_err(|_| {
        GatewayError::Userinfo(
            "the response is not a JSON object (signed userinfo is not supported)".into(),
        )
    })?;
    if claims.get("sub").and_then(Value::as_str) != Some(sub) {
        return Err(GatewayError::Userinfo(
            "sub does not match the ID token".into(),
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests;
