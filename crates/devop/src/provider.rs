//! The shared state of one development provider: client registration, keys, grants,
//! per-user claims, test knobs and counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keys::KeySet;
use super::store::Store;
use super::{Counters, Now, Tamper};

/// Equal length and content, compared in constant time.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the state is a
/// set of independent maps, so it stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) struct Provider {
    pub issuer: String,
    pub client_id: String,
    client_secret_digest: [u8; 32],
    /// The secret itself: the HMAC key of `client_secret_jwt` assertions.
    client_secret: String,
    /// How the client may authenticate, and how it did (see `client_auth`).
    pub(crate) client_auth: Mutex<ClientAuthPolicy>,
    /// Pushed authorization requests: `request_uri` -> (query, expiry).
    pub(crate) pushed: Mutex<HashMap<String, (String, i64)>>,
    /// Authorization requests must be pushed (`require_pushed_authorization_requests`).
    pub(crate) require_par: AtomicBool,
    redirect_uris: Mutex<Vec<String>>,
    post_logout_redirect_uris: Mutex<Vec<String>>,
    now: Now,
    access_token_ttl: AtomicI64,
    refuse_refresh: AtomicBool,
    keep_refresh_tokens: AtomicBool,
    token_type: Mutex<Option<String>>,
    omit_kid: AtomicBool,
    introspection_delay_ms: AtomicU64,
    tamper: Mutex<Option<Tamper>>,
    userinfo_sub: Mutex<Option<String>>,
    users: Mutex<HashMap<String, Map<String, Value>>>,
    pub keys: Mutex<KeySet>,
    pub store: Mutex<Store>,
    counters: Mutex<Counters>,
}

/// What [`Provider::new`] needs besides the keys.
pub(crate) struct Registration {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub access_token_ttl: i64,
    pub now: Now,
}

impl Provider {
    pub(crate) fn new(reg: Registration, keys: KeySet) -> Self {
        Self {
            issuer: reg.issuer,
            client_id: reg.client_id,
            client_secret_digest: Sha256::digest(reg.client_secret.as_bytes()).into(),
            client_secret: reg.client_secret.clone(),
            client_auth: Mutex::new(ClientAuthPolicy::default()),
            pushed: Mutex::new(HashMap::new()),
            require_par: AtomicBool::new(false),
            redirect_uris: Mutex::new(reg.redirect_uris),
            post_logout_redirect_uris: Mutex::new(reg.post_logout_redirect_uris),
            now: reg.now,
            access_token_ttl: AtomicI64::new(reg.access_token_ttl),
            refuse_refresh: AtomicBool::new(false),
            keep_refresh_tokens: AtomicBool::new(false),
            token_type: Mutex::new(None),
            omit_kid: AtomicBool::new(false),
            introspection_delay_ms: AtomicU64::new(0),
            tamper: Mutex::new(None),
            userinfo_sub: Mutex::new(None),
            users: Mutex::new(HashMap::new()),
            keys: Mutex::new(keys),
            store: Mutex::new(Store::default()),
            counters: Mutex::new(Counters::default()),
        }
    }

    pub(crate) fn now(&self) -> i64 {
        (self.now)()
    }

    /// Compares digests in constant time, so neither content nor length leaks.
    pub(crate) fn secret_matches(&self, presented: &str) -> bool {
        let digest = Sha256::digest(presented.as_bytes());
        constant_time_eq(&digest, &self.client_secret_digest)
    }

    /// The HMAC key of `client_secret_jwt` assertions.
    pub(crate) fn client_secret(&self) -> &str {
        &self.client_secret
    }

    pub(crate) fn is_redirect_uri(&self, uri: &str) -> bool {
        lock(&self.redirect_uris).iter().any(|r| r == uri)
    }

    pub(crate) fn add_redirect_uri(&self, uri: &str) {
        add_unique(&mut lock(&self.redirect_uris), uri);
    }

    pub(crate) fn is_post_logout_redirect_uri(&self, uri: &str) -> bool {
        lock(&self.post_logout_redirect_uris)
            .iter()
            .any(|r| r == uri)
    }

    pub(crate) fn add_post_logout_redirect_uri(&self, uri: &str) {
        add_unique(&mut lock(&self.post_logout_redirect_uris), uri);
    }

    pub(crate) fn access_token_ttl(&self) -> i64 {
        self.access_token_ttl.load(Ordering::Relaxed)
    }

    pub(crate) fn set_access_token_ttl(&self, secs: i64) {
        self.access_token_ttl.store(secs, Ordering::Relaxed);
    }

    pub(crate) fn refuses_refresh(&self) -> bool {
        self.refuse_refresh.load(Ordering::Relaxed)
    }

    pub(crate) fn set_refuse_refresh(&self, refuse: bool) {
        self.refuse_refresh.store(refuse, Ordering::Relaxed);
    }

    pub(crate) fn rotates_refresh_tokens(&self) -> bool {
        !self.keep_refresh_tokens.load(Ordering::Relaxed)
    }

    pub(crate) fn set_introspection_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.introspection_delay_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn introspection_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.introspection_delay_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn set_omit_kid(&self, omit: bool) {
        self.omit_kid.store(omit, Ordering::Relaxed);
    }

    pub(crate) fn omit_kid(&self) -> bool {
        self.omit_kid.load(Ordering::Relaxed)
    }

    pub(crate) fn set_token_type(&self, token_type: Option<String>) {
        *lock(&self.token_type) = token_type;
    }

    /// The `token_type` of token responses (`Bearer` unless a test changed it).
    pub(crate) fn token_type(&self) -> String {
        lock(&self.token_type)
            .clone()
            .unwrap_or_else(|| "Bearer".into())
    }

    pub(crate) fn set_rotate_refresh_tokens(&self, rotate: bool) {
        self.keep_refresh_tokens.store(!rotate, Ordering::Relaxed);
    }

    pub(crate) fn tamper(&self) -> Option<Tamper> {
        *lock(&self.tamper)
    }

    pub(crate) fn set_tamper(&self, t: Option<Tamper>) {
        *lock(&self.tamper) = t;
    }

    pub(crate) fn userinfo_sub(&self) -> Option<String> {
        lock(&self.userinfo_sub).clone()
    }

    pub(crate) fn set_userinfo_sub(&self, sub: Option<String>) {
        *lock(&self.userinfo_sub) = sub;
    }

    /// Extra claims registered for `username` (empty if none).
    pub(crate) fn extra_claims(&self, username: &str) -> Map<String, Value> {
        lock(&self.users).get(username).cloned().unwrap_or_default()
    }

    pub(crate) fn set_extra_claims(&self, username: &str, extra: Map<String, Value>) {
        lock(&self.users).insert(username.to_owned(), extra);
    }

    pub(crate) fn count(&self, bump: impl FnOnce(&mut Counters)) {
        bump(&mut lock(&self.counters));
    }

    pub(crate) fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }
}

/// Client authentication beyond the secret methods: the registered public key of
/// `private_key_jwt`, the one method required (a test knob), the assertion ids seen
/// (replays are refused) and the method each authenticated request used.
#[derive(Default)]
pub(crate) struct ClientAuthPolicy {
    pub(crate) public_key: Option<jsonwebtoken::jwk::Jwk>,
    pub(crate) required: Option<String>,
    pub(crate) seen_jti: std::collections::HashSet<String>,
    pub(crate) used: Vec<String>,
}

fn add_unique(list: &mut Vec<String>, uri: &str) {
    if !list.iter().any(|r| r == uri) {
        list.push(uri.to_owned());
    }
}
