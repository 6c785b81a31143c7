//! In-process session store: a bounded moka cache in which each session expires when its
//! remaining life (inactivity or maximum duration, whichever ends first) runs out.

use super::store::Backend;
use super::{ActiveSession, Session, SessionError};
use moka::future::Cache;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Entry {
    session: Arc<ActiveSession>,
    ttl: Duration,
}

/// Each entry lives for the `ttl` it was last put with.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Sessions held in this process: lost on restart, not shared between instances. Clones
/// share the sessions (a config reload keeps them).
#[derive(Clone)]
pub(crate) struct MemoryBackend {
    cache: Cache<String, Entry>,
}

impl MemoryBackend {
    /// At most `capacity` sessions; the least recently used go first when full.
    pub fn new(capacity: u64) -> MemoryBackend {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(PerEntryTtl)
            .build();
        MemoryBackend { cache }
    }
}

impl MemoryBackend {
    /// Sessions held (after the cache's pending bookkeeping: for `/metrics`).
    pub async fn len(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl Backend for MemoryBackend {
    async fn get(&self, id: &str) -> Option<Arc<ActiveSession>> {
        self.cache.get(id).await.map(|e| e.session)
    }

    async fn put(&self, session: &Session, ttl: Duration) -> Result<(), SessionError> {
        let entry = Entry {
            session: Arc::new(ActiveSession::new(session.clone())),
            ttl,
        };
        self.cache.insert(session.id.clone(), entry).await;
        Ok(())
    }

    async fn remove(&self, id: &str) {
        self.cache.invalidate(id).await;
    }
}
