//! The load clients of `scripts/bench` that wrk cannot be:
//!
//! - `idle`: opens many keep-alive connections, sends one request on each, then holds them
//!   idle while sampling a process's RSS (`--watch-pid`), so the cost of an idle
//!   connection can be read off.
//! - `soak`: browser-like clients (cookie jars that store every `Set-Cookie`) keep a few
//!   sessions busy for a fixed time while their access tokens expire and are refreshed
//!   by the gateway; counts non-2xx answers and lost sessions (a redirect to log in, or a
//!   401, on a route that had a valid session).
//!
//! Both stop by themselves (`--hold`, `--duration`) and only talk to the address given.

use clap::{Parser, Subcommand};
use reqwest::cookie::Jar;
use reqwest::redirect::Policy;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hold many idle keep-alive connections and sample a process's RSS.
    Idle {
        #[arg(long)]
        addr: SocketAddr,
        /// Path of the one request sent on each connection before it goes idle.
        #[arg(long, default_value = "/none/")]
        path: String,
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Seconds to hold the connections once all are open.
        #[arg(long, default_value_t = 20)]
        hold: u64,
        /// Process whose VmRSS is sampled (the gateway).
        #[arg(long)]
        watch_pid: Option<u32>,
        /// Connections being opened at once.
        #[arg(long, default_value_t = 256)]
        parallel: usize,
    },
    /// Keep sessions busy through several access-token refreshes.
    Soak {
        /// Gateway base URL, e.g. http://127.0.0.1:18402
        #[arg(long)]
        base: String,
        /// The openid-connect route to load.
        #[arg(long, default_value = "/oidc/")]
        path: String,
        #[arg(long, default_value_t = 64)]
        conns: usize,
        /// Distinct logged-in users; connections are spread over them.
        #[arg(long, default_value_t = 4)]
        sessions: usize,
        #[arg(long, default_value_t = 300)]
        duration: u64,
        /// Seconds between progress lines.
        #[arg(long, default_value_t = 30)]
        progress: u64,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Idle {
            addr,
            path,
            conns,
            hold,
            watch_pid,
            parallel,
        } => idle(addr, &path, conns, hold, watch_pid, parallel).await,
        Command::Soak {
            base,
            path,
            conns,
            sessions,
            duration,
            progress,
        } => soak(&base, &path, conns, sessions, duration, progress).await,
    }
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reads one response with a Content-Length body; whether it was a 2xx.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<bool> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let ok = head.starts_with("http/1.1 2");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok(ok);
    }
}

async fn idle(
    addr: SocketAddr,
    path: &str,
    conns: usize,
    hold: u64,
    watch_pid: Option<u32>,
    parallel: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let before = watch_pid.and_then(rss_kib);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (request, opened, failed, gate) = (
            request.clone(),
            opened.clone(),
            failed.clone(),
            gate.clone(),
        );
        let mut release = release_rx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let connected = async {
                let mut s = TcpStream::connect(addr).await?;
                s.write_all(request.as_bytes()).await?;
                let ok = read_response(&mut s).await?;
                Ok::<_, std::io::Error>((s, ok))
            };
            let mut stream = match tokio::time::timeout(Duration::from_secs(30), connected).await {
                Ok(Ok((s, true))) => s,
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            // Idle until released; a read that completes first means the server closed.
            let mut byte = [0u8; 1];
            tokio::select! {
                _ = release.wait_for(|r| *r) => true,
                _ = stream.read(&mut byte) => false,
            }
        }));
    }
    // Wait until every connection is open (or failed), bounded.
    let deadline = Instant::now() + Duration::from_secs(120);
    while (opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed)) < conns as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_secs = started.elapsed().as_secs_f64();
    let mut samples = Vec::new();
    for _ in 0..hold {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(kib) = watch_pid.and_then(rss_kib) {
            samples.push(kib);
        }
    }
    let _ = release_tx.send(true);
    let mut still_open = 0u64;
    for t in tasks {
        if let Ok(true) = t.await {
            still_open += 1;
        }
    }
    let max = samples.iter().copied().max();
    let mib = |k: Option<u64>| k.map_or("null".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    println!(
        "idle {{\"conns\":{conns},\"opened\":{},\"failed\":{},\"open_secs\":{open_secs:.1},\
         \"still_open_after_hold\":{still_open},\"hold_secs\":{hold},\
         \"rss_before_mib\":{},\"rss_idle_max_mib\":{},\"rss_idle_last_mib\":{}}}",
        opened.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        mib(before),
        mib(max),
        mib(samples.last().copied()),
    );
    Ok(())
}

