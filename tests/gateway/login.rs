//! Login (docs/behaviour.md §4): the authorization redirect and its state cookie, the callback and
//! every way it can refuse a login, non-browser clients, `unauth_action`, and an
//! unreachable provider.

use crate::common::*;
use devop::{DevOp, DevOpOptions, Tamper};
use reqwest::StatusCode;
use std::collections::HashMap;

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn state_cookie_names(b: &Browser, url: &str) -> Vec<String> {
    b.cookies(url)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("oidc_state_"))
        .collect()
}

#[tokio::test]
async fn login_redirect_carries_every_authorization_parameter_and_a_sealed_state_cookie() {
    let h = Harness::with(Options {
        provider: r#"auth_params = { prompt = "consent", ui_locales = "nl" }"#.into(),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let r = b.get(&h.url("/app/page?x=1&y=%20")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_no_store(&r);
    let location = location(&r);
    assert!(location.starts_with(&format!("{}/authorize?", h.op.issuer())));
    let q = query_of(&location);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "gateway");
    assert_eq!(q["redirect_uri"], h.url("/oauth2/callback"));
    assert_eq!(q["scope"], "openid profile email offline_access");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "base64url SHA-256");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["ui_locales"], "nl");
    let state = &q["state"];
    assert!(state.len() >= 16, "state has entropy: {state}");
    assert!(q["nonce"].len() >= 16, "nonce has entropy");

    // Exactly one state cookie, named after the state, with the attributes of docs/behaviour.md §4.
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    let prefix = format!("oidc_state_{state}=");
    assert!(cookie.starts_with(&prefix), "{cookie}");
    let value = cookie[prefix.len()..].split(';').next().unwrap();
    assert!(value.len() > 40, "sealed value: {value}");
    for secret in [state.as_str(), q["nonce"].as_str(), "/app/page"] {
        assert!(!value.contains(secret), "state cookie is encrypted");
    }
    for attr in ["Path=/", "Max-Age=300", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure on plain http: {cookie}"
    );

    // The round trip lands on the original URL, query included.
    let r = h.login(&b, "/app/page?x=1&y=%20", "alice").await;
    let echo = Echo::of(r).await;
    assert_eq!(echo.0["path"], "/app/page");
    assert_eq!(echo.0["query"], "x=1&y=%20");
}

#[tokio::test]
async fn callback_creates_session_cookie_and_clears_the_state_cookie() {
    let h = Harness::start().await;
    let b = Browser::new();
    let authorize = h.start_login(&b, "/hello").await;
    let state = query_of(&authorize)["state"].clone();
    let callback = h.authorize(&b, &authorize, "alice").await;
    let q = query_of(&callback);
    assert_eq!(q["state"], state);
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_no_store(&r);
    assert_eq!(location(&r), "/hello");
    assert!(clears_cookie(&r, &format!("oidc_state_{state}")));
    let session = set_cookie_for(&r, "oidc_session").expect("session cookie set");
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(session.contains(attr), "{attr} in {session}");
    }
    assert!(!session.contains("Secure"), "{session}");
    assert!(!session.contains("Max-Age=0"), "{session}");
    assert!(state_cookie_names(&b, &h.base).is_empty());
    let counters = h.op.counters();
    assert_eq!(counters.authorizations, 1);
    assert_eq!(counters.code_grants, 1);
    assert_eq!(counters.userinfo, 1, "userinfo = true is the default");

    let echo = Echo::of(b.get(&h.url("/hello")).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    assert_eq!(echo.header("oidc_claim_locale").as_deref(), Some("en-US"));
}

