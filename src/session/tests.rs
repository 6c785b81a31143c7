//! One conformance suite, run against every session store.

use super::test_redis::{free_port, RedisServer};
use super::*;
use crate::config::{RedisConfig, RedisEndpoint, SameSite};
use crate::redis_link::RedisLink;
use crate::secret::Secret;
use http::header::COOKIE;
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use serde_json::{json, Map, Value};

const ISS: &str = "https://op.example.com";
const DEPLOYMENT: Deployment<'static> = Deployment {
    issuer: ISS,
    client_id: "gateway",
};

fn config(store: StoreKind, passphrases: &[&str]) -> SessionConfig {
    SessionConfig {
        passphrases: passphrases.iter().map(|p| Secret::new(*p)).collect(),
        store,
        memory_capacity: 1_000,
        cookie_name: "oidc_session".into(),
        cookie_domain: None,
        state_cookie_prefix: "oidc_state_".into(),
        same_site: SameSite::Lax,
        inactivity_timeout: Duration::from_secs(300),
        max_duration: Duration::from_secs(8 * 3600),
        refresh_before_expiry: Duration::from_secs(30),
        preserve_post_max_bytes: 1 << 20,
    }
}

/// The store under test; for Redis, with the server this test started (killed on drop).
struct TestStore {
    kind: StoreKind,
    redis: Option<RedisServer>,
}

impl TestStore {
    fn local(kind: StoreKind) -> TestStore {
        TestStore { kind, redis: None }
    }

    /// `None` (after a notice) when `redis-server` is not installed and not required.
    fn redis(test: &str) -> Option<TestStore> {
        Some(TestStore {
            kind: StoreKind::Redis,
            redis: Some(RedisServer::start_or_skip(test)?),
        })
    }

    /// The cookie store keeps decoded sessions shared between requests with one cookie.
    fn shares_decoded_sessions(&self) -> bool {
        self.kind == StoreKind::Cookie
    }

    fn config(&self, passphrases: &[&str]) -> SessionConfig {
        config(self.kind, passphrases)
    }

    /// A manager for `cfg`, on this test's Redis server when it has one.
    fn build(&self, cfg: &SessionConfig, clock: &Clock) -> Sessions {
        let port = self.redis.as_ref().map(RedisServer::port);
        build(cfg, port, Duration::from_secs(2), clock)
    }

    fn manager(&self) -> (Sessions, Clock) {
        let clock = Clock::system();
        (self.build(&self.config(&[KEY]), &clock), clock)
    }
}

/// `[redis]` on 127.0.0.1:`port`.
fn redis_config(port: u16, timeout: Duration) -> RedisConfig {
    RedisConfig {
        endpoint: RedisEndpoint::Direct {
            host: "127.0.0.1".into(),
            port,
        },
        db: 0,
        username: None,
        password: None,
        tls: None,
        prefix: "oidc_gateway:test:".into(),
        timeout,
    }
}

/// A manager for `cfg`; a redis store talks to 127.0.0.1:`port` (by default port 9, where
/// nothing listens).
fn build(cfg: &SessionConfig, port: Option<u16>, timeout: Duration, clock: &Clock) -> Sessions {
    let link = (cfg.store == StoreKind::Redis)
        .then(|| Arc::new(RedisLink::new(&redis_config(port.unwrap_or(9), timeout))));
    Sessions::new(cfg, DEPLOYMENT, clock.clone(), link)
}

const KEY: &str = "conformance passphrase one";
const OTHER_KEY: &str = "conformance passphrase two";

fn manager(kind: StoreKind) -> (Sessions, Clock) {
    TestStore::local(kind).manager()
}

fn session(clock: &Clock, groups: usize) -> Session {
    let now = clock.now();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!("alice"));
    claims.insert("email".into(), json!("alice@example.com"));
    claims.insert("email_verified".into(), json!(true));
    claims.insert("auth_time".into(), json!(now));
    if groups > 0 {
        let mut rng = rand::thread_rng();
        let groups: Vec<Value> = (0..groups)
            .map(|_| Value::String(Alphanumeric.sample_string(&mut rng, 30)))
            .collect();
        claims.insert("groups".into(), Value::Array(groups));
    }
    Session {
        id: crate::secret::random_id(),
        iss: ISS.into(),
        sub: "alice".into(),
        sid: Some("op-sid-1".into()),
        id_token_claims: claims,
        userinfo: Some(Map::from_iter([("name".to_string(), json!("Alice"))])),
        access_token: Some("at-".repeat(100).into()),
        access_token_expires: Some(now + 300),
        refresh_token: Some("rt-".repeat(50).into()),
        id_token: Some("it-".repeat(200).into()),
        created_at: now,
        created_ms: now * 1000,
        last_seen: now,
        provider: String::new(),
    }
}

