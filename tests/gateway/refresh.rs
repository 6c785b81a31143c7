//! Token refresh (docs/behaviour.md §6): the refresh hook row by row, automatic refresh near expiry,
//! the OP refusing or unreachable, rotated refresh tokens, a changed `sub`, and the
//! single-flight under a burst of concurrent requests with the same cookie.
use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// Access tokens live 300 s at the dev OP; refresh when under 60 s are left. The long
/// inactivity timeout keeps idle expiry out of these tests.
fn options() -> Options {
    Options {
        session: "refresh_before_expiry = \"60s\"\ninactivity_timeout = \"1h\"".into(),
        hooks: r#"info = ["iat", "access_token", "access_token_expires", "id_token", "exp", "timeout", "remote_user", "refresh_token"]"#.into(),
        ..Options::default()
    }
}

/// Logs `user` in and returns (access token, its expiry) as the upstream saw them.
async fn login(h: &Harness, b: &Browser, user: &str) -> (String, i64) {
    let echo = Echo::of(h.login(b, "/app", user).await).await;
    token_of(&echo)
}

fn token_of(echo: &Echo) -> (String, i64) {
    let at = echo.header("oidc_access_token").expect("access token sent");
    let exp = echo
        .header("oidc_access_token_expires")
        .expect("expiry sent")
        .parse()
        .expect("decimal epoch seconds");
    (at, exp)
}

fn refresh_query(return_to: &str, at: Option<&str>) -> String {
    match at {
        Some(at) => format!("refresh={}&access_token={}", enc(return_to), enc(at)),
        None => format!("refresh={}", enc(return_to)),
    }
}

async fn hook(h: &Harness, b: &Browser, return_to: &str, at: Option<&str>) -> reqwest::Response {
    b.get(&h.hook_url(&refresh_query(return_to, at))).await
}

fn assert_redirect(r: &reqwest::Response, expected: &str) {
    assert_eq!(
        r.status(),
        StatusCode::FOUND,
        "expected a redirect to {expected}"
    );
    assert_eq!(location(r), expected);
}

/// Open-redirect payloads for a gateway reached as `host` (`127.0.0.1:PORT`).
fn hostile_return_to(host: &str) -> Vec<String> {
    let port: u16 = host.rsplit(':').next().unwrap().parse().unwrap();
    let other_port = if port == 65535 { 1 } else { port + 1 };
    let mut p: Vec<String> = [
        "//evil.com",
        "///evil.com",
        "////evil.com",
        "//evil.com/%2f..",
        "/\\evil.com",
        "\\\\evil.com",
        "\\/evil.com",
        "/\\/evil.com",
        " //evil.com",
        "\u{a0}//evil.com",
        "https://evil.com",
        "http://evil.com/",
        "https:evil.com",
        "https:/evil.com",
        "http:/\\evil.com",
        "https:\\\\evil.com",
        "https:////evil.com",
        "https://evil。com",
        "http://ⓔⓥⓘⓛ.ⓒⓞⓜ/",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(document.domain)",
        "javascript://%0aalert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "ftp://evil.com/",
        "file:///etc/passwd",
        "/http://evil.com",
        "/https:evil.com",
        "/javascript:alert(1)",
        "/%68ttp://evil.com",
        "/http%3a//evil.com",
        "/%2f%2fevil.com",
        "/%2F/evil.com",
        "/%5cevil.com",
        "/%5C%5Cevil.com",
        "/%2e%2e//evil.com",
        "/..//evil.com",
        "/a/../..//evil.com",
        "/\r\nLocation: https://evil.com",
        "/%0d%0aLocation:%20https://evil.com",
        "/%0D%0ASet-Cookie:%20x=1",
        "/%09/evil.com",
        "/\t/evil.com",
        "/foo%00.evil.com",
        "/%7f/evil.com",
        "evil.com",
        "./evil.com",
        "../evil.com",
        "%2f%2fevil.com",
        "%5c%5cevil.com",
        "?next=//evil.com",
        "#//evil.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    p.extend([
        format!("http://{host}.evil.com/"),
        format!("http://{host}@evil.com/"),
        format!("http://evil.com@{host}/"),
        format!("http://evil.com/{host}"),
        format!("http://evil.com#@{host}"),
        format!("http://evil.com?@{host}"),
        format!("http://evil.com\\@{host}/"),
        format!("http://{host}%2f@evil.com/"),
        format!("http://127.0.0.1:{other_port}/"),
        format!("http://localhost:{port}/"),
        format!("http://{host}//evil.com"),
        format!("http://{host}/%2f%2fevil.com"),
        format!("http://{host}/http://evil.com"),
        format!("/{}", "a".repeat(17 * 1024)),
    ]);
    p
}

