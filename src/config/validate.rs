//! Second stage of config loading: raw structs -> typed [`Config`], collecting every
//! problem with its key path instead of stopping at the first.

use super::header_set;
use super::interpolate::interpolate;
use super::raw::*;
use super::*;
use crate::authz::ClaimPath;
use std::path::Path;
use tokio::sync::Semaphore;

/// Parses `"90s"`, `"5m"`, `"8h"`, `"1d"`, `"250ms"` (a bare number means seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like \"90s\", \"5m\" or \"8h\""))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    Ok(Duration::from_secs(secs))
}

/// `route[1].upstream` style, from serde_ignored's path.
fn key_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let parent = key_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

/// Collects problems; each check records its key path.
struct Checker<'a> {
    problems: Vec<ConfigProblem>,
    base_dir: Option<&'a Path>,
}

impl Checker<'_> {
    fn problem(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(ConfigProblem::error(key, reason));
    }

    /// A problem that does not stop the gateway; reported by `check-config` and at start.
    fn warning(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.into(),
            reason: reason.into(),
            severity: Severity::Warning,
        });
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        match value.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.problem(key, e);
                default
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: T,
        options: &[(&str, T)],
    ) -> T {
        let Some(v) = value else { return default };
        if let Some((_, t)) = options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(v))
        {
            return *t;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.problem(key, format!("{v:?} is not one of {}", names.join(" | ")));
        default
    }

    fn addresses(&mut self, key: &str, value: Option<OneOrMany>, default: &str) -> Vec<SocketAddr> {
        let list = value
            .map(OneOrMany::into_vec)
            .unwrap_or_else(|| vec![default.to_string()]);
        if list.is_empty() {
            self.problem(key, "at least one address is required");
        }
        let mut out = Vec::new();
        for (i, a) in list.iter().enumerate() {
            if let Ok(addr) = a.parse::<SocketAddr>() {
                out.push(addr);
                continue;
            }
            // A host name (`localhost:8080`): its IPv4 addresses (binding ::1 as well
            // would fail where IPv6 is off), else its IPv6 ones.
            use std::net::ToSocketAddrs;
            let mut resolved: Vec<SocketAddr> = match a.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => a
                    .to_socket_addrs()
                    .map(Iterator::collect)
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            if resolved.iter().any(SocketAddr::is_ipv4) {
                resolved.retain(SocketAddr::is_ipv4);
            }
            if resolved.is_empty() {
                self.problem(
                    format!("{key}[{i}]"),
                    format!("{a:?} is not an IP:port or resolvable host:port address"),
                );
            }
            for addr in resolved {
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        }
        out
    }

    /// `f` relative to the config file's directory.
    fn path(&self, f: &str) -> std::path::PathBuf {
        match self.base_dir {
            Some(dir) if Path::new(f).is_relative() => dir.join(f),
            _ => Path::new(f).to_path_buf(),
        }
    }

    /// Reads a secret given inline or via its `_file` key; `None` when neither is set.
    fn secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<String>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(key, format!("set either {key} or {key}_file, not both"));
                None
            }
            (Some(v), None) => Some(Secret::new(v)),
            (None, Some(f)) => {
                let path = self.path(&f);
                match std::fs::read_to_string(&path) {
                    Ok(s) => Some(Secret::new(s.trim_end_matches(['\r', '\n']))),
                    Err(e) => {
                        self.problem(
                            format!("{key}_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn http_url(&mut self, key: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
                Some(u)
            }
            _ => {
                self.problem(key, format!("{value:?} is not an http(s) URL"));
                None
            }
        }
    }
}

/// Whether `url` points at a loopback host, where plain http is always allowed.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub(super) fn from_toml(text: &str, base_dir: Option<&Path>) -> Result<Config, Vec<ConfigProblem>> {
    let mut value: toml::Value = toml::from_str(text).map_err(|e| {
        vec![ConfigProblem::error(
            "",
            format!(
                "not valid TOML: {}{}",
                e.to_string().trim_end(),
                provider_forms_hint(text)
            ),
        )]
    })?;
    let mut problems = Vec::new();
    interpolate(&mut value, "", &mut problems);
    let mut unknown = Vec::new();
    let mut collect = |path: serde_ignored::Path| unknown.push(key_path(&path));
    let ignored = serde_ignored::Deserializer::new(value, &mut collect);
    let raw: Result<RawConfig, _> = serde_path_to_error::deserialize(ignored);
    for key in unknown {
        problems.push(ConfigProblem::error(key, "unknown key"));
    }
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            let key = e.path().to_string();
            problems.push(ConfigProblem::error(
                if key == "." { String::new() } else { key },
                // toml appends "\nin `key`" to type errors: the key path is already
                // printed before the reason, and one problem must stay one line.
                e.into_inner()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_string(),
            ));
            return Err(problems);
        }
    };
    let mut c = Checker { problems, base_dir };
    let mut config = build(&mut c, raw);
    if c.problems.iter().any(|p| p.severity == Severity::Error) {
        Err(c.problems)
    } else {
        config.warnings = c.problems;
        Ok(config)
    }
}

fn build(c: &mut Checker, mut raw: RawConfig) -> Config {
    let server = build_server(c, raw.server);
    let admin = raw.admin.map(|a| AdminConfig {
        listen: c.addresses("admin.listen", a.listen, "127.0.0.1:9090"),
    });
    let mut providers = build_providers(c, raw.provider);
    let route_headers: Vec<_> = raw.route.iter_mut().map(|r| r.headers.take()).collect();
    let global_headers = raw.headers.set.take();
    let mut routes = build_routes(c, raw.route, &providers, server.forward_auth_path.is_some());
    let provider = providers[0].clone();
    let logs_in = routes.is_empty() || routes.iter().any(|r| r.auth == AuthKind::OpenIdConnect);
    let session = build_session(c, raw.session, logs_in);
    let mut headers = build_headers(c, raw.headers);
    build_header_lists(c, global_headers, route_headers, &mut headers, &mut routes);
    let oauth = build_oauth(c, raw.oauth, provider.allow_http);
    provider_audiences(c, &mut providers, &oauth);
    form_post_needs_https(c, &server, &providers);
    let provider = providers[0].clone();
    let hooks = build_hooks(c, raw.hooks);
    let redis = raw.redis.and_then(|r| build_redis(c, r));
    let log = build_log(c, raw.log);
    let telemetry = raw.telemetry.and_then(|t| build_telemetry(c, t));
    if session.store == StoreKind::Redis && redis.is_none() {
        c.problem(
            "session.store",
            "\"redis\" needs a [redis] section (url = \"redis://127.0.0.1:6379/0\")",
        );
    }
    if oauth.shared_cache && redis.is_none() {
        c.problem("oauth.shared_cache", "needs a [redis] section");
    }
    if oauth.shared_cache && oauth.introspection_cache == IntrospectionCache::Off {
        c.problem(
            "oauth.shared_cache",
            "shares cached results, but oauth.introspection_cache = \"off\" caches none",
        );
    }
    if let (Some(admin), listen) = (&admin, &server.listen) {
        for a in &admin.listen {
            if listen.contains(a) && a.port() != 0 {
                c.problem(
                    "admin.listen",
                    format!("{a} is also a proxied listen address"),
                );
            }
        }
    }
    check_route_hosts(c, &server, &routes);
    check_gateway_paths(c, &server, provider.redirect_uri.path());
    if server.forward_auth_path.is_some() && session.store == StoreKind::Cookie {
        c.warning(
            "session.store",
            "\"cookie\" with server.forward_auth_path: a refreshed session is a new cookie, which reaches the browser only through a front proxy that passes the check's Set-Cookie on; \"memory\" or \"redis\" keep one cookie for the whole session",
        );
    }
    if let RedirectUri::Path(p) = &provider.redirect_uri {
        if routes.iter().all(|r| r.auth != AuthKind::OpenIdConnect) && p.is_empty() {
            c.problem("provider.redirect_uri", "must not be empty");
        }
    }
    Config {
        server,
        admin,
        provider,
        providers,
        session,
        headers,
        oauth,
        hooks,
        routes,
        redis,
        log,
        telemetry,
        warnings: Vec::new(),
    }
}

/// `[telemetry]`. In a binary built without the `otlp` feature the section is an error:
/// traces it asks for would silently never leave.
fn build_telemetry(c: &mut Checker, raw: RawTelemetry) -> Option<TelemetryConfig> {
    let key = "telemetry.otlp_endpoint";
    let endpoint = if !cfg!(feature = "otlp") {
        c.problem(
            key,
            "this binary was built without the otlp feature, so it cannot export traces: \
             remove [telemetry], or run a build with it (cargo build --features otlp; the \
             Docker image and the Debian package have it)",
        );
        None
    } else {
        match raw.otlp_endpoint.as_deref() {
            None => {
                c.problem(
                    key,
                    "required: the collector's OTLP/HTTP URL (e.g. \"http://collector:4318\")",
                );
                None
            }
            Some(v) => c.http_url(key, v).filter(|u| {
                let clean = u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
                    && u.fragment().is_none();
                if !clean {
                    c.problem(
                        key,
                        format!("{v:?}: only scheme, host, port and path (no credentials, query or fragment)"),
                    );
                }
                clean
            }),
        }
    };
    let service_name = raw.service_name.unwrap_or_else(|| "oidc-gateway".into());
    if service_name.trim().is_empty() {
        c.problem("telemetry.service_name", "must not be empty");
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        c.problem(
            "telemetry.sample_ratio",
            format!("{sample_ratio} is not between 0.0 and 1.0"),
        );
    }
    Some(TelemetryConfig {
        otlp_endpoint: endpoint?,
        service_name,
        sample_ratio,
    })
}

fn build_log(c: &mut Checker, raw: RawLog) -> LogConfig {
    let default = LogConfig::default();
    let format = c.choice(
        "log.format",
        raw.format.as_deref(),
        default.format,
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    );
    let level = match raw.level {
        Some(level) => {
            if let Err(e) = parse_log_level(&level) {
                c.problem("log.level", e);
            }
            level
        }
        None => default.level,
    };
    LogConfig {
        format,
        level,
        access: raw.access.unwrap_or(default.access),
        hash_sub: raw.hash_sub.unwrap_or(default.hash_sub),
    }
}

/// The most `server.workers` (threads serving connections) a config may ask for.
const MAX_WORKERS: u64 = 1024;

fn build_server(c: &mut Checker, raw: RawServer) -> ServerConfig {
    let listen = c.addresses("server.listen", raw.listen, "127.0.0.1:8080");
    let (tls, redirect_http_listen, hsts) = build_listener_tls(
        c,
        raw.tls_cert_file,
        raw.tls_key_file,
        raw.redirect_http_listen,
        raw.hsts,
    );
    for a in &redirect_http_listen {
        if listen.contains(a) && a.port() != 0 {
            c.problem(
                "server.redirect_http_listen",
                format!("{a} is also a proxied listen address"),
            );
        }
    }
    let public_url = raw.public_url.and_then(|u| {
        let url = c.http_url("server.public_url", &u)?;
        if url.path() != "/" || url.query().is_some() {
            c.problem(
                "server.public_url",
                "must be scheme://host[:port] without a path",
            );
        }
        Some(url)
    });
    let mut trusted_proxies = Vec::new();
    for (i, p) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
        let parsed = p
            .parse::<IpNet>()
            .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => c.problem(
                format!("server.trusted_proxies[{i}]"),
                format!("{p:?} is not a CIDR or IP address"),
            ),
        }
    }
    let mut allowed_hosts = Vec::new();
    for (i, h) in raw.allowed_hosts.unwrap_or_default().iter().enumerate() {
        let plain = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if plain {
            allowed_hosts.push(h.to_ascii_lowercase());
        } else {
            c.problem(
                format!("server.allowed_hosts[{i}]"),
                format!("{h:?} is not a host or host:port"),
            );
        }
    }
    ServerConfig {
        listen,
        public_url,
        trusted_proxies,
        allowed_hosts,
        upstream_timeout: c.duration(
            "server.upstream_timeout",
            raw.upstream_timeout.as_deref(),
            Duration::from_secs(60),
        ),
        upstream_connect_timeout: c.duration(
            "server.upstream_connect_timeout",
            raw.upstream_connect_timeout.as_deref(),
            Duration::from_secs(5),
        ),
        shutdown_grace: c.duration(
            "server.shutdown_grace",
            raw.shutdown_grace.as_deref(),
            Duration::from_secs(30),
        ),
        idle_timeout: keepalive_timeout(c, raw.keepalive_timeout, raw.idle_timeout),
        max_connections: match raw.max_connections {
            Some(0) => {
                c.problem("server.max_connections", "must be at least 1");
                None
            }
            Some(n) => Some(
                usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS),
            ),
            None => None,
        },
        workers: match raw.workers {
            Some(n) if !(1..=MAX_WORKERS).contains(&n) => {
                c.problem(
                    "server.workers",
                    format!("must be between 1 and {MAX_WORKERS} (default: one per core)"),
                );
                1
            }
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        tls,
        redirect_http_listen,
        hsts,
        forward_auth_path: gateway_path(c, "server.forward_auth_path", raw.forward_auth_path),
        login_path: gateway_path(c, "server.login_path", raw.login_path),
    }
}

