//! Access-token refresh, inline before expiry and on request (the `refresh` hook).
//!
//! Rotating refresh tokens make concurrent refreshes dangerous: the second grant with the
//! same refresh token is refused and the user is logged out. So grants are single-flight:
//! keyed by a SHA-256 of the session's refresh token *and* access token (what one cookie
//! carries), the first caller runs the grant and every concurrent or later caller with the
//! same cookie (within [`RESULT_TTL`], e.g. requests still carrying the old cookie) reuses
//! its result. The access token is in the key because providers that do not rotate
//! refresh tokens hand the same one back: the new cookie then differs from the old only
//! by its access token, and its own refresh must be a new grant, not the old result.
//! Failures are remembered for [`FAILURE_TTL`] so parallel callers fail fast. The cache is
//! bounded ([`MAX_FLIGHTS`]); it is per process.

use crate::gateway::Gateway;
use crate::oidc::http::error_chain;
use crate::oidc::tokens::{verify_id_token, VerifiedIdToken};
use crate::proxy::forwarded::RequestCtx;
use crate::session::Session;
use http::header::{HeaderMap, HeaderValue};
use moka::future::Cache;
use moka::Expiry;
use openidconnect::{OAuth2TokenResponse, RefreshToken, RequestTokenError, TokenResponse};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const RESULT_TTL: Duration = Duration::from_secs(30);
pub const FAILURE_TTL: Duration = Duration::from_secs(5);
pub const MAX_FLIGHTS: u64 = 10_000;

/// What a successful refresh grant produced.
pub struct Refreshed {
    pub access_token: String,
    pub expires_at: Option<i64>,
    pub refresh_token: Option<String>,
    pub id_token: Option<VerifiedIdToken>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    #[error("the session has no refresh token")]
    NoRefreshToken,
    #[error("the provider refused the refresh grant: {0}")]
    Refused(String),
    #[error("the provider is unreachable: {0}")]
    Unreachable(String),
    #[error("the refreshed ID token was rejected: {0}")]
    IdToken(String),
}

type Outcome = Result<Arc<Refreshed>, RefreshError>;

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

/// The single-flight table of refresh grants.
pub struct Flights {
    cache: Cache<[u8; 32], Outcome>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            cache: Cache::builder()
                .max_capacity(MAX_FLIGHTS)
                .expire_after(OutcomeExpiry)
                .build(),
        }
    }
}

impl Flights {
    /// Runs (or joins, or reuses) the grant for the session's refresh token.
    pub async fn refresh(&self, gw: &Gateway, session: &Session) -> Outcome {
        let token = session
            .refresh_token
            .as_deref()
            .ok_or(RefreshError::NoRefreshToken)?;
        let key = flight_key(token, session.access_token.as_deref());
        self.cache
            .get_with(key, grant(gw, token, &session.sub))
            .await
    }

    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// SHA-256 over both tokens, length-prefixed so no two pairs share an input.
fn flight_key(refresh_token: &str, access_token: Option<&str>) -> [u8; 32] {
    let at = access_token.unwrap_or_default();
    let mut h = Sha256::new();
    h.update((refresh_token.len() as u64).to_be_bytes());
    h.update(refresh_token.as_bytes());
    h.update(at.as_bytes());
    h.finalize().into()
}

/// One refresh grant at the provider. `scope` is not resent: the provider keeps the
/// original grant's scope.
async fn grant(gw: &Gateway, refresh_token: &str, sub: &str) -> Outcome {
    gw.metrics.refreshes.inc();
    let result = run_grant(gw, refresh_token, sub).await;
    if let Err(e) = &result {
        gw.metrics.refresh_failures.inc();
        tracing::warn!(error = %e, "token refresh failed");
    } else {
        tracing::debug!("access token refreshed");
    }
    result.map(Arc::new)
}

async fn run_grant(
    gw: &Gateway,
    refresh_token: &str,
    sub: &str,
) -> Result<Refreshed, RefreshError> {
    let loaded = gw
        .provider
        .get()
        .await
        .map_err(|e| RefreshError::Unreachable(e.0))?;
    let token = RefreshToken::new(refresh_token.to_string());
    let http = gw.provider.http().for_openidconnect();
    let response = loaded
        .client
        .exchange_refresh_token(&token)
        .map_err(|e| RefreshError::Refused(e.to_string()))?
        .request_async(&http)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => RefreshError::Refused(r.error().to_string()),
            RequestTokenError::Request(e) => RefreshError::Unreachable(error_chain(&e)),
            other => RefreshError::Refused(error_chain(&other)),
        })?;
    let id_token = match response.id_token() {
        Some(raw) => {
            let verified = verify_id_token(&gw.provider, loaded.clone(), &raw.to_string(), None)
                .await
                .map_err(RefreshError::IdToken)?;
            if verified.str_claim("sub") != Some(sub) {
                return Err(RefreshError::IdToken("sub changed".into()));
            }
            Some(verified)
        }
        None => None,
    };
    let now = gw.clock.now();
    Ok(Refreshed {
        access_token: response.access_token().secret().clone(),
        expires_at: response.expires_in().map(|d| now + d.as_secs() as i64),
        refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        id_token,
    })
}

