//! Requests on the redirect URI path: never proxied, dispatched in the order of docs/behaviour.md §3 (first match
//! wins) to the login callback, logout, refresh, cache removal and session info.

use crate::config::InfoMember;
use crate::oidc::{callback, chooser, logout};
use crate::redirect::validate_redirect;
use crate::request::RequestCtx;
use crate::response::{self, escape_html, Body};
use crate::secret::constant_time_eq;
use crate::services::token_cache::key_at;
use crate::services::{Removal, Services};
use crate::session::{InvalidReason, Loaded, Session};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

/// The first value of each hook parameter present in the query.
#[derive(Default)]
struct HookParams {
    has_code_or_error: bool,
    has_state: bool,
    logout: Option<String>,
    refresh: Option<String>,
    access_token: Option<String>,
    remove_at_cache: Option<String>,
    info: Option<String>,
    sid: Option<String>,
    iss: Option<String>,
    provider: Option<String>,
    target_link_uri: Option<String>,
}

impl HookParams {
    fn parse(query: &str) -> HookParams {
        let mut p = HookParams::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "code" | "error" => {
                    p.has_code_or_error = true;
                    continue;
                }
                "state" => {
                    p.has_state = true;
                    continue;
                }
                "logout" => &mut p.logout,
                "refresh" => &mut p.refresh,
                "access_token" => &mut p.access_token,
                "remove_at_cache" => &mut p.remove_at_cache,
                "info" => &mut p.info,
                "sid" => &mut p.sid,
                "iss" => &mut p.iss,
                "provider" => &mut p.provider,
                "target_link_uri" => &mut p.target_link_uri,
                _ => continue,
            };
            slot.get_or_insert_with(|| v.into_owned());
        }
        p
    }
}

/// Which hook a request on the redirect URI is for: the first that matches, in the order
/// of docs/behaviour.md §3.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hook {
    /// The authorization response (a GET with `code` or `error`, and `state`).
    Callback,
    /// A POST naming no hook in its query: an authorization response in
    /// `response_mode=form_post`, its parameters in the form body.
    FormPostCallback,
    /// `logout=backchannel`, POSTed by the provider.
    BackChannelLogout,
    /// `logout=get`, loaded by the provider in a frame.
    FrontChannelLogout {
        sid: Option<String>,
        iss: Option<String>,
    },
    /// `logout=<target>` (empty: no target).
    Logout(String),
    Refresh {
        return_to: String,
        access_token: Option<String>,
    },
    RemoveFromCache(String),
    Info(String),
    /// `provider=<name>&target_link_uri=<url>`: a login at that provider (the chooser's
    /// links).
    Login {
        provider: String,
        target: Option<String>,
    },
    Invalid,
}

impl Hook {
    pub(crate) fn of(method: &Method, query: &str) -> Hook {
        let params = HookParams::parse(query);
        if method == Method::GET && params.has_code_or_error && params.has_state {
            return Hook::Callback;
        }
        if let Some(target) = params.logout {
            return match (target.as_str(), method) {
                ("backchannel", &Method::POST) => Hook::BackChannelLogout,
                ("get", _) => Hook::FrontChannelLogout {
                    sid: params.sid,
                    iss: params.iss,
                },
                _ => Hook::Logout(target),
            };
        }
        if let Some(return_to) = params.refresh {
            return Hook::Refresh {
                return_to,
                access_token: params.access_token,
            };
        }
        if let Some(token) = params.remove_at_cache {
            return Hook::RemoveFromCache(token);
        }
        if let Some(format) = params.info {
            return Hook::Info(format);
        }
        match params.provider {
            Some(provider) => Hook::Login {
                provider,
                target: params.target_link_uri,
            },
            // The form_post response is in the body alone: a POST with response
            // parameters in its query is not one.
            None if method == Method::POST && !params.has_code_or_error && !params.has_state => {
                Hook::FormPostCallback
            }
            None => Hook::Invalid,
        }
    }
}

