//! The link to the Redis the replicas share (`[redis]`): one multiplexed connection,
//! opened lazily and again after any failure, straight to `url` or to the master the
//! sentinels name (asked again on every reconnect, so a failover is followed), over TLS
//! for `rediss://`. Every call is bounded by `redis.timeout`; a Redis that is down costs a
//! request no waiting (calls fail at once for a second after a failed attempt) and never
//! stops the gateway. Pub/sub gets its own connection ([`RedisLink::subscribe`]).
//!
//! Callers get a [`Failure`] and decide what it means (a missing session, a local-only
//! logout, an in-process refresh); this module only counts and logs failures and reports
//! the link's health for `/readyz` and `/metrics`.

mod connect;

use crate::config::RedisConfig;
use crate::telemetry;
use connect::Source;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisError};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::{timeout, timeout_at, Instant};

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
    /// The last failure's cause, until a call succeeds: what `/readyz` shows.
    degraded: Option<String>,
}

/// Why a call did not get an answer. Never holds a key or a value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("unreachable ({0}); the next attempt is at most a second away")]
    Unreachable(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Redis(#[from] RedisError),
}

/// What `/readyz` says about Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not used yet.
    Unknown,
    Up,
    /// The last call failed, with this cause.
    Degraded(String),
}

/// Whether a failed call is better served by a fresh connection: a broken socket, a
/// timeout, or a server that is no longer (or not yet) a usable master. A refusal such as
/// NOPERM or OOM is not: a new connection would meet it again.
fn needs_new_connection(failure: &Failure) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    match failure {
        Failure::Unreachable(_) | Failure::Timeout(_) => true,
        Failure::Redis(e) => {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_unrecoverable_error()
                || matches!(
                    e.kind(),
                    ErrorKind::Server(
                        ServerErrorKind::ReadOnly
                            | ServerErrorKind::BusyLoading
                            | ServerErrorKind::MasterDown
                    )
                )
        }
    }
}

/// The command's name for its span (`SET`, `PUBLISH`): the first argument when it is a
/// plain word, so that nothing else (a key, a value) can get there.
fn command_name(cmd: &Cmd) -> &str {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name))
            if !name.is_empty() && name.len() <= 32 && name.iter().all(u8::is_ascii_alphabetic) =>
        {
            std::str::from_utf8(name).unwrap_or("?")
        }
        _ => "?",
    }
}

/// What `/readyz` and `/metrics` report about Redis.
pub struct RedisStatus {
    pub health: Health,
    /// Whether the replicas' subscription is up.
    pub subscribed: bool,
    pub errors: u64,
}

