//! What replicas share through Redis (`[redis]`), so that any number of them behind a load
//! balancer behave as one gateway:
//!
//! - `logouts`: every logout record (ended session ids, back-channel `sid`/`sub`) goes to a
//!   sorted set and is published; each replica keeps a local copy, so the per-request
//!   check stays in memory. Back-channel `jti`s are claimed with `SET NX`.
//! - `grants`: a refresh grant for one cookie is made once across replicas: a `SET NX PX`
//!   lock, the outcome sealed in Redis for 30 s, the others wait for it.
//! - `tokens`: `?remove_at_cache=` removes a token on every replica; with
//!   `oauth.shared_cache` validation results are kept in Redis too (sealed).
//!
//! One channel, `<prefix>events`, carries every notice; one background task per replica
//! ([`Replicas::start`]) holds the subscription, applies what others publish, writes the
//! logout outbox, and after every (re)subscription replays the outbox and reloads the
//! records it may have missed. Without `[redis]` every method is a no-op (or runs the
//! in-process path) and no task runs. Redis being down never fails a request here: each
//! caller falls back to what one process can do, within `redis.timeout`.

mod grants;
mod logouts;
mod tokens;

pub(crate) use grants::lock_ttl;
pub(crate) use tokens::Removal;

use super::TokenCache;
use crate::clock::Clock;
use crate::redis_link::{RedisLink, RedisStatus};
use crate::session::{Codec, LogoutRecords};
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Notices on the channel: the first byte says what follows.
const NOTICE_LOGOUT: u8 = b'L';
const NOTICE_TOKEN_REMOVED: u8 = b'T';
const NOTICE_GRANT: u8 = b'G';

/// Pause between subscription attempts while Redis is unreachable.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// How often the subscription must answer a PING.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Clones share the connection and the task (a config reload keeps them, see
/// [`Replicas::retarget`]).
#[derive(Clone)]
pub(crate) struct Replicas {
    shared: Option<Arc<Shared>>,
}

/// The state the background task and the request path share.
struct Shared {
    link: Arc<RedisLink>,
    logouts: Arc<LogoutRecords>,
    clock: Clock,
    /// What a config reload may change; one lock-free load per use.
    settings: ArcSwap<Settings>,
    /// Grant outcomes other replicas published (their flight keys), for local waiters.
    grants: broadcast::Sender<[u8; 32]>,
    /// Whether the subscription is up (for `/readyz`).
    subscribed: AtomicBool,
    /// Bounds the `?remove_at_cache=` notices this replica sends.
    removals: tokens::RemovalBudget,
    channel: String,
}

pub(crate) struct Parts {
    pub link: Arc<RedisLink>,
    pub logouts: Arc<LogoutRecords>,
    pub clock: Clock,
    pub settings: Settings,
}

/// The parts of the config generation the replicas use, replaced on reload.
pub(crate) struct Settings {
    /// Seals grant outcomes and validation results kept in Redis (the sessions' codec).
    pub codec: Arc<Codec>,
    /// The bearer-token validation cache that removals from other replicas apply to.
    pub tokens: TokenCache,
    /// How long logout records are kept (`session.max_duration`).
    pub record_ttl: Duration,
    /// Whether validation results are kept in Redis (`oauth.shared_cache`).
    pub shared_tokens: bool,
}

impl Replicas {
    /// One process on its own: nothing is shared.
    pub(crate) fn single() -> Replicas {
        Replicas { shared: None }
    }

    pub(crate) fn new(parts: Parts) -> Replicas {
        let channel = parts.link.key("events");
        Replicas {
            shared: Some(Arc::new(Shared {
                link: parts.link,
                logouts: parts.logouts,
                clock: parts.clock,
                settings: ArcSwap::from_pointee(parts.settings),
                grants: broadcast::channel(256).0,
                subscribed: AtomicBool::new(false),
                removals: Default::default(),
                channel,
            })),
        }
    }

    /// Starts the background task (subscription, outbox, resync). Call once, inside the
    /// runtime; a no-op without `[redis]`.
    pub(crate) fn start(&self) {
        if let Some(shared) = &self.shared {
            tokio::spawn(Arc::clone(shared).supervise());
            let link = Arc::clone(&shared.link);
            tokio::spawn(async move { link.follow_failovers().await });
        }
    }

    /// A reloaded config's codec, token cache and limits; the connection, the subscription
    /// and the logout records carry on.
    pub(crate) fn retarget(&self, settings: Settings) {
        if let Some(shared) = &self.shared {
            shared.settings.store(Arc::new(settings));
        }
    }

    /// `None` without `[redis]`.
    pub(crate) fn status(&self) -> Option<RedisStatus> {
        self.shared.as_ref().map(|s| RedisStatus {
            health: s.link.health(),
            subscribed: s.subscribed.load(Ordering::Relaxed),
            errors: s.link.errors(),
        })
    }
}