/// A path the gateway answers itself (`server.forward_auth_path`, `server.login_path`):
/// empty or unset is off; else it starts with `/`, has no query and no trailing `/`.
fn gateway_path(c: &mut Checker, key: &str, raw: Option<String>) -> Option<String> {
    let path = raw.filter(|p| !p.is_empty())?;
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        c.problem(
            key,
            format!("{path:?} must be a path starting with / (no query)"),
        );
        return None;
    }
    if path == "/" || path.ends_with('/') {
        c.problem(
            key,
            format!("{path:?} must not end with / (and cannot be /)"),
        );
        return None;
    }
    let odd = path.contains("//")
        || path.contains(['%', '\\', ';'])
        || path.split('/').any(|s| s == "." || s == "..")
        || !path.bytes().all(|b| b.is_ascii_graphic());
    if odd {
        c.problem(
            key,
            format!("{path:?} must be in normal form (no //, ., .., %, \\ or ;)"),
        );
        return None;
    }
    Some(path)
}

/// The paths the gateway answers itself must be distinct, and forward-auth checks are
/// believed only from `server.trusted_proxies` (the original request comes in headers).
fn check_gateway_paths(c: &mut Checker, server: &ServerConfig, redirect_path: &str) {
    let paths = [
        ("server.forward_auth_path", &server.forward_auth_path),
        ("server.login_path", &server.login_path),
    ];
    for (key, path) in paths {
        if path.as_deref() == Some(redirect_path) {
            c.problem(key, "is the redirect URI's path (provider.redirect_uri)");
        }
    }
    if server.forward_auth_path.is_some() && server.forward_auth_path == server.login_path {
        c.problem("server.login_path", "is also server.forward_auth_path");
    }
    if server.forward_auth_path.is_some() && server.trusted_proxies.is_empty() {
        c.problem(
            "server.forward_auth_path",
            "needs server.trusted_proxies: the original request is taken from the front proxy's X-Forwarded-* or X-Original-* headers, believed only from trusted addresses",
        );
    }
}

/// `server.keepalive_timeout`, or its former name `server.idle_timeout` (still accepted;
/// setting both is an error, as the file would say two things).
fn keepalive_timeout(
    c: &mut Checker,
    keepalive: Option<String>,
    alias: Option<String>,
) -> Duration {
    let (key, value) = match (keepalive, alias) {
        (Some(keepalive), Some(_)) => {
            c.problem(
                "server.idle_timeout",
                "is the former name of server.keepalive_timeout, which is also set: keep only keepalive_timeout",
            );
            ("server.keepalive_timeout", Some(keepalive))
        }
        (None, Some(alias)) => ("server.idle_timeout", Some(alias)),
        (keepalive, None) => ("server.keepalive_timeout", keepalive),
    };
    let timeout = c.duration(key, value.as_deref(), Duration::from_secs(120));
    if timeout.is_zero() {
        c.problem(key, "must be longer than 0s");
    }
    timeout
}

/// `tls_cert_file` + `tls_key_file` (both or neither), loaded now so a bad file is a
/// config error; `redirect_http_listen` and `hsts` only make sense with TLS.
fn build_listener_tls(
    c: &mut Checker,
    cert: Option<String>,
    key: Option<String>,
    redirect: Option<OneOrMany>,
    hsts: Option<String>,
) -> (Option<ListenerTls>, Vec<SocketAddr>, Option<Duration>) {
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => {
            let tls = ListenerTls {
                cert_file: c.path(&cert),
                key_file: c.path(&key),
            };
            match load_certified_key(&tls.cert_file, &tls.key_file) {
                Ok(_) => Some(tls),
                Err(e) => {
                    c.problem("server.tls_cert_file", e);
                    None
                }
            }
        }
        (None, None) => None,
        (Some(_), None) => {
            c.problem(
                "server.tls_key_file",
                "is required with server.tls_cert_file",
            );
            None
        }
        (None, Some(_)) => {
            c.problem(
                "server.tls_cert_file",
                "is required with server.tls_key_file",
            );
            None
        }
    };
    let redirect = match redirect {
        Some(list) => c.addresses("server.redirect_http_listen", Some(list), ""),
        None => Vec::new(),
    };
    if !redirect.is_empty() && tls.is_none() {
        c.problem(
            "server.redirect_http_listen",
            "redirects to https, so it needs server.tls_cert_file and server.tls_key_file",
        );
    }
    let hsts = hsts.map(|h| c.duration("server.hsts", Some(&h), Duration::ZERO));
    if hsts.is_some() && tls.is_none() {
        c.problem(
            "server.hsts",
            "is sent on TLS responses only: set server.tls_cert_file and server.tls_key_file",
        );
    }
    (tls, redirect, hsts.filter(|d| !d.is_zero()))
}

/// A `form_post` login's state cookie is `SameSite=None; Secure` (the provider's POST is
/// cross-site), which browsers keep only over https or on localhost: warn when nothing
/// says the gateway is reached over https (its own TLS, an https `public_url` or
/// `redirect_uri`, or a TLS-terminating proxy in `trusted_proxies`).
fn form_post_needs_https(c: &mut Checker, server: &ServerConfig, providers: &[ProviderConfig]) {
    let https = server.tls.is_some()
        || server
            .public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
        || !server.trusted_proxies.is_empty();
    for (i, p) in providers.iter().enumerate() {
        if p.response_mode != ResponseMode::FormPost {
            continue;
        }
        let on_https = match &p.redirect_uri {
            RedirectUri::Absolute(u) => u.scheme() == "https" || is_loopback(u),
            RedirectUri::Path(_) => https,
        };
        if !on_https {
            let prefix = if providers.len() == 1 {
                "provider".to_string()
            } else {
                format!("provider[{i}]")
            };
            c.warning(
                format!("{prefix}.response_mode"),
                "form_post needs the gateway on https: the login state cookie must be SameSite=None; Secure, \
                 which browsers keep only over https (and on localhost); set server.tls_cert_file, an https \
                 server.public_url, or trusted_proxies for a TLS-terminating proxy",
            );
        }
    }
}

/// The client-assertion keys of a provider entry, taken out before the rest is built.
struct AssertionRaw {
    private_key_file: Option<String>,
    private_key_kid: Option<String>,
    signing_alg: Option<String>,
    assertion_audience: bool,
}

/// The signing material of a JWT client assertion (`private_key_jwt`: the key of
/// `private_key_file`; `client_secret_jwt`: the HMAC algorithm over the client secret).
/// The assertion keys are errors with the other methods, so a forgotten
/// `token_endpoint_auth` does not silently send the secret instead.
fn client_assertion(
    c: &mut Checker,
    prefix: &str,
    method: TokenEndpointAuth,
    no_secret: bool,
    raw: &AssertionRaw,
) -> (Option<ClientKey>, jsonwebtoken::Algorithm) {
    let hmac = jsonwebtoken::Algorithm::HS256;
    let assertion_keys = [
        ("private_key_file", raw.private_key_file.is_some()),
        ("private_key_kid", raw.private_key_kid.is_some()),
        ("signing_alg", raw.signing_alg.is_some()),
        ("assertion_audience", raw.assertion_audience),
    ];
    match method {
        TokenEndpointAuth::ClientSecretBasic | TokenEndpointAuth::ClientSecretPost => {
            for (key, set) in assertion_keys {
                if set {
                    c.problem(
                        format!("{prefix}.{key}"),
                        "is only used with token_endpoint_auth = \"private_key_jwt\" or \"client_secret_jwt\"",
                    );
                }
            }
            (None, hmac)
        }
        TokenEndpointAuth::ClientSecretJwt => {
            for (key, set) in &assertion_keys[..2] {
                if *set {
                    c.problem(
                        format!("{prefix}.{key}"),
                        "is only used with token_endpoint_auth = \"private_key_jwt\"",
                    );
                }
            }
            if no_secret {
                c.problem(
                    format!("{prefix}.client_secret"),
                    "is required with token_endpoint_auth = \"client_secret_jwt\" (the assertion is signed with it)",
                );
            }
            let alg = c.choice(
                &format!("{prefix}.signing_alg"),
                raw.signing_alg.as_deref(),
                hmac,
                &[
                    ("HS256", jsonwebtoken::Algorithm::HS256),
                    ("HS384", jsonwebtoken::Algorithm::HS384),
                    ("HS512", jsonwebtoken::Algorithm::HS512),
                ],
            );
            (None, alg)
        }
        TokenEndpointAuth::PrivateKeyJwt => {
            let key = format!("{prefix}.private_key_file");
            let Some(file) = raw.private_key_file.as_deref() else {
                c.problem(
                    key,
                    "is required with token_endpoint_auth = \"private_key_jwt\"",
                );
                return (None, hmac);
            };
            let path = c.path(file);
            let pem = match std::fs::read(&path) {
                Ok(pem) => pem,
                Err(e) => {
                    c.problem(key, format!("cannot read {}: {e}", path.display()));
                    return (None, hmac);
                }
            };
            if raw.private_key_kid.as_deref() == Some("") {
                c.problem(format!("{prefix}.private_key_kid"), "must not be empty");
            }
            let kid = raw.private_key_kid.as_deref().filter(|k| !k.is_empty());
            match ClientKey::from_pem(&pem, raw.signing_alg.as_deref(), kid) {
                Ok(loaded) => (Some(loaded), hmac),
                Err(reason) => {
                    // An algorithm the key cannot sign is the algorithm's mistake.
                    let at = if reason.contains("cannot sign") {
                        format!("{prefix}.signing_alg")
                    } else {
                        key
                    };
                    c.problem(at, format!("{}: {reason}", path.display()));
                    (None, hmac)
                }
            }
        }
    }
}

