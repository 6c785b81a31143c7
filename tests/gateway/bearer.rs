//! Bearer-token routes (`auth = "oauth20"`, docs/behaviour.md §8): token sources, introspection and its
//! cache (single-flight, policies, revocation and `remove_at_cache`), local JWT validation,
//! the answers for each failure, and what the upstream receives.
use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

const ROUTES: &str = r#"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "openid-connect"

[[route]]
path = "/api"
upstream = "{upstream}"
auth = "oauth20"

[[route]]
path = "/api/admin"
upstream = "{upstream}"
auth = "oauth20"
require_claims = ["groups:admins"]

[[route]]
path = "/api/write"
upstream = "{upstream}"
auth = "oauth20"
require_claims = ["scope~(^| )write( |$)"]
"#;

async fn start(oauth: &str) -> Harness {
    Harness::with(Options {
        oauth: oauth.into(),
        routes: Some(ROUTES.into()),
        ..Options::default()
    })
    .await
}

/// A gateway whose one route, `/`, is a bearer route (plus `route_keys`).
async fn only_bearer_routes(route_keys: &str) -> Harness {
    let routes = format!(
        "[[route]]\npath = \"/\"\nupstream = \"{{upstream}}\"\nauth = \"oauth20\"\n{route_keys}\n"
    );
    Harness::with(Options {
        routes: Some(routes),
        ..Options::default()
    })
    .await
}

