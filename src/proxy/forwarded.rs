//! Who and where a request came from: the client address, scheme and host, believing
//! `X-Forwarded-*` only from trusted proxies; and the `X-Forwarded-*` headers we send on.

use crate::config::ServerConfig;
use http::header::{HeaderMap, HeaderValue, HOST};
use std::net::{IpAddr, SocketAddr};

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";

/// Where the request came from, as the gateway believes it.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// "http" or "https", as the browser sees the gateway.
    pub scheme: &'static str,
    /// Host (and port) as the browser sees the gateway.
    pub host: String,
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
}

impl RequestCtx {
    pub fn secure(&self) -> bool {
        self.scheme == "https"
    }

    /// `scheme://host`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

/// A host as it may appear in a Host header: no path, userinfo, spaces or controls.
fn plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// Works out scheme, host and client of a request. `None` when it has no usable host.
pub fn request_ctx(
    cfg: &ServerConfig,
    uri: &http::Uri,
    headers: &HeaderMap,
    peer: SocketAddr,
    tls: bool,
) -> Option<RequestCtx> {
    let peer_ip = peer.ip().to_canonical();
    let trusted = cfg.trusted_proxies.iter().any(|net| net.contains(&peer_ip));
    if let Some(public) = &cfg.public_url {
        let host = match public.port() {
            Some(port) => format!("{}:{port}", public.host_str()?),
            None => public.host_str()?.to_string(),
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
        });
    }
    let forwarded = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut scheme = if tls { "https" } else { "http" };
    let mut host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .map(str::to_string);
    if trusted {
        match forwarded(XFP) {
            Some(p) if p.eq_ignore_ascii_case("https") => scheme = "https",
            Some(p) if p.eq_ignore_ascii_case("http") => scheme = "http",
            _ => {}
        }
        if let Some(h) = forwarded(XFH) {
            host = Some(h.to_string());
        }
    }
    let host = host.filter(|h| plausible_host(h))?;
    Some(RequestCtx {
        scheme,
        host,
        peer: peer_ip,
        trusted,
    })
}

/// Sets `X-Forwarded-For/Proto/Host` on a request going upstream: appended to what a
/// trusted proxy sent, replacing whatever anyone else sent.
pub fn set_forwarded_headers(headers: &mut HeaderMap, ctx: &RequestCtx) {
    let mut xff = String::new();
    if ctx.trusted {
        // Every X-Forwarded-For line the proxy sent, in order (a list may span lines).
        for prev in headers.get_all(XFF).iter().filter_map(|v| v.to_str().ok()) {
            let prev = prev.trim();
            if !prev.is_empty() {
                xff.push_str(prev);
                xff.push_str(", ");
            }
        }
    }
    let _ = std::fmt::Write::write_fmt(&mut xff, format_args!("{}", ctx.peer));
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(XFF, v);
    }
    headers.insert(XFP, HeaderValue::from_static(ctx.scheme));
    if let Ok(v) = HeaderValue::from_str(&ctx.host) {
        headers.insert(XFH, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(trusted: &[&str]) -> ServerConfig {
        ServerConfig {
            listen: vec![],
            public_url: None,
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            upstream_timeout: Duration::from_secs(1),
            upstream_connect_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn untrusted_forwarded_headers_are_ignored_and_replaced() {
        let h = headers(&[
            ("host", "app.test"),
            (XFH, "evil.test"),
            (XFP, "https"),
            (XFF, "6.6.6.6"),
        ]);
        let peer: SocketAddr = "10.0.0.5:1234".parse().unwrap();
        let ctx = request_ctx(&cfg(&[]), &"/".parse().unwrap(), &h, peer, false).unwrap();
        assert_eq!((ctx.scheme, ctx.host.as_str()), ("http", "app.test"));
        let mut out = h.clone();
        set_forwarded_headers(&mut out, &ctx);
        assert_eq!(out[XFF], "10.0.0.5");
        assert_eq!(out[XFH], "app.test");
        assert_eq!(out[XFP], "http");
    }

    #[test]
    fn trusted_proxy_headers_are_believed_and_appended() {
        let h = headers(&[
            ("host", "internal:8080"),
            (XFH, "app.test"),
            (XFP, "https"),
            (XFF, "1.2.3.4"),
        ]);
        let peer: SocketAddr = "10.0.0.5:1234".parse().unwrap();
        let ctx = request_ctx(
            &cfg(&["10.0.0.0/8"]),
            &"/".parse().unwrap(),
            &h,
            peer,
            false,
        )
        .unwrap();
        assert_eq!((ctx.scheme, ctx.host.as_str()), ("https", "app.test"));
        let mut out = h.clone();
        set_forwarded_headers(&mut out, &ctx);
        assert_eq!(out[XFF], "1.2.3.4, 10.0.0.5");
        // A list split over several lines keeps every hop, once, on one line.
        let mut out = h.clone();
        out.append(XFF, HeaderValue::from_static("5.6.7.8"));
        set_forwarded_headers(&mut out, &ctx);
        assert_eq!(out.get_all(XFF).iter().count(), 1);
        assert_eq!(out[XFF], "1.2.3.4, 5.6.7.8, 10.0.0.5");
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
}
