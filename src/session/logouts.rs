//! Logout records: session ids ended by `?logout=` or front-channel logout, and `sid`/`sub`
//! records from verified back-channel logout tokens. Every load checks them in memory; a
//! generation counter lets a session already checked skip the lookups until a new record
//! arrives.
//!
//! With `[redis]`, replicas share them: each record made here is also queued in an
//! outbox that `replicas` writes to Redis (and publishes), and records other replicas made
//! arrive through [`LogoutRecords::apply_shared`]. While Redis is down the outbox keeps
//! what it could not write (bounded by bytes) and it is written when Redis is back.

use super::{ActiveSession, InvalidReason, Session};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Ended session ids, and `sid`/`sub` logout records: each table's bound, in (estimated)
/// bytes.
pub(crate) const LOGOUT_CAPACITY_BYTES: u64 = 16 << 20;
/// Accepted back-channel logout `jti`s, in (estimated) bytes.
pub(crate) const LOGOUT_JTI_CAPACITY_BYTES: u64 = 4 << 20;
/// Records made here and not yet written to Redis, in (estimated) bytes.
const OUTBOX_CAPACITY_BYTES: usize = 4 << 20;
/// What a cache entry costs beyond its key and value bytes (moka's node, the `Arc`s).
const ENTRY_OVERHEAD: usize = 96;
/// How long an accepted back-channel logout token's `jti` is remembered: longer than the
/// `iat` window plus skew, so any replay the `iat` check lets through is caught.
pub(crate) const LOGOUT_JTI_TTL: Duration = Duration::from_secs(900);
/// Issuers remembered per logged-out `sid`/`sub` value (one in practice).
const ISSUERS_PER_RECORD: usize = 8;

#[allow(clippy::ptr_arg)] // moka's weigher takes the key type itself
fn weigh_key(key: &String, _: &()) -> u32 {
    u32::try_from(ENTRY_OVERHEAD + key.len()).unwrap_or(u32::MAX)
}

#[allow(clippy::ptr_arg)] // moka's weigher takes the key type itself
fn weigh_records(key: &String, records: &Records) -> u32 {
    let issuers: usize = records.iter().map(|(iss, _)| iss.len() + 32).sum();
    u32::try_from(ENTRY_OVERHEAD + key.len() + issuers).unwrap_or(u32::MAX)
}

/// Logout records for one `sid` or `sub` value: (issuer, epoch milliseconds of the logout).
type Records = Arc<Vec<(String, i64)>>;

/// One logout record, as replicas exchange it. `at` is when it was made (epoch ms): for
/// `Sid`/`Sub`, sessions created up to then are ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
pub enum LogoutEvent {
    /// One session, by its id (`?logout=`, front-channel logout).
    End { id: String, at: i64 },
    /// Every session of `iss` with OP session id `sid` created up to `at`.
    Sid { iss: String, sid: String, at: i64 },
    /// Every session of `iss` for subject `sub` created up to `at`.
    Sub { iss: String, sub: String, at: i64 },
}

impl LogoutEvent {
    pub fn at(&self) -> i64 {
        match self {
            LogoutEvent::End { at, .. }
            | LogoutEvent::Sid { at, .. }
            | LogoutEvent::Sub { at, .. } => *at,
        }
    }

    fn weight(&self) -> usize {
        64 + match self {
            LogoutEvent::End { id, .. } => id.len(),
            LogoutEvent::Sid { iss, sid, .. } => iss.len() + sid.len(),
            LogoutEvent::Sub { iss, sub, .. } => iss.len() + sub.len(),
        }
    }
}

/// Records made here that Redis has not stored yet.
#[derive(Default)]
struct Outbox {
    events: VecDeque<LogoutEvent>,
    bytes: usize,
    /// Warned that records were dropped, since the outbox was last emptied.
    warned_full: bool,
}

pub struct LogoutRecords {
    ended: Cache<String, ()>,
    by_sid: Cache<String, Records>,
    by_sub: Cache<String, Records>,
    /// `jti`s of accepted back-channel logout tokens (replay protection).
    jtis: Cache<String, ()>,
    /// Bumped after every record is written: a session checked at the current generation
    /// needs no lookups.
    generation: AtomicU64,
    /// `Some` when replicas share records through Redis.
    outbox: Option<Mutex<Outbox>>,
    /// Wakes the writer when the outbox gets an event.
    queued: Notify,
}

impl LogoutRecords {
    /// Tables whose records live `record_ttl` (the sessions' `max_duration`: nothing older
    /// can be loaded anyway). `shared`: records made here are queued for Redis.
    pub(crate) fn new(record_ttl: Duration, shared: bool) -> LogoutRecords {
        let record_ttl = record_ttl.max(Duration::from_secs(1));
        let records = || {
            Cache::builder()
                .max_capacity(LOGOUT_CAPACITY_BYTES)
                .weigher(weigh_records)
                .time_to_live(record_ttl)
                .build()
        };
        LogoutRecords {
            ended: Cache::builder()
                .max_capacity(LOGOUT_CAPACITY_BYTES)
                .weigher(weigh_key)
                .time_to_live(record_ttl)
                .build(),
            by_sid: records(),
            by_sub: records(),
            jtis: Cache::builder()
                .max_capacity(LOGOUT_JTI_CAPACITY_BYTES)
                .weigher(weigh_key)
                .time_to_live(LOGOUT_JTI_TTL)
                .build(),
            generation: AtomicU64::new(0),
            outbox: shared.then(|| Mutex::new(Outbox::default())),
            queued: Notify::new(),
        }
    }