/// A minimal browser cookie jar: applies `Set-Cookie` values, presents `Cookie`.
#[derive(Default, Clone)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn apply(&mut self, set_cookies: &[HeaderValue]) {
        for sc in set_cookies {
            let sc = sc.to_str().unwrap();
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.0.retain(|(n, _)| n != name);
            if !attrs.contains("Max-Age=0") {
                self.0.push((name.into(), value.into()));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: &str) {
        self.apply(&[HeaderValue::from_str(&format!("{name}={value}")).unwrap()]);
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !self.0.is_empty() {
            let line: Vec<String> = self.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
            h.insert(COOKIE, HeaderValue::from_str(&line.join("; ")).unwrap());
        }
        h
    }
}

async fn saved(sessions: &Sessions, s: &Session) -> Jar {
    let mut jar = Jar::default();
    jar.apply(&sessions.save(s, true, &HeaderMap::new()).await.unwrap());
    jar
}

fn valid(loaded: Loaded) -> Arc<ActiveSession> {
    match loaded {
        Loaded::Valid(s) => s,
        other => panic!("expected a valid session, got {other:?}"),
    }
}

fn invalid(loaded: Loaded) -> InvalidReason {
    match loaded {
        Loaded::Invalid(r) => r,
        other => panic!("expected an invalid session, got {other:?}"),
    }
}

/// The (only) session cookie, whichever store.
fn session_value(jar: &Jar) -> String {
    jar.get("oidc_session").unwrap().to_owned()
}

// ---- the suite ----------------------------------------------------------------------

async fn missing_without_cookies(store: &TestStore) {
    let (sessions, _) = store.manager();
    assert!(matches!(
        sessions.load(&HeaderMap::new()).await,
        Loaded::Missing
    ));
    let mut jar = Jar::default();
    jar.set("other", "1");
    jar.set("oidc_state_abc", "2");
    assert!(matches!(
        sessions.load(&jar.headers()).await,
        Loaded::Missing
    ));
}

async fn save_then_load(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let s = session(&clock, 0);
    let jar = saved(&sessions, &s).await;
    assert_eq!(jar.names(), ["oidc_session"]);
    assert_eq!(*valid(sessions.load(&jar.headers()).await).session(), s);
    // Again: the repeat (cached, for the cookie store) path gives the same answer.
    assert_eq!(*valid(sessions.load(&jar.headers()).await).session(), s);
    // A fresh manager with the same passphrase (a restart) reads the session, except from
    // the memory store, which is lost with the process.
    if store.kind != StoreKind::Memory {
        let restarted = store.build(&store.config(&[KEY]), &clock);
        assert_eq!(*valid(restarted.load(&jar.headers()).await).session(), s);
    }
}

async fn large_session_is_chunked_and_loads(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let big = session(&clock, 300);
    let mut jar = saved(&sessions, &big).await;
    match store.kind {
        StoreKind::Cookie => {
            let n: usize = jar.get("oidc_session_chunks").unwrap().parse().unwrap();
            assert!((2..=MAX_CHUNKS).contains(&n), "{n} chunks");
            assert!(jar.get("oidc_session").is_none());
            for i in 0..n {
                assert!(jar.get(&format!("oidc_session_{i}")).unwrap().len() <= CHUNK_SIZE);
            }
        }
        StoreKind::Memory | StoreKind::Redis => assert_eq!(jar.names(), ["oidc_session"]),
    }
    assert_eq!(*valid(sessions.load(&jar.headers()).await).session(), big);

    // Shrinking back to one cookie expires the stale chunks the browser still holds.
    let small = session(&clock, 0);
    let set = sessions.save(&small, true, &jar.headers()).await.unwrap();
    jar.apply(&set);
    assert_eq!(jar.names(), ["oidc_session"]);
    assert_eq!(*valid(sessions.load(&jar.headers()).await).session(), small);

    // And growing again expires the plain cookie.
    let set = sessions.save(&big, true, &jar.headers()).await.unwrap();
    jar.apply(&set);
    if store.kind == StoreKind::Cookie {
        assert!(jar.get("oidc_session").is_none());
    }
    assert_eq!(*valid(sessions.load(&jar.headers()).await).session(), big);
}

async fn oversized_session_is_an_error_not_a_panic(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let huge = session(&clock, 3_000);
    let result = sessions.save(&huge, true, &HeaderMap::new()).await;
    match store.kind {
        StoreKind::Cookie => assert!(matches!(result, Err(SessionError::TooLarge { .. }))),
        // Server-side stores are not limited by cookie sizes.
        StoreKind::Memory | StoreKind::Redis => {
            let mut jar = Jar::default();
            jar.apply(&result.unwrap());
            assert_eq!(*valid(sessions.load(&jar.headers()).await).session(), huge);
        }
    }
}

