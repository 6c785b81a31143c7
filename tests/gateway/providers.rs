//! Several providers (docs/behaviour.md §14): one gateway in front of two development OPs
//! (`a`, the default, and `b`, with another client id), routes that accept one or both,
//! the chooser page and its login hook, refresh, logout and back-channel logout at the
//! session's provider, and bearer tokens from either issuer.
use crate::common::*;
use devop::{DevOp, DevOpOptions};
use oidc_gateway::server::Running;
use reqwest::StatusCode;
use serde_json::json;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The second OP's title on the chooser: markup that must come out escaped.
const B_TITLE: &str = "Partners <b>&</b> \"co\"";

fn providers(b_issuer: &str) -> String {
    format!(
        r#"
[[provider]]
name = "a"
title = "Corporate"
issuer = "{{issuer}}"
client_id = "gateway"
client_secret = "gateway-secret"
scopes = ["openid", "profile", "email", "offline_access"]
audience = "gateway"

[[provider]]
name = "b"
title = '{B_TITLE}'
issuer = "{b_issuer}"
client_id = "gateway-b"
client_secret = "secret-b"
scopes = ["openid", "profile", "email", "offline_access"]
audience = "gateway-b"
"#
    )
}

const ROUTES: &str = r#"
[[route]]
path = "/"
upstream = "{upstream}"

[[route]]
path = "/public"
upstream = "{upstream}"
auth = "none"

[[route]]
path = "/b"
upstream = "{upstream}"
provider = "b"

[[route]]
path = "/both"
upstream = "{upstream}"
providers = ["b", "a"]

[[route]]
path = "/api"
upstream = "{upstream}"
auth = "oauth20"
providers = ["a", "b"]

[[route]]
path = "/api-a"
upstream = "{upstream}"
auth = "oauth20"
"#;

/// The harness (its OP is provider `a`), OP `b`, and a gateway in front of both.
struct Two {
    h: Harness,
    b: DevOp,
    gw: Running,
    base: String,
}