/// One provider entry, its keys reported under `prefix` (`provider` or `provider[1]`);
/// `name` is checked by [`build_providers`].
fn build_provider(
    c: &mut Checker,
    prefix: &str,
    name: String,
    mut raw: RawProvider,
) -> ProviderConfig {
    let assertion_raw = AssertionRaw {
        private_key_file: raw.private_key_file.take(),
        private_key_kid: raw.private_key_kid.take(),
        signing_alg: raw.signing_alg.take(),
        assertion_audience: raw.assertion_audience.is_some(),
    };
    let allow_http = raw.allow_http.unwrap_or(false);
    let issuer = match raw.issuer.as_deref() {
        None => {
            c.problem(format!("{prefix}.issuer"), "is required");
            None
        }
        Some(i) => c.http_url(&format!("{prefix}.issuer"), i).inspect(|u| {
            if u.scheme() == "http" && !allow_http && !is_loopback(u) {
                c.problem(
                    format!("{prefix}.issuer"),
                    format!("plain http is only allowed on loopback hosts (set {prefix}.allow_http = true for development setups)"),
                );
            }
        }),
    };
    let client_id = raw.client_id.unwrap_or_default();
    if client_id.is_empty() {
        c.problem(format!("{prefix}.client_id"), "is required");
    }
    let client_secret = c
        .secret(
            &format!("{prefix}.client_secret"),
            raw.client_secret.take(),
            raw.client_secret_file.take(),
        )
        .unwrap_or_default();
    let token_endpoint_auth = c.choice(
        &format!("{prefix}.token_endpoint_auth"),
        raw.token_endpoint_auth.as_deref(),
        TokenEndpointAuth::ClientSecretBasic,
        &[
            ("client_secret_basic", TokenEndpointAuth::ClientSecretBasic),
            ("client_secret_post", TokenEndpointAuth::ClientSecretPost),
            ("private_key_jwt", TokenEndpointAuth::PrivateKeyJwt),
            ("client_secret_jwt", TokenEndpointAuth::ClientSecretJwt),
        ],
    );
    let (private_key, secret_jwt_alg) = client_assertion(
        c,
        prefix,
        token_endpoint_auth,
        client_secret.expose().is_empty(),
        &assertion_raw,
    );
    let assertion_audience = c.choice(
        &format!("{prefix}.assertion_audience"),
        raw.assertion_audience.as_deref(),
        AssertionAudience::TokenEndpoint,
        &[
            ("token_endpoint", AssertionAudience::TokenEndpoint),
            ("issuer", AssertionAudience::Issuer),
        ],
    );
    let par = c.choice(
        &format!("{prefix}.par"),
        raw.par.as_deref(),
        Par::Auto,
        &[
            ("auto", Par::Auto),
            ("always", Par::Always),
            ("never", Par::Never),
        ],
    );
    let response_mode = c.choice(
        &format!("{prefix}.response_mode"),
        raw.response_mode.as_deref(),
        ResponseMode::Query,
        &[
            ("query", ResponseMode::Query),
            ("form_post", ResponseMode::FormPost),
        ],
    );
    let redirect_raw = raw
        .redirect_uri
        .unwrap_or_else(|| "/oauth2/callback".into());
    let redirect_uri = if redirect_raw.starts_with('/') {
        if redirect_raw.starts_with("//") || redirect_raw.contains(['?', '#']) {
            c.problem(
                format!("{prefix}.redirect_uri"),
                "must be a plain path or an absolute URL",
            );
        }
        RedirectUri::Path(redirect_raw)
    } else {
        match c.http_url(&format!("{prefix}.redirect_uri"), &redirect_raw) {
            Some(u) if u.query().is_none() && u.fragment().is_none() => RedirectUri::Absolute(u),
            Some(_) => {
                c.problem(
                    format!("{prefix}.redirect_uri"),
                    "must not have a query or fragment",
                );
                RedirectUri::Path("/oauth2/callback".into())
            }
            None => RedirectUri::Path("/oauth2/callback".into()),
        }
    };
    if let RedirectUri::Path(p) = &redirect_uri {
        if p == "/" {
            c.problem(
                format!("{prefix}.redirect_uri"),
                "must not be \"/\": it would shadow every route",
            );
        }
    }
    let scopes = raw.scopes.unwrap_or_else(|| {
        ["openid", "profile", "email"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    if !scopes.iter().any(|s| s == "openid") {
        c.problem(format!("{prefix}.scopes"), "must include \"openid\"");
    }
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty() || s.contains(char::is_whitespace) {
            c.problem(
                format!("{prefix}.scopes[{i}]"),
                "a scope is one non-empty word",
            );
        }
    }
    let pkce = c.choice(
        &format!("{prefix}.pkce"),
        raw.pkce.as_deref(),
        Pkce::S256,
        &[
            ("S256", Pkce::S256),
            ("plain", Pkce::Plain),
            ("none", Pkce::None),
        ],
    );
    let reserved = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "response_mode",
    ];
    let mut auth_params = Vec::new();
    for (k, v) in raw.auth_params.unwrap_or_default() {
        if reserved.contains(&k.as_str()) {
            c.problem(
                format!("{prefix}.auth_params.{k}"),
                "is set by the gateway and cannot be overridden",
            );
        } else {
            auth_params.push((k, v));
        }
    }
    let written = raw.title.is_some();
    let title = raw
        .title
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|| name.clone());
    let bad =
        title.is_empty() || title.chars().any(char::is_control) || title.chars().count() > 200;
    // A missing name is reported as such, not again as its title.
    if bad && (written || !name.is_empty()) {
        c.problem(
            format!("{prefix}.title"),
            "must be 1 to 200 characters without control characters",
        );
    }
    let audience = raw
        .audience
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
    ProviderConfig {
        name,
        title,
        audience,
        issuer: issuer
            .map(|_| raw.issuer.clone().unwrap_or_default())
            .unwrap_or_default(),
        client_id,
        client_secret,
        token_endpoint_auth,
        private_key,
        secret_jwt_alg,
        assertion_audience,
        par,
        response_mode,
        redirect_uri,
        scopes,
        pkce,
        auth_params,
        userinfo: raw.userinfo.unwrap_or(true),
        allow_http,
        max_concurrent_calls: match raw.max_concurrent_calls {
            Some(0) => {
                c.problem(
                    format!("{prefix}.max_concurrent_calls"),
                    "must be at least 1",
                );
                1
            }
            Some(n) => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS),
            None => 64,
        },
        jwks_refresh: Some(c.duration(
            &format!("{prefix}.jwks_refresh"),
            raw.jwks_refresh.as_deref(),
            Duration::from_secs(3600),
        ))
        .filter(|d| !d.is_zero()),
        trusted_audiences: raw
            .trusted_audiences
            .unwrap_or_default()
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect(),
        http_timeout: c.duration(
            &format!("{prefix}.http_timeout"),
            raw.http_timeout.as_deref(),
            Duration::from_secs(10),
        ),
    }
}