async fn tampered_truncated_and_garbage_cookies_are_invalid(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let s = session(&clock, 0);
    let jar = saved(&sessions, &s).await;
    let value = session_value(&jar);

    let mut bad_values: Vec<String> = Vec::new();
    for at in [0, 3, 10, value.len() / 2, value.len() - 3, value.len() - 1] {
        let mut bytes = value.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        bad_values.push(String::from_utf8(bytes).unwrap());
    }
    for cut in [1, 10, value.len() / 2, value.len() - 1] {
        bad_values.push(value[..cut].to_owned());
    }
    bad_values.extend(
        ["x", "%%%", "AAAA", "\"\"", "null", "{}", "oidc_session"]
            .iter()
            .map(|s| s.to_string()),
    );
    bad_values.push("A".repeat(MAX_SEALED_LEN + 10));
    for bad in bad_values {
        let mut forged = jar.clone();
        forged.set("oidc_session", &bad);
        let reason = invalid(sessions.load(&forged.headers()).await);
        assert!(!matches!(reason, InvalidReason::Expired), "{reason:?}");
    }
    // Empty value: still a presented-but-unusable cookie.
    let mut forged = jar.clone();
    forged.set("oidc_session", "");
    invalid(sessions.load(&forged.headers()).await);
    // The original still works: nothing above poisoned a cache.
    assert_eq!(*valid(sessions.load(&jar.headers()).await).session(), s);
}

async fn tampered_chunk_is_invalid(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let mut jar = Jar::default();
    jar.set("oidc_session_chunks", "2");
    jar.set(
        "oidc_session_0",
        &sessions.codec().seal(Purpose::Session, b"{}"),
    );
    jar.set("oidc_session_1", "AAAA");
    invalid(sessions.load(&jar.headers()).await);
    if store.kind == StoreKind::Cookie {
        let mut jar = saved(&sessions, &session(&clock, 300)).await;
        let chunk = jar.get("oidc_session_1").unwrap().to_owned();
        let flipped = if chunk.starts_with('A') { "B" } else { "A" };
        jar.set("oidc_session_1", &format!("{flipped}{}", &chunk[1..]));
        assert!(matches!(
            invalid(sessions.load(&jar.headers()).await),
            InvalidReason::Unsealed(CodecError::Decrypt)
        ));
    }
}

async fn hostile_chunk_counts_are_cheap_and_invalid(store: &TestStore) {
    let (sessions, clock) = store.manager();
    for count in [
        "99999999",
        "0",
        "17",
        "-1",
        "",
        "1e9",
        "18446744073709551617",
    ] {
        let mut jar = Jar::default();
        jar.set("oidc_session_chunks", count);
        jar.set("oidc_session_0", "AAAA");
        assert_eq!(
            invalid(sessions.load(&jar.headers()).await),
            InvalidReason::ChunkCount,
            "{count:?}"
        );
    }
    // A missing chunk.
    let mut jar = Jar::default();
    jar.set("oidc_session_chunks", "3");
    jar.set("oidc_session_0", "AAAA");
    jar.set("oidc_session_2", "AAAA");
    assert_eq!(
        invalid(sessions.load(&jar.headers()).await),
        InvalidReason::ChunkMissing
    );
    if store.kind == StoreKind::Cookie {
        let mut jar = saved(&sessions, &session(&clock, 300)).await;
        jar.remove("oidc_session_1");
        assert_eq!(
            invalid(sessions.load(&jar.headers()).await),
            InvalidReason::ChunkMissing
        );
    }
}

async fn old_or_foreign_key_is_invalid(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let jar = saved(&sessions, &session(&clock, 0)).await;
    let other = store.build(&store.config(&[OTHER_KEY]), &clock);
    assert_eq!(
        invalid(other.load(&jar.headers()).await),
        InvalidReason::Unsealed(CodecError::UnknownKey)
    );
}

async fn a_value_sealed_for_another_purpose_is_invalid(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let s = session(&clock, 0);
    let json = serde_json::to_vec(&s).unwrap();
    for (purpose, payload) in [
        (Purpose::State, json.as_slice()),
        (Purpose::SessionId, json.as_slice()),
        (Purpose::Session, s.id.as_bytes()),
        (Purpose::State, s.id.as_bytes()),
    ] {
        let mut jar = Jar::default();
        jar.set("oidc_session", &sessions.codec().seal(purpose, payload));
        invalid(sessions.load(&jar.headers()).await);
    }
}

async fn inactivity_timeout_expires(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let jar = saved(&sessions, &session(&clock, 0)).await;
    clock.advance(300);
    valid(sessions.load(&jar.headers()).await);
    clock.advance(1);
    assert_eq!(
        invalid(sessions.load(&jar.headers()).await),
        InvalidReason::Expired
    );
}

