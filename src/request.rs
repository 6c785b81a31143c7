//! Who and where an inbound request came from: the client address, scheme and host as the
//! browser sees the gateway, believing `X-Forwarded-*` only from trusted proxies.

use crate::config::ServerConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::{Buf, Bytes};
use http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE, HOST};
use rand::RngCore;
use std::net::{IpAddr, SocketAddr};

pub(crate) const XFP: &str = "x-forwarded-proto";
pub(crate) const XFH: &str = "x-forwarded-host";
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `X-Request-Id` taken from a trusted proxy.
pub(crate) const MAX_REQUEST_ID_LEN: usize = 128;

/// Where the request came from, as the gateway believes it.
#[derive(Debug, Clone)]
pub(crate) struct RequestCtx {
    /// "http" or "https", as the browser sees the gateway.
    pub scheme: &'static str,
    /// Host (and port) as the browser sees the gateway.
    pub host: Host,
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
    /// `Some` for a forward-auth check: the request is a front proxy's, about one of its
    /// own (whose scheme and host these are); it is answered, not forwarded.
    pub forward_auth: Option<Asker>,
}

/// Who asks a forward-auth check, as far as the answer goes: what the front proxy does
/// with an answer that is not a 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    /// nginx `auth_request` (the original request came as `X-Original-URL`): it
    /// understands 2xx, 401 and 403 only (any other status becomes a 500), so a browser
    /// is answered 401 too, and nginx's `error_page 401` sends it to `server.login_path`.
    StatusOnly,
    /// Traefik, Caddy and Envoy: a non-2xx answer goes to the client as it is, so a
    /// browser gets the 302 to the provider directly.
    PassesAnswers,
}

/// The host (and port) the browser asked for, checked by [`plausible_host`] (letters,
/// digits and `-.:[]_` only). Kept as a header value: most often it shares the request's
/// own `Host` bytes, and it goes upstream (`X-Forwarded-Host`, a preserved `Host`) without
/// a copy.
#[derive(Debug, Clone)]
pub(crate) struct Host(HeaderValue);

impl Host {
    /// `host`, when it is plausible.
    pub(crate) fn new(host: &str) -> Option<Host> {
        if !plausible_host(host) {
            return None;
        }
        HeaderValue::from_str(host).ok().map(Host)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Plausible hosts are ASCII.
        self.0.to_str().unwrap_or_default()
    }

