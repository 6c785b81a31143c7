//! Hot reload of the configuration (docs/behaviour.md §2.1): a reload swaps routes, claim
//! rules and passphrases in, keeps the sessions and what did not change, lets in-flight
//! requests finish on the config they started with, and a bad file changes nothing. The
//! built binary reloads on SIGHUP and, with `run --watch`, when the file changes.
use crate::common::*;
use reqwest::StatusCode;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_oidc-gateway");

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oidc-gateway-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The harness's config text for `options`, as a file the gateway reloads from.
fn write_config(h: &Harness, path: &Path, options: &Options) {
    std::fs::write(path, toml(&h.op.issuer(), &h.echo.url(), options)).unwrap();
}

fn routes_with_extra() -> Options {
    Options {
        routes: Some(
            r#"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "openid-connect"

[[route]]
path = "/extra"
upstream = "{upstream}"
auth = "none"

[[route]]
path = "/admins"
upstream = "{upstream}"
auth = "openid-connect"
require_claims = ["groups:nobody"]
"#
            .into(),
        ),
        passphrases: Some(vec![
            "a-new-first-passphrase-0123456789".into(),
            PASSPHRASE.into(),
        ]),
        ..Options::default()
    }
}

#[tokio::test]
async fn a_reload_swaps_routes_rules_and_passphrases_and_keeps_sessions() {
    let h = Harness::start().await;
    let mut claims = serde_json::Map::new();
    claims.insert("groups".into(), serde_json::json!(["admins"]));
    h.op.set_user_claims("root", claims);
    let alice = Browser::new();
    assert_eq!(h.login(&alice, "/", "root").await.status(), StatusCode::OK);
    assert_eq!(alice.get(&h.url("/admins")).await.status(), StatusCode::OK);
    // Anonymous: /extra is under the "/" login route, /public is open.
    let anonymous = Browser::new();
    assert_eq!(
        anonymous.get(&h.url("/extra")).await.status(),
        StatusCode::FOUND
    );
    let public = h.url("/public/x");
    assert_eq!(anonymous.get(&public).await.status(), StatusCode::OK);
    assert_eq!(h.gw.gateway().services.generation, 1);

    let path = temp_file("swap.toml");
    write_config(&h, &path, &routes_with_extra());
    let generation =
        h.gw.reloader(&path)
            .reload()
            .await
            .expect("the file is valid");
    assert_eq!(generation, 2);
    assert_eq!(h.gw.gateway().services.generation, 2);

    // Routes: the new open one answers, the removed one falls under "/" (login).
    assert_eq!(
        anonymous.get(&h.url("/extra/y")).await.status(),
        StatusCode::OK
    );
    assert_eq!(anonymous.get(&public).await.status(), StatusCode::FOUND);
    // The session sealed with the old first passphrase still opens (it is kept second),
    // and the new claim rule applies to it at once.
    assert_eq!(alice.get(&h.url("/")).await.status(), StatusCode::OK);
    assert_eq!(
        alice.get(&h.url("/admins")).await.status(),
        StatusCode::FORBIDDEN
    );
    // A new login is sealed with the new first passphrase: a gateway that only knows the
    // old passphrase cannot open it.
    let bob = Browser::new();
    assert_eq!(h.login(&bob, "/", "bob").await.status(), StatusCode::OK);
    let (old_only, old_base) = h.another_gateway(Options::default()).await;
    let cookie = bob.cookie_header(&h.url("/"));
    let r = get_with_cookie(&format!("{old_base}/"), &cookie).await;
    assert_ne!(r.status(), StatusCode::OK, "sealed with the new passphrase");
    old_only.shutdown().await;
}

