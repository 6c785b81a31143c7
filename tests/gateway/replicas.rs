//! Three gateways sharing one Redis and one OP behave as one gateway (docs/behaviour.md
//! §13): a logout on any of them is refused on the others, a burst with one near-expiry
//! cookie spread over all three makes one refresh grant, `?remove_at_cache=` on one makes
//! the others re-validate, a restarted replica keeps the logout records, and Redis going
//! away and coming back degrades to what one process can do, then catches up. Each case
//! runs with the cookie store and with the redis store.
use crate::common::*;
use oidc_gateway::server::Running;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

/// Replica A (the harness) and B, C (further gateways on the same OP, echo and clock).
struct Replicas {
    h: Harness,
    others: Vec<(Running, String)>,
}

impl Replicas {
    fn base(&self, i: usize) -> String {
        match i % 3 {
            0 => self.h.base.clone(),
            n => self.others[n - 1].1.clone(),
        }
    }

    fn admin(&self, i: usize) -> std::net::SocketAddr {
        match i % 3 {
            0 => self.h.gw.admin_addrs[0],
            n => self.others[n - 1].0.admin_addrs[0],
        }
    }
}

fn options(store: &str, port: u16) -> Options {
    Options {
        server: ADMIN.into(),
        session: format!(
            "store = \"{store}\"\nrefresh_before_expiry = \"60s\"\ninactivity_timeout = \"1h\""
        ),
        redis: Some(format!(
            "url = \"redis://127.0.0.1:{port}/0\"\ntimeout = \"500ms\"\nprefix = \"replicas-test:\""
        )),
        hooks: r#"info = ["iat", "access_token", "id_token", "timeout"]"#.into(),
        ..Options::default()
    }
}

async fn three(store: &str, port: u16) -> Replicas {
    let h = Harness::with(options(store, port)).await;
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(h.another_gateway(options(store, port)).await);
    }
    let r = Replicas { h, others };
    for i in 0..3 {
        wait_for_readyz(&r, i, "ok").await;
    }
    r
}

/// Waits until replica `i`'s `/readyz` is 200 with this Redis status (`ok`, `degraded`).
async fn wait_for_readyz(r: &Replicas, i: usize, redis: &str) -> serde_json::Value {
    crate::common::wait_for_readyz(r.admin(i), redis).await
}

async fn get(base: &str, path: &str, cookie: &str) -> reqwest::Response {
    raw_client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
}

/// Polls `base` with `cookie` until it is refused (a login redirect), at most `within`;
/// returns how long it took. A logout must reach every replica within one second.
async fn refused_within(base: &str, cookie: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = get(base, "/app", cookie).await;
        if r.status() == StatusCode::FOUND {
            assert!(clears_session_cookie(&r), "refused as logged out");
            return start.elapsed();
        }
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            start.elapsed() < within,
            "{base} still accepts the cookie after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sid_of(r: &Replicas, cookie: &str) -> String {
    let info: Value = get(&r.h.base, "/oauth2/callback?info=json", cookie)
        .await
        .json()
        .await
        .unwrap();
    info["id_token"]["sid"].as_str().expect("sid").to_string()
}

async fn post_logout_token(base: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/oauth2/callback?logout=backchannel"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
}

fn logout_token(r: &Replicas, sid: &str, jti: &str) -> String {
    r.h.op.issue_jwt_access_token(json!({
        "iss": r.h.op.issuer(),
        "aud": "gateway",
        "iat": r.h.clock.now(),
        "jti": jti,
        "sid": sid,
        "events": { EVENT: {} },
    }))
}

/// Logs `user` in at replica A; returns the browser's Cookie header.
async fn logged_in(r: &Replicas, user: &str) -> String {
    let b = Browser::new();
    let r0 = r.h.login(&b, "/app", user).await;
    assert_eq!(r0.status(), StatusCode::OK);
    b.cookie_header(&r.h.base)
}

macro_rules! for_both_stores {
    ($($case:ident),* $(,)?) => {
        mod cookie_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some(redis) = super::RedisServer::start_or_skip(stringify!($case)) {
                        super::$case("cookie", redis).await;
                    }
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some(redis) = super::RedisServer::start_or_skip(stringify!($case)) {
                        super::$case("redis", redis).await;
                    }
                }
            )*
        }
    };
}

for_both_stores!(
    backchannel_logout_on_one_is_refused_on_all_and_survives_a_restart,
    rp_logout_on_one_refuses_the_replay_on_the_others,
    a_burst_over_three_replicas_makes_one_refresh_grant,
    remove_at_cache_on_one_makes_the_others_revalidate,
    redis_killed_and_restarted_degrades_then_catches_up,
);

