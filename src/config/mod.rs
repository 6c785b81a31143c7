//! Configuration: the TOML file is read in two stages, raw serde structs (`raw`) then a
//! validator (`validate`) that reports every problem with its key path and builds the typed
//! [`Config`] below. The rest of the gateway only ever sees a validated `Config`.

mod client_key;
pub(crate) mod header_set;
mod interpolate;
pub mod raw;
mod tls;
mod validate;

pub use client_key::ClientKey;
pub use header_set::{HeaderSource, Part, SetHeader};
pub use tls::load_certified_key;

use crate::authz::ClaimRule;
use crate::secret::Secret;
use ipnet::IpNet;
use regex::Regex;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use url::Url;

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    /// The default provider: the first of `providers` (`[provider]`, or the first
    /// `[[provider]]`). Session cookies are sealed for it (see `services::deployment`).
    pub provider: ProviderConfig,
    /// Every provider, the default first; names are unique, and so are issuers.
    pub providers: Vec<ProviderConfig>,
    pub session: SessionConfig,
    pub headers: HeadersConfig,
    pub oauth: OAuthConfig,
    pub hooks: HooksConfig,
    pub routes: Vec<RouteConfig>,
    /// `[redis]`: what replicas share; `None` runs one process on its own.
    pub redis: Option<RedisConfig>,
    /// `[log]`: format, level and the access log.
    pub log: LogConfig,
    /// `[telemetry]`: OTLP export of the spans (the `otlp` feature); `None`: no export.
    pub telemetry: Option<TelemetryConfig>,
    /// Problems that do not stop the gateway (a weak passphrase, …): `check-config` prints
    /// them, `run` logs them at start.
    pub warnings: Vec<ConfigProblem>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// When set, scheme and host of every request are taken from here.
    pub public_url: Option<Url>,
    pub trusted_proxies: Vec<IpNet>,
    /// Hosts the gateway answers for (lowercase `host` or `host:port`); empty: any.
    pub allowed_hosts: Vec<String>,
    pub upstream_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub shutdown_grace: Duration,
    /// `server.keepalive_timeout` (formerly `server.idle_timeout`, still accepted): a
    /// connection on which no request starts for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections on the proxied listeners (`None`: no bound).
    pub max_connections: Option<usize>,
    /// `server.workers`: threads serving the proxied connections, each with its own
    /// single-threaded runtime and upstream pool (default: one per core).
    pub workers: usize,
    /// `Some`: every `listen` address serves TLS with these files (reloaded when they change).
    pub tls: Option<ListenerTls>,
    /// Plain-HTTP listeners that answer every request with a 308 to https.
    pub redirect_http_listen: Vec<SocketAddr>,
    /// `Strict-Transport-Security: max-age=…` on every TLS response.
    pub hsts: Option<Duration>,
    /// `server.forward_auth_path`: where a front proxy asks "who is this, may they?" about
    /// one of its requests (forward-auth mode); `None`: off.
    pub forward_auth_path: Option<String>,
    /// `server.login_path`: `GET <login_path>?rd=<url>` starts a login that comes back to
    /// `rd`; `None`: off.
    pub login_path: Option<String>,
}

/// The listener's certificate chain and key files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 assertion signed with `private_key_file` (`ProviderConfig::private_key`).
    PrivateKeyJwt,
    /// RFC 7523 assertion signed with the client secret (HMAC).
    ClientSecretJwt,
}

/// `provider.assertion_audience`: the `aud` of a client assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAudience {
    /// The provider's token endpoint URL (RFC 7523 §3; Entra ID, Okta's token calls).
    TokenEndpoint,
    /// The issuer identifier (RFC 7523 §3 allows it; some providers want it).
    Issuer,
}

/// `provider.par`: Pushed Authorization Requests (RFC 9126).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Par {
    /// When the metadata sets `require_pushed_authorization_requests`.
    Auto,
    Always,
    Never,
}

