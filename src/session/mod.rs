//! Sessions: the model, how it is sealed into cookies, where it is stored, and the
//! [`Sessions`] manager the gateway asks on every request "who is this?".
//!
//! - `codec`: AES-256-GCM sealing with HKDF-derived, rotatable keys.
//! - `cookies`: finding, chunking, stripping and writing the gateway's cookies.
//! - `store` / `memory` / `redis`: server-side stores that keep only a sealed id in the
//!   cookie.
//! - `logouts`: the logout records every load checks (shared by replicas with `[redis]`).

mod codec;
mod cookies;
mod logouts;
mod memory;
mod model;
mod redis;
mod store;

#[cfg(test)]
pub(crate) mod test_redis;
#[cfg(test)]
mod tests;

pub use codec::{Codec, Deployment, Purpose};
pub use model::{ActiveSession, Headers, Session};

pub use codec::CodecError;
pub(crate) use codec::MAX_SEALED_LEN;
pub(crate) use cookies::{CookieAttrs, CHUNK_SIZE, MAX_CHUNKS};
pub(crate) use logouts::LOGOUT_JTI_TTL;
pub use logouts::{LogoutEvent, LogoutRecords};
pub(crate) use memory::MemoryBackend;
pub(crate) use model::Touched;
pub(crate) use redis::RedisBackend;
pub(crate) use store::Backend;

use crate::clock::Clock;
use crate::config::{SessionConfig, StoreKind};
use crate::redis_link::RedisLink;
use cookies::{Names, Presented};
use http::{HeaderMap, HeaderValue};
use moka::sync::Cache;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Decoded cookie-store sessions kept for repeat requests, in (estimated) bytes.
const DECODED_CAPACITY_BYTES: u64 = 64 << 20;
/// How long a decoded session is kept; timeouts and logouts are still checked every load.
const DECODED_TTL: Duration = Duration::from_secs(60);
/// Why a session could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "sealed session is {sealed_len} bytes: more than {MAX_CHUNKS} cookies of {CHUNK_SIZE}"
    )]
    TooLarge { sealed_len: usize },
    #[error("session could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("session store failed: {0}")]
    Store(String),
    #[error("cookie could not be written as a header value")]
    Header,
}

/// Why presented session cookies were not usable. For debug logs: never holds the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    #[error("chunk count cookie missing, not a number, or outside 1..={MAX_CHUNKS}")]
    ChunkCount,
    #[error("a session cookie chunk is missing")]
    ChunkMissing,
    #[error("reassembled session cookie exceeds {MAX_SEALED_LEN} characters")]
    TooLarge,
    #[error("session cookie is not ASCII")]
    Encoding,
    #[error("session cookie did not open: {0}")]
    Unsealed(CodecError),
    #[error("session cookie opened but its content is not a session")]
    Malformed,
    #[error("session exceeded inactivity_timeout or max_duration")]
    Expired,
    #[error("session id not found in the session store")]
    NotFound,
    #[error("session was ended by logout")]
    Ended,
    #[error("the provider logged this session out (sid or sub)")]
    LoggedOut,
}

/// What a request's cookies say about its session.
#[derive(Debug)]
pub enum Loaded {
    /// No session cookie at all.
    Missing,
    Valid(Arc<ActiveSession>),
    /// Session cookie(s) presented but unusable: clear them and start a login.
    Invalid(InvalidReason),
}

/// A decoded cookie-store session and the exact sealed value it came from.
struct Decoded {
    sealed: Box<str>,
    session: Arc<ActiveSession>,
}

/// The decoded-session cache key: the sealed value's last characters, which hold its
/// AES-GCM tag (random per seal). Hashing a few bytes instead of the whole kilobytes-long
/// value is the point; a hit still compares the whole value, so a forged tail is a miss.
type DecodedKey = [u8; DECODED_KEY_LEN];
const DECODED_KEY_LEN: usize = 24;

fn decoded_key(sealed: &str) -> DecodedKey {
    let tail = &sealed.as_bytes()[sealed.len().saturating_sub(DECODED_KEY_LEN)..];
    let mut key = [0u8; DECODED_KEY_LEN];
    key[DECODED_KEY_LEN - tail.len()..].copy_from_slice(tail);
    key
}

