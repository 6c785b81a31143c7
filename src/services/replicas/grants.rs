//! Refresh grants made once across replicas.
//!
//! For a flight key (the SHA-256 the in-process flights use, of the cookie's refresh and
//! access tokens):
//! - `<prefix>grant:<hex>`: the outcome, sealed with the session keys (tokens never in
//!   clear in Redis), kept 30 s (a failure 5 s), then published as a `G` notice;
//! - `<prefix>grant_lock:<hex>`: `SET NX PX` by the replica that makes the grant. Its TTL
//!   ([`lock_ttl`]) outlasts the longest grant (discovery, token endpoint and a JWKS
//!   refetch, each bounded by the provider's timeout), and the holder gives up its grant
//!   before the TTL ends, so a lock never expires under a live grant; a holder that dies
//!   frees it by the TTL. The outcome is stored, the lock deleted and the notice published
//!   by one script, and only while the lock is still the holder's.
//!
//! The other replicas wait for the outcome (woken by the notice, re-reading every
//! [`POLL`] in case it was missed) at most the lock's TTL, then take over if the lock is
//! gone. An outcome that does not open (another passphrase) fails the refresh rather than
//! granting again with a refresh token that was already used. Redis unreachable before
//! the lock: the grant runs here (the in-process single flight still holds per replica);
//! unreachable while waiting: the waiter keeps waiting (another replica holds the lock).

use super::{hex, Replicas, Shared, NOTICE_GRANT};
use crate::error::GrantError;
use crate::provider::{TokenGrant, VerifiedIdToken};
use crate::secret::{random_id, Secret};
use crate::services::flights::{Outcome, FAILURE_TTL, RESULT_TTL};
use crate::session::Purpose;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{sleep_until, Instant};

/// How often a waiter re-reads the outcome (a notice may be lost with a dropped
/// subscription).
const POLL: Duration = Duration::from_millis(250);

/// The grant lock's TTL for a provider timeout: three provider calls in a row at most
/// (discovery, the token endpoint, a JWKS refetch for a new key), plus a margin.
pub(crate) fn lock_ttl(provider_timeout: Duration) -> Duration {
    provider_timeout * 3 + Duration::from_secs(2)
}

/// A grant's outcome as stored (sealed) in Redis.
#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The flight key (hex) this outcome is for: a sealed value copied to another key in
    /// Redis does not open as that key's outcome.
    key: String,
    outcome: Stored,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "lowercase")]
enum Stored {
    Ok {
        access_token: Secret,
        expires_at: Option<i64>,
        refresh_token: Option<Secret>,
        id_token: Option<(String, Map<String, Value>)>,
    },
    Err {
        error: String,
    },
}

impl Stored {
    fn of(outcome: &Outcome) -> Stored {
        match outcome {
            Ok(grant) => Stored::Ok {
                access_token: grant.access_token.clone(),
                expires_at: grant.expires_at,
                refresh_token: grant.refresh_token.clone(),
                id_token: grant
                    .id_token
                    .as_ref()
                    .map(|t| (t.raw.clone(), t.claims.clone())),
            },
            Err(e) => Stored::Err {
                error: e.to_string(),
            },
        }
    }

    fn into_outcome(self) -> Outcome {
        match self {
            Stored::Ok {
                access_token,
                expires_at,
                refresh_token,
                id_token,
            } => Ok(Arc::new(TokenGrant {
                access_token,
                expires_at,
                refresh_token,
                id_token: id_token.map(|(raw, claims)| VerifiedIdToken { raw, claims }),
            })),
            Stored::Err { error } => Err(Arc::new(GrantError::OtherReplica(error))),
        }
    }
}

/// What a read of the stored outcome found.
enum Read {
    Found(Outcome),
    Absent,
    /// A value that does not open here (another passphrase, or not for this key).
    Unreadable,
    /// Redis did not answer.
    Down,
}

fn unreadable() -> Outcome {
    Err(Arc::new(GrantError::OtherReplica(
        "its outcome does not open here (another passphrase?)".into(),
    )))
}

