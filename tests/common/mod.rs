//! Test harness: a real gateway on 127.0.0.1:0 in front of the development OpenID Provider
//! and the echo upstream, and a cookie-keeping HTTP client that does not follow redirects.
#![allow(dead_code)]

use devop::echo::{start_echo, EchoServer};
use devop::{DevOp, DevOpOptions};
use oidc_gateway::clock::Clock;
use oidc_gateway::config::Config;
use oidc_gateway::server::Running;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use std::sync::Arc;

/// A throwaway `redis-server` (the same helper the unit tests use).
#[path = "../../src/session/test_redis.rs"]
pub mod redis_server;
#[allow(unused_imports)] // only the Redis tests use it
pub use redis_server::RedisServer;

/// `[hooks] info` of the test gateways unless a test sets its own: every member but
/// `refresh_token`.
pub const TEST_INFO: &str = r#"info = ["iat", "access_token", "access_token_expires", "id_token", "userinfo", "exp", "timeout", "remote_user"]"#;

pub const PASSPHRASE: &str = "test-passphrase-0123456789abcdef";

/// Per-section additions to the default test configuration (TOML lines).
#[derive(Default, Clone)]
pub struct Options {
    pub server: String,
    pub provider: String,
    pub session: String,
    pub headers: String,
    pub oauth: String,
    pub hooks: String,
    /// Replaces the default routes when set.
    pub routes: Option<String>,
    /// Use this issuer instead of the development OP's (e.g. a closed port).
    pub issuer: Option<String>,
    /// Use this upstream instead of the echo server.
    pub upstream: Option<String>,
    /// Leave `[hooks] info` at the gateway's default (off) instead of [`TEST_INFO`].
    pub default_info_hook: bool,
    /// Written as `passphrases = [...]` instead of the default single `passphrase`.
    pub passphrases: Option<Vec<String>>,
    /// The body of a `[redis]` section (none when unset).
    pub redis: Option<String>,
    /// Lines of the `[log]` section.
    pub log: String,
    /// The body of a `[telemetry]` section (none when unset; needs the `otlp` feature).
    pub telemetry: Option<String>,
    /// Replaces the whole `[provider]` section when set (e.g. `[[provider]]` entries;
    /// `{issuer}` is the development OP's issuer).
    pub providers: Option<String>,
}

pub struct Harness {
    pub op: DevOp,
    pub echo: EchoServer,
    pub gw: Running,
    pub clock: Clock,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

pub fn toml(issuer: &str, upstream: &str, o: &Options) -> String {
    // Custom routes may write `{upstream}` for the echo server's URL.
    let custom = o.routes.as_ref().map(|r| r.replace("{upstream}", upstream));
    let routes = custom.unwrap_or_else(|| {
        format!(
            r#"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "openid-connect"

[[route]]
path = "/public"
upstream = "{upstream}"
auth = "none"

[[route]]
path = "/pass"
upstream = "{upstream}"
auth = "openid-connect"
unauth_action = "pass"

[[route]]
path = "/strict"
upstream = "{upstream}"
auth = "openid-connect"
unauth_action = "401"

[[route]]
path = "/admins"
upstream = "{upstream}"
auth = "openid-connect"
require_claims = ["groups:admins"]

[[route]]
path = "/api"
upstream = "{upstream}"
auth = "oauth20"
"#
        )
    });
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}

{providers}

[session]
{passphrase}
{session}

[headers]
{headers}

[oauth]
{oauth}

[hooks]
{hooks}

{redis}

[log]
{log}

{telemetry}

{routes}
"#,
        server = o.server,
        providers = match &o.providers {
            Some(p) => p.replace("{issuer}", issuer),
            None => format!(
                "[provider]\nissuer = \"{issuer}\"\nclient_id = \"gateway\"\n\
                 client_secret = \"gateway-secret\"\n\
                 scopes = [\"openid\", \"profile\", \"email\", \"offline_access\"]\n{}",
                o.provider
            ),
        },
        session = o.session,
        headers = o.headers,
        oauth = o.oauth,
        // The info hook is off by default; the tests read sessions through it.
        hooks = if o.hooks.contains("info") || o.default_info_hook {
            o.hooks.clone()
        } else {
            format!("{TEST_INFO}\n{}", o.hooks)
        },
        redis = o
            .redis
            .as_ref()
            .map(|r| format!("[redis]\n{r}"))
            .unwrap_or_default(),
        log = o.log,
        telemetry = o
            .telemetry
            .as_ref()
            .map(|t| format!("[telemetry]\n{t}"))
            .unwrap_or_default(),
        passphrase = match &o.passphrases {
            Some(list) => format!("passphrases = {list:?}"),
            None => format!("passphrase = \"{PASSPHRASE}\""),
        },
    )
}