/// `needs_passphrase`: some route logs users in. A gateway with only bearer and open
/// routes keeps no sessions, so a missing passphrase there is a random one per process.
fn build_session(c: &mut Checker, raw: RawSession, needs_passphrase: bool) -> SessionConfig {
    let single = c.secret("session.passphrase", raw.passphrase, raw.passphrase_file);
    let passphrases: Vec<Secret> = match (single, raw.passphrases) {
        (Some(_), Some(_)) => {
            c.problem(
                "session.passphrases",
                "set either session.passphrase or session.passphrases, not both",
            );
            Vec::new()
        }
        (Some(p), None) => vec![p],
        (None, Some(list)) => {
            if list.is_empty() {
                c.problem("session.passphrases", "must list at least one passphrase");
            }
            list.into_iter().map(Secret::new).collect()
        }
        (None, None) if needs_passphrase => {
            c.problem("session.passphrase", "is required (or session.passphrases)");
            Vec::new()
        }
        (None, None) => vec![Secret::new(crate::secret::random_id())],
    };
    let single = passphrases.len() == 1;
    for (i, p) in passphrases.iter().enumerate() {
        let key = if single {
            "session.passphrase".to_string()
        } else {
            format!("session.passphrases[{i}]")
        };
        if p.expose().is_empty() {
            c.problem(key, "must not be empty");
        } else if p.expose().len() < 16 {
            // Stretching slows guessing down; it does not make a short secret strong. An
            // operator migrating a mod_auth_openidc config (which sets no minimum) can
            // say so explicitly and gets a warning instead.
            let why = "passphrase is shorter than 16 characters: use 32 random characters";
            if raw.allow_weak_passphrase.unwrap_or(false) {
                c.warning(key, why);
            } else {
                c.problem(
                    key,
                    format!("{why} (or set session.allow_weak_passphrase = true)"),
                );
            }
        }
    }
    let store = c.choice(
        "session.store",
        raw.store.as_deref(),
        StoreKind::Cookie,
        &[
            ("cookie", StoreKind::Cookie),
            ("memory", StoreKind::Memory),
            ("redis", StoreKind::Redis),
        ],
    );
    for (key, set) in [
        ("redis_url", raw.redis_url.is_some()),
        ("redis_prefix", raw.redis_prefix.is_some()),
        ("redis_timeout", raw.redis_timeout.is_some()),
    ] {
        if set {
            c.problem(
                format!("session.{key}"),
                format!(
                    "moved: use redis.{} in a [redis] section{}",
                    key.trim_start_matches("redis_"),
                    if key == "redis_prefix" {
                        " (session keys are now <prefix>session:<id>: to keep stored \
                         sessions, drop the trailing \"session:\" from the old value)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
    let cookie_name = raw.cookie_name.unwrap_or_else(|| "oidc_session".into());
    check_cookie_name(c, "session.cookie_name", &cookie_name);
    let state_cookie_prefix = raw
        .state_cookie_prefix
        .unwrap_or_else(|| "oidc_state_".into());
    check_cookie_name(c, "session.state_cookie_prefix", &state_cookie_prefix);
    if state_cookie_prefix.starts_with(&cookie_name)
        || cookie_name.starts_with(&state_cookie_prefix)
    {
        c.problem(
            "session.state_cookie_prefix",
            "must not share a prefix with session.cookie_name",
        );
    }
    let same_site = c.choice(
        "session.same_site",
        raw.same_site.as_deref(),
        SameSite::Lax,
        &[
            ("lax", SameSite::Lax),
            ("strict", SameSite::Strict),
            ("none", SameSite::None),
        ],
    );
    let inactivity_timeout = c.duration(
        "session.inactivity_timeout",
        raw.inactivity_timeout.as_deref(),
        Duration::from_secs(300),
    );
    let max_duration = c.duration(
        "session.max_duration",
        raw.max_duration.as_deref(),
        Duration::from_secs(8 * 3600),
    );
    if inactivity_timeout.is_zero() {
        c.problem("session.inactivity_timeout", "must be greater than zero");
    }
    if max_duration.is_zero() {
        c.problem("session.max_duration", "must be greater than zero");
    }
    SessionConfig {
        passphrases,
        store,
        memory_capacity: raw.memory_capacity.unwrap_or(100_000),
        cookie_name,
        cookie_domain: raw.cookie_domain.filter(|d| !d.is_empty()).and_then(|d| {
            let domain = CookieDomain::parse(&d);
            if domain.is_none() {
                c.problem(
                    "session.cookie_domain",
                    format!("{d:?} is not a plain host name (letters, digits, '.', '-')"),
                );
            }
            domain
        }),
        state_cookie_prefix,
        same_site,
        inactivity_timeout,
        max_duration,
        refresh_before_expiry: c.duration(
            "session.refresh_before_expiry",
            raw.refresh_before_expiry.as_deref(),
            Duration::from_secs(30),
        ),
        preserve_post_max_bytes: preserve_post_max_bytes(c, raw.preserve_post_max_bytes),
    }
}

/// Default of `session.preserve_post_max_bytes`.
const PRESERVE_POST_MAX_BYTES: u64 = 64 << 20;
/// The least `session.preserve_post_max_bytes` may be: room for a dozen forms of the
/// largest size kept (64 KiB each, about 90 KiB sealed).
const PRESERVE_POST_MIN_BYTES: u64 = 1 << 20;

/// `session.preserve_post_max_bytes`: the byte bound of the kept form posts.
fn preserve_post_max_bytes(c: &mut Checker, raw: Option<u64>) -> u64 {
    match raw {
        None => PRESERVE_POST_MAX_BYTES,
        Some(n) if n < PRESERVE_POST_MIN_BYTES => {
            c.problem(
                "session.preserve_post_max_bytes",
                format!(
                    "{n} is too small: at least {PRESERVE_POST_MIN_BYTES} (1 MiB), room for \
                     a dozen kept forms of the largest size (64 KiB each)"
                ),
            );
            PRESERVE_POST_MAX_BYTES
        }
        Some(n) => n,
    }
}

/// `route.preserve_post`: only where an unauthenticated browser is sent to log in.
fn route_preserve_post(
    c: &mut Checker,
    key: &str,
    raw: Option<bool>,
    auth: AuthKind,
    unauth_action: UnauthAction,
) -> bool {
    let on = raw.unwrap_or(false);
    if on && auth != AuthKind::OpenIdConnect {
        c.problem(
            key,
            "only applies to auth = \"openid-connect\" routes (a login keeps the form)",
        );
    } else if on && unauth_action != UnauthAction::Auth {
        c.problem(
            key,
            "needs unauth_action = \"auth\": this route never sends a browser to log in, \
             so no form would be kept",
        );
    }
    on
}

/// `[redis]`: where Redis is (a URL, or Sentinel), its credentials and TLS files, the key
/// prefix and the timeout. Problems never quote a URL: it may hold a password.
fn build_redis(c: &mut Checker, raw: RawRedis) -> Option<RedisConfig> {
    let sentinels = raw.sentinels.unwrap_or_default();
    let url = match raw.url.as_deref() {
        Some(u) => Some(redis_url(c, "redis.url", u)?),
        None if sentinels.is_empty() => Some(Url::parse(DEFAULT_REDIS_URL).expect("valid default")),
        None => None,
    };
    let tls = url.as_ref().is_some_and(|u| u.scheme() == "rediss");
    let db = url
        .as_ref()
        .map(|u| u.path().trim_start_matches('/'))
        .filter(|p| !p.is_empty())
        .map_or(0, |p| p.parse::<i64>().unwrap_or(0));
    let endpoint = if sentinels.is_empty() {
        if raw.master_name.is_some() {
            c.problem("redis.master_name", "is only used with redis.sentinels");
        }
        let u = url.as_ref().expect("a url without sentinels");
        if u.host_str().is_none_or(str::is_empty) {
            c.problem(
                "redis.url",
                "has no host, as in redis://127.0.0.1:6379/0 (or set redis.sentinels)",
            );
        }
        RedisEndpoint::Direct {
            host: u.host_str().unwrap_or_default().to_string(),
            port: u.port().unwrap_or(6379),
        }
    } else {
        if url
            .as_ref()
            .is_some_and(|u| u.host_str().is_some_and(|h| !h.is_empty()))
        {
            c.warning(
                "redis.url",
                "its host is not used: the master is asked of redis.sentinels",
            );
        }
        let mut list = Vec::new();
        for (i, s) in sentinels.iter().enumerate() {
            match s.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
                Some((h, Ok(p))) if !h.is_empty() && p != 0 => {
                    list.push((h.trim_matches(['[', ']']).to_string(), p))
                }
                _ => c.problem(
                    format!("redis.sentinels[{i}]"),
                    format!("{s:?} is not host:port, as in \"127.0.0.1:26379\""),
                ),
            }
        }
        let master_name = raw.master_name.unwrap_or_default();
        if master_name.is_empty() {
            c.problem(
                "redis.master_name",
                "is required with redis.sentinels (the name the sentinels monitor)",
            );
        }
        RedisEndpoint::Sentinel {
            sentinels: list,
            master_name,
        }
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let username = c
        .secret("redis.username", raw.username, raw.username_file)
        .or_else(|| {
            url.as_ref()
                .map(|u| u.username())
                .filter(|n| !n.is_empty())
                .map(|n| Secret::new(decode(n)))
        });
    let password = c
        .secret("redis.password", raw.password, raw.password_file)
        .or_else(|| {
            url.as_ref()
                .and_then(|u| u.password())
                .map(|p| Secret::new(decode(p)))
        });
    let mut read = |key: &str, file: &Option<String>| -> Option<Vec<u8>> {
        let f = file.as_ref()?;
        let path = c.path(f);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.windows(10).any(|w| w == b"-----BEGIN") => Some(bytes),
            Ok(_) => {
                c.problem(key, format!("{} is not PEM", path.display()));
                None
            }
            Err(e) => {
                c.problem(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    };
    let ca_pem = read("redis.ca_file", &raw.ca_file);
    let cert = read("redis.cert_file", &raw.cert_file);
    let key = read("redis.key_file", &raw.key_file);
    let client_pem = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, Secret::new(String::from_utf8_lossy(&key)))),
        (None, None) => None,
        _ => {
            if raw.cert_file.is_some() != raw.key_file.is_some() {
                c.problem(
                    "redis.cert_file",
                    "redis.cert_file and redis.key_file go together",
                );
            }
            None
        }
    };
    if !tls && (raw.ca_file.is_some() || raw.cert_file.is_some()) {
        c.problem(
            "redis.url",
            "ca_file/cert_file need TLS: use a rediss:// URL",
        );
    }
    let timeout = c.duration(
        "redis.timeout",
        raw.timeout.as_deref(),
        Duration::from_secs(2),
    );
    if timeout.is_zero() {
        c.problem("redis.timeout", "must be greater than zero");
    }
    Some(RedisConfig {
        endpoint,
        db,
        username,
        password,
        tls: tls.then_some(RedisTls { ca_pem, client_pem }),
        prefix: raw.prefix.unwrap_or_else(|| "oidc_gateway:".into()),
        timeout,
    })
}

/// `redis.url` when not set (and no sentinels): a Redis on this host, database 0.
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// A `redis://` or `rediss://` `[user:password@]host[:port][/db]` URL (with sentinels,
/// the host may be left out: `redis:///0`).
fn redis_url(c: &mut Checker, key: &str, value: &str) -> Option<Url> {
    let Ok(url) = Url::parse(value) else {
        c.problem(
            key,
            "is not a URL like \"redis://127.0.0.1:6379/0\" (value not shown: it may hold a password)",
        );
        return None;
    };
    if !matches!(url.scheme(), "redis" | "rediss") {
        c.problem(
            key,
            format!("scheme {:?} is not redis:// or rediss://", url.scheme()),
        );
        return None;
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        c.problem(
            key,
            "the path must be a database number, as in redis://127.0.0.1:6379/0",
        );
        return None;
    }
    if url.query().is_some() {
        c.problem(
            key,
            "takes no query: set username, password and TLS files as [redis] keys",
        );
        return None;
    }
    if url.host_str().is_some_and(|h| !h.is_empty()) {
        // Whatever else the client would refuse (a wildcard host). Its messages name the
        // part, never the password.
        if let Err(e) = redis::IntoConnectionInfo::into_connection_info(url.clone()) {
            c.problem(key, format!("is not a usable redis URL: {e}"));
            return None;
        }
    }
    Some(url)
}

fn check_cookie_name(c: &mut Checker, key: &str, name: &str) {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        c.problem(key, format!("{name:?} is not a valid cookie name"));
    }
}

fn is_header_name(s: &str) -> bool {
    http::HeaderName::from_bytes(s.as_bytes()).is_ok()
}

fn build_headers(c: &mut Checker, raw: RawHeaders) -> HeadersConfig {
    let claim_prefix = raw.claim_prefix.unwrap_or_else(|| "OIDC_CLAIM_".into());
    if !claim_prefix.is_empty() && !is_header_name(&claim_prefix) {
        c.problem("headers.claim_prefix", "is not valid in a header name");
    }
    if claim_prefix.is_empty() {
        c.problem(
            "headers.claim_prefix",
            "must not be empty: client-sent claim headers could not be told apart",
        );
    }
    let mut pass_id = [false; 3];
    for (i, v) in raw
        .pass_id_token
        .unwrap_or_else(|| vec!["claims".into()])
        .iter()
        .enumerate()
    {
        match v.as_str() {
            "claims" => pass_id[0] = true,
            "payload" => pass_id[1] = true,
            "serialized" => pass_id[2] = true,
            _ => c.problem(
                format!("headers.pass_id_token[{i}]"),
                format!("{v:?} is not one of claims | payload | serialized"),
            ),
        }
    }
    let mut pass_ui = [false; 2];
    for (i, v) in raw
        .pass_userinfo
        .unwrap_or_else(|| vec!["claims".into()])
        .iter()
        .enumerate()
    {
        match v.as_str() {
            "claims" => pass_ui[0] = true,
            "json" => pass_ui[1] = true,
            _ => c.problem(
                format!("headers.pass_userinfo[{i}]"),
                format!("{v:?} is not one of claims | json"),
            ),
        }
    }
    let encoding = c.choice(
        "headers.encoding",
        raw.encoding.as_deref(),
        Encoding::None,
        &[
            ("none", Encoding::None),
            ("latin1", Encoding::Latin1),
            ("base64url", Encoding::Base64Url),
        ],
    );
    let remote_user_header = raw
        .remote_user_header
        .filter(|h| !h.is_empty())
        .and_then(|h| match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                c.problem(
                    "headers.remote_user_header",
                    format!("{h:?} is not a header name"),
                );
                None
            }
        });
    HeadersConfig {
        claim_prefix,
        claim_delimiter: raw.claim_delimiter.unwrap_or_else(|| ",".into()),
        pass_access_token: raw.pass_access_token.unwrap_or(true),
        id_token_claims: pass_id[0],
        id_token_payload: pass_id[1],
        id_token_serialized: pass_id[2],
        userinfo_claims: pass_ui[0],
        userinfo_json: pass_ui[1],
        pass_refresh_token: raw.pass_refresh_token.unwrap_or(false),
        encoding,
        remote_user_claim: raw.remote_user_claim.unwrap_or_else(|| "sub".into()),
        remote_user_header,
        lists: vec![Vec::new()],
    }
}

/// `[[headers.set]]` and each route's `headers` into `headers.lists`, each route pointed at
/// the list it sends (its own replaces the global one).
fn build_header_lists(
    c: &mut Checker,
    global: Option<Vec<RawSetHeader>>,
    per_route: Vec<Option<Vec<RawSetHeader>>>,
    headers: &mut HeadersConfig,
    routes: &mut [RouteConfig],
) {
    let mut keys = vec!["headers.set".to_string()];
    headers.lists = vec![header_list(
        c,
        &keys[0],
        global.unwrap_or_default(),
        headers,
    )];
    for (i, (raw, route)) in per_route.into_iter().zip(routes.iter_mut()).enumerate() {
        if let Some(raw) = raw {
            let key = format!("route[{i}].headers");
            let list = header_list(c, &key, raw, headers);
            route.header_list = headers.lists.len();
            headers.lists.push(list);
            keys.push(key);
        }
    }
    for (i, route) in routes.iter().enumerate() {
        if route.auth != AuthKind::OAuth20 {
            continue;
        }
        let list = &headers.lists[route.header_list];
        for (j, entry) in list.iter().enumerate() {
            if let HeaderSource::Template(parts) = &entry.source {
                if parts.contains(&Part::IdToken) {
                    c.warning(
                        format!("{}[{j}].value", keys[route.header_list]),
                        format!(
                            "{{id_token}} is never there on route[{i}] (a bearer-token \
                             route has no ID token): {} is not sent there",
                            entry.name
                        ),
                    );
                }
            }
        }
    }
}

/// One header list (`key` is `headers.set` or `route[i].headers`).
fn header_list(
    c: &mut Checker,
    key: &str,
    raw: Vec<RawSetHeader>,
    headers: &HeadersConfig,
) -> Vec<SetHeader> {
    let mut list: Vec<SetHeader> = Vec::with_capacity(raw.len());
    let mut names: Vec<(String, usize)> = Vec::new();
    for (j, entry) in raw.into_iter().enumerate() {
        let key = format!("{key}[{j}]");
        let name = set_header_name(c, &key, entry.name.as_deref(), headers);
        if let Some(name) = &name {
            let norm = name.as_str().replace('-', "_");
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == norm) {
                c.problem(
                    format!("{key}.name"),
                    format!("{name:?} is already set by entry [{first}] of this list"),
                );
            }
            names.push((norm, j));
        }
        let source = match (entry.claim, entry.value) {
            (Some(_), Some(_)) => {
                c.problem(&key, "has both claim and value: set one of them");
                None
            }
            (None, None) => {
                c.problem(
                    &key,
                    "needs claim (a claim name) or value (a template such as \"Bearer {access_token}\")",
                );
                None
            }
            (Some(claim), None) => match ClaimPath::parse(&claim) {
                Ok(path) => Some(HeaderSource::Claim(path)),
                Err(e) => {
                    c.problem(format!("{key}.claim"), e);
                    None
                }
            },
            (None, Some(value)) if value.is_empty() => {
                c.problem(format!("{key}.value"), "is empty");
                None
            }
            (None, Some(value)) => match header_set::parse_template(&value) {
                Ok(parts) => Some(HeaderSource::Template(parts)),
                Err(e) => {
                    c.problem(format!("{key}.value"), e);
                    None
                }
            },
        };
        let encoding = c.choice(
            &format!("{key}.encoding"),
            entry.encoding.as_deref(),
            headers.encoding,
            &[
                ("none", Encoding::None),
                ("latin1", Encoding::Latin1),
                ("base64url", Encoding::Base64Url),
            ],
        );
        if let (Some(name), Some(source)) = (name, source) {
            list.push(SetHeader {
                name,
                source,
                join: entry
                    .join
                    .unwrap_or_else(|| headers.claim_delimiter.clone()),
                encoding,
            });
        }
    }
    list
}

/// A `[[headers.set]]` entry's `name`: a header name that is not the gateway's own.
fn set_header_name(
    c: &mut Checker,
    key: &str,
    name: Option<&str>,
    headers: &HeadersConfig,
) -> Option<http::HeaderName> {
    let key = format!("{key}.name");
    let Some(name) = name else {
        c.problem(key, "is required");
        return None;
    };
    let Ok(parsed) = http::HeaderName::from_bytes(name.as_bytes()) else {
        c.problem(key, format!("{name:?} is not a header name"));
        return None;
    };
    if let Some(why) = header_set::refused_name(parsed.as_str()) {
        c.problem(key, format!("{name:?} {why}"));
        return None;
    }
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let n = norm(name);
    let prefix = norm(&headers.claim_prefix);
    let remote = headers
        .remote_user_header
        .as_ref()
        .map(|h| norm(h.as_str()));
    if n.starts_with("oidc_") || (!prefix.is_empty() && n.starts_with(&prefix)) {
        c.problem(
            key,
            format!(
                "{name:?} is one of the gateway's OIDC_* / claim_prefix headers (set by the other [headers] keys)"
            ),
        );
        return None;
    }
    if remote.as_deref() == Some(n.as_str()) {
        c.problem(
            key,
            format!("{name:?} is headers.remote_user_header, which the gateway sets"),
        );
        return None;
    }
    Some(parsed)
}

fn build_oauth(c: &mut Checker, raw: RawOAuth, allow_http: bool) -> OAuthConfig {
    let introspection_endpoint = raw
        .introspection_endpoint
        .filter(|s| !s.is_empty())
        .and_then(|s| c.http_url("oauth.introspection_endpoint", &s))
        .inspect(|u| {
            if u.scheme() == "http" && !allow_http && !is_loopback(u) {
                c.problem(
                    "oauth.introspection_endpoint",
                    "plain http is only allowed on loopback hosts (provider.allow_http)",
                );
            }
        });
    let introspection_cache = match raw.introspection_cache.as_deref() {
        None | Some("until-expiry") => IntrospectionCache::UntilExpiry,
        Some("off") => IntrospectionCache::Off,
        Some(d) => match parse_duration(d) {
            Ok(d) => IntrospectionCache::For(d),
            Err(_) => {
                c.problem(
                    "oauth.introspection_cache",
                    format!("{d:?} is not until-expiry | off | a duration"),
                );
                IntrospectionCache::UntilExpiry
            }
        },
    };
    let mut accept_token_as = Vec::new();
    for (i, v) in raw
        .accept_token_as
        .unwrap_or_else(|| vec!["header".into()])
        .iter()
        .enumerate()
    {
        let source = match v.as_str() {
            "header" => Some(TokenSource::Header),
            "query" => Some(TokenSource::Query),
            "post" => Some(TokenSource::Post),
            other => match other.strip_prefix("cookie:") {
                Some(name) if !name.is_empty() => Some(TokenSource::Cookie(name.to_string())),
                _ => None,
            },
        };
        match source {
            Some(s) => accept_token_as.push(s),
            None => c.problem(
                format!("oauth.accept_token_as[{i}]"),
                format!("{v:?} is not one of header | query | post | cookie:NAME"),
            ),
        }
    }
    let jwt = raw.jwt.unwrap_or(false);
    let audience: Vec<String> = raw
        .audience
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
    OAuthConfig {
        introspection_endpoint,
        introspection_cache,
        accept_token_as,
        jwt,
        audience,
        require_token_type: raw.require_token_type.unwrap_or(true),
        cache_max_bytes: raw.cache_max_bytes.unwrap_or(64 * 1024 * 1024),
        shared_cache: raw.shared_cache.unwrap_or(false),
    }
}

