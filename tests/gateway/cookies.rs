//! The session cookie (docs/behaviour.md §5): chunking of large sessions, every kind of unusable cookie
//! (tampered, truncated, garbage, wrong purpose, old key, chunk bombs) meaning "log in
//! again" with the bad cookie cleared and never a 5xx, passphrase rotation, timeouts, and
//! cookie attributes.

use crate::common::*;
use rand::RngCore;
use reqwest::{Response, StatusCode};
use serde_json::{json, Map};

/// Asserts `r` sends the browser to the OP (a fresh login) and expires each of `cleared`.
fn assert_fresh_login(r: &Response, h: &Harness, what: &str, cleared: &[&str]) {
    assert!(!r.status().is_server_error(), "{what}: {}", r.status());
    assert_eq!(r.status(), StatusCode::FOUND, "{what}");
    assert!(
        location(r).starts_with(&format!("{}/authorize?", h.op.issuer())),
        "{what}: {}",
        location(r)
    );
    for name in cleared {
        assert!(
            clears_cookie(r, name),
            "{what}: {name} cleared in {:?}",
            set_cookies(r)
        );
    }
    assert!(
        set_cookies(r)
            .iter()
            .any(|c| c.starts_with("oidc_state_") && !c.contains("Max-Age=0")),
        "{what}: a new login started"
    );
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_large_session_is_chunked_and_still_works() {
    let h = Harness::start().await;
    let groups: Vec<String> = (0..120)
        .map(|i| format!("g{i}-{}", random_hex(24)))
        .collect();
    let mut claims = Map::new();
    claims.insert("groups".into(), json!(groups));
    h.op.set_user_claims("bigbob", claims);
    let b = Browser::new();
    let authorize = h.start_login(&b, "/big").await;
    let callback = h.authorize(&b, &authorize, "bigbob").await;
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(
        set_cookie_for(&r, "oidc_session").is_none(),
        "not one cookie"
    );
    let count: usize = set_cookie_for(&r, "oidc_session_chunks")
        .expect("chunk count cookie")
        .trim_start_matches("oidc_session_chunks=")
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..=16).contains(&count), "{count} chunks");
    for i in 0..count {
        let c = set_cookie_for(&r, &format!("oidc_session_{i}")).expect("chunk cookie");
        let value = c.split(';').next().unwrap().split_once('=').unwrap().1;
        assert!(
            !value.is_empty() && value.len() <= 4000,
            "chunk {i}: {}",
            value.len()
        );
        for attr in ["Path=/", "HttpOnly", "SameSite=Lax"] {
            assert!(c.contains(attr), "{attr} in chunk {i}");
        }
    }
    assert!(set_cookie_for(&r, &format!("oidc_session_{count}")).is_none());

    let echo = Echo::of(b.get(&h.url("/big")).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("bigbob"));
    assert_eq!(
        echo.header("oidc_claim_groups").unwrap(),
        groups.join(","),
        "every group survives the round trip"
    );
    assert!(echo.header("cookie").is_none(), "chunks are not forwarded");

    // A missing chunk, or a chunk count that lies, is "no session".
    let all = b.cookies(&h.base);
    let without = |skip: &str| {
        all.iter()
            .filter(|(n, _)| n != skip)
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let r = get_with_cookie(&h.url("/big"), &without("oidc_session_1")).await;
    assert_fresh_login(
        &r,
        &h,
        "missing chunk",
        &["oidc_session_chunks", "oidc_session_0"],
    );
    let lying = format!(
        "{}; oidc_session_chunks={}",
        without("oidc_session_chunks"),
        count + 1
    );
    let r = get_with_cookie(&h.url("/big"), &lying).await;
    assert_fresh_login(&r, &h, "count too high", &["oidc_session_chunks"]);

    // Logout clears every chunk.
    let r = b
        .get(&h.url("/oauth2/callback?logout=%2Fpublic%2Fbye"))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(clears_cookie(&r, "oidc_session_chunks"));
    for i in 0..count {
        assert!(clears_cookie(&r, &format!("oidc_session_{i}")), "chunk {i}");
    }
}

