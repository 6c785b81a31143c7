//! Micro-benchmarks of the per-request work of the gateway, each through the public API:
//! session open and seal, session load (cached and not), identity headers, redirect
//! validation, and bearer-token validation (cached, and uncached against the in-process
//! development OP by introspection and by JWT signature).
//!
//! `cargo bench --bench hot_path` (add `-- --quick` for a short run). The whole-gateway
//! numbers, with their baselines, come from `scripts/bench`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use devop::{DevOp, DevOpOptions};
use http::{HeaderMap, HeaderValue};
use oidc_gateway::clock::Clock;
use oidc_gateway::config::{Config, IntrospectionCache};
use oidc_gateway::identity::IdentityHeaders;
use oidc_gateway::redirect::validate_redirect;
use oidc_gateway::resource::validate;
use oidc_gateway::services::{Services, TokenCache, Validation};
use oidc_gateway::session::{Codec, Deployment, Loaded, Purpose, Session, Sessions};
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::time::Duration;

const PASSPHRASE: &str = "bench-passphrase-0123456789abcdef";

fn config(issuer: &str, oauth: &str) -> Config {
    let text = format!(
        r#"
[provider]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "gateway-secret"

[session]
passphrase = "{PASSPHRASE}"
inactivity_timeout = "8h"

[oauth]
{oauth}

[[route]]
path = "/"
upstream = "http://127.0.0.1:9"
auth = "openid-connect"
"#
    );
    Config::from_toml(&text, "bench", None).expect("bench config")
}

/// A JWT-shaped string of about `len` characters (content does not matter to the gateway's
/// per-request path, only size).
fn fake_jwt(len: usize, seed: u8) -> String {
    let body: Vec<u8> = (0..len * 3 / 4)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let text = URL_SAFE_NO_PAD.encode(body);
    let third = text.len() / 3;
    format!(
        "{}.{}.{}",
        &text[..third],
        &text[third..2 * third],
        &text[2 * third..]
    )
}

/// A session the size of an enterprise IdP's (JWT access and ID tokens, a refresh token,
/// groups): about 4 KB as JSON, like the one STACK.md measured.
fn realistic_session(now: i64) -> Session {
    let claims = json!({
        "iss": "https://idp.example.com/realms/demo",
        "sub": "f3c0a1de-4b1e-4d52-9a55-0c8e2f6f9b11",
        "aud": "gateway",
        "exp": now + 300,
        "iat": now,
        "auth_time": now,
        "nonce": "n-0S6_WzA2Mj",
        "sid": "6c1f2a9e-0d53-4c0e-8f4b-2f7e0d1c9a88",
        "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
        "acr": "1",
        "name": "Alice Example",
        "preferred_username": "alice",
        "given_name": "Alice",
        "family_name": "Example",
        "email": "alice@example.com",
        "email_verified": true,
        "groups": ["staff", "engineering", "oncall", "admins"],
        "realm_access": {"roles": ["offline_access", "uma_authorization", "user"]},
    });
    let userinfo = json!({
        "sub": "f3c0a1de-4b1e-4d52-9a55-0c8e2f6f9b11",
        "name": "Alice Example",
        "preferred_username": "alice",
        "email": "alice@example.com",
        "email_verified": true,
        "locale": "en-US",
        "department": "Engineering",
    });
    let as_map = |v: Value| match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Session {
        id: "bench-session-id-0123456789".into(),
        iss: "https://idp.example.com/realms/demo".into(),
        sub: "f3c0a1de-4b1e-4d52-9a55-0c8e2f6f9b11".into(),
        sid: Some("6c1f2a9e-0d53-4c0e-8f4b-2f7e0d1c9a88".into()),
        id_token_claims: as_map(claims),
        userinfo: Some(as_map(userinfo)),
        access_token: Some(fake_jwt(1200, 1).into()),
        access_token_expires: Some(now + 300),
        refresh_token: Some(fake_jwt(700, 2).into()),
        id_token: Some(fake_jwt(1000, 3).into()),
        created_at: now,
        created_ms: now * 1000,
        last_seen: now,
        provider: String::new(),
    }
}