fn build_hooks(c: &mut Checker, raw: RawHooks) -> HooksConfig {
    // Off unless listed: the hook answers any same-origin script, so one XSS in any app
    // behind the gateway must not be able to read tokens (mod_auth_openidc: no
    // OIDCInfoHook, no hook).
    let names = raw.info.unwrap_or_default();
    let mut info = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let m = match n.as_str() {
            "iat" => InfoMember::Iat,
            "access_token" => InfoMember::AccessToken,
            "access_token_expires" => InfoMember::AccessTokenExpires,
            "id_token" => InfoMember::IdToken,
            "userinfo" => InfoMember::Userinfo,
            "exp" => InfoMember::Exp,
            "timeout" => InfoMember::Timeout,
            "remote_user" => InfoMember::RemoteUser,
            "refresh_token" => InfoMember::RefreshToken,
            "provider" => InfoMember::Provider,
            _ => {
                c.problem(
                    format!("hooks.info[{i}]"),
                    format!("{n:?} is not an info member"),
                );
                continue;
            }
        };
        info.push(m);
    }
    let mut redirect_urls_allowed = Vec::new();
    for (i, r) in raw
        .redirect_urls_allowed
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        // Anchored so that a pattern must describe the whole URL.
        match Regex::new(&format!("^(?:{r})$")) {
            Ok(re) => redirect_urls_allowed.push(re),
            Err(e) => c.problem(
                format!("hooks.redirect_urls_allowed[{i}]"),
                format!("not a valid regex: {e}"),
            ),
        }
    }
    HooksConfig {
        info,
        redirect_urls_allowed,
    }
}

/// `forward_auth`: whether `server.forward_auth_path` is set (only then may a route have
/// no upstream).
fn build_routes(
    c: &mut Checker,
    raw: Vec<RawRoute>,
    providers: &[ProviderConfig],
    forward_auth: bool,
) -> Vec<RouteConfig> {
    if raw.is_empty() {
        c.problem("route", "at least one [[route]] is required");
    }
    let mut routes: Vec<RouteConfig> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("route[{i}].{k}");
        let path = match r.path {
            None => {
                c.problem(key("path"), "is required");
                "/".to_string()
            }
            Some(p) if !p.starts_with('/') => {
                c.problem(key("path"), format!("{p:?} must start with /"));
                "/".to_string()
            }
            Some(p) => {
                let trimmed = p.trim_end_matches('/');
                if trimmed.is_empty() {
                    "/".to_string()
                } else {
                    trimmed.to_string()
                }
            }
        };
        let upstream = match r.upstream.as_deref() {
            None => {
                c.problem(
                    key("upstream"),
                    "is required (\"\" for a forward-auth-only route)",
                );
                None
            }
            Some("") => {
                if !forward_auth {
                    c.problem(
                        key("upstream"),
                        "is empty, which is only for forward-auth routes, but server.forward_auth_path is not set",
                    );
                }
                None
            }
            Some(u) => c.http_url(&key("upstream"), u).inspect(|url| {
                if url.query().is_some() || url.fragment().is_some() {
                    c.problem(key("upstream"), "must not have a query or fragment");
                }
            }),
        };
        let auth = c.choice(
            &key("auth"),
            r.auth.as_deref(),
            AuthKind::OpenIdConnect,
            &[
                ("openid-connect", AuthKind::OpenIdConnect),
                ("oauth20", AuthKind::OAuth20),
                ("none", AuthKind::None),
            ],
        );
        let unauth_action = c.choice(
            &key("unauth_action"),
            r.unauth_action.as_deref(),
            UnauthAction::Auth,
            &[
                ("auth", UnauthAction::Auth),
                ("401", UnauthAction::Unauthorized),
                ("pass", UnauthAction::Pass),
            ],
        );
        let mut require_claims = Vec::new();
        for (j, rule) in r.require_claims.unwrap_or_default().iter().enumerate() {
            match ClaimRule::parse(rule) {
                Ok(rule) => require_claims.push(rule),
                Err(e) => c.problem(format!("route[{i}].require_claims[{j}]"), e),
            }
        }
        let hosts = route_hosts(c, &key("host"), r.host);
        if let Some(taken) = routes
            .iter()
            .find(|other| other.path == path && shares_a_host(&other.hosts, &hosts))
        {
            let on = match taken.hosts.iter().find(|h| hosts.contains(h)) {
                Some(host) => format!(" for host {host}"),
                None => String::new(),
            };
            c.problem(
                key("path"),
                format!("{path:?} is already used by another route{on}"),
            );
        }
        let anonymous_methods = route_methods(
            c,
            &key("allow_anonymous_methods"),
            r.allow_anonymous_methods,
        );
        if !anonymous_methods.is_empty() && auth == AuthKind::None {
            c.warning(
                key("allow_anonymous_methods"),
                "has no effect on a route with auth = \"none\"",
            );
        }
        let route_providers = route_providers(c, i, auth, r.provider, r.providers, providers);
        let preserve_post = route_preserve_post(
            c,
            &key("preserve_post"),
            r.preserve_post,
            auth,
            unauth_action,
        );
        if preserve_post && route_providers.len() > 1 {
            c.problem(
                key("preserve_post"),
                "needs one provider: with several, the login starts at the chooser page, which cannot carry a kept form",
            );
        }
        routes.push(RouteConfig {
            path,
            upstream: upstream.and_then(UpstreamTarget::new),
            auth,
            unauth_action,
            require_claims,
            preserve_host: r.preserve_host.unwrap_or(false),
            upgrades: route_upgrades(c, &key("upgrades"), r.upgrades),
            case_insensitive: r.case_insensitive.unwrap_or(false),
            hosts,
            anonymous_methods,
            header_list: 0,
            preserve_post,
            providers: route_providers,
        });
    }
    routes
}

/// `route.host`: one host name or `*.domain`, or a list of them; empty: every host.
fn route_hosts(c: &mut Checker, key: &str, raw: Option<OneOrMany>) -> Vec<HostPattern> {
    let list = raw.map(OneOrMany::into_vec).unwrap_or_default();
    let mut out: Vec<HostPattern> = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let at = |i| format!("{key}[{i}]");
        if h.contains(':') {
            c.problem(at(i), format!("{h:?}: a route's host has no port (the port of a request does not choose its route)"));
            continue;
        }
        match HostPattern::parse(h) {
            Some(p) if out.contains(&p) => c.problem(at(i), format!("{h:?} is listed twice")),
            Some(p) => out.push(p),
            None => c.problem(
                at(i),
                format!("{h:?} is not a host name nor *.domain (a wildcard stands for whole labels at the start only)"),
            ),
        }
    }
    out
}

/// `route.host` against `[server]`: with `public_url`, every request has its host; with
/// `allowed_hosts`, a host outside them never reaches a route.
fn check_route_hosts(c: &mut Checker, server: &ServerConfig, routes: &[RouteConfig]) {
    for (i, route) in routes.iter().enumerate() {
        if route.hosts.is_empty() {
            continue;
        }
        if let Some(url) = &server.public_url {
            c.warning(
                format!("route[{i}].host"),
                format!(
                    "server.public_url fixes every request's host to {:?}: routes are chosen by that host",
                    url.host_str().unwrap_or_default()
                ),
            );
            continue;
        }
        if server.allowed_hosts.is_empty() {
            continue;
        }
        for host in &route.hosts {
            let reachable = server.allowed_hosts.iter().any(|allowed| {
                let name = allowed
                    .rsplit_once(':')
                    .map_or(allowed.as_str(), |(n, _)| n);
                host.matches(name)
            });
            if !reachable {
                c.warning(
                    format!("route[{i}].host"),
                    format!("{host} is not in server.allowed_hosts: no request reaches it"),
                );
            }
        }
    }
}

/// Whether two routes' host lists overlap (both empty: both answer every host).
fn shares_a_host(a: &[HostPattern], b: &[HostPattern]) -> bool {
    (a.is_empty() && b.is_empty()) || a.iter().any(|h| b.contains(h))
}

/// `route.allow_anonymous_methods`: HTTP method names (case-sensitive, as HTTP has them;
/// the usual ones are accepted in lowercase and read in uppercase).
fn route_methods(c: &mut Checker, key: &str, raw: Option<Vec<String>>) -> Vec<http::Method> {
    let mut out = Vec::new();
    for (i, m) in raw.unwrap_or_default().iter().enumerate() {
        let upper = m.trim().to_ascii_uppercase();
        let known = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        let name = if known.contains(&upper.as_str()) {
            upper.as_str()
        } else {
            m.trim()
        };
        match http::Method::from_bytes(name.as_bytes()) {
            Ok(method) if !name.is_empty() && !out.contains(&method) => out.push(method),
            Ok(_) if !name.is_empty() => {
                c.problem(format!("{key}[{i}]"), format!("{m:?} is listed twice"))
            }
            _ => c.problem(
                format!("{key}[{i}]"),
                format!("{m:?} is not an HTTP method name"),
            ),
        }
    }
    out
}

/// `route.upgrades`: protocol names (RFC 9110 tokens), default `["websocket"]`. `h2c` is
/// refused: a tunnelled HTTP/2 connection would carry later requests past the gateway.
fn route_upgrades(c: &mut Checker, key: &str, raw: Option<Vec<String>>) -> Vec<String> {
    let list = raw.unwrap_or_else(|| vec!["websocket".into()]);
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let p = p.trim().to_ascii_lowercase();
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            c.problem(
                format!("{key}[{i}]"),
                format!("{p:?} is not a protocol name"),
            );
        } else if p == "h2c" {
            c.problem(
                format!("{key}[{i}]"),
                "h2c cannot be tunnelled: later requests on it would skip the gateway",
            );
        } else {
            out.push(p);
        }
    }
    out
}

