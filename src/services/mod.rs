//! The gateway's shared run-time state, built once from a validated config and handed to
//! every stage of the pipeline and every hook: config, clock, provider, sessions, metrics,
//! the refresh single-flight table and the bearer-token validation cache. It imports no
//! handler: stages depend on it, never the other way round.

pub(crate) mod flights;
pub(crate) mod kept_posts;
pub(crate) mod providers;
mod replicas;
pub(crate) mod token_cache;

pub(crate) use flights::Outcome as GrantOutcome;
pub(crate) use flights::{flight_key, Flights};
pub(crate) use kept_posts::KeptPosts;
pub(crate) use providers::Providers;
pub(crate) use replicas::{lock_ttl, Removal, Replicas};
pub use token_cache::{TokenCache, Validation};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::ProviderUnavailable;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::session::{Deployment, Sessions};
use std::sync::Arc;

pub struct Services {
    pub config: Config,
    pub clock: Clock,
    /// Which config this is: 1 at start, one more at every successful reload.
    pub generation: u64,
    /// Every configured provider, the default first.
    pub(crate) providers: Providers,
    pub sessions: Sessions,
    /// Shared by every generation: counters survive reloads.
    pub(crate) metrics: Arc<Metrics>,
    /// Shared by every generation: a refresh in flight during a reload is still made once.
    pub(crate) refresh_flights: Arc<Flights>,
    pub token_cache: TokenCache,
    /// What is shared with other replicas through Redis (`[redis]`); inert without it.
    pub(crate) replicas: Replicas,
    /// The connection to Redis (`[redis]`), kept across reloads.
    redis: Option<Arc<RedisLink>>,
    /// Form posts kept across a login (`route.preserve_post`), in memory or in Redis.
    pub(crate) kept_posts: KeptPosts,
}

impl Services {
    /// Loads every provider's metadata and keys now, instead of on first use (benches;
    /// `run` warms up in the background instead).
    pub async fn load_provider(&self) -> Result<(), ProviderUnavailable> {
        for provider in self.providers.iter() {
            provider.get().await?;
        }
        Ok(())
    }

    pub fn new(config: Config, clock: Clock) -> Services {
        let redis = config.redis.as_ref().map(|r| Arc::new(RedisLink::new(r)));
        let sessions = Sessions::new(
            &config.session,
            deployment(&config),
            clock.clone(),
            redis.clone(),
        );
        let metrics = Arc::new(Metrics::new());
        let token_cache = TokenCache::new(
            config.oauth.introspection_cache,
            config.oauth.cache_max_bytes,
            metrics.token_cache.clone(),
        );
        let replicas = match &redis {
            Some(link) => Replicas::new(replicas::Parts {
                link: Arc::clone(link),
                logouts: Arc::clone(sessions.logouts()),
                clock: clock.clone(),
                settings: replica_settings(&config, &sessions, &token_cache),
            }),
            None => Replicas::single(),
        };
        Services {
            providers: Providers::new(&config.providers, &clock, &metrics),
            sessions,
            metrics,
            refresh_flights: Arc::default(),
            token_cache,
            replicas,
            kept_posts: KeptPosts::new(config.session.preserve_post_max_bytes, redis.clone()),
            redis,
            clock,
            config,
            generation: 1,
        }
    }

    /// The services for a reloaded `config` (already checked, and with the keys that only
    /// change on restart put back: see `crate::reload`). What did not change is kept: each
    /// provider with its metadata and keys when its entry is the same, the token cache
    /// when its policy, its size and the providers are, the sessions (see [`Sessions::reloaded`]), the metrics,
    /// the refresh flights, and the connection to Redis with the replicas' task.
    pub fn reloaded(&self, config: Config) -> Services {
        let providers = self
            .providers
            .reloaded(&config.providers, &self.clock, &self.metrics);
        let sessions =
            self.sessions
                .reloaded(&config.session, deployment(&config), self.redis.as_ref());
        let token_cache = if config.oauth.introspection_cache
            == self.config.oauth.introspection_cache
            && config.oauth.cache_max_bytes == self.config.oauth.cache_max_bytes
            && same_token_validation(&config, &self.config)
        {
            self.token_cache.clone()
        } else {
            TokenCache::new(
                config.oauth.introspection_cache,
                config.oauth.cache_max_bytes,
                self.metrics.token_cache.clone(),
            )
        };
        self.replicas
            .retarget(replica_settings(&config, &sessions, &token_cache));
        Services {
            providers,
            sessions,
            metrics: Arc::clone(&self.metrics),
            refresh_flights: Arc::clone(&self.refresh_flights),
            token_cache,
            replicas: self.replicas.clone(),
            kept_posts: self.kept_posts_for(&config),
            redis: self.redis.clone(),
            clock: self.clock.clone(),
            generation: self.generation + 1,
            config,
        }
    }

    /// The kept form posts for a reloaded `config`: the same ones while the byte bound is
    /// the same, else a new (empty) store with the new bound.
    fn kept_posts_for(&self, config: &Config) -> KeptPosts {
        if config.session.preserve_post_max_bytes == self.kept_posts.max_bytes() {
            self.kept_posts.clone()
        } else {
            KeptPosts::new(config.session.preserve_post_max_bytes, self.redis.clone())
        }
    }

    /// Starts the background work that needs a runtime: the provider's warm-up and, with
    /// `[redis]`, the replicas' subscription.
    pub fn start_background(&self) {
        self.providers.warm_up();
        self.replicas.start();
    }
}

/// Whether cached bearer-token validations stay true under `new`: the same providers
/// (a validation is cached per provider, under its name) and the same token checks.
fn same_token_validation(new: &Config, old: &Config) -> bool {
    new.providers == old.providers
        && new.oauth.jwt == old.oauth.jwt
        && new.oauth.introspection_endpoint == old.oauth.introspection_endpoint
        && new.oauth.require_token_type == old.oauth.require_token_type
}

/// What session cookies are sealed for: the default provider (the first), so that adding
/// providers after it keeps every session readable (a session names its own provider).
fn deployment(config: &Config) -> Deployment<'_> {
    Deployment {
        issuer: &config.provider.issuer,
        client_id: &config.provider.client_id,
    }
}

fn replica_settings(
    config: &Config,
    sessions: &Sessions,
    tokens: &TokenCache,
) -> replicas::Settings {
    replicas::Settings {
        codec: sessions.shared_codec(),
        tokens: tokens.clone(),
        record_ttl: config.session.max_duration,
        shared_tokens: config.oauth.shared_cache,
    }
}
