//! Runs only the development OpenID Provider, for `scripts/bench` (which needs its own
//! gateway configuration, and Apache + mod_auth_openidc, in front of one OP).
//!
//! ```text
//! cargo run --release --example devop -- --listen 127.0.0.1:18401 \
//!     --redirect-uri http://127.0.0.1:18402/oauth2/callback --access-token-ttl 30 \
//!     --counters-listen 127.0.0.1:18409
//! ```
//! Prints `issuer <URL>` on its first line once it listens. `GET /` on the counters port
//! answers the OP's request counters as JSON (refresh grants, introspections, ...); the
//! same JSON is printed on SIGTERM/SIGINT before it exits.

use clap::Parser;
use devop::{Counters, DevOp, DevOpOptions};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "The development OpenID Provider alone (for benchmarks)")]
struct Args {
    /// Where the provider listens; the issuer is http://<this address>.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A registered redirect URI (exact match); repeat for several.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    access_token_ttl: i64,
    #[arg(long, default_value = "gateway")]
    client_id: String,
    #[arg(long, default_value = "gateway-secret")]
    client_secret: String,
    /// Serve the counters as JSON on this address.
    #[arg(long)]
    counters_listen: Option<SocketAddr>,
}

fn counters_json(c: &Counters) -> String {
    format!(
        "{{\"authorizations\":{},\"code_grants\":{},\"refresh_grants\":{},\"refresh_failures\":{},\
         \"introspections\":{},\"revocations\":{},\"userinfo\":{},\"end_sessions\":{}}}",
        c.authorizations,
        c.code_grants,
        c.refresh_grants,
        c.refresh_failures,
        c.introspections,
        c.revocations,
        c.userinfo,
        c.end_sessions
    )
}

async fn serve_counters(op: DevOp, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let op = op.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let body = counters_json(&op.counters());
                    async move {
                        let resp = Response::builder()
                            .status(StatusCode::OK)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("static response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C elsewhere), like the gateway's own.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let op = DevOp::start(DevOpOptions {
        listen: args.listen,
        client_id: args.client_id,
        client_secret: args.client_secret,
        redirect_uris: args.redirect_uris,
        access_token_ttl: args.access_token_ttl,
        ..DevOpOptions::default()
    })
    .await?;
    if let Some(addr) = args.counters_listen {
        serve_counters(op.clone(), addr).await?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "issuer {}", op.issuer())?;
    out.flush()?;
    drop(out);
    shutdown_signal().await;
    println!("counters {}", counters_json(&op.counters()));
    op.shutdown();
    Ok(())
}
