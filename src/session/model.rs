//! The session: who logged in, their tokens and claims, and when it started and was last
//! used. Short serde names keep sealed cookies small.

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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

/// Run-time state derived from a session and kept with its shared, decoded copy: never
/// serialized, ignored by `==`, and empty in a clone (a clone may be changed, by a refresh
/// or a touch, so nothing derived from the original holds for it).
#[derive(Default)]
pub struct Derived<T>(T);

impl<T: Default> Clone for Derived<T> {
    fn clone(&self) -> Self {
        Derived::default()
    }
}

impl<T> PartialEq for Derived<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> fmt::Debug for Derived<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Derived")
    }
}

/// Headers derived from a session (or a bearer validation), built once on first use.
pub type IdentityCache = Derived<OnceLock<Arc<[(HeaderName, HeaderValue)]>>>;

impl IdentityCache {
    pub fn get_or_init(
        &self,
        build: impl FnOnce() -> Vec<(HeaderName, HeaderValue)>,
    ) -> &Arc<[(HeaderName, HeaderValue)]> {
        self.0.get_or_init(|| build().into())
    }
}

/// The logout generation a decoded session was last checked against, so repeat requests
/// skip the logout-record lookups while no logout has happened since.
pub type LogoutMark = Derived<AtomicU64>;

impl LogoutMark {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, mark: u64) {
        self.0.store(mark, Ordering::Relaxed);
    }
}

/// A re-saved session's `Set-Cookie` values: when, for which scheme, and the values.
#[derive(Clone)]
pub struct Touched {
    pub at: i64,
    pub secure: bool,
    pub cookies: Arc<[HeaderValue]>,
}

pub type TouchCache = Derived<Mutex<Option<Touched>>>;

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