/// Flips one base64url character of `v` at `at`.
fn flip(v: &str, at: usize) -> String {
    let mut bytes = v.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn unusable_session_cookies_mean_a_fresh_login_never_a_5xx() {
    let h = Harness::start().await;
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    let good = b.cookie_value(&h.base, "oidc_session").unwrap();
    assert_eq!(
        get_with_cookie(&h.url("/x"), &format!("oidc_session={good}"))
            .await
            .status(),
        StatusCode::OK
    );

    // A sealed value of the wrong purpose: a state cookie presented as a session.
    let other = Browser::new();
    let r = other.get(&h.url("/x")).await;
    let state_cookie = set_cookies(&r)[0].clone();
    let state_value = state_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();

    // A cookie sealed under another passphrase (another deployment, or a retired key).
    let (_other_gw, other_base) = h
        .another_gateway(Options {
            passphrases: Some(vec!["a-completely-different-passphrase".into()]),
            ..Options::default()
        })
        .await;
    let foreign = Browser::new();
    let r = foreign.get(&format!("{other_base}/x")).await;
    let authorize = location(&r);
    let callback = h.authorize(&foreign, &authorize, "alice").await;
    assert_eq!(foreign.get(&callback).await.status(), StatusCode::FOUND);
    let old_key = foreign.cookie_value(&other_base, "oidc_session").unwrap();
    assert_ne!(old_key, good);

    let n = good.len();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "tampered middle",
            format!("oidc_session={}", flip(&good, n / 2)),
            vec!["oidc_session"],
        ),
        (
            "tampered tag",
            format!("oidc_session={}", flip(&good, n - 1)),
            vec!["oidc_session"],
        ),
        (
            "tampered key id",
            format!("oidc_session={}", flip(&good, 2)),
            vec!["oidc_session"],
        ),
        (
            "truncated half",
            format!("oidc_session={}", &good[..n / 2]),
            vec!["oidc_session"],
        ),
        (
            "truncated one",
            format!("oidc_session={}", &good[..n - 1]),
            vec!["oidc_session"],
        ),
        (
            "extended",
            format!("oidc_session={good}AAAA"),
            vec!["oidc_session"],
        ),
        (
            "garbage",
            "oidc_session=garbage".into(),
            vec!["oidc_session"],
        ),
        (
            "not base64",
            "oidc_session=!!!***".into(),
            vec!["oidc_session"],
        ),
        ("empty", "oidc_session=".into(), vec!["oidc_session"]),
        (
            "huge",
            format!("oidc_session={}", "A".repeat(80_000)),
            vec!["oidc_session"],
        ),
        (
            "wrong purpose",
            format!("oidc_session={state_value}"),
            vec!["oidc_session"],
        ),
        (
            "old key",
            format!("oidc_session={old_key}"),
            vec!["oidc_session"],
        ),
        (
            "chunk bomb",
            "oidc_session_chunks=99999999; oidc_session_0=AAAA".into(),
            vec!["oidc_session_chunks", "oidc_session_0"],
        ),
        (
            "chunk count alone",
            "oidc_session_chunks=3".into(),
            vec!["oidc_session_chunks"],
        ),
        (
            "chunk count zero",
            "oidc_session_chunks=0; oidc_session_0=AAAA".into(),
            vec!["oidc_session_chunks"],
        ),
        (
            "chunk count 17",
            "oidc_session_chunks=17; oidc_session_0=AAAA".into(),
            vec!["oidc_session_chunks"],
        ),
        (
            "chunk count negative",
            "oidc_session_chunks=-1; oidc_session_0=AAAA".into(),
            vec!["oidc_session_chunks"],
        ),
        (
            "chunk count text",
            "oidc_session_chunks=two; oidc_session_0=AAAA".into(),
            vec!["oidc_session_chunks"],
        ),
        (
            "chunk missing",
            format!(
                "oidc_session_chunks=3; oidc_session_0={}; oidc_session_2={}",
                &good[..10],
                &good[10..20]
            ),
            vec!["oidc_session_chunks", "oidc_session_0", "oidc_session_2"],
        ),
        (
            "chunks of a good value, reordered",
            format!(
                "oidc_session_chunks=2; oidc_session_0={}; oidc_session_1={}",
                &good[n / 2..],
                &good[..n / 2]
            ),
            vec!["oidc_session_chunks", "oidc_session_0", "oidc_session_1"],
        ),
        (
            "chunk without count",
            "oidc_session_0=AAAA".into(),
            vec!["oidc_session_0"],
        ),
    ];
    for (what, cookie, cleared) in &cases {
        let r = get_with_cookie(&h.url("/x"), cookie).await;
        assert_fresh_login(&r, &h, what, cleared);
        assert_no_store(&r);

        // The same cookie elsewhere: anonymous pass-through, 401, hooks: never a 5xx.
        let r = get_with_cookie(&h.url("/pass/x"), cookie).await;
        assert_eq!(r.status(), StatusCode::OK, "{what} on pass");
        assert!(clears_cookie(&r, cleared[0]), "{what} cleared on pass");
        let echo = Echo::of(r).await;
        assert!(echo.header("oidc_claim_sub").is_none(), "{what}");
        assert!(echo.header("cookie").is_none(), "{what}: not forwarded");
        let r = get_with_cookie(&h.url("/strict/x"), cookie).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what} on strict");
        let r = get_with_cookie(&h.url("/oauth2/callback?info=json"), cookie).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what} on info");
        let r = get_with_cookie(&h.url("/oauth2/callback?logout=%2F"), cookie).await;
        assert!(
            !r.status().is_server_error(),
            "{what} on logout: {}",
            r.status()
        );
    }
    // The genuine cookie still works: nothing above disturbed it.
    let r = get_with_cookie(&h.url("/x"), &format!("oidc_session={good}")).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn passphrase_rotation_reads_old_cookies_and_writes_new_ones() {
    let h = Harness::start().await; // seals with PASSPHRASE
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    let old = format!(
        "oidc_session={}",
        b.cookie_value(&h.base, "oidc_session").unwrap()
    );
    let new_pass = "the-new-passphrase-0123456789".to_string();

    let (_rotated, rotated_base) = h
        .another_gateway(Options {
            passphrases: Some(vec![new_pass.clone(), PASSPHRASE.into()]),
            ..Options::default()
        })
        .await;
    let (_new_only, new_only_base) = h
        .another_gateway(Options {
            passphrases: Some(vec![new_pass.clone()]),
            ..Options::default()
        })
        .await;

    // [new, old] reads the old cookie; [new] alone does not.
    let echo = Echo::of(get_with_cookie(&format!("{rotated_base}/x"), &old).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    let r = get_with_cookie(&format!("{new_only_base}/x"), &old).await;
    assert_fresh_login(&r, &h, "old key after rotation finished", &["oidc_session"]);

    // When the rotated gateway re-seals the session, it uses the new key.
    h.clock.advance(31);
    let r = get_with_cookie(&format!("{rotated_base}/x"), &old).await;
    assert_eq!(r.status(), StatusCode::OK);
    let resealed = set_cookie_for(&r, "oidc_session").expect("session re-sealed");
    let resealed = resealed.split(';').next().unwrap().to_string();
    let echo = Echo::of(get_with_cookie(&format!("{new_only_base}/x"), &resealed).await).await;
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    let r = get_with_cookie(&h.url("/x"), &resealed).await;
    assert_fresh_login(
        &r,
        &h,
        "new key at a gateway that only knows the old",
        &["oidc_session"],
    );
}

#[tokio::test]
async fn an_idle_session_expires_after_inactivity_timeout() {
    let h = Harness::start().await; // inactivity_timeout 5m
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    h.clock.advance(299);
    assert_eq!(b.get(&h.url("/x")).await.status(), StatusCode::OK);
    // That request counted as activity.
    h.clock.advance(299);
    assert_eq!(b.get(&h.url("/x")).await.status(), StatusCode::OK);
    h.clock.advance(301);
    let r = b.get(&h.url("/x")).await;
    assert_fresh_login(&r, &h, "idle", &["oidc_session"]);
}

#[tokio::test]
async fn an_active_session_still_ends_at_max_duration() {
    let h = Harness::with(Options {
        session: r#"max_duration = "10m""#.into(),
        ..Options::default()
    })
    .await;
    h.op.set_access_token_ttl(3600);
    let b = Browser::new();
    Echo::of(h.login(&b, "/", "alice").await).await;
    for _ in 0..3 {
        h.clock.advance(200);
        assert_eq!(b.get(&h.url("/x")).await.status(), StatusCode::OK);
    }
    h.clock.advance(1);
    let r = b.get(&h.url("/x")).await;
    assert_fresh_login(&r, &h, "max_duration", &["oidc_session"]);
}

#[tokio::test]
async fn cookie_attributes_follow_same_site_and_the_scheme() {
    let h = Harness::with(Options {
        server: r#"trusted_proxies = ["127.0.0.1/32"]"#.into(),
        session: r#"same_site = "strict""#.into(),
        ..Options::default()
    })
    .await;
    let https_base = format!("https://{}", h.gw.addr());
    h.op.add_redirect_uri(&format!("{https_base}/oauth2/callback"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // As if a TLS-terminating proxy on loopback forwarded an https request.
    let r = client
        .get(h.url("/x"))
        .header("x-forwarded-proto", "https")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let authorize = location(&r);
    let q: std::collections::HashMap<String, String> = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["redirect_uri"], format!("{https_base}/oauth2/callback"));
    let state_cookie = set_cookies(&r)[0].clone();
    assert!(
        state_cookie.contains("SameSite=Lax"),
        "state cookie must survive the OP's redirect back: {state_cookie}"
    );
    assert!(state_cookie.contains("Secure"), "{state_cookie}");
    let state_pair = state_cookie.split(';').next().unwrap().to_string();

    let b = Browser::new();
    let callback = h.authorize(&b, &authorize, "alice").await;
    assert!(callback.starts_with(&https_base));
    let callback = callback.replacen(&https_base, &h.base, 1);
    let r = client
        .get(&callback)
        .header("x-forwarded-proto", "https")
        .header("cookie", &state_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "{}", r.status());
    let session = set_cookie_for(&r, "oidc_session").unwrap();
    for attr in ["Path=/", "HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(session.contains(attr), "{attr} in {session}");
    }
    let state_name = state_pair.split('=').next().unwrap();
    let cleared = set_cookie_for(&r, state_name).unwrap();
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Secure"),
        "{cleared}"
    );
}

#[tokio::test]
async fn the_memory_store_keeps_only_a_sealed_id_in_the_cookie() {
    let h = Harness::with(Options {
        session: r#"store = "memory""#.into(),
        headers: "pass_refresh_token = true".into(),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    let echo = Echo::of(h.login(&b, "/", "alice").await).await;
    let refresh_token = echo.header("oidc_refresh_token").unwrap();
    let cookie = b.cookie_value(&h.base, "oidc_session").unwrap();
    assert!(
        cookie.len() < 200,
        "an id, not a session: {} chars",
        cookie.len()
    );
    assert!(b.cookie_value(&h.base, "oidc_session_chunks").is_none());
    assert!(!cookie.contains(&refresh_token));
    let before = b.cookie_header(&h.base);

    let r = get_with_cookie(&h.url("/x"), &tamper_session_cookie(&before)).await;
    assert_fresh_login(&r, &h, "tampered id", &["oidc_session"]);

    let r = b
        .get(&h.url("/oauth2/callback?logout=%2Fpublic%2Fbye"))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(clears_cookie(&r, "oidc_session"));
    let r = get_with_cookie(&h.url("/x"), &before).await;
    assert_fresh_login(&r, &h, "replayed id after logout", &["oidc_session"]);
}
