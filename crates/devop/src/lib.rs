//! The built-in development OpenID Provider: what `oidc-gateway demo` logs in against and
//! the in-process test OP of `cargo test`. Never started by `run`.
//!
//! It is deliberately strict, like a certified OP (node oidc-provider is the reference):
//! exact redirect URI matching, single-use 60 s codes bound to client, redirect_uri and
//! PKCE, client authentication by exactly one method, refresh token rotation with reuse
//! detection, RS256 ID tokens with key rotation. Any user name signs in; there is no
//! password. Test knobs ([`Tamper`], [`DevOp::set_refuse_refresh`], ...) make it misbehave
//! in controlled ways. All state is in memory.
//!
//! Choices worth knowing:
//! - Every successful code or refresh grant returns a refresh token, with or without
//!   `offline_access` (simpler for the gateway's refresh tests).
//! - Presenting a used refresh token (or code) is `invalid_grant` AND revokes every token
//!   of that grant, as oidc-provider does: a replay means the token leaked.
//! - Claims follow scope: `profile` releases name and preferred_username (plus locale at
//!   userinfo), `email` releases email and email_verified. Per-user extra claims are
//!   always released; they never override protocol claims (iss, sub, aud, exp, ...).
//! - Counters count requests: `code_grants` and `refresh_grants` every grant request of
//!   that type (success or not), `introspections`, `revocations` and `userinfo` every
//!   request, `authorizations` and `end_sessions` only successful ones.
//! - Time is read through [`Now`] ([`DevOpOptions::now`]), a function rather than the
//!   gateway's `Clock`, so this crate does not depend on the gateway: tests that move the
//!   gateway's clock pass `Arc::new(move || clock.now())`.
//!
//! [`echo`] is the other half of the demo and the tests: an upstream that answers with
//! what it received.
#![forbid(unsafe_code)]

mod authorize;
mod client_auth;
mod discovery;
pub mod echo;
mod error;
mod http;
mod keys;
mod logout;
mod mint;
mod pages;
mod par;
mod provider;
mod resource;
mod routes;
pub(crate) mod serve;
mod store;
mod token;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use keys::{KeySet, SigningKey};
use provider::{lock, Provider, Registration};
use serve::Stopper;

/// The provider's time source: whole seconds since the Unix epoch. Tests share one clock
/// between the gateway and the OP by passing a function that reads it.
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The real wall clock, [`DevOpOptions`]' default.
pub fn system_now() -> Now {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// How to start a [`DevOp`].
#[derive(Clone)]
pub struct DevOpOptions {
    /// Where to listen, e.g. `127.0.0.1:0` for any free port.
    pub listen: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    /// Registered redirect URIs (exact match).
    pub redirect_uris: Vec<String>,
    /// Registered post-logout redirect URIs (exact match); more can be added at run time.
    pub post_logout_redirect_uris: Vec<String>,
    /// Access token lifetime in seconds.
    pub access_token_ttl: i64,
    /// Every iat/exp/expiry decision reads this clock.
    pub now: Now,
}

impl Default for DevOpOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            client_id: "gateway".into(),
            client_secret: "gateway-secret".into(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            access_token_ttl: 300,
            now: system_now(),
        }
    }
}

impl fmt::Debug for DevOpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevOpOptions")
            .field("listen", &self.listen)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .field("access_token_ttl", &self.access_token_ttl)
            .finish()
    }
}

/// Request counts since start (a snapshot; see the module docs for what each counts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub authorizations: u64,
    pub code_grants: u64,
    pub refresh_grants: u64,
    pub refresh_failures: u64,
    /// Refresh grant requests (client authenticated) that carried a `scope` parameter.
    pub refresh_scope_params: u64,
    pub introspections: u64,
    pub revocations: u64,
    pub userinfo: u64,
    pub end_sessions: u64,
    /// Requests for the JWKS document.
    pub jwks: u64,
    /// Authorization requests pushed (RFC 9126) and accepted.
    pub pushed_requests: u64,
}

