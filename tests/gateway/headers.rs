//! What the upstream receives about the user (docs/behaviour.md §11): every identity header with its
//! exact name and encoding, the optional token headers, client-sent look-alikes scrubbed on
//! every route kind, and the gateway's own cookies kept from the upstream.

use crate::common::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Map, Value};

/// Extra claims of the test user, one of each kind the encoding rules name.
fn rich_claims() -> Map<String, Value> {
    let v = json!({
        "groups": ["a", "b", "c"],
        "admin": true,
        "beta": false,
        "level": 7,
        "ratio": 1.5,
        "big": 12345678901234i64,
        "negative": -3,
        "address": {"locality": "Delft", "country": "NL"},
        "mixed": [{"a": 1}, 2],
        "scalars": ["x", 1, true, null, false],
        "nick name": "Zoë",
        "city/town": "Den Haag",
        "nullish": null,
        "multiline": "line1\r\nX-Injected: yes",
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

async fn logged_in(options: Options, user: &str) -> (Harness, Browser, Echo) {
    let h = Harness::with(options).await;
    h.op.set_user_claims(user, rich_claims());
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/", user).await).await;
    (h, b, echo)
}

fn only(echo: &Echo, name: &str) -> String {
    let values = echo.headers(name);
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    values.into_iter().next().unwrap()
}

#[tokio::test]
async fn every_claim_becomes_one_header_with_the_spec_value_rules() {
    let (h, b, echo) = logged_in(Options::default(), "zoe").await;
    let names = echo.names();
    let expect = [
        ("oidc_claim_sub", "zoe"),
        ("oidc_claim_aud", "gateway"),
        ("oidc_claim_email", "zoe@example.com"),
        ("oidc_claim_email_verified", "1"),
        ("oidc_claim_name", "Zoe"),
        ("oidc_claim_preferred_username", "zoe"),
        ("oidc_claim_locale", "en-US"),
        ("oidc_claim_groups", "a,b,c"),
        ("oidc_claim_admin", "1"),
        ("oidc_claim_beta", "0"),
        ("oidc_claim_level", "7"),
        ("oidc_claim_ratio", "1.5"),
        ("oidc_claim_big", "12345678901234"),
        ("oidc_claim_negative", "-3"),
        (
            "oidc_claim_address",
            r#"{"country":"NL","locality":"Delft"}"#,
        ),
        ("oidc_claim_mixed", r#"[{"a":1},2]"#),
        ("oidc_claim_scalars", "x,1,1,0"),
        ("oidc_claim_nick-name", "Zoë"),
        ("oidc_claim_city-town", "Den Haag"),
        ("oidc_claim_multiline", "line1  X-Injected: yes"),
    ];
    for (name, value) in expect {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
        assert_eq!(only(&echo, name), value, "{name}");
    }
    assert_eq!(only(&echo, "oidc_claim_iss"), h.op.issuer());
    for numeric in ["oidc_claim_iat", "oidc_claim_exp", "oidc_claim_auth_time"] {
        let v = only(&echo, numeric);
        assert!(v.parse::<i64>().is_ok(), "{numeric} is decimal: {v}");
    }
    for present in ["oidc_claim_nonce", "oidc_claim_sid", "oidc_claim_at_hash"] {
        assert!(!only(&echo, present).is_empty(), "{present}");
    }
    assert!(
        echo.header("oidc_claim_nullish").is_none(),
        "null sends nothing"
    );
    assert!(echo.header("x-injected").is_none(), "no header injection");

    // Access token and its expiry: the session's, as the info hook reports them.
    let info = h.info(&b).await;
    assert_eq!(
        only(&echo, "oidc_access_token"),
        info["access_token"].as_str().unwrap()
    );
    let expires = only(&echo, "oidc_access_token_expires");
    assert_eq!(expires, info["access_token_expires"].as_str().unwrap());
    let expires: i64 = expires.parse().expect("decimal epoch seconds");
    let now = h.clock.now();
    assert!(
        (now + 290..=now + 300).contains(&expires),
        "{expires} vs {now}"
    );

    // Off by default: the token headers and the remote user header.
    for absent in [
        "oidc_id_token",
        "oidc_id_token_payload",
        "oidc_userinfo_json",
        "oidc_refresh_token",
        "x-remote-user",
        "remote_user",
    ] {
        assert!(echo.header(absent).is_none(), "{absent}");
    }
}

#[tokio::test]
async fn optional_token_headers_and_remote_user_when_configured() {
    let (h, b, echo) = logged_in(
        Options {
            headers: r#"
pass_id_token = ["claims", "payload", "serialized"]
pass_userinfo = ["claims", "json"]
pass_refresh_token = true
remote_user_header = "X-Remote-User"
remote_user_claim = "email"
"#
            .into(),
            hooks: r#"info = ["access_token", "id_token", "userinfo", "refresh_token"]"#.into(),
            ..Options::default()
        },
        "zoe",
    )
    .await;
    let info = h.info(&b).await;

    let payload: Value = serde_json::from_str(&only(&echo, "oidc_id_token_payload")).unwrap();
    assert_eq!(payload, info["id_token"]);
    assert_eq!(payload["sub"], "zoe");
    assert_eq!(payload["groups"], json!(["a", "b", "c"]));

    let serialized = only(&echo, "oidc_id_token");
    let parts: Vec<&str> = serialized.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert!(header["kid"].is_string());
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(
        claims, payload,
        "the serialized token is the one whose claims we pass"
    );

    let userinfo: Value = serde_json::from_str(&only(&echo, "oidc_userinfo_json")).unwrap();
    assert_eq!(userinfo, info["userinfo"]);
    assert_eq!(userinfo["sub"], "zoe");
    assert_eq!(userinfo["locale"], "en-US");

    assert_eq!(
        only(&echo, "oidc_refresh_token"),
        info["refresh_token"].as_str().unwrap()
    );
    assert!(!only(&echo, "oidc_refresh_token").is_empty());
    assert_eq!(only(&echo, "x-remote-user"), "zoe@example.com");
    assert_eq!(only(&echo, "oidc_claim_sub"), "zoe");
}

#[tokio::test]
async fn nothing_is_passed_that_is_switched_off() {
    let (_h, _b, echo) = logged_in(
        Options {
            headers: r#"
pass_access_token = false
pass_id_token = ["serialized"]
pass_userinfo = ["json"]
"#
            .into(),
            ..Options::default()
        },
        "zoe",
    )
    .await;
    let names = echo.names();
    assert!(
        !names.iter().any(|n| n.starts_with("oidc_claim_")),
        "{names:?}"
    );
    assert!(echo.header("oidc_access_token").is_none());
    assert!(echo.header("oidc_access_token_expires").is_none());
    assert!(echo.header("oidc_id_token_payload").is_none());
    assert_eq!(only(&echo, "oidc_id_token").split('.').count(), 3);
    let userinfo: Value = serde_json::from_str(&only(&echo, "oidc_userinfo_json")).unwrap();
    assert_eq!(userinfo["sub"], "zoe");
}

#[tokio::test]
async fn custom_claim_prefix_and_delimiter() {
    let (_h, _b, echo) = logged_in(
        Options {
            headers: r#"
claim_prefix = "X-User-"
claim_delimiter = "; "
"#
            .into(),
            ..Options::default()
        },
        "zoe",
    )
    .await;
    assert_eq!(only(&echo, "x-user-sub"), "zoe");
    assert_eq!(only(&echo, "x-user-groups"), "a; b; c");
    assert!(echo.header("oidc_claim_sub").is_none());
    assert!(echo.header("oidc_access_token").is_some());
}

/// The raw bytes of the first request head the raw upstream saw after a login as `user`.
async fn raw_head_after_login(headers: &str, user: &str) -> (Harness, Browser, Vec<u8>) {
    let (upstream, mut heads) = start_raw_upstream().await;
    let h = Harness::with(Options {
        headers: headers.into(),
        upstream: Some(upstream),
        ..Options::default()
    })
    .await;
    let mut claims = Map::new();
    claims.insert("nick".into(), json!("Zoë"));
    claims.insert("kanji".into(), json!("日本"));
    claims.insert("groups".into(), json!(["a", "b"]));
    h.op.set_user_claims(user, claims);
    let b = Browser::new();
    let r = h.login(&b, "/", user).await;
    assert_eq!(r.status(), StatusCode::OK);
    let head = heads.recv().await.unwrap();
    (h, b, head)
}

fn one_raw(head: &[u8], name: &str) -> Vec<u8> {
    let values = raw_header(head, name);
    assert_eq!(values.len(), 1, "{name}");
    values.into_iter().next().unwrap()
}

#[tokio::test]
async fn encoding_none_sends_utf8() {
    let (_h, _b, head) = raw_head_after_login("", "zoe").await;
    assert_eq!(one_raw(&head, "oidc_claim_nick"), "Zoë".as_bytes());
    assert_eq!(one_raw(&head, "oidc_claim_kanji"), "日本".as_bytes());
    assert_eq!(one_raw(&head, "oidc_claim_groups"), b"a,b");
}

#[tokio::test]
async fn encoding_latin1_sends_iso_8859_1_bytes() {
    let (_h, _b, head) = raw_head_after_login(r#"encoding = "latin1""#, "zoe").await;
    assert_eq!(one_raw(&head, "oidc_claim_nick"), b"Zo\xeb");
    assert_eq!(
        one_raw(&head, "oidc_claim_kanji"),
        b"??",
        "unmappable characters"
    );
    assert_eq!(one_raw(&head, "oidc_claim_sub"), b"zoe");
    assert_eq!(one_raw(&head, "oidc_claim_groups"), b"a,b");
}

#[tokio::test]
async fn encoding_base64url_applies_to_every_value() {
    let (h, b, head) = raw_head_after_login(r#"encoding = "base64url""#, "zoe").await;
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s).into_bytes();
    assert_eq!(one_raw(&head, "oidc_claim_nick"), b64("Zoë"));
    assert_eq!(one_raw(&head, "oidc_claim_kanji"), b64("日本"));
    assert_eq!(one_raw(&head, "oidc_claim_sub"), b64("zoe"));
    assert_eq!(one_raw(&head, "oidc_claim_groups"), b64("a,b"));
    assert_eq!(one_raw(&head, "oidc_claim_email_verified"), b64("1"));
    let info = h.info(&b).await;
    assert_eq!(
        one_raw(&head, "oidc_access_token"),
        b64(info["access_token"].as_str().unwrap())
    );
    assert_eq!(
        one_raw(&head, "oidc_access_token_expires"),
        b64(info["access_token_expires"].as_str().unwrap())
    );
}

/// Client-sent headers that only the gateway may set (remote_user_header = X-Remote-User).
const SPOOFED: &[(&str, &str)] = &[
    ("OIDC_CLAIM_sub", "mallory"),
    ("oidc-claim-sub", "mallory"),
    ("Oidc-Claim-Email", "mallory@evil.test"),
    ("OIDC_CLAIM_groups", "admins"),
    ("oidc_claim_new_claim", "spoof"),
    ("OIDC_access_token", "forged-token"),
    ("oidc-access-token", "forged-token"),
    ("OIDC_access_token_expires", "9999999999"),
    ("OIDC_id_token", "forged.id.token"),
    ("OIDC_id_token_payload", "{\"sub\":\"mallory\"}"),
    ("OIDC_userinfo_json", "{\"sub\":\"mallory\"}"),
    ("OIDC_refresh_token", "forged-refresh"),
    ("oidc_anything", "spoof"),
    ("X-Remote-User", "mallory"),
    ("x_remote_user", "mallory"),
    ("X-REMOTE-USER", "mallory"),
];

/// Look-alikes that are not reserved and must reach the upstream untouched.
const KEPT: &[(&str, &str)] = &[
    ("X-Remote-User-Agent", "kept-1"),
    ("X-OIDC-Thing", "kept-2"),
    ("OIDCX", "kept-3"),
];

async fn spoofed_get(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> Echo {
    let mut req = client.get(url).header("accept", "*/*");
    for (k, v) in SPOOFED.iter().chain(KEPT) {
        req = req.header(*k, *v);
    }
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    Echo::of(req.send().await.unwrap()).await
}

fn assert_scrubbed(echo: &Echo, what: &str, user: Option<&str>) {
    let pairs = echo.0["headers"].as_array().unwrap();
    for pair in pairs {
        let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        for (_, spoof) in SPOOFED {
            assert_ne!(value, *spoof, "{what}: spoofed {name} reached the upstream");
        }
    }
    for (name, value) in KEPT {
        assert_eq!(
            echo.headers(name),
            vec![value.to_string()],
            "{what}: {name} kept"
        );
    }
    match user {
        None => {
            let names = echo.names();
            assert!(
                !names
                    .iter()
                    .any(|n| n.starts_with("oidc_") || n == "x-remote-user"),
                "{what}: anonymous request has no identity headers: {names:?}"
            );
        }
        Some(user) => {
            assert_eq!(echo.headers("oidc_claim_sub"), vec![user], "{what}");
            assert_eq!(echo.headers("x-remote-user"), vec![user], "{what}");
            assert_eq!(echo.headers("oidc_access_token").len(), 1, "{what}");
            assert!(echo.header("oidc_claim_new_claim").is_none(), "{what}");
            assert!(echo.header("oidc_anything").is_none(), "{what}");
        }
    }
}

#[tokio::test]
async fn spoofed_identity_headers_are_removed_on_every_route_kind() {
    let h = Harness::with(Options {
        headers: r#"remote_user_header = "X-Remote-User""#.into(),
        ..Options::default()
    })
    .await;
    let anonymous = Browser::new();
    let echo = spoofed_get(&anonymous.client, &h.url("/public/x"), None).await;
    assert_scrubbed(&echo, "auth = none", None);
    let echo = spoofed_get(&anonymous.client, &h.url("/pass/x"), None).await;
    assert_scrubbed(&echo, "unauth_action = pass, no session", None);

    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    for (what, path) in [
        ("openid-connect", "/x"),
        ("unauth_action = pass, session", "/pass/x"),
        ("unauth_action = 401, session", "/strict/x"),
    ] {
        let echo = spoofed_get(&b.client, &h.url(path), None).await;
        assert_scrubbed(&echo, what, Some("alice"));
    }
    // auth = none with a session cookie: still anonymous, still scrubbed.
    let echo = spoofed_get(&b.client, &h.url("/public/x"), None).await;
    assert_scrubbed(&echo, "auth = none, session", None);

    // oauth20: a bearer token's identity, never the client's headers.
    let token = h.op.issue_access_token("alice", "openid profile", 300);
    let echo = spoofed_get(&anonymous.client, &h.url("/api/x"), Some(&token)).await;
    assert_scrubbed(&echo, "oauth20", Some("alice"));
    assert_eq!(echo.headers("oidc_access_token"), vec![token]);
}

#[tokio::test]
async fn a_custom_claim_prefix_is_scrubbed_too() {
    let h = Harness::with(Options {
        headers: r#"claim_prefix = "X-User-""#.into(),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let r = b
        .client
        .get(h.url("/public/x"))
        .header("X-User-Sub", "mallory")
        .header("x_user_groups", "admins")
        .header("OIDC_CLAIM_sub", "mallory")
        .header("X-Userland", "kept")
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    assert!(echo.header("x-user-sub").is_none());
    assert!(echo.header("x_user_groups").is_none());
    assert!(echo.header("oidc_claim_sub").is_none());
    assert_eq!(echo.header("x-userland").as_deref(), Some("kept"));
}

#[tokio::test]
async fn the_gateways_own_cookies_never_reach_the_upstream() {
    let h = Harness::start().await;
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    let session = b
        .cookie_value(&h.base, "oidc_session")
        .expect("session cookie");
    let cookie = format!(
        "theme=dark; oidc_session={session}; oidc_state_abc=leftover; lang=nl; \
         oidc_session_7=stray; oidc_session_chunks=2; oidc_sessionx=other-app"
    );
    for path in ["/x", "/pass/x", "/public/x"] {
        let echo = Echo::of(get_with_cookie(&h.url(path), &cookie).await).await;
        assert_eq!(
            echo.headers("cookie"),
            vec!["theme=dark; lang=nl; oidc_sessionx=other-app".to_string()],
            "{path}"
        );
    }
    let echo = Echo::of(get_with_cookie(&h.url("/x"), &cookie).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));

    // Only our cookies: no Cookie header at all.
    let echo =
        Echo::of(get_with_cookie(&h.url("/x"), &format!("oidc_session={session}")).await).await;
    assert!(
        echo.header("cookie").is_none(),
        "{:?}",
        echo.headers("cookie")
    );

    // Other cookies sent in several Cookie headers are all kept.
    let r = b
        .client
        .get(h.url("/public/x"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    let sent = echo.headers("cookie").join("; ");
    assert!(sent.contains("a=1") && sent.contains("b=2"), "{sent}");
    assert!(!sent.contains("oidc_session"), "{sent}");
}

#[tokio::test]
async fn a_connection_header_cannot_strip_the_gateways_headers() {
    // Headers named in `Connection` are hop-by-hop and dropped before forwarding; a client
    // must not be able to use that to remove the identity headers the gateway adds.
    let h = Harness::with(Options {
        headers: r#"remote_user_header = "X-Remote-User""#.into(),
        ..Options::default()
    })
    .await;
    h.op.set_user_claims("zoe", rich_claims());
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "zoe").await).await;
    let r = b
        .client
        .get(h.url("/x"))
        .header(
            "connection",
            "keep-alive, OIDC_CLAIM_groups, oidc_claim_sub, OIDC_access_token, \
             oidc_access_token_expires, X-Remote-User, X-Forwarded-For, x-hop",
        )
        .header("x-hop", "1")
        .send()
        .await
        .unwrap();
    let echo = Echo::of(r).await;
    assert_eq!(echo.headers("oidc_claim_groups"), vec!["a,b,c"]);
    assert_eq!(echo.headers("oidc_claim_sub"), vec!["zoe"]);
    assert_eq!(echo.headers("x-remote-user"), vec!["zoe"]);
    assert_eq!(echo.headers("oidc_access_token").len(), 1);
    assert_eq!(echo.headers("oidc_access_token_expires").len(), 1);
    assert_eq!(echo.headers("x-forwarded-for"), vec!["127.0.0.1"]);
    assert!(
        echo.header("x-hop").is_none(),
        "a client's own hop header still goes"
    );
}