impl Shared {
    /// Runs [`Shared::run`] again if it ever panics: a dead task would leave this replica
    /// deaf to the others while `/readyz` says ok.
    async fn supervise(self: Arc<Self>) {
        loop {
            let outcome = tokio::spawn(Arc::clone(&self).run()).await;
            self.subscribed.store(false, Ordering::Relaxed);
            if let Err(e) = outcome {
                tracing::error!(error = %e, "the replicas' task failed; restarting it");
            }
            tokio::time::sleep(RESUBSCRIBE_AFTER).await;
        }
    }

    /// The background task: subscribe, catch up, then apply notices and write the outbox
    /// until the subscription drops or stops answering; again, forever.
    async fn run(self: Arc<Self>) {
        loop {
            // Before subscribing, so a failover during the subscription is not missed.
            let mut failovers = self.link.failovers();
            let pubsub = match self.link.subscribe(&self.channel).await {
                Ok(pubsub) => pubsub,
                Err(e) => {
                    self.link
                        .warn("SUBSCRIBE", &e, "logouts are shared again once it is back");
                    tokio::time::sleep(RESUBSCRIBE_AFTER).await;
                    continue;
                }
            };
            // Subscribed first, then caught up: nothing published in between is missed.
            self.flush_outbox().await;
            let mut caught_up = self.resync_logouts().await;
            self.subscribed.store(true, Ordering::Relaxed);
            tracing::info!(redis = %self.link.target(), "sharing logouts and refreshes with other replicas");
            let (mut sink, mut messages) = pubsub.split();
            let now = tokio::time::Instant::now();
            let mut retry = tokio::time::interval_at(now + RESUBSCRIBE_AFTER, RESUBSCRIBE_AFTER);
            let mut ping = tokio::time::interval_at(now + PING_EVERY, PING_EVERY);
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => self.on_notice(message.get_payload_bytes()).await,
                        None => break,
                    },
                    () = self.logouts.queued() => self.flush_outbox().await,
                    // Subscribed on the old master: notices now go to the new one.
                    _ = failovers.changed() => break,
                    // A partition, or a peer gone without a reset, leaves a subscription
                    // that never delivers again: ask it to answer.
                    _ = ping.tick() => {
                        // Any answer will do: a subscribed RESP2 connection answers
                        // PING with an array, not "PONG".
                        let answered = tokio::time::timeout(self.link.timeout(), sink.ping::<redis::Value>()).await;
                        if !matches!(answered, Ok(Ok(_))) {
                            break;
                        }
                    }
                    // The commands' connection may fail while the subscription holds (a
                    // restart seen first by one of them): retry what failed.
                    _ = retry.tick() => {
                        self.flush_outbox().await;
                        if !caught_up {
                            caught_up = self.resync_logouts().await;
                        }
                        // A replica that makes no calls of its own (cookie store, no
                        // logouts) would otherwise report degraded until its next one.
                        if self.link.is_degraded() {
                            let _ = self.link.run::<String>(&redis::cmd("PING")).await;
                        }
                    }
                }
            }
            self.subscribed.store(false, Ordering::Relaxed);
            self.link.subscription_lost();
            tracing::warn!(redis = %self.link.target(), "redis subscription lost; resubscribing");
            tokio::time::sleep(RESUBSCRIBE_AFTER / 4).await;
        }
    }

    async fn on_notice(&self, payload: &[u8]) {
        let Some((&kind, body)) = payload.split_first() else {
            return;
        };
        match kind {
            NOTICE_LOGOUT => self.apply_logout(body),
            NOTICE_TOKEN_REMOVED => self.apply_token_removed(body).await,
            NOTICE_GRANT => {
                if let Some(key) = from_hex(body) {
                    // No receiver is fine: nobody here waits for that grant.
                    let _ = self.grants.send(key);
                }
            }
            _ => tracing::debug!("unknown notice on the redis channel; ignored"),
        }
    }

    /// Publishes `notice` (kind byte + body); failures are the caller's to report.
    fn publish_cmd(&self, kind: u8, body: &[u8]) -> redis::Cmd {
        let mut payload = Vec::with_capacity(1 + body.len());
        payload.push(kind);
        payload.extend_from_slice(body);
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(payload);
        cmd
    }
}

fn hex(key: &[u8; 32]) -> String {
    use std::fmt::Write;
    key.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn from_hex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_hex() {
        let key = [0xabu8; 32];
        assert_eq!(from_hex(hex(&key).as_bytes()), Some(key));
        assert_eq!(from_hex(b"zz"), None);
        assert_eq!(from_hex(&[b'g'; 64]), None);
    }
}