enum Store {
    /// The whole session is in the cookie; `decoded` skips re-opening a repeat cookie.
    Cookie {
        decoded: Cache<DecodedKey, Arc<Decoded>>,
    },
    Memory(MemoryBackend),
    /// Boxed: its client and connection state dwarf the other variants.
    Redis(Box<RedisBackend>),
}

impl Store {
    fn new(cfg: &SessionConfig, redis: Option<&Arc<RedisLink>>, codec: &Arc<Codec>) -> Store {
        match cfg.store {
            StoreKind::Cookie => Store::Cookie {
                decoded: Cache::builder()
                    .max_capacity(DECODED_CAPACITY_BYTES)
                    // The sealed value, and the decoded session (about twice its size,
                    // deflate undone).
                    .weigher(|_, d: &Arc<Decoded>| {
                        u32::try_from(256 + d.sealed.len() * 3).unwrap_or(u32::MAX)
                    })
                    .time_to_live(DECODED_TTL)
                    .build(),
            },
            StoreKind::Memory => Store::Memory(MemoryBackend::new(cfg.memory_capacity)),
            StoreKind::Redis => Store::Redis(Box::new(RedisBackend::new(
                Arc::clone(
                    redis.expect("config validation requires [redis] for store = \"redis\""),
                ),
                Arc::clone(codec),
            ))),
        }
    }
}

