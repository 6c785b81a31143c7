//! Logout records across replicas.
//!
//! - `<prefix>logouts`: a sorted set of every record (JSON [`LogoutEvent`]) scored by the
//!   epoch ms it was made; members older than `session.max_duration` are trimmed on every
//!   write (and beyond the newest 200,000), and the key itself expires after
//!   `max_duration` without writes. A replica that
//!   (re)subscribes reloads the members of that window, so a restarted replica keeps them.
//! - `<prefix>logout_jti:<sha256(jti)>`: a back-channel logout token's `jti`, set with `NX`
//!   for 900 s (longer than the `iat` window plus skew): the first replica to claim it wins.

use super::{Replicas, Shared, NOTICE_LOGOUT};
use crate::session::{LogoutEvent, LOGOUT_JTI_TTL};
use sha2::{Digest, Sha256};

/// Records reloaded per round trip when catching up.
const RESYNC_PAGE: usize = 1000;
/// The most records `logouts` keeps (the oldest go first): about 30 MB, and more logouts
/// than a deployment makes in a `max_duration`.
const MAX_RECORDS: i64 = 200_000;

impl Replicas {
    /// Claims a back-channel logout token's `jti` for this deployment: false when another
    /// replica accepted it before. Without `[redis]`, or with Redis unreachable, true
    /// (the caller has already checked this replica's own memory).
    pub(crate) async fn claim_logout_jti(&self, jti: &str) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let digest: [u8; 32] = Sha256::digest(jti.as_bytes()).into();
        let mut cmd = redis::cmd("SET");
        cmd.arg(
            shared
                .link
                .key(&format!("logout_jti:{}", super::hex(&digest))),
        )
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(LOGOUT_JTI_TTL.as_secs());
        match shared.link.run::<Option<String>>(&cmd).await {
            Ok(set) => set.is_some(),
            Err(e) => {
                shared.link.warn(
                    "SET NX",
                    &e,
                    "logout token replay checked on this replica only",
                );
                true
            }
        }
    }
}

impl Shared {
    fn log_key(&self) -> String {
        self.link.key("logouts")
    }

    /// Writes the records made here (and not yet in Redis) and publishes them. What fails
    /// goes back to the outbox for the next attempt (the next record, or the next
    /// subscription).
    pub(super) async fn flush_outbox(&self) {
        let events = self.logouts.take_outbox();
        if events.is_empty() {
            return;
        }
        let key = self.log_key();
        let now = self.clock.now_ms();
        let ttl_ms = i64::try_from(self.settings.load().record_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        for event in &events {
            let json = serde_json::to_vec(event).expect("a logout event serializes");
            pipe.cmd("ZADD")
                .arg(&key)
                .arg(event.at())
                .arg(&json)
                .ignore();
            pipe.add_command(self.publish_cmd(NOTICE_LOGOUT, &json))
                .ignore();
        }
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({}", now.saturating_sub(ttl_ms)))
            .ignore();
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(&key)
            .arg(0)
            .arg(-(MAX_RECORDS + 1))
            .ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms.max(1000)).ignore();
        match self.link.run_pipe::<()>(&pipe).await {
            Ok(()) => tracing::debug!(records = events.len(), "logout records shared"),
            Err(e) => {
                self.link.warn(
                    "ZADD",
                    &e,
                    "logout records apply on this replica and are shared once redis is back",
                );
                self.logouts.requeue(events);
            }
        }
    }

    /// Loads every record of the last `max_duration` (what a restarted or reconnected
    /// replica may have missed); whether it could.
    pub(super) async fn resync_logouts(&self) -> bool {
        let key = self.log_key();
        let ttl_ms = i64::try_from(self.settings.load().record_ttl.as_millis()).unwrap_or(i64::MAX);
        let since = self.clock.now_ms().saturating_sub(ttl_ms);
        let mut offset = 0;
        let mut loaded = 0;
        loop {
            let mut cmd = redis::cmd("ZRANGEBYSCORE");
            cmd.arg(&key)
                .arg(since)
                .arg("+inf")
                .arg("LIMIT")
                .arg(offset)
                .arg(RESYNC_PAGE);
            let page: Vec<Vec<u8>> = match self.link.run(&cmd).await {
                Ok(page) => page,
                Err(e) => {
                    self.link.warn(
                        "ZRANGEBYSCORE",
                        &e,
                        "logout records not reloaded yet; retried in a second",
                    );
                    return false;
                }
            };
            for member in &page {
                self.apply_logout(member);
            }
            loaded += page.len();
            if page.len() < RESYNC_PAGE {
                break;
            }
            offset += RESYNC_PAGE;
        }
        tracing::debug!(records = loaded, "logout records reloaded from redis");
        true
    }

    /// A record another replica made (or this one: applying twice changes nothing).
    pub(super) fn apply_logout(&self, json: &[u8]) {
        match serde_json::from_slice::<LogoutEvent>(json) {
            Ok(event) => self.logouts.apply_shared(&event),
            Err(e) => tracing::warn!(error = %e, "a shared logout record is not one; ignored"),
        }
    }
}