async fn backchannel_logout_on_one_is_refused_on_all_and_survives_a_restart(
    store: &str,
    redis: RedisServer,
) {
    let r = three(store, redis.port()).await;
    let alice = logged_in(&r, "alice").await;
    let bob = logged_in(&r, "bob").await;
    for i in 0..3 {
        assert_eq!(
            get(&r.base(i), "/app", &alice).await.status(),
            StatusCode::OK
        );
    }
    let sid = sid_of(&r, &alice).await;
    let token = logout_token(&r, &sid, "jti-replicas-1");
    let ok = post_logout_token(&r.h.base, &token).await;
    assert_eq!(ok.status(), StatusCode::OK);
    for i in [1, 2] {
        let took = refused_within(&r.base(i), &alice, Duration::from_secs(1)).await;
        println!("back-channel logout on A refused on replica {i} after {took:?} ({store} store)");
    }
    // The same token at another replica is a replay there too.
    let replay = post_logout_token(&r.base(1), &token).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(replay.text().await.unwrap().contains("jti"));
    // Bob is untouched everywhere.
    for i in 0..3 {
        assert_eq!(get(&r.base(i), "/app", &bob).await.status(), StatusCode::OK);
    }

    // A replica started afterwards (or restarted: it has no memory of its own) loads the
    // records from Redis.
    let (_d, d_base) = r.h.another_gateway(options(store, redis.port())).await;
    refused_within(&d_base, &alice, Duration::from_secs(5)).await;
    assert_eq!(get(&d_base, "/app", &bob).await.status(), StatusCode::OK);
}

async fn rp_logout_on_one_refuses_the_replay_on_the_others(store: &str, redis: RedisServer) {
    let r = three(store, redis.port()).await;
    let alice = logged_in(&r, "alice").await;
    assert_eq!(
        get(&r.base(1), "/app", &alice).await.status(),
        StatusCode::OK
    );
    // `?logout=` at B with the cookie; then the pre-logout cookie, replayed at A and C.
    let out = get(
        &r.base(1),
        &format!("/oauth2/callback?logout={}", enc("/public/bye")),
        &alice,
    )
    .await;
    assert_eq!(out.status(), StatusCode::FOUND);
    assert!(clears_session_cookie(&out));
    for i in [0, 2, 1] {
        refused_within(&r.base(i), &alice, Duration::from_secs(1)).await;
    }
}