/// One logged-in user: a cookie jar shared by its connections, re-filled by a new login
/// when the session is lost (counted once per loss, not once per failing request).
struct User {
    name: String,
    jar: Arc<Jar>,
    generation: tokio::sync::Mutex<u64>,
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    ok: AtomicU64,
    non2xx: AtomicU64,
    errors: AtomicU64,
    lost_sessions: AtomicU64,
    statuses: Mutex<BTreeMap<u16, u64>>,
}

/// Logs in through the real flow: protected URL -> OP login form -> POST user name ->
/// callback -> back to the URL, following redirects and keeping cookies in `jar`.
async fn login(url: &str, user: &str, jar: Arc<Jar>) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(Policy::limited(10))
        .build()
        .map_err(|e| e.to_string())?;
    let form = client
        .get(url)
        .header("accept", "text/html")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let authorize = form.url().clone();
    if !authorize.path().ends_with("/authorize") {
        return Err(format!("expected the OP login form, got {authorize}"));
    }
    let done = client
        .post(authorize)
        .header("accept", "text/html")
        .form(&[("username", user)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !done.status().is_success() || done.url().as_str() != url {
        return Err(format!("login ended at {} ({})", done.url(), done.status()));
    }
    Ok(())
}

async fn soak(
    base: &str,
    path: &str,
    conns: usize,
    sessions: usize,
    duration: u64,
    progress: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut users = Vec::new();
    for i in 0..sessions.max(1) {
        let user = Arc::new(User {
            name: format!("soak{i}"),
            jar: Arc::new(Jar::default()),
            generation: tokio::sync::Mutex::new(0),
        });
        login(&url, &user.name, user.jar.clone()).await?;
        users.push(user);
    }
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(duration);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let user = users[c % users.len()].clone();
        let (tally, url) = (tally.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            // One client per connection: a browser tab with its own keep-alive socket.
            let client = reqwest::Client::builder()
                .cookie_provider(user.jar.clone())
                .redirect(Policy::none())
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            while Instant::now() < deadline {
                let generation = *user.generation.lock().await;
                tally.requests.fetch_add(1, Ordering::Relaxed);
                let status = match client.get(&url).send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.bytes().await;
                        status
                    }
                    Err(_) => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if status.is_success() {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                tally.non2xx.fetch_add(1, Ordering::Relaxed);
                *tally
                    .statuses
                    .lock()
                    .expect("tally")
                    .entry(status.as_u16())
                    .or_default() += 1;
                if status.is_redirection() || status.as_u16() == 401 {
                    let mut g = user.generation.lock().await;
                    if *g == generation {
                        tally.lost_sessions.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = login(&url, &user.name, user.jar.clone()).await {
                            eprintln!("re-login of {} failed: {e}", user.name);
                        }
                        *g += 1;
                    }
                }
            }
        }));
    }
    let reporter = {
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(progress.max(1))).await;
                let n = tally.requests.load(Ordering::Relaxed);
                eprintln!(
                    "soak t={:>4}s requests={n} rps={:.0} non2xx={} lost={} errors={}",
                    started.elapsed().as_secs(),
                    (n - last) as f64 / progress.max(1) as f64,
                    tally.non2xx.load(Ordering::Relaxed),
                    tally.lost_sessions.load(Ordering::Relaxed),
                    tally.errors.load(Ordering::Relaxed),
                );
                last = n;
            }
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    reporter.abort();
    let secs = started.elapsed().as_secs_f64();
    let statuses: Vec<String> = tally
        .statuses
        .lock()
        .expect("tally")
        .iter()
        .map(|(s, n)| format!("\"{s}\":{n}"))
        .collect();
    let requests = tally.requests.load(Ordering::Relaxed);
    println!(
        "soak {{\"conns\":{conns},\"sessions\":{},\"secs\":{secs:.0},\"requests\":{requests},\
         \"rps\":{:.0},\"ok\":{},\"non2xx\":{},\"errors\":{},\"lost_sessions\":{},\
         \"statuses\":{{{}}}}}",
        users.len(),
        requests as f64 / secs,
        tally.ok.load(Ordering::Relaxed),
        tally.non2xx.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.lost_sessions.load(Ordering::Relaxed),
        statuses.join(","),
    );
    Ok(())
}
