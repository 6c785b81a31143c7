//! Redis session store: each session sealed under `prefix + id` with a TTL, shared by every
//! gateway replica that points at the same Redis, so a logout on one ends it on all.
//!
//! Values are sealed with the session codec ([`Purpose::StoredSession`]), not stored as
//! plain JSON: a shared Redis is read by backups, replicas, `MONITOR` and whoever else has
//! its password, and the session holds access and refresh tokens. Sealing also means that
//! write access to Redis is not enough to forge a session (claims, `sub`) for the gateway.
//!
//! Connecting is lazy and repeated as needed, so a Redis that is down at start-up or
//! restarts later never stops the gateway: while it is unreachable, `get` answers `None`
//! (the user logs in again) and `put` fails. Every call is bounded by `redis_timeout`.

use super::codec::{Codec, Purpose, MAX_PLAINTEXT_LEN};
use super::store::Backend;
use super::{ActiveSession, Session, SessionError};
use crate::config::RedisConfig;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, RedisError};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// After a failed connection attempt, calls fail at once for this long instead of each
/// trying again: a down Redis costs requests no waiting and gets one attempt per period.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

enum Link {
    /// Not connected: the next call connects.
    Idle,
    /// `generation` tells a failed connection from its replacement.
    Up {
        conn: MultiplexedConnection,
        generation: u64,
    },
    /// The last attempt failed at `at`; calls fail with `cause` until `RECONNECT_AFTER`.
    Down { at: Instant, cause: String },
}

struct State {
    link: Link,
    generations: u64,
}

