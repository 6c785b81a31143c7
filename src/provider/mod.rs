//! The OpenID Provider as the gateway knows it: discovery metadata and JWKS, fetched lazily,
//! retried with back-off while the provider is unreachable, and refetched (rate-limited) when
//! a token names a key id we have not seen; and every back-channel call made to it (token
//! grants, ID-token and JWT checks against its keys, client authentication).

mod client_auth;
mod grant;
pub(crate) mod id_token;
mod jwt;

pub(crate) use client_auth::client_authenticated_post;
pub(crate) use grant::{code_grant, refresh_grant, TokenGrant};
pub(crate) use id_token::{verify_id_token, VerifiedIdToken};
pub(crate) use jwt::{unverified_issuer, verify as verify_jwt};

use crate::clock::Clock;
use crate::config::ProviderConfig;
use crate::error::ProviderUnavailable;
use crate::metrics::Metrics;
use crate::outbound::Endpoint;
use crate::outbound::{error_chain, OpClient};
use openidconnect::core::*;
use openidconnect::{
    AdditionalProviderMetadata, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    ProviderMetadata,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use url::Url;

/// Endpoints openidconnect's standard metadata type does not expose.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct ExtraMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revocation_endpoint: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<Url>,
    /// RFC 9207: the provider names itself (`iss`) in every authorization response, so
    /// a response without `iss` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// RFC 9126 §5: where authorization requests may be pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_authorization_request_endpoint: Option<Url>,
    /// RFC 9126 §5: the provider accepts only pushed authorization requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_pushed_authorization_requests: Option<bool>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

pub(crate) type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The client as built from discovery: auth URL set, token and userinfo URLs maybe set.
pub(crate) type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Metadata, JWKS and a ready client, replaced as a whole when the JWKS is refetched.
pub(crate) struct Discovered {
    pub metadata: Metadata,
    pub client: OidcClient,
    /// The JWKS as raw JSON, for the bearer-token JWT path (jsonwebtoken).
    pub jwks: Arc<jsonwebtoken::jwk::JwkSet>,
}

impl Discovered {
    pub(crate) fn extra(&self) -> &ExtraMetadata {
        self.metadata.additional_metadata()
    }
}

/// How soon a failed discovery may be retried by a request.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// How soon the JWKS may be refetched for an unknown key id.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// What `/readyz` says about the provider, read from memory (no call to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// The discovery document has been fetched and accepted.
    pub discovery: bool,
    /// The JWKS has been fetched and parsed.
    pub jwks: bool,
    /// While either is missing: why the last attempt failed (`None` before the first one
    /// has ended).
    pub failure: Option<String>,
}

