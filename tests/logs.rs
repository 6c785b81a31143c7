//! docs/behaviour.md §12.4: logs never contain a token, secret, code or cookie value. One test captures
//! everything logged (TRACE, every target), in the text and the JSON format at once (the
//! gateway's own formatting layers), through a whole login, a refresh, proxied and bearer
//! requests, a refused login, a tampered cookie and a logout, then searches the captures for
//! every secret that passed by. It runs the flow twice: with the access log off (no access
//! line), then on with `hash_sub` (every JSON line valid, one access line per request with
//! its fields, paths without their query, `sub` hashed), with token-looking query values.

mod common;
use common::*;
use devop::Tamper;
use oidc_gateway::config::LogFormat;
use oidc_gateway::observe::{fmt_layer, ACCESS_TARGET};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// What was written from byte `from` on.
    fn since(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[from..]).into_owned()
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

    /// The secrets (name, value) found in `logs`, each with the first line holding it.
    fn leaked(&self, logs: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, value)| logs.contains(value.as_str()))
            .map(|(what, value)| {
                let line = logs.lines().find(|l| l.contains(value.as_str())).unwrap();
                format!("{what}: {line}")
            })
            .collect()
    }
}

/// Query values that look like tokens; the access log shows paths without their query.
const QUERY_SECRETS: [&str; 3] = [
    "query-access-token-5f2b9c1e7a3d4b6f",
    "query-code-8c4e2a6b1d3f5a7c9e0b",
    "query-token-3a7d9f1b5c2e4a6d8f0c",
];

