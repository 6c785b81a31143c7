//! Token minting: ID tokens (and their tamper modes), access and refresh tokens issued
//! together as a token response, JWT access tokens, and the standard user claims.

use serde_json::{json, Map, Value};

use super::keys::{at_hash, unsigned_jwt};
use super::provider::{lock, Provider};
use super::store::{random_token, AccessToken, Login, RefreshToken, REFRESH_TTL};
use super::Tamper;

/// ID tokens live five minutes.
pub(crate) const ID_TOKEN_TTL: i64 = 300;

/// Whether the space-separated `scope` contains `wanted`.
pub(crate) fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// The standard claims of a user, as a real OP releases them: `profile` gives name and
/// preferred_username (plus locale at userinfo), `email` gives email and email_verified.
pub(crate) fn standard_claims(username: &str, scope: &str, userinfo: bool) -> Map<String, Value> {
    let mut claims = Map::new();
    if has_scope(scope, "profile") {
        claims.insert("name".into(), display_name(username).into());
        claims.insert("preferred_username".into(), username.into());
        if userinfo {
            claims.insert("locale".into(), "en-US".into());
        }
    }
    if has_scope(scope, "email") {
        claims.insert("email".into(), format!("{username}@example.com").into());
        claims.insert("email_verified".into(), true.into());
    }
    claims
}

/// "alice" -> "Alice".
fn display_name(username: &str) -> String {
    let mut chars = username.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Everything an ID token is about.
pub(crate) struct IdTokenInput<'a> {
    pub login: &'a Login,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
}

/// A signed ID token, altered by the current tamper mode if one is set.
pub(crate) fn id_token(op: &Provider, input: &IdTokenInput<'_>) -> String {
    let now = op.now();
    let mut claims = standard_claims(&input.login.sub, input.scope, false);
    claims.extend(op.extra_claims(&input.login.sub));
    // Protocol claims last, so per-user extras cannot override them.
    let protocol = json!({
        "iss": op.issuer,
        "sub": input.login.sub,
        "aud": op.client_id,
        "iat": now,
        "exp": now + ID_TOKEN_TTL,
        "auth_time": input.login.auth_time,
        "sid": input.login.sid,
        "at_hash": at_hash(input.access_token),
    });
    if let Value::Object(protocol) = protocol {
        claims.extend(protocol);
    }
    if let Some(nonce) = input.nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    let tamper = op.tamper();
    if let Some(t) = tamper {
        tamper_claims(&mut claims, t, now);
    }
    sign_id_token(op, &Value::Object(claims), tamper)
}

/// Changes exactly the claim a tamper mode names.
fn tamper_claims(claims: &mut Map<String, Value>, tamper: Tamper, now: i64) {
    match tamper {
        Tamper::WrongIssuer => {
            claims.insert("iss".into(), "https://evil.example".into());
        }
        Tamper::WrongAudience => {
            claims.insert("aud".into(), "someone-else".into());
        }
        Tamper::Expired => {
            claims.insert("iat".into(), (now - 120).into());
            claims.insert("exp".into(), (now - 60).into());
        }
        Tamper::WrongNonce => {
            claims.insert("nonce".into(), format!("wrong-{}", random_token()).into());
        }
        Tamper::OldIssuedAt => {
            claims.insert("iat".into(), (now - 3600).into());
        }
        Tamper::OtherSub => {
            claims.insert("sub".into(), "someone-else".into());
        }
        Tamper::ExtraAudienceNoAzp
        | Tamper::ExtraAudienceOtherAzp
        | Tamper::TrustedExtraAudience => {
            let client = claims.get("aud").cloned().unwrap_or_default();
            let (extra, azp) = match tamper {
                Tamper::ExtraAudienceNoAzp => ("other-api", None),
                Tamper::ExtraAudienceOtherAzp => ("other-api", Some(Value::from("other-api"))),
                _ => ("trusted-api", Some(client.clone())),
            };
            claims.insert("aud".into(), Value::Array(vec![client, extra.into()]));
            claims.remove("azp");
            if let Some(azp) = azp {
                claims.insert("azp".into(), azp);
            }
        }
        Tamper::BadSignature | Tamper::AlgNone | Tamper::UnknownKid => {}
    }
}

fn sign_id_token(op: &Provider, claims: &Value, tamper: Option<Tamper>) -> String {
    let current_kid = lock(&op.keys).current().kid().to_owned();
    match tamper {
        Some(Tamper::AlgNone) => unsigned_jwt(claims),
        Some(Tamper::BadSignature) => sign_rogue(op, claims, &current_kid),
        Some(Tamper::UnknownKid) => {
            sign_rogue(op, claims, &format!("unpublished-{}", random_token()))
        }
        _ => sign_current(op, claims, "JWT"),
    }
}

