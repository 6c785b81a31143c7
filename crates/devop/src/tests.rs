//! Tests of the development provider, driven through its HTTP interface like a relying party.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, LOCATION, WWW_AUTHENTICATE};
use reqwest::{redirect, Client, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicI64, Ordering};

use super::*;

const CALLBACK: &str = "http://127.0.0.1:9/oauth2/callback";
const BYE: &str = "http://127.0.0.1:9/bye";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

async fn start() -> DevOp {
    start_with(system_now()).await
}

async fn start_with(now: Now) -> DevOp {
    let opts = DevOpOptions {
        redirect_uris: vec![CALLBACK.into()],
        post_logout_redirect_uris: vec![BYE.into()],
        now,
        ..DevOpOptions::default()
    };
    DevOp::start(opts).await.expect("dev OP starts")
}

/// The real time plus an offset the test moves forward (clones share it).
#[derive(Clone, Default)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn now(&self) -> Now {
        let offset = Arc::clone(&self.0);
        let real = system_now();
        Arc::new(move || real() + offset.load(Ordering::Relaxed))
    }

    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

/// A provider started like [`start`], on a clock the test moves.
async fn start_on_test_clock() -> (DevOp, TestClock) {
    let clock = TestClock::default();
    (start_with(clock.now()).await, clock)
}

fn client() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client")
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A standard authorization request with S256 PKCE, as the gateway sends it.
fn auth_params() -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", "gateway".into()),
        ("redirect_uri", CALLBACK.into()),
        ("scope", "openid profile email".into()),
        ("state", "st-123".into()),
        ("nonce", "n-456".into()),
        ("code_challenge", challenge(VERIFIER)),
        ("code_challenge_method", "S256".into()),
    ]
}

fn authorize_url(op: &DevOp, params: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    format!("{}/authorize?{}", op.issuer(), query.finish())
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()[LOCATION].to_str().unwrap().to_owned()
}

fn query_of(url: &str) -> Map<String, Value> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
        .collect()
}

