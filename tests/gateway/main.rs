//! The gateway from outside: one integration-test binary holding every suite that drives a
//! real gateway (listener, provider, upstream, Redis) or the built binary. One binary links
//! the crate once instead of once per file, which keeps `cargo test` small on disk and quick
//! to link; each file below is one behaviour area (docs/behaviour.md names the sections).
//!
//! Kept as their own binaries, next to this directory: `tests/logs.rs` (installs a global
//! tracing subscriber at TRACE that would capture every other suite), `tests/compose.rs`
//! (sets environment variables) and `tests/future_size.rs` (needs a higher recursion limit).

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod backchannel;
mod bearer;
mod client_auth;
mod config;
mod cookies;
mod form_post;
mod forward_auth;
mod header_set;
mod headers;
mod import_apache;
mod info;
mod limits;
mod login;
mod logout;
mod metrics;
mod module_graph;
mod packaging;
mod par;
mod preserve_post;
mod properties;
mod providers;
mod proxy;
mod redis_store;
mod redis_tls;
mod refresh;
mod reload;
mod replicas;
mod request_id;
mod routing;
mod sentinel;
mod shutdown;
mod smoke;
mod tls;
mod tracing;
