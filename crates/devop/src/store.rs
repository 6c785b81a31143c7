//! In-memory grant state of the development provider: authorization codes, access tokens
//! and refresh tokens, grouped by grant so revocation can cascade. Pruned on insert.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// Authorization codes live 60 s (and are kept a while longer to detect reuse).
pub(crate) const CODE_TTL: i64 = 60;
const CODE_KEEP_AFTER_EXPIRY: i64 = 600;
/// Refresh tokens live 14 days (oidc-provider's default).
pub(crate) const REFRESH_TTL: i64 = 14 * 24 * 3600;
/// Upper bound per table, so a long demo cannot grow without limit.
const MAX_ENTRIES: usize = 10_000;

/// A random, unguessable token value (256 bits, base64url).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Who signed in, and in which OP session.
#[derive(Clone, Debug)]
pub(crate) struct Login {
    pub sub: String,
    pub sid: String,
    pub auth_time: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PkceMethod {
    S256,
    Plain,
}

#[derive(Clone, Debug)]
pub(crate) struct Pkce {
    pub challenge: String,
    pub method: PkceMethod,
}

#[derive(Clone, Debug)]
pub(crate) struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub scope: String,
    pub pkce: Option<Pkce>,
    pub login: Login,
    pub expires_at: i64,
    pub consumed: bool,
    pub grant_id: String,
}

#[derive(Clone, Debug)]
pub(crate) struct AccessToken {
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub grant_id: String,
}

#[derive(Clone, Debug)]
pub(crate) struct RefreshToken {
    pub client_id: String,
    pub login: Login,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub consumed: bool,
    pub grant_id: String,
}

/// All live grant state.
#[derive(Default)]
pub(crate) struct Store {
    codes: HashMap<String, AuthCode>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
}

impl Store {
    pub(crate) fn insert_code(&mut self, now: i64, code: AuthCode) -> String {
        prune(&mut self.codes, now, |c| {
            c.expires_at + CODE_KEEP_AFTER_EXPIRY
        });
        let value = random_token();
        self.codes.insert(value.clone(), code);
        value
    }

    pub(crate) fn code_mut(&mut self, code: &str) -> Option<&mut AuthCode> {
        self.codes.get_mut(code)
    }

    pub(crate) fn insert_access(&mut self, now: i64, token: AccessToken) -> String {
        prune(&mut self.access, now, |t| t.exp);
        let value = random_token();
        self.access.insert(value.clone(), token);
        value
    }

    pub(crate) fn access(&self, token: &str) -> Option<&AccessToken> {
        self.access.get(token)
    }

    pub(crate) fn insert_refresh(&mut self, now: i64, token: RefreshToken) -> String {
        prune(&mut self.refresh, now, |t| t.exp);
        let value = random_token();
        self.refresh.insert(value.clone(), token);
        value
    }

    pub(crate) fn refresh_mut(&mut self, token: &str) -> Option<&mut RefreshToken> {
        self.refresh.get_mut(token)
    }

    /// Revokes every access and refresh token of a grant (codes stay, marked consumed).
    pub(crate) fn revoke_grant(&mut self, grant_id: &str) {
        self.access.retain(|_, t| t.grant_id != grant_id);
        self.refresh.retain(|_, t| t.grant_id != grant_id);
    }

    /// RFC 7009: an access token alone, or a refresh token with its whole grant.
    pub(crate) fn revoke(&mut self, token: &str) {
        if self.access.remove(token).is_some() {
            return;
        }
        if let Some(refresh) = self.refresh.remove(token) {
            self.revoke_grant(&refresh.grant_id);
        }
    }
}

/// Drops entries whose `keep_until` has passed; if the table is still full, drops the
/// entries that would expire first.
fn prune<V>(map: &mut HashMap<String, V>, now: i64, keep_until: impl Fn(&V) -> i64) {
    map.retain(|_, v| keep_until(v) >= now);
    if map.len() < MAX_ENTRIES {
        return;
    }
    let mut by_expiry: Vec<(i64, String)> = map
        .iter()
        .map(|(k, v)| (keep_until(v), k.clone()))
        .collect();
    by_expiry.sort_unstable();
    let excess = map.len() + 1 - MAX_ENTRIES / 2;
    for (_, key) in by_expiry.into_iter().take(excess) {
        map.remove(&key);
    }
}