async fn bearer(h: &Harness, path: &str, token: &str) -> reqwest::Response {
    raw_client()
        .get(h.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn www_authenticate(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn assert_bearer_error(r: &reqwest::Response, status: StatusCode, error: &str) {
    assert_eq!(r.status(), status, "{error}");
    assert_eq!(www_authenticate(r), format!("Bearer error=\"{error}\""));
}

fn introspections(h: &Harness) -> u64 {
    h.op.counters().introspections
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn no_token_is_401_invalid_request() {
    let h = start("").await;
    let c = raw_client();
    let r = c.get(h.url("/api/x")).send().await.unwrap();
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_request");
    for auth in [
        "Basic Z2F0ZXdheTpzZWNyZXQ=",
        "Bearer",
        "Bearer ",
        "Bearer a b",
    ] {
        let r = c
            .get(h.url("/api/x"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_request");
    }
    // Two Authorization headers with tokens.
    let r = c
        .get(h.url("/api/x"))
        .header("authorization", "Bearer a")
        .header("authorization", "Bearer b")
        .send()
        .await
        .unwrap();
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_request");
    // Only header tokens are accepted by default: a query token is no token.
    let t = h.op.issue_access_token("alice", "openid", 300);
    let r = c
        .get(h.url(&format!("/api/x?access_token={t}")))
        .send()
        .await
        .unwrap();
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_request");
    assert_eq!(introspections(&h), 0);
}

#[tokio::test]
async fn invalid_or_inactive_token_is_401_invalid_token() {
    let h = start("").await;
    let r = bearer(&h, "/api/x", "not-a-token-the-op-issued").await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");

    // Expired at the OP: inactive.
    let short = h.op.issue_access_token("alice", "openid", 60);
    h.clock.advance(120);
    let r = bearer(&h, "/api/x", &short).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(introspections(&h), 2);

    // Active when first seen and cached; past its exp the cached result is not trusted.
    let t = h.op.issue_access_token("alice", "openid", 60);
    assert_eq!(bearer(&h, "/api/x", &t).await.status(), StatusCode::OK);
    h.clock.advance(61);
    let r = bearer(&h, "/api/x", &t).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn failing_claim_rules_are_403_insufficient_scope() {
    let h = start("").await;
    h.op.set_user_claims(
        "alice",
        json!({"groups": ["staff", "admins"]})
            .as_object()
            .unwrap()
            .clone(),
    );
    let alice = h.op.issue_access_token("alice", "openid read write", 300);
    let bob = h.op.issue_access_token("bob", "openid read", 300);

    assert_eq!(
        bearer(&h, "/api/admin/x", &alice).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        bearer(&h, "/api/write/x", &alice).await.status(),
        StatusCode::OK
    );
    let r = bearer(&h, "/api/admin/x", &bob).await;
    assert_bearer_error(&r, StatusCode::FORBIDDEN, "insufficient_scope");
    let r = bearer(&h, "/api/write/x", &bob).await;
    assert_bearer_error(&r, StatusCode::FORBIDDEN, "insufficient_scope");
    // The same token passes where no rule applies.
    assert_eq!(bearer(&h, "/api/x", &bob).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn op_unreachable_is_503_and_not_cached() {
    let gate = Gate::start().await;
    let h = start(&format!(
        "introspection_endpoint = \"{}/introspect\"",
        gate.url()
    ))
    .await;
    gate.forward_to(h.op.addr());
    let t = h.op.issue_access_token("alice", "openid", 300);
    let warm = h.op.issue_access_token("bob", "openid", 300);
    // A first call through the gate, so the gateway holds a pooled connection to it.
    assert_eq!(bearer(&h, "/api/x", &warm).await.status(), StatusCode::OK);
    assert_eq!(introspections(&h), 1);

    gate.close();
    for _ in 0..2 {
        let r = bearer(&h, "/api/x", &t).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(introspections(&h), 1, "nothing reached the OP");

    gate.open();
    let r = bearer(&h, "/api/x", &t).await;
    assert_eq!(r.status(), StatusCode::OK, "the 503 was not cached");
    assert_eq!(
        Echo::of(r).await.header("oidc_claim_sub").as_deref(),
        Some("alice")
    );
    assert_eq!(introspections(&h), 2);
    assert_eq!(bearer(&h, "/api/x", &t).await.status(), StatusCode::OK);
    assert_eq!(introspections(&h), 2, "the success is cached");
}

#[tokio::test]
async fn op_shut_down_is_503() {
    let h = start("").await;
    let t = h.op.issue_access_token("alice", "openid", 300);
    h.op.shutdown();
    let r = bearer(&h, "/api/x", &t).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn upstream_gets_the_token_and_claims_and_never_client_look_alikes() {
    let h = start("").await;
    h.op.set_user_claims(
        "alice",
        json!({"groups": ["staff", "admins"]})
            .as_object()
            .unwrap()
            .clone(),
    );
    let t = h.op.issue_access_token("alice", "openid profile", 300);
    let exp = h.clock.now() + 300;
    let r = raw_client()
        .get(h.url("/api/x"))
        .bearer_auth(&t)
        .header("OIDC_CLAIM_sub", "mallory")
        .header("oidc-claim-sub", "mallory")
        .header("OIDC_CLAIM_role", "root")
        .header("OIDC_access_token", "forged")
        .header("oidc-access-token-expires", "9999999999")
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    assert_eq!(echo.headers("oidc_access_token"), [t.as_str()]);
    let sent_exp: i64 = echo
        .header("oidc_access_token_expires")
        .unwrap()
        .parse()
        .unwrap();
    assert!((sent_exp - exp).abs() <= 2, "{sent_exp} vs {exp}");
    assert_eq!(echo.headers("oidc_claim_sub"), ["alice"]);
    assert_eq!(echo.headers("oidc_claim_scope"), ["openid profile"]);
    assert_eq!(echo.headers("oidc_claim_groups"), ["staff,admins"]);
    assert!(
        echo.headers("oidc_claim_role").is_empty(),
        "look-alike passed"
    );
    for dashed in ["oidc-claim-sub", "oidc-access-token-expires"] {
        assert!(echo.headers(dashed).is_empty(), "{dashed} passed");
    }
}

#[tokio::test]
async fn token_from_query_form_and_cookie_per_accept_token_as() {
    let h = start(r#"accept_token_as = ["header", "query", "post", "cookie:api_at"]"#).await;
    let t = h.op.issue_access_token("alice", "openid", 300);
    let c = raw_client();

    let r = c
        .get(h.url(&format!("/api/q?x=1&access_token={t}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        Echo::of(r).await.header("oidc_claim_sub").as_deref(),
        Some("alice")
    );

    let form = format!("a=1&access_token={t}&b=2");
    let r = c
        .post(h.url("/api/form"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    assert_eq!(
        echo.0["body_len"],
        form.len(),
        "the body still reaches the upstream"
    );

    let r = c
        .get(h.url("/api/cookie"))
        .header("cookie", format!("other=1; api_at={t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        Echo::of(r).await.header("oidc_claim_sub").as_deref(),
        Some("alice")
    );

    // Repeated token parameters, or tokens in two places: invalid_request.
    let r = c
        .get(h.url(&format!("/api/q?access_token={t}&access_token={t}")))
        .send()
        .await
        .unwrap();
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_request");
    let r = c
        .post(h.url("/api/form"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={t}&access_token={t}"))
        .send()
        .await
        .unwrap();
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_request");
    let r = c
        .get(h.url(&format!("/api/q?access_token={t}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_request");
    assert_eq!(introspections(&h), 1, "one token, validated once");
}

#[tokio::test]
async fn revocation_is_seen_after_remove_at_cache() {
    let h = start("").await;
    let t = h.op.issue_access_token("alice", "openid", 300);
    assert_eq!(bearer(&h, "/api/x", &t).await.status(), StatusCode::OK);
    assert_eq!(introspections(&h), 1);

    h.op.revoke(&t);
    assert_eq!(
        bearer(&h, "/api/x", &t).await.status(),
        StatusCode::OK,
        "cached: the revocation is not seen yet"
    );
    assert_eq!(introspections(&h), 1);

    // remove_at_cache needs no session: a client without cookies.
    let c = raw_client();
    let get = |q: String| c.get(h.hook_url(&q)).send();
    assert_eq!(
        get("remove_at_cache=".into()).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get("remove_at_cache=never-seen".into())
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(format!("remove_at_cache={}", enc(&t)))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(format!("remove_at_cache={}", enc(&t)))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND,
        "already removed"
    );

    let r = bearer(&h, "/api/x", &t).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(introspections(&h), 2, "validated afresh");
}

#[tokio::test]
async fn remove_at_cache_works_when_the_gateway_has_only_bearer_routes() {
    let h = only_bearer_routes("").await;
    let t = h.op.issue_access_token("alice", "openid", 300);
    let c = raw_client();
    let remove = || {
        c.get(h.hook_url(&format!("remove_at_cache={}", enc(&t))))
            .send()
    };
    assert_eq!(remove().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(bearer(&h, "/anything", &t).await.status(), StatusCode::OK);
    h.op.revoke(&t);
    assert_eq!(bearer(&h, "/anything", &t).await.status(), StatusCode::OK);
    assert_eq!(remove().await.unwrap().status(), StatusCode::OK);
    let r = bearer(&h, "/anything", &t).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    let r = c.get(h.hook_url("remove_at_cache=")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn introspection_cache_off_introspects_every_request() {
    let h = start(r#"introspection_cache = "off""#).await;
    let t = h.op.issue_access_token("alice", "openid", 300);
    for i in 1..=3 {
        assert_eq!(bearer(&h, "/api/x", &t).await.status(), StatusCode::OK);
        assert_eq!(introspections(&h), i);
    }
    h.op.revoke(&t);
    let r = bearer(&h, "/api/x", &t).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(h.gw.gateway().services.token_cache.debug_keys().is_empty());
}

/// A duration policy re-validates after it. The cache runs on real time, so this one test
/// sleeps a little over the interval (3 s: wide enough that the second request, under a
/// loaded CI machine, still falls inside it).
#[tokio::test]
async fn introspection_cache_duration_revalidates_after_it() {
    let h = start(r#"introspection_cache = "3s""#).await;
    let t = h.op.issue_access_token("alice", "openid", 300);
    assert_eq!(bearer(&h, "/api/x", &t).await.status(), StatusCode::OK);
    h.op.revoke(&t);
    assert_eq!(bearer(&h, "/api/x", &t).await.status(), StatusCode::OK);
    assert_eq!(introspections(&h), 1);
    tokio::time::sleep(std::time::Duration::from_millis(3300)).await;
    let r = bearer(&h, "/api/x", &t).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(introspections(&h), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_fresh_token_introspect_once() {
    let h = start("").await;
    let t = h.op.issue_access_token("alice", "openid", 300);
    let c = raw_client();
    let requests = (0..20).map(|i| {
        c.get(h.url(&format!("/api/burst/{i}")))
            .bearer_auth(&t)
            .send()
    });
    let responses = futures_util::future::join_all(requests).await;
    let n = introspections(&h);
    println!("bearer burst: 20 concurrent requests -> {n} introspection(s) at the OP");
    for (i, r) in responses.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
        assert_eq!(
            Echo::of(r).await.header("oidc_claim_sub").as_deref(),
            Some("alice")
        );
    }
    assert_eq!(n, 1, "exactly one introspection for the burst");
}

#[tokio::test]
async fn cache_keys_are_hashes_not_tokens() {
    let h = start(JWT).await;
    let opaque = h.op.issue_access_token("alice", "openid", 300);
    let jwt = h.op.issue_jwt_access_token(json!({"sub": "alice"}));
    let inactive = "some-token-the-op-never-issued";
    assert_eq!(bearer(&h, "/api/x", &opaque).await.status(), StatusCode::OK);
    assert_eq!(bearer(&h, "/api/x", &jwt).await.status(), StatusCode::OK);
    assert_eq!(
        bearer(&h, "/api/x", inactive).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let mut keys = h.gw.gateway().services.token_cache.debug_keys();
    keys.sort();
    let mut expected = vec![sha256_hex(&opaque), sha256_hex(&jwt), sha256_hex(inactive)];
    expected.sort();
    assert_eq!(keys, expected);
    for key in &keys {
        for token in [&opaque, &jwt, &inactive.to_string()] {
            assert!(!key.contains(token.as_str()), "a key holds a token");
            assert!(!token.contains(key.as_str()));
        }
    }
}

#[tokio::test]
async fn cors_preflight_without_a_token_reaches_the_upstream() {
    let h = start("").await;
    let c = raw_client();
    let r = c
        .request(Method::OPTIONS, h.url("/api/x"))
        .header("origin", "https://spa.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    assert_eq!(echo.0["method"], "OPTIONS");
    assert!(echo.header("oidc_access_token").is_none());
    // A plain OPTIONS (not a preflight) still needs a token.
    let r = c
        .request(Method::OPTIONS, h.url("/api/x"))
        .send()
        .await
        .unwrap();
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_request");
}

// --- JWT access tokens (`jwt = true`) ------------------------------------------------

/// JWT access tokens for the development OP's default audience (the client id).
const JWT: &str = "jwt = true\naudience = \"gateway\"";

/// An ID token (it carries `nonce`) or a JWT of another type signed by the same provider
/// for the same audience is not an access token (mod_auth_openidc's GHSA-wcvh-g65p-v576
/// class: token confusion).
#[tokio::test]
async fn id_tokens_and_other_jwt_types_are_not_access_tokens() {
    let h = start(JWT).await;
    let id_token =
        h.op.issue_jwt_with_typ("JWT", json!({"sub": "alice", "nonce": "n-1"}));
    let r = bearer(&h, "/api/x", &id_token).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    for typ in ["logout+jwt", "secevent+jwt", "dpop+jwt"] {
        let other = h.op.issue_jwt_with_typ(typ, json!({"sub": "alice"}));
        let r = bearer(&h, "/api/x", &other).await;
        assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    }
    // The same claims as a plain JWT or as at+jwt pass.
    for typ in ["JWT", "at+jwt"] {
        let ok = h.op.issue_jwt_with_typ(typ, json!({"sub": "alice"}));
        assert_eq!(
            bearer(&h, "/api/x", &ok).await.status(),
            StatusCode::OK,
            "{typ}"
        );
    }
    assert_eq!(introspections(&h), 0);
}

#[tokio::test]
async fn a_jwt_without_aud_is_refused_and_several_audiences_are_accepted() {
    let h = start("jwt = true\naudience = [\"api://orders\", \"api://billing\"]").await;
    for aud in [
        json!("api://orders"),
        json!("api://billing"),
        json!(["x", "api://billing"]),
    ] {
        let jwt =
            h.op.issue_jwt_access_token(json!({"sub": "alice", "aud": aud}));
        assert_eq!(
            bearer(&h, "/api/x", &jwt).await.status(),
            StatusCode::OK,
            "{aud}"
        );
    }
    let none =
        h.op.issue_jwt_access_token(json!({"sub": "alice", "aud": null}));
    let r = bearer(&h, "/api/x", &none).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn valid_jwt_is_accepted_without_introspection() {
    let h = start(JWT).await;
    let jwt =
        h.op.issue_jwt_access_token(json!({"sub": "alice", "scope": "openid api"}));
    let r = bearer(&h, "/api/x", &jwt).await;
    let echo = Echo::of(r).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    assert_eq!(
        echo.header("oidc_access_token").as_deref(),
        Some(jwt.as_str())
    );
    assert_eq!(bearer(&h, "/api/x", &jwt).await.status(), StatusCode::OK);
    // Opaque tokens are still introspected.
    let opaque = h.op.issue_access_token("bob", "openid", 300);
    assert_eq!(bearer(&h, "/api/x", &opaque).await.status(), StatusCode::OK);
    assert_eq!(
        introspections(&h),
        1,
        "only the opaque token was introspected"
    );
}

#[tokio::test]
async fn jwt_signed_by_a_rotated_key_is_accepted_after_a_jwks_refetch() {
    let h = start(JWT).await;
    let before = h.op.issue_jwt_access_token(json!({"sub": "alice"}));
    assert_eq!(bearer(&h, "/api/x", &before).await.status(), StatusCode::OK);

    h.op.rotate_signing_key();
    let after = h.op.issue_jwt_access_token(json!({"sub": "bob"}));
    let r = bearer(&h, "/api/x", &after).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "unknown kid: the JWKS is refetched"
    );
    assert_eq!(
        Echo::of(r).await.header("oidc_claim_sub").as_deref(),
        Some("bob")
    );
    assert_eq!(introspections(&h), 0);
}

#[tokio::test]
async fn bad_jwts_are_401_invalid_token() {
    let h = start(JWT).await;
    let now = h.clock.now();
    let iss = h.op.issuer();
    let base = json!({"iss": iss, "sub": "alice", "aud": "gateway", "iat": now, "exp": now + 300});

    let cases = [
        ("alg none", h.op.sign_jwt_with(true, base.clone())),
        ("unpublished key", h.op.sign_jwt_with(false, base.clone())),
        (
            "wrong iss",
            h.op.issue_jwt_access_token(json!({"sub": "alice", "iss": "https://evil.example"})),
        ),
        (
            "expired",
            h.op.issue_jwt_access_token(
                json!({"sub": "alice", "iat": now - 600, "exp": now - 120}),
            ),
        ),
    ];
    for (what, token) in &cases {
        let r = bearer(&h, "/api/x", token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            www_authenticate(&r),
            "Bearer error=\"invalid_token\"",
            "{what}"
        );
    }
    assert_eq!(introspections(&h), 0, "JWTs are judged locally");

    // Valid when first seen; expired by the (moved) clock afterwards, cached or not.
    let jwt = h.op.issue_jwt_access_token(json!({"sub": "alice"}));
    assert_eq!(bearer(&h, "/api/x", &jwt).await.status(), StatusCode::OK);
    h.clock.advance(400);
    let r = bearer(&h, "/api/x", &jwt).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn jwt_audience_is_checked_when_configured() {
    let h = start("jwt = true\naudience = \"api://orders\"").await;
    let wrong = h.op.issue_jwt_access_token(json!({"sub": "alice"}));
    let r = bearer(&h, "/api/x", &wrong).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    let right =
        h.op.issue_jwt_access_token(json!({"sub": "alice", "aud": ["api://orders", "other"]}));
    assert_eq!(bearer(&h, "/api/x", &right).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn jwt_with_a_far_future_exp_is_cached_without_trouble() {
    let h = start(JWT).await;
    for exp in [
        h.clock.now() + 10 * 365 * 86_400,
        253_402_300_799,
        9_999_999_999_999,
    ] {
        let jwt =
            h.op.issue_jwt_access_token(json!({"sub": "alice", "exp": exp}));
        let r = bearer(&h, "/api/x", &jwt).await;
        assert_eq!(r.status(), StatusCode::OK, "exp {exp}");
        assert_eq!(bearer(&h, "/api/x", &jwt).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_refresh_token_is_not_an_access_token() {
    // Introspection answers `active: true` for refresh tokens too, and the development OP,
    // like node oidc-provider, leaves `token_type` out for them: refused because of
    // oauth.require_token_type (default true). Marked kinds: resource::validate's tests.
    let h = Harness::with(Options {
        headers: "pass_refresh_token = true".into(),
        routes: Some(ROUTES.into()),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/", "alice").await).await;
    let refresh_token = echo.header("oidc_refresh_token").unwrap();
    let access_token = echo.header("oidc_access_token").unwrap();
    let r = bearer(&h, "/api/x", &refresh_token).await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(
        bearer(&h, "/api/x", &access_token).await.status(),
        StatusCode::OK
    );
}

/// Values that cannot be access tokens are refused without asking the OP (a hostile
/// client must not be able to make it answer an error); an empty parameter is no token.
#[tokio::test]
async fn implausible_tokens_are_invalid_without_introspection() {
    let h = start(r#"accept_token_as = ["header", "query"]"#).await;
    let c = raw_client();
    let r = c.get(h.url("/api/x?access_token=")).send().await.unwrap();
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_request");
    for bad in ["a%20b", "%3Cscript%3E", "%C3%A9t%C3%A9", "a%00b"] {
        let r = c
            .get(h.url(&format!("/api/x?access_token={bad}")))
            .send()
            .await
            .unwrap();
        assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let huge = "a".repeat(17 * 1024);
    assert_bearer_error(
        &bearer(&h, "/api/x", &huge).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    assert_eq!(introspections(&h), 0);
}

/// `unauth_action = "pass"` on a bearer route: no token is proxied anonymously (client
/// look-alike headers scrubbed); a bad token is still refused.
#[tokio::test]
async fn unauth_action_pass_lets_anonymous_requests_through_a_bearer_route() {
    let h = only_bearer_routes("unauth_action = \"pass\"").await;
    let r = raw_client()
        .get(h.url("/open"))
        .header("OIDC_CLAIM_sub", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let echo = Echo::of(r).await;
    assert_eq!(echo.header("oidc_claim_sub"), None);
    assert_eq!(echo.header("oidc_access_token"), None);
    let r = bearer(&h, "/open", "not-a-token-the-op-issued").await;
    assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    let t = h.op.issue_access_token("alice", "openid", 300);
    let echo = Echo::of(bearer(&h, "/open", &t).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
}

/// A JWT access token signed without `kid` by a provider that rotated its only key: one
/// refetch, and the token is valid.
#[tokio::test]
async fn a_rotated_key_without_kid_is_refetched_for_bearer_jwts() {
    let h = start(JWT).await;
    h.op.set_omit_kid(true);
    let before = h.op.issue_jwt_access_token(json!({"sub": "alice"}));
    assert_eq!(bearer(&h, "/api/x", &before).await.status(), StatusCode::OK);
    h.op.rotate_signing_key();
    h.op.retire_old_keys();
    let after = h.op.issue_jwt_access_token(json!({"sub": "bob"}));
    assert_eq!(bearer(&h, "/api/x", &after).await.status(), StatusCode::OK);
}

/// Tokens naming unknown key ids refetch the JWKS at most once per 10 s, however many
/// arrive: a flood of bogus kids cannot make the gateway hammer the provider.
#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_most_once_per_interval() {
    let h = start(JWT).await;
    let good = h.op.issue_jwt_access_token(json!({"sub": "alice"}));
    assert_eq!(bearer(&h, "/api/x", &good).await.status(), StatusCode::OK);
    let before = h.op.counters().jwks;
    let now = h.clock.now();
    for i in 0..8 {
        let bogus = h.op.sign_jwt_with_unknown_kid(json!({
            "iss": h.op.issuer(), "sub": format!("u{i}"), "aud": "gateway",
            "iat": now, "exp": now + 300,
        }));
        let r = bearer(&h, "/api/x", &bogus).await;
        assert_bearer_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let fetched = h.op.counters().jwks - before;
    assert_eq!(fetched, 1, "one refetch for eight unknown kids");
}