async fn touching_keeps_the_session_until_max_duration(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let s = session(&clock, 0);
    let mut jar = saved(&sessions, &s).await;
    let mut current = valid(sessions.load(&jar.headers()).await);
    assert!(!sessions.needs_touch(&current));
    clock.advance(29);
    assert!(!sessions.needs_touch(&current));
    clock.advance(1);
    assert!(sessions.needs_touch(&current));

    // Active every 200 s: inactivity never triggers, max_duration (8 h) eventually does.
    let mut elapsed = 30;
    loop {
        if sessions.needs_touch(&current) {
            let mut touched = (*current).clone();
            touched.last_seen = clock.now();
            jar.apply(&sessions.save(&touched, true, &jar.headers()).await.unwrap());
        }
        match sessions.load(&jar.headers()).await {
            Loaded::Valid(s) => current = s,
            Loaded::Invalid(reason) => {
                assert_eq!(reason, InvalidReason::Expired);
                assert!(elapsed > 8 * 3600, "expired early, after {elapsed}s");
                break;
            }
            Loaded::Missing => panic!("cookie vanished"),
        }
        assert!(elapsed <= 8 * 3600 + 200, "never expired");
        clock.advance(200);
        elapsed += 200;
    }
}

async fn ended_session_is_refused_even_when_replayed(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let s = session(&clock, 0);
    let jar = saved(&sessions, &s).await;
    let loaded = valid(sessions.load(&jar.headers()).await);
    assert!(!sessions.is_ended(&s.id));

    let cleared = sessions.end(&loaded, true, &jar.headers()).await;
    assert!(sessions.is_ended(&s.id));
    let mut after = jar.clone();
    after.apply(&cleared);
    assert!(after.names().is_empty(), "left {:?}", after.names());
    for c in &cleared {
        let c = c.to_str().unwrap();
        assert!(c.contains("Max-Age=0") && c.contains("Path=/") && c.contains("Secure"));
    }

    // The pre-logout cookie, replayed.
    let reason = invalid(sessions.load(&jar.headers()).await);
    assert!(
        matches!(reason, InvalidReason::Ended | InvalidReason::NotFound),
        "{reason:?}"
    );
    // Other sessions are unaffected.
    let other = saved(&sessions, &session(&clock, 0)).await;
    valid(sessions.load(&other.headers()).await);
}

async fn chunked_session_end_clears_every_chunk(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let s = session(&clock, 300);
    let jar = saved(&sessions, &s).await;
    let mut after = jar.clone();
    after.apply(&sessions.end(&s, false, &jar.headers()).await);
    assert!(after.names().is_empty(), "left {:?}", after.names());
    let mut cleared = jar.clone();
    cleared.apply(&sessions.clear_cookies(&jar.headers(), false));
    assert!(cleared.names().is_empty());
}

async fn provider_logout_by_sid_and_sub(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let s = session(&clock, 0);
    let jar = saved(&sessions, &s).await;

    sessions.end_by_sid("https://other-op.example.com", "op-sid-1");
    sessions.end_by_sid(ISS, "another-sid");
    valid(sessions.load(&jar.headers()).await);

    sessions.end_by_sid(ISS, "op-sid-1");
    assert_eq!(
        invalid(sessions.load(&jar.headers()).await),
        InvalidReason::LoggedOut
    );

    // A login after the logout, with the same OP sid, is fine.
    clock.advance(1);
    let newer = session(&clock, 0);
    let newer_jar = saved(&sessions, &newer).await;
    valid(sessions.load(&newer_jar.headers()).await);

    // Logout by subject ends it too.
    sessions.end_by_sub(ISS, "bob");
    valid(sessions.load(&newer_jar.headers()).await);
    sessions.end_by_sub(ISS, "alice");
    assert_eq!(
        invalid(sessions.load(&newer_jar.headers()).await),
        InvalidReason::LoggedOut
    );
}

async fn needs_touch_threshold(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let s = session(&clock, 0);
    assert!(!sessions.needs_touch(&s));
    clock.advance(29);
    assert!(!sessions.needs_touch(&s));
    clock.advance(1);
    assert!(sessions.needs_touch(&s));

    // A tiny inactivity timeout still waits at least a second.
    let mut cfg = store.config(&[KEY]);
    cfg.inactivity_timeout = Duration::from_secs(5);
    let quick = store.build(&cfg, &clock);
    let s = session(&clock, 0);
    assert!(!quick.needs_touch(&s));
    clock.advance(1);
    assert!(quick.needs_touch(&s));
}