/// X-Request-Ids the client got back, by what the request was.
#[derive(Default)]
struct Ids(Vec<(&'static str, String)>);

impl Ids {
    fn keep(&mut self, what: &'static str, r: &reqwest::Response) {
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        self.0.push((what, id));
    }

    fn of(&self, what: &str) -> &str {
        &self.0.iter().find(|(w, _)| *w == what).unwrap().1
    }
}

/// A whole login, refresh, bearer requests, refused and tampered requests and a logout,
/// against a gateway with `log` as its `[log]` section. Returns every secret that passed by
/// and the request ids of some requests.
async fn flow(log: &str) -> (Secrets, Ids) {
    let h = Harness::with(Options {
        headers: r#"
pass_id_token = ["claims", "serialized"]
pass_refresh_token = true
"#
        .into(),
        log: log.into(),
        ..Options::default()
    })
    .await;
    let mut secrets = Secrets(Vec::new());
    let mut ids = Ids::default();
    secrets.add("client secret", "gateway-secret");
    secrets.add("passphrase", PASSPHRASE);

    // A whole login, step by step, collecting what passes by.
    let b = Browser::new();
    let start = b.get(&h.url("/app?x=1")).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    ids.keep("login start", &start);
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
    ids.keep("callback", &r);
    let session = b.cookie_value(&h.base, "oidc_session").unwrap();
    secrets.add_cookie("session cookie", &session);

    let echo = Echo::of(b.get(&h.url("/app?x=1")).await).await;
    secrets.add("access token", &echo.header("oidc_access_token").unwrap());
    secrets.add("refresh token", &echo.header("oidc_refresh_token").unwrap());
    secrets.add_token("ID token", &echo.header("oidc_id_token").unwrap());

    // Token-looking query values, on a logged-in route, an open one and a refused one.
    for value in QUERY_SECRETS {
        secrets.add("query value", value);
    }
    let r = b
        .get(&h.url(&format!("/app/q?access_token={}", QUERY_SECRETS[0])))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    ids.keep("logged in with a query", &r);
    let r = b
        .get(&h.url(&format!("/public/q?code={}", QUERY_SECRETS[1])))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    ids.keep("open with a query", &r);
    let r = Browser::new()
        .get(&h.url(&format!("/strict/q?token={}", QUERY_SECRETS[2])))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    ids.keep("no session", &r);

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
    ids.keep("bearer", &r);
    let r = b
        .client
        .get(h.url("/api/thing"))
        .header("authorization", "Bearer not-a-valid-token-xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    ids.keep("invalid bearer", &r);
    secrets.add("invalid bearer token", "not-a-valid-token-xyz");

    // A tampered cookie, refused.
    let tampered = tamper_session_cookie(&b.cookie_header(&h.base));
    let r = get_with_cookie(&h.url("/app"), &tampered).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    ids.keep("tampered", &r);
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
    (secrets, ids)
}

fn sha256_prefix(s: &str) -> String {
    Sha256::digest(s.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every line of a JSON capture, parsed (each must be one JSON object).
fn json_lines(capture: &str) -> Vec<Value> {
    capture
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

fn access_lines(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["target"] == ACCESS_TARGET)
        .collect()
}

#[tokio::test]
async fn no_token_code_secret_or_cookie_value_is_ever_logged() {
    let text = Capture::default();
    let json = Capture::default();
    // Everything at TRACE except the test's own HTTP client (reqwest and its cookie jar,
    // which logs the cookies it stores): those are the browser's logs, not the gateway's.
    // Both of the gateway's formats at once.
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "trace,cookie_store=off,reqwest=off",
        ))
        .with(fmt_layer(LogFormat::Text, text.clone(), false))
        .with(fmt_layer(LogFormat::Json, json.clone(), false))
        .try_init()
        .expect("the only subscriber of this test binary");

    // 1. The access log off (the default).
    let (secrets, _) = flow("").await;
    let logs = text.text();
    assert!(logs.contains("login completed"), "capture works:\n{logs}");
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "all levels captured"
    );
    let first = json_lines(&json.text());
    assert!(first.iter().any(|l| l["message"] == "login completed"));
    assert!(
        access_lines(&first).is_empty(),
        "no access line with access = false"
    );
    for (format, logs) in [("text", logs), ("JSON", json.text())] {
        let leaked = secrets.leaked(&logs);
        assert!(
            leaked.is_empty(),
            "secrets in the {format} logs:\n{}",
            leaked.join("\n")
        );
    }

    // 2. The access log on, `sub` hashed.
    let (text_from, json_from) = (text.len(), json.len());
    let (secrets, ids) = flow("access = true\nhash_sub = true").await;
    let lines = json_lines(&json.since(json_from));
    let access = access_lines(&lines);
    // The 14 requests the flow sends to the gateway.
    assert_eq!(access.len(), 14, "one line per request: {access:#?}");
    let (alice, bob) = (sha256_prefix("alice"), sha256_prefix("bob"));
    for line in &access {
        assert_eq!(line["level"], "INFO", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
        for field in ["request_id", "method", "path"] {
            assert!(
                line[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field}: {line}"
            );
        }
        assert!(!line["path"].as_str().unwrap().contains('?'), "{line}");
        assert!(line["status"].is_u64(), "{line}");
        assert!(line["duration_ms"].is_f64(), "{line}");
        match line.get("sub") {
            None => {}
            Some(sub) => assert!(sub == &alice || sub == &bob, "sub hashed: {line}"),
        }
    }
    let by_id = |what: &str| {
        let id = ids.of(what);
        let found: Vec<_> = access
            .iter()
            .filter(|l| l["request_id"] == id)
            .copied()
            .collect();
        assert_eq!(found.len(), 1, "{what}: one access line for {id}");
        found[0].clone()
    };
    let line = by_id("open with a query");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/public/q");
    assert_eq!(line["route"], "/public");
    assert_eq!(line["auth"], "none");
    assert_eq!(line["status"], 200);
    assert!(line["bytes"].is_u64(), "{line}");
    assert!(line["upstream_ms"].is_f64(), "{line}");
    assert!(
        line.get("sub").is_none() && line.get("reason").is_none(),
        "{line}"
    );
    let line = by_id("logged in with a query");
    assert_eq!(line["path"], "/app/q");
    assert_eq!(line["route"], "/");
    assert_eq!(line["auth"], "openid-connect");
    assert_eq!(line["sub"], alice.as_str());
    let line = by_id("bearer");
    assert_eq!(line["auth"], "oauth20");
    assert_eq!(line["sub"], bob.as_str());
    let line = by_id("no session");
    assert_eq!(line["path"], "/strict/q");
    assert_eq!(line["status"], 401);
    assert_eq!(line["reason"], "no session");
    assert!(line.get("upstream_ms").is_none(), "{line}");
    let line = by_id("invalid bearer");
    assert_eq!(line["reason"], "bearer token refused: invalid_token");
    let line = by_id("tampered");
    assert_eq!(line["reason"], "session cookie refused: does not open");
    let line = by_id("login start");
    assert_eq!(
        (line["status"].as_u64(), &line["reason"]),
        (Some(302), &Value::from("no session"))
    );
    let line = by_id("callback");
    assert_eq!(line["path"], "/oauth2/callback");
    assert_eq!(line["auth"], "hook");
    assert!(line.get("route").is_none(), "{line}");

    // The text format's access lines.
    let logs = text.since(text_from);
    let id = ids.of("open with a query");
    let line = logs
        .lines()
        .find(|l| l.contains(id) && l.contains(ACCESS_TARGET))
        .unwrap_or_else(|| panic!("a text access line for {id}:\n{logs}"));
    for part in [
        " INFO oidc_gateway::access: ",
        &format!(
            "request_id={id} method=GET path=/public/q route=/public auth=none status=200 bytes="
        ),
        " duration_ms=",
        " upstream_ms=",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    eprintln!("text access line: {line}");
    let id = ids.of("logged in with a query");
    let raw = json.since(json_from);
    let line = raw
        .lines()
        .find(|l| l.contains(id) && l.contains(ACCESS_TARGET));
    eprintln!("JSON access line: {}", line.unwrap());
    assert!(!logs
        .lines()
        .any(|l| l.contains(ACCESS_TARGET) && l.contains("sub=\"alice\"")));

    for (format, logs) in [("text", logs), ("JSON", json.since(json_from))] {
        let leaked = secrets.leaked(&logs);
        assert!(
            leaked.is_empty(),
            "secrets in the {format} logs (access log on):\n{}",
            leaked.join("\n")
        );
    }
}
