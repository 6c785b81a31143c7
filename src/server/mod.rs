//! Listeners and connection lifecycle: HTTP/1.1 and HTTP/2 (hyper-util auto) on every
//! `server.listen` address, the admin listener, and graceful drain on shutdown.

mod admin;
mod tls;
mod workers;

use workers::Workers;

use crate::clock::Clock;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::metrics::{Gauge, InProgress};
use crate::reload::{Current, Reloader};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Open connections on the admin listener.
const ADMIN_CONNECTIONS: usize = 64;

/// How often an HTTP/2 connection is pinged, and how long a ping may go unanswered.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(20);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

type BoxedResponse = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<http::Response<crate::response::Body>, Infallible>>
            + Send,
    >,
>;

/// A started gateway: its bound addresses and the handle to stop it.
pub struct Running {
    pub(crate) addrs: Vec<SocketAddr>,
    pub admin_addrs: Vec<SocketAddr>,
    /// `server.redirect_http_listen`, bound.
    pub redirect_addrs: Vec<SocketAddr>,
    current: Arc<Current>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Report the end of each worker thread (once the accept loops, which hold the
    /// workers, have ended).
    workers_ended: Vec<oneshot::Receiver<()>>,
}

impl Running {
    /// The first proxied address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The gateway new requests run on (the latest config generation).
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.get()
    }

    /// Reloads from `path` on demand ([`Reloader::reload`]), on SIGHUP
    /// ([`Reloader::on_hangup`]) or when the file changes ([`Reloader::watch`]).
    pub fn reloader(&self, path: &std::path::Path) -> Reloader {
        Reloader::new(Arc::clone(&self.current), path)
    }

    /// Stops accepting, lets in-flight requests finish (up to `server.shutdown_grace`),
    /// then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        for ended in self.workers_ended {
            let _ = ended.await;
        }
    }
}

/// Binds every listener and starts serving in background tasks.
pub async fn start(config: Config, clock: Clock) -> io::Result<Running> {
    let mut listeners = Vec::new();
    for addr in &config.server.listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        listeners.push(l);
    }
    let mut redirect_listeners = Vec::new();
    for addr in &config.server.redirect_http_listen {
        let l = TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} (https redirect): {e}"),
            )
        })?;
        redirect_listeners.push(l);
    }
    let certificate = match &config.server.tls {
        Some(files) => Some(
            tls::Certificate::load(files)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        ),
        None => None,
    };
    let acceptor = certificate
        .as_ref()
        .map(|c| tokio_rustls::TlsAcceptor::from(c.server_config()));
    let mut admin_listeners = Vec::new();
    for addr in config.admin.iter().flat_map(|a| &a.listen) {
        let l = TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {addr} (admin): {e}"))
        })?;
        admin_listeners.push(l);
    }
    let https_port = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or(443, |a| a.port());
    let current = Arc::new(Current::new(Gateway::new(config.clone(), clock)));
    let limits = Limits {
        connections: Some(current.peek().services.metrics.open_connections.clone()),
        current: Arc::clone(&current),
        slots: Arc::new(Semaphore::new(
            config
                .server
                .max_connections
                .unwrap_or(Semaphore::MAX_PERMITS),
        )),
    };
    // The admin listener has its own slots: a flood on the proxied ports must not make
    // health checks wait.
    let admin_limits = Limits {
        slots: Arc::new(Semaphore::new(ADMIN_CONNECTIONS)),
        connections: None,
        ..limits.clone()
    };
    current.peek().services.start_background();
    if let Some(certificate) = certificate {
        tokio::spawn(certificate.watch());
    }
    let (stop, stopped) = watch::channel(false);
    let (workers, workers_ended) = Workers::start(config.server.workers)?;
    let workers = Arc::new(workers);
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for listener in listeners {
        addrs.push(listener.local_addr()?);
        let current = Arc::clone(&current);
        let tls = acceptor.is_some();
        tasks.push(tokio::spawn(accept_loop(
            listener,
            stopped.clone(),
            limits.clone(),
            acceptor.clone(),
            Some(Arc::clone(&workers)),
            move |req, peer| {
                // The request keeps this generation to its end, whatever reloads meanwhile.
                let gw = current.get();
                async move {
                    let mut resp = gw.handle(req, peer, tls).await;
                    if tls {
                        if let Some(hsts) = &gw.hsts {
                            resp.headers_mut()
                                .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
                        }
                    }
                    resp
                }
            },
        )));
    }
    let mut redirect_addrs = Vec::new();
    for listener in redirect_listeners {
        let addr = listener.local_addr()?;
        redirect_addrs.push(addr);
        tracing::info!(%addr, "redirecting http to https");
        let current = Arc::clone(&current);
        tasks.push(tokio::spawn(accept_loop(
            listener,
            stopped.clone(),
            limits.clone(),
            None,
            None,
            move |req, peer| {
                let resp = to_https(
                    &current.peek().services.config.server,
                    &req,
                    peer,
                    https_port,
                );
                async move { resp }
            },
        )));
    }
    let mut admin_addrs = Vec::new();
    // For /readyz: the proxied listeners, all bound by now.
    let bound: Arc<[SocketAddr]> = addrs.iter().chain(&redirect_addrs).copied().collect();
    for listener in admin_listeners {
        admin_addrs.push(listener.local_addr()?);
        let current = Arc::clone(&current);
        let bound = bound.clone();
        tasks.push(tokio::spawn(accept_loop(
            listener,
            stopped.clone(),
            admin_limits.clone(),
            None,
            None,
            move |req, _| {
                let gw = current.get();
                let bound = bound.clone();
                async move { admin::handle(&gw.services, &bound, req).await }
            },
        )));
    }
    for addr in &addrs {
        tracing::info!(%addr, "gateway listening");
    }
    for addr in &admin_addrs {
        tracing::info!(%addr, "admin listening (healthz, readyz, metrics)");
    }
    Ok(Running {
        addrs,
        admin_addrs,
        redirect_addrs,
        current,
        stop,
        tasks,
        workers_ended,
    })
}