impl Two {
    async fn start(oauth: &str) -> Two {
        let h = Harness::start().await;
        let b = DevOp::start(DevOpOptions {
            client_id: "gateway-b".into(),
            client_secret: "secret-b".into(),
            now: op_now(&h.clock),
            ..DevOpOptions::default()
        })
        .await
        .expect("second dev OP starts");
        let (gw, base) = h
            .another_gateway(Options {
                providers: Some(providers(&b.issuer())),
                routes: Some(ROUTES.into()),
                oauth: oauth.into(),
                hooks: format!("{}\n", TEST_INFO.replace("]", ", \"provider\"]")),
                server: "[admin]\nlisten = \"127.0.0.1:0\"\n".into(),
                ..Options::default()
            })
            .await;
        b.add_redirect_uri(&format!("{base}/oauth2/callback"));
        b.add_post_logout_redirect_uri(&format!("{base}/public/bye"));
        Two { h, b, gw, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs `user` in at `op` from the authorization URL `authorize`, follows the
    /// callback, and returns where it sent the browser.
    async fn finish_login(
        &self,
        browser: &Browser,
        op: &DevOp,
        authorize: &str,
        user: &str,
    ) -> String {
        assert!(
            authorize.starts_with(&format!("{}/authorize?", op.issuer())),
            "login at {}: {authorize}",
            op.issuer()
        );
        assert_eq!(browser.get(authorize).await.status(), StatusCode::OK);
        let consented = browser.post_form(authorize, &[("username", user)]).await;
        assert_eq!(consented.status(), StatusCode::FOUND);
        let callback = location(&consented);
        let finished = browser.get(&callback).await;
        assert_eq!(
            finished.status(),
            StatusCode::FOUND,
            "callback failed: {}",
            finished.text().await.unwrap_or_default()
        );
        location(&finished)
    }

    /// Logs `user` in at `op` by requesting `path` (a route that sends the browser there).
    async fn login(&self, browser: &Browser, op: &DevOp, path: &str, user: &str) {
        let start = browser.get(&self.url(path)).await;
        assert_eq!(start.status(), StatusCode::FOUND, "{path} starts a login");
        let back = self
            .finish_login(browser, op, &location(&start), user)
            .await;
        assert_eq!(back, path);
    }

    async fn info(&self, browser: &Browser) -> serde_json::Value {
        let r = browser.get(&self.url("/oauth2/callback?info=json")).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
}

#[tokio::test]
async fn a_route_accepts_only_sessions_from_its_providers() {
    let t = Two::start("").await;
    let alice = Browser::new();
    // A route naming no provider logs in at the default one, `a`.
    t.login(&alice, &t.h.op, "/home", "alice").await;
    let echo = Echo::of(alice.get(&t.url("/home")).await).await;
    assert_eq!(echo.header("oidc_claim_iss"), Some(t.h.op.issuer()));
    let info = t.info(&alice).await;
    assert_eq!(info["provider"], "a", "{info}");
    // A route that lists `a` among others takes the session as it is.
    let echo = Echo::of(alice.get(&t.url("/both/x")).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));

    // A route only for `b`: a browser is sent to log in at `b`, an API client gets 401,
    // and the upstream never sees the session's identity.
    let r = alice.get(&t.url("/b/page")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(
        location(&r).starts_with(&format!("{}/authorize?", t.b.issuer())),
        "{}",
        location(&r)
    );
    let r = alice
        .get_with(&t.url("/b/page"), &[("accept", "application/json")])
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.b.counters().authorizations, 0);

    // Logging in at `b` there gives a session from `b`: now `/b` passes and `/` (only
    // for `a`) does not.
    t.login(&alice, &t.b, "/b/page", "alice-b").await;
    let echo = Echo::of(alice.get(&t.url("/b/page")).await).await;
    assert_eq!(echo.header("oidc_claim_iss"), Some(t.b.issuer()));
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice-b"));
    assert_eq!(t.info(&alice).await["provider"], "b");
    let r = alice.get(&t.url("/home")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(location(&r).starts_with(&format!("{}/authorize?", t.h.op.issuer())));
    assert_eq!(t.b.counters().code_grants, 1);
    assert_eq!(t.h.op.counters().code_grants, 1);
}

#[tokio::test]
async fn the_chooser_page_lists_the_routes_providers_escaped_and_logs_in_at_the_one_chosen() {
    let t = Two::start("").await;
    let browser = Browser::new();
    let r = browser.get(&t.url("/both/page?q=<x>&r=1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_no_store(&r);
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    assert!(
        set_cookies(&r).is_empty(),
        "no state cookie before a choice"
    );
    let page = r.text().await.unwrap();
    assert!(!page.contains(B_TITLE) && !page.contains("<b>"), "{page}");
    assert!(
        page.contains("Partners &lt;b&gt;&amp;&lt;/b&gt; &quot;co&quot;"),
        "{page}"
    );
    // One link per provider, in the route's order (b, then a), to the login hook with the
    // original URL as its target.
    // As the browser sent it (reqwest encodes `<` and `>`).
    let target = enc("/both/page?q=%3Cx%3E&r=1");
    let link_b = format!("/oauth2/callback?provider=b&target_link_uri={target}");
    let link_a = format!("/oauth2/callback?provider=a&target_link_uri={target}");
    let escaped = |s: &str| s.replace('&', "&amp;");
    let (at_b, at_a) = (
        page.find(&format!("href=\"{}\"", escaped(&link_b))),
        page.find(&format!("href=\"{}\"", escaped(&link_a))),
    );
    assert!(at_b.is_some() && at_a.is_some(), "{page}");
    assert!(at_b < at_a, "{page}");
    // API clients get a 401, not the page.
    let r = browser
        .get_with(&t.url("/both/page"), &[("accept", "application/json")])
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Choosing `b` logs in there and comes back to the original URL.
    let r = browser.get(&t.url(&link_b)).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let back = t.finish_login(&browser, &t.b, &location(&r), "bob").await;
    assert_eq!(back, "/both/page?q=%3Cx%3E&r=1");
    let echo = Echo::of(browser.get(&t.url(&back)).await).await;
    assert_eq!(echo.header("oidc_claim_iss"), Some(t.b.issuer()));
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("bob"));
    assert_eq!(echo.0["query"], "q=%3Cx%3E&r=1");
    assert_eq!(t.h.op.counters().authorizations, 0);
}

#[tokio::test]
async fn the_login_hook_starts_logins_only_at_known_providers_and_for_local_targets() {
    let t = Two::start("").await;
    let browser = Browser::new();
    let host = t.gw.addr().to_string();
    for query in [
        "provider=nobody&target_link_uri=%2F".to_string(),
        "provider=&target_link_uri=%2F".to_string(),
        "provider=b&target_link_uri=https%3A%2F%2Fevil.example%2F".to_string(),
        "provider=b&target_link_uri=%2F%2Fevil.example%2F".to_string(),
        "provider=b&target_link_uri=javascript%3Aalert(1)".to_string(),
        "provider=b&target_link_uri=%2Fa%0d%0aSet-Cookie%3A%20x%3D1".to_string(),
    ] {
        let r = browser
            .get(&t.url(&format!("/oauth2/callback?{query}")))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_no_store(&r);
        assert!(set_cookies(&r).is_empty(), "{query}");
        let page = r.text().await.unwrap();
        assert!(!page.contains("evil") && !page.contains("nobody"), "{page}");
    }
    // An absolute URL on this very host is a local target; no target is `/`.
    let absolute = enc(&format!("http://{host}/b/x?y=1"));
    for (query, back) in [
        (format!("provider=b&target_link_uri={absolute}"), "/b/x?y=1"),
        ("provider=b".to_string(), "/"),
    ] {
        let r = browser
            .get(&t.url(&format!("/oauth2/callback?{query}")))
            .await;
        assert_eq!(r.status(), StatusCode::FOUND, "{query}");
        let came_back = t.finish_login(&browser, &t.b, &location(&r), "bob").await;
        assert_eq!(came_back, back);
    }
}

#[tokio::test]
async fn refresh_and_logout_go_to_the_sessions_provider() {
    let t = Two::start("").await;
    let browser = Browser::new();
    t.login(&browser, &t.b, "/b/x", "bob").await;
    let token = t.info(&browser).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = browser
        .get(&t.url(&format!(
            "/oauth2/callback?refresh=%2Fb%2Fx&access_token={}",
            enc(&token)
        )))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/b/x", "refreshed");
    assert_eq!(t.b.counters().refresh_grants, 1);
    assert_eq!(t.h.op.counters().refresh_grants, 0);
    assert_ne!(t.info(&browser).await["access_token"], token.as_str());

    // Inline refresh, too: an access token about to expire is refreshed at `b`.
    t.b.set_access_token_ttl(5);
    let fresh = Browser::new();
    t.login(&fresh, &t.b, "/b/y", "carol").await;
    assert_eq!(fresh.get(&t.url("/b/y")).await.status(), StatusCode::OK);
    assert_eq!(t.b.counters().refresh_grants, 2, "refreshed inline at b");
    assert_eq!(t.h.op.counters().refresh_grants, 0);

    // Logout: the refresh token is revoked at `b`, and the browser goes to b's
    // end_session with b's client id.
    let r = browser
        .get(&t.url(&format!(
            "/oauth2/callback?logout={}",
            enc(&t.url("/public/bye"))
        )))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let end_session = location(&r);
    assert!(
        end_session.starts_with(&format!("{}/end_session?", t.b.issuer())),
        "{end_session}"
    );
    assert!(end_session.contains("client_id=gateway-b"), "{end_session}");
    assert_eq!(t.b.counters().revocations, 1);
    assert_eq!(t.h.op.counters().revocations, 0);
    assert_eq!(
        browser.get(&t.url("/b/x")).await.status(),
        StatusCode::FOUND
    );
}

async fn sid_of(t: &Two, browser: &Browser) -> String {
    t.info(browser).await["id_token"]["sid"]
        .as_str()
        .expect("sid")
        .to_string()
}

async fn post_logout_token(t: &Two, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(t.url("/oauth2/callback?logout=backchannel"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_back_channel_logout_token_ends_sessions_of_its_own_provider_only() {
    let t = Two::start("").await;
    let alice = Browser::new();
    let bob = Browser::new();
    t.login(&alice, &t.h.op, "/a", "alice").await;
    t.login(&bob, &t.b, "/b/x", "bob").await;
    let (alice_sid, bob_sid) = (sid_of(&t, &alice).await, sid_of(&t, &bob).await);
    let claims = |op: &DevOp, aud: &str, sid: &str, jti: &str| {
        json!({
            "iss": op.issuer(), "aud": aud, "iat": t.h.clock.now(), "jti": jti, "sid": sid,
            "events": { EVENT: {} },
        })
    };

    // Checked against b's keys and b's client id: a token for a's client is refused.
    let wrong_aud =
        t.b.issue_jwt_access_token(claims(&t.b, "gateway", &bob_sid, "j1"));
    assert_eq!(
        post_logout_token(&t, &wrong_aud).await.status(),
        StatusCode::BAD_REQUEST
    );
    // b naming a's session (its sid) ends nothing there: sessions are ended per issuer.
    let across =
        t.b.issue_jwt_access_token(claims(&t.b, "gateway-b", &alice_sid, "j2"));
    assert_eq!(
        post_logout_token(&t, &across).await.status(),
        StatusCode::OK
    );
    assert_eq!(alice.get(&t.url("/a")).await.status(), StatusCode::OK);
    assert_eq!(bob.get(&t.url("/b/x")).await.status(), StatusCode::OK);
    // An issuer the gateway does not know is refused.
    let stranger = DevOp::start(DevOpOptions::default()).await.unwrap();
    let unknown = stranger.issue_jwt_access_token(claims(&stranger, "gateway-b", &bob_sid, "j3"));
    let r = post_logout_token(&t, &unknown).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("iss"));

    // b's token for bob's session ends it, and only it.
    let token =
        t.b.issue_jwt_access_token(claims(&t.b, "gateway-b", &bob_sid, "j4"));
    assert_eq!(post_logout_token(&t, &token).await.status(), StatusCode::OK);
    assert_eq!(bob.get(&t.url("/b/x")).await.status(), StatusCode::FOUND);
    assert_eq!(alice.get(&t.url("/a")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bearer_routes_accept_tokens_of_their_providers_only() {
    let t = Two::start("jwt = true").await;
    // JWTs: chosen by iss, checked with that provider's keys and audiences.
    let jwt_a = t.h.op.issue_jwt_access_token(json!({"sub": "alice"}));
    let jwt_b = t.b.issue_jwt_access_token(json!({"sub": "bob"}));
    assert_eq!(
        bearer_status(&t.base, "/api/x", &jwt_a).await,
        StatusCode::OK
    );
    assert_eq!(
        bearer_status(&t.base, "/api/x", &jwt_b).await,
        StatusCode::OK
    );
    assert_eq!(
        bearer_status(&t.base, "/api-a/x", &jwt_a).await,
        StatusCode::OK
    );
    assert_eq!(
        bearer_status(&t.base, "/api-a/x", &jwt_b).await,
        StatusCode::UNAUTHORIZED
    );
    // b's token with a's audience: b's audiences are its own.
    let b_for_a =
        t.b.issue_jwt_access_token(json!({"sub": "bob", "aud": "gateway"}));
    assert_eq!(
        bearer_status(&t.base, "/api/x", &b_for_a).await,
        StatusCode::UNAUTHORIZED
    );
    // What the upstream learns is the token's provider's.
    let r = raw_client()
        .get(t.url("/api/x"))
        .bearer_auth(&jwt_b)
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    assert_eq!(echo.header("oidc_claim_iss"), Some(t.b.issuer()));
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("bob"));

    // Opaque tokens: introspected at the route's providers in order, and only there.
    let opaque_b = t.b.issue_access_token("bob", "openid", 300);
    assert_eq!(
        bearer_status(&t.base, "/api-a/x", &opaque_b).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.b.counters().introspections,
        0,
        "b is not asked for /api-a"
    );
    assert_eq!(t.h.op.counters().introspections, 1);
    assert_eq!(
        bearer_status(&t.base, "/api/x", &opaque_b).await,
        StatusCode::OK
    );
    assert_eq!(t.b.counters().introspections, 1);
    // Cached per provider: a's "inactive" and b's "active" do not mix.
    assert_eq!(
        bearer_status(&t.base, "/api/x", &opaque_b).await,
        StatusCode::OK
    );
    assert_eq!(
        bearer_status(&t.base, "/api-a/x", &opaque_b).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.b.counters().introspections, 1);
    assert_eq!(t.h.op.counters().introspections, 1, "a's answer is cached");
    // remove_at_cache drops the token's results at every provider.
    let r = raw_client()
        .get(t.url(&format!(
            "/oauth2/callback?remove_at_cache={}",
            enc(&opaque_b)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        bearer_status(&t.base, "/api/x", &opaque_b).await,
        StatusCode::OK
    );
    assert_eq!(t.b.counters().introspections, 2);
    assert_eq!(t.h.op.counters().introspections, 2);
}

#[tokio::test]
async fn readyz_names_every_provider() {
    let t = Two::start("").await;
    let admin = t.gw.admin_addrs[0];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let body = loop {
        let r = reqwest::get(format!("http://{admin}/readyz"))
            .await
            .unwrap();
        let ok = r.status() == StatusCode::OK;
        let body: serde_json::Value = r.json().await.unwrap();
        if ok {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(body["checks"]["provider"]["status"], "ok", "{body}");
    for name in ["a", "b"] {
        let check = &body["checks"]["providers"][name];
        assert_eq!(check["status"], "ok", "{body}");
        assert_eq!(check["discovery"], true, "{body}");
        assert_eq!(check["jwks"], true, "{body}");
    }

    // A provider that cannot be reached keeps the gateway unready, and says which.
    let h = Harness::start().await;
    let (down, _) = h
        .another_gateway(Options {
            providers: Some(providers("http://127.0.0.1:9")),
            routes: Some(ROUTES.into()),
            server: "[admin]\nlisten = \"127.0.0.1:0\"\n".into(),
            ..Options::default()
        })
        .await;
    let admin = down.admin_addrs[0];
    let body = loop {
        let r = reqwest::get(format!("http://{admin}/readyz"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = r.json().await.unwrap();
        if body["checks"]["providers"]["a"]["status"] == "ok"
            && body["checks"]["providers"]["b"]["detail"].is_string()
        {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(body["checks"]["provider"]["status"], "failed", "{body}");
    let detail = body["checks"]["provider"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("b: discovery document not loaded"),
        "{detail}"
    );
}

/// The README's example of several providers is a valid configuration, and means what the
/// README says.
#[test]
fn the_readme_example_is_valid() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("### Several providers").expect("section")..];
    let start = section.find("```toml\n").expect("example") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    // Secrets from the environment: set here in the text (not in the process environment,
    // which every test of this binary shares).
    let example = example.replace("${OIDC_CLIENT_SECRET}", "s1");
    let example = example.replace("${PARTNER_CLIENT_SECRET}", "s2");
    let text = format!("{example}\n[session]\npassphrase = \"{PASSPHRASE}\"\n");
    let cfg = oidc_gateway::config::Config::from_toml(&text, "README", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["corporate", "partners"]);
    let routes: Vec<&[usize]> = cfg.routes.iter().map(|r| &r.providers[..]).collect();
    assert_eq!(routes, [&[0][..], &[1, 0], &[1]]);
}