/// The test configuration with `options`, checked as `check-config` does; its provider and
/// upstream are unused loopback addresses (nothing is contacted).
pub fn load_config(
    options: &Options,
) -> Result<oidc_gateway::config::Config, oidc_gateway::config::ConfigError> {
    let text = toml("http://127.0.0.1:1", "http://127.0.0.1:2", options);
    oidc_gateway::config::Config::from_toml(&text, "t.toml", None)
}

impl Harness {
    pub async fn start() -> Harness {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Harness {
        oidc_gateway::install_crypto_provider();
        let clock = Clock::system();
        let op = DevOp::start(DevOpOptions {
            now: op_now(&clock),
            ..DevOpOptions::default()
        })
        .await
        .expect("dev OP starts");
        let echo = start_echo("127.0.0.1:0".parse().unwrap())
            .await
            .expect("echo starts");
        let issuer = options.issuer.clone().unwrap_or_else(|| op.issuer());
        let upstream = options.upstream.clone().unwrap_or_else(|| echo.url());
        let gw = start_gateway(&issuer, &upstream, &options, &clock).await;
        let base = format!("http://{}", gw.addr());
        register_with_op(&op, &base);
        Harness {
            op,
            echo,
            gw,
            clock,
            base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs `user` in through the real flow, starting at `path`; returns the final
    /// response (the upstream's echo of `path`).
    pub async fn login(&self, client: &Browser, path: &str, user: &str) -> Response {
        let authorize = self.start_login(client, path).await;
        let callback = self.authorize(client, &authorize, user).await;
        let finished = client.get(&callback).await;
        assert_eq!(
            finished.status(),
            StatusCode::FOUND,
            "callback failed: {}",
            finished.text().await.unwrap_or_default()
        );
        let back = location(&finished);
        assert_eq!(back, path, "back to the original URL");
        client.get(&self.url(&back)).await
    }

    /// Requests `path` without a session and returns the OP authorization URL the gateway
    /// redirected to (the state cookie is now in the browser's jar).
    pub async fn start_login(&self, client: &Browser, path: &str) -> String {
        let start = client.get(&self.url(path)).await;
        assert_eq!(
            start.status(),
            StatusCode::FOUND,
            "expected a login redirect for {path}"
        );
        let authorize = location(&start);
        assert!(
            authorize.starts_with(&format!("{}/authorize?", self.op.issuer())),
            "redirect goes to the OP: {authorize}"
        );
        authorize
    }

    /// Signs `user` in at the OP's login form; returns the callback URL (not yet visited).
    /// Works for logins started at any gateway in front of `self.op`.
    pub async fn authorize(&self, client: &Browser, authorize: &str, user: &str) -> String {
        let form = client.get(authorize).await;
        assert_eq!(form.status(), StatusCode::OK);
        let consented = client.post_form(authorize, &[("username", user)]).await;
        assert_eq!(consented.status(), StatusCode::FOUND);
        let callback = location(&consented);
        // Any of this OP's gateways (see `another_gateway`), so only the path is checked.
        assert!(callback.contains("/oauth2/callback?"), "{callback}");
        callback
    }

    /// The callback URL of a login of `user` started at `path` (not yet followed).
    pub async fn callback_for(&self, client: &Browser, path: &str, user: &str) -> String {
        let authorize = self.start_login(client, path).await;
        self.authorize(client, &authorize, user).await
    }

    /// Starts another gateway in front of the same OP, echo and clock, with `options`
    /// (its `issuer` and `upstream` are honoured too). Returns it and its base URL.
    pub async fn another_gateway(&self, options: Options) -> (Running, String) {
        let issuer = options.issuer.clone().unwrap_or_else(|| self.op.issuer());
        let upstream = options.upstream.clone().unwrap_or_else(|| self.echo.url());
        let gw = start_gateway(&issuer, &upstream, &options, &self.clock).await;
        let base = format!("http://{}", gw.addr());
        register_with_op(&self.op, &base);
        (gw, base)
    }
}

/// The development OP's time source reading `clock`, so advancing the harness clock moves
/// the OP's token lifetimes too.
pub fn op_now(clock: &Clock) -> devop::Now {
    let clock = clock.clone();
    Arc::new(move || clock.now())
}

async fn start_gateway(issuer: &str, upstream: &str, o: &Options, clock: &Clock) -> Running {
    let text = toml(issuer, upstream, o);
    let config = Config::from_toml(&text, "test", None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    oidc_gateway::server::start(config, clock.clone())
        .await
        .expect("gateway starts")
}

fn register_with_op(op: &DevOp, base: &str) {
    op.add_redirect_uri(&format!("{base}/oauth2/callback"));
    op.add_post_logout_redirect_uri(&format!("{base}/"));
    op.add_post_logout_redirect_uri(&format!("{base}/public/bye"));
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A GET from a client without a jar, sending exactly `cookie` as the Cookie header.
pub async fn get_with_cookie(url: &str, cookie: &str) -> Response {
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client.get(url).header("accept", "*/*");
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    req.send().await.expect("request")
}

/// The Set-Cookie line that sets or expires cookie `name`, if any.
pub fn set_cookie_for(r: &Response, name: &str) -> Option<String> {
    set_cookies(r)
        .into_iter()
        .find(|c| c.split('=').next() == Some(name))
}

/// Whether the response expires cookie `name` (empty value, `Max-Age=0`).
pub fn clears_cookie(r: &Response, name: &str) -> bool {
    set_cookie_for(r, name)
        .is_some_and(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0"))
}

/// Asserts the response carries `Cache-Control: no-store`.
pub fn assert_no_store(r: &Response) {
    assert_eq!(
        r.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "Cache-Control of a {} response",
        r.status()
    );
}

pub fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .expect("location header")
        .to_str()
        .unwrap()
        .to_string()
}

/// A cookie-keeping client that does not follow redirects, like a browser's jar.
#[derive(Clone)]
pub struct Browser {
    pub client: Client,
    pub jar: Arc<reqwest::cookie::Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser { client, jar }
    }

    pub async fn get(&self, url: &str) -> Response {
        self.client
            .get(url)
            .header("accept", "*/*")
            .send()
            .await
            .expect("request")
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(url)
            .form(form)
            .send()
            .await
            .expect("request")
    }

    /// Like [`Browser::new`] but speaking HTTP/2 only (prior knowledge, cleartext).
    pub fn http2() -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .http2_prior_knowledge()
            .build()
            .unwrap();
        Browser { client, jar }
    }

    /// The `(name, value)` cookies this jar would send to `url`.
    pub fn cookies(&self, url: &str) -> Vec<(String, String)> {
        self.cookie_header(url)
            .split("; ")
            .filter_map(|pair| pair.split_once('='))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Puts `name=value` into the jar for `url` (path `/`).
    pub fn set_cookie(&self, url: &str, name: &str, value: &str) {
        self.jar
            .add_cookie_str(&format!("{name}={value}; Path=/"), &url.parse().unwrap());
    }

    /// The Cookie header this jar would send to `url`.
    pub fn cookie_header(&self, url: &str) -> String {
        use reqwest::cookie::CookieStore;
        self.jar
            .cookies(&url.parse().unwrap())
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// The echo upstream's view of a request: header values by (lowercase) name.
pub struct Echo(pub Value);

impl Echo {
    pub async fn of(r: Response) -> Echo {
        assert_eq!(r.status(), StatusCode::OK, "upstream answered");
        Echo(r.json().await.expect("echo JSON"))
    }

    pub fn headers(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|pair| pair[1].as_str().unwrap().to_string())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// Every header name the upstream received (lowercase, in order).
    pub fn names(&self) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| pair[0].as_str().unwrap().to_string())
            .collect()
    }

    pub fn body_len(&self) -> u64 {
        self.0["body_len"].as_u64().expect("body_len")
    }
}

/// An upstream that records the raw bytes of each request head (up to the blank line) and
/// answers `200 {}`: for asserting exact header bytes (encodings) that the JSON echo would
/// show lossily.
pub async fn start_raw_upstream() -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 8192];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                head.truncate(end);
                let _ = tx.send(head);
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                          content-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    (url, rx)
}

/// The values (raw bytes) of header `name` (case-insensitive) in a raw request head.
pub fn raw_header(head: &[u8], name: &str) -> Vec<Vec<u8>> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let (n, v) = line.split_at(colon);
            n.eq_ignore_ascii_case(name.as_bytes())
                .then(|| v[1..].trim_ascii().to_vec())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Additions for the refresh, info and bearer-route tests.

/// Every `Set-Cookie` value of a response.
pub fn set_cookies(r: &Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// Whether the response writes a (non-empty, non-expiring) session cookie `oidc_session`
/// or a chunk of it.
pub fn sets_session_cookie(r: &Response) -> bool {
    set_cookies(r).iter().any(|c| {
        let (name, rest) = c.split_once('=').unwrap_or((c, ""));
        let value = rest.split(';').next().unwrap_or("");
        name.starts_with("oidc_session")
            && !value.is_empty()
            && !c.to_ascii_lowercase().contains("max-age=0")
    })
}

/// Whether the response clears (expires) the session cookie.
pub fn clears_session_cookie(r: &Response) -> bool {
    set_cookies(r)
        .iter()
        .any(|c| c.starts_with("oidc_session") && c.to_ascii_lowercase().contains("max-age=0"))
}

/// A client without a cookie jar that does not follow redirects: requests carry exactly
/// the headers a test gives them.
pub fn raw_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Harness {
    /// `<base>/oauth2/callback?<query>` (the redirect URI with a hook query).
    pub fn hook_url(&self, query: &str) -> String {
        self.url(&format!("/oauth2/callback?{query}"))
    }

    /// The session as `?info=json` shows it (asserts a 200).
    pub async fn info(&self, b: &Browser) -> Value {
        let r = b.get(&self.hook_url("info=json")).await;
        assert_eq!(r.status(), StatusCode::OK, "info hook answered");
        r.json().await.expect("info JSON")
    }

    /// `host:port` of the gateway, as browsers send it in `Host`.
    pub fn host(&self) -> String {
        self.gw.addr().to_string()
    }
}

impl Browser {
    /// GET with extra request headers (the jar's cookies are added as usual).
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = self.client.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request")
    }

    /// The value of cookie `name` this jar would send to `url`.
    pub fn cookie_value(&self, url: &str, name: &str) -> Option<String> {
        self.cookie_header(url).split("; ").find_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    }
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A TCP forwarder that can be closed and reopened, to make a service unreachable for a
/// while (closing also cuts every connection already open through it, so pooled
/// keep-alive connections cannot sneak past).
pub struct Gate {
    addr: std::net::SocketAddr,
    target: Arc<std::sync::Mutex<Option<std::net::SocketAddr>>>,
    open: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Gate {
    /// Binds a free loopback port; closed until [`Gate::forward_to`] and [`Gate::open`].
    pub async fn start() -> Gate {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(std::sync::Mutex::new(None));
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (t, o, c) = (target.clone(), open.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let to = *t.lock().unwrap();
                let Some(to) = to.filter(|_| o.load(Ordering::SeqCst)) else {
                    drop(inbound);
                    continue;
                };
                let mut cut = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Gate {
            addr,
            target,
            open,
            cut,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forwards to `to` and opens.
    pub fn forward_to(&self, to: std::net::SocketAddr) {
        *self.target.lock().unwrap() = Some(to);
        self.open();
    }

    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Refuses new connections and cuts the open ones.
    pub fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }
}

/// `cookie_header` with one character in the middle of the (first chunk of the) session
/// cookie's value changed.
pub fn tamper_session_cookie(cookie_header: &str) -> String {
    cookie_header
        .split("; ")
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name != "oidc_session" && name != "oidc_session_0" {
                return pair.to_string();
            }
            let mut bytes = value.as_bytes().to_vec();
            let mid = bytes.len() / 2;
            bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
            format!("{name}={}", String::from_utf8(bytes).unwrap())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits (at most 15 s) until the admin listener at `admin` answers `/readyz` with 200 and
/// `checks.redis.status` equal to `redis` (`"ok"` or `"degraded"`); checks the body's
/// shape (docs/behaviour.md §12.1) and returns it.
pub async fn wait_for_readyz(admin: std::net::SocketAddr, redis: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let resp = reqwest::get(format!("http://{admin}/readyz"))
            .await
            .unwrap();
        let ok = resp.status() == reqwest::StatusCode::OK;
        let text = resp.text().await.unwrap();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{admin}/readyz is not JSON ({e}): {text}"));
        if ok && body["checks"]["redis"]["status"] == redis {
            let (top, detail) = match redis {
                "ok" => ("ready", false),
                _ => ("degraded", true),
            };
            assert_eq!(body["status"], top, "{body}");
            assert_eq!(body["checks"]["provider"]["status"], "ok", "{body}");
            assert_eq!(body["checks"]["listeners"]["status"], "ok", "{body}");
            assert_eq!(
                body["checks"]["redis"]["detail"].is_string(),
                detail,
                "{body}"
            );
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{admin}/readyz never said redis {redis:?}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The status of a GET of `base` + `path` with `Authorization: Bearer token`.
pub async fn bearer_status(base: &str, path: &str, token: &str) -> reqwest::StatusCode {
    raw_client()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}
