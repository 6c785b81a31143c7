//! The session: who logged in, their tokens and claims, and when it started and was last
//! used. Short serde names keep sealed cookies small.

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// Random id, new at every login; also the key for server-side stores and the deny list.
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "is")]
    pub iss: String,
    #[serde(rename = "su")]
    pub sub: String,
    /// The OP's session id (`sid` claim), for front- and back-channel logout.
    #[serde(rename = "si", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Verified ID-token claims, as the OP sent them.
    #[serde(rename = "c", default)]
    pub id_token_claims: Map<String, Value>,
    /// Userinfo claims, when `provider.userinfo` is on.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub userinfo: Option<Map<String, Value>>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Absolute expiry of the access token, epoch seconds.
    #[serde(rename = "ae", default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires: Option<i64>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The raw ID token, for `id_token_hint` at logout and `OIDC_id_token`.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Epoch seconds.
    #[serde(rename = "ca")]
    pub created_at: i64,
    /// Epoch milliseconds of the login: orders it against a logout by `sid`/`sub` in the
    /// same second. 0 in sessions sealed before the field existed.
    #[serde(rename = "cm", default)]
    pub created_ms: i64,
    /// Epoch seconds of the last request that refreshed the inactivity timer.
    #[serde(rename = "ls")]
    pub last_seen: i64,
    /// The identity headers built from this session, kept with it so that repeat requests
    /// (served from the decoded-session cache) do not rebuild them.
    #[serde(skip)]
    pub identity: IdentityCache,
    /// The logout generation this (shared, decoded) session was last checked against; see
    /// `Sessions::check`.
    #[serde(skip)]
    pub logout_checked: LogoutMark,
    /// The cookies of this session re-saved with a newer `last_seen`, for requests that
    /// still present this (older) cookie; see `Sessions::touch`.
    #[serde(skip)]
    pub touched: TouchCache,
}

/// A re-saved session's `Set-Cookie` values: when, for which scheme, and the values.
/// Clones start empty.
#[derive(Default)]
pub struct TouchCache(std::sync::Mutex<Option<Touched>>);

#[derive(Clone)]
pub struct Touched {
    pub at: i64,
    pub secure: bool,
    pub cookies: Arc<[HeaderValue]>,
}

impl TouchCache {
    pub fn get(&self) -> Option<Touched> {
        self.0.lock().ok().and_then(|t| t.clone())
    }

    pub fn set(&self, touched: Touched) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(touched);
        }
    }
}

impl Clone for TouchCache {
    fn clone(&self) -> Self {
        TouchCache::default()
    }
}

impl fmt::Debug for TouchCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TouchCache")
    }
}

impl PartialEq for TouchCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A logout generation mark, kept with a decoded session so repeat requests skip the
/// logout-record lookups while no logout has happened since. Clones start unchecked.
#[derive(Default)]
pub struct LogoutMark(std::sync::atomic::AtomicU64);

impl LogoutMark {
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set(&self, mark: u64) {
        self.0.store(mark, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clone for LogoutMark {
    fn clone(&self) -> Self {
        LogoutMark::default()
    }
}

impl fmt::Debug for LogoutMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogoutMark({})", self.get())
    }
}

impl PartialEq for LogoutMark {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Headers derived from a session, built once on first use. Never compared and never
/// cloned: a cloned session may be changed (refresh, touch), so it starts empty.
#[derive(Default)]
pub struct IdentityCache(OnceLock<Arc<[(HeaderName, HeaderValue)]>>);

impl IdentityCache {
    pub fn get_or_init(
        &self,
        build: impl FnOnce() -> Vec<(HeaderName, HeaderValue)>,
    ) -> &Arc<[(HeaderName, HeaderValue)]> {
        self.0.get_or_init(|| build().into())
    }
}

impl Clone for IdentityCache {
    fn clone(&self) -> Self {
        IdentityCache::default()
    }
}

impl fmt::Debug for IdentityCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityCache")
    }
}

impl PartialEq for IdentityCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Session {
    /// The claim named `name`, from the ID token first, then userinfo.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.id_token_claims
            .get(name)
            .or_else(|| self.userinfo.as_ref().and_then(|u| u.get(name)))
    }

    /// ID-token claims merged with userinfo claims (ID token wins), for claim rules.
    pub fn merged_claims(&self) -> Map<String, Value> {
        let mut merged = self.userinfo.clone().unwrap_or_default();
        for (k, v) in &self.id_token_claims {
            merged.insert(k.clone(), v.clone());
        }
        merged
    }
}

/// Never prints tokens.
impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[redacted]"),
            )
            .field("access_token_expires", &self.access_token_expires)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .finish_non_exhaustive()
    }
}