    /// Records `event`, made on this replica; queued for the others when shared.
    pub(crate) fn record(&self, event: LogoutEvent) {
        self.apply_shared(&event);
        let Some(outbox) = &self.outbox else { return };
        let mut outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
        outbox.bytes += event.weight();
        outbox.events.push_back(event);
        let full = outbox.bytes > OUTBOX_CAPACITY_BYTES;
        while outbox.bytes > OUTBOX_CAPACITY_BYTES {
            let Some(dropped) = outbox.events.pop_front() else {
                break;
            };
            outbox.bytes -= dropped.weight();
        }
        if full && !outbox.warned_full {
            outbox.warned_full = true;
            tracing::warn!(
                "logout outbox full while redis is unreachable: the oldest records apply \
                 on this replica only"
            );
        }
        drop(outbox);
        self.queued.notify_one();
    }

    /// Records `event` (made here or on another replica) in this replica's tables.
    pub fn apply_shared(&self, event: &LogoutEvent) {
        match event {
            LogoutEvent::End { id, .. } => {
                if !id.is_empty() {
                    self.ended.insert(id.clone(), ());
                }
            }
            LogoutEvent::Sid { iss, sid, at } => record(&self.by_sid, iss, sid, *at),
            LogoutEvent::Sub { iss, sub, at } => record(&self.by_sub, iss, sub, *at),
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The records queued for Redis, oldest first; the caller puts back what it could
    /// not write ([`LogoutRecords::requeue`]).
    pub(crate) fn take_outbox(&self) -> Vec<LogoutEvent> {
        let Some(outbox) = &self.outbox else {
            return Vec::new();
        };
        let mut outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
        outbox.bytes = 0;
        outbox.warned_full = false;
        outbox.events.drain(..).collect()
    }

    /// Puts unwritten records back at the front of the outbox.
    pub(crate) fn requeue(&self, events: Vec<LogoutEvent>) {
        let Some(outbox) = &self.outbox else { return };
        let mut outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
        for event in events.into_iter().rev() {
            if outbox.bytes + event.weight() > OUTBOX_CAPACITY_BYTES {
                continue;
            }
            outbox.bytes += event.weight();
            outbox.events.push_front(event);
        }
    }

    /// Resolves when a record was queued since the last call.
    pub(crate) async fn queued(&self) {
        self.queued.notified().await;
    }

    /// Records a back-channel logout token's `jti`; true when this replica saw it before.
    pub(crate) fn seen_jti(&self, jti: &str) -> bool {
        !self.jtis.entry(jti.to_string()).or_insert(()).is_fresh()
    }

    /// Whether a logout record ends `s`. Reads the generation before the lookups; writers
    /// bump it after their record is in place, so a mark is only ever set from lookups that
    /// could see every record of its generation.
    pub(crate) fn check(&self, s: &ActiveSession) -> Result<(), InvalidReason> {
        let mark = self.generation.load(Ordering::Acquire) + 1;
        if s.logout_mark() == mark {
            return Ok(());
        }
        self.check_records(s)?;
        s.set_logout_mark(mark);
        Ok(())
    }

    fn check_records(&self, s: &Session) -> Result<(), InvalidReason> {
        if self.ended.contains_key(s.id.as_str()) {
            return Err(InvalidReason::Ended);
        }
        if let Some(sid) = &s.sid {
            if logged_out(&self.by_sid, &s.iss, sid, created_ms(s)) {
                return Err(InvalidReason::LoggedOut);
            }
        }
        if logged_out(&self.by_sub, &s.iss, &s.sub, created_ms(s)) {
            return Err(InvalidReason::LoggedOut);
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn is_ended(&self, session_id: &str) -> bool {
        self.ended.contains_key(session_id)
    }

    #[cfg(test)]
    pub(crate) fn weighted_sizes(&self) -> [u64; 3] {
        for t in [&self.by_sid, &self.by_sub] {
            t.run_pending_tasks();
        }
        self.jtis.run_pending_tasks();
        [
            self.by_sid.weighted_size(),
            self.by_sub.weighted_size(),
            self.jtis.weighted_size(),
        ]
    }
}

fn record(cache: &Cache<String, Records>, iss: &str, key: &str, at: i64) {
    if key.is_empty() {
        return;
    }
    cache.entry(key.to_owned()).and_upsert_with(|old| {
        let mut records: Vec<(String, i64)> =
            old.map(|e| e.into_value().to_vec()).unwrap_or_default();
        match records.iter_mut().find(|(i, _)| i == iss) {
            Some(r) => r.1 = r.1.max(at),
            None => {
                if records.len() >= ISSUERS_PER_RECORD {
                    records.remove(0);
                }
                records.push((iss.to_owned(), at));
            }
        }
        Arc::new(records)
    });
}

/// When `s` was created, in epoch milliseconds; a session from before `created_ms`
/// existed counts as created at the end of its second (so a logout in that second ends it).
fn created_ms(s: &Session) -> i64 {
    if s.created_ms > 0 {
        s.created_ms
    } else {
        s.created_at.saturating_mul(1000).saturating_add(999)
    }
}

fn logged_out(cache: &Cache<String, Records>, iss: &str, key: &str, created_at: i64) -> bool {
    cache
        .get(key)
        .is_some_and(|records| records.iter().any(|(i, at)| i == iss && created_at <= *at))
}
