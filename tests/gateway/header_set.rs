//! Configured headers (`[[headers.set]]`, `route.headers`; docs/behaviour.md §11.5) through
//! a real login and real bearer tokens: claim and template values as the upstream gets
//! them, a route's own list replacing the global one, client-sent copies scrubbed on every
//! route, and Keycloak-style nested claims in `require_claims`.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Map, Value};

const HEADERS: &str = r#"
[[headers.set]]
name = "X-Email"
claim = "email"

[[headers.set]]
name = "X-Roles"
claim = "realm_access.roles"
join = ","

[[headers.set]]
name = "Authorization"
value = "Bearer {access_token}"

[[headers.set]]
name = "X-Dept"
claim = "department"
"#;

const ROUTES: &str = r#"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "openid-connect"

[[route]]
path = "/own"
upstream = "{upstream}"
auth = "openid-connect"
headers = [
  { name = "X-User", value = "{sub} <{claim:email}> {{{claim:https://example.com/team}}}" },
]

[[route]]
path = "/public"
upstream = "{upstream}"
auth = "none"

[[route]]
path = "/admins"
upstream = "{upstream}"
auth = "openid-connect"
require_claims = ["realm_access.roles:admin"]

[[route]]
path = "/api"
upstream = "{upstream}"
auth = "oauth20"

[[route]]
path = "/api/own"
upstream = "{upstream}"
auth = "oauth20"
headers = [{ name = "X-Sub", value = "{sub}" }]

[[route]]
path = "/api/admins"
upstream = "{upstream}"
auth = "oauth20"
require_claims = ["realm_access.roles:admin"]
"#;