/// The session with the refreshed tokens in place (the refresh token is kept when the
/// provider did not rotate it).
pub fn apply(session: &Session, refreshed: &Refreshed, now: i64) -> Session {
    let mut s = session.clone();
    s.access_token = Some(refreshed.access_token.clone());
    s.access_token_expires = refreshed.expires_at;
    if let Some(rt) = &refreshed.refresh_token {
        s.refresh_token = Some(rt.clone());
    }
    if let Some(id) = &refreshed.id_token {
        s.id_token = Some(id.raw.clone());
        s.id_token_claims = id.claims.clone();
        if let Some(sid) = id.str_claim("sid") {
            s.sid = Some(sid.to_string());
        }
    }
    s.last_seen = now;
    s
}

/// Refreshes and stores the session; returns it with its Set-Cookie values.
pub async fn refresh_session(
    gw: &Gateway,
    session: &Session,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Result<(Arc<Session>, Vec<HeaderValue>), RefreshError> {
    let refreshed = gw.refresh_flights.refresh(gw, session).await?;
    let updated = apply(session, &refreshed, gw.clock.now());
    match gw.sessions.save(&updated, ctx.secure(), headers).await {
        Ok(cookies) => Ok((Arc::new(updated), cookies)),
        Err(e) => Err(RefreshError::Refused(format!(
            "session could not be stored: {e}"
        ))),
    }
}

pub enum Freshness {
    /// Use this session; add these Set-Cookies to the response.
    Fresh(Arc<Session>, Vec<HeaderValue>),
    /// The access token expired and could not be refreshed: log in again (cookies clear
    /// the session).
    Expired(Vec<HeaderValue>),
}

/// Refreshes inline when the access token expires within `refresh_before_expiry`. A
/// failed refresh passes the old token while it is still valid.
pub async fn ensure_fresh(
    gw: &Gateway,
    session: Arc<Session>,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Freshness {
    let window = gw.config.session.refresh_before_expiry.as_secs() as i64;
    let Some(expires) = session.access_token_expires else {
        return Freshness::Fresh(session, Vec::new());
    };
    let now = gw.clock.now();
    if window == 0 || expires - now > window {
        return Freshness::Fresh(session, Vec::new());
    }
    // Boxed: the grant's future is large and most requests never get here.
    match Box::pin(refresh_session(gw, &session, headers, ctx)).await {
        Ok((session, cookies)) => Freshness::Fresh(session, cookies),
        Err(_) if expires > now => Freshness::Fresh(session, Vec::new()),
        Err(_) => Freshness::Expired(gw.sessions.clear_cookies(headers, ctx.secure())),
    }
}