impl Replicas {
    /// The outcome of the grant for flight `key`: made here by `grant`, or by whichever
    /// replica took the lock first. Called inside the in-process flight, so one request
    /// per replica gets here. `lock_ttl` is [`lock_ttl`] of the provider's timeout.
    pub(crate) async fn shared_grant(
        &self,
        key: &[u8; 32],
        lock_ttl: Duration,
        grant: impl Future<Output = Outcome>,
    ) -> Outcome {
        let mut grant = std::pin::pin!(grant);
        let Some(shared) = &self.shared else {
            return grant.await;
        };
        let names = Names::new(shared, key);
        // Subscribed before the first read, so a notice right after it is not missed.
        let mut notices = shared.grants.subscribe();
        match shared.stored(&names).await {
            Read::Found(outcome) => return outcome,
            Read::Unreadable => return unreadable(),
            Read::Down => return grant.as_mut().await,
            Read::Absent => {}
        }
        loop {
            let owner = random_id();
            match shared.lock(&names, &owner, lock_ttl).await {
                Err(()) => return grant.as_mut().await,
                Ok(true) => {
                    // The outcome is stored before a lock is released: a holder that
                    // finished between our read and our lock has left it.
                    match shared.stored(&names).await {
                        Read::Found(outcome) => {
                            shared.release(&names, &owner).await;
                            return outcome;
                        }
                        Read::Unreadable => {
                            shared.release(&names, &owner).await;
                            return unreadable();
                        }
                        Read::Absent | Read::Down => {}
                    }
                    // Given up before the lock can expire under it (a second grant with
                    // the same refresh token would be refused, logging the user out).
                    let bound = lock_ttl.saturating_sub(Duration::from_secs(1));
                    let outcome = match tokio::time::timeout(bound, grant.as_mut()).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(Arc::new(GrantError::OtherReplica(format!(
                            "the grant took longer than {bound:?}"
                        )))),
                    };
                    shared.store(&names, &owner, key, &outcome).await;
                    return outcome;
                }
                Ok(false) => {}
            }
            // Another replica is making it: wait for its outcome, at most as long as its
            // lock can live.
            let deadline = Instant::now() + lock_ttl;
            match tokio::time::timeout_at(deadline, shared.wait(&names, key, &mut notices)).await {
                Ok(Some(outcome)) => return outcome,
                // The holder died before storing an outcome: take over.
                Ok(None) => continue,
                Err(_) => {
                    tracing::warn!("another replica's refresh did not finish in time");
                    return Err(Arc::new(GrantError::OtherReplica(format!(
                        "no outcome within {lock_ttl:?}"
                    ))));
                }
            }
        }
    }
}

struct Names {
    hex: String,
    outcome: String,
    lock: String,
}

impl Names {
    fn new(shared: &Shared, key: &[u8; 32]) -> Names {
        let hex = hex(key);
        Names {
            outcome: shared.link.key(&format!("grant:{hex}")),
            lock: shared.link.key(&format!("grant_lock:{hex}")),
            hex,
        }
    }
}

impl Shared {
    /// The stored outcome.
    async fn stored(&self, names: &Names) -> Read {
        let mut cmd = redis::cmd("GET");
        cmd.arg(&names.outcome);
        let sealed: Option<String> = match self.link.run(&cmd).await {
            Ok(sealed) => sealed,
            Err(e) => {
                self.link
                    .warn("GET", &e, "the shared refresh outcome was not read");
                return Read::Down;
            }
        };
        let Some(sealed) = sealed else {
            return Read::Absent;
        };
        let opened = self
            .settings
            .load()
            .codec
            .open(Purpose::SharedGrant, &sealed)
            .ok()
            .and_then(|json| serde_json::from_slice::<Sealed>(&json).ok())
            .filter(|s| s.key == names.hex);
        match opened {
            Some(sealed) => Read::Found(sealed.outcome.into_outcome()),
            None => {
                tracing::warn!("a shared refresh outcome did not open (another passphrase, or not for this key)");
                Read::Unreadable
            }
        }
    }