/// `provider.response_mode`: how the provider returns the authorization response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// In the redirect's query (a GET on the redirect URI).
    Query,
    /// As an auto-submitted form (a POST on the redirect URI).
    FormPost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkce {
    S256,
    Plain,
    None,
}

/// The redirect URI: a path resolved against each request's scheme and host, or fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectUri {
    Path(String),
    Absolute(Url),
}

impl RedirectUri {
    /// The path part, which is what requests are matched against.
    pub fn path(&self) -> &str {
        match self {
            RedirectUri::Path(p) => p,
            RedirectUri::Absolute(u) => u.path(),
        }
    }

    /// The full URL for a request that arrived as `scheme://host`.
    pub fn resolve(&self, scheme: &str, host: &str) -> String {
        match self {
            RedirectUri::Path(p) => format!("{scheme}://{host}{p}"),
            RedirectUri::Absolute(u) => u.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// `name` of a `[[provider]]` entry; `"default"` for a `[provider]` table without one.
    pub name: String,
    /// What the login chooser shows (`title`, default the name).
    pub title: String,
    /// Audiences a JWT access token from this provider must name one of (`audience`,
    /// default `oauth.audience`).
    pub audience: Vec<String>,
    /// As written in the file: compared byte for byte with the provider's `issuer`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub token_endpoint_auth: TokenEndpointAuth,
    /// `private_key_file` (with `private_key_kid`, `signing_alg`): the key of
    /// `private_key_jwt`; `None` for the other methods.
    pub private_key: Option<ClientKey>,
    /// `signing_alg` of a `client_secret_jwt` assertion (HS256 by default).
    pub secret_jwt_alg: jsonwebtoken::Algorithm,
    pub assertion_audience: AssertionAudience,
    pub par: Par,
    pub response_mode: ResponseMode,
    pub redirect_uri: RedirectUri,
    pub scopes: Vec<String>,
    pub pkce: Pkce,
    pub auth_params: Vec<(String, String)>,
    pub userinfo: bool,
    pub allow_http: bool,
    /// Audiences an ID token may carry besides `client_id` (then `azp` must be the
    /// client), as mod_auth_openidc's `OIDCIDTokenAudValues`; empty: none.
    pub trusted_audiences: Vec<String>,
    /// How often the JWKS is refetched in the background (`None`: never, `"0s"`).
    pub jwks_refresh: Option<Duration>,
    /// Calls to the provider in flight at once; more are refused (503, `Retry-After`).
    pub max_concurrent_calls: usize,
    pub http_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Cookie,
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// First is used to seal; all are tried to open.
    pub passphrases: Vec<Secret>,
    pub store: StoreKind,
    pub memory_capacity: u64,
    pub cookie_name: String,
    pub cookie_domain: Option<CookieDomain>,
    pub state_cookie_prefix: String,
    pub same_site: SameSite,
    pub inactivity_timeout: Duration,
    pub max_duration: Duration,
    pub refresh_before_expiry: Duration,
    /// Bytes the form posts kept across a login (`route.preserve_post`) may hold in this
    /// process at once, sealed (the ledger of what it put in Redis, with `[redis]`).
    pub preserve_post_max_bytes: u64,
}

/// `[redis]`: the Redis every replica of one deployment shares. Present, it carries the
/// logout records, the refresh locks and the bearer-token cache removals (and, with
/// `session.store = "redis"`, the sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub endpoint: RedisEndpoint,
    /// The database number (from the URL's path; 0 by default).
    pub db: i64,
    /// From `username` / `username_file`, else the URL's.
    pub username: Option<Secret>,
    /// From `password` / `password_file`, else the URL's.
    pub password: Option<Secret>,
    /// `Some` for `rediss://`: TLS (rustls) to Redis and, with Sentinel, to the sentinels.
    pub tls: Option<RedisTls>,
    /// Prepended to every key and to the pub/sub channel.
    pub prefix: String,
    /// Bound on every Redis call: waiting for a connection, connecting, and the command.
    pub timeout: Duration,
}

impl RedisConfig {
    /// Where Redis is, for logs (never a credential).
    pub fn describe(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.endpoint {
            RedisEndpoint::Direct { host, port } => {
                format!("{scheme}://{host}:{port}/{}", self.db)
            }
            RedisEndpoint::Sentinel {
                sentinels,
                master_name,
            } => {
                let list: Vec<String> = sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                format!(
                    "{scheme}://[{master_name} via sentinels {}]/{}",
                    list.join(","),
                    self.db
                )
            }
        }
    }
}

/// How the Redis master is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisEndpoint {
    /// `url`'s host and port.
    Direct { host: String, port: u16 },
    /// Asked of `sentinels` (host, port) for `master_name`, again after every failover.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master_name: String,
    },
}