/// `oidc-gateway probe URL`: the status of a plain-HTTP GET, within 5 s (a container's
/// HEALTHCHECK asks `/readyz` with it).
pub async fn probe(url: &str) -> Result<http::StatusCode, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs (the admin listener) are probed".into());
    }
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    match tokio::time::timeout(Duration::from_secs(5), client.get(uri)).await {
        Ok(Ok(resp)) => Ok(resp.status()),
        Ok(Err(e)) => Err(format!("no answer: {e}")),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// `server.redirect_http_listen`: a 308 to the same host and path over https (the TLS
/// listener's port unless it is 443). A host the gateway does not answer for gets a 400.
fn to_https<B>(
    server: &crate::config::ServerConfig,
    req: &http::Request<B>,
    peer: SocketAddr,
    https_port: u16,
) -> http::Response<crate::response::Body> {
    let Some(ctx) = crate::request::request_ctx(server, req.uri(), req.headers(), peer, false)
    else {
        return crate::error::GatewayError::BadHost.into_response();
    };
    let origin = match &server.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_string(),
        None => {
            // The host without its port (an IPv6 literal keeps its brackets).
            let host = match ctx.host.rfind(':') {
                Some(i) if !ctx.host[i..].contains(']') => &ctx.host[..i],
                _ => ctx.host.as_str(),
            };
            match https_port {
                443 => format!("https://{host}"),
                port => format!("https://{host}:{port}"),
            }
        }
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut resp = crate::response::redirect(&format!("{origin}{path}"));
    *resp.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
    resp
}

/// What one listener's connections may use, and how they end.
#[derive(Clone)]
struct Limits {
    /// The running config: `server.shutdown_grace` (how long shutdown waits for in-flight
    /// requests) and `server.keepalive_timeout` (a connection on which no request starts
    /// for this long is closed, gracefully), read when they are needed so a reload applies
    /// them to new connections.
    current: Arc<Current>,
    /// Counts this listener's open connections in `/metrics` (the proxied ones only).
    connections: Option<Gauge>,
    /// Open connections; at the bound, new ones wait to be accepted (the kernel's backlog
    /// holds them) and existing ones keep working.
    slots: Arc<Semaphore>,
}

/// Counts a listener's live connections, so shutdown can wait for them.
#[derive(Default)]
struct Live {
    count: AtomicUsize,
    idle: Notify,
}

impl Live {
    fn enter(self: &Arc<Self>) -> LiveGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        LiveGuard(Arc::clone(self))
    }

    async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct LiveGuard(Arc<Live>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Accepts `listener`'s connections until the gateway stops, then waits for them to end
/// (up to `server.shutdown_grace`). Each connection is served on one of `workers`, or on
/// this runtime when `None` (the admin and redirect listeners).
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    stopped: watch::Receiver<bool>,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    workers: Option<Arc<Workers>>,
    handler: F,
) where
    F: Fn(http::Request<hyper::body::Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<crate::response::Body>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        // Pings find peers that vanished without closing (NAT timeouts, crashed clients).
        .keep_alive_interval(Some(HTTP2_PING_INTERVAL))
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    let live = Arc::new(Live::default());
    let mut stopping = stopped.clone();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&limits.slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stopping.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            peer,
            handler: handler.clone(),
            builder: builder.clone(),
            stopped: stopped.clone(),
            idle_timeout: limits.current.peek().services.config.server.idle_timeout,
            tls: tls.clone(),
            _permit: permit,
            _live: live.enter(),
            _open: limits.connections.as_ref().map(InProgress::new),
        };
        match &workers {
            None => {
                tokio::spawn(conn.run(stream));
            }
            Some(workers) => {
                // Moved to the worker's runtime: out of this one's reactor, into its own.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, %peer, "cannot hand the connection over");
                        continue;
                    }
                };
                workers.assign(move |assigned| match TcpStream::from_std(stream) {
                    Ok(stream) => {
                        tokio::spawn(async move {
                            let _assigned = assigned;
                            conn.run(stream).await
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, %peer, "cannot serve the connection"),
                });
            }
        }
    }
    drop(listener);
    let grace = limits.current.peek().services.config.server.shutdown_grace;
    tokio::select! {
        _ = live.drained() => tracing::debug!("connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace elapsed with connections still open"),
    }
}

