//! Bearer-token validation results across replicas.
//!
//! - `?remove_at_cache=` on any replica publishes a `T` notice with the token's SHA-256
//!   (never the token): every replica drops its entry.
//! - `oauth.shared_cache = true`: active results are also kept under
//!   `<prefix>token:<sha256>`, sealed with the session keys together with that hash (a
//!   value copied under another key does not open), for as long as the local entry
//!   would live, so N
//!   replicas make one introspection per token (concurrent first uses on several
//!   replicas may each make one).

use super::{from_hex, hex, Replicas, Shared, NOTICE_TOKEN_REMOVED};
use crate::services::token_cache::{Key, Validation};
use crate::session::Purpose;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::future::Future;
use std::time::Duration;

/// A validation result as stored (sealed) in Redis.
#[derive(Serialize, Deserialize)]
struct Stored {
    /// The token hash (hex) this result is for: a sealed value copied under another
    /// token's key does not open as that token's result.
    key: String,
    active: bool,
    claims: Map<String, Value>,
    exp: Option<i64>,
}

impl Replicas {
    /// `validate`'s result for the token with hash `key`, or the one another replica
    /// stored (with `oauth.shared_cache`). Errors are not shared.
    pub(crate) async fn shared_validation<E>(
        &self,
        key: &Key,
        validate: impl Future<Output = Result<Validation, E>>,
    ) -> Result<Validation, E> {
        let Some(shared) = self
            .shared
            .as_ref()
            .filter(|s| s.settings.load().shared_tokens)
        else {
            return validate.await;
        };
        let hex = hex(key);
        let name = shared.link.key(&format!("token:{hex}"));
        if let Some(found) = shared.stored_validation(&name, &hex).await {
            return Ok(found);
        }
        let validation = validate.await?;
        // Only active results: an anonymous client's made-up tokens must not fill Redis
        // (the local cache has its byte bound; Redis has none of ours).
        if validation.active && !validation.ttl.is_zero() {
            shared.store_validation(&name, &hex, &validation).await;
        }
        Ok(validation)
    }

    /// Drops the token with hashes `keys` (one per provider) on every other replica and
    /// from Redis: one removal of the budget, one round trip.
    pub(crate) async fn remove_token(&self, keys: &[Key]) -> Removal {
        let Some(shared) = &self.shared else {
            return Removal::Done { in_redis: false };
        };
        if !shared.removals.admit() {
            return Removal::Throttled;
        }
        let mut pipe = redis::pipe();
        let mut del = redis::cmd("DEL");
        for key in keys {
            del.arg(shared.link.key(&format!("token:{}", hex(key))));
        }
        pipe.add_command(del);
        for key in keys {
            pipe.add_command(shared.publish_cmd(NOTICE_TOKEN_REMOVED, hex(key).as_bytes()))
                .ignore();
        }
        match shared.link.run_pipe::<(i64,)>(&pipe).await {
            Ok((deleted,)) => Removal::Done {
                in_redis: deleted > 0,
            },
            Err(e) => {
                shared.link.warn(
                    "PUBLISH",
                    &e,
                    "the token was removed on this replica only; others keep it until it expires",
                );
                Removal::Done { in_redis: false }
            }
        }
    }
}

/// What [`Replicas::remove_token`] did.
pub(crate) enum Removal {
    /// Sent to the other replicas (when Redis answered); whether Redis held a shared
    /// result.
    Done { in_redis: bool },
    /// More removals than [`REMOVALS_PER_SECOND`] this second: nothing was sent.
    Throttled,
}

/// Removals one replica sends to Redis per second. `?remove_at_cache=` needs no
/// credential but the token, so an anonymous client could otherwise turn each of its
/// requests into a Redis round trip and a notice to every replica.
pub(crate) const REMOVALS_PER_SECOND: u32 = 200;

/// A fixed one-second window counter.
#[derive(Default)]
pub(super) struct RemovalBudget {
    window: std::sync::Mutex<(u64, u32)>,
}

impl RemovalBudget {
    fn admit(&self) -> bool {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.0 != second {
            *window = (second, 0);
        }
        window.1 += 1;
        window.1 <= REMOVALS_PER_SECOND
    }
}

impl Shared {
    async fn stored_validation(&self, name: &str, hex: &str) -> Option<Validation> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(name).cmd("PTTL").arg(name);
        let (sealed, pttl): (Option<String>, i64) = match self.link.run_pipe(&pipe).await {
            Ok(found) => found,
            Err(e) => {
                self.link.warn("GET", &e, "validating the token here");
                return None;
            }
        };
        let sealed = sealed.filter(|_| pttl > 0)?;
        let stored = self
            .settings
            .load()
            .codec
            .open(Purpose::SharedValidation, &sealed)
            .ok()
            .and_then(|json| serde_json::from_slice::<Stored>(&json).ok())
            .filter(|s| s.key == hex);
        let Some(stored) = stored else {
            tracing::warn!("a shared token validation did not open; validating the token here");
            return None;
        };
        Some(Validation {
            active: stored.active,
            claims: stored.claims,
            exp: stored.exp,
            ttl: Duration::from_millis(u64::try_from(pttl).unwrap_or(0)),
            headers: Default::default(),
        })
    }

    async fn store_validation(&self, name: &str, hex: &str, v: &Validation) {
        let json = serde_json::to_vec(&Stored {
            key: hex.to_string(),
            active: v.active,
            claims: v.claims.clone(),
            exp: v.exp,
        })
        .expect("a validation serializes");
        let sealed = self
            .settings
            .load()
            .codec
            .seal(Purpose::SharedValidation, &json);
        let mut cmd = redis::cmd("SET");
        cmd.arg(name)
            .arg(sealed)
            .arg("PX")
            .arg(u64::try_from(v.ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        if let Err(e) = self.link.run::<()>(&cmd).await {
            self.link
                .warn("SET", &e, "the validation is cached on this replica only");
        }
    }

    /// Another replica removed a token: drop it here.
    pub(super) async fn apply_token_removed(&self, body: &[u8]) {
        if let Some(key) = from_hex(body) {
            let tokens = self.settings.load().tokens.clone();
            tokens.invalidate_key(&key).await;
        }
    }
}