/// The shared Redis: see the module docs.
pub struct RedisLink {
    source: Source,
    connect: AsyncConnectionConfig,
    prefix: String,
    timeout: Duration,
    /// Where Redis is, for logs (no credentials).
    target: String,
    state: Mutex<State>,
    /// Held while connecting, so concurrent calls wait for one attempt instead of each
    /// opening a connection.
    connecting: tokio::sync::Mutex<()>,
    errors: AtomicU64,
    /// The epoch second of the last warning [`RedisLink::warn`] logged.
    last_warning: AtomicU64,
    /// Mirrors `state.degraded.is_some()`, so a successful call on the per-request path
    /// (the redis store) takes no lock.
    degraded: AtomicBool,
    /// Bumped when the sentinels announce a new master: subscriptions on the old one
    /// must be made again.
    failovers: tokio::sync::watch::Sender<u64>,
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLink")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Prepares the client; nothing is connected until the first call.
    pub fn new(cfg: &RedisConfig) -> RedisLink {
        let connect = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout));
        RedisLink {
            source: Source::new(cfg),
            connect,
            prefix: cfg.prefix.clone(),
            timeout: cfg.timeout,
            target: cfg.describe(),
            state: Mutex::new(State {
                link: Link::Idle,
                generations: 0,
                degraded: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
            errors: AtomicU64::new(0),
            last_warning: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            failovers: tokio::sync::watch::Sender::new(0),
        }
    }

    /// `prefix` + `name`: every key and channel the gateway uses.
    pub(crate) fn key(&self, name: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + name.len());
        key.push_str(&self.prefix);
        key.push_str(name);
        key
    }

    /// The bound on every call (`redis.timeout`).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Where Redis is, for logs.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Calls that failed since start (`oidc_gateway_redis_errors_total`).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> Health {
        let state = self.state();
        match (&state.degraded, &state.link) {
            (Some(cause), _) => Health::Degraded(cause.clone()),
            (None, Link::Up { .. }) => Health::Up,
            (None, _) => Health::Unknown,
        }
    }

    /// Whether the last call (or subscription) failed and none has succeeded since.
    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
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
        match self.source.connect(&self.connect).await {
            Ok(conn) => {
                let mut state = self.state();
                state.generations += 1;
                let generation = state.generations;
                state.link = Link::Up {
                    conn: conn.clone(),
                    generation,
                };
                drop(state);
                tracing::info!(redis = %self.target, "redis connected");
                Ok((conn, generation))
            }
            Err(e) => {
                let cause = e.to_string();
                tracing::warn!(redis = %self.target, error = %cause, "redis unreachable");
                self.mark_down(cause.clone());
                Err(Failure::Unreachable(cause))
            }
        }
    }

    fn set_degraded(&self, state: &mut State, cause: String) {
        state.degraded = Some(cause);
        self.degraded.store(true, Ordering::Relaxed);
    }

    fn mark_down(&self, cause: String) {
        let mut state = self.state();
        self.set_degraded(&mut state, cause.clone());
        if !matches!(state.link, Link::Up { .. }) {
            state.link = Link::Down {
                at: Instant::now(),
                cause,
            };
        }
    }

    /// Drops connection `generation` after it failed, so the next call reconnects (and,
    /// with Sentinel, asks again who the master is).
    fn forget(&self, generation: u64, cause: String) {
        let mut state = self.state();
        self.set_degraded(&mut state, cause);
        if matches!(state.link, Link::Up { generation: g, .. } if g == generation) {
            state.link = Link::Idle;
        }
    }

    fn succeeded(&self) {
        if !self.degraded.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state();
        if state.degraded.is_some() {
            state.degraded = None;
            self.degraded.store(false, Ordering::Relaxed);
            drop(state);
            tracing::info!(redis = %self.target, "redis answers again");
        }
    }

    /// Runs `cmd`, connecting first if needed, all within `redis.timeout`.
    pub(crate) async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Failure> {
        let span = telemetry::redis_span(|| command_name(cmd));
        let result = self
            .call(|mut conn| async move { cmd.query_async::<T>(&mut conn).await })
            .await;
        telemetry::redis_outcome(&span, result.is_ok());
        result
    }

    /// Runs `pipe` (one round trip), like [`RedisLink::run`].
    pub(crate) async fn run_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, Failure> {
        let names = || {
            pipe.cmd_iter()
                .map(command_name)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let span = telemetry::redis_span(names);
        let result = self
            .call(|mut conn| async move { pipe.query_async::<T>(&mut conn).await })
            .await;
        telemetry::redis_outcome(&span, result.is_ok());
        result
    }

    async fn call<T, F, Fut>(&self, query: F) -> Result<T, Failure>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let deadline = Instant::now() + self.timeout;
        let (conn, generation) = match timeout_at(deadline, self.connection()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.mark_down(format!("no connection within {:?}", self.timeout));
                return Err(Failure::Timeout(self.timeout));
            }
        };
        let failure = match timeout_at(deadline, query(conn)).await {
            Ok(Ok(value)) => {
                self.succeeded();
                return Ok(value);
            }
            Ok(Err(e)) => Failure::Redis(e),
            Err(_) => Failure::Timeout(self.timeout),
        };
        self.errors.fetch_add(1, Ordering::Relaxed);
        if needs_new_connection(&failure) {
            self.forget(generation, failure.to_string());
        } else {
            let mut state = self.state();
            self.set_degraded(&mut state, failure.to_string());
        }
        Err(failure)
    }

    /// Logs a failed call: `command` failed, so `consequence`. An unreachable Redis was
    /// already logged when the attempt failed (once a second is enough).
    pub(crate) fn warn(&self, command: &str, failure: &Failure, consequence: &str) {
        // A frozen Redis fails every call with a timeout: one warning a second is enough.
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let first_this_second = self.last_warning.swap(second, Ordering::Relaxed) != second;
        match failure {
            _ if !first_this_second => {
                tracing::debug!(redis = %self.target, error = %failure, "{command}: {consequence}")
            }
            Failure::Unreachable(_) => {
                tracing::debug!(redis = %self.target, error = %failure, "{command}: {consequence}")
            }
            _ => tracing::warn!(redis = %self.target, error = %failure, "{command}: {consequence}"),
        }
    }

    /// With Sentinel, runs forever: follows the sentinels' `+switch-master` announcements
    /// and drops the connection to the old master at once (writes there would be lost when
    /// it is demoted), so the next call asks for the new one. Returns at once otherwise.
    pub(crate) async fn follow_failovers(&self) {
        loop {
            // Bounded: asking holds the sentinel client that connections also need.
            let asked = tokio::time::timeout(self.timeout, self.source.failover_notices()).await;
            let asked = asked.unwrap_or_else(|_| {
                Some(Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no sentinel answered in time",
                ))))
            });
            let (pubsub, master_name) = match asked {
                None => return,
                Some(Ok(subscribed)) => subscribed,
                Some(Err(e)) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(redis = %self.target, error = %e, "sentinels unreachable; failovers are noticed by failed calls until they are back");
                    tokio::time::sleep(RECONNECT_AFTER).await;
                    continue;
                }
            };
            let mut notices = pubsub.into_on_message();
            while let Some(notice) = futures_util::StreamExt::next(&mut notices).await {
                // "<master-name> <old-ip> <old-port> <new-ip> <new-port>"
                let text = String::from_utf8_lossy(notice.get_payload_bytes()).into_owned();
                let mut parts = text.split(' ');
                if parts.next() != Some(master_name.as_str()) {
                    continue;
                }
                let new = parts.skip(2).collect::<Vec<_>>().join(":");
                tracing::warn!(redis = %self.target, new_master = %new, "redis master failed over; reconnecting");
                let mut state = self.state();
                state.link = Link::Idle;
                drop(state);
                self.failovers.send_modify(|n| *n += 1);
            }
            tokio::time::sleep(RECONNECT_AFTER / 4).await;
        }
    }

    /// A receiver that changes on every failover the sentinels announce.
    pub(crate) fn failovers(&self) -> tokio::sync::watch::Receiver<u64> {
        self.failovers.subscribe()
    }

    /// Records that a subscription dropped (Redis went away, or a failover closed it).
    pub(crate) fn subscription_lost(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        self.set_degraded(&mut state, "the subscription was closed".into());
    }

    /// A pub/sub connection subscribed to `channel` (its own connection: a subscribed
    /// connection can do nothing else). Bounded by `redis.timeout`.
    pub(crate) async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, Failure> {
        let attempt = async {
            let mut pubsub = self.source.pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        match timeout(self.timeout, attempt).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            // Only reported: the commands' connection is another one, and keeps its state.
            Ok(Err(e)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut state = self.state();
                self.set_degraded(&mut state, e.to_string());
                Err(Failure::Redis(e))
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut state = self.state();
                self.set_degraded(
                    &mut state,
                    format!("no subscription within {:?}", self.timeout),
                );
                Err(Failure::Timeout(self.timeout))
            }
        }
    }
}