/// TLS to Redis: the CA to trust instead of the system's, and a client certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM, from `ca_file`.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate and key, from `cert_file` and `key_file`.
    pub client_pem: Option<(Vec<u8>, Secret)>,
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client_pem.is_some())
            .finish()
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive string (`"info,oidc_gateway=debug"`); `RUST_LOG`,
    /// when set, wins.
    pub level: String,
    /// One line per request on the proxied listeners (target `oidc_gateway::access`).
    pub access: bool,
    /// The access log shows a SHA-256 prefix of `sub` instead of `sub` itself.
    pub hash_sub: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            access: false,
            hash_sub: false,
        }
    }
}

/// Parses a `log.level` value: a tracing `EnvFilter` directive string such as
/// `"info,oidc_gateway=debug"`. Stricter than `EnvFilter` on one point: a bare word must be
/// a level, since `EnvFilter` would read a misspelt level (`"infoo"`) as a target to enable
/// at every level.
pub fn parse_log_level(directives: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    use tracing_subscriber::filter::{Directive, EnvFilter, LevelFilter};
    let parts: Vec<&str> = directives
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err("must not be empty (e.g. \"info\")".into());
    }
    for part in &parts {
        if !part.contains(['=', '[']) && part.parse::<LevelFilter>().is_err() {
            return Err(format!(
                "{part:?} is not a level (trace, debug, info, warn, error, off) nor a target=level directive"
            ));
        }
        if let Err(e) = part.parse::<Directive>() {
            return Err(format!("{part:?} is not a filter directive: {e}"));
        }
    }
    let directives = parts.join(",");
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| format!("{directives:?} is not a filter directive string: {e}"))
}

/// `[telemetry]` (binaries built with the `otlp` feature only).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`).
    pub otlp_endpoint: Url,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The share of new traces exported (0.0 to 1.0); a trusted proxy's sampled flag wins.
    pub sample_ratio: f64,
}