#[tokio::test]
async fn hook_refuses_empty_or_hostile_return_to_with_a_400_page() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (at, _) = login(&h, &b, "alice").await;
    let payloads = hostile_return_to(&h.host());
    assert!(payloads.len() >= 40, "{} payloads", payloads.len());
    let mut let_through = Vec::new();
    for target in std::iter::once(String::new()).chain(payloads) {
        // With and without the access token: the return_to check comes first.
        for with_token in [true, false] {
            let r = hook(&h, &b, &target, with_token.then_some(at.as_str())).await;
            let status = r.status();
            let loc = r.headers().get("location").cloned();
            if status != StatusCode::BAD_REQUEST || loc.is_some() {
                let_through.push(format!("{target:?} -> {status} {loc:?}"));
                continue;
            }
            assert_eq!(
                r.headers().get("cache-control").unwrap(),
                "no-store",
                "{target:?}"
            );
            let ct = r.headers().get("content-type").unwrap().to_str().unwrap();
            assert!(ct.starts_with("text/html"), "a page: {ct}");
        }
    }
    assert!(let_through.is_empty(), "not refused: {let_through:#?}");
    assert_eq!(h.op.counters().refresh_grants, 0, "no grant was attempted");

    // The same-host forms are accepted (the check is not simply refusing everything).
    let absolute = format!("http://{}/app/x?y=1", h.host());
    let r = hook(&h, &b, &absolute, Some("not-the-token")).await;
    assert_redirect(&r, &format!("{absolute}&error_code=no_access_token_match"));
}

#[tokio::test]
async fn hook_error_codes_follow_the_table_order() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (at, _) = login(&h, &b, "alice").await;

    // No access_token parameter, with and without a query on return_to.
    assert_redirect(
        &hook(&h, &b, "/app", None).await,
        "/app?error_code=no_access_token",
    );
    assert_redirect(
        &hook(&h, &b, "/app?x=1", None).await,
        "/app?x=1&error_code=no_access_token",
    );
    // A fragment stays last: the error_code goes into the query, where the app sees it.
    assert_redirect(
        &hook(&h, &b, "/app?x=1#top", None).await,
        "/app?x=1&error_code=no_access_token#top",
    );
    assert_redirect(
        &hook(&h, &b, "/app#a?b", None).await,
        "/app?error_code=no_access_token#a?b",
    );
    // An empty access_token is still "present": it cannot match.
    assert_redirect(
        &hook(&h, &b, "/app", Some("")).await,
        "/app?error_code=no_access_token_match",
    );

    // No session at all: no_access_token_exists (and the parameter check still wins).
    let stranger = Browser::new();
    assert_redirect(
        &hook(&h, &stranger, "/app", Some(&at)).await,
        "/app?error_code=no_access_token_exists",
    );
    assert_redirect(
        &hook(&h, &stranger, "/app?a=b", Some(&at)).await,
        "/app?a=b&error_code=no_access_token_exists",
    );
    assert_redirect(
        &hook(&h, &stranger, "/app", None).await,
        "/app?error_code=no_access_token",
    );

    // A token that is not the session's.
    let other = h.op.issue_access_token("alice", "openid", 300);
    assert_redirect(
        &hook(&h, &b, "/app", Some(&other)).await,
        "/app?error_code=no_access_token_match",
    );
    let mut almost = at.clone();
    almost.pop();
    assert_redirect(
        &hook(&h, &b, "/app?q", Some(&almost)).await,
        "/app?q&error_code=no_access_token_match",
    );

    // A tampered session cookie: session_corruption, and the bad cookie is cleared.
    let tampered = tamper_session_cookie(&b.cookie_header(&h.base));
    let r = raw_client()
        .get(h.hook_url(&refresh_query("/app", Some(&at))))
        .header("cookie", tampered)
        .send()
        .await
        .unwrap();
    assert_redirect(&r, "/app?error_code=session_corruption");
    assert!(clears_session_cookie(&r), "{:?}", set_cookies(&r));

    assert_eq!(
        h.op.counters().refresh_grants,
        0,
        "no row above reaches the OP"
    );

    // The OP refuses the grant.
    h.op.set_refuse_refresh(true);
    assert_redirect(
        &hook(&h, &b, "/app?x=1", Some(&at)).await,
        "/app?x=1&error_code=refresh_failed",
    );
    assert_eq!(h.op.counters().refresh_grants, 1);
    assert_eq!(h.op.counters().refresh_failures, 1);
    // The session survives a refused refresh: same token upstream.
    let echo = Echo::of(b.get(&h.url("/app")).await).await;
    assert_eq!(token_of(&echo).0, at);

    // A session that timed out is no session.
    h.clock.advance(3601);
    assert_redirect(
        &hook(&h, &b, "/app", Some(&at)).await,
        "/app?error_code=no_access_token_exists",
    );
}