/// The headers a browser sends on a same-origin navigation, plus the session cookie.
fn browser_headers(cookies: &[HeaderValue]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("app.example.com"));
    h.insert(
        "user-agent",
        HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"),
    );
    h.insert(
        "accept",
        HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
    );
    h.insert(
        "accept-language",
        HeaderValue::from_static("en-US,en;q=0.5"),
    );
    h.insert("accept-encoding", HeaderValue::from_static("gzip, deflate"));
    let mut cookie = String::from("_ga=GA1.2.3.4; theme=dark");
    for set in cookies {
        let pair = set.to_str().unwrap().split(';').next().unwrap();
        cookie.push_str("; ");
        cookie.push_str(pair);
    }
    h.insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    h
}

fn session_benches(c: &mut Criterion) {
    let cfg = config("https://idp.example.com/realms/demo", "");
    let clock = Clock::system();
    let session = realistic_session(clock.now());
    let json = serde_json::to_vec(&session).unwrap();
    let codec = Codec::new(
        &cfg.session.passphrases,
        &Deployment {
            issuer: &cfg.provider.issuer,
            client_id: &cfg.provider.client_id,
        },
    );
    let sealed = codec.seal(Purpose::Session, &json);
    eprintln!(
        "session: {} bytes JSON, {} characters sealed (deflated)",
        json.len(),
        sealed.len()
    );

    let mut g = c.benchmark_group("session");
    g.bench_function("seal (serialize + deflate + encrypt + base64)", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(black_box(&session)).unwrap();
            codec.seal(Purpose::Session, &json)
        })
    });
    g.bench_function("open (base64 + decrypt + inflate + parse)", |b| {
        b.iter(|| {
            let plain = codec.open(Purpose::Session, black_box(&sealed)).unwrap();
            serde_json::from_slice::<Session>(&plain).unwrap()
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deployment = Deployment {
        issuer: &cfg.provider.issuer,
        client_id: &cfg.provider.client_id,
    };
    let sessions = Sessions::new(&cfg.session, deployment, clock.clone(), None);
    let cookies = rt
        .block_on(sessions.save(&session, false, &HeaderMap::new()))
        .unwrap();
    let headers = browser_headers(&cookies);
    g.bench_function("Sessions::load, repeat cookie (decoded cache hit)", |b| {
        b.to_async(&rt).iter(|| async {
            match sessions.load(black_box(&headers)).await {
                Loaded::Valid(s) => s,
                other => panic!("{other:?}"),
            }
        })
    });
    // A cookie the process has not seen: what the first request after a refresh or a
    // restart pays. Each iteration gets a freshly sealed cookie (sealing is not timed).
    g.bench_function(
        "Sessions::load, new cookie (open + parse + cache insert)",
        |b| {
            b.iter_batched(
                || {
                    let sealed = codec.seal(Purpose::Session, &json);
                    let set = HeaderValue::from_str(&format!("oidc_session={sealed}")).unwrap();
                    browser_headers(&[set])
                },
                |headers| {
                    rt.block_on(async {
                        match sessions.load(&headers).await {
                            Loaded::Valid(s) => s,
                            other => panic!("{other:?}"),
                        }
                    })
                },
                BatchSize::SmallInput,
            )
        },
    );
    g.bench_function("strip_gateway_cookies", |b| {
        b.iter_batched(
            || headers.clone(),
            |mut h| {
                sessions.strip_gateway_cookies(&mut h);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("identity");
    let identity = IdentityHeaders::new(&cfg.headers);
    eprintln!(
        "identity: {} headers for the session",
        identity.for_session(&session).len()
    );
    g.bench_function("for_session (default [headers])", |b| {
        b.iter(|| identity.for_session(black_box(&session)))
    });
    g.bench_function("for_session + insert into the request", |b| {
        b.iter_batched(
            || headers.clone(),
            |mut h| {
                for (name, value) in identity.for_session(&session) {
                    h.insert(name, value);
                }
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("scrub (browser headers, nothing to remove)", |b| {
        b.iter_batched(
            || headers.clone(),
            |mut h| {
                identity.scrub(&mut h);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn redirect_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("redirect");
    let host = "app.example.com";
    g.bench_function("validate_redirect relative", |b| {
        b.iter(|| validate_redirect(black_box("/app/page?tab=2#top"), host, &[]))
    });
    g.bench_function("validate_redirect absolute same host", |b| {
        b.iter(|| {
            validate_redirect(
                black_box("https://app.example.com/app/page?tab=2"),
                host,
                &[],
            )
        })
    });
    g.bench_function("validate_redirect refused (other host)", |b| {
        b.iter(|| validate_redirect(black_box("https://evil.example/x"), host, &[]))
    });
    let allowed = [regex::Regex::new(r"^https://([a-z]+\.)?example\.com(/.*)?$").unwrap()];
    g.bench_function("validate_redirect with an allow-list", |b| {
        b.iter(|| {
            validate_redirect(
                black_box("https://app.example.com/app/page"),
                host,
                &allowed,
            )
        })
    });
    g.finish();
}

/// The validation future of the cached benchmark: polling it means the cache missed.
async fn never_validated() -> Result<Validation, ()> {
    panic!("cache miss in the cached benchmark")
}

fn bearer_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    oidc_gateway::install_crypto_provider();
    let mut g = c.benchmark_group("bearer");

    // Cached: the validation cache answers; the validation future is never polled.
    let cache = TokenCache::new(
        IntrospectionCache::UntilExpiry,
        64 << 20,
        oidc_gateway::metrics::CacheCounters::default(),
    );
    let token = "Qm9vdHN0cmFwLWJlbmNoLWFjY2Vzcy10b2tlbi0wMTIzNDU2Nzg5";
    let mut claims = Map::new();
    claims.insert("sub".into(), "alice".into());
    claims.insert("scope".into(), "openid profile email".into());
    claims.insert("client_id".into(), "gateway".into());
    let exp = Clock::system().now() + 3600;
    claims.insert("exp".into(), exp.into());
    rt.block_on(cache.get_or_validate(token, async {
        Ok::<_, ()>(Validation {
            active: true,
            claims: claims.clone(),
            exp: Some(exp),
            ttl: Duration::from_secs(3600),
            headers: Default::default(),
        })
    }))
    .unwrap();
    g.bench_function("cached (TokenCache hit: SHA-256 + moka get)", |b| {
        b.to_async(&rt).iter(|| async {
            cache
                .get_or_validate(black_box(token), never_validated())
                .await
                .unwrap()
        })
    });

    // Uncached: a real provider round trip (introspection over loopback HTTP with client
    // authentication), and local RS256 verification of a JWT access token.
    let op = rt
        .block_on(DevOp::start(DevOpOptions::default()))
        .expect("development OP");
    let introspecting = Services::new(config(&op.issuer(), ""), Clock::system());
    let jwt = Services::new(
        config(&op.issuer(), "jwt = true\naudience = \"gateway\""),
        Clock::system(),
    );
    let opaque = op.issue_access_token("alice", "openid profile", 3600);
    let signed = op.issue_jwt_access_token(json!({"sub": "alice", "scope": "openid"}));
    for gw in [&introspecting, &jwt] {
        rt.block_on(gw.load_provider()).expect("provider metadata");
    }
    let check = |v: Validation| assert!(v.active, "token should be active");
    check(
        rt.block_on(validate::validate(&introspecting, &opaque))
            .unwrap(),
    );
    check(rt.block_on(validate::validate(&jwt, &signed)).unwrap());
    g.bench_function("uncached introspection (dev OP over loopback)", |b| {
        b.to_async(&rt)
            .iter(|| async { validate::validate(&introspecting, black_box(&opaque)).await })
    });
    g.bench_function("uncached JWT (RS256 verify, JWKS cached)", |b| {
        b.to_async(&rt)
            .iter(|| async { validate::validate(&jwt, black_box(&signed)).await })
    });
    g.finish();
    op.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = session_benches, redirect_benches, bearer_benches
}
criterion_main!(benches);
