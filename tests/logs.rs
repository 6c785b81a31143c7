//! docs/behaviour.md §12: logs never contain a token, secret, code or cookie value. One test captures
//! everything logged (TRACE, every target) through a whole login, a refresh, proxied and
//! bearer requests, a refused login, a tampered cookie and a logout, then searches the
//! capture for every secret that passed by.

mod common;
use common::*;
use devop::Tamper;
use reqwest::StatusCode;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// A shared in-memory log sink.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{name} in {url}"))
}

/// A named secret and its value; values shorter than 8 characters would match by chance.
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: &str) {
        assert!(
            value.len() >= 8,
            "{what} is too short to search for: {value:?}"
        );
        self.0.push((what.to_string(), value.to_string()));
    }

    /// A token and, for JWTs, each of its segments (a log might print one part).
    fn add_token(&mut self, what: &str, value: &str) {
        self.add(what, value);
        if value.matches('.').count() == 2 {
            for (i, part) in value.split('.').enumerate() {
                if part.len() >= 16 {
                    self.add(&format!("{what} segment {i}"), part);
                }
            }
        }
    }

    /// A cookie value and a 24-character piece of its middle (a log might truncate).
    fn add_cookie(&mut self, what: &str, value: &str) {
        self.add(what, value);
        let mid = value.len() / 2;
        self.add(&format!("{what} (middle)"), &value[mid - 12..mid + 12]);
    }
}

#[tokio::test]
async fn no_token_code_secret_or_cookie_value_is_ever_logged() {
    let capture = Capture::default();
    // Everything at TRACE except the test's own HTTP client (reqwest and its cookie jar,
    // which logs the cookies it stores): those are the browser's logs, not the gateway's.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,cookie_store=off,reqwest=off",
        ))
        .with_ansi(false)
        .with_writer(capture.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let h = Harness::with(Options {
        headers: r#"
pass_id_token = ["claims", "serialized"]
pass_refresh_token = true
"#
        .into(),
        ..Options::default()
    })
    .await;
    let mut secrets = Secrets(Vec::new());
    secrets.add("client secret", "gateway-secret");
    secrets.add("passphrase", PASSPHRASE);

    // A whole login, step by step, collecting what passes by.
    let b = Browser::new();
    let start = b.get(&h.url("/app?x=1")).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let state_cookie = set_cookies(&start)[0].clone();
    let state_value = state_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1;
    secrets.add_cookie("state cookie", state_value);
    let authorize = location(&start);
    let callback = h.authorize(&b, &authorize, "alice").await;
    secrets.add("authorization code", &query_param(&callback, "code"));
    let r = b.get(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let session = b.cookie_value(&h.base, "oidc_session").unwrap();
    secrets.add_cookie("session cookie", &session);

    let echo = Echo::of(b.get(&h.url("/app?x=1")).await).await;
    secrets.add("access token", &echo.header("oidc_access_token").unwrap());
    secrets.add("refresh token", &echo.header("oidc_refresh_token").unwrap());
    secrets.add_token("ID token", &echo.header("oidc_id_token").unwrap());

    // Automatic refresh: new tokens and a new cookie.
    h.clock.advance(280);
    let echo = Echo::of(b.get(&h.url("/app")).await).await;
    let refreshed = echo.header("oidc_access_token").unwrap();
    assert_ne!(
        refreshed,
        secrets.0.iter().find(|s| s.0 == "access token").unwrap().1
    );
    secrets.add("refreshed access token", &refreshed);
    secrets.add(
        "rotated refresh token",
        &echo.header("oidc_refresh_token").unwrap(),
    );
    secrets.add_token("refreshed ID token", &echo.header("oidc_id_token").unwrap());
    let session = b.cookie_value(&h.base, "oidc_session").unwrap();
    secrets.add_cookie("refreshed session cookie", &session);

    // The info hook prints the token to its caller, never to the log.
    let info = h.info(&b).await;
    assert_eq!(info["access_token"], refreshed.as_str());

    // A bearer-token route.
    let bearer = h.op.issue_access_token("bob", "openid profile", 300);
    secrets.add("bearer token", &bearer);
    let r = b
        .client
        .get(h.url("/api/thing"))
        .header("authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = b
        .client
        .get(h.url("/api/thing"))
        .header("authorization", "Bearer not-a-valid-token-xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    secrets.add("invalid bearer token", "not-a-valid-token-xyz");

    // A tampered cookie, refused.
    let tampered = tamper_session_cookie(&b.cookie_header(&h.base));
    let r = get_with_cookie(&h.url("/app"), &tampered).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let tampered_value = tampered
        .split("; ")
        .find_map(|p| p.strip_prefix("oidc_session="))
        .unwrap()
        .to_string();
    secrets.add_cookie("tampered cookie", &tampered_value);

    // A login refused for a bad ID token signature.
    h.op.set_tamper(Some(Tamper::BadSignature));
    let other = Browser::new();
    let authorize = h.start_login(&other, "/app").await;
    let callback = h.authorize(&other, &authorize, "alice").await;
    secrets.add("refused code", &query_param(&callback, "code"));
    assert_eq!(other.get(&callback).await.status(), StatusCode::BAD_GATEWAY);
    h.op.set_tamper(None);

    // Logout: revocation and the end_session redirect carry tokens.
    let r = b
        .get(&h.url("/oauth2/callback?logout=%2Fpublic%2Fbye"))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(h.op.counters().revocations, 1);

    let logs = capture.text();
    assert!(logs.contains("login completed"), "capture works:\n{logs}");
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "all levels captured"
    );
    let leaked: Vec<String> = secrets
        .0
        .iter()
        .filter(|(_, value)| logs.contains(value.as_str()))
        .map(|(what, value)| {
            let line = logs.lines().find(|l| l.contains(value.as_str())).unwrap();
            format!("{what}: {line}")
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "secrets in the logs:\n{}",
        leaked.join("\n")
    );
}