/// A client that keeps presenting the pre-touch cookie (parallel requests, or one that
/// ignores Set-Cookie) gets the one re-saved cookie, not a re-seal per request; the new
/// cookie carries the new `last_seen`, and the next touch is due `touch_after` later.
async fn a_replayed_old_cookie_reuses_its_touch(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let jar = saved(&sessions, &session(&clock, 0)).await;
    clock.advance(30);
    let old = valid(sessions.load(&jar.headers()).await);
    assert!(sessions.needs_touch(&old));
    let first = sessions.touch(&old, true, &jar.headers()).await;
    assert!(!first.is_empty());
    let again = valid(sessions.load(&jar.headers()).await);
    let second = sessions.touch(&again, true, &jar.headers()).await;
    if store.shares_decoded_sessions() {
        assert_eq!(first, second, "the replayed cookie was sealed again");
    }
    let mut newer = jar.clone();
    newer.apply(&first);
    let touched = valid(sessions.load(&newer.headers()).await);
    assert_eq!(touched.last_seen, clock.now());
    assert!(!sessions.needs_touch(&touched));

    clock.advance(30);
    let old = valid(sessions.load(&jar.headers()).await);
    let third = sessions.touch(&old, true, &jar.headers()).await;
    assert_ne!(third, first, "a touch older than touch_after is redone");
}

async fn strips_only_gateway_cookies(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let mut jar = saved(&sessions, &session(&clock, 300)).await;
    jar.set("oidc_state_xyz", "state");
    jar.set("app", "keep-me");
    jar.set("theme", "\"dark\"");
    let mut headers = jar.headers();
    headers.append(COOKIE, HeaderValue::from_static("second=header"));
    headers.insert("x-other", HeaderValue::from_static("untouched"));
    sessions.strip_gateway_cookies(&mut headers);
    let cookies: Vec<_> = headers.get_all(COOKIE).iter().collect();
    assert_eq!(cookies, ["app=keep-me; theme=\"dark\"; second=header"]);
    assert_eq!(headers["x-other"], "untouched");

    for name in [
        "oidc_session",
        "oidc_session_chunks",
        "oidc_session_0",
        "oidc_session_15",
        "oidc_session_99",
        "oidc_state_",
        "oidc_state_abc",
    ] {
        assert!(sessions.is_gateway_cookie(name), "{name}");
    }
    for name in ["app", "oidc_session_x", "oidc_sessions", "Oidc_session", ""] {
        assert!(!sessions.is_gateway_cookie(name), "{name}");
    }
}

async fn set_cookie_attributes(store: &TestStore) {
    let clock = Clock::system();
    let mut cfg = store.config(&[KEY]);
    cfg.same_site = SameSite::Strict;
    cfg.cookie_domain = crate::config::CookieDomain::parse("example.com");
    let sessions = store.build(&cfg, &clock);
    for big in [0, 300] {
        let s = session(&clock, big);
        for secure in [true, false] {
            let set = sessions.save(&s, secure, &HeaderMap::new()).await.unwrap();
            assert!(!set.is_empty());
            for c in set {
                let c = c.to_str().unwrap();
                let attrs: Vec<&str> = c.split("; ").skip(1).collect();
                assert!(attrs.contains(&"Path=/"), "{c}");
                assert!(attrs.contains(&"HttpOnly"), "{c}");
                assert!(attrs.contains(&"SameSite=Strict"), "{c}");
                assert!(attrs.contains(&"Domain=example.com"), "{c}");
                assert_eq!(attrs.contains(&"Secure"), secure, "{c}");
                assert!(!c.contains("Max-Age"), "{c}");
            }
        }
    }
}

async fn random_cookie_headers_never_panic(store: &TestStore) {
    let (sessions, clock) = store.manager();
    let real = saved(&sessions, &session(&clock, 300)).await;
    let names = [
        "oidc_session",
        "oidc_session_chunks",
        "oidc_session_0",
        "oidc_session_1",
        "oidc_session_2",
        "oidc_session_15",
        "oidc_session_16",
        "oidc_state_a",
        "other",
    ];
    let mut rng = rand::thread_rng();
    for _ in 0..500 {
        let mut line = String::new();
        for _ in 0..rng.gen_range(0..6) {
            let name = names[rng.gen_range(0..names.len())];
            let value = match rng.gen_range(0..4) {
                0 => rng.gen_range(0..40).to_string(),
                1 => {
                    let len = rng.gen_range(0..200);
                    Alphanumeric.sample_string(&mut rng, len)
                }
                2 => real
                    .0
                    .get(rng.gen_range(0..real.0.len()))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
                _ => "=;\"".repeat(rng.gen_range(0..5)),
            };
            line.push_str(&format!("{name}={value}; "));
        }
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&line) {
            headers.insert(COOKIE, v);
        }
        let _ = sessions.load(&headers).await;
        let _ = sessions.clear_cookies(&headers, true);
        sessions.strip_gateway_cookies(&mut headers);
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod cookie_store {
            use super::{StoreKind, TestStore};
            $( #[tokio::test] async fn $case() {
                super::$case(&TestStore::local(StoreKind::Cookie)).await
            } )*
        }
        mod memory_store {
            use super::{StoreKind, TestStore};
            $( #[tokio::test] async fn $case() {
                super::$case(&TestStore::local(StoreKind::Memory)).await
            } )*
        }
        mod redis_store {
            use super::TestStore;
            $( #[tokio::test] async fn $case() {
                if let Some(store) = TestStore::redis(stringify!($case)) {
                    super::$case(&store).await
                }
            } )*
        }
    };
}

