//! A minimal loopback HTTP server (HTTP/1.1 keep-alive and HTTP/2) for the development
//! provider and the echo upstream: accept loop, per-connection tasks, shutdown signal.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Stops a server started by [`spawn`]; clones share the same server.
#[derive(Clone, Debug)]
pub(crate) struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Closes the listener and drops every open connection.
    pub(crate) fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// Serves `handler` on an already bound listener in a background task until
/// [`Stopper::stop`]. Dropping the handle does not stop the server.
pub(crate) fn spawn_on<H, Fut>(listener: TcpListener, handler: H) -> Stopper
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let stopper = Stopper(Arc::new(watch::channel(false).0));
    tokio::spawn(accept_loop(listener, handler, stopper.clone()));
    stopper
}

async fn accept_loop<H, Fut>(listener: TcpListener, handler: H, stopper: Stopper)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut stop = stopper.0.subscribe();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, handler.clone(), stopper.0.subscribe()));
                }
                Err(err) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::debug!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
}

async fn serve_connection<H, Fut>(stream: TcpStream, handler: H, mut stop: watch::Receiver<bool>)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => {
            if let Err(err) = result {
                tracing::trace!(error = %err, "connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {}
    }
}

/// Resolves once the server is told to stop (or the stopper is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send; drop it before any other await.
    let _ = stop.wait_for(|stopped| *stopped).await;
}