/// How the ID tokens issued from now on misbehave (each alters exactly one thing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// `iss` is `https://evil.example`.
    WrongIssuer,
    /// `aud` is `someone-else`.
    WrongAudience,
    /// `iat` two minutes ago, `exp` one minute ago.
    Expired,
    /// Signed by a key that is not in the JWKS, under the current `kid`.
    BadSignature,
    /// Header `{"alg":"none"}` and an empty signature.
    AlgNone,
    /// `nonce` is a random value the client never sent.
    WrongNonce,
    /// `iat` one hour ago; `exp` still in the future.
    OldIssuedAt,
    /// Signed by an unpublished key under a `kid` the JWKS does not have.
    UnknownKid,
    /// `sub` is `someone-else`.
    OtherSub,
    /// `aud` is `[client, "other-api"]` and there is no `azp`.
    ExtraAudienceNoAzp,
    /// `aud` is `[client, "other-api"]` and `azp` is `other-api`.
    ExtraAudienceOtherAzp,
    /// `aud` is `[client, "trusted-api"]` and `azp` is the client: valid when the gateway
    /// trusts `trusted-api` (`provider.trusted_audiences`).
    TrustedExtraAudience,
}

/// A running development provider. Cheap to clone; clones control the same server, which
/// runs until [`DevOp::shutdown`] (or the end of the tokio runtime).
#[derive(Clone)]
pub struct DevOp {
    op: Arc<Provider>,
    addr: SocketAddr,
    stopper: Stopper,
}

impl fmt::Debug for DevOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevOp")
            .field("issuer", &self.op.issuer)
            .finish()
    }
}