conformance!(
    missing_without_cookies,
    save_then_load,
    large_session_is_chunked_and_loads,
    oversized_session_is_an_error_not_a_panic,
    tampered_truncated_and_garbage_cookies_are_invalid,
    tampered_chunk_is_invalid,
    hostile_chunk_counts_are_cheap_and_invalid,
    old_or_foreign_key_is_invalid,
    a_value_sealed_for_another_purpose_is_invalid,
    inactivity_timeout_expires,
    touching_keeps_the_session_until_max_duration,
    ended_session_is_refused_even_when_replayed,
    chunked_session_end_clears_every_chunk,
    provider_logout_by_sid_and_sub,
    needs_touch_threshold,
    a_replayed_old_cookie_reuses_its_touch,
    strips_only_gateway_cookies,
    set_cookie_attributes,
    random_cookie_headers_never_panic,
);

// ---- store-specific -------------------------------------------------------------------

#[tokio::test]
async fn rotation_reads_old_cookies_and_writes_new_ones() {
    let clock = Clock::system();
    let old = Sessions::new(
        &config(StoreKind::Cookie, &[OTHER_KEY]),
        DEPLOYMENT,
        clock.clone(),
        None,
    );
    let rotated = Sessions::new(
        &config(StoreKind::Cookie, &[KEY, OTHER_KEY]),
        DEPLOYMENT,
        clock.clone(),
        None,
    );
    let s = session(&clock, 0);
    let jar = saved(&old, &s).await;
    assert_eq!(*valid(rotated.load(&jar.headers()).await).session(), s);
    let jar = saved(&rotated, &s).await;
    assert_eq!(
        invalid(old.load(&jar.headers()).await),
        InvalidReason::Unsealed(CodecError::UnknownKey)
    );
}

#[tokio::test]
async fn memory_store_cookie_holds_only_a_sealed_id() {
    let (sessions, clock) = manager(StoreKind::Memory);
    let s = session(&clock, 300);
    let jar = saved(&sessions, &s).await;
    let value = session_value(&jar);
    assert!(value.len() < 100, "{} bytes", value.len());
    let id = sessions.codec().open(Purpose::SessionId, &value).unwrap();
    assert_eq!(id, s.id.as_bytes());
}

#[tokio::test]
async fn memory_store_does_not_share_across_instances() {
    let (a, clock) = manager(StoreKind::Memory);
    let b = Sessions::new(
        &config(StoreKind::Memory, &[KEY]),
        DEPLOYMENT,
        clock.clone(),
        None,
    );
    let jar = saved(&a, &session(&clock, 0)).await;
    assert_eq!(
        invalid(b.load(&jar.headers()).await),
        InvalidReason::NotFound
    );
}

#[test]
fn manager_is_send_and_sync_and_its_futures_are_send() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    // Building a redis-store manager needs neither a runtime nor a server.
    for kind in [StoreKind::Cookie, StoreKind::Memory, StoreKind::Redis] {
        let (sessions, clock) = manager(kind);
        send_sync(&sessions);
        let h = HeaderMap::new();
        let s = session(&clock, 0);
        send(&sessions.load(&h));
        send(&sessions.save(&s, true, &h));
        send(&sessions.end(&s, true, &h));
    }
}

#[test]
fn session_ids_are_128_bit_base64url_and_unique() {
    let a = crate::secret::random_id();
    let b = crate::secret::random_id();
    assert_eq!(a.len(), 22);
    assert_ne!(a, b);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
}

// ---- the redis store ------------------------------------------------------------------

/// A manager on `url` with a short timeout, as a second gateway replica would be built.
fn redis_manager(port: u16, timeout: Duration, clock: &Clock) -> Sessions {
    build(
        &config(StoreKind::Redis, &[KEY]),
        Some(port),
        timeout,
        clock,
    )
}