/// GETs the form, posts `username` back to the same URL, returns the redirect location.
async fn sign_in(op: &DevOp, params: &[(&str, String)], username: &str) -> String {
    let url = authorize_url(op, params);
    let page = client().get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let resp = client()
        .post(&url)
        .form(&[("username", username)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    location(&resp)
}

async fn code_for(op: &DevOp, username: &str) -> String {
    let target = sign_in(op, &auth_params(), username).await;
    query_of(&target)["code"].as_str().unwrap().to_owned()
}

async fn post_token(op: &DevOp, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = client()
        .post(format!("{}/token", op.issuer()))
        .basic_auth("gateway", Some("gateway-secret"))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

async fn redeem(op: &DevOp, code: &str) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    post_token(op, &form).await
}

async fn login_tokens(op: &DevOp, username: &str) -> Value {
    let code = code_for(op, username).await;
    let (status, body) = redeem(op, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn refresh(op: &DevOp, refresh_token: &str) -> (StatusCode, Value) {
    post_token(
        op,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn introspect(op: &DevOp, token: &str) -> Value {
    let resp = client()
        .post(format!("{}/introspect", op.issuer()))
        .basic_auth("gateway", Some("gateway-secret"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

async fn get_json(url: &str) -> Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Verifies an RS256 token against the OP's JWKS (signature only) and returns its claims.
async fn verify_with_jwks(op: &DevOp, token: &str) -> Result<Value, String> {
    let jwks = get_json(&format!("{}/jwks", op.issuer())).await;
    let header = jwt_part(token, 0);
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .ok_or("no key with that kid")?;
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn discovery_and_jwks_have_the_published_shape() {
    let op = start().await;
    let iss = op.issuer();
    assert!(iss.starts_with("http://127.0.0.1:") && !iss.ends_with('/'));
    let meta = get_json(&format!("{iss}/.well-known/openid-configuration")).await;
    assert_eq!(meta["issuer"], iss);
    for (key, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("introspection_endpoint", "/introspect"),
        ("revocation_endpoint", "/revoke"),
        ("end_session_endpoint", "/end_session"),
    ] {
        assert_eq!(meta[key], format!("{iss}{path}"), "{key}");
    }
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert_eq!(meta["subject_types_supported"], json!(["public"]));
    assert_eq!(
        meta["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(
        meta["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "client_secret_jwt"
        ])
    );
    assert_eq!(
        meta["pushed_authorization_request_endpoint"],
        format!("{iss}/par")
    );
    assert_eq!(meta["require_pushed_authorization_requests"], json!(false));
    assert_eq!(
        meta["response_modes_supported"],
        json!(["query", "form_post"])
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        json!(["S256", "plain"])
    );
    assert!(meta["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("openid")));
    assert!(meta["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("email")));

    let jwks = get_json(&format!("{iss}/jwks")).await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(
        (&key["kty"], &key["use"], &key["alg"]),
        (&json!("RSA"), &json!("sig"), &json!("RS256"))
    );
    assert_eq!(key["e"], "AQAB");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(key["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );
    assert!(!key["kid"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn code_flow_with_s256_pkce_issues_a_verifiable_id_token() {
    let op = start().await;
    let url = authorize_url(&op, &auth_params());
    let page = client().get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>Development OpenID Provider — sign in</title>"));
    assert!(html.contains("method=\"post\"") && html.contains("name=\"username\""));
    assert!(html.contains("development only"));

    let target = client()
        .post(&url)
        .form(&[("username", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(target.status(), StatusCode::FOUND);
    let target = location(&target);
    assert!(target.starts_with(&format!("{CALLBACK}?code=")));
    let q = query_of(&target);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], op.issuer());

    let (status, body) = redeem(&op, q["code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "openid profile email");
    assert!(body["refresh_token"].as_str().unwrap().len() >= 40);
    let access = body["access_token"].as_str().unwrap();
    let id_token = body["id_token"].as_str().unwrap();

    let jwks = get_json(&format!("{}/jwks", op.issuer())).await;
    let jwk = &jwks["keys"][0];
    assert_eq!(jwt_part(id_token, 0)["kid"], jwk["kid"]);
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["gateway"]);
    validation.set_issuer(&[op.issuer()]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["name"], "Alice");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert!(claims["auth_time"].is_i64() && claims["sid"].is_string());
    let digest = Sha256::digest(access.as_bytes());
    assert_eq!(claims["at_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]));

    let c = op.counters();
    assert_eq!((c.authorizations, c.code_grants), (1, 1));
}

#[tokio::test]
async fn token_response_is_not_cacheable() {
    let op = start().await;
    let code = code_for(&op, "alice").await;
    let resp = client()
        .post(format!("{}/token", op.issuer()))
        .basic_auth("gateway", Some("gateway-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn untrusted_client_or_redirect_uri_gets_a_page_never_a_redirect() {
    let op = start().await;
    let cases: [(&str, &str); 4] = [
        ("client_id", "stranger"),
        ("redirect_uri", "http://127.0.0.1:9/oauth2/callback/"),
        ("redirect_uri", "http://evil.example/cb"),
        ("redirect_uri", "HTTP://127.0.0.1:9/oauth2/callback"),
    ];
    for (name, value) in cases {
        let mut params = auth_params();
        params.retain(|(k, _)| *k != name);
        params.push((name, value.into()));
        let resp = client()
            .get(authorize_url(&op, &params))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}={value}");
        assert!(resp.headers().get(LOCATION).is_none());
    }
    let mut missing = auth_params();
    missing.retain(|(k, _)| *k != "redirect_uri");
    let resp = client()
        .get(authorize_url(&op, &missing))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // A rejected POST must not log anyone in either.
    let mut params = auth_params();
    params[1].1 = "stranger".into();
    let resp = client()
        .post(authorize_url(&op, &params))
        .form(&[("username", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(op.counters().authorizations, 0);
}

#[tokio::test]
async fn redirectable_authorization_errors_go_back_with_state_and_iss() {
    let op = start().await;
    let cases: [(&str, Option<&str>, &str); 7] = [
        ("response_type", Some("token"), "unsupported_response_type"),
        ("response_type", None, "invalid_request"),
        ("scope", Some("profile email"), "invalid_scope"),
        ("code_challenge_method", Some("S512"), "invalid_request"),
        ("code_challenge", Some("short"), "invalid_request"),
        ("code_challenge", None, "invalid_request"),
        ("prompt", Some("none"), "login_required"),
    ];
    for (name, value, error) in cases {
        let mut params = auth_params();
        params.retain(|(k, _)| *k != name);
        if let Some(value) = value {
            params.push((name, value.into()));
        }
        let resp = client()
            .get(authorize_url(&op, &params))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{name}={value:?}");
        let target = location(&resp);
        assert!(target.starts_with(&format!("{CALLBACK}?")), "{target}");
        let q = query_of(&target);
        assert_eq!(q["error"], error, "{name}={value:?}");
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], op.issuer());
        assert!(q.get("code").is_none());
    }
    let mut repeated = auth_params();
    repeated.push(("scope", "openid".into()));
    let resp = client()
        .get(authorize_url(&op, &repeated))
        .send()
        .await
        .unwrap();
    assert_eq!(query_of(&location(&resp))["error"], "invalid_request");
}

#[tokio::test]
async fn login_form_escapes_reflected_values_and_needs_a_name() {
    let op = start().await;
    let mut params = auth_params();
    params.push(("login_hint", "\"><script>alert(1)</script>".into()));
    params[4].1 = "<b>state</b>".into();
    let url = authorize_url(&op, &params);
    let html = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>") && !html.contains("<b>"));
    assert!(html.contains("&quot;&gt;&lt;script&gt;"));
    let resp = client()
        .post(&url)
        .form(&[("username", "  ")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("Enter a user name"));
    assert_eq!(op.counters().authorizations, 0);
}

#[tokio::test]
async fn pkce_failures_are_invalid_grant() {
    let op = start().await;
    let code = code_for(&op, "alice").await;
    let other = "x".repeat(43);
    for verifier in [Some(other.as_str()), None] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
        ];
        form.extend(verifier.map(|v| ("code_verifier", v)));
        let (status, body) = post_token(&op, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }

    // No challenge at authorize: a verifier at the token endpoint is refused.
    let mut params = auth_params();
    params.retain(|(k, _)| !k.starts_with("code_challenge"));
    let code = query_of(&sign_in(&op, &params, "bob").await)["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = redeem(&op, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
    ];
    assert_eq!(post_token(&op, &form).await.0, StatusCode::OK);
}

#[tokio::test]
async fn plain_pkce_is_supported() {
    let op = start().await;
    let mut params = auth_params();
    params.retain(|(k, _)| !k.starts_with("code_challenge"));
    params.push(("code_challenge", VERIFIER.into()));
    params.push(("code_challenge_method", "plain".into()));
    let code = query_of(&sign_in(&op, &params, "carol").await)["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(redeem(&op, &code).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let op = start().await;
    let code = code_for(&op, "alice").await;
    let (status, first) = redeem(&op, &code).await;
    assert_eq!(status, StatusCode::OK);
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(introspect(&op, access).await["active"], true);

    let (status, body) = redeem(&op, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(introspect(&op, access).await, json!({"active": false}));
    let (status, _) = refresh(&op, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn code_bound_to_redirect_uri_and_lifetime() {
    let (op, clock) = start_on_test_clock().await;
    op.add_redirect_uri("http://127.0.0.1:9/other");
    let code = code_for(&op, "alice").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:9/other"),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = post_token(&op, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    let code = code_for(&op, "alice").await;
    clock.advance(61);
    let (status, body) = redeem(&op, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, body) = redeem(&op, "no-such-code").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn client_authentication_is_strict() {
    let op = start().await;
    let url = format!("{}/token", op.issuer());
    let form = [("grant_type", "refresh_token"), ("refresh_token", "x")];

    let resp = client()
        .post(&url)
        .basic_auth("gateway", Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    let post = [
        ("client_id", "gateway"),
        ("client_secret", "wrong"),
        form[0],
        form[1],
    ];
    let resp = client().post(&url).form(&post).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get(WWW_AUTHENTICATE).is_none());
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    let resp = client().post(&url).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let both = [("client_secret", "gateway-secret"), form[0], form[1]];
    let resp = client()
        .post(&url)
        .basic_auth("gateway", Some("gateway-secret"))
        .form(&both)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    // Correct client_secret_post reaches the grant (which then fails on the token).
    let post = [
        ("client_id", "gateway"),
        ("client_secret", "gateway-secret"),
        form[0],
        form[1],
    ];
    let resp = client().post(&url).form(&post).send().await.unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    // Introspection and revocation demand the same.
    for path in ["introspect", "revoke"] {
        let resp = client()
            .post(format!("{}/{path}", op.issuer()))
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded() {
    let opts = DevOpOptions {
        client_id: "my app".into(),
        client_secret: "s3:cr+t/%".into(),
        ..DevOpOptions::default()
    };
    let op = DevOp::start(opts).await.unwrap();
    let url = format!("{}/introspect", op.issuer());
    let basic = base64::engine::general_purpose::STANDARD.encode("my+app:s3%3Acr%2Bt%2F%25");
    let resp = client()
        .post(&url)
        .header(AUTHORIZATION, format!("Basic {basic}"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let raw = base64::engine::general_purpose::STANDARD.encode("my app:s3:cr+t/%");
    let resp = client()
        .post(&url)
        .header(AUTHORIZATION, format!("Basic {raw}"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "'+' decodes to a space"
    );
}

#[tokio::test]
async fn token_endpoint_request_errors() {
    let op = start().await;
    let (status, body) = post_token(&op, &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (_, body) = post_token(&op, &[("grant_type", "authorization_code")]).await;
    assert_eq!(body["error"], "invalid_request");
    let (_, body) = post_token(&op, &[("code", "x")]).await;
    assert_eq!(body["error"], "invalid_request");
    let resp = client()
        .post(format!("{}/token", op.issuer()))
        .basic_auth("gateway", Some("gateway-secret"))
        .json(&json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let resp = client()
        .get(format!("{}/token", op.issuer()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_grant() {
    let op = start().await;
    let first = login_tokens(&op, "alice").await;
    let rt1 = first["refresh_token"].as_str().unwrap();
    let first_claims = jwt_part(first["id_token"].as_str().unwrap(), 1);

    let (status, second) = refresh(&op, rt1).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    assert_ne!(first["access_token"], second["access_token"]);
    let claims = verify_with_jwks(&op, second["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], first_claims["sid"]);
    assert_eq!(claims["auth_time"], first_claims["auth_time"]);
    assert!(claims.get("nonce").is_none());
    assert_eq!(second["scope"], "openid profile email");
    assert_eq!(introspect(&op, rt1).await, json!({"active": false}));
    let rt2_info = introspect(&op, rt2).await;
    assert_eq!(rt2_info["active"], true);
    assert!(
        rt2_info.get("token_type").is_none(),
        "as node oidc-provider"
    );

    let (status, body) = refresh(&op, rt1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // The replay revoked the grant: the rotated token and its access token are dead too.
    assert_eq!(
        introspect(&op, second["access_token"].as_str().unwrap()).await["active"],
        false
    );
    assert_eq!(refresh(&op, rt2).await.0, StatusCode::BAD_REQUEST);

    let c = op.counters();
    assert_eq!((c.refresh_grants, c.refresh_failures), (3, 2));
}

#[tokio::test]
async fn refresh_can_be_refused_and_scope_only_narrowed() {
    let op = start().await;
    let tokens = login_tokens(&op, "alice").await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    op.set_refuse_refresh(true);
    let (status, body) = refresh(&op, rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    op.set_refuse_refresh(false);

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("scope", "openid admin"),
    ];
    let (status, body) = post_token(&op, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("scope", "openid email"),
    ];
    let (status, body) = post_token(&op, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "openid email");
    let at = body["access_token"].as_str().unwrap();
    assert_eq!(introspect(&op, at).await["scope"], "openid email");
    // The new refresh token keeps the original grant's scope.
    assert_eq!(
        introspect(&op, body["refresh_token"].as_str().unwrap()).await["scope"],
        "openid profile email"
    );
    assert_eq!(op.counters().refresh_failures, 2);
}

#[tokio::test]
async fn introspection_reports_active_inactive_and_revoked() {
    let (op, clock) = start_on_test_clock().await;
    let mut extra = Map::new();
    extra.insert("groups".into(), json!(["admins"]));
    op.set_user_claims("alice", extra);
    let tokens = login_tokens(&op, "alice").await;
    let at = tokens["access_token"].as_str().unwrap();

    let active = introspect(&op, at).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], "alice");
    assert_eq!(active["username"], "alice");
    assert_eq!(active["client_id"], "gateway");
    assert_eq!(active["scope"], "openid profile email");
    assert_eq!(active["iss"], op.issuer());
    assert_eq!(active["token_type"], "Bearer");
    assert_eq!(active["groups"], json!(["admins"]));
    assert_eq!(
        active["exp"].as_i64().unwrap() - active["iat"].as_i64().unwrap(),
        300
    );

    assert_eq!(introspect(&op, "nonsense").await, json!({"active": false}));

    let resp = client()
        .post(format!("{}/revoke", op.issuer()))
        .basic_auth("gateway", Some("gateway-secret"))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(introspect(&op, at).await, json!({"active": false}));
    // The refresh token was not touched by revoking the access token.
    assert_eq!(
        introspect(&op, tokens["refresh_token"].as_str().unwrap()).await["active"],
        true
    );

    let short = op.issue_access_token("bob", "openid api", 30);
    assert_eq!(introspect(&op, &short).await["scope"], "openid api");
    clock.advance(31);
    assert_eq!(introspect(&op, &short).await, json!({"active": false}));

    let c = op.counters();
    assert_eq!((c.introspections, c.revocations), (6, 1));
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_access_tokens() {
    let op = start().await;
    let tokens = login_tokens(&op, "alice").await;
    let resp = client()
        .post(format!("{}/revoke", op.issuer()))
        .basic_auth("gateway", Some("gateway-secret"))
        .form(&[
            ("token", tokens["refresh_token"].as_str().unwrap()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        introspect(&op, tokens["access_token"].as_str().unwrap()).await["active"],
        false
    );
    assert_eq!(
        refresh(&op, tokens["refresh_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    let at = op.issue_access_token("bob", "openid", 300);
    op.revoke(&at);
    assert_eq!(introspect(&op, &at).await["active"], false);
}

#[tokio::test]
async fn userinfo_answers_for_valid_tokens_only() {
    let (op, clock) = start_on_test_clock().await;
    let mut extra = Map::new();
    extra.insert("groups".into(), json!(["dev"]));
    extra.insert("sub".into(), json!("not-overridable"));
    op.set_user_claims("alice", extra);
    let tokens = login_tokens(&op, "alice").await;
    let at = tokens["access_token"].as_str().unwrap();
    let url = format!("{}/userinfo", op.issuer());

    let info: Value = client()
        .get(&url)
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["name"], "Alice");
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["locale"], "en-US");
    assert_eq!(info["groups"], json!(["dev"]));
    let id_claims = jwt_part(tokens["id_token"].as_str().unwrap(), 1);
    assert_eq!(id_claims["groups"], json!(["dev"]));
    assert!(id_claims.get("locale").is_none());

    op.set_userinfo_sub(Some("mallory".into()));
    let info: Value = client()
        .post(&url)
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "mallory");
    op.set_userinfo_sub(None);

    let resp = client()
        .get(&url)
        .bearer_auth("bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert_eq!(
        client().get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    op.revoke(at);
    let resp = client().get(&url).bearer_auth(at).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let expiring = op.issue_access_token("bob", "openid", 10);
    assert_eq!(
        client()
            .get(&url)
            .bearer_auth(&expiring)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    clock.advance(11);
    assert_eq!(
        client()
            .get(&url)
            .bearer_auth(&expiring)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(op.counters().userinfo, 7);
}

#[tokio::test]
async fn claims_follow_the_granted_scope() {
    let op = start().await;
    let mut params = auth_params();
    params[3].1 = "openid".into();
    let code = query_of(&sign_in(&op, &params, "dave").await)["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = redeem(&op, &code).await;
    let claims = jwt_part(body["id_token"].as_str().unwrap(), 1);
    assert!(claims.get("email").is_none() && claims.get("name").is_none());
    let info: Value = client()
        .get(format!("{}/userinfo", op.issuer()))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info, json!({"sub": "dave"}));
}

#[tokio::test]
async fn end_session_validates_its_redirect() {
    let op = start().await;
    let tokens = login_tokens(&op, "alice").await;
    let hint = tokens["id_token"].as_str().unwrap();
    let url = |params: &[(&str, &str)]| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            q.append_pair(k, v);
        }
        format!("{}/end_session?{}", op.issuer(), q.finish())
    };

    let resp = client()
        .get(url(&[
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", BYE),
            ("state", "s1"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(location(&resp), format!("{BYE}?state=s1"));

    let resp = client()
        .get(url(&[
            ("client_id", "gateway"),
            ("post_logout_redirect_uri", BYE),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&resp), BYE);

    let resp = client().get(url(&[])).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("You are signed out"));

    let forged = op.sign_jwt_with(false, jwt_part(hint, 1));
    let unsigned = op.sign_jwt_with(true, jwt_part(hint, 1));
    let refused: [Vec<(&str, &str)>; 5] = [
        vec![
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", "http://evil.example/"),
        ],
        vec![
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", "http://127.0.0.1:9/bye/"),
        ],
        vec![("post_logout_redirect_uri", BYE)],
        vec![
            ("id_token_hint", &forged),
            ("post_logout_redirect_uri", BYE),
        ],
        vec![("id_token_hint", &unsigned)],
    ];
    for params in refused {
        let resp = client().get(url(&params)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{params:?}");
        assert!(resp.headers().get(LOCATION).is_none());
    }

    op.add_post_logout_redirect_uri("http://127.0.0.1:9/later");
    let resp = client()
        .get(url(&[
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", "http://127.0.0.1:9/later"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(op.counters().end_sessions, 4);
}

#[tokio::test]
async fn each_tamper_mode_alters_exactly_its_part() {
    let op = start().await;
    let honest = login_tokens(&op, "alice").await;
    let honest_token = honest["id_token"].as_str().unwrap();
    let base = jwt_part(honest_token, 1);
    let kid = jwt_part(honest_token, 0)["kid"].clone();
    assert!(verify_with_jwks(&op, honest_token).await.is_ok());

    let modes = [
        Tamper::WrongIssuer,
        Tamper::WrongAudience,
        Tamper::Expired,
        Tamper::BadSignature,
        Tamper::AlgNone,
        Tamper::WrongNonce,
        Tamper::OldIssuedAt,
        Tamper::UnknownKid,
        Tamper::OtherSub,
        Tamper::ExtraAudienceNoAzp,
        Tamper::ExtraAudienceOtherAzp,
        Tamper::TrustedExtraAudience,
    ];
    for mode in modes {
        op.set_tamper(Some(mode));
        let tokens = login_tokens(&op, "alice").await;
        let token = tokens["id_token"].as_str().unwrap();
        let header = jwt_part(token, 0);
        let claims = jwt_part(token, 1);
        let verified = verify_with_jwks(&op, token).await;
        let now = op.op.now();
        let iat = claims["iat"].as_i64().unwrap();
        let exp = claims["exp"].as_i64().unwrap();
        match mode {
            Tamper::WrongIssuer => assert_eq!(claims["iss"], "https://evil.example"),
            Tamper::WrongAudience => assert_eq!(claims["aud"], "someone-else"),
            Tamper::Expired => assert!(exp < now && iat < exp),
            Tamper::BadSignature => {
                assert_eq!(header["kid"], kid);
                assert!(verified.is_err());
            }
            Tamper::AlgNone => {
                assert_eq!(header, json!({"alg": "none"}));
                assert!(token.ends_with('.'));
            }
            Tamper::WrongNonce => {
                assert!(claims["nonce"].is_string());
                assert_ne!(claims["nonce"], "n-456");
            }
            Tamper::OldIssuedAt => assert!(iat <= now - 3600 && exp > now),
            Tamper::UnknownKid => {
                assert_ne!(header["kid"], kid);
                assert_eq!(verified.as_ref().unwrap_err(), "no key with that kid");
            }
            Tamper::OtherSub => assert_eq!(claims["sub"], "someone-else"),
            Tamper::ExtraAudienceNoAzp => {
                assert_eq!(claims["aud"], json!(["gateway", "other-api"]));
                assert!(claims.get("azp").is_none());
            }
            Tamper::ExtraAudienceOtherAzp => {
                assert_eq!(claims["aud"], json!(["gateway", "other-api"]));
                assert_eq!(claims["azp"], "other-api");
            }
            Tamper::TrustedExtraAudience => {
                assert_eq!(claims["aud"], json!(["gateway", "trusted-api"]));
                assert_eq!(claims["azp"], "gateway");
            }
        }
        // Everything else is as in an honest token.
        for name in ["iss", "aud", "sub", "nonce", "name", "email"] {
            let tampered_here = matches!(
                (mode, name),
                (Tamper::WrongIssuer, "iss")
                    | (
                        Tamper::WrongAudience
                            | Tamper::ExtraAudienceNoAzp
                            | Tamper::ExtraAudienceOtherAzp
                            | Tamper::TrustedExtraAudience,
                        "aud"
                    )
                    | (Tamper::OtherSub, "sub")
                    | (Tamper::WrongNonce, "nonce")
            );
            if !tampered_here {
                assert_eq!(claims[name], base[name], "{mode:?} changed {name}");
            }
        }
        let signature_intact = !matches!(
            mode,
            Tamper::BadSignature | Tamper::AlgNone | Tamper::UnknownKid
        );
        assert_eq!(verified.is_ok(), signature_intact, "{mode:?}");
    }

    // Tamper applies to refreshed ID tokens too, and lasts until reset.
    op.set_tamper(Some(Tamper::OtherSub));
    let tokens = login_tokens(&op, "alice").await;
    let (_, refreshed) = refresh(&op, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        jwt_part(refreshed["id_token"].as_str().unwrap(), 1)["sub"],
        "someone-else"
    );
    op.set_tamper(None);
    let tokens = login_tokens(&op, "alice").await;
    assert_eq!(
        jwt_part(tokens["id_token"].as_str().unwrap(), 1)["sub"],
        "alice"
    );
}

#[tokio::test]
async fn key_rotation_publishes_previous_key_until_retired() {
    let op = start().await;
    let before = login_tokens(&op, "alice").await;
    let old_token = before["id_token"].as_str().unwrap();
    op.rotate_signing_key();
    let jwks = get_json(&format!("{}/jwks", op.issuer())).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    let after = login_tokens(&op, "alice").await;
    let new_token = after["id_token"].as_str().unwrap();
    assert_ne!(jwt_part(old_token, 0)["kid"], jwt_part(new_token, 0)["kid"]);
    assert!(verify_with_jwks(&op, old_token).await.is_ok());
    assert!(verify_with_jwks(&op, new_token).await.is_ok());

    op.retire_old_keys();
    let jwks = get_json(&format!("{}/jwks", op.issuer())).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert!(verify_with_jwks(&op, old_token).await.is_err());
    assert!(verify_with_jwks(&op, new_token).await.is_ok());
}

#[tokio::test]
async fn jwt_access_tokens_and_forgeries() {
    let op = start().await;
    let token = op.issue_jwt_access_token(json!({"sub": "alice", "scope": "api"}));
    let header = jwt_part(&token, 0);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let claims = verify_with_jwks(&op, &token).await.unwrap();
    assert_eq!(claims["iss"], op.issuer());
    assert_eq!(claims["aud"], "gateway");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    let active = introspect(&op, &token).await;
    assert_eq!(
        (&active["active"], &active["sub"]),
        (&json!(true), &json!("alice"))
    );

    let explicit = op.issue_jwt_access_token(json!({"sub": "bob", "aud": "api", "exp": 1}));
    let claims = jwt_part(&explicit, 1);
    assert_eq!((&claims["aud"], &claims["exp"]), (&json!("api"), &json!(1)));
    assert_eq!(introspect(&op, &explicit).await, json!({"active": false}));

    let forged = op.sign_jwt_with(false, json!({"sub": "alice"}));
    assert_eq!(jwt_part(&forged, 0)["kid"], header["kid"]);
    assert!(verify_with_jwks(&op, &forged).await.is_err());
    assert_eq!(introspect(&op, &forged).await, json!({"active": false}));

    let none = op.sign_jwt_with(true, json!({"sub": "alice"}));
    assert!(none.starts_with("eyJ") && none.ends_with('.'));
    assert_eq!(jwt_part(&none, 0), json!({"alg": "none"}));
    assert_eq!(jwt_part(&none, 1), json!({"sub": "alice"}));
}

#[tokio::test]
async fn access_token_ttl_is_adjustable_and_shutdown_stops_serving() {
    let op = start().await;
    op.set_access_token_ttl(42);
    let tokens = login_tokens(&op, "alice").await;
    assert_eq!(tokens["expires_in"], 42);

    let url = format!("{}/jwks", op.issuer());
    op.clone().shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let fresh = Client::builder().pool_max_idle_per_host(0).build().unwrap();
    assert!(fresh.get(&url).send().await.is_err());
}

#[test]
fn options_debug_redacts_the_secret() {
    let text = format!("{:?}", DevOpOptions::default());
    assert!(!text.contains("gateway-secret") && text.contains("redacted"));
}

/// A `client_secret_jwt` assertion for the test client, with `claims` over the defaults.
fn secret_assertion(op: &DevOp, overrides: Value) -> String {
    let now = system_now()();
    let mut claims = json!({
        "iss": "gateway", "sub": "gateway", "aud": format!("{}/token", op.issuer()),
        "jti": format!("jti-{}", rand::random::<u64>()), "iat": now, "exp": now + 60,
    });
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"gateway-secret"),
    )
    .unwrap()
}

#[tokio::test]
async fn client_assertions_are_verified_and_used_once() {
    let op = start().await;
    op.require_client_auth(Some("client_secret_jwt"));
    let code = code_for(&op, "alice").await;
    let with = |assertion: &str| {
        vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".to_string(), code.clone()),
            ("redirect_uri".to_string(), CALLBACK.to_string()),
            ("code_verifier".to_string(), VERIFIER.to_string()),
            (
                "client_assertion_type".to_string(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ),
            ("client_assertion".to_string(), assertion.to_string()),
        ]
    };
    let url = format!("{}/token", op.issuer());
    let send = |form: Vec<(String, String)>| {
        let url = url.clone();
        async move {
            let resp = client().post(&url).form(&form).send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };
    for bad in [
        json!({"aud": "https://elsewhere.example/token"}),
        json!({"iss": "someone-else"}),
        json!({"sub": "someone-else"}),
        json!({"exp": system_now()() - 1}),
        json!({"exp": system_now()() + 3600}),
    ] {
        let (status, body) = send(with(&secret_assertion(&op, bad.clone()))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_client");
    }
    // The secret alone is no longer accepted.
    let (status, _) = post_token(
        &op,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let good = secret_assertion(&op, json!({}));
    let (status, body) = send(with(&good)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The same assertion again: its jti was used.
    let (status, body) = send(with(&good)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("jti already used"));
    assert_eq!(op.client_auth_methods(), ["client_secret_jwt"]);
}