#[tokio::test]
async fn hook_success_redirects_unchanged_with_a_new_cookie_and_new_tokens_upstream() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (old_at, old_exp) = login(&h, &b, "alice").await;
    let old_cookie = b.cookie_value(&h.base, "oidc_session").unwrap();
    h.clock.advance(20);

    let return_to = "/app/page?x=1&y=%2Fz#frag";
    let r = hook(&h, &b, return_to, Some(&old_at)).await;
    assert_redirect(&r, return_to);
    assert!(sets_session_cookie(&r), "new cookie: {:?}", set_cookies(&r));
    assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
    let new_cookie = b.cookie_value(&h.base, "oidc_session").unwrap();
    assert_ne!(new_cookie, old_cookie);

    let c = h.op.counters();
    assert_eq!(c.refresh_grants, 1);
    assert_eq!(c.refresh_failures, 0);
    assert_eq!(c.refresh_scope_params, 0, "the refresh grant resent scope");

    let echo = Echo::of(b.get(&h.url("/app")).await).await;
    let (new_at, new_exp) = token_of(&echo);
    assert_ne!(
        new_at, old_at,
        "the next request carries the NEW access token"
    );
    assert!(
        new_exp >= old_exp + 20,
        "new expiry {new_exp} vs old {old_exp}"
    );
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));

    // The hook with the now-stale token no longer matches.
    assert_redirect(
        &hook(&h, &b, "/app", Some(&old_at)).await,
        "/app?error_code=no_access_token_match",
    );
    assert_eq!(h.op.counters().refresh_grants, 1);
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_the_op_rejects_the_old_one() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (at, _) = login(&h, &b, "alice").await;
    let before = h.info(&b).await;
    let old_rt = before["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();

    assert_redirect(&hook(&h, &b, "/app", Some(&at)).await, "/app");
    let after = h.info(&b).await;
    let new_rt = after["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(
        new_rt, old_rt,
        "the session keeps the rotated refresh token"
    );
    assert_ne!(after["access_token"], before["access_token"]);

    // The OP refuses the old refresh token (and, as a real OP, treats it as a replay).
    let r = raw_client()
        .post(format!("{}/token", h.op.issuer()))
        .basic_auth("gateway", Some("gateway-secret"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &old_rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

/// node oidc-provider (by default, for confidential clients) and many others hand the same
/// refresh token back. Each refresh must still be a grant of its own: the single-flight
/// shares one grant among requests with the *same cookie*, not among every cookie that
/// happens to carry that refresh token.
#[tokio::test]
async fn a_provider_that_keeps_the_refresh_token_still_gets_a_grant_per_refresh() {
    let h = Harness::with(options()).await;
    h.op.set_rotate_refresh_tokens(false);
    let b = Browser::new();
    let (first, _) = login(&h, &b, "alice").await;
    let rt = h.info(&b).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();

    assert_redirect(&hook(&h, &b, "/app", Some(&first)).await, "/app");
    let (second, _) = token_of(&Echo::of(b.get(&h.url("/app")).await).await);
    assert_ne!(second, first);
    assert_redirect(&hook(&h, &b, "/app", Some(&second)).await, "/app");
    let (third, _) = token_of(&Echo::of(b.get(&h.url("/app")).await).await);
    assert_ne!(
        third, second,
        "the second refresh reused the first one's result"
    );
    assert_eq!(h.op.counters().refresh_grants, 2);
    assert_eq!(
        h.info(&b).await["refresh_token"].as_str(),
        Some(rt.as_str())
    );

    // Automatic refresh too: once the access token is inside the refresh window, the
    // request gets a token from a new grant, not the cached result of the hook's.
    h.clock.advance(250);
    let (fourth, exp) = token_of(&Echo::of(b.get(&h.url("/app")).await).await);
    assert_ne!(fourth, third);
    assert!(exp > h.clock.now() + 60, "a fresh token, not an old result");
    assert_eq!(h.op.counters().refresh_grants, 3);
}

#[tokio::test]
async fn automatic_refresh_near_expiry_answers_with_the_new_token_and_cookie() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (old_at, old_exp) = login(&h, &b, "alice").await;

    // 200 s left: outside the 60 s window, nothing happens.
    h.clock.advance(100);
    let r = b.get(&h.url("/app")).await;
    assert!(!sets_session_cookie(&r), "{:?}", set_cookies(&r));
    assert_eq!(token_of(&Echo::of(r).await).0, old_at);
    assert_eq!(h.op.counters().refresh_grants, 0);

    // 50 s left: refreshed inline.
    h.clock.advance(150);
    let r = b.get(&h.url("/app")).await;
    assert!(sets_session_cookie(&r), "new cookie: {:?}", set_cookies(&r));
    let (new_at, new_exp) = token_of(&Echo::of(r).await);
    assert_ne!(new_at, old_at, "the upstream got the new token");
    assert!(new_exp >= old_exp + 250, "{new_exp} vs {old_exp}");
    let c = h.op.counters();
    assert_eq!(c.refresh_grants, 1);
    assert_eq!(c.refresh_scope_params, 0, "the refresh grant resent scope");

    // The new cookie carries the new token: no further grant.
    let r = b.get(&h.url("/app")).await;
    assert_eq!(token_of(&Echo::of(r).await).0, new_at);
    assert_eq!(h.op.counters().refresh_grants, 1);

    // Near expiry again: the rotated refresh token is used for a second grant.
    h.clock.advance(250);
    let r = b.get(&h.url("/app")).await;
    assert!(sets_session_cookie(&r), "{:?}", set_cookies(&r));
    let (third_at, _) = token_of(&Echo::of(r).await);
    assert_ne!(third_at, new_at);
    assert_ne!(third_at, old_at);
    let c = h.op.counters();
    assert_eq!((c.refresh_grants, c.refresh_failures), (2, 0));
}

#[tokio::test]
async fn refused_refresh_passes_the_old_token_while_valid_then_requires_login() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (old_at, _) = login(&h, &b, "alice").await;
    let cookie = b.cookie_header(&h.base);
    h.op.set_refuse_refresh(true);

    h.clock.advance(250);
    let r = b.get(&h.url("/app")).await;
    assert_eq!(token_of(&Echo::of(r).await).0, old_at, "old token passed");
    let c = h.op.counters();
    assert_eq!((c.refresh_grants, c.refresh_failures), (1, 1));

    // Past the access token's expiry: XHR gets a 401, a browser a login redirect.
    h.clock.advance(60);
    let client = raw_client();
    let xhr = client
        .get(h.url("/app"))
        .header("cookie", &cookie)
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(xhr.status(), StatusCode::UNAUTHORIZED);
    let nav = client
        .get(h.url("/app"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(nav.status(), StatusCode::FOUND);
    assert!(
        location(&nav).starts_with(&format!("{}/authorize?", h.op.issuer())),
        "{}",
        location(&nav)
    );
    assert!(clears_session_cookie(&nav), "{:?}", set_cookies(&nav));
}

#[tokio::test]
async fn op_unreachable_during_refresh() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (old_at, _) = login(&h, &b, "alice").await;
    let cookie = b.cookie_header(&h.base);
    h.op.shutdown();

    h.clock.advance(250);
    let r = b.get(&h.url("/app")).await;
    assert_eq!(token_of(&Echo::of(r).await).0, old_at, "old token passed");
    assert_redirect(
        &hook(&h, &b, "/app", Some(&old_at)).await,
        "/app?error_code=refresh_failed",
    );
    assert_eq!(
        token_of(&Echo::of(b.get(&h.url("/app")).await).await).0,
        old_at
    );

    h.clock.advance(60);
    let xhr = raw_client()
        .get(h.url("/app"))
        .header("cookie", &cookie)
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(xhr.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_refreshed_id_token_with_another_sub_is_rejected() {
    let h = Harness::with(options()).await;
    let alice = Browser::new();
    let bob = Browser::new();
    let (alice_at, _) = login(&h, &alice, "alice").await;
    let (bob_at, _) = login(&h, &bob, "bob").await;
    h.op.set_tamper(Some(devop::Tamper::OtherSub));

    // The hook: refresh_failed, and the session is unchanged.
    assert_redirect(
        &hook(&h, &alice, "/app", Some(&alice_at)).await,
        "/app?error_code=refresh_failed",
    );
    let info = h.info(&alice).await;
    assert_eq!(info["access_token"].as_str(), Some(alice_at.as_str()));
    assert_eq!(info["id_token"]["sub"], "alice");

    // Automatic refresh: the old token and identity pass while valid.
    h.clock.advance(250);
    let echo = Echo::of(bob.get(&h.url("/app")).await).await;
    assert_eq!(token_of(&echo).0, bob_at);
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("bob"));
    let c = h.op.counters();
    assert_eq!(c.refresh_grants, 2, "both grants reached the OP");
    assert_eq!(c.refresh_failures, 0, "the OP itself did not refuse");
}

/// 20 requests at once with the same near-expiry cookie: one grant at the OP, every
/// request answered by the upstream with the new token; then 20 more with the OLD cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_one_refresh_grant() {
    burst(options(), "cookie").await;
}

/// The same with the server-side memory store (the cookie holds only a session id).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_one_refresh_grant_memory_store() {
    let mut o = options();
    o.session.push_str("\nstore = \"memory\"");
    burst(o, "memory").await;
}

async fn burst(options: Options, store: &str) {
    let h = Harness::with(options).await;
    let b = Browser::new();
    let (old_at, _) = login(&h, &b, "alice").await;
    let old_cookie = b.cookie_header(&h.base);
    h.clock.advance(250);
    let before = h.op.counters().refresh_grants;
    let client = raw_client();

    let wave = |n: usize| {
        let futures = (0..n).map(|i| {
            let req = client
                .get(h.url(&format!("/app/burst/{i}")))
                .header("cookie", &old_cookie)
                .header("accept", "*/*")
                .send();
            async move {
                let r = req.await.expect("request");
                let status = r.status();
                let new_cookie = sets_session_cookie(&r);
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let echo = Echo(body);
                (status, new_cookie, echo.header("oidc_access_token"))
            }
        });
        futures_util::future::join_all(futures)
    };

    let first = wave(20).await;
    let grants = h.op.counters().refresh_grants - before;
    println!("refresh burst ({store} store): 20 concurrent requests -> {grants} refresh grant(s) at the OP");
    let new_at = first[0].2.clone().expect("token upstream");
    assert_ne!(new_at, old_at);
    for (i, (status, cookie, at)) in first.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK, "request {i}");
        // The memory store's cookie names the session, whose tokens are updated in place.
        assert!(
            *cookie || store == "memory",
            "request {i} got the new cookie"
        );
        assert_eq!(at.as_deref(), Some(new_at.as_str()), "request {i}");
    }
    assert_eq!(grants, 1, "exactly one refresh grant for the burst");

    let second = wave(20).await;
    for (i, (status, cookie, at)) in second.iter().enumerate() {
        assert_eq!(
            *status,
            StatusCode::OK,
            "late request {i} with the old cookie"
        );
        assert!(
            *cookie || store == "memory",
            "late request {i} got the new cookie"
        );
        assert_eq!(at.as_deref(), Some(new_at.as_str()), "late request {i}");
    }
    let c = h.op.counters();
    assert_eq!(
        c.refresh_grants - before,
        1,
        "still one grant after the second wave"
    );
    assert_eq!(c.refresh_failures, 0);
}