/// Signs with the current published key.
pub(crate) fn sign_current(op: &Provider, claims: &Value, typ: &str) -> String {
    let key = lock(&op.keys).current();
    let mut header = header(key.kid(), typ);
    if op.omit_kid() {
        header.remove("kid");
    }
    key.sign(header, claims)
}

/// Signs with the never-published key under `kid`. If that key cannot be generated the
/// token is left unsigned, which every correct relying party still rejects.
pub(crate) fn sign_rogue(op: &Provider, claims: &Value, kid: &str) -> String {
    let rogue = lock(&op.keys).rogue();
    match rogue {
        Ok(key) => key.sign(header(kid, "JWT"), claims),
        Err(err) => {
            tracing::error!(error = %err, "cannot generate the unpublished test key");
            unsigned_jwt(claims)
        }
    }
}

fn header(kid: &str, typ: &str) -> Map<String, Value> {
    let mut header = Map::new();
    header.insert("typ".into(), typ.into());
    header.insert("kid".into(), kid.into());
    header
}

/// An RFC 9068 JWT access token. Claims the caller leaves out get defaults: iss, iat,
/// exp (iat + access token TTL), aud and client_id (the client), jti.
pub(crate) fn jwt_access_token(op: &Provider, claims: Value) -> String {
    jwt_with_defaults(op, claims, "at+jwt")
}

/// A JWT with the access token's default claims and the `typ` header `typ` (a token of
/// another kind, for tests of the gateway's type checks).
pub(crate) fn jwt_with_defaults(op: &Provider, claims: Value, typ: &str) -> String {
    let now = op.now();
    let mut claims = match claims {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let defaults = [
        ("iss", Value::from(op.issuer.as_str())),
        ("iat", now.into()),
        ("exp", (now + op.access_token_ttl()).into()),
        ("aud", op.client_id.as_str().into()),
        ("client_id", op.client_id.as_str().into()),
        ("jti", random_token().into()),
    ];
    for (name, value) in defaults {
        claims.entry(name).or_insert(value);
    }
    sign_current(op, &Value::Object(claims), typ)
}

/// An opaque access token as a login would issue it.
pub(crate) fn access_token(
    op: &Provider,
    sub: &str,
    scope: &str,
    ttl: i64,
    grant_id: &str,
) -> String {
    let now = op.now();
    let record = AccessToken {
        client_id: op.client_id.clone(),
        sub: sub.to_owned(),
        scope: scope.to_owned(),
        iat: now,
        exp: now + ttl,
        grant_id: grant_id.to_owned(),
    };
    lock(&op.store).insert_access(now, record)
}

/// One successful grant's worth of tokens.
pub(crate) struct Issue<'a> {
    pub login: &'a Login,
    /// Scope of the new access token (and ID token claims).
    pub scope: &'a str,
    /// Scope the new refresh token carries (the original grant's).
    pub refresh_scope: &'a str,
    pub nonce: Option<&'a str>,
    pub grant_id: &'a str,
    /// A refresh grant at a provider that does not rotate: hand this refresh token back
    /// instead of minting a new one.
    pub keep_refresh: Option<&'a str>,
}

/// The RFC 6749 §5.1 token response. A refresh token is ALWAYS issued (with or without
/// offline_access), which keeps the gateway's refresh tests simple.
pub(crate) fn token_response(op: &Provider, issue: &Issue<'_>) -> Value {
    let now = op.now();
    let ttl = op.access_token_ttl();
    let access = access_token(op, &issue.login.sub, issue.scope, ttl, issue.grant_id);
    let refresh = match issue.keep_refresh {
        Some(kept) => kept.to_owned(),
        None => mint_refresh(op, issue, now),
    };
    let mut body = json!({
        "access_token": access,
        "token_type": op.token_type(),
        "expires_in": ttl,
        "refresh_token": refresh,
        "scope": issue.scope,
    });
    if has_scope(issue.scope, "openid") {
        let input = IdTokenInput {
            login: issue.login,
            scope: issue.scope,
            nonce: issue.nonce,
            access_token: &access,
        };
        body["id_token"] = id_token(op, &input).into();
    }
    body
}

fn mint_refresh(op: &Provider, issue: &Issue<'_>, now: i64) -> String {
    let refresh = RefreshToken {
        client_id: op.client_id.clone(),
        login: issue.login.clone(),
        scope: issue.refresh_scope.to_owned(),
        iat: now,
        exp: now + REFRESH_TTL,
        consumed: false,
        grant_id: issue.grant_id.to_owned(),
    };
    lock(&op.store).insert_refresh(now, refresh)
}
