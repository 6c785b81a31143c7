//! Building connections from `[redis]`: straight to the URL's host, or to the master the
//! sentinels name; TLS with the configured CA and client certificate for `rediss://`;
//! credentials from the config (never from a log line).

use crate::config::{RedisConfig, RedisEndpoint, RedisTls};
use redis::aio::{MultiplexedConnection, PubSub};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, RedisResult, TlsCertificates, TlsMode,
};

pub(super) enum Source {
    Direct(Client),
    /// Asked for the master on every connection, so a failover is followed.
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        master_name: String,
    },
    /// The config could not be turned into a client (an unusable certificate, …); every
    /// call fails with this, and `/readyz` shows it.
    Broken(String),
}

fn certificates(tls: &RedisTls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls.client_pem.as_ref().map(|(cert, key)| ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.expose().as_bytes().to_vec(),
        }),
        root_cert: tls.ca_pem.clone(),
    }
}

fn direct(cfg: &RedisConfig, host: &str, port: u16) -> RedisResult<Client> {
    let addr = match &cfg.tls {
        Some(_) => ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: false,
            tls_params: None,
        },
        None => ConnectionAddr::Tcp(host.to_string(), port),
    };
    let mut settings = redis::RedisConnectionInfo::default().set_db(cfg.db);
    if let Some(user) = &cfg.username {
        settings = settings.set_username(user.expose());
    }
    if let Some(password) = &cfg.password {
        settings = settings.set_password(password.expose());
    }
    let info: ConnectionInfo = addr.into_connection_info()?.set_redis_settings(settings);
    match &cfg.tls {
        Some(tls) => Client::build_with_tls(info, certificates(tls)),
        None => Client::open(info),
    }
}

fn sentinel(
    cfg: &RedisConfig,
    sentinels: &[(String, u16)],
    master_name: &str,
) -> RedisResult<SentinelClient> {
    let addrs = sentinels.iter().map(|(host, port)| match &cfg.tls {
        Some(_) => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        },
        None => ConnectionAddr::Tcp(host.clone(), *port),
    });
    let mut builder = SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)?
        .set_client_to_redis_db(cfg.db);
    if let Some(user) = &cfg.username {
        builder = builder.set_client_to_redis_username(user.expose());
    }
    if let Some(password) = &cfg.password {
        builder = builder.set_client_to_redis_password(password.expose());
    }
    if let Some(tls) = &cfg.tls {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_redis_certificates(certificates(tls))
            .set_client_to_sentinel_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_certificates(certificates(tls));
    }
    builder.build()
}

impl Source {
    pub(super) fn new(cfg: &RedisConfig) -> Source {
        let built = match &cfg.endpoint {
            RedisEndpoint::Direct { host, port } => direct(cfg, host, *port).map(Source::Direct),
            RedisEndpoint::Sentinel {
                sentinels,
                master_name,
            } => sentinel(cfg, sentinels, master_name).map(|c| Source::Sentinel {
                client: tokio::sync::Mutex::new(c),
                master_name: master_name.clone(),
            }),
        };
        built.unwrap_or_else(|e| {
            tracing::error!(redis = %cfg.describe(), error = %e, "redis client cannot be built");
            Source::Broken(e.to_string())
        })
    }

    /// A client for the current master.
    async fn client(&self) -> RedisResult<Client> {
        match self {
            Source::Direct(client) => Ok(client.clone()),
            Source::Sentinel { client, .. } => client.lock().await.async_get_client().await,
            Source::Broken(cause) => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "the [redis] settings are unusable",
                cause.clone(),
            ))),
        }
    }

    pub(super) async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        self.client()
            .await?
            .get_multiplexed_async_connection_with_config(config)
            .await
    }

    pub(super) async fn pubsub(&self) -> RedisResult<PubSub> {
        self.client().await?.get_async_pubsub().await
    }

    /// With Sentinel: a subscription to the sentinels' `+switch-master` announcements,
    /// and the master name they concern. `None` for a direct connection.
    pub(super) async fn failover_notices(&self) -> Option<RedisResult<(PubSub, String)>> {
        let Source::Sentinel {
            client,
            master_name,
        } = self
        else {
            return None;
        };
        let attempt = async {
            let sentinel = client.lock().await.async_get_sentinel_client().await?;
            let mut pubsub = sentinel.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok((pubsub, master_name.clone()))
        };
        Some(attempt.await)
    }
}
