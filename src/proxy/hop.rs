//! Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded, in either direction.

use http::header::{self, HeaderMap, HeaderName};

const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    // Not standard, but sent by old clients and proxies.
    HeaderName::from_static("proxy-connection"),
    // The HTTP/2 upgrade's settings (RFC 7540 §3.2.1): connection-specific.
    HeaderName::from_static("http2-settings"),
];

/// The header names the `Connection` header lists.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        for name in connection_named(headers) {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Applies a client's `Connection` header before the gateway adds its own headers: the
/// headers it names go now, and it keeps only `upgrade` (which the proxy still needs).
/// Otherwise `Connection: OIDC_CLAIM_groups` would make the proxy drop a header the
/// gateway set.
pub(crate) fn drop_connection_named(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    let upgrade = upgrade_protocol(headers).is_some();
    for name in connection_named(headers) {
        if name != header::UPGRADE {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
    } else {
        headers.remove(header::CONNECTION);
    }
}

/// The `Upgrade` protocol when the request asks for one (e.g. WebSocket).
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<http::HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if connection_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_listed_and_standard_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_named_headers_go_before_the_gateway_adds_its_own() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "Upgrade, x-hop, oidc_claim_sub".parse().unwrap(),
        );
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("x-hop", "1".parse().unwrap());
        drop_connection_named(&mut h);
        assert!(!h.contains_key("x-hop"));
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        // What the gateway adds afterwards survives the proxy's hop-by-hop removal.
        h.insert("oidc_claim_sub", "alice".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h["oidc_claim_sub"], "alice");

        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-hop".parse().unwrap());
        h.insert("x-hop", "1".parse().unwrap());
        drop_connection_named(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn detects_upgrade() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        h.insert("connection", "keep-alive".parse().unwrap());
        assert!(upgrade_protocol(&h).is_none());
    }
}
