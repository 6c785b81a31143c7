//! What the upstream learns about the user: the `OIDC_*` and claim headers the gateway
//! adds (docs/behaviour.md §11), and the scrubbing of client-sent look-alikes before it adds them.
//!
//! Names and value rules follow mod_auth_openidc: claims become `<claim_prefix><name>`,
//! strings pass as is, booleans as `1`/`0`, numbers in decimal, arrays of scalars joined by
//! `claim_delimiter`, objects as compact JSON, `null` sends nothing. The configured
//! `encoding` applies to every value the gateway sets, tokens included, as mod_auth_openidc
//! does, so an application decodes all of them the same way.
//!
//! Also the configured header lists (`[[headers.set]]`, `route.headers`): a header per
//! entry from a claim (dotted paths reach into objects) or a template, with the same value
//! rules and the entry's encoding. All of it is built once per session or validated token
//! ([`IdentityHeaders::session_identity`], [`IdentityHeaders::token_identity`]) and cached
//! by the caller, so templates cost nothing per request.

use crate::authz::ClaimPath;
use crate::config::{Encoding, HeaderSource, HeadersConfig, Part, SetHeader};
use crate::session::{Headers, Session};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers each [`IdentityHeaders`], so that headers cached by an earlier one (before a
/// reload) are told apart.
static BUILDERS: AtomicU64 = AtomicU64::new(1);

/// Every gateway header starts with this, compared with [`norm`].
const OIDC_PREFIX: &[u8] = b"oidc_";

/// Precomputed from `[headers]` once at start; builds and scrubs identity headers.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    claim_prefix: Vec<u8>,
    claim_delimiter: String,
    encoding: Encoding,
    pass_access_token: bool,
    id_token_claims: bool,
    id_token_payload: bool,
    id_token_serialized: bool,
    userinfo_claims: bool,
    userinfo_json: bool,
    pass_refresh_token: bool,
    remote_user_claim: String,
    /// Normalised (ASCII lowercase, `-` as `_`) for cheap comparison in [`Self::scrub`].
    scrub_claim_prefix: Vec<u8>,
    scrub_remote_user: Option<Vec<u8>>,
    remote_user: Option<HeaderName>,
    access_token: HeaderName,
    access_token_expires: HeaderName,
    id_token_payload_name: HeaderName,
    id_token: HeaderName,
    userinfo_json_name: HeaderName,
    refresh_token: HeaderName,
    /// `[[headers.set]]` then each route's own `headers` (`RouteConfig::header_list`).
    lists: Vec<Vec<SetHeader>>,
    /// Every name of every list, normalised as `scrub_claim_prefix`, each once.
    scrub_set: Vec<Vec<u8>>,
    /// Per list: whether it sets `Authorization` (see [`Self::scrub_route`]).
    sets_authorization: Vec<bool>,
    builder: u64,
}

/// A header the gateway sets.
pub type Header = (HeaderName, HeaderValue);

/// Reusable buffers, so a request with many claims allocates little beyond its headers.
struct Scratch {
    name: Vec<u8>,
    text: String,
}

