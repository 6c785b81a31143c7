//! Forward-auth mode (docs/behaviour.md §11.6): checks as nginx `auth_request`, Traefik
//! `ForwardAuth`, Caddy `forward_auth` and Envoy `ext_authz` send them (the headers each
//! sends, from its own documentation), answered with the same routes, sessions, claim
//! rules and identity headers as proxy mode; and `server.login_path`.
//! scripts/e2e runs the real nginx and Caddy in front of the gateway.

use crate::common::*;
use reqwest::StatusCode;

const ROUTES: &str = r#"
[[route]]
path = "/"
upstream = ""
auth = "openid-connect"

[[route]]
path = "/admins"
upstream = ""
auth = "openid-connect"
require_claims = ["groups:admins"]

[[route]]
path = "/public"
upstream = ""
auth = "none"

[[route]]
path = "/api"
upstream = ""
auth = "oauth20"

[[route]]
path = "/proxied"
upstream = "{upstream}"
auth = "openid-connect"
"#;

const SERVER: &str = r#"
forward_auth_path = "/oauth2/auth"
login_path = "/oauth2/start"
trusted_proxies = ["127.0.0.1/32"]
"#;

async fn start() -> Harness {
    Harness::with(Options {
        server: SERVER.into(),
        routes: Some(ROUTES.into()),
        ..Options::default()
    })
    .await
}

/// The front proxies' ways of saying which request a check is about.
#[derive(Clone, Copy, Debug)]
enum Proxy {
    /// `X-Forwarded-Method/Proto/Host/Uri`.
    Traefik,
    /// `X-Original-URL` and `X-Original-Method` (the ingress-nginx convention).
    Nginx,
    /// The original path appended to the check path; the original method and Host.
    Envoy,
}

impl Proxy {
    /// A check about `method path` on the gateway's own host, from browser `b` (its
    /// cookies ride along as the front proxy passes the original request's headers).
    async fn check(
        self,
        h: &Harness,
        b: &Browser,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let host = h.host();
        let mut req = match self {
            Proxy::Envoy => b.client.request(
                method.parse().unwrap(),
                h.url(&format!("/oauth2/auth{path}")),
            ),
            _ => b.client.get(h.url("/oauth2/auth")),
        };
        req = match self {
            Proxy::Traefik => req
                .header("x-forwarded-method", method)
                .header("x-forwarded-proto", "http")
                .header("x-forwarded-host", host.as_str())
                .header("x-forwarded-uri", path),
            Proxy::Nginx => req
                .header("x-original-url", format!("http://{host}{path}"))
                .header("x-original-method", method),
            Proxy::Envoy => req.header("x-forwarded-proto", "http"),
        };
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }
}

const BROWSER: (&str, &str) = ("accept", "text/html,application/xhtml+xml");
const XHR: (&str, &str) = ("x-requested-with", "XMLHttpRequest");

/// Logs `user` in through `/oauth2/start?rd=…` (as nginx's `error_page 401` does);
/// returns where the callback sent the browser.
async fn login_through_start(h: &Harness, b: &Browser, rd: &str, user: &str) -> String {
    let start = b
        .get(&h.url(&format!("/oauth2/start?rd={}", enc(rd))))
        .await;
    assert_eq!(
        start.status(),
        StatusCode::FOUND,
        "login_path starts a login"
    );
    let authorize = location(&start);
    assert!(authorize.starts_with(&format!("{}/authorize?", h.op.issuer())));
    let callback = h.authorize(b, &authorize, user).await;
    let done = b.get(&callback).await;
    assert_eq!(done.status(), StatusCode::FOUND);
    location(&done)
}

#[tokio::test]
async fn a_session_is_answered_200_with_its_identity_headers_by_every_proxy_style() {
    let h = start().await;
    let b = Browser::new();
    assert_eq!(
        login_through_start(&h, &b, "/app/x?y=1", "alice").await,
        "/app/x?y=1"
    );
    for proxy in [Proxy::Traefik, Proxy::Nginx, Proxy::Envoy] {
        let r = proxy
            .check(&h, &b, "GET", "/app/x", &[("oidc_claim_sub", "forged")])
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{proxy:?}");
        assert_no_store(&r);
        let subs: Vec<_> = r.headers().get_all("oidc_claim_sub").iter().collect();
        assert_eq!(
            subs,
            ["alice"],
            "{proxy:?}: the gateway's, never the client's"
        );
        assert!(r.headers().contains_key("oidc_access_token"), "{proxy:?}");
        assert!(r.headers().get("x-request-id").is_some());
        assert_eq!(r.text().await.unwrap(), "", "{proxy:?}: no body");
    }
}