/// One accepted connection, with what it holds while open.
struct Connection<F> {
    peer: SocketAddr,
    handler: F,
    builder: auto::Builder<TokioExecutor>,
    stopped: watch::Receiver<bool>,
    idle_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    _permit: OwnedSemaphorePermit,
    _live: LiveGuard,
    _open: Option<InProgress>,
}

impl<F, Fut> Connection<F>
where
    F: Fn(http::Request<hyper::body::Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<crate::response::Body>> + Send + 'static,
{
    /// The TLS handshake (on TLS listeners), then HTTP until the connection ends.
    async fn run(self, stream: TcpStream) {
        let peer = self.peer;
        let stream = match self.tls {
            None => tls::Stream::Plain(stream),
            Some(acceptor) => {
                match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => tls::Stream::Tls(Box::new(stream)),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, %peer, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake not finished in time");
                        return;
                    }
                }
            }
        };
        serve(
            self.builder,
            stream,
            peer,
            self.handler,
            self.stopped,
            self.idle_timeout,
        )
        .await;
    }
}

/// Serves one connection until it ends: closed when idle for `idle_timeout`, drained
/// gracefully when the gateway stops.
async fn serve<F, Fut>(
    builder: auto::Builder<TokioExecutor>,
    stream: tls::Stream,
    peer: SocketAddr,
    handler: F,
    mut stopped: watch::Receiver<bool>,
    idle_timeout: Duration,
) where
    F: Fn(http::Request<hyper::body::Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<crate::response::Body>> + Send + 'static,
{
    // Set by every request, cleared by each idle check: no clock read per request.
    let active = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&active);
    let service = service_fn(move |req| {
        let handler = handler.clone();
        seen.store(true, Ordering::Relaxed);
        // Boxed per request: hyper keeps a slot of the service future's size for the
        // whole life of each connection, so an unboxed future (several KiB) would be
        // paid by every idle keep-alive connection (scripts/bench --idle).
        let future: BoxedResponse = Box::pin(async move { Ok(handler(req, peer).await) });
        future
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let idle_check = tokio::time::sleep(idle_timeout);
    let mut idle_check = std::pin::pin!(idle_check);
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            _ = stopped.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            // No request started during a whole `idle_timeout`: idle for at least
            // that long (at most twice that).
            _ = idle_check.as_mut(), if !closing => {
                if active.swap(false, Ordering::Relaxed) {
                    idle_check
                        .as_mut()
                        .reset(tokio::time::Instant::now() + idle_timeout);
                } else {
                    tracing::debug!("closing an idle connection");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
