//! Choosing a route (docs/behaviour.md §11.1): host-based routes (`route.host`), and
//! methods that skip authentication (`route.allow_anonymous_methods`).

use crate::common::*;
use reqwest::{Method, StatusCode};

/// Routes per virtual host; each upstream base path names the route that took the request.
const HOSTED: &str = r#"
[[route]]
path = "/"
upstream = "{upstream}/any"
auth = "none"

[[route]]
path = "/api"
upstream = "{upstream}/any-api"
auth = "none"

[[route]]
path = "/"
host = "app.example.com"
upstream = "{upstream}/app"
auth = "none"

[[route]]
path = "/"
host = ["*.example.com", "legacy.test"]
upstream = "{upstream}/wild"
auth = "none"

[[route]]
path = "/admin"
host = "*.example.com"
upstream = "{upstream}/wild-admin"
auth = "openid-connect"
unauth_action = "401"
"#;

async fn upstream_path(b: &Browser, url: &str, host: &str) -> String {
    let r = b.get_with(url, &[("host", host)]).await;
    assert_eq!(r.status(), StatusCode::OK, "{host} {url}");
    Echo::of(r).await.0["path"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_request_host_chooses_among_routes_then_the_longest_path() {
    let h = Harness::with(Options {
        routes: Some(HOSTED.into()),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let at = |p: &str| h.url(p);
    // An exact host beats the wildcard and the host-less routes, even a longer path.
    assert_eq!(
        upstream_path(&b, &at("/api/x"), "app.example.com").await,
        "/app/api/x"
    );
    assert_eq!(
        upstream_path(&b, &at("/x"), "APP.example.COM:8080").await,
        "/app/x",
        "case and port do not matter"
    );
    // Under the wildcard, the longest path; a second pattern of the same route.
    assert_eq!(
        upstream_path(&b, &at("/y"), "shop.example.com").await,
        "/wild/y"
    );
    assert_eq!(upstream_path(&b, &at("/y"), "legacy.test").await, "/wild/y");
    let admin = b
        .get_with(&at("/admin/x"), &[("host", "shop.example.com")])
        .await;
    assert_eq!(
        admin.status(),
        StatusCode::UNAUTHORIZED,
        "the wildcard host's protected route"
    );
    // The apex is not `*.example.com`; other hosts take the host-less routes.
    assert_eq!(
        upstream_path(&b, &at("/api/z"), "example.com").await,
        "/any-api/api/z"
    );
    assert_eq!(
        upstream_path(&b, &at("/admin/x"), &h.host()).await,
        "/any/admin/x",
        "the protected /admin exists only on *.example.com"
    );
    assert_eq!(
        upstream_path(&b, &at("/q"), "evilexample.com").await,
        "/any/q"
    );
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_host_chooses_the_route_and_an_untrusted_one_does_not() {
    let h = Harness::with(Options {
        routes: Some(HOSTED.into()),
        server: r#"trusted_proxies = ["127.0.0.1/32"]"#.into(),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let r = b
        .get_with(&h.url("/p"), &[("x-forwarded-host", "app.example.com")])
        .await;
    assert_eq!(Echo::of(r).await.0["path"], "/app/p");

    let untrusted = Harness::with(Options {
        routes: Some(HOSTED.into()),
        ..Options::default()
    })
    .await;
    let r = b
        .get_with(
            &untrusted.url("/p"),
            &[("x-forwarded-host", "app.example.com")],
        )
        .await;
    assert_eq!(Echo::of(r).await.0["path"], "/any/p");
}

#[test]
fn host_mistakes_are_reported_with_their_key() {
    for (host, reason) in [
        (r#""app.example.com:443""#, "has no port"),
        (r#""*.""#, "is not a host name"),
        (r#""a.*.example.com""#, "is not a host name"),
        (r#""app example.com""#, "is not a host name"),
        (r#"["a.test", "A.test"]"#, "is listed twice"),
    ] {
        let err = load_config(&Options {
            routes: Some(format!(
                "[[route]]\npath = \"/\"\nupstream = \"{{upstream}}\"\nhost = {host}\n"
            )),
            ..Options::default()
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("route[0].host") && text.contains(reason),
            "{host}: {text}"
        );
    }
    // The same path on overlapping hosts is ambiguous; on different hosts it is not.
    let err = load_config(&Options {
        routes: Some(
            r#"
[[route]]
path = "/"
upstream = "{upstream}"
host = ["a.test", "b.test"]
[[route]]
path = "/"
upstream = "{upstream}"
host = "c.test"
[[route]]
path = "/"
upstream = "{upstream}"
host = "b.test"
"#
            .into(),
        ),
        ..Options::default()
    })
    .unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].key, "route[2].path");
    assert!(err.problems[0].reason.contains("for host b.test"), "{err}");
}

const PREFLIGHT: &str = r#"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "openid-connect"
allow_anonymous_methods = ["OPTIONS"]

[[route]]
path = "/api"
upstream = "{upstream}"
auth = "oauth20"
allow_anonymous_methods = ["options", "HEAD"]
"#;

#[tokio::test]
async fn allowed_methods_pass_without_authentication_and_without_identity() {
    let h = Harness::with(Options {
        routes: Some(PREFLIGHT.into()),
        ..Options::default()
    })
    .await;
    let client = raw_client();
    let preflight = |path: &str| {
        client
            .request(Method::OPTIONS, h.url(path))
            .header("origin", "https://spa.example.com")
            .header("access-control-request-method", "POST")
            .header("OIDC_CLAIM_sub", "forged")
            .header("OIDC_access_token", "forged")
            .send()
    };
    for path in ["/page", "/api/items"] {
        let r = preflight(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}: the preflight passes");
        let echo = Echo::of(r).await;
        assert_eq!(echo.0["method"], "OPTIONS");
        assert!(
            echo.names()
                .iter()
                .all(|n| !n.to_ascii_lowercase().starts_with("oidc_")),
            "{path}: client identity headers are scrubbed, none are added: {:?}",
            echo.names()
        );
    }
    // Other methods still need a login or a token.
    let r = client
        .get(h.url("/page"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = client.get(h.url("/api/items")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client.head(h.url("/api/items")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "HEAD is listed on /api");
    let r = client.head(h.url("/page")).send().await.unwrap();
    assert_ne!(r.status(), StatusCode::OK, "but not on /");

    // A logged-in browser's preflight is anonymous too: no identity is sent for it.
    let b = Browser::new();
    h.login(&b, "/page", "alice").await;
    let r = b
        .client
        .request(Method::OPTIONS, h.url("/page"))
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    assert!(echo.header("oidc_claim_sub").is_none());
    assert!(
        echo.header("cookie")
            .is_none_or(|c| !c.contains("oidc_session")),
        "the session cookie is not forwarded"
    );
}

#[test]
fn method_mistakes_are_reported_with_their_key() {
    let err = load_config(&Options {
        routes: Some(
            r#"
[[route]]
path = "/"
upstream = "{upstream}"
allow_anonymous_methods = ["OPTIONS", "GET POST", "", "options"]
"#
            .into(),
        ),
        ..Options::default()
    })
    .unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "route[0].allow_anonymous_methods[1]",
            "route[0].allow_anonymous_methods[2]",
            "route[0].allow_anonymous_methods[3]"
        ],
        "{err}"
    );
}
