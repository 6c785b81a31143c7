//! Back-channel and front-channel logout end every session with the OP's `sid`, even
//! with the cookie store, and logout tokens are checked like the spec says.
use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

async fn sid_of(h: &Harness, b: &Browser) -> String {
    let info: serde_json::Value = b
        .client
        .get(h.url("/oauth2/callback?info=json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["id_token"]["sid"]
        .as_str()
        .expect("sid claim")
        .to_string()
}

async fn post_logout_token(h: &Harness, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(h.url("/oauth2/callback?logout=backchannel"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
}

fn logout_claims(h: &Harness, sid: &str, jti: &str) -> serde_json::Value {
    json!({
        "iss": h.op.issuer(),
        "aud": "gateway",
        "iat": h.clock.now(),
        "jti": jti,
        "sid": sid,
        "events": { EVENT: {} },
    })
}

#[tokio::test]
async fn backchannel_logout_ends_the_cookie_session_and_refuses_replays() {
    let h = Harness::start().await;
    let alice = Browser::new();
    let other = Browser::new();
    h.login(&alice, "/a", "alice").await;
    h.login(&other, "/b", "bob").await;
    let sid = sid_of(&h, &alice).await;

    let token =
        h.op.issue_jwt_access_token(logout_claims(&h, &sid, "jti-1"));
    let r = post_logout_token(&h, &token).await;
    let status = r.status();
    let headers = r.headers().clone();
    assert_eq!(status, StatusCode::OK, "{}", r.text().await.unwrap());
    let r = headers;
    assert_eq!(r["cache-control"], "no-store");

    // Alice's (cookie-store) session is refused; Bob's is untouched.
    assert_eq!(alice.get(&h.url("/a")).await.status(), StatusCode::FOUND);
    assert_eq!(other.get(&h.url("/b")).await.status(), StatusCode::OK);

    // The same token again is a replay.
    let r = post_logout_token(&h, &token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("jti"));
}

#[tokio::test]
async fn bad_logout_tokens_are_refused_and_end_nothing() {
    let h = Harness::start().await;
    let alice = Browser::new();
    h.login(&alice, "/a", "alice").await;
    let sid = sid_of(&h, &alice).await;

    let mut no_event = logout_claims(&h, &sid, "j1");
    no_event["events"] = json!({});
    let mut with_nonce = logout_claims(&h, &sid, "j2");
    with_nonce["nonce"] = json!("n");
    let mut wrong_aud = logout_claims(&h, &sid, "j3");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = logout_claims(&h, &sid, "j4");
    wrong_iss["iss"] = json!("https://evil.example");
    let mut no_sid = logout_claims(&h, &sid, "j5");
    no_sid.as_object_mut().unwrap().remove("sid");
    no_sid["sub"] = json!(null);
    let cases = [
        ("no event", h.op.issue_jwt_access_token(no_event)),
        ("nonce", h.op.issue_jwt_access_token(with_nonce)),
        ("aud", h.op.issue_jwt_access_token(wrong_aud)),
        ("iss", h.op.issue_jwt_access_token(wrong_iss)),
        (
            "alg none",
            h.op.sign_jwt_with(true, logout_claims(&h, &sid, "j6")),
        ),
        (
            "foreign key",
            h.op.sign_jwt_with(false, logout_claims(&h, &sid, "j7")),
        ),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (what, token) in cases {
        let r = post_logout_token(&h, &token).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
    }
    let r = reqwest::Client::new()
        .post(h.url("/oauth2/callback?logout=backchannel"))
        .form(&[("other", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        alice.get(&h.url("/a")).await.status(),
        StatusCode::OK,
        "session survives"
    );
}

/// Front-channel logout ends only the session of the browser whose frame makes the
/// request, and only when `sid`/`iss` name it: anyone can send the request, so it must not
/// touch other browsers' sessions.
#[tokio::test]
async fn frontchannel_logout_ends_only_the_requesting_browsers_session() {
    let h = Harness::start().await;
    let alice = Browser::new();
    h.login(&alice, "/a", "alice").await;
    let sid = sid_of(&h, &alice).await;
    let url = format!(
        "/oauth2/callback?logout=get&sid={sid}&iss={}",
        url_escape(&h.op.issuer())
    );
    // A stranger (no cookie) who knows alice's sid ends nothing.
    let r = reqwest::get(h.url(&url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        alice.get(&h.url("/a")).await.status(),
        StatusCode::OK,
        "a cookieless request ends no session"
    );
    // Alice's own frame with another sid ends nothing either.
    let other = alice
        .get(&h.url("/oauth2/callback?logout=get&sid=someone-else"))
        .await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(alice.get(&h.url("/a")).await.status(), StatusCode::OK);
    // Alice's own frame with her sid ends her session.
    let r = alice.get(&h.url(&url)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(alice.get(&h.url("/a")).await.status(), StatusCode::FOUND);

    let r = reqwest::get(h.url("/oauth2/callback?logout=get&sid=x&iss=https%3A%2F%2Fevil"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn frontchannel_logout_refuses_oversized_parameters() {
    let h = Harness::start().await;
    let alice = Browser::new();
    h.login(&alice, "/a", "alice").await;
    let long_sid = "s".repeat(257);
    let r = alice
        .get(&h.url(&format!("/oauth2/callback?logout=get&sid={long_sid}")))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let long_iss = "i".repeat(1025);
    let r = alice
        .get(&h.url(&format!("/oauth2/callback?logout=get&iss={long_iss}")))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(alice.get(&h.url("/a")).await.status(), StatusCode::OK);
}

/// `logout=get` without a sid ends the session whose cookie the frame carries (as
/// mod_auth_openidc does); with neither, it is a 400.
#[tokio::test]
async fn frontchannel_logout_without_sid_ends_the_browsers_own_session() {
    let h = Harness::start().await;
    let alice = Browser::new();
    let bob = Browser::new();
    h.login(&alice, "/a", "alice").await;
    h.login(&bob, "/a", "bob").await;
    let r = alice.get(&h.url("/oauth2/callback?logout=get")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(alice.get(&h.url("/a")).await.status(), StatusCode::FOUND);
    assert_eq!(
        bob.get(&h.url("/a")).await.status(),
        StatusCode::OK,
        "only alice's"
    );
    let r = reqwest::get(h.url("/oauth2/callback?logout=get"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Security rules of back-channel logout, each failing alone (issue 12, item 14): a token
/// without `sid` ends every session of its `sub` (and only those); a stale `iat`, a
/// missing `jti` or two `logout_token` fields end nothing.
#[tokio::test]
async fn backchannel_logout_by_sub_ends_that_subjects_sessions() {
    let h = Harness::start().await;
    let alice_1 = Browser::new();
    let alice_2 = Browser::new();
    let bob = Browser::new();
    h.login(&alice_1, "/a", "alice").await;
    h.login(&alice_2, "/a", "alice").await;
    h.login(&bob, "/a", "bob").await;
    let mut by_sub = logout_claims(&h, "", "sub-1");
    by_sub.as_object_mut().unwrap().remove("sid");
    by_sub["sub"] = json!("alice");
    let r = post_logout_token(&h, &h.op.issue_jwt_access_token(by_sub)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(alice_1.get(&h.url("/a")).await.status(), StatusCode::FOUND);
    assert_eq!(alice_2.get(&h.url("/a")).await.status(), StatusCode::FOUND);
    assert_eq!(bob.get(&h.url("/a")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn stale_iat_missing_jti_and_two_tokens_are_refused() {
    let h = Harness::start().await;
    let alice = Browser::new();
    h.login(&alice, "/a", "alice").await;
    let sid = sid_of(&h, &alice).await;

    let mut stale = logout_claims(&h, &sid, "stale");
    stale["iat"] = json!(h.clock.now() - 601);
    let mut future = logout_claims(&h, &sid, "future");
    future["iat"] = json!(h.clock.now() + 120);
    // null, not absent: the development OP fills in a missing jti.
    let mut no_jti = logout_claims(&h, &sid, "");
    no_jti["jti"] = json!(null);
    for (what, claims) in [
        ("stale iat", stale),
        ("future iat", future),
        ("no jti", no_jti),
    ] {
        let r = post_logout_token(&h, &h.op.issue_jwt_access_token(claims)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
    }
    let good = h.op.issue_jwt_access_token(logout_claims(&h, &sid, "two"));
    let r = reqwest::Client::new()
        .post(h.url("/oauth2/callback?logout=backchannel"))
        .form(&[
            ("logout_token", good.as_str()),
            ("logout_token", good.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "two logout_token fields"
    );
    assert_eq!(
        alice.get(&h.url("/a")).await.status(),
        StatusCode::OK,
        "session survives"
    );
}

/// The provider's keys cannot be had: 503 `temporarily_unavailable`, so the provider
/// retries, and nothing is ended.
#[tokio::test]
async fn backchannel_logout_without_keys_is_503() {
    let h = Harness::with(Options {
        issuer: Some("http://127.0.0.1:9".into()),
        ..Options::default()
    })
    .await;
    let token = h.op.issue_jwt_access_token(logout_claims(&h, "s", "j"));
    let r = post_logout_token(&h, &token).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}