/// Answers a request on the redirect URI path (never forwarded upstream).
pub(crate) async fn dispatch(
    gw: &Services,
    ctx: &RequestCtx,
    parts: &Parts,
    body: Incoming,
) -> Response<Body> {
    let query = parts.uri.query().unwrap_or("");
    let headers = &parts.headers;
    match Hook::of(&parts.method, query) {
        Hook::Callback => {
            let params = callback::AuthResponse::parse(query);
            callback::finish(gw, ctx, headers, params, false).await
        }
        Hook::FormPostCallback => match callback::read_form_post(headers, body).await {
            Ok(Some(params)) => callback::finish(gw, ctx, headers, params, true).await,
            Ok(None) => invalid_request(),
            Err(e) => e.into_response(),
        },
        Hook::BackChannelLogout => logout::backchannel(gw, body).await,
        Hook::FrontChannelLogout { sid, iss } => {
            logout::frontchannel(gw, ctx, headers, sid.as_deref(), iss.as_deref()).await
        }
        Hook::Logout(target) => logout::logout(gw, ctx, headers, &target).await,
        Hook::Refresh {
            return_to,
            access_token,
        } => refresh_hook(gw, ctx, parts, &return_to, access_token.as_deref()).await,
        Hook::RemoveFromCache(token) => remove_from_cache(gw, &token).await,
        Hook::Info(format) => info_hook(gw, parts, &format).await,
        Hook::Login { provider, target } => {
            chooser::start_at(gw, ctx, headers, &provider, target.as_deref()).await
        }
        Hook::Invalid => invalid_request(),
    }
}

fn invalid_request() -> Response<Body> {
    response::page(
        StatusCode::BAD_REQUEST,
        "Invalid request",
        "This address only handles login, logout and token requests.",
        None,
    )
}

/// `302 <return_to>` with `error_code` appended to its query (`&` when it already has
/// one), before any `#fragment`, which the browser never sends to the application.
fn refresh_error(return_to: &str, code: &str) -> Response<Body> {
    let (url, fragment) = match return_to.find('#') {
        Some(i) => return_to.split_at(i),
        None => (return_to, ""),
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    response::redirect(&format!("{url}{sep}error_code={code}{fragment}"))
}

/// `?refresh=<return_to>&access_token=<at>`: docs/behaviour.md §6, checks in table order.
async fn refresh_hook(
    gw: &Services,
    ctx: &RequestCtx,
    parts: &Parts,
    return_to: &str,
    access_token: Option<&str>,
) -> Response<Body> {
    let return_to = if return_to.is_empty() {
        None
    } else {
        validate_redirect(return_to, &ctx.host, &gw.config.hooks.redirect_urls_allowed).ok()
    };
    let Some(return_to) = return_to else {
        return response::page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The refresh return address is missing or not allowed.",
            None,
        );
    };
    let Some(presented) = access_token else {
        return refresh_error(&return_to, "no_access_token");
    };
    let session = match gw.sessions.load(&parts.headers).await {
        Loaded::Valid(s) => s,
        Loaded::Missing
        | Loaded::Invalid(
            InvalidReason::Expired
            | InvalidReason::Ended
            | InvalidReason::LoggedOut
            | InvalidReason::NotFound,
        ) => {
            return refresh_error(&return_to, "no_access_token_exists");
        }
        Loaded::Invalid(_) => {
            let clear = gw.sessions.clear_cookies(&parts.headers, ctx.secure());
            return response::with_cookies(refresh_error(&return_to, "session_corruption"), clear);
        }
    };
    let Some(current) = session.access_token.as_ref().map(|t| t.expose()) else {
        return refresh_error(&return_to, "no_access_token_exists");
    };
    if !constant_time_eq(current.as_bytes(), presented.as_bytes()) {
        return refresh_error(&return_to, "no_access_token_match");
    }
    if gw.providers.of_session(&session).is_none() {
        return refresh_error(&return_to, "session_corruption");
    }
    match crate::refresh::refresh_session(gw, &session, &parts.headers, ctx).await {
        Ok((_, cookies)) => response::with_cookies(response::redirect(&return_to), cookies),
        Err(_) => refresh_error(&return_to, "refresh_failed"),
    }
}

