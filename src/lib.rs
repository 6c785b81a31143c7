//! oidc-gateway: a reverse proxy that puts OpenID Connect login in front of web applications.
//!
//! A request walks: listener (`server`) -> `router` -> `gateway` pipeline (a session from
//! `session`, or a bearer token from `resource`; `refresh` keeps tokens fresh; `authz` claim
//! rules; `identity` headers) -> `proxy` -> upstream. Requests on the redirect URI branch off
//! to `hooks` (login callback and logout in `oidc`, refresh, info, cache removal).
#![forbid(unsafe_code)]

pub mod authz;
pub mod clock;
pub mod config;
pub mod demo;
pub mod devop;
pub mod echo;
pub mod error;
pub mod gateway;
pub mod hooks;
pub mod identity;
pub mod observe;
pub mod oidc;
pub mod proxy;
pub mod redirect;
pub mod refresh;
pub mod resource;
pub mod response;
pub mod router;
pub mod secret;
pub mod server;
pub mod session;

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Idempotent; call it
/// before any TLS is used (main does; tests do in their set-up).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
