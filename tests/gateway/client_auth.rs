//! Client authentication by JWT assertion (RFC 7523; docs/behaviour.md §2.4):
//! `private_key_jwt` and `client_secret_jwt` on every call that authenticates the client
//! (code and refresh grants, introspection, revocation), against the development OP,
//! which then accepts no other method.

use crate::common::*;
use oidc_gateway::config::ClientKey;
use reqwest::StatusCode;

/// A PEM block of `der` under `tag`.
fn pem_block(tag: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {tag}-----\n{}\n-----END {tag}-----\n",
        lines.join("\n")
    )
}

fn rsa_pem() -> String {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    pem_block("PRIVATE KEY", der.as_ref())
}

fn ec_sec1_pem() -> String {
    use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let der = AsDer::<EcPrivateKeyRfc5915Der>::as_der(&pair.private_key()).unwrap();
    pem_block("EC PRIVATE KEY", der.as_ref())
}

/// Writes `pem` to a fresh file; returns its path.
fn key_file(pem: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("oidc-gw-client-key-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("client.pem");
    std::fs::write(&path, pem).unwrap();
    path.to_string_lossy().into_owned()
}

/// The public JWK the provider is given for `pem` (as the gateway derives it).
fn public_jwk(pem: &str, kid: Option<&str>) -> serde_json::Value {
    let key = ClientKey::from_pem(pem.as_bytes(), None, kid).unwrap();
    serde_json::to_value(key.public_jwk()).unwrap()
}

async fn private_key_gateway(pem: &str, extra: &str) -> Harness {
    let path = key_file(pem);
    Harness::with(Options {
        provider: format!(
            "token_endpoint_auth = \"private_key_jwt\"\nprivate_key_file = {path:?}\n{extra}"
        ),
        ..Options::default()
    })
    .await
}

/// Logs in, refreshes through the hook, has a bearer token introspected and logs out
/// (revocation): every call the provider authenticates the client on.
async fn every_authenticated_call(h: &Harness) {
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/app", "alice").await).await;
    let at = echo.header("oidc_access_token").expect("access token");
    let refreshed = b
        .get(&h.hook_url(&format!("refresh=%2Fapp&access_token={}", enc(&at))))
        .await;
    assert_eq!(refreshed.status(), StatusCode::FOUND);
    assert_eq!(location(&refreshed), "/app", "refreshed without error_code");
    let token = h.op.issue_access_token("bob", "openid", 300);
    assert_eq!(
        bearer_status(&h.base, "/api/x", &token).await,
        StatusCode::OK
    );
    let out = b.get(&h.hook_url("logout=%2Fpublic%2Fbye")).await;
    assert_eq!(out.status(), StatusCode::FOUND);
    assert!(
        h.op.counters().revocations >= 1,
        "the refresh token was revoked"
    );
}

#[tokio::test]
async fn private_key_jwt_authenticates_every_call_to_the_provider() {
    let pem = rsa_pem();
    let h = private_key_gateway(&pem, "").await;
    h.op.set_client_public_key(public_jwk(&pem, None));
    h.op.require_client_auth(Some("private_key_jwt"));
    every_authenticated_call(&h).await;
    let methods = h.op.client_auth_methods();
    // code grant, refresh grant, introspection, revocation
    assert!(methods.len() >= 4, "{methods:?}");
    assert!(
        methods.iter().all(|m| m == "private_key_jwt"),
        "{methods:?}"
    );
}

#[tokio::test]
async fn an_ec_key_in_sec1_form_signs_es256_under_the_configured_kid() {
    let pem = ec_sec1_pem();
    let h = private_key_gateway(&pem, "private_key_kid = \"gw-2026\"").await;
    let jwk = public_jwk(&pem, Some("gw-2026"));
    assert_eq!(jwk["kid"], "gw-2026");
    assert_eq!(jwk["alg"], "ES256");
    h.op.set_client_public_key(jwk);
    h.op.require_client_auth(Some("private_key_jwt"));
    let b = Browser::new();
    let r = h.login(&b, "/app", "alice").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h.op.client_auth_methods(), ["private_key_jwt"]);
}

#[tokio::test]
async fn the_provider_refusing_the_assertion_fails_the_login_with_a_page() {
    let pem = rsa_pem();
    let h = private_key_gateway(&pem, "").await;
    // The provider knows another key: the gateway's assertions do not verify.
    h.op.set_client_public_key(public_jwk(&rsa_pem(), None));
    h.op.require_client_auth(Some("private_key_jwt"));
    let b = Browser::new();
    let callback = h.callback_for(&b, "/app", "alice").await;
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(!sets_session_cookie(&r), "no session");
    let page = r.text().await.unwrap();
    assert!(page.contains("invalid_client"), "{page}");
    assert!(h.op.client_auth_methods().is_empty());
}

