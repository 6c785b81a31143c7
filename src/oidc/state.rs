//! The login state cookie `<state_cookie_prefix><state>`: sealed, short-lived, at most
//! [`MAX_STATE_COOKIES`] at once (oldest dropped), holding what the callback needs to
//! finish the login this browser started.

use crate::config::SessionConfig;
use crate::request::request_cookies;
use crate::session::{Codec, Purpose};
use http::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

pub(crate) const MAX_STATE_COOKIES: usize = 7;
/// Seconds a login may take from redirect to callback.
pub(crate) const STATE_LIFETIME: i64 = 300;

#[derive(Serialize, Deserialize)]
pub(crate) struct LoginState {
    /// The `state` parameter; must equal the cookie's name suffix.
    #[serde(rename = "s")]
    pub state: String,
    /// Where to send the browser after login (origin-relative path and query).
    #[serde(rename = "u")]
    pub(crate) return_to: String,
    #[serde(rename = "m")]
    pub method: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub pkce_verifier: Option<String>,
    /// The redirect URI sent in the authorization request (the code exchange repeats it).
    #[serde(rename = "r")]
    pub(crate) redirect_uri: String,
    #[serde(rename = "t")]
    pub created_at: i64,
    /// The id of the form POST kept for this login (`route.preserve_post`): only the
    /// browser holding this cookie can have it re-submitted.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub(crate) kept_post: Option<String>,
    /// The name of the provider the login was started at; the callback finishes it
    /// there. Empty in states sealed before they named one: the default provider.
    #[serde(rename = "p", default, skip_serializing_if = "String::is_empty")]
    pub(crate) provider: String,
    /// The login asked for `response_mode=form_post`: only a POSTed response finishes it
    /// (and a GET one, which the provider would not send, is refused).
    #[serde(rename = "f", default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) form_post: bool,
}

fn cookie_header(name: &str, value: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

/// The state cookie of a `form_post` login: the provider's auto-submitted form is a
/// cross-site POST, on which browsers send no `SameSite=Lax` cookie, so it is
/// `SameSite=None`, which browsers only keep with `Secure`: over https, and on
/// `localhost`/loopback, which browsers treat as secure. A plain-http site elsewhere
/// cannot use form_post (config-time warning). The state stays bound to this browser:
/// the cookie is sealed and must match the `state` the provider echoes.
fn cross_site_cookie_header(name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=None; Secure"
    ))
    .ok()
}

/// The Set-Cookie value for a new login state.
pub(crate) fn seal(
    codec: &Codec,
    cfg: &SessionConfig,
    state: &LoginState,
    secure: bool,
) -> Option<HeaderValue> {
    let json = serde_json::to_vec(state).ok()?;
    let sealed = codec.seal(Purpose::State, &json);
    let name = format!("{}{}", cfg.state_cookie_prefix, state.state);
    if state.form_post {
        return cross_site_cookie_header(&name, &sealed, STATE_LIFETIME);
    }
    cookie_header(&name, &sealed, STATE_LIFETIME, secure)
}

/// A Set-Cookie value that expires the state cookie named `name`.
pub(crate) fn expire(name: &str, secure: bool) -> Option<HeaderValue> {
    cookie_header(name, "", 0, secure)
}

fn open(codec: &Codec, value: &str) -> Option<LoginState> {
    let json = codec.open(Purpose::State, value).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Set-Cookie values that make room for one more state cookie: expired or unreadable
/// ones go, and the oldest beyond `MAX_STATE_COOKIES - 1`.
pub(crate) fn prune(
    codec: &Codec,
    cfg: &SessionConfig,
    headers: &HeaderMap,
    now: i64,
    secure: bool,
) -> Vec<HeaderValue> {
    let mut live: Vec<(i64, &str)> = Vec::new();
    let mut out = Vec::new();
    // Bounded: a request cannot make us open more than a few dozen cookies.
    for (name, value) in request_cookies(headers)
        .filter(|(n, _)| n.starts_with(&cfg.state_cookie_prefix))
        .take(64)
    {
        match open(codec, value) {
            Some(s) if now - s.created_at <= STATE_LIFETIME => live.push((s.created_at, name)),
            _ => out.extend(expire(name, secure)),
        }
    }
    live.sort();
    let excess = live.len().saturating_sub(MAX_STATE_COOKIES - 1);
    for (_, name) in live.into_iter().take(excess) {
        out.extend(expire(name, secure));
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StateError {
    Missing,
    Unreadable,
    Expired,
    Mismatch,
}

impl StateError {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            StateError::Missing => "no login state cookie for this state",
            StateError::Unreadable => "the login state cookie is unreadable",
            StateError::Expired => "the login took more than 5 minutes",
            StateError::Mismatch => "the login state does not match",
        }
    }
}

/// Finds and opens the state cookie for `state`; returns it with the cookie's name.
pub(crate) fn take(
    codec: &Codec,
    cfg: &SessionConfig,
    headers: &HeaderMap,
    state: &str,
    now: i64,
) -> Result<(LoginState, String), StateError> {
    let name = format!("{}{state}", cfg.state_cookie_prefix);
    let value = request_cookies(headers)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .ok_or(StateError::Missing)?;
    let login = open(codec, value).ok_or(StateError::Unreadable)?;
    if !crate::secret::constant_time_eq(login.state.as_bytes(), state.as_bytes()) {
        return Err(StateError::Mismatch);
    }
    if now - login.created_at > STATE_LIFETIME || login.created_at > now + 60 {
        return Err(StateError::Expired);
    }
    Ok((login, name))
}