/// The session manager: built once at start, shared by every request.
pub struct Sessions {
    /// Shared with the redis store, which seals what it keeps.
    codec: Arc<Codec>,
    clock: Clock,
    names: Names,
    attrs: CookieAttrs,
    store: Store,
    inactivity: i64,
    max_duration: i64,
    touch_after: i64,
    /// Shared with `replicas`, which feeds them from and to Redis.
    logouts: Arc<LogoutRecords>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = match self.store {
            Store::Cookie { .. } => "cookie",
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        };
        f.debug_struct("Sessions")
            .field("store", &store)
            .field("cookie_name", &self.names.session())
            .finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Sessions {
    /// Builds the manager. Connects nowhere: the redis store connects on first use. With
    /// `redis` (`[redis]` configured), logout records are queued for the other replicas,
    /// and `store = "redis"` keeps the sessions there.
    pub fn new(
        cfg: &SessionConfig,
        deployment: Deployment<'_>,
        clock: Clock,
        redis: Option<Arc<RedisLink>>,
    ) -> Sessions {
        let codec = Arc::new(Codec::new(&cfg.passphrases, &deployment));
        let store = Store::new(cfg, redis.as_ref(), &codec);
        // Nothing older than max_duration can be loaded anyway, so records need not
        // outlive it.
        let logouts = Arc::new(LogoutRecords::new(cfg.max_duration, redis.is_some()));
        Sessions::assemble(cfg, codec, clock, store, logouts)
    }

    /// The manager for a reloaded config. What it holds survives: the logout records, the
    /// memory store's sessions, and every session cookie or Redis session the new
    /// passphrases still open (a new first passphrase with the old one kept after it opens
    /// them all). The store kind, its capacity and `[redis]` only change on restart (the
    /// reload keeps the running ones). A cookie store's decode cache starts empty: what it
    /// holds was opened with the old passphrases, some of which may be gone.
    pub fn reloaded(
        &self,
        cfg: &SessionConfig,
        deployment: Deployment<'_>,
        redis: Option<&Arc<RedisLink>>,
    ) -> Sessions {
        let codec = Arc::new(Codec::new(&cfg.passphrases, &deployment));
        let store = match &self.store {
            Store::Memory(backend) => Store::Memory(backend.clone()),
            _ => Store::new(cfg, redis, &codec),
        };
        let logouts = Arc::clone(&self.logouts);
        Sessions::assemble(cfg, codec, self.clock.clone(), store, logouts)
    }

    fn assemble(
        cfg: &SessionConfig,
        codec: Arc<Codec>,
        clock: Clock,
        store: Store,
        logouts: Arc<LogoutRecords>,
    ) -> Sessions {
        let inactivity = secs(cfg.inactivity_timeout);
        Sessions {
            codec,
            clock,
            names: Names::new(&cfg.cookie_name, &cfg.state_cookie_prefix),
            attrs: CookieAttrs::new(cfg.same_site, cfg.cookie_domain.as_ref()),
            store,
            inactivity,
            max_duration: secs(cfg.max_duration),
            touch_after: (inactivity / 10).max(1),
            logouts,
        }
    }

    /// Sessions in the memory store; `None` with another store.
    pub async fn memory_sessions(&self) -> Option<u64> {
        match &self.store {
            Store::Memory(backend) => Some(backend.len().await),
            _ => None,
        }
    }

    /// Entries and weighed bytes of the cookie store's decode cache; `None` with another
    /// store.
    pub fn decode_cache_size(&self) -> Option<(u64, u64)> {
        match &self.store {
            Store::Cookie { decoded } => {
                decoded.run_pending_tasks();
                Some((decoded.entry_count(), decoded.weighted_size()))
            }
            _ => None,
        }
    }

    /// The logout records every load checks.
    pub fn logouts(&self) -> &Arc<LogoutRecords> {
        &self.logouts
    }

    /// The codec, shared: replicas seal what they put in Redis with it.
    pub(crate) fn shared_codec(&self) -> Arc<Codec> {
        Arc::clone(&self.codec)
    }

    /// The codec; the gateway seals state cookies with [`Purpose::State`].
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The session the request's cookies carry. Never panics and never fails hard: anything
    /// unusable is [`Loaded::Invalid`] with the reason.
    pub async fn load(&self, headers: &HeaderMap) -> Loaded {
        let sealed = match Presented::scan(headers, &self.names).sealed() {
            Ok(Some(sealed)) => sealed,
            Ok(None) => return Loaded::Missing,
            Err(reason) => return Loaded::Invalid(reason),
        };
        let opened = match &self.store {
            Store::Cookie { decoded } => self.open_cookie(decoded, sealed),
            Store::Memory(backend) => self.open_id(backend, &sealed).await,
            Store::Redis(backend) => self.open_id(backend.as_ref(), &sealed).await,
        };
        match opened.and_then(|s| self.check(&s).map(|()| s)) {
            Ok(session) => Loaded::Valid(session),
            Err(reason) => Loaded::Invalid(reason),
        }
    }

    fn open_cookie(
        &self,
        decoded: &Cache<DecodedKey, Arc<Decoded>>,
        sealed: Cow<'_, str>,
    ) -> Result<Arc<ActiveSession>, InvalidReason> {
        let key = decoded_key(&sealed);
        if let Some(hit) = decoded.get(&key) {
            if *hit.sealed == *sealed {
                return Ok(Arc::clone(&hit.session));
            }
        }
        let json = self
            .codec
            .open(Purpose::Session, &sealed)
            .map_err(InvalidReason::Unsealed)?;
        let session: Session =
            serde_json::from_slice(&json).map_err(|_| InvalidReason::Malformed)?;
        let session = Arc::new(ActiveSession::new(session));
        remember(decoded, sealed.into_owned(), Arc::clone(&session));
        Ok(session)
    }

    async fn open_id(
        &self,
        backend: &impl Backend,
        sealed: &str,
    ) -> Result<Arc<ActiveSession>, InvalidReason> {
        let id = self
            .codec
            .open(Purpose::SessionId, sealed)
            .map_err(InvalidReason::Unsealed)?;
        let id = std::str::from_utf8(&id).map_err(|_| InvalidReason::Malformed)?;
        match backend.get(id).await {
            Some(session) if session.id == id => Ok(session),
            _ => Err(InvalidReason::NotFound),
        }
    }

    /// The checks that run on every load, cached or not: timeouts, then logouts.
    fn check(&self, s: &ActiveSession) -> Result<(), InvalidReason> {
        let now = self.clock.now();
        if now.saturating_sub(s.last_seen) > self.inactivity {
            tracing::debug!("session idle longer than inactivity_timeout");
            return Err(InvalidReason::Expired);
        }
        if now.saturating_sub(s.created_at) > self.max_duration {
            tracing::debug!("session older than max_duration");
            return Err(InvalidReason::Expired);
        }
        self.logouts.check(s)
    }

    /// Stores `session` and returns the `Set-Cookie` values that carry it, including
    /// expiries for any stale cookies of the other shape (chunked vs. not) that the request
    /// presented. Cookie store: [`SessionError::TooLarge`] if it needs more than
    /// [`MAX_CHUNKS`] cookies.
    pub async fn save(
        &self,
        session: &Session,
        secure: bool,
        presented: &HeaderMap,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        match &self.store {
            Store::Cookie { decoded } => {
                let json = serde_json::to_vec(session)?;
                let sealed = self.codec.seal(Purpose::Session, &json);
                let cookies = self.write_cookies(&sealed, secure, presented)?;
                // The next request presents this exact value: spare it the open.
                remember(
                    decoded,
                    sealed,
                    Arc::new(ActiveSession::new(session.clone())),
                );
                Ok(cookies)
            }
            Store::Memory(backend) => self.save_id(backend, session, secure, presented).await,
            Store::Redis(backend) => {
                self.save_id(backend.as_ref(), session, secure, presented)
                    .await
            }
        }
    }

    /// Server-side stores: the session goes to `backend`, its sealed id to the cookie.
    async fn save_id(
        &self,
        backend: &impl Backend,
        session: &Session,
        secure: bool,
        presented: &HeaderMap,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        backend.put(session, self.remaining_life(session)).await?;
        let sealed = self.codec.seal(Purpose::SessionId, session.id.as_bytes());
        self.write_cookies(&sealed, secure, presented)
    }

    /// How long a server-side store should keep `session`: until its inactivity or maximum
    /// duration ends, whichever is first (at least a second).
    fn remaining_life(&self, s: &Session) -> Duration {
        let ends = s
            .last_seen
            .saturating_add(self.inactivity)
            .min(s.created_at.saturating_add(self.max_duration));
        let left = ends.saturating_sub(self.clock.now()).max(1);
        Duration::from_secs(u64::try_from(left).unwrap_or(1))
    }

    fn write_cookies(
        &self,
        sealed: &str,
        secure: bool,
        presented: &HeaderMap,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let p = Presented::scan(presented, &self.names);
        let set = |name: &str, value: &str| {
            self.attrs
                .set(name, value, secure)
                .ok_or(SessionError::Header)
        };
        let mut out = Vec::new();
        if sealed.len() <= CHUNK_SIZE {
            out.push(set(self.names.session(), sealed)?);
            self.expire_chunked(&p, secure, &mut out);
            return Ok(out);
        }
        let n = sealed.len().div_ceil(CHUNK_SIZE);
        if n > MAX_CHUNKS {
            return Err(SessionError::TooLarge {
                sealed_len: sealed.len(),
            });
        }
        out.reserve(n + 2);
        for (i, chunk) in cookies::chunks(sealed).enumerate() {
            out.push(set(&self.names.chunk(i), chunk)?);
        }
        out.push(set(self.names.count(), &n.to_string())?);
        if p.plain.is_some() {
            out.extend(self.attrs.expire(self.names.session(), secure));
        }
        // Chunks beyond the new count (the previous session was bigger).
        for i in n..MAX_CHUNKS {
            if p.chunks[i].is_some() {
                out.extend(self.attrs.expire(&self.names.chunk(i), secure));
            }
        }
        Ok(out)
    }

    /// Expires the chunk count and every chunk cookie the request presented.
    fn expire_chunked(&self, p: &Presented<'_>, secure: bool, out: &mut Vec<HeaderValue>) {
        if p.count.is_some() {
            out.extend(self.attrs.expire(self.names.count(), secure));
        }
        for (i, chunk) in p.chunks.iter().enumerate() {
            if chunk.is_some() {
                out.extend(self.attrs.expire(&self.names.chunk(i), secure));
            }
        }
    }

    /// Ends `session`: forgets it server-side (in Redis, for every replica), refuses its id
    /// here from now on (also a replayed cookie-store cookie), and returns `Set-Cookie`
    /// values that clear the request's session cookies.
    pub async fn end(
        &self,
        session: &Session,
        secure: bool,
        presented: &HeaderMap,
    ) -> Vec<HeaderValue> {
        self.logouts.record(LogoutEvent::End {
            id: session.id.clone(),
            at: self.clock.now_ms(),
        });
        match &self.store {
            Store::Cookie { .. } => {}
            Store::Memory(backend) => backend.remove(&session.id).await,
            Store::Redis(backend) => backend.remove(&session.id).await,
        }
        self.clear_cookies(presented, secure)
    }

    /// `Set-Cookie` values that expire every session cookie (plain, count, chunks) the
    /// request presented. State cookies are left to the login flow.
    pub(crate) fn clear_cookies(&self, presented: &HeaderMap, secure: bool) -> Vec<HeaderValue> {
        let p = Presented::scan(presented, &self.names);
        let mut out = Vec::new();
        if p.plain.is_some() {
            out.extend(self.attrs.expire(self.names.session(), secure));
        }
        self.expire_chunked(&p, secure, &mut out);
        out
    }

    #[cfg(test)]
    pub(crate) fn is_ended(&self, session_id: &str) -> bool {
        self.logouts.is_ended(session_id)
    }

    /// Refuses, from now on, every session of `iss` with OP session id `sid` created up to
    /// now (back-channel logout), on every replica.
    pub(crate) fn end_by_sid(&self, iss: &str, sid: &str) {
        self.logouts.record(LogoutEvent::Sid {
            iss: iss.to_owned(),
            sid: sid.to_owned(),
            at: self.clock.now_ms(),
        });
    }

    /// Refuses, from now on, every session of `iss` for subject `sub` created up to now
    /// (back-channel logout without `sid`), on every replica.
    pub(crate) fn end_by_sub(&self, iss: &str, sub: &str) {
        self.logouts.record(LogoutEvent::Sub {
            iss: iss.to_owned(),
            sub: sub.to_owned(),
            at: self.clock.now_ms(),
        });
    }

    /// Records a back-channel logout token's `jti`; true when this replica saw it before
    /// (a replay; `replicas` also asks Redis).
    pub(crate) fn seen_logout_jti(&self, jti: &str) -> bool {
        self.logouts.seen_jti(jti)
    }

    /// Re-saves `session` with `last_seen = now` (the inactivity timer) and returns the
    /// `Set-Cookie` values, or none when saving failed (logged; the session still serves
    /// this request). The result stays with the presented session for `touch_after`: a
    /// client that keeps sending this older cookie (parallel requests, or a client that
    /// ignores Set-Cookie) gets the same new cookie instead of a re-seal per request.
    pub(crate) async fn touch(
        &self,
        session: &ActiveSession,
        secure: bool,
        presented: &HeaderMap,
    ) -> Vec<HeaderValue> {
        let now = self.clock.now();
        if let Some(done) = session.touched() {
            if done.secure == secure && now.saturating_sub(done.at) < self.touch_after {
                return done.cookies.to_vec();
            }
        }
        let mut touched = session.session().clone();
        touched.last_seen = now;
        match self.save(&touched, secure, presented).await {
            Ok(cookies) => {
                session.set_touched(Touched {
                    at: now,
                    secure,
                    cookies: cookies.as_slice().into(),
                });
                cookies
            }
            Err(e) => {
                tracing::warn!(error = %e, "session could not be re-saved");
                Vec::new()
            }
        }
    }

    /// Whether the inactivity timer should be refreshed by re-saving with `last_seen = now`.
    /// Only every tenth of `inactivity_timeout` (at least 1 s), so most requests re-seal
    /// nothing.
    pub(crate) fn needs_touch(&self, session: &Session) -> bool {
        self.clock.now().saturating_sub(session.last_seen) >= self.touch_after
    }

    /// Whether a request cookie name belongs to the gateway (session, its chunks and count,
    /// or a state cookie), so it is not forwarded upstream.
    #[cfg(test)]
    pub(crate) fn is_gateway_cookie(&self, name: &str) -> bool {
        self.names.is_ours(name.as_bytes())
    }

    /// Removes the gateway's cookies from the request's `Cookie` header(s), merging what is
    /// left into one header or removing it when nothing is.
    pub fn strip_gateway_cookies(&self, headers: &mut HeaderMap) {
        cookies::strip(headers, &self.names);
    }
}

fn remember(
    decoded: &Cache<DecodedKey, Arc<Decoded>>,
    sealed: String,
    session: Arc<ActiveSession>,
) {
    let key = decoded_key(&sealed);
    let sealed = sealed.into_boxed_str();
    decoded.insert(key, Arc::new(Decoded { sealed, session }));
}