/// Keycloak-style claims: realm roles nested in an object, and a claim named by a URL.
fn keycloak_claims(roles: &[&str]) -> Map<String, Value> {
    match json!({
        "realm_access": {"roles": roles},
        "https://example.com/team": "blue",
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

async fn start() -> Harness {
    let h = Harness::with(Options {
        headers: HEADERS.into(),
        routes: Some(ROUTES.into()),
        ..Options::default()
    })
    .await;
    h.op.set_user_claims("alice", keycloak_claims(&["admin", "user"]));
    h.op.set_user_claims("bob", keycloak_claims(&["user"]));
    h
}

/// The client-sent copies a test tries to slip past the gateway.
const FORGED: [(&str, &str); 6] = [
    ("X-Email", "forged@evil.example"),
    ("x_email", "forged@evil.example"),
    ("X-Roles", "admin"),
    ("X-Dept", "forged"),
    ("X-User", "forged"),
    ("X-Sub", "forged"),
];

fn only(echo: &Echo, name: &str) -> String {
    let values = echo.headers(name);
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    values.into_iter().next().unwrap()
}

fn absent(echo: &Echo, names: &[&str]) {
    for name in names {
        assert!(
            echo.header(name).is_none(),
            "{name}: {:?}",
            echo.headers(name)
        );
    }
}

#[tokio::test]
async fn claims_and_templates_reach_the_upstream_and_forged_copies_do_not() {
    let h = start().await;
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/", "alice").await).await;
    let token = h.info(&b).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(only(&echo, "x-email"), "alice@example.com");
    assert_eq!(only(&echo, "x-roles"), "admin,user");
    assert_eq!(only(&echo, "authorization"), format!("Bearer {token}"));
    absent(&echo, &["x-dept", "x-user"]);

    // Every forged copy goes, also the `_` spelling; a client's Authorization is replaced.
    let mut forged = FORGED.to_vec();
    forged.push(("Authorization", "Basic Zm9yZ2Vk"));
    let echo = Echo::of(b.get_with(&h.url("/"), &forged).await).await;
    assert_eq!(only(&echo, "x-email"), "alice@example.com");
    assert_eq!(only(&echo, "x-roles"), "admin,user");
    assert_eq!(only(&echo, "authorization"), format!("Bearer {token}"));
    absent(&echo, &["x_email", "x-dept", "x-user", "x-sub"]);
    // The [headers] ones are still there beside them.
    assert_eq!(only(&echo, "oidc_claim_email"), "alice@example.com");
}

#[tokio::test]
async fn a_route_list_replaces_the_global_one_and_no_route_passes_forged_copies() {
    let h = start().await;
    let b = Browser::new();
    h.login(&b, "/", "alice").await;

    let echo = Echo::of(b.get_with(&h.url("/own/page"), &FORGED).await).await;
    assert_eq!(
        only(&echo, "x-user"),
        "alice <alice@example.com> {blue}",
        "a template with a claim named by a URL"
    );
    absent(
        &echo,
        &[
            "x-email",
            "x_email",
            "x-roles",
            "x-dept",
            "x-sub",
            "authorization",
        ],
    );
    assert_eq!(only(&echo, "oidc_claim_sub"), "alice");

    // An open route and an anonymous request get none of them.
    let anonymous = Browser::new();
    let echo = Echo::of(anonymous.get_with(&h.url("/public"), &FORGED).await).await;
    absent(
        &echo,
        &["x-email", "x_email", "x-roles", "x-dept", "x-user", "x-sub"],
    );
}

#[tokio::test]
async fn nested_role_claims_in_require_claims() {
    let h = start().await;
    let alice = Browser::new();
    h.login(&alice, "/", "alice").await;
    let r = alice.get(&h.url("/admins/x")).await;
    assert_eq!(r.status(), StatusCode::OK);

    let bob = Browser::new();
    let echo = Echo::of(h.login(&bob, "/", "bob").await).await;
    assert_eq!(only(&echo, "x-roles"), "user");
    let r = bob.get(&h.url("/admins/x")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The same rule on bearer routes, against the introspected claims.
    let admin = h.op.issue_access_token("alice", "openid", 300);
    let user = h.op.issue_access_token("bob", "openid", 300);
    assert_eq!(
        bearer_status(&h.base, "/api/admins", &admin).await,
        StatusCode::OK
    );
    assert_eq!(
        bearer_status(&h.base, "/api/admins", &user).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn bearer_routes_send_the_token_claims() {
    let h = start().await;
    let token = h.op.issue_access_token("alice", "openid", 300);
    let get = |path: &str| {
        let mut req = raw_client().get(h.url(path)).bearer_auth(&token);
        for (k, v) in FORGED {
            req = req.header(k, v);
        }
        req.send()
    };
    let echo = Echo::of(get("/api/x").await.unwrap()).await;
    assert_eq!(only(&echo, "x-roles"), "admin,user");
    assert_eq!(only(&echo, "authorization"), format!("Bearer {token}"));
    // devop's introspection answer has no email: no header, and still no forged copy.
    absent(&echo, &["x-email", "x_email", "x-dept", "x-user", "x-sub"]);

    // A route whose own list does not set Authorization keeps the client's: it carries
    // the token the gateway checked.
    let echo = Echo::of(get("/api/own/x").await.unwrap()).await;
    assert_eq!(only(&echo, "x-sub"), "alice");
    assert_eq!(only(&echo, "authorization"), format!("Bearer {token}"));
    absent(
        &echo,
        &["x-email", "x_email", "x-roles", "x-dept", "x-user"],
    );
}

#[tokio::test]
async fn a_reload_rebuilds_headers_cached_for_sessions_and_tokens() {
    let options = |headers: &str| Options {
        headers: headers.into(),
        routes: Some(ROUTES.into()),
        // The memory store keeps the loaded sessions (and their cached headers) across
        // a reload; the token cache keeps validations.
        session: "store = \"memory\"".into(),
        ..Options::default()
    };
    let h = Harness::with(options(HEADERS)).await;
    h.op.set_user_claims("alice", keycloak_claims(&["admin"]));
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/", "alice").await).await;
    assert_eq!(only(&echo, "x-email"), "alice@example.com");
    let token = h.op.issue_access_token("alice", "openid", 300);
    let api = || raw_client().get(h.url("/api/x")).bearer_auth(&token).send();
    assert_eq!(
        only(&Echo::of(api().await.unwrap()).await, "x-roles"),
        "admin"
    );

    let renamed = "[[headers.set]]\nname = \"X-Mail\"\nclaim = \"email\"\n\
                   [[headers.set]]\nname = \"X-Role-List\"\nclaim = \"realm_access.roles\"\n";
    let path = std::env::temp_dir().join(format!(
        "oidc-gateway-header-set-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        toml(&h.op.issuer(), &h.echo.url(), &options(renamed)),
    )
    .unwrap();
    h.gw.reloader(&path).reload().await.expect("valid");
    let _ = std::fs::remove_file(&path);

    let echo = Echo::of(b.get(&h.url("/")).await).await;
    assert_eq!(only(&echo, "x-mail"), "alice@example.com");
    absent(&echo, &["x-email", "x-roles", "authorization"]);
    let echo = Echo::of(api().await.unwrap()).await;
    assert_eq!(only(&echo, "x-role-list"), "admin");
    absent(&echo, &["x-roles"]);
}