impl IdentityHeaders {
    pub fn new(cfg: &HeadersConfig) -> IdentityHeaders {
        let remote = cfg.remote_user_header.as_ref();
        IdentityHeaders {
            claim_prefix: cfg.claim_prefix.as_bytes().to_vec(),
            claim_delimiter: cfg.claim_delimiter.clone(),
            encoding: cfg.encoding,
            pass_access_token: cfg.pass_access_token,
            id_token_claims: cfg.id_token_claims,
            id_token_payload: cfg.id_token_payload,
            id_token_serialized: cfg.id_token_serialized,
            userinfo_claims: cfg.userinfo_claims,
            userinfo_json: cfg.userinfo_json,
            pass_refresh_token: cfg.pass_refresh_token,
            remote_user_claim: cfg.remote_user_claim.clone(),
            scrub_claim_prefix: normalised(cfg.claim_prefix.as_bytes()),
            scrub_remote_user: remote.map(|h| normalised(h.as_str().as_bytes())),
            remote_user: remote.cloned(),
            access_token: HeaderName::from_static("oidc_access_token"),
            access_token_expires: HeaderName::from_static("oidc_access_token_expires"),
            id_token_payload_name: HeaderName::from_static("oidc_id_token_payload"),
            id_token: HeaderName::from_static("oidc_id_token"),
            userinfo_json_name: HeaderName::from_static("oidc_userinfo_json"),
            refresh_token: HeaderName::from_static("oidc_refresh_token"),
            scrub_set: scrub_names(&cfg.lists),
            sets_authorization: cfg
                .lists
                .iter()
                .map(|l| l.iter().any(|e| e.name == http::header::AUTHORIZATION))
                .collect(),
            lists: cfg.lists.clone(),
            builder: BUILDERS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Which builder this is: [`Headers::builder`] of what it builds.
    pub fn builder(&self) -> u64 {
        self.builder
    }

    /// As [`Self::scrub`]; on a bearer-token route (`bearer`) a client's `Authorization` is
    /// kept even when a header list names it, since it carries the token the route checks:
    /// [`Self::scrub_after_bearer`] removes it once the token is read.
    pub fn scrub_route(&self, headers: &mut HeaderMap, bearer: bool) {
        let mut doomed: Vec<HeaderName> = Vec::new();
        for name in headers.keys() {
            let keep = bearer && name == http::header::AUTHORIZATION;
            if !keep && self.is_reserved(name.as_str().as_bytes()) {
                doomed.push(name.clone());
            }
        }
        for name in &doomed {
            headers.remove(name);
        }
    }

    /// On a bearer-token route, once the token is read: the client's `Authorization` goes
    /// if the route's header list `list` sets one (or would, had its claim been there).
    pub fn scrub_after_bearer(&self, headers: &mut HeaderMap, list: usize) {
        if self.sets_authorization.get(list).copied().unwrap_or(false) {
            headers.remove(http::header::AUTHORIZATION);
        }
    }

    /// Everything a session's requests send: [`Self::for_session`], then each header
    /// list's headers; cached by the caller.
    pub fn session_identity(&self, session: &Session) -> Headers {
        let mut out = self.for_session(session);
        self.push_lists(&mut out, &Subject::Session(session))
    }

    /// Everything a validated bearer token's requests send: [`Self::for_token`], then
    /// each header list's headers; cached by the caller.
    pub fn token_identity(
        &self,
        token: &str,
        exp: Option<i64>,
        claims: &Map<String, Value>,
    ) -> Headers {
        let mut out = self.for_token(token, exp, claims);
        self.push_lists(&mut out, &Subject::Token { token, claims })
    }

    fn push_lists(&self, out: &mut Vec<Header>, subject: &Subject) -> Headers {
        let mut ends = Vec::with_capacity(self.lists.len() + 1);
        ends.push(out.len());
        let (mut text, mut piece) = (String::new(), String::new());
        for list in &self.lists {
            for entry in list {
                if let Some(v) = set_value(entry, subject, &mut text, &mut piece) {
                    out.push((entry.name.clone(), v));
                }
            }
            ends.push(out.len());
        }
        Headers::new(std::mem::take(out), ends, self.builder)
    }

    /// Removes every client-sent header whose name, compared case-insensitively with '-'
    /// equal to '_', starts with "OIDC_", or with the claim prefix, or equals
    /// remote_user_header or a name of any header list. Allocates nothing when no header
    /// matches.
    pub fn scrub(&self, headers: &mut HeaderMap) {
        self.scrub_route(headers, false);
    }

    /// Whether a header of this name is the gateway's to set.
    pub(crate) fn is_reserved(&self, name: &[u8]) -> bool {
        let equals = |r: &[u8]| name.len() == r.len() && starts_with_norm(name, r);
        starts_with_norm(name, OIDC_PREFIX)
            || starts_with_norm(name, &self.scrub_claim_prefix)
            || self.scrub_remote_user.as_deref().is_some_and(equals)
            || self.scrub_set.iter().any(|n| equals(n))
    }

    /// The headers for a logged-in session (docs/behaviour.md §11), in a fixed order: access token and
    /// expiry, ID-token claims, userinfo claims, payload, raw ID token, userinfo JSON,
    /// refresh token, remote user.
    pub fn for_session(&self, session: &Session) -> Vec<Header> {
        let userinfo = session.userinfo.as_ref();
        let claim_count = session.id_token_claims.len() + userinfo.map_or(0, Map::len);
        let mut out = Vec::with_capacity(8 + claim_count);
        let mut scratch = self.scratch();
        if self.pass_access_token {
            self.push_access_token(&mut out, session, &mut scratch);
        }
        if self.id_token_claims {
            self.push_claims(&mut out, &session.id_token_claims, &mut scratch);
        }
        if let (true, Some(ui)) = (self.userinfo_claims, userinfo) {
            // Names already sent from the ID token are skipped: the ID token wins.
            self.push_claims(&mut out, ui, &mut scratch);
        }
        self.push_session_extras(&mut out, session);
        let claim = &self.remote_user_claim;
        let remote = first_non_null(session.id_token_claims.get(claim), userinfo, claim);
        self.push_remote_user(&mut out, remote, &mut scratch);
        out
    }

    /// The headers for a validated bearer token (`oauth20` routes): `OIDC_access_token`,
    /// `OIDC_access_token_expires` when `exp` is known, the token's claims under the claim
    /// prefix, and the remote user header. Sent whatever `pass_access_token` says, as
    /// mod_auth_openidc does: the upstream already receives the token in `Authorization`.
    pub(crate) fn for_token(
        &self,
        token: &str,
        exp: Option<i64>,
        claims: &Map<String, Value>,
    ) -> Vec<Header> {
        let mut out = Vec::with_capacity(3 + claims.len());
        let mut scratch = self.scratch();
        self.push_token(&mut out, &self.access_token, token);
        if let Some(exp) = exp {
            self.push_number(&mut out, &self.access_token_expires, exp, &mut scratch);
        }
        self.push_claims(&mut out, claims, &mut scratch);
        let remote = claims.get(&self.remote_user_claim);
        self.push_remote_user(&mut out, remote, &mut scratch);
        out
    }

    fn push_access_token(&self, out: &mut Vec<Header>, session: &Session, s: &mut Scratch) {
        if let Some(at) = &session.access_token {
            self.push_token(out, &self.access_token, at.expose());
        }
        if let Some(exp) = session.access_token_expires {
            self.push_number(out, &self.access_token_expires, exp, s);
        }
    }

    /// `OIDC_id_token_payload`, `OIDC_id_token`, `OIDC_userinfo_json`, `OIDC_refresh_token`.
    fn push_session_extras(&self, out: &mut Vec<Header>, session: &Session) {
        if self.id_token_payload {
            let name = &self.id_token_payload_name;
            self.push_json(out, name, &session.id_token_claims);
        }
        if let (true, Some(raw)) = (self.id_token_serialized, &session.id_token) {
            self.push_token(out, &self.id_token, raw.expose());
        }
        if let (true, Some(ui)) = (self.userinfo_json, &session.userinfo) {
            self.push_json(out, &self.userinfo_json_name, ui);
        }
        if let (true, Some(rt)) = (self.pass_refresh_token, &session.refresh_token) {
            self.push_token(out, &self.refresh_token, rt.expose());
        }
    }

    fn scratch(&self) -> Scratch {
        let mut name = Vec::with_capacity(self.claim_prefix.len() + 32);
        name.extend_from_slice(&self.claim_prefix);
        Scratch {
            name,
            text: String::new(),
        }
    }

    /// One header per non-null claim, unless a header whose name normalises the same
    /// (`a-b` and `a_b` reach most frameworks as one variable) was sent since `start`.
    /// The duplicate check is a linear scan: claim sets are tens, not thousands.
    /// Claims after what `out` already holds: a claim never replaces a header already
    /// there (the access token, with `claim_prefix = "OIDC_"` and a claim named
    /// `access_token`), nor is it replaced by another claim of the same name. Headers
    /// pushed after the claims (raw tokens, remote user) are the gateway's and win.
    fn push_claims(
        &self,
        out: &mut Vec<Header>,
        claims: &Map<String, Value>,
        scratch: &mut Scratch,
    ) {
        for (key, value) in claims {
            let Some(name) = self.claim_name(&mut scratch.name, key) else {
                continue;
            };
            if out.iter().any(|(n, _)| same_norm(n, &name)) {
                continue;
            }
            let Some(text) = render(value, &self.claim_delimiter, &mut scratch.text) else {
                continue;
            };
            if let Some(v) = encode(text, self.encoding) {
                out.push((name, v));
            }
        }
    }

    /// `<claim_prefix><claim>`, characters that cannot be in a header name as `-`.
    fn claim_name(&self, buf: &mut Vec<u8>, claim: &str) -> Option<HeaderName> {
        buf.truncate(self.claim_prefix.len());
        for c in claim.chars() {
            let keep = c.is_ascii() && is_tchar(c as u8);
            buf.push(if keep { c as u8 } else { b'-' });
        }
        HeaderName::from_bytes(buf).ok()
    }

    /// A token value; marked sensitive so HTTP/2 never indexes it and `Debug` hides it.
    fn push_token(&self, out: &mut Vec<Header>, name: &HeaderName, token: &str) {
        if let Some(mut v) = encode(token, self.encoding) {
            v.set_sensitive(true);
            out.push((name.clone(), v));
        }
    }

    fn push_number(&self, out: &mut Vec<Header>, name: &HeaderName, n: i64, s: &mut Scratch) {
        s.text.clear();
        let _ = write!(s.text, "{n}");
        if let Some(v) = encode(&s.text, self.encoding) {
            out.push((name.clone(), v));
        }
    }

    fn push_json(&self, out: &mut Vec<Header>, name: &HeaderName, m: &Map<String, Value>) {
        let Ok(json) = serde_json::to_string(m) else {
            return;
        };
        if let Some(v) = encode_owned(json, self.encoding) {
            out.push((name.clone(), v));
        }
    }

    fn push_remote_user(&self, out: &mut Vec<Header>, value: Option<&Value>, s: &mut Scratch) {
        let (Some(name), Some(value)) = (&self.remote_user, value) else {
            return;
        };
        let Some(text) = render(value, &self.claim_delimiter, &mut s.text) else {
            return;
        };
        if let Some(v) = encode(text, self.encoding) {
            out.push((name.clone(), v));
        }
    }
}

/// Whom a header list's values describe.
enum Subject<'a> {
    Session(&'a Session),
    Token {
        token: &'a str,
        claims: &'a Map<String, Value>,
    },
}

impl Subject<'_> {
    fn access_token(&self) -> Option<&str> {
        match self {
            Subject::Session(s) => s.access_token.as_ref().map(|t| t.expose()),
            Subject::Token { token, .. } => Some(token),
        }
    }

    fn id_token(&self) -> Option<&str> {
        match self {
            Subject::Session(s) => s.id_token.as_ref().map(|t| t.expose()),
            Subject::Token { .. } => None,
        }
    }

    fn sub(&self) -> Option<&str> {
        match self {
            Subject::Session(s) => Some(&s.sub).filter(|s| !s.is_empty()).map(String::as_str),
            Subject::Token { claims, .. } => claims.get("sub").and_then(Value::as_str),
        }
    }

    /// A session's claim from the ID token unless absent or null there, else from
    /// userinfo (as the remote user header's); a token's from its claims.
    fn claim(&self, path: &ClaimPath) -> Option<&Value> {
        let found = match self {
            Subject::Session(s) => path
                .lookup(&s.id_token_claims)
                .filter(|v| !v.is_null())
                .or_else(|| s.userinfo.as_ref().and_then(|u| path.lookup(u))),
            Subject::Token { claims, .. } => path.lookup(claims),
        };
        found.filter(|v| !v.is_null())
    }
}

/// The value of one header-list entry for `subject`, or `None` when something it needs is
/// not there (a missing claim, no ID token): then the header is not sent at all, rather
/// than a half-filled template. `text` and `piece` are reusable buffers.
fn set_value(
    entry: &SetHeader,
    subject: &Subject,
    text: &mut String,
    piece: &mut String,
) -> Option<HeaderValue> {
    let mut secret = false;
    let rendered: &str = match &entry.source {
        HeaderSource::Claim(path) => render(subject.claim(path)?, &entry.join, text)?,
        HeaderSource::Template(parts) => {
            text.clear();
            for part in parts {
                secret |= part.is_secret();
                match part {
                    Part::Text(t) => text.push_str(t),
                    Part::AccessToken => text.push_str(subject.access_token()?),
                    Part::IdToken => text.push_str(subject.id_token()?),
                    Part::Sub => text.push_str(subject.sub()?),
                    Part::Claim(path) => {
                        text.push_str(render(subject.claim(path)?, &entry.join, piece)?);
                    }
                }
            }
            text.as_str()
        }
    };
    let mut value = encode(rendered, entry.encoding)?;
    value.set_sensitive(secret);
    Some(value)
}

/// The normalised names of every header list, each once.
fn scrub_names(lists: &[Vec<SetHeader>]) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for entry in lists.iter().flatten() {
        let n = normalised(entry.name.as_str().as_bytes());
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The ID-token claim unless it is absent or null, else the userinfo claim.
fn first_non_null<'a>(
    id: Option<&'a Value>,
    userinfo: Option<&'a Map<String, Value>>,
    name: &str,
) -> Option<&'a Value> {
    id.filter(|v| !v.is_null())
        .or_else(|| userinfo.and_then(|u| u.get(name)))
}