/// Why a call did not get an answer. Never holds a key (session ids stay out of logs).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("unreachable ({0}); the next attempt is at most a second away")]
    Unreachable(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Redis(#[from] RedisError),
}

/// Sessions in Redis, shared by every gateway instance that uses the same server, prefix and
/// passphrases.
pub(crate) struct RedisBackend {
    client: Client,
    connect: AsyncConnectionConfig,
    prefix: String,
    timeout: Duration,
    /// The URL without credentials, for logs.
    target: String,
    codec: Arc<Codec>,
    state: Mutex<State>,
    /// Held while connecting, so concurrent calls wait for one attempt instead of each
    /// opening a connection.
    connecting: tokio::sync::Mutex<()>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Prepares the client; nothing is connected until the first call.
    ///
    /// # Panics
    /// If the URL does not parse as a Redis URL; config validation parses it the same way.
    pub fn new(cfg: &RedisConfig, codec: Arc<Codec>) -> RedisBackend {
        let client = Client::open(cfg.url.expose().clone())
            .expect("session.redis_url was validated as a redis URL");
        let connect = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout));
        RedisBackend {
            client,
            connect,
            prefix: cfg.prefix.clone(),
            timeout: cfg.timeout,
            target: cfg.url.redacted(),
            codec,
            state: Mutex::new(State {
                link: Link::Idle,
                generations: 0,
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section only swaps plain values: a poisoned lock holds a usable state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open connection; `Err` while a recent attempt failed; `None` when a new attempt
    /// is due.
    fn current(&self) -> Result<Option<(MultiplexedConnection, u64)>, Failure> {
        match &self.state().link {
            Link::Up { conn, generation } => Ok(Some((conn.clone(), *generation))),
            Link::Down { at, cause } if at.elapsed() < RECONNECT_AFTER => {
                Err(Failure::Unreachable(cause.clone()))
            }
            Link::Down { .. } | Link::Idle => Ok(None),
        }
    }

    async fn connection(&self) -> Result<(MultiplexedConnection, u64), Failure> {
        if let Some(up) = self.current()? {
            return Ok(up);
        }
        let _one_attempt = self.connecting.lock().await;
        // Whoever held the lock before us may have just connected, or just failed.
        if let Some(up) = self.current()? {
            return Ok(up);
        }
        match self
            .client
            .get_multiplexed_async_connection_with_config(&self.connect)
            .await
        {
            Ok(conn) => {
                let mut state = self.state();
                state.generations += 1;
                let generation = state.generations;
                state.link = Link::Up {
                    conn: conn.clone(),
                    generation,
                };
                drop(state);
                tracing::info!(redis = %self.target, "session store connected");
                Ok((conn, generation))
            }
            Err(e) => {
                let cause = e.to_string();
                tracing::warn!(redis = %self.target, error = %cause, "session store unreachable");
                self.mark_down(cause.clone());
                Err(Failure::Unreachable(cause))
            }
        }
    }

    fn mark_down(&self, cause: String) {
        let mut state = self.state();
        if !matches!(state.link, Link::Up { .. }) {
            state.link = Link::Down {
                at: Instant::now(),
                cause,
            };
        }
    }

    /// Drops connection `generation` after it failed, so the next call reconnects. Any
    /// error counts: a broken socket, a timeout, or a server that turned read-only (a
    /// failover) are all better served by a fresh connection.
    fn forget(&self, generation: u64) {
        let mut state = self.state();
        if matches!(state.link, Link::Up { generation: g, .. } if g == generation) {
            state.link = Link::Idle;
        }
    }

    /// Runs `cmd`, connecting first if needed, all within `timeout`.
    async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Failure> {
        let deadline = Instant::now() + self.timeout;
        let (mut conn, generation) = match timeout_at(deadline, self.connection()).await {
            Ok(conn) => conn?,
            Err(_) => {
                self.mark_down(format!("no connection within {:?}", self.timeout));
                return Err(Failure::Timeout(self.timeout));
            }
        };
        let result = match timeout_at(deadline, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => Failure::Redis(e),
            Err(_) => Failure::Timeout(self.timeout),
        };
        self.forget(generation);
        Err(result)
    }

    fn warn(&self, command: &str, failure: &Failure, consequence: &str) {
        match failure {
            // Already logged when the attempt failed; once a second is enough.
            Failure::Unreachable(_) => {
                tracing::debug!(redis = %self.target, error = %failure, "{command}: {consequence}")
            }
            _ => tracing::warn!(redis = %self.target, error = %failure, "{command}: {consequence}"),
        }
    }
}

impl Backend for RedisBackend {
    async fn get(&self, id: &str) -> Option<Arc<ActiveSession>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(id));
        // Bytes, not String: no conversion error can be mistaken for a broken connection.
        let sealed: Vec<u8> = match self.run::<Option<Vec<u8>>>(&cmd).await {
            Ok(value) => value?,
            Err(e) => {
                self.warn(
                    "GET",
                    &e,
                    "session store failed; treating the session as missing",
                );
                return None;
            }
        };
        let opened = std::str::from_utf8(&sealed)
            .map_err(|_| "not text".to_string())
            .and_then(|s| {
                self.codec
                    .open(Purpose::StoredSession, s)
                    .map_err(|e| e.to_string())
            })
            .and_then(|json| serde_json::from_slice::<Session>(&json).map_err(|e| e.to_string()));
        match opened {
            Ok(session) => Some(Arc::new(ActiveSession::new(session))),
            Err(e) => {
                // Another passphrase, or a value written by something else.
                tracing::warn!(redis = %self.target, error = %e, "a stored session did not open; treating it as missing");
                None
            }
        }
    }

    async fn put(&self, session: &Session, ttl: Duration) -> Result<(), SessionError> {
        let json = serde_json::to_vec(session)?;
        if json.len() > MAX_PLAINTEXT_LEN {
            return Err(SessionError::Store(format!(
                "session is {} bytes; the redis store keeps at most {MAX_PLAINTEXT_LEN}",
                json.len()
            )));
        }
        let sealed = self.codec.seal(Purpose::StoredSession, &json);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(&session.id))
            .arg(sealed)
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        self.run::<()>(&cmd)
            .await
            .map_err(|e| SessionError::Store(format!("redis at {}: SET: {e}", self.target)))
    }

    async fn remove(&self, id: &str) {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(id));
        if let Err(e) = self.run::<()>(&cmd).await {
            self.warn(
                "DEL",
                &e,
                "an ended session could not be removed; this instance refuses it, others \
                 accept it until it expires",
            );
        }
    }
}