    /// As a header value (shares the bytes).
    pub(crate) fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl std::ops::Deref for Host {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Host {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<&str> for Host {
    /// For tests and fixed values: `host` must be plausible.
    fn from(host: &str) -> Host {
        Host::new(host).expect("a plausible host")
    }
}

impl RequestCtx {
    pub(crate) fn secure(&self) -> bool {
        self.scheme == "https"
    }

    /// `scheme://host`.
    pub(crate) fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

/// How long the gateway waits for a request body it reads itself (a back-channel logout,
/// a form-posted bearer token): a client that trickles bytes cannot hold a task forever.
pub(crate) const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// At most this much of a refused request's body is read, and dropped, before the refusal
/// is sent, within [`DISCARD_TIMEOUT`].
const DISCARD_MAX: usize = 1024 * 1024;
const DISCARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what is left of `body`, up to [`DISCARD_MAX`] bytes and for at most
/// [`DISCARD_TIMEOUT`], before a refusal that did not need it (too large, another origin):
/// a client still uploading then reads the answer, where closing the connection under it
/// would reset it first (nginx's lingering close). Past the bounds the connection closes.
pub(crate) async fn discard_body<B: hyper::body::Body + Unpin>(mut body: B) {
    use http_body_util::BodyExt;
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.remaining());
            if seen > DISCARD_MAX {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, drain).await;
}

/// Whether `host` (as the client sent it, maybe with a port) is one of `allowed`: an entry
/// with a port must match host and port, one without matches the host on any port.
fn host_allowed(allowed: &[String], host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:8080` and `example.com:8080`, but not the bare IPv6 `[::1]`.
        Some((name, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(name))
}

/// A host as it may appear in a Host header: no path, userinfo, spaces or controls.
fn plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// Whether `peer` is one of `server.trusted_proxies`.
pub(crate) fn is_trusted(cfg: &ServerConfig, peer: SocketAddr) -> bool {
    let peer_ip = peer.ip().to_canonical();
    cfg.trusted_proxies.iter().any(|net| net.contains(&peer_ip))
}

/// The request's id, sent upstream and back to the client as `X-Request-Id`: a trusted
/// proxy's own, when it is 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters (no space
/// or control character: it goes into log lines as it is), else a fresh random one.
pub(crate) fn request_id(trusted: bool, headers: &HeaderMap) -> HeaderValue {
    if trusted {
        if let Some(id) = headers.get(X_REQUEST_ID).filter(|v| sane_request_id(v)) {
            // Shares the request's bytes: no copy.
            return id.clone();
        }
    }
    new_request_id()
}

fn sane_request_id(id: &HeaderValue) -> bool {
    let id = id.as_bytes();
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

/// 96 random bits as 16 base64url characters. One allocation, and clones of the value
/// (upstream request, response) share it.
fn new_request_id() -> HeaderValue {
    let mut raw = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut raw);
    let mut text = [0u8; 16];
    let written = URL_SAFE_NO_PAD
        .encode_slice(raw, &mut text)
        .expect("12 bytes are 16 base64 characters");
    debug_assert_eq!(written, text.len());
    HeaderValue::from_maybe_shared(Bytes::from_owner(text))
        .expect("base64url is a valid header value")
}

/// Works out scheme, host and client of a request. `None` when it has no usable host.
pub(crate) fn request_ctx(
    cfg: &ServerConfig,
    uri: &http::Uri,
    headers: &HeaderMap,
    peer: SocketAddr,
    tls: bool,
) -> Option<RequestCtx> {
    request_ctx_trusted(cfg, uri, headers, peer, is_trusted(cfg, peer), tls)
}

/// [`request_ctx`] for a peer whose trust ([`is_trusted`]) is already known.
pub(crate) fn request_ctx_trusted(
    cfg: &ServerConfig,
    uri: &http::Uri,
    headers: &HeaderMap,
    peer: SocketAddr,
    trusted: bool,
    tls: bool,
) -> Option<RequestCtx> {
    let peer_ip = peer.ip().to_canonical();
    let forwarded = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    // The host the client asked for: a trusted proxy's X-Forwarded-Host, else Host.
    let asked = trusted
        .then(|| forwarded(XFH))
        .flatten()
        .or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok()))
        .or_else(|| uri.authority().map(|a| a.as_str()));
    if !cfg.allowed_hosts.is_empty() && !asked.is_some_and(|h| host_allowed(&cfg.allowed_hosts, h))
    {
        return None;
    }
    if let Some(public) = &cfg.public_url {
        let host = match public.port() {
            Some(port) => Host::new(&format!("{}:{port}", public.host_str()?))?,
            None => Host::new(public.host_str()?)?,
        };
        let scheme = if public.scheme() == "https" {
            "https"
        } else {
            "http"
        };
        return Some(RequestCtx {
            scheme,
            host,
            peer: peer_ip,
            trusted,
            forward_auth: None,
        });
    }
    let mut scheme = if tls { "https" } else { "http" };
    if trusted {
        match forwarded(XFP) {
            Some(p) if p.eq_ignore_ascii_case("https") => scheme = "https",
            Some(p) if p.eq_ignore_ascii_case("http") => scheme = "http",
            _ => {}
        }
    }
    let asked = asked?;
    let host = match headers.get(HOST) {
        // The usual case: the request's own Host header, shared.
        Some(own) if own.as_bytes() == asked.as_bytes() && plausible_host(asked) => {
            Host(own.clone())
        }
        _ => Host::new(asked)?,
    };
    Some(RequestCtx {
        scheme,
        host,
        peer: peer_ip,
        trusted,
        forward_auth: None,
    })
}

/// Every `(name, value)` cookie pair in the request's Cookie headers.
pub(crate) fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// A server config trusting `trusted` (CIDRs), for tests.
    pub(crate) fn cfg(trusted: &[&str]) -> ServerConfig {
        ServerConfig {
            listen: vec![],
            public_url: None,
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            allowed_hosts: vec![],
            upstream_timeout: Duration::from_secs(1),
            upstream_connect_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(120),
            max_connections: None,
            workers: 1,
            tls: None,
            redirect_http_listen: vec![],
            hsts: None,
            forward_auth_path: None,
            login_path: None,
        }
    }

    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn request_ids_come_from_trusted_proxies_only_and_only_when_sane() {
        let sent = |v: &str| headers(&[("x-request-id", v)]);
        let fresh = request_id(false, &HeaderMap::new());
        assert_eq!(fresh.len(), 16);
        assert!(fresh
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'));
        assert_ne!(fresh, request_id(false, &HeaderMap::new()), "random");
        assert_eq!(request_id(true, &sent("proxy-id-1")), "proxy-id-1");
        assert_ne!(request_id(false, &sent("proxy-id-1")), "proxy-id-1");
        let longest = "a".repeat(MAX_REQUEST_ID_LEN);
        assert_eq!(request_id(true, &sent(&longest)), longest.as_str());
        let mut odd = HeaderMap::new();
        odd.insert(
            X_REQUEST_ID,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        for insane in [
            sent(&"a".repeat(MAX_REQUEST_ID_LEN + 1)),
            sent("a\tb"),
            sent("a b"),
            sent(""),
            odd,
        ] {
            let id = request_id(true, &insane);
            assert_eq!(id.len(), 16, "{insane:?} replaced");
        }
    }

    #[test]
    fn trust_is_decided_by_the_peer_address() {
        let c = cfg(&["10.0.0.0/8", "::1/128"]);
        assert!(is_trusted(&c, "10.1.2.3:1".parse().unwrap()));
        assert!(is_trusted(&c, "[::ffff:10.1.2.3]:1".parse().unwrap()));
        assert!(is_trusted(&c, "[::1]:1".parse().unwrap()));
        assert!(!is_trusted(&c, "127.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn hostile_host_is_refused() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for bad in ["evil.test/x", "a@b", "a b", ""] {
            let h = headers(&[("host", bad)]);
            assert!(
                request_ctx(&cfg(&[]), &"/".parse().unwrap(), &h, peer, false).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_allowed_hosts_are_answered() {
        let mut c = cfg(&["10.0.0.0/8"]);
        c.allowed_hosts = vec!["app.test".into(), "admin.test:8443".into()];
        let ctx_with = |c: &ServerConfig, host: &str, peer: &str| {
            let h = headers(&[("host", host)]);
            request_ctx(c, &"/".parse().unwrap(), &h, peer.parse().unwrap(), false)
        };
        let ctx = |host: &str, peer: &str| ctx_with(&c, host, peer);
        assert!(ctx("app.test", "127.0.0.1:1").is_some());
        assert!(ctx("APP.test:8080", "127.0.0.1:1").is_some(), "any port");
        assert!(ctx("admin.test:8443", "127.0.0.1:1").is_some());
        assert!(
            ctx("admin.test:9000", "127.0.0.1:1").is_none(),
            "that port only"
        );
        assert!(ctx("evil.test", "127.0.0.1:1").is_none());
        // A trusted proxy's X-Forwarded-Host is what is checked.
        let h = headers(&[("host", "internal"), ("x-forwarded-host", "app.test")]);
        let peer = "10.0.0.5:1".parse().unwrap();
        assert!(request_ctx(&c, &"/".parse().unwrap(), &h, peer, false).is_some());
        // With public_url too: a request for another host is refused.
        let mut c = c.clone();
        c.public_url = Some("https://app.test".parse().unwrap());
        assert!(ctx_with(&c, "evil.test", "127.0.0.1:1").is_none());
        assert_eq!(
            ctx_with(&c, "app.test", "127.0.0.1:1").unwrap().host,
            "app.test"
        );
    }
}
