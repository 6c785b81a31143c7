//! The session: who logged in, their tokens and claims, and when it started and was last
//! used (the serialized model; short serde names keep sealed cookies small). And
//! [`ActiveSession`]: a loaded session shared by the requests that present it, with the
//! run-time state derived from it.

use crate::secret::Secret;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Tokens are [`Secret`]s: `Debug` never prints them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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
    pub access_token: Option<Secret>,
    /// Absolute expiry of the access token, epoch seconds.
    #[serde(rename = "ae", default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires: Option<i64>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// The raw ID token, for `id_token_hint` at logout and `OIDC_id_token`.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret>,
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
    /// The name of the provider the user logged in at (`[[provider]] name`). Empty in
    /// sessions sealed before sessions named theirs: those are the default provider's.
    #[serde(rename = "p", default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
}

impl Session {
    /// The claim named `name`, from the ID token first, then userinfo.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.id_token_claims
            .get(name)
            .or_else(|| self.userinfo.as_ref().and_then(|u| u.get(name)))
    }

    /// ID-token claims merged with userinfo claims (ID token wins), for claim rules.
    pub(crate) fn merged_claims(&self) -> Map<String, Value> {
        let mut merged = self.userinfo.clone().unwrap_or_default();
        for (k, v) in &self.id_token_claims {
            merged.insert(k.clone(), v.clone());
        }
        merged
    }
}

/// One header the gateway sets.
type Header = (HeaderName, HeaderValue);

/// Identity headers built for a session or a bearer token (`crate::identity`): the ones
/// every route sends, then those of each configured header list, and which builder made
/// them (a reloaded config has a new builder, so headers cached before it are rebuilt).
#[derive(Debug)]
pub struct Headers {
    headers: Box<[Header]>,
    /// Where the common headers end in `headers`, then where each list's end.
    ends: Box<[usize]>,
    builder: u64,
}

impl Headers {
    /// `ends`: where the common headers end, then each list's; non-decreasing, the last
    /// at most `headers.len()`.
    pub fn new(headers: Vec<Header>, ends: Vec<usize>, builder: u64) -> Self {
        debug_assert!(ends.windows(2).all(|w| w[0] <= w[1]));
        debug_assert!(ends.last().is_none_or(|&e| e <= headers.len()));
        Headers {
            headers: headers.into(),
            ends: ends.into(),
            builder,
        }
    }

    /// The builder these were made by.
    pub fn builder(&self) -> u64 {
        self.builder
    }

    /// What a route sending header list `list` gets: the common headers, then the list's
    /// (none when there is no such list).
    pub fn for_list(&self, list: usize) -> (&[Header], &[Header]) {
        let all = &self.headers[..];
        let common = self.ends.first().map_or(all, |&e| &all[..e]);
        let own = match (self.ends.get(list), self.ends.get(list + 1)) {
            (Some(&start), Some(&end)) => &all[start..end],
            _ => &[],
        };
        (common, own)
    }
}

/// A loaded session, shared by every request that presents the same cookie (through the
/// decoded-session cache or the memory store), with what the gateway derived from it at
/// run time: never serialized, and new with every new (refreshed, touched) session.
#[derive(Debug)]
pub struct ActiveSession {
    session: Session,
    /// The identity headers, built on first use so repeat requests do not rebuild them.
    identity: OnceLock<Headers>,
    /// The logout generation this session was last checked against; see
    /// `Sessions::check`.
    logout_mark: AtomicU64,
    /// This session re-saved with a newer `last_seen`, for requests that still present
    /// this (older) cookie; see `Sessions::touch`.
    touched: Mutex<Option<Touched>>,
}

/// A re-saved session's `Set-Cookie` values: when, for which scheme, and the values.
#[derive(Clone, Debug)]
pub(crate) struct Touched {
    pub at: i64,
    pub(crate) secure: bool,
    pub cookies: Arc<[HeaderValue]>,
}

impl ActiveSession {
    pub fn new(session: Session) -> ActiveSession {
        ActiveSession {
            session,
            identity: OnceLock::new(),
            logout_mark: AtomicU64::new(0),
            touched: Mutex::new(None),
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The identity headers for this session, built by `build` on first use.
    pub fn identity(&self, build: impl FnOnce() -> Headers) -> &Headers {
        self.identity.get_or_init(build)
    }

    pub(crate) fn logout_mark(&self) -> u64 {
        self.logout_mark.load(Ordering::Relaxed)
    }

    pub(crate) fn set_logout_mark(&self, mark: u64) {
        self.logout_mark.store(mark, Ordering::Relaxed);
    }

    pub(crate) fn touched(&self) -> Option<Touched> {
        self.touched.lock().ok().and_then(|t| t.clone())
    }

    pub(crate) fn set_touched(&self, touched: Touched) {
        if let Ok(mut slot) = self.touched.lock() {
            *slot = Some(touched);
        }
    }
}

impl Deref for ActiveSession {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}