/// The refreshed ID token is signed by a key the gateway has not seen yet: the JWKS is
/// refetched for the unknown kid and the refresh succeeds.
#[tokio::test]
async fn refresh_after_the_op_rotated_its_signing_key() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (at, _) = login(&h, &b, "alice").await;
    h.op.rotate_signing_key();
    h.op.retire_old_keys();
    assert_redirect(&hook(&h, &b, "/app", Some(&at)).await, "/app");
    let info = h.info(&b).await;
    assert_ne!(info["access_token"].as_str(), Some(at.as_str()));
    assert_eq!(info["id_token"]["sub"], "alice");
}

#[tokio::test]
async fn automatic_refresh_after_expiry_succeeds_inline() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (old_at, _) = login(&h, &b, "alice").await;
    h.clock.advance(400);
    let r = b.get(&h.url("/app")).await;
    assert!(sets_session_cookie(&r), "{:?}", set_cookies(&r));
    let (new_at, new_exp) = token_of(&Echo::of(r).await);
    assert_ne!(new_at, old_at);
    assert!(new_exp > h.clock.now() + 200, "a fresh expiry: {new_exp}");
    assert_eq!(h.op.counters().refresh_grants, 1);
}

/// A refused grant is shared too: 20 requests at once cause one attempt at the OP, and
/// each passes with the still-valid old token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_one_refused_grant() {
    let h = Harness::with(options()).await;
    let b = Browser::new();
    let (old_at, _) = login(&h, &b, "alice").await;
    let cookie = b.cookie_header(&h.base);
    h.op.set_refuse_refresh(true);
    h.clock.advance(250);
    let client = raw_client();
    let requests = (0..20).map(|i| {
        client
            .get(h.url(&format!("/app/{i}")))
            .header("cookie", &cookie)
            .send()
    });
    for (i, r) in futures_util::future::join_all(requests)
        .await
        .into_iter()
        .enumerate()
    {
        let echo = Echo::of(r.unwrap()).await;
        assert_eq!(token_of(&echo).0, old_at, "request {i}");
    }
    let c = h.op.counters();
    assert_eq!((c.refresh_grants, c.refresh_failures), (1, 1));
}

/// A session sealed with the same passphrase by a gateway in front of another provider:
/// its issuer is not ours, so the hook answers session_corruption and grants nothing.
#[tokio::test]
async fn hook_with_a_session_of_another_provider_is_session_corruption() {
    let ours = Harness::with(options()).await;
    let theirs = Harness::with(options()).await;
    let b = Browser::new();
    let (at, _) = login(&theirs, &b, "alice").await;
    let r = raw_client()
        .get(ours.hook_url(&refresh_query("/app", Some(&at))))
        .header("cookie", b.cookie_header(&theirs.base))
        .send()
        .await
        .unwrap();
    assert_redirect(&r, "/app?error_code=session_corruption");
    assert_eq!(ours.op.counters().refresh_grants, 0);
    assert_eq!(theirs.op.counters().refresh_grants, 0);
}
