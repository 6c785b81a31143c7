//! A regression guard for the per-request path that is not a timing: the heap allocations
//! the gateway makes per proxied request on its `none`, session (`openid-connect`) and
//! bearer (`oauth20`, cached) routes, counted by a global allocator and asserted at or under
//! the figures reached (issue 17). A change that adds work to the hot path (a header map
//! cloned, a string formatted, a future boxed) fails here, whatever the machine's speed.
//!
//! Everything else in the process is made allocation-free per request so that the counter
//! sees the gateway only: the client is a blocking socket writing one fixed request and
//! reading into a fixed buffer, the upstream a blocking socket answering one fixed response.
//! Each figure is the smallest of several windows of requests on one keep-alive connection,
//! so a background task (a periodic refresh) running during one window does not count.
//!
//! Its own test binary: the global allocator counts the whole process.
//! When it fails after a deliberate change, lower or raise the bound in the same commit and
//! say why there; `cargo test --test allocations -- --nocapture` prints the figures.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

/// The bounds: allocations per proxied request, the figures reached (issue 17: 26, 26 and
/// 29 before the Host, X-Forwarded-Host and X-Forwarded-For values were shared instead of
/// copied).
const NONE_ROUTE: u64 = 18;
const SESSION_ROUTE: u64 = 18;
const BEARER_ROUTE: u64 = 21;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

/// An upstream that answers every request with [`RESPONSE`], allocating nothing per request
/// (one buffer per connection).
fn fixed_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut filled = 0;
                loop {
                    match stream.read(&mut buf[filled..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => filled += n,
                    }
                    // GET requests only: the head is the whole request.
                    if buf[..filled].ends_with(b"\r\n\r\n") {
                        filled = 0;
                        if stream.write_all(RESPONSE).is_err() {
                            return;
                        }
                    }
                    assert!(filled < buf.len(), "request head too large for the test");
                }
            });
        }
    });
    addr
}

/// Sends `request` on `stream` and reads the response, which must be the upstream's 200
/// `ok` (a refusal or redirect from the gateway fails the test).
fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut [u8]) {
    stream.write_all(request).unwrap();
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).unwrap();
        assert!(n > 0, "the gateway closed the connection");
        filled += n;
        if buf[..filled].ends_with(b"\r\n\r\nok") {
            break;
        }
        assert!(
            filled < buf.len() && !buf[..filled].windows(4).any(|w| w == b"\r\n\r\n"),
            "not the upstream's answer: {}",
            String::from_utf8_lossy(&buf[..filled])
        );
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&buf[..filled])
    );
}

/// Allocations per request of `request` sent to `gateway`: the smallest figure of several
/// windows, after a warm-up (connection buffers, pools, caches).
fn allocations_per_request(gateway: SocketAddr, request: String) -> u64 {
    const WINDOW: u64 = 100;
    let request = request.into_bytes();
    let mut stream = TcpStream::connect(gateway).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..50 {
        exchange(&mut stream, &request, &mut buf);
    }
    let mut least = u64::MAX;
    for _ in 0..5 {
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..WINDOW {
            exchange(&mut stream, &request, &mut buf);
        }
        let used = ALLOCATIONS.load(Ordering::SeqCst) - before;
        least = least.min(used.div_ceil(WINDOW));
    }
    least
}

fn get(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nUser-Agent: allocations-test\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_per_proxied_request_stay_within_bounds() {
    let upstream = fixed_upstream();
    // The harness's routes: `/public` (none), `/` (session) and `/api` (bearer).
    let h = Harness::with(Options {
        upstream: Some(format!("http://{upstream}")),
        ..Options::default()
    })
    .await;
    let browser = Browser::new();
    let landed = h.login(&browser, "/", "alice").await;
    assert_eq!(landed.status(), 200);
    let cookie = browser.cookie_header(&h.base);
    let token = h.op.issue_access_token("alice", "openid", 3600);
    let host = h.host();
    let gateway = h.gw.addr();

    let (none, session, bearer) = tokio::task::spawn_blocking(move || {
        let none = allocations_per_request(gateway, get("/public/x", &host, ""));
        let session =
            allocations_per_request(gateway, get("/x", &host, &format!("Cookie: {cookie}\r\n")));
        let bearer = allocations_per_request(
            gateway,
            get(
                "/api/x",
                &host,
                &format!("Authorization: Bearer {token}\r\n"),
            ),
        );
        (none, session, bearer)
    })
    .await
    .unwrap();
    eprintln!("allocations per proxied request: none {none}, session {session}, bearer {bearer}");
    assert!(
        none <= NONE_ROUTE,
        "none route: {none} allocations per request, bound {NONE_ROUTE}"
    );
    assert!(
        session <= SESSION_ROUTE,
        "session route: {session} allocations per request, bound {SESSION_ROUTE}"
    );
    assert!(
        bearer <= BEARER_ROUTE,
        "bearer route: {bearer} allocations per request, bound {BEARER_ROUTE}"
    );
}