impl TelemetryConfig {
    /// Where spans are sent: `v1/traces` under the endpoint's path, as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is read.
    pub fn traces_url(&self) -> String {
        let mut url = self.otlp_endpoint.clone();
        let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing's human-readable lines.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    None,
    Latin1,
    Base64Url,
}

#[derive(Debug, Clone)]
pub struct HeadersConfig {
    pub claim_prefix: String,
    pub claim_delimiter: String,
    pub pass_access_token: bool,
    pub id_token_claims: bool,
    pub id_token_payload: bool,
    pub id_token_serialized: bool,
    pub userinfo_claims: bool,
    pub userinfo_json: bool,
    pub pass_refresh_token: bool,
    pub encoding: Encoding,
    pub remote_user_claim: String,
    pub remote_user_header: Option<http::HeaderName>,
    /// The configured header lists: `[0]` is `[[headers.set]]`, then one per route that
    /// has its own `headers` ([`RouteConfig::header_list`] says which a route sends).
    pub lists: Vec<Vec<SetHeader>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionCache {
    /// Cache active results until the token's `exp`.
    UntilExpiry,
    Off,
    /// Re-validate after this long (and never past `exp`).
    For(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Query,
    Post,
    Cookie(String),
}

#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub introspection_endpoint: Option<Url>,
    pub introspection_cache: IntrospectionCache,
    pub accept_token_as: Vec<TokenSource>,
    pub jwt: bool,
    /// With `jwt`: a JWT access token's `aud` must contain one of these (required with
    /// `jwt`, so that ID tokens and tokens for other APIs are refused).
    pub audience: Vec<String>,
    /// Introspected tokens must be identified as access tokens (`token_type` Bearer, or
    /// Keycloak's `typ` Bearer, or Ory's `token_use` access_token); tokens identified as
    /// something else (a refresh token) are refused either way.
    pub require_token_type: bool,
    /// Bound on the validation cache, in (estimated) bytes.
    pub cache_max_bytes: u64,
    /// Validation results kept in Redis too (sealed), so replicas validate a token once.
    pub shared_cache: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoMember {
    Iat,
    AccessToken,
    AccessTokenExpires,
    IdToken,
    Userinfo,
    Exp,
    Timeout,
    RemoteUser,
    RefreshToken,
    /// The name of the provider the session was logged in at.
    Provider,
}

#[derive(Debug, Clone)]
pub struct HooksConfig {
    pub info: Vec<InfoMember>,
    pub redirect_urls_allowed: Vec<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    OpenIdConnect,
    OAuth20,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnauthAction {
    Auth,
    Unauthorized,
    Pass,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Normalised: starts with `/`, no trailing `/` except for the root.
    pub path: String,
    /// `None` (`upstream = ""`): the route only answers forward-auth checks; proxied
    /// requests to it get the 404 page.
    pub upstream: Option<UpstreamTarget>,
    pub auth: AuthKind,
    pub unauth_action: UnauthAction,
    pub require_claims: Vec<ClaimRule>,
    pub preserve_host: bool,
    /// `Upgrade` protocols tunnelled to the upstream (lowercase; default `websocket`).
    /// Any other `Upgrade` is dropped and the request forwarded as a plain one.
    pub upgrades: Vec<String>,
    /// Match `path` ignoring ASCII case (for upstreams such as IIS that do).
    pub case_insensitive: bool,
    /// Indexes into `Config::providers` of the providers whose sessions (or bearer
    /// tokens) this route accepts, in the order written; never empty (`[0]`, the default
    /// provider, when the route names none). More than one: browsers without a session
    /// get the login chooser.
    pub providers: Vec<usize>,
    /// Keep a browser's form POST across a login and re-submit it after the callback
    /// (`oidc::preserve_post`).
    pub preserve_post: bool,
    /// Which of [`HeadersConfig::lists`] this route sends: 0 (`[[headers.set]]`) unless
    /// the route has its own `headers`.
    pub header_list: usize,
    /// `route.host`: the hosts this route answers for; empty: every host.
    pub hosts: Vec<HostPattern>,
    /// `route.allow_anonymous_methods`: requests with these methods pass without
    /// authentication (CORS preflights: `OPTIONS`), with no identity headers.
    pub anonymous_methods: Vec<http::Method>,
}

/// A `route.host` entry: a host name, or `*.` and a domain (any name below it, not the
/// domain itself). Lowercase, no port: a request's port does not take part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// The domain with its leading dot: `*.example.com` is `.example.com`.
    Wildcard(String),
}

impl HostPattern {
    /// Parses a `route.host` entry (`None` when it is not a host name or `*.domain`).
    pub fn parse(value: &str) -> Option<HostPattern> {
        let value = value.trim().to_ascii_lowercase();
        let (wildcard, name) = match value.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, value.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let valid = !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok);
        match (valid, wildcard) {
            (false, _) => None,
            (true, true) => Some(HostPattern::Wildcard(format!(".{name}"))),
            (true, false) => Some(HostPattern::Exact(name.to_string())),
        }
    }

    /// Whether `host` (without a port, in any case) is this pattern's.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host.eq_ignore_ascii_case(name),
            HostPattern::Wildcard(domain) => {
                host.len() > domain.len()
                    && host
                        .get(host.len() - domain.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(domain))
            }
        }
    }