    /// Waits for the outcome: `Some` when stored, `None` when the lock is gone without
    /// one (its holder died). The caller bounds the wait.
    async fn wait(
        &self,
        names: &Names,
        key: &[u8; 32],
        notices: &mut tokio::sync::broadcast::Receiver<[u8; 32]>,
    ) -> Option<Outcome> {
        loop {
            let poll = sleep_until(Instant::now() + POLL);
            tokio::pin!(poll);
            // Until this key's notice or the poll time, whichever is first; notices for
            // other keys do not delay the poll.
            loop {
                tokio::select! {
                    notice = notices.recv() => match notice {
                        Ok(k) if k != *key => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => {
                            (&mut poll).await;
                            break;
                        }
                    },
                    () = &mut poll => break,
                }
            }
            match self.stored(names).await {
                Read::Found(outcome) => return Some(outcome),
                Read::Unreadable => return Some(unreadable()),
                // Redis down: the lock is still someone's; keep waiting.
                Read::Down => continue,
                Read::Absent => {}
            }
            if !self.locked(names).await {
                return None;
            }
        }
    }

    /// Takes the lock; `Ok(false)` when another replica holds it.
    async fn lock(&self, names: &Names, owner: &str, ttl: Duration) -> Result<bool, ()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&names.lock)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        match self.link.run::<Option<String>>(&cmd).await {
            Ok(set) => Ok(set.is_some()),
            Err(e) => {
                self.link.warn(
                    "SET NX",
                    &e,
                    "refresh made on this replica without the others",
                );
                Err(())
            }
        }
    }

    async fn locked(&self, names: &Names) -> bool {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&names.lock);
        // Unknown counts as held: the waiter keeps waiting until its deadline.
        self.link.run::<i64>(&cmd).await.map_or(true, |n| n > 0)
    }

    /// Frees the lock if it is still ours.
    async fn release(&self, names: &Names, owner: &str) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE_LOCK).arg(1).arg(&names.lock).arg(owner);
        if let Err(e) = self.link.run::<i64>(&cmd).await {
            self.link
                .warn("EVAL", &e, "the refresh lock is freed by its TTL");
        }
    }

    /// Stores the outcome, frees the lock and wakes the waiters, all only if the lock is
    /// still ours (else another replica took over and its outcome counts).
    async fn store(&self, names: &Names, owner: &str, key: &[u8; 32], outcome: &Outcome) {
        let sealed = Sealed {
            key: names.hex.clone(),
            outcome: Stored::of(outcome),
        };
        let json = serde_json::to_vec(&sealed).expect("an outcome serializes");
        let sealed = self.settings.load().codec.seal(Purpose::SharedGrant, &json);
        let ttl = if outcome.is_ok() {
            RESULT_TTL
        } else {
            FAILURE_TTL
        };
        let mut notice = vec![NOTICE_GRANT];
        notice.extend_from_slice(hex(key).as_bytes());
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(STORE_OUTCOME)
            .arg(2)
            .arg(&names.lock)
            .arg(&names.outcome)
            .arg(owner)
            .arg(sealed)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(&self.channel)
            .arg(notice);
        match self.link.run::<i64>(&cmd).await {
            Ok(1) => {}
            Ok(_) => tracing::warn!(
                "the refresh lock expired before the grant finished; another replica's outcome counts"
            ),
            Err(e) => self.link.warn(
                "EVAL",
                &e,
                "the refresh outcome was not shared; other replicas wait for it or time out",
            ),
        }
    }
}

/// KEYS: lock, outcome. ARGV: owner, sealed outcome, TTL ms, channel, notice.
const STORE_OUTCOME: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) \
redis.call('DEL', KEYS[1]) \
redis.call('PUBLISH', ARGV[4], ARGV[5]) \
return 1";

/// Deletes the lock only if it still holds our token (it may have expired and been taken).
const RELEASE_LOCK: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