#[tokio::test]
async fn a_reload_keeps_memory_sessions_and_the_provider_when_unchanged() {
    let options = Options {
        session: r#"store = "memory""#.into(),
        ..Options::default()
    };
    let h = Harness::with(options).await;
    let alice = Browser::new();
    assert_eq!(h.login(&alice, "/", "alice").await.status(), StatusCode::OK);
    let jwks_fetches = h.op.counters().jwks;

    let path = temp_file("memory.toml");
    let mut changed = routes_with_extra();
    changed.session = r#"store = "memory""#.into();
    write_config(&h, &path, &changed);
    h.gw.reloader(&path).reload().await.expect("valid");
    // The memory store's session is still there.
    assert_eq!(alice.get(&h.url("/")).await.status(), StatusCode::OK);
    // An unchanged [provider] keeps its metadata and keys: nothing is fetched again (a new
    // provider warms up at once, see below).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.op.counters().jwks, jwks_fetches);

    // A changed [provider] is a new provider, loaded again.
    changed.provider = r#"auth_params = { prompt = "login" }"#.into();
    write_config(&h, &path, &changed);
    h.gw.reloader(&path).reload().await.expect("valid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.op.counters().jwks == jwks_fetches {
        assert!(
            Instant::now() < deadline,
            "the new provider never fetched the JWKS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = alice.get(&h.url("/")).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "sessions survive a provider reload"
    );
    let login = Browser::new().get(&h.url("/")).await;
    assert!(
        location(&login).contains("prompt=login"),
        "{}",
        location(&login)
    );
}

#[tokio::test]
async fn a_bad_file_changes_nothing_and_names_every_problem() {
    let h = Harness::with(Options {
        server: "\n[admin]\nlisten = \"127.0.0.1:0\"\n".into(),
        ..Options::default()
    })
    .await;
    let path = temp_file("bad.toml");
    let mut text = toml(&h.op.issuer(), &h.echo.url(), &routes_with_extra());
    text = text.replace("[oauth]", "[oauth]\nintrospection_cache = \"sometimes\"");
    text.push_str("\n[[route]]\npath = \"/broken\"\nupstream = \"ftp://nowhere\"\n");
    std::fs::write(&path, text).unwrap();
    let err =
        h.gw.reloader(&path)
            .reload()
            .await
            .expect_err("the file has problems");
    let message = err.to_string();
    assert!(message.contains("oauth.introspection_cache"), "{message}");
    assert!(
        message.contains("route[6].upstream") || message.contains("upstream"),
        "{message}"
    );
    // Nothing changed: same generation, same routes.
    assert_eq!(h.gw.gateway().services.generation, 1);
    let b = Browser::new();
    assert_eq!(b.get(&h.url("/public/x")).await.status(), StatusCode::OK);
    assert_eq!(b.get(&h.url("/extra")).await.status(), StatusCode::FOUND);
    // A missing file is refused the same way.
    let err =
        h.gw.reloader(&temp_file("does-not-exist.toml"))
            .reload()
            .await
            .expect_err("no file");
    assert!(!err.to_string().is_empty());
    let metrics = reqwest::get(format!("http://{}/metrics", h.gw.admin_addrs[0]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("oidc_gateway_config_generation 1"),
        "{metrics}"
    );
    // A good file: generation 2, in /readyz and /metrics.
    let good = temp_file("good.toml");
    write_config(&h, &good, &Options::default());
    assert_eq!(h.gw.reloader(&good).reload().await.unwrap(), 2);
    let admin = h.gw.admin_addrs[0];
    let ready: serde_json::Value = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["config"]["generation"], 2, "{ready}");
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("oidc_gateway_config_generation 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oidc_gateway_config_reloads_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oidc_gateway_config_reload_failures_total 2"),
        "{metrics}"
    );
}