/// `[provider]` (one table: the provider named `"default"`, or its `name`) or
/// `[[provider]]` (each entry with a unique `name`; the first is the default). Every
/// entry is read with the same checks, its keys reported as `provider[1].issuer`. Never
/// empty: with errors, a placeholder stands in (the config is refused anyway).
fn build_providers(c: &mut Checker, raw: Option<toml::Value>) -> Vec<ProviderConfig> {
    let entries: Vec<(String, toml::Value)> = match raw {
        None => {
            c.problem(
                "provider",
                "the [provider] section is required (or [[provider]] entries)",
            );
            // Checked as an empty table, so its required keys are named too.
            vec![(
                "provider".to_string(),
                toml::Value::Table(Default::default()),
            )]
        }
        Some(table @ toml::Value::Table(_)) => vec![("provider".to_string(), table)],
        Some(toml::Value::Array(list)) => {
            if list.is_empty() {
                c.problem("provider", "[[provider]] needs at least one entry");
            }
            list.into_iter()
                .enumerate()
                .map(|(i, v)| (format!("provider[{i}]"), v))
                .collect()
        }
        Some(other) => {
            c.problem(
                "provider",
                format!(
                    "must be a [provider] table or [[provider]] entries, not a {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    };
    let listed = entries.iter().any(|(key, _)| key.ends_with(']'));
    let mut providers: Vec<ProviderConfig> = Vec::new();
    for (key, value) in entries {
        let written_name = value
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_owned);
        let Some(mut raw) = raw_provider(c, &key, value) else {
            // Kept as a stand-in (its problems are reported), so that routes naming it
            // are not also told that it does not exist.
            let mut scratch = Checker {
                problems: Vec::new(),
                base_dir: None,
            };
            let name = written_name.unwrap_or_default();
            providers.push(build_provider(
                &mut scratch,
                &key,
                name,
                RawProvider::default(),
            ));
            continue;
        };
        let name = match raw.name.take() {
            Some(name) => {
                check_provider_name(c, &format!("{key}.name"), &name);
                name
            }
            None if listed => {
                c.problem(
                    format!("{key}.name"),
                    "is required in [[provider]] entries (e.g. name = \"corporate\")",
                );
                String::new()
            }
            None => "default".to_string(),
        };
        let provider = build_provider(c, &key, name, raw);
        check_against_others(c, &key, &provider, &providers);
        providers.push(provider);
    }
    if providers.is_empty() {
        // Only reached with errors already reported: a stand-in, never used.
        let mut scratch = Checker {
            problems: Vec::new(),
            base_dir: None,
        };
        providers.push(build_provider(
            &mut scratch,
            "provider",
            "default".into(),
            RawProvider::default(),
        ));
    }
    providers
}

/// One provider entry as written; its unknown keys and type errors reported under `key`.
fn raw_provider(c: &mut Checker, key: &str, value: toml::Value) -> Option<RawProvider> {
    if !value.is_table() {
        c.problem(key, "must be a table of provider keys");
        return None;
    }
    let mut unknown = Vec::new();
    let mut collect = |path: serde_ignored::Path| unknown.push(key_path(&path));
    let ignored = serde_ignored::Deserializer::new(value, &mut collect);
    let parsed: Result<RawProvider, _> = serde_path_to_error::deserialize(ignored);
    for k in unknown {
        c.problem(format!("{key}.{k}"), "unknown key");
    }
    match parsed {
        Ok(raw) => Some(raw),
        Err(e) => {
            let path = e.path().to_string();
            let reason = e.into_inner().to_string();
            c.problem(
                if path == "." {
                    key.to_string()
                } else {
                    format!("{key}.{path}")
                },
                reason.lines().next().unwrap_or_default().trim_end(),
            );
            None
        }
    }
}

/// What a TOML "duplicate key" error means when the file has both a `[provider]` table
/// and `[[provider]]` entries (TOML cannot mix them); empty otherwise.
fn provider_forms_hint(text: &str) -> &'static str {
    let header = |h: &str| text.lines().any(|l| l.trim_start().starts_with(h));
    if header("[provider]") && header("[[provider]]") {
        "\n([provider] and [[provider]] cannot both be used: write every provider as a \
         [[provider]] entry with a name, the default one first)"
    } else {
        ""
    }
}

/// Longest provider name: it is written into state cookies, sessions and chooser links.
const MAX_PROVIDER_NAME: usize = 64;

/// A provider name is a token: letters, digits, `-`, `_`, `.`; it goes into URLs and
/// sealed sessions as is.
fn check_provider_name(c: &mut Checker, key: &str, name: &str) {
    let token = !name.is_empty()
        && name.len() <= MAX_PROVIDER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !token {
        c.problem(
            key,
            format!(
                "{name:?} is not a name: 1 to {MAX_PROVIDER_NAME} letters, digits, '-', '_' or '.'"
            ),
        );
    }
}

/// What must differ between providers (name, issuer) and what they must share (the
/// redirect URI's path: it is where the gateway's hooks live, one path for all).
fn check_against_others(
    c: &mut Checker,
    key: &str,
    provider: &ProviderConfig,
    others: &[ProviderConfig],
) {
    for (i, other) in others.iter().enumerate() {
        if !provider.name.is_empty() && other.name == provider.name {
            c.problem(
                format!("{key}.name"),
                format!("{:?} is already the name of provider[{i}]", provider.name),
            );
        }
        if !provider.issuer.is_empty() && other.is_issuer(&provider.issuer) {
            c.problem(
                format!("{key}.issuer"),
                format!(
                    "is already the issuer of provider[{i}]: a logout token or a JWT names its \
                     provider by issuer, so each issuer may be configured once"
                ),
            );
        }
    }
    if let Some(first) = others.first() {
        let (path, first_path) = (provider.redirect_uri.path(), first.redirect_uri.path());
        if path != first_path {
            c.problem(
                format!("{key}.redirect_uri"),
                format!(
                    "its path {path:?} differs from provider[0].redirect_uri's {first_path:?}: \
                     the gateway's hooks live on one path, so every provider's redirect URI \
                     must have the same path"
                ),
            );
        }
    }
}

/// `route.provider = "name"` or `route.providers = ["a", "b"]`, as indexes into
/// `providers`; the default provider (`[0]`) when neither is set.
fn route_providers(
    c: &mut Checker,
    i: usize,
    auth: AuthKind,
    one: Option<String>,
    many: Option<Vec<String>>,
    providers: &[ProviderConfig],
) -> Vec<usize> {
    let known = || {
        providers
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (key, names) = match (one, many) {
        (None, None) => return vec![0],
        (Some(_), Some(_)) => {
            c.problem(
                format!("route[{i}].providers"),
                "set either route.provider or route.providers, not both",
            );
            return vec![0];
        }
        (Some(name), None) => (format!("route[{i}].provider"), vec![(None, name)]),
        (None, Some(list)) => {
            if list.is_empty() {
                c.problem(
                    format!("route[{i}].providers"),
                    "must name at least one provider",
                );
            }
            let key = format!("route[{i}].providers");
            let names = list.into_iter().enumerate().map(|(j, n)| (Some(j), n));
            (key, names.collect())
        }
    };
    if auth == AuthKind::None {
        c.problem(
            &key,
            "only applies to auth = \"openid-connect\" or \"oauth20\" routes",
        );
    }
    let mut out = Vec::new();
    for (j, name) in names {
        let entry_key = match j {
            Some(j) => format!("{key}[{j}]"),
            None => key.clone(),
        };
        match providers.iter().position(|p| p.name == name) {
            Some(index) if out.contains(&index) => {
                c.problem(entry_key, format!("{name:?} is listed twice"));
            }
            Some(index) => out.push(index),
            None => c.problem(
                entry_key,
                format!("no provider is named {name:?} (known: {})", known()),
            ),
        }
    }
    if out.is_empty() {
        out.push(0);
    }
    out
}

/// Each provider's JWT access-token audiences: its own `audience`, else `oauth.audience`.
/// With `oauth.jwt` every provider needs some.
fn provider_audiences(c: &mut Checker, providers: &mut [ProviderConfig], oauth: &OAuthConfig) {
    for provider in providers.iter_mut() {
        if provider.audience.is_empty() {
            provider.audience = oauth.audience.clone();
        }
    }
    if !oauth.jwt {
        return;
    }
    // mod_auth_openidc's advisory GHSA-wcvh-g65p-v576 is this class: without an audience,
    // any JWT the provider signed (an ID token, a token for another API) would pass as an
    // access token for these routes.
    let why = "is required with oauth.jwt = true: without it any JWT the provider signed, \
               ID tokens and tokens for other APIs included, would be accepted";
    if providers.iter().all(|p| p.audience.is_empty()) {
        c.problem("oauth.audience", why);
        return;
    }
    for (i, provider) in providers.iter().enumerate() {
        if provider.audience.is_empty() {
            c.problem(
                format!("provider[{i}].audience"),
                format!("{why} (or set oauth.audience for every provider)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
[server]
listen = "nope"
colour = "red"
[provider]
issuer = "http://idp.example.com"
client_id = "x"
typo = 1
[session]
passphrase = ""
inactivity_timeout = "5 parsecs"
[[route]]
path = "/"
upstream = "ftp://x"
[[route]]
path = "/a"
upstream = "http://127.0.0.1:1"
auth = "magic"
extra = true
"#;
        let problems = from_toml(text, None).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "server.listen[0]",
            "server.colour",
            "provider.issuer",
            "provider.typo",
            "session.passphrase",
            "session.inactivity_timeout",
            "route[0].upstream",
            "route[1].auth",
            "route[1].extra",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    const MINIMAL: &str = r#"
[provider]
issuer = "https://idp.example.com"
client_id = "x"
client_secret = "y"
[[route]]
path = "/"
upstream = "http://127.0.0.1:7000"
[session]
passphrase = "0123456789abcdef0123"
"#;

    #[test]
    fn preserve_post_keys() {
        let cfg = from_toml(MINIMAL, None).unwrap();
        assert!(!cfg.routes[0].preserve_post);
        assert_eq!(cfg.session.preserve_post_max_bytes, 64 << 20);
        let text = MINIMAL.replace(
            "upstream = \"http://127.0.0.1:7000\"\n",
            "upstream = \"http://127.0.0.1:7000\"\npreserve_post = true\n",
        );
        let cfg = from_toml(&format!("{text}preserve_post_max_bytes = 2097152\n"), None).unwrap();
        assert!(cfg.routes[0].preserve_post);
        assert_eq!(cfg.session.preserve_post_max_bytes, 2 << 20);

        let text = format!(
            "{MINIMAL}preserve_post_max_bytes = 1000\n\
             [[route]]\npath = \"/api\"\nupstream = \"http://127.0.0.1:7000\"\n\
             auth = \"oauth20\"\npreserve_post = true\n\
             [[route]]\npath = \"/strict\"\nupstream = \"http://127.0.0.1:7000\"\n\
             unauth_action = \"401\"\npreserve_post = true\n\
             [[route]]\npath = \"/typo\"\nupstream = \"http://127.0.0.1:7000\"\n\
             preserve_post = \"yes\"\n"
        );
        let problems = from_toml(&text, None).unwrap_err();
        let reason = |key: &str| {
            problems
                .iter()
                .find(|p| p.key == key)
                .map(|p| p.reason.clone())
                .unwrap_or_else(|| panic!("{key} not reported: {problems:?}"))
        };
        assert!(reason("route[3].preserve_post").contains("invalid type"));
        let text = text.replace("preserve_post = \"yes\"", "preserve_post = true");
        let problems = from_toml(&text, None).unwrap_err();
        let reason = |key: &str| {
            problems
                .iter()
                .find(|p| p.key == key)
                .map(|p| p.reason.clone())
                .unwrap_or_else(|| panic!("{key} not reported: {problems:?}"))
        };
        assert!(reason("session.preserve_post_max_bytes").contains("at least 1048576"));
        assert!(reason("route[1].preserve_post").contains("openid-connect"));
        assert!(reason("route[2].preserve_post").contains("unauth_action = \"auth\""));
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn redis_section_defaults() {
        let cfg = from_toml(&format!("{MINIMAL}store = \"redis\"\n[redis]\n"), None).unwrap();
        assert_eq!(cfg.session.store, StoreKind::Redis);
        let redis = cfg.redis.unwrap();
        assert_eq!(
            redis.endpoint,
            RedisEndpoint::Direct {
                host: "127.0.0.1".into(),
                port: 6379
            }
        );
        assert_eq!(redis.db, 0);
        assert_eq!(redis.prefix, "oidc_gateway:");
        assert_eq!(redis.timeout, Duration::from_secs(2));
        assert!(redis.tls.is_none());
        // Without [redis] nothing is shared; the redis store needs it.
        assert!(from_toml(MINIMAL, None).unwrap().redis.is_none());
        let problems = from_toml(&format!("{MINIMAL}store = \"redis\"\n"), None).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.key == "session.store" && p.reason.contains("[redis]")),
            "{problems:?}"
        );
    }

    #[test]
    fn redis_keys_are_read_and_the_password_never_printed() {
        let text = format!(
            "{MINIMAL}[redis]\nurl = \"redis://gw:s3cret-pw@redis.internal:6380/2\"\n\
             prefix = \"gw:\"\ntimeout = \"750ms\"\n"
        );
        let cfg = from_toml(&text, None).unwrap();
        let redis = cfg.redis.as_ref().unwrap();
        assert_eq!(redis.password.as_ref().unwrap().expose(), "s3cret-pw");
        assert_eq!(redis.username.as_ref().unwrap().expose(), "gw");
        assert_eq!(redis.db, 2);
        assert_eq!(redis.prefix, "gw:");
        assert_eq!(redis.timeout, Duration::from_millis(750));
        assert_eq!(redis.describe(), "redis://redis.internal:6380/2");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("s3cret-pw"), "{debug}");
        assert!(debug.contains("redis.internal"));
        // The keys win over the URL's credentials.
        let text = format!(
            "{MINIMAL}[redis]\nurl = \"redis://gw:s3cret-pw@redis.internal\"\npassword = \"other\"\n"
        );
        let redis = from_toml(&text, None).unwrap().redis.unwrap();
        assert_eq!(redis.password.unwrap().expose(), "other");
    }

    #[test]
    fn sentinels_tls_and_files() {
        let dir = std::env::temp_dir().join(format!("oidc-gw-redis-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(dir.join("pw"), "from-file\n").unwrap();
        let text = format!(
            "{MINIMAL}[redis]\nurl = \"rediss:///1\"\nsentinels = [\"10.0.0.1:26379\", \"[::1]:26380\"]\n\
             master_name = \"main\"\nca_file = \"ca.pem\"\npassword_file = \"pw\"\n"
        );
        let redis = from_toml(&text, Some(&dir)).unwrap().redis.unwrap();
        assert_eq!(
            redis.endpoint,
            RedisEndpoint::Sentinel {
                sentinels: vec![("10.0.0.1".into(), 26379), ("::1".into(), 26380)],
                master_name: "main".into()
            }
        );
        assert_eq!(redis.db, 1);
        assert_eq!(redis.password.unwrap().expose(), "from-file");
        let tls = redis.tls.unwrap();
        assert!(tls.ca_pem.is_some() && tls.client_pem.is_none());

        for (body, key, expect) in [
            (
                "sentinels = [\"10.0.0.1:26379\"]\n",
                "redis.master_name",
                "required",
            ),
            (
                "sentinels = [\"nope\"]\nmaster_name = \"m\"\n",
                "redis.sentinels[0]",
                "host:port",
            ),
            ("master_name = \"m\"\n", "redis.master_name", "only used"),
            (
                "url = \"redis://h\"\nca_file = \"ca.pem\"\n",
                "redis.url",
                "rediss://",
            ),
            (
                "url = \"rediss://h\"\ncert_file = \"ca.pem\"\n",
                "redis.cert_file",
                "go together",
            ),
            (
                "url = \"rediss://h\"\nca_file = \"missing.pem\"\n",
                "redis.ca_file",
                "cannot read",
            ),
            (
                "url = \"rediss://h\"\nca_file = \"pw\"\n",
                "redis.ca_file",
                "not PEM",
            ),
        ] {
            let problems = from_toml(&format!("{MINIMAL}[redis]\n{body}"), Some(&dir)).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.key == key && p.reason.contains(expect)),
                "{body}: {problems:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_redis_keys_are_reported_with_their_paths() {
        for (url, expect) in [
            ("http://:s3cret-pw@redis.example.com", "is not redis://"),
            (
                "redis://:s3cret-pw@redis.example.com/zero",
                "database number",
            ),
            ("redis://:s3cret-pw@0.0.0.0:6379", "wildcard"),
            ("redis://:s3cret-pw@redis.example.com/0?protocol=9", "query"),
            ("redis:///0", "no host"),
            ("s3cret-pw", "is not a URL"),
        ] {
            let text = format!("{MINIMAL}[redis]\nurl = \"{url}\"\n");
            let problems = from_toml(&text, None).unwrap_err();
            let p = problems
                .iter()
                .find(|p| p.key == "redis.url")
                .unwrap_or_else(|| panic!("{url}: {problems:?}"));
            assert!(p.reason.contains(expect), "{url}: {}", p.reason);
            assert!(!p.reason.contains("s3cret-pw"), "{url}: {}", p.reason);
        }
        let text = format!("{MINIMAL}[redis]\ntimeout = \"0s\"\ncolour = 1\n");
        let keys: Vec<String> = from_toml(&text, None)
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["redis.colour", "redis.timeout"]);
        // The old keys name the new ones.
        let text = format!("{MINIMAL}redis_url = \"redis://h\"\nredis_prefix = \"p\"\n");
        let problems = from_toml(&text, None).unwrap_err();
        for (key, new) in [
            ("session.redis_url", "redis.url"),
            ("session.redis_prefix", "redis.prefix"),
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.key == key && p.reason.contains(new)),
                "{problems:?}"
            );
        }
        let text = format!("{MINIMAL}[oauth]\nshared_cache = true\n");
        let problems = from_toml(&text, None).unwrap_err();
        assert!(
            problems.iter().any(|p| p.key == "oauth.shared_cache"),
            "{problems:?}"
        );
    }

    #[test]
    fn keepalive_timeout_and_its_former_name() {
        let server = |body: &str| format!("[server]\n{body}{MINIMAL}");
        assert_eq!(
            from_toml(MINIMAL, None).unwrap().server.idle_timeout,
            Duration::from_secs(120)
        );
        let cfg = from_toml(&server("keepalive_timeout = \"75s\"\n"), None).unwrap();
        assert_eq!(cfg.server.idle_timeout, Duration::from_secs(75));
        // Files written before the rename keep working.
        let cfg = from_toml(&server("idle_timeout = \"30s\"\n"), None).unwrap();
        assert_eq!(cfg.server.idle_timeout, Duration::from_secs(30));
        let problems = from_toml(
            &server("keepalive_timeout = \"75s\"\nidle_timeout = \"30s\"\n"),
            None,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "server.idle_timeout");
        assert!(
            problems[0].reason.contains("server.keepalive_timeout"),
            "{problems:?}"
        );
        for (body, key) in [
            ("keepalive_timeout = \"0s\"\n", "server.keepalive_timeout"),
            ("idle_timeout = \"soon\"\n", "server.idle_timeout"),
        ] {
            let problems = from_toml(&server(body), None).unwrap_err();
            assert!(
                problems.iter().any(|p| p.key == key),
                "{body}: {problems:?}"
            );
        }
    }

    #[test]
    fn log_section() {
        let cfg = from_toml(MINIMAL, None).unwrap();
        assert_eq!(cfg.log, LogConfig::default());
        assert_eq!(cfg.log.format, LogFormat::Text);
        assert_eq!(cfg.log.level, "info");
        assert!(!cfg.log.access && !cfg.log.hash_sub);
        let text = format!(
            "{MINIMAL}[log]\nformat = \"JSON\"\nlevel = \"warn,oidc_gateway=debug,oidc_gateway::access=info\"\n\
             access = true\nhash_sub = true\n"
        );
        let log = from_toml(&text, None).unwrap().log;
        assert_eq!(log.format, LogFormat::Json);
        assert_eq!(
            log.level,
            "warn,oidc_gateway=debug,oidc_gateway::access=info"
        );
        assert!(log.access && log.hash_sub);
        for (body, key, expect) in [
            ("format = \"xml\"\n", "log.format", "text | json"),
            ("level = \"\"\n", "log.level", "empty"),
            ("level = \"infoo\"\n", "log.level", "not a level"),
            (
                "level = \"info,oidc_gateway=loud\"\n",
                "log.level",
                "oidc_gateway=loud",
            ),
            ("colour = true\n", "log.colour", "unknown key"),
        ] {
            let problems = from_toml(&format!("{MINIMAL}[log]\n{body}"), None).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.key == key && p.reason.contains(expect)),
                "{body}: {problems:?}"
            );
        }
        // A wrong type stops validation, naming the key.
        let problems = from_toml(&format!("{MINIMAL}[log]\naccess = \"yes\"\n"), None).unwrap_err();
        assert!(
            problems.iter().any(|p| p.key == "log.access"),
            "{problems:?}"
        );
    }

    #[test]
    fn telemetry_section() {
        assert_eq!(from_toml(MINIMAL, None).unwrap().telemetry, None);
        let section = |body: &str| format!("{MINIMAL}[telemetry]\n{body}");
        let problems_of = |body: &str| from_toml(&section(body), None).unwrap_err();
        let has = |problems: &[ConfigProblem], key: &str, expect: &str| {
            problems
                .iter()
                .any(|p| p.key == key && p.reason.contains(expect))
        };
        // Unknown keys and bad values are reported with or without the feature.
        for (body, key, expect) in [
            (
                "otlp_endpoint = \"http://c:4318\"\ncolour = 1\n",
                "telemetry.colour",
                "unknown key",
            ),
            (
                "otlp_endpoint = \"http://c:4318\"\nsample_ratio = 1.5\n",
                "telemetry.sample_ratio",
                "between 0.0 and 1.0",
            ),
            (
                "otlp_endpoint = \"http://c:4318\"\nsample_ratio = -0.1\n",
                "telemetry.sample_ratio",
                "between",
            ),
            (
                "otlp_endpoint = \"http://c:4318\"\nservice_name = \" \"\n",
                "telemetry.service_name",
                "empty",
            ),
        ] {
            let problems = problems_of(body);
            assert!(has(&problems, key, expect), "{body}: {problems:?}");
        }
        let problems = problems_of("sample_ratio = \"all\"\n");
        assert!(
            problems.iter().any(|p| p.key == "telemetry.sample_ratio"),
            "{problems:?}"
        );
        let full = "otlp_endpoint = \"http://collector:4318\"\nservice_name = \"gw-eu\"\nsample_ratio = 0.25\n";
        if cfg!(feature = "otlp") {
            let t = from_toml(&section(full), None).unwrap().telemetry.unwrap();
            assert_eq!(t.otlp_endpoint.as_str(), "http://collector:4318/");
            assert_eq!(t.traces_url(), "http://collector:4318/v1/traces");
            assert_eq!(t.service_name, "gw-eu");
            assert_eq!(t.sample_ratio, 0.25);
            let t = from_toml(
                &section("otlp_endpoint = \"https://c.example/otlp/\"\nsample_ratio = 0\n"),
                None,
            )
            .unwrap()
            .telemetry
            .unwrap();
            assert_eq!(t.traces_url(), "https://c.example/otlp/v1/traces");
            assert_eq!(t.service_name, "oidc-gateway");
            assert_eq!(t.sample_ratio, 0.0);
            for (body, expect) in [
                ("service_name = \"x\"\n", "required"),
                ("otlp_endpoint = \"collector:4318\"\n", "not an http(s) URL"),
                ("otlp_endpoint = \"grpc://c:4317\"\n", "not an http(s) URL"),
                ("otlp_endpoint = \"http://u:p@c:4318\"\n", "no credentials"),
                (
                    "otlp_endpoint = \"http://c:4318/?k=v\"\n",
                    "no credentials, query",
                ),
            ] {
                let problems = problems_of(body);
                assert!(
                    has(&problems, "telemetry.otlp_endpoint", expect),
                    "{body}: {problems:?}"
                );
            }
        } else {
            // Never silently ignored: the section is an error naming the missing feature.
            for body in [full, ""] {
                let problems = problems_of(body);
                assert!(
                    has(
                        &problems,
                        "telemetry.otlp_endpoint",
                        "built without the otlp feature"
                    ),
                    "{body}: {problems:?}"
                );
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    /// `MINIMAL` with `extra` (under `[session]`, so sections must be opened) and a second
    /// route at /api.
    fn with_headers(extra: &str) -> Result<Config, Vec<ConfigProblem>> {
        from_toml(
            &format!(
                "{MINIMAL}[[route]]\npath = \"/api\"\nupstream = \"http://127.0.0.1:7001\"\n\
                 auth = \"oauth20\"\n{extra}"
            ),
            None,
        )
    }

    #[test]
    fn header_lists_are_read_global_and_per_route() {
        let cfg = with_headers(
            r#"
[headers]
claim_delimiter = ";"
encoding = "latin1"
[[headers.set]]
name = "X-Email"
claim = "email"
[[headers.set]]
name = "X-Roles"
claim = "realm_access.roles"
join = " "
[[headers.set]]
name = "Authorization"
value = "Bearer {access_token}"
encoding = "none"
[[route]]
path = "/other"
upstream = "http://127.0.0.1:7002"
headers = [{ name = "X-User", value = "{sub}" }]
[[route]]
path = "/bare"
upstream = "http://127.0.0.1:7002"
headers = []
"#,
        )
        .unwrap();
        let lists = &cfg.headers.lists;
        assert_eq!(lists.len(), 3);
        let global = &lists[0];
        let names: Vec<&str> = global.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["x-email", "x-roles", "authorization"]);
        assert_eq!(
            global[0].source,
            HeaderSource::Claim(ClaimPath::parse("email").unwrap())
        );
        assert_eq!(global[0].join, ";", "default: claim_delimiter");
        assert_eq!(global[0].encoding, Encoding::Latin1, "default: [headers]");
        assert_eq!(global[1].join, " ");
        assert_eq!(
            global[2].source,
            HeaderSource::Template(vec![Part::Text("Bearer ".into()), Part::AccessToken])
        );
        assert_eq!(global[2].encoding, Encoding::None);
        assert_eq!(lists[1][0].name.as_str(), "x-user");
        assert!(lists[2].is_empty());
        let by_path = |p: &str| cfg.routes.iter().find(|r| r.path == p).unwrap().header_list;
        assert_eq!(
            (
                by_path("/"),
                by_path("/api"),
                by_path("/other"),
                by_path("/bare")
            ),
            (0, 0, 1, 2)
        );
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        // Without any: one empty global list.
        assert_eq!(from_toml(MINIMAL, None).unwrap().headers.lists, [vec![]]);
    }

    #[test]
    fn bad_header_entries_are_reported_with_their_keys() {
        for (entry, key, expect) in [
            ("claim = \"email\"", "headers.set[0].name", "is required"),
            (
                "name = \"X Email\"\nclaim = \"e\"",
                "headers.set[0].name",
                "not a header name",
            ),
            (
                "name = \"Host\"\nclaim = \"e\"",
                "headers.set[0].name",
                "the proxy sets it",
            ),
            (
                "name = \"Connection\"\nclaim = \"e\"",
                "headers.set[0].name",
                "hop-by-hop",
            ),
            (
                "name = \"Content-Length\"\nclaim = \"e\"",
                "headers.set[0].name",
                "frames",
            ),
            (
                "name = \"Transfer-Encoding\"\nclaim = \"e\"",
                "headers.set[0].name",
                "frames",
            ),
            (
                "name = \"Cookie\"\nclaim = \"e\"",
                "headers.set[0].name",
                "cookies",
            ),
            (
                "name = \"X-Forwarded-User\"\nclaim = \"e\"",
                "headers.set[0].name",
                "X-Forwarded-*",
            ),
            (
                "name = \"X-Request-Id\"\nclaim = \"e\"",
                "headers.set[0].name",
                "request id",
            ),
            (
                "name = \"traceparent\"\nclaim = \"e\"",
                "headers.set[0].name",
                "trace context",
            ),
            (
                "name = \"OIDC_CLAIM_email\"\nclaim = \"e\"",
                "headers.set[0].name",
                "OIDC_*",
            ),
            (
                "name = \"oidc-access-token\"\nclaim = \"e\"",
                "headers.set[0].name",
                "OIDC_*",
            ),
            (
                "name = \"X-Remote-User\"\nclaim = \"e\"",
                "headers.set[0].name",
                "remote_user_header",
            ),
            ("name = \"X-A\"", "headers.set[0]", "needs claim"),
            (
                "name = \"X-A\"\nclaim = \"a\"\nvalue = \"b\"",
                "headers.set[0]",
                "both",
            ),
            (
                "name = \"X-A\"\nclaim = \"a..b\"",
                "headers.set[0].claim",
                "empty claim name",
            ),
            (
                "name = \"X-A\"\nvalue = \"\"",
                "headers.set[0].value",
                "is empty",
            ),
            (
                "name = \"X-A\"\nvalue = \"{token}\"",
                "headers.set[0].value",
                "unknown placeholder {token}",
            ),
            (
                "name = \"X-A\"\nvalue = \"{sub\"",
                "headers.set[0].value",
                "unclosed",
            ),
            (
                "name = \"X-A\"\nvalue = \"{claim:}\"",
                "headers.set[0].value",
                "empty claim name",
            ),
            (
                "name = \"X-A\"\nclaim = \"a\"\nencoding = \"utf16\"",
                "headers.set[0].encoding",
                "not one of",
            ),
            (
                "name = \"X-A\"\nclaim = \"a\"\nsplit = \",\"",
                "headers.set[0].split",
                "unknown key",
            ),
        ] {
            let text = format!(
                "[headers]\nremote_user_header = \"X-Remote-User\"\n[[headers.set]]\n{entry}\n"
            );
            let problems = with_headers(&text).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.key == key && p.reason.contains(expect)),
                "{entry:?}: want {key}: …{expect}…, got {problems:?}"
            );
        }
    }

    #[test]
    fn route_header_lists_are_checked_and_warned_about() {
        let problems = with_headers(
            r#"
[[headers.set]]
name = "X-Email"
claim = "email"
[[headers.set]]
name = "x_email"
claim = "mail"
[[route]]
path = "/other"
upstream = "http://127.0.0.1:7002"
headers = [{ name = "X-A", value = "{nope}" }, { name = "Host", claim = "h" }]
"#,
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "headers.set[1].name",
                "route[2].headers[0].value",
                "route[2].headers[1].name"
            ],
            "{problems:?}"
        );
        assert!(problems[0].reason.contains("already set by entry [0]"));

        // {id_token} on a bearer route is never there: a warning naming the route.
        let cfg =
            with_headers("[[headers.set]]\nname = \"X-Id\"\nvalue = \"{id_token}\"\n").unwrap();
        assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
        assert_eq!(cfg.warnings[0].key, "headers.set[0].value");
        assert!(cfg.warnings[0].reason.contains("route[1]"));
    }

    const TWO_PROVIDERS: &str = r#"
[[provider]]
name = "corp"
title = "Corporate <SSO>"
issuer = "https://corp.example.com"
client_id = "gw"
client_secret = "s1"
[[provider]]
name = "partners"
issuer = "https://partners.example.com/"
client_id = "gw2"
client_secret = "s2"
redirect_uri = "https://other.example.com/oauth2/callback"
audience = ["partner-api"]
[session]
passphrase = "0123456789abcdef0123"
[oauth]
jwt = true
audience = "api"
[[route]]
path = "/"
upstream = "http://127.0.0.1:7000"
[[route]]
path = "/partners"
upstream = "http://127.0.0.1:7000"
provider = "partners"
[[route]]
path = "/both"
upstream = "http://127.0.0.1:7000"
providers = ["partners", "corp"]
[[route]]
path = "/api"
upstream = "http://127.0.0.1:7000"
auth = "oauth20"
providers = ["corp", "partners"]
"#;

    #[test]
    fn several_providers_are_read_in_order_with_names_and_routes() {
        let cfg = from_toml(TWO_PROVIDERS, None).unwrap();
        let names: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["corp", "partners"]);
        assert_eq!(cfg.provider, cfg.providers[0], "the first is the default");
        assert_eq!(cfg.providers[0].title, "Corporate <SSO>");
        assert_eq!(
            cfg.providers[1].title, "partners",
            "the title defaults to the name"
        );
        assert_eq!(
            cfg.providers[0].audience,
            ["api"],
            "oauth.audience by default"
        );
        assert_eq!(cfg.providers[1].audience, ["partner-api"]);
        assert_eq!(cfg.redirect_path(), "/oauth2/callback");
        let routes: Vec<&[usize]> = cfg.routes.iter().map(|r| &r.providers[..]).collect();
        assert_eq!(routes, [&[0][..], &[1], &[1, 0], &[0, 1]]);
        assert_eq!(cfg.provider_index("partners"), Some(1));
        assert_eq!(cfg.provider_index("nobody"), None);

        // A [provider] table is the provider named "default", or its name.
        let cfg = from_toml(MINIMAL, None).unwrap();
        assert_eq!(cfg.providers.len(), 1);
        assert_eq!(cfg.provider.name, "default");
        let named = MINIMAL.replace("[provider]\n", "[provider]\nname = \"corp\"\n");
        assert_eq!(from_toml(&named, None).unwrap().provider.name, "corp");
    }

    #[test]
    fn client_assertion_keys_are_checked_per_provider() {
        let problems = |provider: &str| {
            let text = format!(
                "[[provider]]\nname = \"a\"\nissuer = \"https://idp.example.com\"\nclient_id = \"x\"\n{provider}\n\
                 [session]\npassphrase = \"test-passphrase-0123456789abcdef\"\n\
                 [[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:7000\"\n"
            );
            from_toml(&text, None).unwrap_err()
        };
        let has = |p: &[ConfigProblem], key: &str, reason: &str| {
            p.iter().any(|p| p.key == key && p.reason.contains(reason))
        };
        let p = problems("token_endpoint_auth = \"client_secret_jwt\"");
        assert!(
            has(
                &p,
                "provider[0].client_secret",
                "is required with token_endpoint_auth = \"client_secret_jwt\""
            ),
            "{p:?}"
        );
        let p = problems("client_secret = \"s\"\ntoken_endpoint_auth = \"client_secret_jwt\"\nsigning_alg = \"RS256\"\nprivate_key_kid = \"k\"");
        assert!(
            has(
                &p,
                "provider[0].signing_alg",
                "is not one of HS256 | HS384 | HS512"
            ),
            "{p:?}"
        );
        assert!(
            has(
                &p,
                "provider[0].private_key_kid",
                "only used with token_endpoint_auth = \"private_key_jwt\""
            ),
            "{p:?}"
        );
        let p = problems("client_secret = \"s\"\ntoken_endpoint_auth = \"private_key_jwt\"\npar = \"sometimes\"\nresponse_mode = \"fragment\"\nassertion_audience = \"me\"");
        assert!(
            has(&p, "provider[0].private_key_file", "is required"),
            "{p:?}"
        );
        assert!(
            has(&p, "provider[0].par", "is not one of auto | always | never"),
            "{p:?}"
        );
        assert!(
            has(
                &p,
                "provider[0].response_mode",
                "is not one of query | form_post"
            ),
            "{p:?}"
        );
        assert!(
            has(
                &p,
                "provider[0].assertion_audience",
                "is not one of token_endpoint | issuer"
            ),
            "{p:?}"
        );
        let warned = |server: &str| {
            let text = format!(
                "{server}[provider]\nissuer = \"https://idp.example.com\"\nclient_id = \"x\"\nclient_secret = \"s\"\n\
                 response_mode = \"form_post\"\n[session]\npassphrase = \"test-passphrase-0123456789abcdef\"\n\
                 [[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:7000\"\n"
            );
            let config = from_toml(&text, None).unwrap();
            config.warnings.iter().any(|w| {
                w.key == "provider.response_mode" && w.reason.contains("needs the gateway on https")
            })
        };
        assert!(warned(""));
        assert!(!warned(
            "[server]\npublic_url = \"https://app.example.com\"\n"
        ));
        let p = problems("client_secret = \"s\"\nsigning_alg = \"HS256\"");
        assert!(
            has(
                &p,
                "provider[0].signing_alg",
                "only used with token_endpoint_auth"
            ),
            "{p:?}"
        );
    }

    #[test]
    fn provider_mistakes_are_reported_with_their_keys() {
        let problems = |text: &str| from_toml(text, None).unwrap_err();
        let has = |problems: &[ConfigProblem], key: &str, reason: &str| {
            problems
                .iter()
                .any(|p| p.key == key && p.reason.contains(reason))
        };
        let text = TWO_PROVIDERS
            .replace("name = \"partners\"\n", "name = \"corp\"\ntypo = 1\n")
            .replace("https://partners.example.com/", "https://corp.example.com/")
            .replace(
                "https://other.example.com/oauth2/callback",
                "/elsewhere/callback",
            )
            .replace(
                "provider = \"partners\"",
                "provider = \"corp\"\nproviders = [\"corp\"]",
            )
            .replace(
                "[\"partners\", \"corp\"]",
                "[\"corp\", \"nobody\", \"corp\"]",
            );
        let p = problems(&text);
        for (key, reason) in [
            ("provider[1].name", "already the name of provider[0]"),
            ("provider[1].typo", "unknown key"),
            ("provider[1].issuer", "already the issuer of provider[0]"),
            ("provider[1].redirect_uri", "same path"),
            ("route[1].providers", "not both"),
            (
                "route[2].providers[1]",
                "no provider is named \"nobody\" (known: corp, corp)",
            ),
            ("route[2].providers[2]", "listed twice"),
        ] {
            assert!(has(&p, key, reason), "{key}: {reason} missing from {p:?}");
        }

        let p = problems(
            &TWO_PROVIDERS
                .replace("name = \"corp\"\n", "")
                .replace("name = \"partners\"", "name = \"part ners\"")
                .replace("title = \"Corporate <SSO>\"", "title = \"\""),
        );
        for (key, reason) in [
            ("provider[0].name", "is required in [[provider]] entries"),
            ("provider[0].title", "1 to 200 characters"),
            ("provider[1].name", "is not a name"),
        ] {
            assert!(has(&p, key, reason), "{key}: {reason} missing from {p:?}");
        }
        // A type error in one entry: reported with its path, and routes naming the entry
        // are not told it does not exist.
        let p = problems(&TWO_PROVIDERS.replace(
            "client_id = \"gw2\"",
            "client_id = \"gw2\"\nscopes = \"openid\"",
        ));
        assert!(has(&p, "provider[1].scopes", "invalid type"), "{p:?}");
        assert_eq!(p.len(), 1, "{p:?}");

        // Routes: unknown names, empty lists, a provider on an open route.
        let p = problems(
            &TWO_PROVIDERS
                .replace("provider = \"partners\"", "provider = \"nobody\"")
                .replace("[\"partners\", \"corp\"]", "[]")
                .replace("auth = \"oauth20\"", "auth = \"none\""),
        );
        for (key, reason) in [
            ("route[1].provider", "no provider is named \"nobody\""),
            ("route[2].providers", "at least one provider"),
            ("route[3].providers", "only applies to"),
        ] {
            assert!(has(&p, key, reason), "{key}: {reason} missing from {p:?}");
        }

        // JWT access tokens need an audience for every provider.
        let p = problems(&TWO_PROVIDERS.replace("audience = \"api\"", ""));
        assert!(
            has(&p, "provider[0].audience", "is required with oauth.jwt"),
            "{p:?}"
        );
        assert!(!p.iter().any(|p| p.key == "provider[1].audience"), "{p:?}");

        // Entries that are not tables, an empty array, and both forms at once.
        let p = problems(&MINIMAL.replace(
            "[provider]\nissuer = \"https://idp.example.com\"\nclient_id = \"x\"\nclient_secret = \"y\"\n",
            "provider = [1]\n",
        ));
        assert!(has(&p, "provider[0]", "must be a table"), "{p:?}");
        let p = problems(&MINIMAL.replace(
            "[provider]\nissuer = \"https://idp.example.com\"\nclient_id = \"x\"\nclient_secret = \"y\"\n",
            "provider = []\n",
        ));
        assert!(has(&p, "provider", "at least one entry"), "{p:?}");
        let both = format!("{MINIMAL}[[provider]]\nname = \"b\"\n");
        let p = problems(&both);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].reason.starts_with("not valid TOML"), "{p:?}");
        assert!(
            p[0].reason
                .contains("[provider] and [[provider]] cannot both be used"),
            "{p:?}"
        );
    }
}