/// `?info=json|html`: docs/behaviour.md §9.
async fn info_hook(gw: &Services, parts: &Parts, format: &str) -> Response<Body> {
    if gw.config.hooks.info.is_empty() {
        return response::text(
            StatusCode::NOT_FOUND,
            "404 Not Found: the session info hook is off (hooks.info)\n",
        );
    }
    if format != "json" && format != "html" {
        return response::text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "info supports json and html\n",
        );
    }
    let session = match gw.sessions.load(&parts.headers).await {
        Loaded::Valid(s) => s,
        _ => return response::text(StatusCode::UNAUTHORIZED, "401 Unauthorized: no session\n"),
    };
    let info = session_info(gw, &session);
    if format == "json" {
        return response::json(StatusCode::OK, &Value::Object(info));
    }
    let mut rows = String::new();
    for (k, v) in &info {
        let shown = match v {
            Value::String(s) => s.clone(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        };
        rows.push_str(&format!(
            "<tr><th>{}</th><td><pre>{}</pre></td></tr>",
            escape_html(k),
            escape_html(&shown)
        ));
    }
    // The same layout as every other page the gateway writes (and the same CSP).
    response::html_response(
        StatusCode::OK,
        response::document("Session info", &format!("<table>{rows}</table>")),
    )
}

fn session_info(gw: &Services, session: &Session) -> Map<String, Value> {
    let cfg = &gw.config;
    let mut out = Map::new();
    for member in &cfg.hooks.info {
        let (name, value) = match member {
            InfoMember::Iat => ("iat", json!(gw.clock.now())),
            InfoMember::AccessToken => match &session.access_token {
                Some(t) => ("access_token", json!(t.expose())),
                None => continue,
            },
            InfoMember::AccessTokenExpires => match session.access_token_expires {
                Some(e) => ("access_token_expires", json!(e.to_string())),
                None => continue,
            },
            InfoMember::IdToken => ("id_token", Value::Object(session.id_token_claims.clone())),
            InfoMember::Userinfo => match &session.userinfo {
                Some(u) => ("userinfo", Value::Object(u.clone())),
                None => continue,
            },
            InfoMember::Exp => (
                "exp",
                json!(session.created_at + cfg.session.max_duration.as_secs() as i64),
            ),
            InfoMember::Timeout => (
                "timeout",
                json!(session.last_seen + cfg.session.inactivity_timeout.as_secs() as i64),
            ),
            InfoMember::RemoteUser => match session.claim(&cfg.headers.remote_user_claim) {
                Some(Value::String(s)) => ("remote_user", json!(s)),
                Some(other) => ("remote_user", json!(other.to_string())),
                None => continue,
            },
            InfoMember::RefreshToken => match &session.refresh_token {
                Some(t) => ("refresh_token", json!(t.expose())),
                None => continue,
            },
            InfoMember::Provider => match gw.providers.of_session(session) {
                Some((_, p)) => ("provider", json!(p.config().name)),
                None => continue,
            },
        };
        out.insert(name.to_string(), value);
    }
    out
}

/// `<redirect_uri>?remove_at_cache=<token>`: knowing the token is the credential.
async fn remove_from_cache(gw: &Services, token: &str) -> Response<Body> {
    if token.is_empty() {
        return response::text(
            StatusCode::BAD_REQUEST,
            "400 remove_at_cache needs a token\n",
        );
    }
    // Here, then (with `[redis]`) on every other replica and in the shared cache; under
    // each provider's key (a token is validated, and cached, per provider).
    let keys: Vec<_> = gw
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| key_at((i > 0).then_some(p.config().name.as_str()), token))
        .collect();
    let mut here = false;
    for key in &keys {
        here |= gw.token_cache.remove_key(key).await;
    }
    let in_redis = match gw.replicas.remove_token(&keys).await {
        Removal::Done { in_redis } => in_redis,
        Removal::Throttled => {
            tracing::warn!(
                "remove_at_cache: too many removals this second; not sent to the other replicas"
            );
            let mut busy = response::text(
                StatusCode::TOO_MANY_REQUESTS,
                "429 too many removals; removed here only, try again\n",
            );
            busy.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
            return busy;
        }
    };
    if here || in_redis {
        response::text(StatusCode::OK, "200 removed\n")
    } else {
        response::text(StatusCode::NOT_FOUND, "404 not cached\n")
    }
}

#[cfg(test)]
mod tests;
