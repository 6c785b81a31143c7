//! Refresh grants made once across replicas.
//!
//! For a flight key (the SHA-256 the in-process flights use, of the cookie's refresh and
//! access tokens):
//! - `<prefix>grant:<hex>`: the outcome, sealed with the session keys (tokens never in
//!   clear in Redis), kept 30 s (a failure 5 s), then published as a `G` notice;
//! - `<prefix>grant_lock:<hex>`: `SET NX PX` by the replica that makes the grant, with a
//!   TTL just above the provider's timeout, so a holder that dies frees it; deleted (if
//!   still its own) once the outcome is stored.
//!
//! The other replicas wait for the outcome (woken by the notice, re-reading every
//! [`POLL`] in case it was missed) at most [`WAIT`]. Redis unreachable: the grant runs
//! here (in-process single-flight still holds per replica).

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

/// How long a request waits for another replica's grant.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
/// How often a waiter re-reads the outcome (a notice may be lost with a dropped
/// subscription).
const POLL: Duration = Duration::from_millis(250);

/// A grant's outcome as stored (sealed) in Redis.
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

impl Replicas {
    /// The outcome of the grant for flight `key`: made here by `grant`, or by whichever
    /// replica took the lock first. Called inside the in-process flight, so one request
    /// per replica gets here.
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
            Ok(Some(outcome)) => return outcome,
            Ok(None) => {}
            Err(()) => return grant.as_mut().await,
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let owner = random_id();
            match shared.lock(&names, &owner, lock_ttl).await {
                Err(()) => return grant.as_mut().await,
                Ok(true) => {
                    // The outcome is stored before a lock is released: a holder that
                    // finished between our read and our lock has left it.
                    if let Ok(Some(outcome)) = shared.stored(&names).await {
                        shared.release(&names, &owner).await;
                        return outcome;
                    }
                    let outcome = grant.as_mut().await;
                    shared.store(&names, &owner, key, &outcome).await;
                    return outcome;
                }
                Ok(false) => {}
            }
            // Another replica is making it: wait for its outcome.
            loop {
                let poll = Instant::now() + POLL;
                tokio::select! {
                    notice = notices.recv() => match notice {
                        Ok(k) if k != *key => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => sleep_until(poll).await,
                    },
                    () = sleep_until(poll) => {}
                }
                match shared.stored(&names).await {
                    Ok(Some(outcome)) => return outcome,
                    Ok(None) => {}
                    Err(()) => return grant.as_mut().await,
                }
                if Instant::now() >= deadline {
                    tracing::warn!("another replica's refresh did not finish in time");
                    return Err(Arc::new(GrantError::OtherReplica(format!(
                        "no outcome within {WAIT:?}"
                    ))));
                }
                if !shared.locked(&names).await {
                    // The holder died before storing an outcome: take over.
                    break;
                }
            }
        }
    }
}

struct Names {
    outcome: String,
    lock: String,
}

impl Names {
    fn new(shared: &Shared, key: &[u8; 32]) -> Names {
        let hex = hex(key);
        Names {
            outcome: shared.link.key(&format!("grant:{hex}")),
            lock: shared.link.key(&format!("grant_lock:{hex}")),
        }
    }
}

impl Shared {
    /// The stored outcome; `Err` when Redis did not answer.
    async fn stored(&self, names: &Names) -> Result<Option<Outcome>, ()> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(&names.outcome);
        let sealed: Option<String> = self.link.run(&cmd).await.map_err(|e| {
            self.link
                .warn("GET", &e, "refresh made on this replica without the others");
        })?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let opened = self
            .codec
            .open(Purpose::SharedGrant, &sealed)
            .map_err(|e| e.to_string())
            .and_then(|json| serde_json::from_slice::<Stored>(&json).map_err(|e| e.to_string()));
        match opened {
            Ok(stored) => Ok(Some(stored.into_outcome())),
            Err(e) => {
                // Another passphrase (a rotation in progress), or not ours.
                tracing::warn!(error = %e, "a shared refresh outcome did not open; refreshing here");
                Err(())
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

    /// Stores the outcome, frees the lock if still ours, and wakes the waiters.
    async fn store(&self, names: &Names, owner: &str, key: &[u8; 32], outcome: &Outcome) {
        let json = serde_json::to_vec(&Stored::of(outcome)).expect("an outcome serializes");
        let sealed = self.codec.seal(Purpose::SharedGrant, &json);
        let ttl = if outcome.is_ok() {
            RESULT_TTL
        } else {
            FAILURE_TTL
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&names.outcome)
            .arg(sealed)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .ignore();
        pipe.cmd("EVAL")
            .arg(RELEASE_LOCK)
            .arg(1)
            .arg(&names.lock)
            .arg(owner)
            .ignore();
        pipe.add_command(self.publish_cmd(NOTICE_GRANT, hex(key).as_bytes()))
            .ignore();
        if let Err(e) = self.link.run_pipe::<()>(&pipe).await {
            self.link.warn(
                "SET",
                &e,
                "the refresh outcome was not shared; other replicas wait for it or time out",
            );
        }
    }
}

/// Deletes the lock only if it still holds our token (it may have expired and been taken).
const RELEASE_LOCK: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
