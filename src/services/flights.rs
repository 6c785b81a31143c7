//! The single-flight table of refresh grants.
//!
//! Rotating refresh tokens make concurrent refreshes dangerous: the second grant with the
//! same refresh token is refused and the user is logged out. So grants are single-flight:
//! keyed by a SHA-256 of the session's refresh token *and* access token (what one cookie
//! carries), the first caller runs the grant and every concurrent or later caller with the
//! same cookie (within [`RESULT_TTL`], e.g. requests still carrying the old cookie) reuses
//! its result. The access token is in the key because providers that do not rotate
//! refresh tokens hand the same one back: the new cookie then differs from the old only
//! by its access token, and its own refresh must be a new grant, not the old result.
//! Failures are remembered for [`FAILURE_TTL`] so parallel callers fail fast. The table is
//! bounded by bytes ([`MAX_FLIGHT_BYTES`]); it is per process.

use crate::error::GrantError;
use crate::provider::TokenGrant;
use moka::future::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const RESULT_TTL: Duration = Duration::from_secs(30);
pub(crate) const FAILURE_TTL: Duration = Duration::from_secs(5);
/// The table's bound in (estimated) bytes: a grant holds its tokens and ID-token claims.
pub(crate) const MAX_FLIGHT_BYTES: u64 = 32 << 20;

/// A flight's (estimated) size: its key, the tokens, the ID token and its claims.
fn weigh(_: &[u8; 32], outcome: &Outcome) -> u32 {
    let size = match outcome {
        Ok(grant) => {
            let id = grant.id_token.as_ref().map_or(0, |t| {
                t.raw.len() + serde_json::to_string(&t.claims).map_or(0, |c| c.len())
            });
            grant.access_token.expose().len()
                + grant.refresh_token.as_ref().map_or(0, |t| t.expose().len())
                + id
        }
        Err(e) => e.to_string().len(),
    };
    u32::try_from(128 + size).unwrap_or(u32::MAX)
}

/// A grant's outcome, shared by every caller of one flight.
pub(crate) type Outcome = Result<Arc<TokenGrant>, Arc<GrantError>>;

/// Successes live [`RESULT_TTL`], failures [`FAILURE_TTL`].
struct OutcomeExpiry;

impl Expiry<[u8; 32], Outcome> for OutcomeExpiry {
    fn expire_after_create(&self, _: &[u8; 32], value: &Outcome, _: Instant) -> Option<Duration> {
        Some(if value.is_ok() {
            RESULT_TTL
        } else {
            FAILURE_TTL
        })
    }
}

pub(crate) struct Flights {
    cache: Cache<[u8; 32], Outcome>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            cache: Cache::builder()
                .max_capacity(MAX_FLIGHT_BYTES)
                .weigher(weigh)
                .expire_after(OutcomeExpiry)
                .build(),
        }
    }
}

impl Flights {
    /// The outcome of the grant for this pair of tokens: `grant`'s, run now, or that of a
    /// flight already running or recently finished.
    #[cfg(test)]
    pub(crate) async fn run(
        &self,
        refresh_token: &str,
        access_token: Option<&str>,
        grant: impl Future<Output = Outcome>,
    ) -> Outcome {
        self.run_keyed(flight_key(refresh_token, access_token), grant)
            .await
    }

    /// [`Flights::run`] for a key from [`flight_key`] (the caller needs it too: replicas
    /// share flights by it).
    pub(crate) async fn run_keyed(
        &self,
        key: [u8; 32],
        grant: impl Future<Output = Outcome>,
    ) -> Outcome {
        self.cache.get_with(key, grant).await
    }
}

/// SHA-256 over both tokens, length-prefixed so no two pairs share an input.
pub(crate) fn flight_key(refresh_token: &str, access_token: Option<&str>) -> [u8; 32] {
    let at = access_token.unwrap_or_default();
    let mut h = Sha256::new();
    h.update((refresh_token.len() as u64).to_be_bytes());
    h.update(refresh_token.as_bytes());
    h.update(at.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn grant() -> TokenGrant {
        TokenGrant {
            access_token: crate::secret::Secret::new("new-at"),
            expires_at: None,
            refresh_token: None,
            id_token: None,
        }
    }

    #[tokio::test]
    async fn one_cookie_one_grant_and_a_new_access_token_a_new_one() {
        let flights = Flights::default();
        let runs = AtomicUsize::new(0);
        let run = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(grant()))
        };
        let (a, b) = tokio::join!(
            flights.run("rt", Some("at-1"), run()),
            flights.run("rt", Some("at-1"), run())
        );
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "concurrent callers share one grant"
        );
        // A provider that does not rotate refresh tokens: same rt, new at, new grant.
        flights.run("rt", Some("at-2"), run()).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failure_is_shared_too() {
        let flights = Flights::default();
        let refused = || async {
            Err(Arc::new(GrantError::Refused {
                error: "invalid_grant".into(),
                description: None,
            }))
        };
        assert!(flights.run("rt", None, refused()).await.is_err());
        // Within FAILURE_TTL the remembered failure answers; this grant never runs.
        let ok = flights
            .run("rt", None, async { Ok(Arc::new(grant())) })
            .await;
        assert!(ok.is_err());
    }

    #[test]
    fn keys_do_not_collide_across_the_token_boundary() {
        assert_ne!(flight_key("ab", Some("c")), flight_key("a", Some("bc")));
        assert_ne!(flight_key("rt", None), flight_key("rt", Some("x")));
    }

    #[test]
    fn flights_are_weighed_by_their_tokens() {
        let mut big = grant();
        big.access_token = crate::secret::Secret::new("a".repeat(20_000));
        let small = weigh(&[0; 32], &Ok(Arc::new(grant())));
        let large = weigh(&[0; 32], &Ok(Arc::new(big)));
        assert!(large >= 20_000 && small < 1_000, "{small} {large}");
    }
}