#[tokio::test]
async fn no_session_is_a_302_for_proxies_that_pass_answers_and_a_401_for_nginx() {
    let h = start().await;
    for proxy in [Proxy::Traefik, Proxy::Envoy] {
        let b = Browser::new();
        let r = proxy
            .check(&h, &b, "GET", "/app/page?q=1", &[BROWSER])
            .await;
        assert_eq!(r.status(), StatusCode::FOUND, "{proxy:?}");
        let authorize = location(&r);
        assert!(authorize.starts_with(&format!("{}/authorize?", h.op.issuer())));
        // The redirect URI is on the original host, which the front proxy routes to us.
        let redirect_uri = url::Url::parse(&authorize)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .unwrap()
            .1
            .into_owned();
        assert_eq!(redirect_uri, h.url("/oauth2/callback"));
        assert!(set_cookies(&r).iter().any(|c| c.starts_with("oidc_state_")));
        // And the login comes back to the original request.
        let callback = h.authorize(&b, &authorize, "alice").await;
        let done = b.get(&callback).await;
        assert_eq!(location(&done), "/app/page?q=1", "{proxy:?}");
        let b2 = Browser::new();
        let r = proxy.check(&h, &b2, "GET", "/app", &[XHR]).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{proxy:?}: XHR");
    }
    let r = Proxy::Nginx
        .check(&h, &Browser::new(), "GET", "/app", &[BROWSER])
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "auth_request understands 2xx, 401 and 403 only"
    );
}

