//! The bearer-token validation cache: keyed by SHA-256 of the token (never the token),
//! bounded by estimated bytes, each entry living until the token's `exp` (or the
//! configured re-validation interval) when active and briefly when inactive. Lookups of an
//! uncached token are single-flight: concurrent requests share one validation.

use crate::config::IntrospectionCache;
use crate::metrics::CacheCounters;
use crate::session::Headers;
use moka::future::Cache;
use moka::Expiry;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long an inactive (or invalid) result is remembered.
pub(crate) const INACTIVE_TTL: Duration = Duration::from_secs(10);

pub(crate) type Key = [u8; 32];

/// The outcome of validating one token.
#[derive(Debug)]
pub struct Validation {
    pub active: bool,
    pub claims: Map<String, Value>,
    pub exp: Option<i64>,
    /// How long this result may be reused (set when it is made).
    pub ttl: Duration,
    /// The identity headers for this token, built on first use.
    pub headers: OnceLock<Headers>,
}

pub fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

/// The key of `token`'s validation at the provider named `provider`: [`key`] for the
/// default provider (`None`), so a single-provider gateway's keys are what they were;
/// for another, a hash of the name and the token, so two providers' results for one
/// token never share an entry.
pub(crate) fn key_at(provider: Option<&str>, token: &str) -> Key {
    let Some(name) = provider else {
        return key(token);
    };
    let mut hash = Sha256::new();
    hash.update(b"oidc-gateway provider\0");
    hash.update(name.as_bytes());
    hash.update([0]);
    hash.update(token.as_bytes());
    hash.finalize().into()
}

struct PerEntry;

impl Expiry<Key, Arc<Validation>> for PerEntry {
    fn expire_after_create(&self, _: &Key, v: &Arc<Validation>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Clones share the cache (the replicas' task removes entries other replicas dropped).
#[derive(Clone)]
pub struct TokenCache {
    cache: Cache<Key, Arc<Validation>>,
    policy: IntrospectionCache,
    counters: CacheCounters,
}

impl TokenCache {
    pub fn new(policy: IntrospectionCache, max_bytes: u64, counters: CacheCounters) -> TokenCache {
        let evictions = counters.evictions.clone();
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Key, v: &Arc<Validation>| {
                // Key, Arc and map overhead, plus the claims' rough size.
                let claims: usize = v.claims.iter().map(|(k, v)| k.len() + estimate(v)).sum();
                u32::try_from(128 + claims).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntry)
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        TokenCache {
            cache,
            policy,
            counters,
        }
    }

    /// How long a result may be cached: active until `exp` (capped by the policy),
    /// inactive briefly, nothing when caching is off.
    pub(crate) fn ttl_for(&self, active: bool, exp: Option<i64>, now: i64) -> Duration {
        if self.policy == IntrospectionCache::Off {
            return Duration::ZERO;
        }
        if !active {
            return INACTIVE_TTL;
        }
        let until_exp = exp
            .map(|e| Duration::from_secs(e.saturating_sub(now).max(0) as u64))
            .unwrap_or(Duration::from_secs(300));
        match self.policy {
            IntrospectionCache::For(d) => d.min(until_exp),
            _ => until_exp,
        }
    }

    /// The cached result for `token`, or the one `validate` makes (single-flight).
    /// Errors (provider unreachable) are not cached.
    pub async fn get_or_validate<F, E>(
        &self,
        token: &str,
        validate: F,
    ) -> Result<Arc<Validation>, Arc<E>>
    where
        F: std::future::Future<Output = Result<Validation, E>>,
        E: Send + Sync + 'static,
    {
        self.get_or_validate_key(key(token), validate).await
    }

    /// [`TokenCache::get_or_validate`] for the entry `key` ([`key_at`]).
    pub(crate) async fn get_or_validate_key<F, E>(
        &self,
        key: Key,
        validate: F,
    ) -> Result<Arc<Validation>, Arc<E>>
    where
        F: std::future::Future<Output = Result<Validation, E>>,
        E: Send + Sync + 'static,
    {
        if self.policy == IntrospectionCache::Off {
            return validate.await.map(Arc::new).map_err(Arc::new);
        }
        let missed = std::sync::atomic::AtomicBool::new(false);
        let result = self
            .cache
            .try_get_with(key, async {
                missed.store(true, std::sync::atomic::Ordering::Relaxed);
                validate.await.map(Arc::new)
            })
            .await;
        if missed.into_inner() {
            self.counters.misses.inc();
        } else {
            self.counters.hits.inc();
        }
        if let Ok(v) = &result {
            if v.ttl.is_zero() {
                self.cache.invalidate(&key).await;
            }
        }
        result
    }

    /// The cached result under `key`, if any (counted as a hit); no validation on a miss.
    pub(crate) async fn cached(&self, key: &Key) -> Option<Arc<Validation>> {
        let found = self.cache.get(key).await?;
        self.counters.hits.inc();
        Some(found)
    }

    /// Drops `token`'s entry; whether there was a live one. (moka's `remove` also returns
    /// an entry that has expired but not yet been evicted: that one was not cached.)
    pub async fn remove(&self, token: &str) -> bool {
        self.remove_key(&key(token)).await
    }

    /// Drops the entry `key`; whether there was a live one.
    pub(crate) async fn remove_key(&self, key: &Key) -> bool {
        let key = *key;
        let live = self.cache.contains_key(&key);
        self.cache.invalidate(&key).await;
        live
    }

    /// Drops the entry for a token known by its hash (another replica removed it).
    pub(crate) async fn invalidate_key(&self, key: &Key) {
        self.cache.invalidate(key).await;
    }

    /// Entries cached and their weighed size (bounded by `oauth.cache_max_bytes`), after
    /// the cache's pending bookkeeping: for `/metrics`.
    pub async fn size(&self) -> (u64, u64) {
        self.cache.run_pending_tasks().await;
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    /// Hex of every cached key: for debugging and for the test that proves keys are
    /// hashes, not tokens.
    pub fn debug_keys(&self) -> Vec<String> {
        self.cache
            .iter()
            .map(|(k, _)| k.iter().map(|b| format!("{b:02x}")).collect())
            .collect()
    }
}

fn estimate(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 24,
        Value::Array(a) => a.iter().map(estimate).sum::<usize>() + 24,
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + estimate(v)).sum::<usize>() + 48,
        _ => 16,
    }
}
