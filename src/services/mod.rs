//! The gateway's shared run-time state, built once from a validated config and handed to
//! every stage of the pipeline and every hook: config, clock, provider, sessions, metrics,
//! the refresh single-flight table and the bearer-token validation cache. It imports no
//! handler: stages depend on it, never the other way round.

pub(crate) mod flights;
mod replicas;
pub(crate) mod token_cache;

pub(crate) use flights::Outcome as GrantOutcome;
pub(crate) use flights::{flight_key, Flights};
pub(crate) use replicas::{lock_ttl, Removal, Replicas};
pub use token_cache::{TokenCache, Validation};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::ProviderUnavailable;
use crate::observe::Metrics;
use crate::provider::Provider;
use crate::redis_link::RedisLink;
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
    /// What is shared with other replicas through Redis (`[redis]`); inert without it.
    pub(crate) replicas: Replicas,
}

impl Services {
    /// Loads the provider's metadata and keys now, instead of on first use (benches; `run`
    /// warms up in the background instead).
    pub async fn load_provider(&self) -> Result<(), ProviderUnavailable> {
        self.provider.get().await.map(|_| ())
    }

    pub fn new(config: Config, clock: Clock) -> Services {
        let redis = config.redis.as_ref().map(|r| Arc::new(RedisLink::new(r)));
        let sessions = Sessions::new(
            &config.session,
            Deployment {
                issuer: &config.provider.issuer,
                client_id: &config.provider.client_id,
            },
            clock.clone(),
            redis.clone(),
        );
        let token_cache = TokenCache::new(
            config.oauth.introspection_cache,
            config.oauth.cache_max_bytes,
        );
        let replicas = match redis {
            Some(link) => Replicas::new(replicas::Parts {
                link,
                logouts: Arc::clone(sessions.logouts()),
                codec: sessions.shared_codec(),
                tokens: token_cache.clone(),
                clock: clock.clone(),
                record_ttl: config.session.max_duration,
                shared_tokens: config.oauth.shared_cache,
            }),
            None => Replicas::single(),
        };
        Services {
            provider: Arc::new(Provider::new(config.provider.clone(), clock.clone())),
            sessions,
            metrics: Metrics::default(),
            refresh_flights: Flights::default(),
            token_cache,
            replicas,
            clock,
            config,
        }
    }

    /// Starts the background work that needs a runtime: the provider's warm-up and, with
    /// `[redis]`, the replicas' subscription.
    pub fn start_background(&self) {
        self.provider.warm_up();
        self.replicas.start();
    }
}