#[tokio::test]
async fn claim_rules_anonymous_routes_and_methods_are_those_of_proxy_mode() {
    let h = start().await;
    let b = Browser::new();
    login_through_start(&h, &b, "/", "alice").await;
    let r = Proxy::Traefik.check(&h, &b, "GET", "/admins/x", &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "claim rule");
    let anon = Browser::new();
    let r = Proxy::Traefik
        .check(
            &h,
            &anon,
            "GET",
            "/public/x",
            &[("oidc_claim_sub", "forged")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().keys().all(|k| !k.as_str().starts_with("oidc_")),
        "an anonymous route answers no identity"
    );
    // Routing sees the original path in its normal form.
    let r = Proxy::Traefik
        .check(&h, &anon, "GET", "/public/..%2fadmins", &[])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = Proxy::Traefik
        .check(&h, &anon, "GET", "/public;x/../admins", &[])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bearer_routes_answer_with_the_tokens_identity_or_401() {
    let h = start().await;
    let anon = Browser::new();
    let token = h.op.issue_access_token("bob", "openid", 300);
    let bearer = format!("Bearer {token}");
    let r = Proxy::Nginx
        .check(
            &h,
            &anon,
            "GET",
            "/api/items",
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["oidc_claim_sub"], "bob");
    let r = Proxy::Nginx
        .check(&h, &anon, "GET", "/api/items", &[])
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn forward_auth_only_routes_are_not_proxied_and_proxied_routes_still_are() {
    let h = start().await;
    let b = Browser::new();
    login_through_start(&h, &b, "/", "alice").await;
    let r = b.get(&h.url("/app")).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "upstream = \"\" is not proxied"
    );
    let echo = Echo::of(b.get(&h.url("/proxied/x")).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    // The gateway's own paths are let through by a front proxy that asks about them.
    for path in ["/oauth2/callback?x=1", "/oauth2/start?rd=/"] {
        let r = Proxy::Traefik
            .check(&h, &Browser::new(), "GET", path, &[])
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn checks_are_believed_from_trusted_proxies_only_and_must_name_their_request() {
    let h = Harness::with(Options {
        server: r#"
forward_auth_path = "/oauth2/auth"
trusted_proxies = ["10.9.9.9/32"]
"#
        .into(),
        routes: Some(ROUTES.into()),
        ..Options::default()
    })
    .await;
    let r = Proxy::Traefik
        .check(&h, &Browser::new(), "GET", "/public", &[])
        .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "from 127.0.0.1, not trusted"
    );

    let h = start().await;
    let r = Browser::new().get(&h.url("/oauth2/auth")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no original request");
    assert!(r.text().await.unwrap().contains("X-Forwarded-Uri"));
}

#[tokio::test]
async fn the_login_path_validates_its_return_address() {
    let h = start().await;
    let b = Browser::new();
    for bad in [
        "https://evil.example/",
        "//evil.example/x",
        "javascript:alert(1)",
    ] {
        let r = b
            .get(&h.url(&format!("/oauth2/start?rd={}", enc(bad))))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    // An absolute address on this origin comes back as its path.
    let rd = h.url("/deep/page?a=b");
    assert_eq!(
        login_through_start(&h, &b, &rd, "alice").await,
        "/deep/page?a=b"
    );
    // No rd: back to /.
    let r = b.get(&h.url("/oauth2/start")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = b
        .client
        .post(h.url("/oauth2/start?rd=/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn forward_auth_mistakes_are_reported_with_their_key() {
    let check = |server: &str, routes: &str| {
        load_config(&Options {
            server: server.into(),
            routes: Some(routes.into()),
            ..Options::default()
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let route = "[[route]]\npath = \"/\"\nupstream = \"\"\n";
    let err = check("", route);
    assert!(
        err.contains("route[0].upstream: is empty") && err.contains("forward_auth_path"),
        "{err}"
    );
    let err = check("forward_auth_path = \"/oauth2/auth\"", route);
    assert!(
        err.contains("server.forward_auth_path: needs server.trusted_proxies"),
        "{err}"
    );
    let err = check(
        "forward_auth_path = \"/oauth2/callback\"\nlogin_path = \"oauth2/start\"\ntrusted_proxies = [\"127.0.0.1\"]",
        route,
    );
    assert!(
        err.contains("server.forward_auth_path: is the redirect URI's path"),
        "{err}"
    );
    assert!(
        err.contains("server.login_path: \"oauth2/start\" must be a path"),
        "{err}"
    );
    let err = check(
        "forward_auth_path = \"/a/../b\"\nlogin_path = \"/x/\"\ntrusted_proxies = [\"127.0.0.1\"]",
        route,
    );
    assert!(
        err.contains("server.forward_auth_path: \"/a/../b\" must be in normal form"),
        "{err}"
    );
    assert!(
        err.contains("server.login_path: \"/x/\" must not end with /"),
        "{err}"
    );
}

/// nginx's `error_page 401 = @login` hands the browser's request to `login_path` with
/// `X-Original-URL` (plain nginx cannot escape a URL into a query parameter).
#[tokio::test]
async fn the_login_path_returns_to_a_trusted_proxys_original_url() {
    let h = start().await;
    let b = Browser::new();
    let original = h.url("/app/q?a=1&b=2");
    let r = b
        .get_with(
            &h.url("/oauth2/start"),
            &[("x-original-url", &original), BROWSER],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let callback = h.authorize(&b, &location(&r), "alice").await;
    assert_eq!(location(&b.get(&callback).await), "/app/q?a=1&b=2");
    let r = Browser::new()
        .get_with(
            &h.url("/oauth2/start"),
            &[("x-original-url", &original), XHR],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "an XHR is not sent to log in"
    );
    let evil = Browser::new()
        .get_with(
            &h.url("/oauth2/start"),
            &[("x-original-url", "https://evil.example/"), BROWSER],
        )
        .await;
    assert_eq!(evil.status(), StatusCode::BAD_REQUEST);
}

/// nginx configurations write `?rd=$scheme://$host$request_uri` unescaped, and
/// oauth2-proxy's documented nginx check sends `X-Forwarded-Uri` without a method.
#[tokio::test]
async fn nginx_habits_an_unescaped_rd_and_a_check_without_its_method() {
    let h = start().await;
    let b = Browser::new();
    let start = b
        .get(&h.url(&format!("/oauth2/start?rd={}/app/q?a=1&b=2", h.base)))
        .await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let callback = h.authorize(&b, &location(&start), "alice").await;
    assert_eq!(location(&b.get(&callback).await), "/app/q?a=1&b=2");

    let r = Browser::new()
        .get_with(
            &h.url("/oauth2/auth"),
            &[("x-forwarded-uri", "/app"), ("host", &h.host()), BROWSER],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "no X-Forwarded-Method: nginx, which cannot pass a 302 on"
    );
}