pub(crate) struct Provider {
    cfg: ProviderConfig,
    http: OpClient,
    clock: Clock,
    /// Metadata and JWKS: they are loaded together, so `Some` means both are.
    loaded: RwLock<Option<Arc<Discovered>>>,
    /// Whether the last discovery attempt got the metadata (its JWKS may still have
    /// failed): tells the two apart while nothing is loaded.
    metadata_fetched: AtomicBool,
    last_failure: Mutex<Option<(Instant, String)>>,
    last_jwks_fetch: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl Provider {
    pub(crate) fn new(cfg: ProviderConfig, clock: Clock, metrics: Arc<Metrics>) -> Self {
        let http = OpClient::new(cfg.http_timeout, cfg.max_concurrent_calls, metrics);
        Self {
            cfg,
            http,
            clock,
            loaded: RwLock::new(None),
            metadata_fetched: AtomicBool::new(false),
            last_failure: Mutex::new(None),
            last_jwks_fetch: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn config(&self) -> &ProviderConfig {
        &self.cfg
    }

    pub(crate) fn http(&self) -> &OpClient {
        &self.http
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether metadata has been loaded (readiness).
    pub(crate) fn is_ready(&self) -> bool {
        self.loaded.read().map(|l| l.is_some()).unwrap_or(false)
    }

    /// Discovery and JWKS each loaded or not, with the last failure while not both are.
    pub(crate) fn readiness(&self) -> Readiness {
        if self.is_ready() {
            return Readiness {
                discovery: true,
                jwks: true,
                failure: None,
            };
        }
        let failure = self
            .last_failure
            .lock()
            .ok()
            .and_then(|f| f.as_ref().map(|(_, cause)| cause.clone()));
        Readiness {
            discovery: self.metadata_fetched.load(Ordering::Relaxed),
            jwks: false,
            failure,
        }
    }

    fn current(&self) -> Option<Arc<Discovered>> {
        self.loaded.read().ok().and_then(|l| l.clone())
    }

    /// The provider's metadata, fetching it on first use. While the provider is unreachable
    /// this answers the last error for a couple of seconds instead of hammering it.
    pub(crate) async fn get(&self) -> Result<Arc<Discovered>, ProviderUnavailable> {
        if let Some(loaded) = self.current() {
            return Ok(loaded);
        }
        if let Some(cause) = self.recent_failure() {
            return Err(ProviderUnavailable(cause));
        }
        let _guard = self.fetch_lock.lock().await;
        if let Some(loaded) = self.current() {
            return Ok(loaded);
        }
        if let Some(cause) = self.recent_failure() {
            return Err(ProviderUnavailable(cause));
        }
        match self.discover().await {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                *self.loaded.write().expect("provider lock") = Some(loaded.clone());
                *self.last_failure.lock().expect("provider lock") = None;
                tracing::info!(issuer = %self.cfg.issuer, "provider metadata loaded");
                Ok(loaded)
            }
            Err(cause) => {
                tracing::warn!(issuer = %self.cfg.issuer, %cause, "provider discovery failed");
                *self.last_failure.lock().expect("provider lock") =
                    Some((Instant::now(), cause.clone()));
                Err(ProviderUnavailable(cause))
            }
        }
    }

    fn recent_failure(&self) -> Option<String> {
        let guard = self.last_failure.lock().ok()?;
        match &*guard {
            Some((at, cause)) if at.elapsed() < RETRY_AFTER_FAILURE => Some(cause.clone()),
            _ => None,
        }
    }

    async fn discover(&self) -> Result<Discovered, String> {
        let metadata = self.discover_metadata().await;
        self.metadata_fetched
            .store(metadata.is_ok(), Ordering::Relaxed);
        let metadata = metadata?;
        let jwks = self
            .fetch_raw_jwks(metadata.jwks_uri().url().as_str())
            .await?;
        // Not recorded as a refetch: the rate limit is for unknown-kid refetches, and a key
        // the provider rotated in just after start-up must still be fetched once.
        Ok(self.build(metadata, jwks))
    }

    /// The discovery document alone, fetched and checked as openidconnect's
    /// `discover_async` does (200, JSON, the configured issuer), which would also fetch the
    /// JWKS: [`Provider::fetch_raw_jwks`] does that next, once, and readiness tells a
    /// missing document from a missing JWKS.
    async fn discover_metadata(&self) -> Result<Metadata, String> {
        let issuer = IssuerUrl::new(self.cfg.issuer.clone()).map_err(|e| e.to_string())?;
        let url = issuer
            .join(".well-known/openid-configuration")
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .get(Endpoint::Discovery, url.as_str(), None)
            .await
            .map_err(|e| format!("discovery at {url}: {}", error_chain(&e)))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("discovery at {url} answered {}", response.status()));
        }
        if let Some(content_type) = response.headers().get(http::header::CONTENT_TYPE) {
            let essence = content_type
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim();
            if !essence.eq_ignore_ascii_case("application/json") {
                return Err(format!(
                    "discovery at {url} answered Content-Type {content_type:?}, not application/json"
                ));
            }
        }
        let metadata: Metadata = serde_json::from_slice(response.body())
            .map_err(|e| format!("discovery document at {url} is not valid: {e}"))?;
        if metadata.issuer() != &issuer {
            return Err(format!(
                "discovery document names issuer {} (expected {})",
                metadata.issuer().as_str(),
                issuer.as_str()
            ));
        }
        self.check_endpoints(&metadata)?;
        Ok(metadata)
    }

    /// Refuses plain-http endpoints off loopback unless `allow_http`.
    fn check_endpoints(&self, m: &Metadata) -> Result<(), String> {
        if self.cfg.allow_http {
            return Ok(());
        }
        let mut urls: Vec<&Url> = vec![m.authorization_endpoint().url(), m.jwks_uri().url()];
        urls.extend(m.token_endpoint().map(|u| u.url()));
        urls.extend(m.userinfo_endpoint().map(|u| u.url()));
        let extra = m.additional_metadata();
        urls.extend(extra.introspection_endpoint.iter());
        urls.extend(extra.revocation_endpoint.iter());
        urls.extend(extra.pushed_authorization_request_endpoint.iter());
        for url in urls {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if url.scheme() != "https" && !loopback {
                return Err(format!(
                    "endpoint {url} is not https (set provider.allow_http = true for development setups)"
                ));
            }
        }
        Ok(())
    }

    /// Fetches the JWKS once as text, parsed both for openidconnect and for jsonwebtoken.
    async fn fetch_raw_jwks(
        &self,
        url: &str,
    ) -> Result<(CoreJsonWebKeySet, jsonwebtoken::jwk::JwkSet), String> {
        let response = self
            .http
            .get(Endpoint::Jwks, url, None)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("JWKS endpoint answered {}", response.status()));
        }
        let body = response.body();
        let for_oidc: CoreJsonWebKeySet =
            serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid: {e}"))?;
        // jsonwebtoken rejects a whole set when one key is of a type it does not know, so
        // parse key by key and keep the ones it understands.
        let raw: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid: {e}"))?;
        let keys = raw
            .get("keys")
            .and_then(|k| k.as_array())
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| {
                        serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k.clone()).ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((for_oidc, jsonwebtoken::jwk::JwkSet { keys }))
    }

    fn build(
        &self,
        metadata: Metadata,
        (for_oidc, for_jwt): (CoreJsonWebKeySet, jsonwebtoken::jwk::JwkSet),
    ) -> Discovered {
        let metadata = metadata.set_jwks(for_oidc);
        // With a JWT assertion the secret is never sent: openidconnect then puts only
        // `client_id` in the body, and the grants add the assertion.
        let secret = (!client_auth::uses_assertion(&self.cfg))
            .then(|| openidconnect::ClientSecret::new(self.cfg.client_secret.expose().to_string()));
        let mut client = OidcClient::from_provider_metadata(
            metadata.clone(),
            openidconnect::ClientId::new(self.cfg.client_id.clone()),
            secret,
        );
        if self.cfg.token_endpoint_auth == crate::config::TokenEndpointAuth::ClientSecretPost {
            client = client.set_auth_type(openidconnect::AuthType::RequestBody);
        }
        Discovered {
            metadata,
            client,
            jwks: Arc::new(for_jwt),
        }
    }

    /// Refetches the JWKS after a token named an unknown key id. Rate-limited: returns
    /// `None` when it was refetched too recently (or the fetch failed).
    pub(crate) async fn refetch_jwks(&self) -> Option<Arc<Discovered>> {
        let current = self.current()?;
        let _guard = self.fetch_lock.lock().await;
        {
            let mut last = self.last_jwks_fetch.lock().ok()?;
            if let Some(at) = *last {
                if at.elapsed() < JWKS_REFETCH_INTERVAL {
                    // Another request may have refetched meanwhile: use its result.
                    let now = self.current()?;
                    return (!Arc::ptr_eq(&now, &current)).then_some(now);
                }
            }
            *last = Some(Instant::now());
        }
        self.replace_jwks(&current, "a token named no key we have")
            .await
    }

    /// Fetches the JWKS of `current`'s metadata and puts it in place.
    async fn replace_jwks(&self, current: &Discovered, why: &str) -> Option<Arc<Discovered>> {
        let url = current.metadata.jwks_uri().url().as_str().to_string();
        match self.fetch_raw_jwks(&url).await {
            Ok(jwks) => {
                let loaded = Arc::new(self.build(current.metadata.clone(), jwks));
                *self.loaded.write().ok()? = Some(loaded.clone());
                tracing::info!(reason = why, "provider JWKS refetched");
                Some(loaded)
            }
            Err(cause) => {
                tracing::warn!(%cause, "JWKS refetch failed");
                None
            }
        }
    }

    /// Starts a background task that loads the metadata at start-up and keeps retrying
    /// (with back-off) until it succeeds, so readiness reflects the provider; then
    /// refetches the JWKS every `provider.jwks_refresh`, so keys the provider rotated in
    /// (or out) are known before a token needs them.
    pub(crate) fn warm_up(self: &Arc<Self>) {
        // Weak: the task must not keep a stopped gateway's provider alive.
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            let interval = loop {
                let Some(provider) = this.upgrade() else {
                    return;
                };
                if provider.get().await.is_ok() {
                    break provider.cfg.jwks_refresh;
                }
                drop(provider);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            };
            let Some(interval) = interval else {
                return;
            };
            loop {
                tokio::time::sleep(interval).await;
                let Some(provider) = this.upgrade() else {
                    return;
                };
                if let Some(current) = provider.current() {
                    let _guard = provider.fetch_lock.lock().await;
                    provider.replace_jwks(&current, "periodic refresh").await;
                }
            }
        });
    }
}