/// A request that started before a reload finishes on its route even though the reload
/// removed it; the next request on the same path goes where the new config says.
#[tokio::test]
async fn in_flight_requests_finish_on_the_config_they_started_with() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that answers only when released.
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = slow.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = arrived_tx.send(());
        let _ = released.await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow")
            .await;
    });
    let h = Harness::with(Options {
        routes: Some(format!(
            "[[route]]\npath = \"/slow\"\nupstream = \"http://{slow_addr}\"\nauth = \"none\"\n\n\
             [[route]]\npath = \"/\"\nupstream = \"{{upstream}}\"\nauth = \"none\"\n"
        )),
        ..Options::default()
    })
    .await;
    let url = h.url("/slow/x");
    let in_flight = tokio::spawn(async move {
        let r = reqwest::get(url).await.unwrap();
        (r.status(), r.text().await.unwrap())
    });
    arrived
        .await
        .expect("the request reached the slow upstream");

    let path = temp_file("in-flight.toml");
    let without_slow = Options {
        routes: Some(
            "[[route]]\npath = \"/\"\nupstream = \"{upstream}\"\nauth = \"none\"\n".into(),
        ),
        ..Options::default()
    };
    write_config(&h, &path, &without_slow);
    h.gw.reloader(&path).reload().await.expect("valid");
    // The next request on the path goes to the echo upstream, under the new config.
    let r = Browser::new().get(&h.url("/slow/x")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(Echo::of(r).await.0["path"], "/slow/x");
    let _ = release.send(());
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "finished on the route it started on"
    );
    assert_eq!(body, "slow");
}

/// The built binary: lines of its stderr, collected by a thread.
struct Process {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    fn start(config: &Path, watch: bool) -> Process {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config"]).arg(config);
        if watch {
            cmd.arg("--watch");
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Process { child, lines }
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "never logged {text:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config for the built binary: one open route to the echo upstream at `prefix`, and a
/// provider that is never asked (no route needs login).
fn binary_config(port: u16, upstream: &str, prefix: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[provider]
issuer = "http://127.0.0.1:{closed}"
client_id = "gateway"
client_secret = "gateway-secret"
allow_http = true

[session]
passphrase = "{PASSPHRASE}"

[[route]]
path = "{prefix}"
upstream = "{upstream}"
auth = "none"
"#,
        closed = closed_port(),
    )
}

async fn wait_for_status(url: &str, want: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = reqwest::get(url).await.map(|r| r.status()).ok();
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never answered {want} (last {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The built binary on a config routing `/a` to the harness's echo upstream, once it
/// answers there: the harness, the process, the config file and `http://127.0.0.1:PORT`.
async fn binary_serving_a(file: &str, watch: bool) -> (Harness, Process, PathBuf, String) {
    let h = Harness::start().await;
    let port = closed_port();
    let path = temp_file(file);
    std::fs::write(&path, binary_config(port, &h.echo.url(), "/a")).unwrap();
    let gateway = Process::start(&path, watch);
    let base = format!("http://127.0.0.1:{port}");
    wait_for_status(&format!("{base}/a/1"), StatusCode::OK).await;
    (h, gateway, path, base)
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_binary_reloads_on_sighup_and_keeps_its_config_when_the_file_is_bad() {
    let (h, gateway, path, base) = binary_serving_a("sighup.toml", false).await;
    let port = port_of(&base);

    std::fs::write(&path, binary_config(port, &h.echo.url(), "/b")).unwrap();
    gateway.hangup();
    wait_for_status(&format!("{base}/b/1"), StatusCode::OK).await;
    assert_eq!(
        reqwest::get(format!("{base}/a/1")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    gateway.wait_for_log("configuration reloaded").await;

    // A broken file: every problem logged with its key, the running config kept.
    let broken =
        binary_config(port, &h.echo.url(), "/c").replace("auth = \"none\"", "auth = \"maybe\"");
    std::fs::write(&path, broken).unwrap();
    gateway.hangup();
    gateway.wait_for_log("configuration NOT reloaded").await;
    assert!(gateway.log().contains("route[0].auth"), "{}", gateway.log());
    assert_eq!(
        reqwest::get(format!("{base}/b/1")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        reqwest::get(format!("{base}/c/1")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn run_watch_reloads_when_the_file_changes() {
    let (h, gateway, path, base) = binary_serving_a("watch.toml", true).await;
    let port = port_of(&base);
    // A different size, so the change is seen even within the file system's mtime
    // granularity.
    std::fs::write(&path, binary_config(port, &h.echo.url(), "/bbb")).unwrap();
    wait_for_status(&format!("{base}/bbb/1"), StatusCode::OK).await;
    assert_eq!(
        reqwest::get(format!("{base}/a/1")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    drop(gateway);
}
