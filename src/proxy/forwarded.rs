//! The `X-Forwarded-*` headers sent upstream: appended to what a trusted proxy sent,
//! replacing whatever anyone else sent.

use crate::request::{RequestCtx, XFH, XFP};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use std::cell::RefCell;
use std::net::IpAddr;

const XFF: &str = "x-forwarded-for";

/// Headers that name the client, its address or the original URL, which frameworks honour
/// for IP allow-lists and routing. Only a trusted proxy may send them; from anyone else
/// they are dropped (the `X-Forwarded-For/Proto/Host` the gateway sets replace theirs).
fn from_trusted_proxies_only(name: &str) -> bool {
    matches!(
        name,
        "forwarded"
            | "x-real-ip"
            | "x-forwarded-port"
            | "x-forwarded-prefix"
            | "x-forwarded-server"
            | "x-original-url"
            | "x-rewrite-url"
            | "true-client-ip"
            | "x-client-ip"
            | "client-ip"
    )
}

/// Sets `X-Forwarded-For/Proto/Host` on a request going upstream: appended to what a
/// trusted proxy sent, replacing whatever anyone else sent. From anyone else, the other
/// client-describing headers ([`from_trusted_proxies_only`]) are dropped too.
pub(crate) fn set_forwarded_headers(headers: &mut HeaderMap, ctx: &RequestCtx) {
    // One pass over the names (header names are lowercase); removal only when one is there.
    if !ctx.trusted
        && headers
            .keys()
            .any(|n| from_trusted_proxies_only(n.as_str()))
    {
        let spoofed: Vec<_> = headers
            .keys()
            .filter(|n| from_trusted_proxies_only(n.as_str()))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(name);
        }
    }
    if ctx.trusted && headers.contains_key(XFF) {
        // Every X-Forwarded-For line the proxy sent, in order (a list may span lines).
        let mut xff = String::new();
        for prev in headers.get_all(XFF).iter().filter_map(|v| v.to_str().ok()) {
            let prev = prev.trim();
            if !prev.is_empty() {
                xff.push_str(prev);
                xff.push_str(", ");
            }
        }
        let _ = std::fmt::Write::write_fmt(&mut xff, format_args!("{}", ctx.peer));
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert(XFF, v);
        }
    } else {
        headers.insert(XFF, peer_header(ctx.peer));
    }
    headers.insert(XFP, HeaderValue::from_static(ctx.scheme));
    headers.insert(XFH, ctx.host.header());
}

/// `ip` as a header value. The last one made is kept per thread: a worker's consecutive
/// requests mostly come from one client address (a keep-alive connection, the load
/// balancer in front), whose value is then shared instead of formatted and copied again.
fn peer_header(ip: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((seen, value)) if *seen == ip => value.clone(),
        _ => {
            let value = HeaderValue::from_maybe_shared(Bytes::from(ip.to_string()))
                .expect("an IP address is a valid header value");
            *last = Some((ip, value.clone()));
            value
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::request_ctx;
    use crate::request::tests::{cfg, headers};
    use std::net::SocketAddr;

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
}
