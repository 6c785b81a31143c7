//! Redis session store: each session sealed under `<prefix>session:<id>` with a TTL,
//! shared by every gateway replica that points at the same Redis, so a logout on one ends
//! it on all.
//!
//! Values are sealed with the session codec ([`Purpose::StoredSession`]), not stored as
//! plain JSON: a shared Redis is read by backups, replicas, `MONITOR` and whoever else has
//! its password, and the session holds access and refresh tokens. Sealing also means that
//! write access to Redis is not enough to forge a session (claims, `sub`) for the gateway.
//!
//! The connection is the shared [`RedisLink`]: while Redis is unreachable, `get` answers
//! `None` (the user logs in again) and `put` fails, each within `redis.timeout`.

use super::codec::{Codec, Purpose, MAX_PLAINTEXT_LEN};
use super::store::Backend;
use super::{ActiveSession, Session, SessionError};
use crate::redis_link::RedisLink;
use std::sync::Arc;
use std::time::Duration;

/// Sessions in Redis, shared by every gateway instance that uses the same server, prefix and
/// passphrases.
#[derive(Debug)]
pub(crate) struct RedisBackend {
    link: Arc<RedisLink>,
    codec: Arc<Codec>,
}

impl RedisBackend {
    pub fn new(link: Arc<RedisLink>, codec: Arc<Codec>) -> RedisBackend {
        RedisBackend { link, codec }
    }

    fn key(&self, id: &str) -> String {
        self.link.key(&format!("session:{id}"))
    }
}

impl Backend for RedisBackend {
    async fn get(&self, id: &str) -> Option<Arc<ActiveSession>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(id));
        // Bytes, not String: no conversion error can be mistaken for a broken connection.
        let sealed: Vec<u8> = match self.link.run::<Option<Vec<u8>>>(&cmd).await {
            Ok(value) => value?,
            Err(e) => {
                self.link.warn(
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
                tracing::warn!(redis = %self.link.target(), error = %e, "a stored session did not open; treating it as missing");
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
        self.link
            .run::<()>(&cmd)
            .await
            .map_err(|e| SessionError::Store(format!("redis at {}: SET: {e}", self.link.target())))
    }

    async fn remove(&self, id: &str) {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(id));
        if let Err(e) = self.link.run::<()>(&cmd).await {
            self.link.warn(
                "DEL",
                &e,
                "an ended session could not be removed from Redis; every replica refuses \
                 it through the shared logout records",
            );
        }
    }
}
