//! The configuration file as written: serde structs that mirror the TOML. Unknown keys are
//! collected (all of them, with their paths) by `validate.rs` and reported as errors.
//! Nothing here is validated; see `validate.rs`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// `[provider]` (one table) or `[[provider]]` (an array of tables): kept as TOML and
    /// read entry by entry (`validate::build_providers`), so each entry's unknown keys are
    /// reported with its own path (`provider[1].typo`).
    pub provider: Option<toml::Value>,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub oauth: RawOAuth,
    #[serde(default)]
    pub hooks: RawHooks,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    pub redis: Option<RawRedis>,
    #[serde(default)]
    pub log: RawLog,
    pub telemetry: Option<RawTelemetry>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access: Option<bool>,
    pub hash_sub: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRedis {
    pub url: Option<String>,
    pub username: Option<String>,
    pub username_file: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub sentinels: Option<Vec<String>>,
    pub master_name: Option<String>,
    pub prefix: Option<String>,
    pub timeout: Option<String>,
}

/// A value that may be written as one string or as a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawServer {
    pub listen: Option<OneOrMany>,
    pub(crate) public_url: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub allowed_hosts: Option<Vec<String>>,
    pub upstream_timeout: Option<String>,
    pub(crate) upstream_connect_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    /// The keep-alive idle timeout (`ServerConfig::idle_timeout`).
    pub keepalive_timeout: Option<String>,
    /// The former name of `keepalive_timeout`, still accepted; both set is an error.
    pub idle_timeout: Option<String>,
    pub max_connections: Option<u64>,
    pub workers: Option<u64>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub redirect_http_listen: Option<OneOrMany>,
    pub hsts: Option<String>,
    pub forward_auth_path: Option<String>,
    pub login_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAdmin {
    pub listen: Option<OneOrMany>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawProvider {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub token_endpoint_auth: Option<String>,
    pub private_key_file: Option<String>,
    pub private_key_kid: Option<String>,
    pub signing_alg: Option<String>,
    pub assertion_audience: Option<String>,
    pub par: Option<String>,
    pub response_mode: Option<String>,
    pub redirect_uri: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub pkce: Option<String>,
    pub auth_params: Option<BTreeMap<String, String>>,
    pub userinfo: Option<bool>,
    pub allow_http: Option<bool>,
    pub(crate) http_timeout: Option<String>,
    pub trusted_audiences: Option<Vec<String>>,
    pub jwks_refresh: Option<String>,
    pub max_concurrent_calls: Option<u64>,
    /// `[[provider]]`: the name routes, sessions and the chooser know it by.
    pub name: Option<String>,
    /// What the login chooser shows for this provider (default: its name).
    pub title: Option<String>,
    /// Audiences of JWT access tokens from this provider (default: `oauth.audience`).
    pub audience: Option<OneOrMany>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSession {
    pub passphrase: Option<String>,
    pub passphrase_file: Option<String>,
    pub passphrases: Option<Vec<String>>,
    pub allow_weak_passphrase: Option<bool>,
    pub store: Option<String>,
    pub(crate) memory_capacity: Option<u64>,
    /// Moved to `[redis]`; read only to name the new key in the error.
    pub(crate) redis_url: Option<toml::Value>,
    pub(crate) redis_prefix: Option<toml::Value>,
    pub(crate) redis_timeout: Option<toml::Value>,
    pub(crate) cookie_name: Option<String>,
    pub cookie_domain: Option<String>,
    pub(crate) state_cookie_prefix: Option<String>,
    pub same_site: Option<String>,
    pub inactivity_timeout: Option<String>,
    pub max_duration: Option<String>,
    pub refresh_before_expiry: Option<String>,
    pub(crate) preserve_post_max_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHeaders {
    pub claim_prefix: Option<String>,
    pub claim_delimiter: Option<String>,
    pub pass_access_token: Option<bool>,
    pub pass_id_token: Option<Vec<String>>,
    pub pass_userinfo: Option<Vec<String>>,
    pub pass_refresh_token: Option<bool>,
    pub encoding: Option<String>,
    pub remote_user_claim: Option<String>,
    pub remote_user_header: Option<String>,
    /// `[[headers.set]]`: headers from a claim or a template, on every route without its own.
    pub set: Option<Vec<RawSetHeader>>,
}

/// One `[[headers.set]]` entry, or one of a route's `headers`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSetHeader {
    pub name: Option<String>,
    pub claim: Option<String>,
    pub value: Option<String>,
    pub join: Option<String>,
    pub encoding: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOAuth {
    pub introspection_endpoint: Option<String>,
    pub introspection_cache: Option<String>,
    pub accept_token_as: Option<Vec<String>>,
    pub jwt: Option<bool>,
    pub audience: Option<OneOrMany>,
    pub require_token_type: Option<bool>,
    pub(crate) cache_max_bytes: Option<u64>,
    pub shared_cache: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHooks {
    pub info: Option<Vec<String>>,
    pub redirect_urls_allowed: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRoute {
    pub path: Option<String>,
    pub upstream: Option<String>,
    pub auth: Option<String>,
    pub unauth_action: Option<String>,
    pub require_claims: Option<Vec<String>>,
    pub preserve_host: Option<bool>,
    pub upgrades: Option<Vec<String>>,
    pub case_insensitive: Option<bool>,
    pub host: Option<OneOrMany>,
    pub allow_anonymous_methods: Option<Vec<String>>,
    /// This route's header list, instead of `[[headers.set]]`.
    pub headers: Option<Vec<RawSetHeader>>,
    pub preserve_post: Option<bool>,
    /// The one provider whose sessions or tokens this route accepts.
    pub provider: Option<String>,
    /// The providers whose sessions or tokens this route accepts (a chooser page when a
    /// browser has no session).
    pub providers: Option<Vec<String>>,
}
