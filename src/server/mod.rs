//! Listeners and connection lifecycle: HTTP/1.1 and HTTP/2 (hyper-util auto) on every
//! `server.listen` address, the admin listener, and graceful drain on shutdown.

mod admin;

use crate::clock::Clock;
use crate::config::Config;
use crate::gateway::Gateway;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    pub gateway: Arc<Gateway>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The first proxied address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Stops accepting, lets in-flight requests finish (up to `server.shutdown_grace`),
    /// then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
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
    let mut admin_listeners = Vec::new();
    for addr in config.admin.iter().flat_map(|a| &a.listen) {
        let l = TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {addr} (admin): {e}"))
        })?;
        admin_listeners.push(l);
    }
    let grace = config.server.shutdown_grace;
    let gateway = Arc::new(Gateway::new(config, clock));
    gateway.services.provider.warm_up();
    let (stop, stopped) = watch::channel(false);
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for listener in listeners {
        addrs.push(listener.local_addr()?);
        let gw = gateway.clone();
        tasks.push(tokio::spawn(accept_loop(
            listener,
            stopped.clone(),
            grace,
            move |req, peer| {
                let gw = gw.clone();
                async move { gw.handle(req, peer, false).await }
            },
        )));
    }
    let mut admin_addrs = Vec::new();
    for listener in admin_listeners {
        admin_addrs.push(listener.local_addr()?);
        let gw = gateway.clone();
        tasks.push(tokio::spawn(accept_loop(
            listener,
            stopped.clone(),
            grace,
            move |req, _| {
                let gw = gw.clone();
                async move { admin::handle(&gw.services, req) }
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
        gateway,
        stop,
        tasks,
    })
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
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
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    loop {
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
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            // Boxed per request: hyper keeps a slot of the service future's size for the
            // whole life of each connection, so an unboxed future (several KiB) would be
            // paid by every idle keep-alive connection (scripts/bench --idle).
            let future: BoxedResponse = Box::pin(async move { Ok(handler(req, peer).await) });
            future
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!("connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace elapsed with connections still open"),
    }
}
