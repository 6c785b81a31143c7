//! Access-token refresh, inline before expiry ([`ensure_fresh`]) and on request (the
//! `refresh` hook, [`refresh_session`]). The grant itself is `provider::refresh_grant`;
//! concurrent and repeated refreshes of one cookie share it through the single-flight
//! table in `services`.

use crate::error::GrantError;
use crate::provider::{refresh_grant, Provider, TokenGrant};
use crate::request::RequestCtx;
use crate::services::{flight_key, lock_ttl, GrantOutcome, Services};
use crate::session::{ActiveSession, Session, SessionError};
use http::header::{HeaderMap, HeaderValue};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RefreshError {
    #[error("the session has no refresh token")]
    NoRefreshToken,
    /// The session's provider is no longer configured (or now has another issuer).
    #[error("the session's provider is not configured")]
    UnknownProvider,
    /// The grant failed (refused, provider unreachable, bad ID token); shared by every
    /// caller of one flight.
    #[error("token refresh failed: {0}")]
    Grant(#[source] Arc<GrantError>),
    /// The grant succeeded but the refreshed session could not be stored.
    #[error("the refreshed session could not be stored: {0}")]
    Store(#[source] SessionError),
}

/// Runs (or joins, or reuses) the grant for the session's refresh token.
async fn grant(services: &Services, session: &Session) -> Result<Arc<TokenGrant>, RefreshError> {
    let token = session
        .refresh_token
        .as_ref()
        .ok_or(RefreshError::NoRefreshToken)?;
    // At the provider the session was logged in at.
    let (_, provider) = services
        .providers
        .of_session(session)
        .ok_or(RefreshError::UnknownProvider)?;
    let access_token = session.access_token.as_ref().map(|t| t.expose());
    let key = flight_key(token.expose(), access_token);
    // One grant per cookie in this process, and (with `[redis]`) across replicas.
    let lock_ttl = lock_ttl(provider.config().http_timeout);
    services
        .refresh_flights
        .run_keyed(
            key,
            // Boxed: the grant's future nests deep, and only a refresh pays for it.
            Box::pin(services.replicas.shared_grant(
                &key,
                lock_ttl,
                run_grant(services, provider, session, token),
            )),
        )
        .await
        .map_err(RefreshError::Grant)
}

async fn run_grant(
    services: &Services,
    provider: &Provider,
    session: &Session,
    token: &crate::secret::Secret,
) -> GrantOutcome {
    services.metrics.refreshes.inc();
    match refresh_grant(provider, token, &session.sub).await {
        Ok(grant) => {
            tracing::debug!("access token refreshed");
            services.metrics.refresh_outcome("refreshed");
            Ok(Arc::new(grant))
        }
        Err(e) => {
            services.metrics.refresh_failures.inc();
            services.metrics.refresh_outcome(if e.is_unreachable() {
                "unavailable"
            } else {
                "refused"
            });
            tracing::warn!(error = %e, "token refresh failed");
            Err(Arc::new(e))
        }
    }
}

/// The session with the refreshed tokens in place (the refresh token is kept when the
/// provider did not rotate it).
pub(crate) fn apply(session: &Session, grant: &TokenGrant, now: i64) -> Session {
    let mut s = session.clone();
    s.access_token = Some(grant.access_token.clone());
    s.access_token_expires = grant.expires_at;
    if let Some(rt) = &grant.refresh_token {
        s.refresh_token = Some(rt.clone());
    }
    if let Some(id) = &grant.id_token {
        s.id_token = Some(crate::secret::Secret::new(id.raw.clone()));
        s.id_token_claims = id.claims.clone();
        if let Some(sid) = id.str_claim("sid") {
            s.sid = Some(sid.to_string());
        }
    }
    s.last_seen = now;
    s
}

/// Refreshes and stores the session; returns it with its Set-Cookie values.
pub(crate) async fn refresh_session(
    services: &Services,
    session: &Session,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Result<(Arc<ActiveSession>, Vec<HeaderValue>), RefreshError> {
    let grant = grant(services, session).await?;
    let updated = apply(session, &grant, services.clock.now());
    let cookies = services
        .sessions
        .save(&updated, ctx.secure(), headers)
        .await
        .map_err(RefreshError::Store)?;
    Ok((Arc::new(ActiveSession::new(updated)), cookies))
}

pub(crate) enum Freshness {
    /// Use this session; add these Set-Cookies to the response.
    Fresh(Arc<ActiveSession>, Vec<HeaderValue>),
    /// The access token expired and could not be refreshed: log in again (cookies clear
    /// the session).
    Expired(Vec<HeaderValue>),
}

/// Whether the access token is due for an inline refresh: it expires within `window`
/// seconds (0 turns inline refresh off).
fn due(expires: Option<i64>, now: i64, window: i64) -> bool {
    match expires {
        Some(expires) => window > 0 && expires - now <= window,
        None => false,
    }
}

/// Refreshes inline when the access token expires within `refresh_before_expiry`. A
/// failed refresh passes the old token while it is still valid.
pub(crate) async fn ensure_fresh(
    services: &Services,
    session: Arc<ActiveSession>,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Freshness {
    let window = services.config.session.refresh_before_expiry.as_secs() as i64;
    let now = services.clock.now();
    if !due(session.access_token_expires, now, window) {
        return Freshness::Fresh(session, Vec::new());
    }
    // Boxed: the grant's future is large and most requests never get here.
    match Box::pin(refresh_session(services, &session, headers, ctx)).await {
        Ok((session, cookies)) => Freshness::Fresh(session, cookies),
        Err(_) if session.access_token_expires.is_some_and(|e| e > now) => {
            Freshness::Fresh(session, Vec::new())
        }
        Err(_) => Freshness::Expired(services.sessions.clear_cookies(headers, ctx.secure())),
    }
}

#[cfg(test)]
mod tests;
