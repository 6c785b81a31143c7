//! Guards the size of the per-request future. The server boxes it once per request (so idle
//! keep-alive connections no longer hold a slot of its size: src/server/mod.rs), which
//! makes its size one allocation on every request: an arm that is rarely taken but large
//! (login, hooks, refresh grants, bearer validation) stays boxed inside it.
// Measuring the future's size makes rustc lay out every nested future type, deeper than
// the default limit of 128 queries since the replicas' paths wrap the grant and
// validation futures.
#![recursion_limit = "256"]

use hyper::body::Incoming;
use oidc_gateway::clock::Clock;
use oidc_gateway::config::Config;
use oidc_gateway::gateway::Gateway;
use std::future::Future;
use std::sync::Arc;

/// Bytes of the future that `f` returns, without calling it.
fn size_of_returned<A, F: Future>(_f: impl Fn(A) -> F) -> usize {
    std::mem::size_of::<F>()
}

#[test]
fn per_request_future_stays_small() {
    let text = r#"
[provider]
issuer = "http://127.0.0.1:9"
client_id = "gateway"
client_secret = "gateway-secret"
[session]
passphrase = "future-size-passphrase-0123456789"
[[route]]
path = "/"
upstream = "http://127.0.0.1:9"
auth = "openid-connect"
"#;
    let config = Config::from_toml(text, "test", None).expect("config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let gw = Arc::new(Gateway::new(config, Clock::system()));
    let peer: std::net::SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let size = size_of_returned(move |req: http::Request<Incoming>| {
        let gw = gw.clone();
        async move { gw.handle(req, peer, false).await }
    });
    eprintln!("Gateway::handle future: {size} bytes");
    // About 3.5 KiB (debug and release) at the time of writing; it was 21 KiB before the
    // rare arms were boxed.
    assert!(
        size <= 8 * 1024,
        "Gateway::handle's future is {size} bytes: box the large, rarely taken arm"
    );
}