async fn a_burst_over_three_replicas_makes_one_refresh_grant(store: &str, redis: RedisServer) {
    let r = three(store, redis.port()).await;
    let b = Browser::new();
    let echo = Echo::of(r.h.login(&b, "/app", "alice").await).await;
    let old_at = echo.header("oidc_access_token").unwrap();
    let cookie = b.cookie_header(&r.h.base);
    // Under 60 s left: every request wants a refresh.
    r.h.clock.advance(250);
    let before = r.h.op.counters().refresh_grants;
    let client = raw_client();
    let requests = (0..30).map(|i| {
        let req = client
            .get(format!("{}/app/burst/{i}", r.base(i)))
            .header("cookie", &cookie)
            .header("accept", "*/*")
            .send();
        async move {
            let resp = req.await.expect("request");
            let status = resp.status();
            let echo = Echo(resp.json().await.unwrap_or(Value::Null));
            (status, echo.header("oidc_access_token"))
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let c = r.h.op.counters();
    let grants = c.refresh_grants - before;
    println!(
        "refresh burst over 3 replicas ({store} store): 30 requests -> {grants} grant(s) at the OP"
    );
    let new_at = answers[0].1.clone().expect("a token upstream");
    assert_ne!(new_at, old_at);
    for (i, (status, at)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK, "request {i} (replica {})", i % 3);
        assert_eq!(
            at.as_deref(),
            Some(new_at.as_str()),
            "request {i} got the same new token"
        );
    }
    assert_eq!(grants, 1, "exactly one refresh grant for the burst");
    assert_eq!(c.refresh_failures, 0);
}

async fn remove_at_cache_on_one_makes_the_others_revalidate(store: &str, redis: RedisServer) {
    let r = three(store, redis.port()).await;
    let token = r.h.op.issue_access_token("svc", "api", 300);
    let introspections = || r.h.op.counters().introspections;
    assert_eq!(
        bearer_status(&r.base(0), "/api/x", &token).await,
        StatusCode::OK
    );
    assert_eq!(
        bearer_status(&r.base(0), "/api/x", &token).await,
        StatusCode::OK
    );
    assert_eq!(introspections(), 1, "cached on A");
    // Removed at C (which never saw it): A drops its entry too.
    let removed = raw_client()
        .get(format!(
            "{}/oauth2/callback?remove_at_cache={}",
            r.base(2),
            enc(&token)
        ))
        .send()
        .await
        .unwrap();
    assert!(matches!(
        removed.status(),
        StatusCode::OK | StatusCode::NOT_FOUND
    ));
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        assert_eq!(
            bearer_status(&r.base(0), "/api/x", &token).await,
            StatusCode::OK
        );
        if introspections() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "A still uses its cached result");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With `oauth.shared_cache`, three replicas validate one token once; a removal clears
/// the shared entry too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_cache_validates_a_token_once_for_all_replicas() {
    let Some(redis) = RedisServer::start_or_skip("shared_cache") else {
        return;
    };
    let mut o = options("cookie", redis.port());
    o.oauth = "shared_cache = true".into();
    let h = Harness::with(o.clone()).await;
    let (_b, b_base) = h.another_gateway(o.clone()).await;
    let (_c, c_base) = h.another_gateway(o).await;
    let token = h.op.issue_access_token("svc", "api", 300);
    for base in [&h.base, &b_base, &c_base, &h.base] {
        assert_eq!(bearer_status(base, "/api/x", &token).await, StatusCode::OK);
    }
    assert_eq!(
        h.op.counters().introspections,
        1,
        "one introspection for three replicas"
    );
    // The shared entry is sealed: the token is nowhere in Redis, under any key or value.
    let dump = dump(&redis).await;
    assert!(dump.contains("replicas-test:token:"), "{dump}");
    assert!(!dump.contains(&token), "the token is stored in clear");
    let removed = raw_client()
        .get(format!(
            "{b_base}/oauth2/callback?remove_at_cache={}",
            enc(&token)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        removed.status(),
        StatusCode::OK,
        "the shared entry was removed"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        bearer_status(&c_base, "/api/x", &token).await,
        StatusCode::OK
    );
    assert_eq!(
        h.op.counters().introspections,
        2,
        "validated afresh after the removal"
    );
}

/// Every key and string value in `redis`, as text.
async fn dump(redis: &RedisServer) -> String {
    let mut conn = ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = String::new();
    for key in keys {
        let value: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        out.push_str(&format!(
            "{key} = {}\n",
            String::from_utf8_lossy(&value.unwrap_or_default())
        ));
    }
    out
}

async fn redis_killed_and_restarted_degrades_then_catches_up(store: &str, redis: RedisServer) {
    let port = redis.port();
    let r = three(store, port).await;
    let alice = logged_in(&r, "alice").await;
    let bob = logged_in(&r, "bob").await;
    drop(redis);
    for i in 0..3 {
        wait_for_readyz(&r, i, "degraded").await;
    }
    if store == "cookie" {
        // Cookie sessions keep working on every replica.
        for i in 0..3 {
            assert_eq!(
                get(&r.base(i), "/app", &alice).await.status(),
                StatusCode::OK
            );
        }
        // A logout while Redis is down applies where it was made...
        let out = get(
            &r.base(0),
            &format!("/oauth2/callback?logout={}", enc("/public/bye")),
            &bob,
        )
        .await;
        assert_eq!(out.status(), StatusCode::FOUND);
        refused_within(&r.base(0), &bob, Duration::from_secs(1)).await;
        // ...and a refresh falls back to this replica's own single flight.
        r.h.clock.advance(250);
        let before = r.h.op.counters().refresh_grants;
        let refreshed = get(&r.base(1), "/app", &alice).await;
        assert_eq!(refreshed.status(), StatusCode::OK);
        assert!(sets_session_cookie(&refreshed));
        assert_eq!(r.h.op.counters().refresh_grants - before, 1);
    } else {
        // The sessions live in Redis: log in again (a login page, never a 5xx).
        let r0 = get(&r.base(1), "/app", &alice).await;
        assert_eq!(r0.status(), StatusCode::FOUND);
    }
    let metrics = reqwest::get(format!("http://{}/metrics", r.admin(0)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("oidc_gateway_redis_up 0"), "{metrics}");
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oidc_gateway_redis_errors_total "))
        .expect("redis error counter")
        .parse()
        .unwrap();
    assert!(errors > 0, "{metrics}");

    // Redis is back (empty: it kept nothing): every replica resubscribes, and the logout
    // made while it was down is replayed to the others.
    let _redis = RedisServer::start_on(port);
    for i in 0..3 {
        wait_for_readyz(&r, i, "ok").await;
    }
    if store == "cookie" {
        for i in [1, 2] {
            refused_within(&r.base(i), &bob, Duration::from_secs(2)).await;
        }
        assert_eq!(
            get(&r.base(2), "/app", &alice).await.status(),
            StatusCode::OK
        );
    } else {
        let again = logged_in(&r, "alice").await;
        for i in 0..3 {
            assert_eq!(
                get(&r.base(i), "/app", &again).await.status(),
                StatusCode::OK
            );
        }
    }
}

/// `?remove_at_cache=` needs no credential but the token: an anonymous flood must not turn
/// into as many Redis round trips and notices to every replica. Past the per-second budget
/// the answer is 429 with Retry-After (the token is still removed on this replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remove_at_cache_floods_are_bounded() {
    let Some(redis) = RedisServer::start_or_skip("remove_at_cache flood") else {
        return;
    };
    let h = Harness::with(options("cookie", redis.port())).await;
    let client = raw_client();
    // More than twice the budget: however the burst straddles a second boundary, one
    // second sees more than the budget.
    let answers = futures_util::future::join_all((0..450).map(|i| {
        client
            .get(h.url(&format!("/oauth2/callback?remove_at_cache=bogus-token-{i}")))
            .send()
    }))
    .await;
    let mut throttled = 0;
    for r in answers {
        let r = r.unwrap();
        match r.status() {
            StatusCode::NOT_FOUND => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(r.headers()["retry-after"], "1");
                throttled += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(throttled > 0, "no removal was throttled");
    println!("remove_at_cache flood: 450 requests, {throttled} answered 429");
}

/// A Redis that accepts connections but answers nothing (SIGSTOP) costs a request at most
/// `redis.timeout`: a refresh burst on one replica falls back to its own single flight
/// (one grant, every request answered), a logout still applies there, and `/readyz` says
/// degraded until Redis answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_redis_costs_at_most_its_timeout() {
    let Some(redis) = RedisServer::start_or_skip("frozen redis") else {
        return;
    };
    let r = three("cookie", redis.port()).await;
    let alice = logged_in(&r, "alice").await;
    let bob = logged_in(&r, "bob").await;
    redis.pause();
    r.h.clock.advance(250);
    let before = r.h.op.counters().refresh_grants;
    // Bounded, not timed: each request gives up on Redis on its own; the outer limit only
    // keeps a regression from hanging the suite.
    let a = r.base(0);
    let answers = tokio::time::timeout(Duration::from_secs(30), async {
        futures_util::future::join_all((0..10).map(|_| get(&a, "/app", &alice))).await
    })
    .await
    .expect("requests finish while Redis is frozen");
    for a in &answers {
        assert_eq!(a.status(), StatusCode::OK);
    }
    assert_eq!(
        r.h.op.counters().refresh_grants - before,
        1,
        "one grant on this replica"
    );
    let out = get(
        &r.base(1),
        &format!("/oauth2/callback?logout={}", enc("/public/bye")),
        &bob,
    )
    .await;
    assert_eq!(out.status(), StatusCode::FOUND);
    refused_within(&r.base(1), &bob, Duration::from_secs(1)).await;
    wait_for_readyz(&r, 0, "degraded").await;
    redis.resume();
    // Back: the logout reaches the other replicas.
    for i in [0, 2] {
        refused_within(&r.base(i), &bob, Duration::from_secs(5)).await;
    }
    wait_for_readyz(&r, 0, "ok").await;
}

/// A sealed validation copied in Redis under another token's key does not make that token
/// valid: write access to Redis is not enough to forge a bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_result_copied_to_another_key_is_not_accepted() {
    let Some(redis) = RedisServer::start_or_skip("shared_cache copy") else {
        return;
    };
    let mut o = options("cookie", redis.port());
    o.oauth = "shared_cache = true".into();
    let h = Harness::with(o.clone()).await;
    let (_b, b_base) = h.another_gateway(o).await;
    let token = h.op.issue_access_token("svc", "api", 300);
    assert_eq!(
        bearer_status(&h.base, "/api/x", &token).await,
        StatusCode::OK
    );
    let mut conn = ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("replicas-test:token:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let value: String = ::redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    let forged = "made-up-token-0123456789";
    let forged_key = format!("replicas-test:token:{}", sha256_hex(forged));
    let _: () = ::redis::cmd("SET")
        .arg(&forged_key)
        .arg(&value)
        .arg("EX")
        .arg(300)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        bearer_status(&b_base, "/api/x", forged).await,
        StatusCode::UNAUTHORIZED,
        "a copied result opened as another token's"
    );
    assert_eq!(
        bearer_status(&b_base, "/api/x", &token).await,
        StatusCode::OK
    );
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The subscription's keep-alive PING (every 5 s) is answered: a healthy replica does not
/// drop and remake its subscription, and counts no Redis error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_subscription_stays_up_past_its_pings() {
    let Some(redis) = RedisServer::start_or_skip("subscription ping") else {
        return;
    };
    let h = Harness::with(options("cookie", redis.port())).await;
    let admin = h.gw.admin_addrs[0];
    let metrics = || async {
        reqwest::get(format!("http://{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics().await.contains("oidc_gateway_redis_up 1") {
        assert!(Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past two PINGs.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let text = metrics().await;
    assert!(text.contains("oidc_gateway_redis_up 1"), "{text}");
    assert!(text.contains("oidc_gateway_redis_errors_total 0"), "{text}");
}
