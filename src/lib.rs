//! oidc-gateway: a reverse proxy that puts OpenID Connect login in front of web applications.
//!
//! A request walks: listener (`server`) -> `router` -> `gateway` pipeline (session or bearer
//! token -> `authz` claim rules -> `identity` headers) -> `proxy` -> upstream. Requests on the
//! redirect URI branch off to `hooks` (login callback, logout, refresh, info, cache removal).
#![forbid(unsafe_code)]

pub mod authz;
pub mod clock;
pub mod config;
pub mod devop;
pub mod echo;
pub mod secret;
pub mod session;
