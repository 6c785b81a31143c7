//! oidc-gateway: a reverse proxy that puts OpenID Connect login in front of web applications.
//!
//! A request walks: listener (`server`) -> `request` context -> `router` -> `gateway`
//! pipeline (a front proxy's check is first turned into the request it is about by
//! `forward_auth`; a session from `session`, or a bearer token from `resource`; `refresh`
//! keeps tokens fresh; `authz` claim rules; `identity` headers) -> `proxy` -> upstream.
//! Requests on the redirect URI branch off to `hooks` (login callback, provider chooser
//! and logout in `oidc`, refresh, info, cache removal).
//!
//! Dependencies run one way: `server` -> `reload` (the config generation requests run on)
//! -> `gateway` -> the stages (`forward_auth`, `hooks`, `oidc`, `refresh`, `resource`,
//! `identity`, `authz`, `proxy`) -> `services` (the shared run-time state, and with `[redis]` what
//! replicas share) -> `provider`, `session`, `config` and the leaves (`redis_link`,
//! `error`, `outbound`, `response`, `secret`, `clock`, `observe` (logs), `metrics`,
//! `telemetry` (trace propagation and spans), `worker` (which of `server`'s worker threads
//! runs the caller)). `tests/gateway/module_graph.rs` fails on a cycle.
//!
//! `import_apache` (the `import-apache` command) stands apart from the request path: it
//! reads Apache configuration and writes gateway.toml, depending only on `config`, which
//! checks what it writes.
//!
//! Only what `main`, the tests and the benches use is public; everything else is
//! `pub(crate)`.
#![forbid(unsafe_code)]

pub mod authz;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub(crate) mod forward_auth;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub(crate) mod hooks;
pub mod identity;
/// `import-apache`: Apache + mod_auth_openidc configuration to gateway.toml (a leaf over `config`).
pub mod import_apache;
pub mod metrics;
pub mod observe;
pub(crate) mod oidc;
pub(crate) mod outbound;
pub(crate) mod provider;
pub(crate) mod proxy;
pub mod redirect;
pub mod redis_link;
pub(crate) mod refresh;
pub mod reload;
pub(crate) mod request;
pub mod resource;
pub(crate) mod response;
pub(crate) mod router;
pub mod secret;
pub mod server;
pub mod services;
pub mod session;
pub mod systemd;
pub mod telemetry;
pub(crate) mod worker;

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Idempotent; call it
/// before any TLS is used (main does; tests do in their set-up).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Resolves on SIGINT or SIGTERM. The handlers are registered when this is *called*, not
/// when it is first polled, so call it before announcing that the gateway listens: a signal
/// arriving in between must still shut down cleanly.
#[cfg(unix)]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