/// The text of a claim value, or `None` for `null`. Borrows strings; other kinds are
/// written into `buf`.
fn render<'a>(value: &'a Value, delimiter: &str, buf: &'a mut String) -> Option<&'a str> {
    buf.clear();
    match value {
        Value::Null => return None,
        Value::String(s) => return Some(s),
        Value::Bool(b) => return Some(if *b { "1" } else { "0" }),
        Value::Number(n) => {
            let _ = write!(buf, "{n}");
        }
        Value::Array(items) if items.iter().all(is_scalar) => join(items, delimiter, buf),
        Value::Array(_) | Value::Object(_) => {
            // `Value`'s Display is compact JSON.
            let _ = write!(buf, "{value}");
        }
    }
    Some(buf)
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Scalars joined by `delimiter`; nulls are left out, as mod_auth_openidc does.
fn join(items: &[Value], delimiter: &str, buf: &mut String) {
    let mut first = true;
    for item in items {
        if item.is_null() {
            continue;
        }
        if !first {
            buf.push_str(delimiter);
        }
        first = false;
        match item {
            Value::String(s) => buf.push_str(s),
            Value::Bool(b) => buf.push(if *b { '1' } else { '0' }),
            other => {
                let _ = write!(buf, "{other}");
            }
        }
    }
}

/// The header value for `text` under `encoding`; `None` only if it still cannot be one.
fn encode(text: &str, encoding: Encoding) -> Option<HeaderValue> {
    let bytes = match encoding {
        Encoding::None => text.bytes().map(no_control).collect::<Vec<u8>>(),
        Encoding::Latin1 => text.chars().map(latin1).collect(),
        Encoding::Base64Url => URL_SAFE_NO_PAD.encode(text).into_bytes(),
    };
    HeaderValue::from_maybe_shared(Bytes::from(bytes)).ok()
}

/// As [`encode`], reusing the string's buffer where the encoding allows.
fn encode_owned(text: String, encoding: Encoding) -> Option<HeaderValue> {
    if encoding != Encoding::None {
        return encode(&text, encoding);
    }
    let mut bytes = text.into_bytes();
    for b in &mut bytes {
        *b = no_control(*b);
    }
    HeaderValue::from_maybe_shared(Bytes::from(bytes)).ok()
}

/// Control characters (all of C0 but TAB, and DEL) would end or corrupt a header line.
fn no_control(b: u8) -> u8 {
    if (b < 0x20 && b != b'\t') || b == 0x7f {
        b' '
    } else {
        b
    }
}

fn latin1(c: char) -> u8 {
    match u8::try_from(u32::from(c)) {
        Ok(b) => no_control(b),
        Err(_) => b'?',
    }
}

/// RFC 9110 token characters, the ones allowed in a header name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The comparison form of a header name byte: ASCII lowercase, `-` as `_`.
fn norm(b: u8) -> u8 {
    if b == b'-' {
        b'_'
    } else {
        b.to_ascii_lowercase()
    }
}

fn normalised(name: &[u8]) -> Vec<u8> {
    name.iter().copied().map(norm).collect()
}

/// Whether `name` starts with `prefix` (already normalised), comparing normalised bytes.
fn starts_with_norm(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name.iter().zip(prefix).all(|(&a, &b)| norm(a) == b)
}

fn same_norm(a: &HeaderName, b: &HeaderName) -> bool {
    let (a, b) = (a.as_str().as_bytes(), b.as_str().as_bytes());
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| norm(x) == norm(y))
}

#[cfg(test)]
mod tests;