#[tokio::test]
async fn client_secret_jwt_authenticates_every_call_to_the_provider() {
    let h = Harness::with(Options {
        provider: "token_endpoint_auth = \"client_secret_jwt\"".into(),
        ..Options::default()
    })
    .await;
    h.op.require_client_auth(Some("client_secret_jwt"));
    every_authenticated_call(&h).await;
    let methods = h.op.client_auth_methods();
    assert!(methods.len() >= 4, "{methods:?}");
    assert!(
        methods.iter().all(|m| m == "client_secret_jwt"),
        "{methods:?}"
    );
}

#[tokio::test]
async fn the_secret_methods_are_unchanged() {
    let h = Harness::start().await;
    h.op.require_client_auth(Some("client_secret_basic"));
    let b = Browser::new();
    assert_eq!(h.login(&b, "/app", "alice").await.status(), StatusCode::OK);
    assert_eq!(h.op.client_auth_methods(), ["client_secret_basic"]);
}

#[test]
fn assertion_keys_are_checked_with_their_keys() {
    let errors = |provider: &str| {
        load_config(&Options {
            provider: provider.into(),
            ..Options::default()
        })
        .expect_err("a config error")
        .to_string()
    };
    let e = errors("token_endpoint_auth = \"private_key_jwt\"");
    assert!(
        e.contains(
            "provider.private_key_file: is required with token_endpoint_auth = \"private_key_jwt\""
        ),
        "{e}"
    );
    let e = errors(
        "token_endpoint_auth = \"private_key_jwt\"\nprivate_key_file = \"/nonexistent/key.pem\"",
    );
    assert!(
        e.contains("provider.private_key_file: cannot read /nonexistent/key.pem"),
        "{e}"
    );
    let not_a_key = key_file("hello\n");
    let e = errors(&format!(
        "token_endpoint_auth = \"private_key_jwt\"\nprivate_key_file = {not_a_key:?}"
    ));
    assert!(
        e.contains("provider.private_key_file:") && e.contains("no PEM private key"),
        "{e}"
    );
    let ec = key_file(&ec_sec1_pem());
    let e = errors(&format!(
        "token_endpoint_auth = \"private_key_jwt\"\nprivate_key_file = {ec:?}\nsigning_alg = \"RS256\""
    ));
    assert!(
        e.contains("provider.signing_alg:") && e.contains("cannot sign \"RS256\""),
        "{e}"
    );
    let e = errors(&format!("private_key_file = {ec:?}"));
    assert!(
        e.contains("provider.private_key_file: is only used with token_endpoint_auth"),
        "{e}"
    );
}

#[tokio::test]
async fn the_admin_listener_publishes_the_public_keys_once_per_kid() {
    let rsa = key_file(&rsa_pem());
    let ec = key_file(&ec_sec1_pem());
    let providers = format!(
        r#"
[[provider]]
name = "a"
issuer = "{{issuer}}"
client_id = "gateway"
token_endpoint_auth = "private_key_jwt"
private_key_file = {rsa:?}

[[provider]]
name = "b"
issuer = "https://b.example.com"
client_id = "gateway"
token_endpoint_auth = "private_key_jwt"
private_key_file = {ec:?}
private_key_kid = "ec-1"

[[provider]]
name = "c"
issuer = "https://c.example.com"
client_id = "gateway"
token_endpoint_auth = "private_key_jwt"
private_key_file = {rsa:?}

[[provider]]
name = "d"
issuer = "https://d.example.com"
client_id = "gateway"
client_secret = "s"
"#
    );
    let h = Harness::with(Options {
        providers: Some(providers),
        server: "\n[admin]\nlisten = \"127.0.0.1:0\"\n".into(),
        ..Options::default()
    })
    .await;
    let addr = h.gw.admin_addrs[0];
    let r = reqwest::get(format!("http://{addr}/jwks.json"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let jwks: serde_json::Value = r.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "the RSA key once, the EC key: {jwks}");
    let rsa_jwk = public_jwk(&std::fs::read_to_string(&rsa).unwrap(), None);
    assert!(keys.contains(&rsa_jwk), "{jwks}");
    assert!(keys
        .iter()
        .any(|k| k["kid"] == "ec-1" && k["crv"] == "P-256"));
    for k in keys {
        assert!(k.get("d").is_none(), "no private part: {k}");
    }
}