#[tokio::test]
async fn a_login_never_reuses_the_session_presented_to_the_callback() {
    let h = Harness::start().await;
    let a = Browser::new();
    Echo::of(h.login(&a, "/", "alice").await).await;
    let first = a.cookie_header(&h.base);

    // Browser `a` finishes a login that another browser started, while presenting its
    // existing session: the callback must mint a new session, not keep the old id.
    let other = Browser::new();
    let authorize = h.start_login(&other, "/again").await;
    let state = query_of(&authorize)["state"].clone();
    let state_name = format!("oidc_state_{state}");
    let state_value = other.cookie_value(&h.base, &state_name).unwrap();
    a.set_cookie(&h.base, &state_name, &state_value);
    let callback = h.authorize(&a, &authorize, "alice").await;
    let r = a.get(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/again");

    // Logging the new session out must leave the first one alone (different ids).
    let r = a.get(&h.url("/oauth2/callback?logout=%2F")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let still = get_with_cookie(&h.url("/"), &first).await;
    assert_eq!(still.status(), StatusCode::OK, "first session still valid");
}

#[tokio::test]
async fn unknown_state_is_a_400_page_with_a_link_to_start_again() {
    let h = Harness::start().await;
    let b = Browser::new();
    let r = b
        .get(&h.url("/oauth2/callback?code=abc&state=never-issued"))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_no_store(&r);
    let page = r.text().await.unwrap();
    assert!(page.contains("could not be matched"), "{page}");
    assert!(
        page.contains("<a href=\"/\">"),
        "link to start again: {page}"
    );
    assert_eq!(h.op.counters().code_grants, 0, "no code exchange attempted");
}

#[tokio::test]
async fn replayed_callback_is_refused_and_creates_nothing() {
    let h = Harness::start().await;
    let b = Browser::new();
    let authorize = h.start_login(&b, "/x").await;
    let callback = h.authorize(&b, &authorize, "alice").await;
    assert_eq!(b.get(&callback).await.status(), StatusCode::FOUND);

    // The same browser again: its state cookie is gone.
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_no_store(&r);
    assert!(set_cookie_for(&r, "oidc_session").is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("could not be matched"), "{page}");
    assert!(page.contains("<a href="), "{page}");

    // Another browser (an attacker who saw the URL) gets nothing either.
    let thief = Browser::new();
    let r = thief.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie_for(&r, "oidc_session").is_none());
    assert_eq!(
        h.op.counters().code_grants,
        1,
        "the code was exchanged once"
    );
}

#[tokio::test]
async fn expired_state_is_refused() {
    let h = Harness::start().await;
    let b = Browser::new();
    let authorize = h.start_login(&b, "/x").await;
    let callback = h.authorize(&b, &authorize, "alice").await;
    h.clock.advance(301);
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_no_store(&r);
    assert!(set_cookie_for(&r, "oidc_session").is_none());
    let state = query_of(&callback)["state"].clone();
    assert!(clears_cookie(&r, &format!("oidc_state_{state}")));
    let page = r.text().await.unwrap();
    assert!(page.contains("could not be matched"), "{page}");
    assert!(page.contains("5 minutes"), "{page}");
    assert!(page.contains("<a href="), "{page}");
    assert_eq!(h.op.counters().code_grants, 0);
    // Still no session.
    assert_eq!(b.get(&h.url("/x")).await.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn a_state_cookie_just_under_five_minutes_old_still_works() {
    let h = Harness::start().await;
    let b = Browser::new();
    let authorize = h.start_login(&b, "/x").await;
    h.clock.advance(290);
    let callback = h.authorize(&b, &authorize, "alice").await;
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/x");
}

/// Each ID-token check, failing alone: (tamper, text the page must name, status).
const ID_TOKEN_CHECKS: &[(Tamper, &str)] = &[
    (Tamper::WrongIssuer, "rejected: iss"),
    (Tamper::WrongAudience, "rejected: aud"),
    (Tamper::Expired, "rejected: exp"),
    (Tamper::BadSignature, "rejected: signature"),
    (Tamper::AlgNone, "rejected: alg"),
    (Tamper::WrongNonce, "rejected: nonce"),
    (Tamper::OldIssuedAt, "rejected: iat"),
    (Tamper::UnknownKid, "rejected: signature"),
    (Tamper::OtherSub, "sub does not match"),
];

#[tokio::test]
async fn each_failing_id_token_check_is_named_and_creates_no_session() {
    let h = Harness::start().await;
    for &(tamper, named) in ID_TOKEN_CHECKS {
        h.op.set_tamper(Some(tamper));
        let b = Browser::new();
        let authorize = h.start_login(&b, "/x").await;
        let state = query_of(&authorize)["state"].clone();
        let callback = h.authorize(&b, &authorize, "alice").await;
        let r = b.get(&callback).await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "{tamper:?}");
        assert_no_store(&r);
        assert!(
            set_cookie_for(&r, "oidc_session").is_none(),
            "{tamper:?}: no session cookie"
        );
        assert!(
            clears_cookie(&r, &format!("oidc_state_{state}")),
            "{tamper:?}: state cookie cleared"
        );
        let page = r.text().await.unwrap();
        assert!(
            page.contains(named),
            "{tamper:?}: page names {named:?}: {page}"
        );
        assert!(page.contains("<a href="), "{tamper:?}: link: {page}");
        // No session was created: the app is still behind a login.
        let again = b.get(&h.url("/x")).await;
        assert_eq!(again.status(), StatusCode::FOUND, "{tamper:?}");
        assert!(location(&again).starts_with(&h.op.issuer()));
    }
    // The same provider, behaving again, logs in fine.
    h.op.set_tamper(None);
    let b = Browser::new();
    Echo::of(h.login(&b, "/x", "alice").await).await;
}

#[tokio::test]
async fn provider_error_is_a_400_page_that_escapes_what_it_reflects() {
    let h = Harness::start().await;
    let b = Browser::new();
    let authorize = h.start_login(&b, "/x").await;
    let state = query_of(&authorize)["state"].clone();
    let url = format!(
        "{}?error=%3Cscript%3Ealert(1)%3C%2Fscript%3E&error_description=%3Cimg%20src%3Dx%20onerror%3Dalert(2)%3E%22%27&state={state}",
        h.url("/oauth2/callback")
    );
    let r = b.get(&url).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_no_store(&r);
    assert!(clears_cookie(&r, &format!("oidc_state_{state}")));
    assert!(set_cookie_for(&r, "oidc_session").is_none());
    assert!(r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("&lt;img src=x onerror=alert(2)&gt;&quot;&#39;"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains("<img"), "{page}");

    // A real provider error (the user refused, here: prompt=none without a session).
    let b = Browser::new();
    let authorize = h.start_login(&b, "/x").await;
    let r = b.get(&format!("{authorize}&prompt=none")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = b.get(&location(&r)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("login_required"), "{page}");
}

#[tokio::test]
async fn callback_without_code_error_or_state_is_an_invalid_request() {
    let h = Harness::start().await;
    let b = Browser::new();
    for query in ["", "?foo=bar", "?code=abc", "?state=abc"] {
        let r = b.get(&h.url(&format!("/oauth2/callback{query}"))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_no_store(&r);
        let page = r.text().await.unwrap();
        assert!(page.contains("Invalid request"), "{query}: {page}");
    }
}

#[tokio::test]
async fn non_browser_requests_get_401_and_no_state_cookie() {
    let h = Harness::start().await;
    let b = Browser::new();
    let url = h.url("/data");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("XHR", vec![("x-requested-with", "XMLHttpRequest")]),
        ("fetch cors", vec![("sec-fetch-mode", "cors")]),
        ("fetch no-cors", vec![("sec-fetch-mode", "no-cors")]),
        ("JSON client", vec![("accept", "application/json")]),
        ("image", vec![("accept", "image/png,image/*;q=0.8")]),
        (
            "XHR wanting HTML",
            vec![
                ("x-requested-with", "XMLHttpRequest"),
                ("accept", "text/html"),
            ],
        ),
    ];
    for (what, headers) in cases {
        let mut req = b.client.get(&url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_no_store(&r);
        assert!(set_cookies(&r).is_empty(), "{what}: {:?}", set_cookies(&r));
    }
    assert!(state_cookie_names(&b, &h.base).is_empty());

    // Browsers navigating still get the redirect.
    for (what, headers) in [
        (
            "navigate",
            vec![
                ("sec-fetch-mode", "navigate"),
                ("accept", "text/html,application/xhtml+xml;q=0.9"),
            ],
        ),
        ("wildcard", vec![("accept", "application/json, */*;q=0.1")]),
    ] {
        let mut req = b.client.get(&url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{what}");
        assert!(location(&r).starts_with(&h.op.issuer()), "{what}");
    }
}

#[tokio::test]
async fn unauth_action_401_refuses_even_browsers_until_logged_in() {
    let h = Harness::start().await;
    let b = Browser::new();
    let r = b
        .client
        .get(h.url("/strict/x"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_no_store(&r);
    assert!(set_cookies(&r).is_empty());
    Echo::of(h.login(&b, "/", "alice").await).await;
    let echo = Echo::of(b.get(&h.url("/strict/x")).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
}

#[tokio::test]
async fn unauth_action_pass_proxies_anonymously_then_with_identity() {
    let h = Harness::start().await;
    let b = Browser::new();
    let r = b.get(&h.url("/pass/x")).await;
    assert!(set_cookies(&r).is_empty());
    let echo = Echo::of(r).await;
    assert_eq!(echo.0["path"], "/pass/x");
    assert!(
        !echo.names().iter().any(|n| n.starts_with("oidc_")),
        "{:?}",
        echo.names()
    );
    Echo::of(h.login(&b, "/", "alice").await).await;
    let echo = Echo::of(b.get(&h.url("/pass/x")).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    assert!(echo.header("oidc_access_token").is_some());
}

#[tokio::test]
async fn at_most_seven_state_cookies_and_the_oldest_are_dropped() {
    let h = Harness::start().await;
    let b = Browser::new();
    let mut authorizes = Vec::new();
    for i in 0..10 {
        authorizes.push(h.start_login(&b, &format!("/tab{i}")).await);
        let live = state_cookie_names(&b, &h.base);
        assert_eq!(live.len(), (i + 1).min(7), "after login {i}: {live:?}");
        // Distinct creation times make "oldest" well defined.
        h.clock.advance(1);
    }
    let live = state_cookie_names(&b, &h.base);
    for (i, authorize) in authorizes.iter().enumerate() {
        let state = query_of(authorize)["state"].clone();
        let name = format!("oidc_state_{state}");
        assert_eq!(live.contains(&name), i >= 3, "login {i}");
    }
    // The oldest login can no longer complete; the newest can.
    let callback = h.authorize(&b, &authorizes[0], "alice").await;
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let callback = h.authorize(&b, &authorizes[9], "alice").await;
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/tab9");
}

#[tokio::test]
async fn claim_rules_refuse_with_403_and_admit_members() {
    let h = Harness::start().await;
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    let r = b.get(&h.url("/admins/x")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_no_store(&r);

    let mut claims = serde_json::Map::new();
    claims.insert("groups".into(), serde_json::json!(["staff", "admins"]));
    h.op.set_user_claims("root", claims);
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "root").await).await;
    let echo = Echo::of(b.get(&h.url("/admins/x")).await).await;
    assert_eq!(
        echo.header("oidc_claim_groups").as_deref(),
        Some("staff,admins")
    );
}

#[tokio::test]
async fn unreachable_provider_is_a_503_page_and_the_gateway_keeps_serving() {
    let port = closed_port();
    let h = Harness::with(Options {
        issuer: Some(format!("http://127.0.0.1:{port}")),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    for _ in 0..3 {
        let r = b.get(&h.url("/app")).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_no_store(&r);
        assert!(
            set_cookies(&r).is_empty(),
            "no state cookie without a provider"
        );
        let page = r.text().await.unwrap();
        assert!(page.contains("provider is unreachable"), "{page}");
        // Routes that need no provider still work.
        let echo = Echo::of(b.get(&h.url("/public/x")).await).await;
        assert_eq!(echo.0["path"], "/public/x");
    }
}

#[tokio::test]
async fn provider_that_comes_up_later_is_used_without_a_restart() {
    let port = closed_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let h = Harness::with(Options {
        issuer: Some(issuer.clone()),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let r = b.get(&h.url("/app")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    let late = DevOp::start(DevOpOptions {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        redirect_uris: vec![h.url("/oauth2/callback")],
        now: crate::common::op_now(&h.clock),
        ..DevOpOptions::default()
    })
    .await
    .expect("late OP binds the port");
    assert_eq!(late.issuer(), issuer);

    // Discovery is retried with back-off: poll (bounded) until the login redirect appears.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let authorize = loop {
        let r = b.get(&h.url("/app")).await;
        if r.status() == StatusCode::FOUND {
            break location(&r);
        }
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            std::time::Instant::now() < deadline,
            "provider never picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(authorize.starts_with(&format!("{issuer}/authorize?")));
}

#[tokio::test]
async fn a_response_naming_another_issuer_is_refused() {
    // RFC 9207 mix-up defence: the callback's `iss` must be our provider.
    let h = Harness::start().await;
    let b = Browser::new();
    let authorize = h.start_login(&b, "/x").await;
    let callback = h.authorize(&b, &authorize, "alice").await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" {
                "https://evil.example".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let r = b.get(url.as_str()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie_for(&r, "oidc_session").is_none());
    assert_eq!(h.op.counters().code_grants, 0, "the code was not exchanged");
}

#[tokio::test]
async fn pkce_methods_and_client_authentication_methods_all_log_in() {
    for (provider, method) in [
        (r#"pkce = "plain""#, Some("plain")),
        (r#"pkce = "none""#, None),
        (
            r#"token_endpoint_auth = "client_secret_post""#,
            Some("S256"),
        ),
    ] {
        let h = Harness::with(Options {
            provider: provider.into(),
            ..Options::default()
        })
        .await;
        let b = Browser::new();
        let authorize = h.start_login(&b, "/x").await;
        let q = query_of(&authorize);
        assert_eq!(
            q.get("code_challenge_method").map(String::as_str),
            method,
            "{provider}"
        );
        assert_eq!(
            q.contains_key("code_challenge"),
            method.is_some(),
            "{provider}"
        );
        let callback = h.authorize(&b, &authorize, "alice").await;
        let r = b.get(&callback).await;
        assert_eq!(
            r.status(),
            StatusCode::FOUND,
            "{provider}: {}",
            r.text().await.unwrap()
        );
        let echo = Echo::of(b.get(&h.url("/x")).await).await;
        assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    }
}

#[tokio::test]
async fn userinfo_off_means_no_userinfo_call_and_no_userinfo_claims() {
    let h = Harness::with(Options {
        provider: "userinfo = false".into(),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/", "alice").await).await;
    assert_eq!(h.op.counters().userinfo, 0);
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    assert!(
        echo.header("oidc_claim_locale").is_none(),
        "locale comes only from userinfo"
    );
}

#[tokio::test]
async fn userinfo_for_another_subject_is_refused() {
    let h = Harness::start().await;
    h.op.set_userinfo_sub(Some("mallory".into()));
    let b = Browser::new();
    let authorize = h.start_login(&b, "/x").await;
    let callback = h.authorize(&b, &authorize, "alice").await;
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(set_cookie_for(&r, "oidc_session").is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("sub does not match"), "{page}");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_once_and_logins_continue() {
    let h = Harness::start().await;
    Echo::of(h.login(&Browser::new(), "/", "alice").await).await;
    h.op.rotate_signing_key();
    h.op.retire_old_keys();
    Echo::of(h.login(&Browser::new(), "/", "bob").await).await;
}

#[tokio::test]
async fn a_provider_that_goes_down_mid_login_is_a_503_and_sessions_keep_working() {
    let h = Harness::start().await;
    let alice = Browser::new();
    Echo::of(h.login(&alice, "/", "alice").await).await;

    let bob = Browser::new();
    let authorize = h.start_login(&bob, "/x").await;
    let callback = h.authorize(&bob, &authorize, "bob").await;
    h.op.shutdown();
    let r = bob.get(&callback).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_no_store(&r);
    assert!(set_cookie_for(&r, "oidc_session").is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("provider is unreachable"), "{page}");

    // Existing sessions do not need the provider for every request.
    let echo = Echo::of(alice.get(&h.url("/x")).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    // Logout still ends the session locally even though revocation fails.
    let before = alice.cookie_header(&h.base);
    let r = alice
        .get(&h.url("/oauth2/callback?logout=%2Fpublic%2Fbye"))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(clears_cookie(&r, "oidc_session"));
    let r = get_with_cookie(&h.url("/x"), &before).await;
    assert_ne!(r.status(), StatusCode::OK, "ended session refused");
}

#[tokio::test]
async fn the_return_address_after_login_never_leaves_the_site() {
    // `https://gateway//evil.com/x` is routed like `/evil.com/x`; after the login the
    // browser must come back to this site, not follow `//evil.com/x` off it.
    let h = Harness::start().await;
    for path in [
        "//evil.com/x",
        "///evil.com/x",
        "/%2F%2Fevil.com",
        "//evil.com",
    ] {
        let b = Browser::new();
        let authorize = h.start_login(&b, path).await;
        let callback = h.authorize(&b, &authorize, "alice").await;
        let r = b.get(&callback).await;
        assert_eq!(r.status(), StatusCode::FOUND, "{path}");
        let back = location(&r);
        assert!(
            back.starts_with('/') && !back.starts_with("//") && !back.starts_with("/\\"),
            "{path}: redirected to {back}"
        );
        let resolved = url::Url::parse(&h.base).unwrap().join(&back).unwrap();
        assert_eq!(
            resolved.host_str(),
            Some("127.0.0.1"),
            "{path}: {back} resolves off-site"
        );
    }
}

/// ID tokens with several audiences (issue 12, item 13): `azp` must name this client, and
/// the other audiences must be trusted (`provider.trusted_audiences`).
#[tokio::test]
async fn extra_audiences_need_azp_and_trust() {
    let h = Harness::start().await;
    for tamper in [
        Tamper::ExtraAudienceNoAzp,
        Tamper::ExtraAudienceOtherAzp,
        Tamper::TrustedExtraAudience,
    ] {
        h.op.set_tamper(Some(tamper));
        let b = Browser::new();
        let callback = h.callback_for(&b, "/x", "alice").await;
        let r = b.get(&callback).await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "{tamper:?}");
        assert!(set_cookie_for(&r, "oidc_session").is_none(), "{tamper:?}");
    }
    // Trusted, and issued to this client: a session.
    let trusting = Harness::with(Options {
        provider: r#"trusted_audiences = ["trusted-api"]"#.into(),
        ..Options::default()
    })
    .await;
    trusting.op.set_tamper(Some(Tamper::TrustedExtraAudience));
    let b = Browser::new();
    trusting.login(&b, "/x", "alice").await;
    assert_eq!(b.get(&trusting.url("/x")).await.status(), StatusCode::OK);
    // Trust does not waive azp.
    trusting.op.set_tamper(Some(Tamper::ExtraAudienceOtherAzp));
    let b = Browser::new();
    let callback = trusting.callback_for(&b, "/x", "alice").await;
    assert_eq!(b.get(&callback).await.status(), StatusCode::BAD_GATEWAY);
}

/// RFC 6749 §7.1: a token response whose `token_type` is not Bearer makes no session.
#[tokio::test]
async fn a_token_type_other_than_bearer_is_refused() {
    let h = Harness::start().await;
    h.op.set_token_type(Some("DPoP"));
    let b = Browser::new();
    let callback = h.callback_for(&b, "/x", "alice").await;
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(set_cookie_for(&r, "oidc_session").is_none());
    assert!(r.text().await.unwrap().contains("not Bearer"));
    // Any spelling of Bearer is fine.
    h.op.set_token_type(Some("bearer"));
    let b = Browser::new();
    h.login(&b, "/x", "alice").await;
    assert_eq!(b.get(&h.url("/x")).await.status(), StatusCode::OK);
}

/// RFC 9207 §2.4: the development OP advertises
/// `authorization_response_iss_parameter_supported`, so a callback without `iss` is
/// refused (it could be a mix-up with another provider).
#[tokio::test]
async fn a_callback_without_iss_is_refused_when_the_provider_names_itself() {
    let h = Harness::start().await;
    let b = Browser::new();
    let callback = h.callback_for(&b, "/x", "alice").await;
    assert!(callback.contains("iss="), "{callback}");
    let (path, query) = callback.split_once('?').unwrap();
    let stripped: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("iss="))
        .collect();
    let r = b.get(&format!("{path}?{}", stripped.join("&"))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie_for(&r, "oidc_session").is_none());
    assert!(r.text().await.unwrap().contains("does not name its issuer"));
}

/// A provider that signs without `kid` and rotates its only key: the signature fails
/// against the cached key, so the JWKS is refetched once and the login succeeds (before,
/// logins failed until a restart).
#[tokio::test]
async fn a_rotated_key_without_kid_is_refetched_on_the_signature_failure() {
    let h = Harness::start().await;
    h.op.set_omit_kid(true);
    h.login(&Browser::new(), "/x", "alice").await;
    h.op.rotate_signing_key();
    h.op.retire_old_keys();
    let b = Browser::new();
    h.login(&b, "/x", "bob").await;
    assert_eq!(b.get(&h.url("/x")).await.status(), StatusCode::OK);
}

/// `provider.jwks_refresh`: the JWKS is refetched in the background on that interval.
#[tokio::test]
async fn the_jwks_is_refreshed_in_the_background() {
    let h = Harness::with(Options {
        provider: r#"jwks_refresh = "1s""#.into(),
        ..Options::default()
    })
    .await;
    h.login(&Browser::new(), "/x", "alice").await;
    let start = h.op.counters().jwks;
    // Condition, not a ceiling on time: wait until two refreshes were seen (at most 30 s).
    for _ in 0..300 {
        if h.op.counters().jwks >= start + 2 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "no background JWKS refresh: {} fetches",
        h.op.counters().jwks - start
    );
}
