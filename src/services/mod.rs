//! The gateway's shared run-time state, built once from a validated config and handed to
//! every stage of the pipeline and every hook: config, clock, provider, sessions, metrics,
//! the refresh single-flight table and the bearer-token validation cache. It imports no
//! handler: stages depend on it, never the other way round.

mod flights;
mod token_cache;

pub(crate) use flights::Flights;
pub(crate) use flights::Outcome as GrantOutcome;
pub use token_cache::{TokenCache, Validation};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::ProviderUnavailable;
use crate::observe::Metrics;
use crate::provider::Provider;
use crate::session::{Deployment, Sessions};
use std::sync::Arc;

pub struct Services {
    pub config: Config,
    pub clock: Clock,
    pub(crate) provider: Arc<Provider>,
    pub sessions: Sessions,
    pub(crate) metrics: Metrics,
    pub(crate) refresh_flights: Flights,
    pub token_cache: TokenCache,
}

impl Services {
    /// Loads the provider's metadata and keys now, instead of on first use (benches; `run`
    /// warms up in the background instead).
    pub async fn load_provider(&self) -> Result<(), ProviderUnavailable> {
        self.provider.get().await.map(|_| ())
    }

    pub fn new(config: Config, clock: Clock) -> Services {
        Services {
            provider: Arc::new(Provider::new(config.provider.clone(), clock.clone())),
            sessions: Sessions::new(
                &config.session,
                Deployment {
                    issuer: &config.provider.issuer,
                    client_id: &config.provider.client_id,
                },
                clock.clone(),
            ),
            metrics: Metrics::default(),
            refresh_flights: Flights::default(),
            token_cache: TokenCache::new(
                config.oauth.introspection_cache,
                config.oauth.cache_max_bytes,
            ),
            clock,
            config,
        }
    }
}