    /// How specific a match is: an exact name beats any wildcard, a longer domain a
    /// shorter one.
    pub fn specificity(&self) -> usize {
        match self {
            HostPattern::Exact(_) => usize::MAX,
            HostPattern::Wildcard(domain) => domain.len(),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(domain) => write!(f, "*{domain}"),
        }
    }
}

impl RouteConfig {
    /// How logs and metrics name the route: its path, after its hosts when it has some
    /// (`app.example.com,*.app.test/admin`).
    pub fn label(&self) -> String {
        let hosts: Vec<String> = self.hosts.iter().map(ToString::to_string).collect();
        format!("{}{}", hosts.join(","), self.path)
    }

    /// Whether every protocol an `Upgrade` header asks for may be tunnelled on this route.
    pub fn allows_upgrade(&self, upgrade: &http::HeaderValue) -> bool {
        let Ok(value) = upgrade.to_str() else {
            return false;
        };
        let mut protocols = value.split(',').map(|p| p.trim()).peekable();
        protocols.peek().is_some()
            && protocols.all(|p| {
                let name = p.split('/').next().unwrap_or("");
                self.upgrades.iter().any(|u| u.eq_ignore_ascii_case(name))
            })
    }
}

/// A route's upstream, split once at start into the parts every forwarded request's URI
/// is built from.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    pub url: Url,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// `Host` for the upstream (`authority`, without a default port), made once.
    pub host: http::HeaderValue,
    /// The upstream URL's path without its trailing `/` ("" for the root).
    pub base_path: String,
}

impl UpstreamTarget {
    /// Splits an http(s) URL with a host (as validated config guarantees).
    pub fn new(url: Url) -> Option<UpstreamTarget> {
        let scheme = if url.scheme() == "https" {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let host = url.host_str()?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Some(UpstreamTarget {
            scheme,
            host: http::HeaderValue::from_str(&authority).ok()?,
            authority: authority.parse().ok()?,
            base_path: url.path().trim_end_matches('/').to_string(),
            url,
        })
    }
}

/// A cookie `Domain` attribute value: a plain host name (letters, digits, `.`, `-`), so a
/// config value can never smuggle other attributes into `Set-Cookie`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieDomain(String);

impl CookieDomain {
    pub fn parse(value: &str) -> Option<CookieDomain> {
        let plain = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        plain.then(|| CookieDomain(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a problem stops the gateway from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub reason: String,
    pub severity: Severity,
}

impl ConfigProblem {
    pub fn error(key: impl Into<String>, reason: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            key: key.into(),
            reason: reason.into(),
            severity: Severity::Error,
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if self.key.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

/// Every problem found in a configuration file, with the file's name.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub source: String,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} configuration problem{}:",
            self.source,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ProviderConfig {
    /// Whether `iss` names this provider (ignoring one trailing slash: config and token
    /// spellings differ).
    pub fn is_issuer(&self, iss: &str) -> bool {
        iss.trim_end_matches('/') == self.issuer.trim_end_matches('/')
    }
}

impl Config {
    /// Reads, interpolates and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: source.clone(),
            problems: vec![ConfigProblem::error("", format!("cannot read file: {e}"))],
        })?;
        Self::from_toml(&text, &source, path.parent())
    }

    /// Parses configuration text; `source` names it in errors and `base_dir` resolves
    /// relative `_file` paths.
    pub fn from_toml(
        text: &str,
        source: &str,
        base_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        validate::from_toml(text, base_dir).map_err(|problems| ConfigError {
            source: source.to_string(),
            problems,
        })
    }

    /// The index in `providers` of the provider named `name`.
    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }

    /// The path that every redirect-URI hook request arrives on.
    pub fn redirect_path(&self) -> &str {
        self.provider.redirect_uri.path()
    }
}