impl DevOp {
    /// Generates a signing key, binds `opts.listen` and serves in a background task.
    pub async fn start(opts: DevOpOptions) -> std::io::Result<DevOp> {
        let keys = KeySet::new(SigningKey::generate()?);
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let registration = Registration {
            issuer: issuer_for(addr),
            client_id: opts.client_id,
            client_secret: opts.client_secret,
            redirect_uris: opts.redirect_uris,
            post_logout_redirect_uris: opts.post_logout_redirect_uris,
            access_token_ttl: opts.access_token_ttl,
            now: opts.now,
        };
        let op = Arc::new(Provider::new(registration, keys));
        let handler_op = Arc::clone(&op);
        let handler = move |req| routes::route(Arc::clone(&handler_op), req);
        let stopper = serve::spawn_on(listener, handler);
        Ok(DevOp { op, addr, stopper })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn issuer(&self) -> String {
        self.op.issuer.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn add_redirect_uri(&self, uri: &str) {
        self.op.add_redirect_uri(uri);
    }

    pub fn add_post_logout_redirect_uri(&self, uri: &str) {
        self.op.add_post_logout_redirect_uri(uri);
    }

    /// Registers the client's public key (a JWK, as the gateway publishes it) for
    /// `private_key_jwt` assertions.
    pub fn set_client_public_key(&self, jwk: Value) {
        let jwk = serde_json::from_value(jwk).ok();
        lock(&self.op.client_auth).public_key = jwk;
    }

    /// Accepts only this client authentication method from now on (`client_secret_basic`,
    /// `client_secret_post`, `private_key_jwt`, `client_secret_jwt`); `None`: any.
    pub fn require_client_auth(&self, method: Option<&str>) {
        lock(&self.op.client_auth).required = method.map(str::to_owned);
    }

    /// Requires pushed authorization requests (RFC 9126): the metadata says
    /// `require_pushed_authorization_requests`, and the authorization endpoint refuses a
    /// request without `request_uri`.
    pub fn set_require_par(&self, require: bool) {
        self.op
            .require_par
            .store(require, std::sync::atomic::Ordering::Relaxed);
    }

    /// The method each successfully authenticated request used, in order.
    pub fn client_auth_methods(&self) -> Vec<String> {
        lock(&self.op.client_auth).used.clone()
    }

    pub fn counters(&self) -> Counters {
        self.op.counters()
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_ttl(&self, secs: i64) {
        self.op.set_access_token_ttl(secs);
    }

    /// While true, every refresh grant answers `invalid_grant`.
    pub fn set_refuse_refresh(&self, refuse: bool) {
        self.op.set_refuse_refresh(refuse);
    }

    /// Whether refresh grants rotate the refresh token (the default) or hand the same one
    /// back, as node oidc-provider does by default for confidential clients.
    pub fn set_rotate_refresh_tokens(&self, rotate: bool) {
        self.op.set_rotate_refresh_tokens(rotate);
    }

    /// Introspection answers after `delay` from now on (a slow provider).
    pub fn set_introspection_delay(&self, delay: std::time::Duration) {
        self.op.set_introspection_delay(delay);
    }

    /// Tokens signed with the current key leave `kid` out of their header from now on (a
    /// provider with one key that never names it).
    pub fn set_omit_kid(&self, omit: bool) {
        self.op.set_omit_kid(omit);
    }

    /// The `token_type` of token responses from now on (`None`: `Bearer`).
    pub fn set_token_type(&self, token_type: Option<&str>) {
        self.op.set_token_type(token_type.map(str::to_owned));
    }

    /// ID tokens issued from now on misbehave this way, until set to `None`.
    pub fn set_tamper(&self, t: Option<Tamper>) {
        self.op.set_tamper(t);
    }

    /// A new signing key with a new kid; the JWKS publishes it and the previous key.
    pub fn rotate_signing_key(&self) {
        match SigningKey::generate() {
            Ok(key) => lock(&self.op.keys).rotate(key),
            Err(err) => tracing::error!(error = %err, "signing key rotation failed"),
        }
    }

    /// The JWKS publishes only the current key from now on.
    pub fn retire_old_keys(&self) {
        lock(&self.op.keys).retire_old();
    }

    /// Claims merged into the ID token, userinfo and introspection for `username`
    /// (replacing earlier extras for that user).
    pub fn set_user_claims(&self, username: &str, extra: Map<String, Value>) {
        self.op.set_extra_claims(username, extra);
    }

    /// Userinfo answers with this `sub` instead of the token's (None: the real one).
    pub fn set_userinfo_sub(&self, sub: Option<String>) {
        self.op.set_userinfo_sub(sub);
    }

    /// An opaque access token for `sub`, valid for `ttl` seconds, as if issued at a login:
    /// introspectable, usable at userinfo (with `openid` in scope), revocable.
    pub fn issue_access_token(&self, sub: &str, scope: &str, ttl: i64) -> String {
        mint::access_token(&self.op, sub, scope, ttl, &token::new_grant_id())
    }

    /// An RS256 JWT access token (header typ `at+jwt`, current kid). Claims the caller
    /// leaves out get defaults: iss, iat, exp (iat + access token TTL), aud and
    /// client_id (the client id), jti.
    pub fn issue_jwt_access_token(&self, claims: Value) -> String {
        mint::jwt_access_token(&self.op, claims)
    }

    /// Like [`DevOp::issue_jwt_access_token`], signed with the current key, but with the
    /// `typ` header `typ` (e.g. `logout+jwt`): a token that is not an access token.
    pub fn issue_jwt_with_typ(&self, typ: &str, claims: Value) -> String {
        mint::jwt_with_defaults(&self.op, claims, typ)
    }

    /// Test helper: with `header_alg_none`, an unsecured `header.payload.` JWT; otherwise
    /// a JWT signed by a key NOT in the JWKS but carrying the current kid. Claims as given.
    pub fn sign_jwt_with(&self, header_alg_none: bool, claims: Value) -> String {
        if header_alg_none {
            return keys::unsigned_jwt(&claims);
        }
        let kid = lock(&self.op.keys).current().kid().to_owned();
        mint::sign_rogue(&self.op, &claims, &kid)
    }

    /// Test helper: a JWT signed by a key NOT in the JWKS under a fresh `kid` no JWKS has
    /// (each call another one). Claims as given.
    pub fn sign_jwt_with_unknown_kid(&self, claims: Value) -> String {
        let kid = format!("unpublished-{}", store::random_token());
        mint::sign_rogue(&self.op, &claims, &kid)
    }

    /// Revokes a token as the revocation endpoint would.
    pub fn revoke(&self, token: &str) {
        lock(&self.op.store).revoke(token);
    }

    /// Stops listening and drops every open connection.
    pub fn shutdown(&self) {
        self.stopper.stop();
    }
}

/// The issuer URL for a bound address; an unspecified address is reached via loopback.
fn issuer_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}