async fn raw_connection(server: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A cookie that seals a session id, as a browser would present it.
fn cookie_for(sessions: &Sessions, id: &str) -> HeaderMap {
    let mut jar = Jar::default();
    jar.set(
        "oidc_session",
        &sessions.codec().seal(Purpose::SessionId, id.as_bytes()),
    );
    jar.headers()
}

#[tokio::test]
async fn redis_keeps_a_sealed_session_under_prefix_and_id_with_its_remaining_life() {
    let Some(store) = TestStore::redis("redis_keeps_a_sealed_session") else {
        return;
    };
    let server = store.redis.as_ref().unwrap();
    let (sessions, clock) = store.manager();
    let mut s = session(&clock, 300);
    let jar = saved(&sessions, &s).await;
    let value = session_value(&jar);
    assert!(value.len() < 100, "the cookie holds only a sealed id");
    assert_eq!(
        sessions.codec().open(Purpose::SessionId, &value).unwrap(),
        s.id.as_bytes()
    );

    let mut conn = raw_connection(server).await;
    let key = format!("oidc_gateway:test:session:{}", s.id);
    let stored: String = ::redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Sealed: neither tokens nor claims are readable by whoever can read Redis.
    for secret in ["at-at-at", "rt-rt-rt", "alice", "op-sid-1"] {
        assert!(!stored.contains(secret), "{secret} readable in Redis");
    }
    let json = sessions
        .codec()
        .open(Purpose::StoredSession, &stored)
        .unwrap();
    assert_eq!(serde_json::from_slice::<Session>(&json).unwrap(), s);
    // A stored value is not a cookie-store cookie, nor the reverse.
    assert!(sessions.codec().open(Purpose::Session, &stored).is_err());

    // The key lives as long as the session may: inactivity_timeout here...
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((295..=300).contains(&ttl), "ttl {ttl}");
    // ...and less when max_duration ends sooner.
    s.created_at = clock.now() - 8 * 3600 + 100;
    sessions.save(&s, true, &jar.headers()).await.unwrap();
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((95..=100).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn redis_values_that_do_not_open_are_no_session() {
    let Some(store) = TestStore::redis("redis_values_that_do_not_open") else {
        return;
    };
    let (sessions, clock) = store.manager();
    let s = session(&clock, 0);
    let jar = saved(&sessions, &s).await;
    let mut conn = raw_connection(store.redis.as_ref().unwrap()).await;
    let key = format!("oidc_gateway:test:session:{}", s.id);
    let json = serde_json::to_string(&s).unwrap();
    let foreign = Codec::new(&[Secret::new(OTHER_KEY)], &DEPLOYMENT)
        .seal(Purpose::StoredSession, json.as_bytes());
    let as_cookie = sessions.codec().seal(Purpose::Session, json.as_bytes());
    let other_id = session(&clock, 0);
    let other_id = sessions.codec().seal(
        Purpose::StoredSession,
        &serde_json::to_vec(&other_id).unwrap(),
    );
    // Plain JSON (someone with write access forging a session), another passphrase, a value
    // sealed for another purpose, another session's value, binary junk.
    let forgeries: [&[u8]; 5] = [
        json.as_bytes(),
        foreign.as_bytes(),
        as_cookie.as_bytes(),
        other_id.as_bytes(),
        b"\xff\x00junk",
    ];
    for value in forgeries {
        let _: () = ::redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            invalid(sessions.load(&jar.headers()).await),
            InvalidReason::NotFound
        );
    }
    // A key of another type is a failed command, not a panic; the store still works after.
    let _: () = ::redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = ::redis::cmd("LPUSH")
        .arg(&key)
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        invalid(sessions.load(&jar.headers()).await),
        InvalidReason::NotFound
    );
    let fresh = saved(&sessions, &session(&clock, 0)).await;
    valid(sessions.load(&fresh.headers()).await);
}

#[tokio::test]
async fn redis_replicas_share_sessions_and_logout_on_one_ends_it_on_all() {
    let Some(store) = TestStore::redis("redis_replicas_share_sessions") else {
        return;
    };
    let port = store.redis.as_ref().unwrap().port();
    let clock = Clock::system();
    let a = redis_manager(port, Duration::from_secs(2), &clock);
    let b = redis_manager(port, Duration::from_secs(2), &clock);
    let s = session(&clock, 0);
    let mut jar = saved(&a, &s).await;
    assert_eq!(*valid(b.load(&jar.headers()).await).session(), s);

    // A touch written by one replica is what the other reads.
    clock.advance(60);
    let mut touched = s.clone();
    touched.last_seen = clock.now();
    jar.apply(&b.save(&touched, true, &jar.headers()).await.unwrap());
    assert_eq!(valid(a.load(&jar.headers()).await).last_seen, clock.now());

    // Logout on `a`: `b` has no in-process record of it, and still refuses the cookie.
    let other = saved(&a, &session(&clock, 0)).await;
    a.end(&touched, true, &jar.headers()).await;
    assert!(!b.is_ended(&s.id));
    assert_eq!(
        invalid(b.load(&jar.headers()).await),
        InvalidReason::NotFound
    );
    let reason = invalid(a.load(&jar.headers()).await);
    assert!(
        matches!(reason, InvalidReason::Ended | InvalidReason::NotFound),
        "{reason:?}"
    );
    valid(b.load(&other.headers()).await);
}

#[tokio::test]
async fn redis_unreachable_means_no_session_and_failed_saves_without_panics() {
    // Nothing listens on a port that was just free: connections are refused.
    let clock = Clock::system();
    let timeout = Duration::from_millis(500);
    let sessions = redis_manager(free_port(), timeout, &clock);
    let s = session(&clock, 0);
    for _ in 0..3 {
        // Bounded, not timed: every call gives up on its own (the outer limit only keeps a
        // regression from hanging the suite).
        tokio::time::timeout(Duration::from_secs(60), async {
            assert!(matches!(
                sessions.load(&HeaderMap::new()).await,
                Loaded::Missing
            ));
            assert_eq!(
                invalid(sessions.load(&cookie_for(&sessions, &s.id)).await),
                InvalidReason::NotFound
            );
            let err = sessions
                .save(&s, true, &HeaderMap::new())
                .await
                .unwrap_err();
            assert!(matches!(err, SessionError::Store(_)), "{err:?}");
            let message = err.to_string();
            assert!(
                !message.contains(&s.id),
                "the session id is not in {message:?}"
            );
            let cleared = sessions.end(&s, true, &cookie_for(&sessions, &s.id)).await;
            assert_eq!(cleared.len(), 1);
            assert!(sessions.is_ended(&s.id));
        })
        .await
        .expect("every call gives up at the store timeout");
    }
}

#[tokio::test]
async fn redis_that_accepts_but_never_answers_is_bounded_by_the_timeout() {
    // Accepts connections and holds them, silent: every call must give up at the timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let clock = Clock::system();
    let timeout = Duration::from_millis(300);
    let sessions = redis_manager(port, timeout, &clock);
    let s = session(&clock, 0);
    let headers = cookie_for(&sessions, &s.id);
    for _ in 0..3 {
        // Bounded, not timed: a silent server cannot hold a call past the store timeout
        // (the outer limit only keeps a regression from hanging the suite).
        tokio::time::timeout(Duration::from_secs(60), async {
            assert_eq!(
                invalid(sessions.load(&headers).await),
                InvalidReason::NotFound
            );
            assert!(sessions.save(&s, true, &HeaderMap::new()).await.is_err());
            sessions.end(&s, true, &headers).await;
        })
        .await
        .expect("every call gives up at the store timeout");
    }
    holder.abort();
}

#[tokio::test]
async fn redis_paused_restarted_or_back_is_survived() {
    let Some(store) = TestStore::redis("redis_paused_restarted_or_back_is_survived") else {
        return;
    };
    let server = store.redis.as_ref().unwrap();
    let clock = Clock::system();
    let timeout = Duration::from_millis(300);
    let sessions = redis_manager(server.port(), timeout, &clock);
    let s = session(&clock, 0);
    let jar = saved(&sessions, &s).await;
    valid(sessions.load(&jar.headers()).await);

    // Frozen: the open connection gets no answer; calls give up at the timeout.
    server.pause();
    tokio::time::timeout(Duration::from_secs(60), async {
        assert_eq!(
            invalid(sessions.load(&jar.headers()).await),
            InvalidReason::NotFound
        );
        assert!(sessions.save(&s, true, &HeaderMap::new()).await.is_err());
    })
    .await
    .expect("calls to a frozen store give up at the timeout");
    server.resume();
    eventually(|| async { matches!(sessions.load(&jar.headers()).await, Loaded::Valid(_)) }).await;

    // Restarted (empty, no persistence): the old session is gone, new ones work.
    let port = server.port();
    drop(store);
    assert_eq!(
        invalid(sessions.load(&jar.headers()).await),
        InvalidReason::NotFound
    );
    assert!(sessions.save(&s, true, &HeaderMap::new()).await.is_err());
    let _restarted = RedisServer::start_on(port);
    let fresh = session(&clock, 0);
    eventually(|| async { sessions.save(&fresh, true, &HeaderMap::new()).await.is_ok() }).await;
    let jar = saved(&sessions, &fresh).await;
    valid(sessions.load(&jar.headers()).await);
}

/// Polls `check` for up to 5 s (reconnects wait out a short back-off).
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "did not recover within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The logout tables are bounded by bytes, not by count: long `sid`s cannot grow them
/// past their budget.
#[test]
fn logout_records_are_bounded_by_bytes() {
    let clock = Clock::system();
    let sessions = Sessions::new(
        &config(StoreKind::Cookie, &[KEY]),
        DEPLOYMENT,
        clock.clone(),
        None,
    );
    let long = "s".repeat(64 * 1024);
    // 600 records of 64 KiB: about 38 MiB offered to a 16 MiB table.
    for i in 0..600 {
        sessions.end_by_sid(ISS, &format!("{i}-{long}"));
        sessions.end_by_sub(ISS, &format!("{i}-{long}"));
        let _ = sessions.seen_logout_jti(&format!("{i}-{long}"));
    }
    let [by_sid, by_sub, jtis] = sessions.logouts().weighted_sizes();
    for size in [by_sid, by_sub] {
        assert!(size <= logouts::LOGOUT_CAPACITY_BYTES);
        assert!(
            size > logouts::LOGOUT_CAPACITY_BYTES / 2,
            "weighed by bytes"
        );
    }
    assert!(jtis <= logouts::LOGOUT_JTI_CAPACITY_BYTES);
}
