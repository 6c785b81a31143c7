//! Configuration errors as a user meets them (docs/behaviour.md §1, §2): the built binary's
//! `check-config` on broken files prints every problem with its key path and exits
//! non-zero; every file in `conf/` is valid.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_oidc-gateway");

/// A valid configuration to break one piece at a time.
const VALID: &str = r#"
[server]
listen = "127.0.0.1:8080"

[provider]
issuer = "https://idp.example.com/realms/demo"
client_id = "gateway"
client_secret = "s3cret-client-secret"

[session]
passphrase = "0123456789abcdef0123456789abcdef"

[[route]]
path = "/"
upstream = "http://127.0.0.1:7000"

[[route]]
path = "/static"
upstream = "http://127.0.0.1:7001"
auth = "none"
"#;

/// A fresh directory for one test's files.
fn scratch_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oidc-gateway-config-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The problem lines (`  key: reason`) printed after the summary line.
    fn problems(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("  "))
            .map(|l| l.trim_start().to_string())
            .collect()
    }
}

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("OIDCGW_TEST_UNSET_VARIABLE")
        .env("RUST_LOG", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run oidc-gateway");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `text` as `gateway.toml` in a fresh directory and runs `check-config` on it.
fn check(text: &str, env: &[(&str, &str)]) -> Outcome {
    let dir = scratch_dir();
    std::fs::write(dir.join("gateway.toml"), text).unwrap();
    run_in(&dir, &["check-config", "--config", "gateway.toml"], env)
}

/// Asserts a failed check whose problems are exactly `expected` (each a `key: reason`
/// prefix), in any order.
fn assert_problems(out: &Outcome, expected: &[&str]) {
    assert_ne!(out.code, 0, "exit status: {}", out.stderr);
    let problems = out.problems();
    assert_eq!(
        problems.len(),
        expected.len(),
        "problems: {problems:#?}\nexpected: {expected:#?}"
    );
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    let n = expected.len();
    let summary = format!(
        "gateway.toml: {n} configuration problem{}:",
        if n == 1 { "" } else { "s" }
    );
    assert!(out.stderr.starts_with(&summary), "{}", out.stderr);
}

#[test]
fn a_valid_file_passes() {
    let out = check(VALID, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("configuration is valid"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let text = VALID
        .replace("[server]\n", "[server]\nlisn = \"x\"\n")
        .replace("auth = \"none\"", "auth = \"none\"\ncolour = \"red\"")
        .replace("[session]\n", "[sesion]\nx = 1\n[session]\n");
    let out = check(&text, &[]);
    assert_problems(
        &out,
        &[
            "server.lisn: unknown key",
            "route[1].colour: unknown key",
            "sesion: unknown key",
        ],
    );
}

#[test]
fn a_bad_upstream_url_names_its_route() {
    let text = VALID.replace("http://127.0.0.1:7001", "ftp://127.0.0.1:7001");
    let out = check(&text, &[]);
    assert_problems(
        &out,
        &["route[1].upstream: \"ftp://127.0.0.1:7001\" is not an http(s) URL"],
    );
    let text = VALID.replace("http://127.0.0.1:7001", "not a url");
    assert_problems(&check(&text, &[]), &["route[1].upstream: "]);
}

#[test]
fn a_bad_duration_is_named() {
    let text = VALID.replace(
        "[session]\n",
        "[session]\ninactivity_timeout = \"5 minutes\"\n",
    );
    let out = check(&text, &[]);
    assert_problems(&out, &["session.inactivity_timeout: "]);
    assert!(
        out.problems()[0].contains("minutes"),
        "{:?}",
        out.problems()
    );
    let text = VALID.replace("[server]\n", "[server]\nupstream_timeout = \"soon\"\n");
    assert_problems(&check(&text, &[]), &["server.upstream_timeout: "]);
}

/// `server.keepalive_timeout` was `server.idle_timeout`: the old name is still read, and
/// both at once is a problem naming the old key.
#[test]
fn keepalive_timeout_keeps_its_former_name_as_an_alias() {
    let text = VALID.replace("[server]\n", "[server]\nidle_timeout = \"30s\"\n");
    assert_eq!(check(&text, &[]).code, 0);
    let text = VALID.replace(
        "[server]\n",
        "[server]\nkeepalive_timeout = \"75s\"\nidle_timeout = \"30s\"\n",
    );
    assert_problems(
        &check(&text, &[]),
        &["server.idle_timeout: is the former name of server.keepalive_timeout"],
    );
}

#[test]
fn workers_out_of_range_are_named() {
    for bad in ["0", "1025"] {
        let text = VALID.replace("[server]\n", &format!("[server]\nworkers = {bad}\n"));
        assert_problems(
            &check(&text, &[]),
            &["server.workers: must be between 1 and 1024 (default: one per core)"],
        );
    }
    let text = VALID.replace("[server]\n", "[server]\nworkers = 3\n");
    assert_eq!(check(&text, &[]).code, 0);
}

#[test]
fn a_missing_passphrase_is_named() {
    let text = VALID.replace("passphrase = \"0123456789abcdef0123456789abcdef\"", "");
    assert_problems(&check(&text, &[]), &["session.passphrase: is required"]);
}

#[test]
fn a_cookie_domain_that_is_not_a_host_name_is_an_error() {
    let text = VALID.replace(
        "[session]\n",
        "[session]\ncookie_domain = \"example.com; Path=/admin\"\n",
    );
    assert_problems(
        &check(&text, &[]),
        &["session.cookie_domain: \"example.com; Path=/admin\" is not a plain host name"],
    );
    let text = VALID.replace(
        "[session]\n",
        "[session]\ncookie_domain = \".example.com\"\n",
    );
    assert_eq!(check(&text, &[]).code, 0);
}

#[test]
fn a_remote_user_header_that_is_not_a_header_name_is_an_error() {
    let text = format!("{VALID}\n[headers]\nremote_user_header = \"X Remote\"\n");
    assert_problems(
        &check(&text, &[]),
        &["headers.remote_user_header: \"X Remote\" is not a header name"],
    );
}

#[test]
fn h2c_cannot_be_an_allowed_upgrade() {
    let text = VALID.replace(
        "auth = \"none\"\n",
        "auth = \"none\"\nupgrades = [\"websocket\", \"h2c\", \"a b\"]\n",
    );
    assert_problems(
        &check(&text, &[]),
        &[
            "route[1].upgrades[1]: h2c cannot be tunnelled",
            "route[1].upgrades[2]: \"a b\" is not a protocol name",
        ],
    );
}

#[test]
fn jwt_access_tokens_need_an_audience() {
    let text = format!("{VALID}\n[oauth]\njwt = true\n");
    assert_problems(
        &check(&text, &[]),
        &["oauth.audience: is required with oauth.jwt = true"],
    );
    let text = format!("{VALID}\n[oauth]\njwt = true\naudience = [\"api://a\", \"api://b\"]\n");
    assert_eq!(check(&text, &[]).code, 0);
}

#[test]
fn a_short_passphrase_is_an_error_without_printing_it() {
    let text = VALID.replace("0123456789abcdef0123456789abcdef", "tooshort-secret");
    let out = check(&text, &[]);
    assert_problems(
        &out,
        &["session.passphrase: passphrase is shorter than 16 characters"],
    );
    assert!(!out.stderr.contains("tooshort-secret"), "{}", out.stderr);
    assert!(!out.stdout.contains("tooshort-secret"), "{}", out.stdout);
}

#[test]
fn a_short_passphrase_can_be_allowed_explicitly_with_a_warning() {
    let text = VALID.replace(
        "passphrase = \"0123456789abcdef0123456789abcdef\"",
        "passphrase = \"tooshort-secret\"\nallow_weak_passphrase = true",
    );
    // Printed by check-config itself, as a warning with its key: not a log line, so it
    // shows whatever RUST_LOG says.
    let out = check(&text, &[("RUST_LOG", "off")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: session.passphrase: passphrase is shorter than 16"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("tooshort-secret"), "{}", out.stderr);
}

/// The rules that protect the login flow, each refusing alone (issue 12, item 14).
#[test]
fn the_rules_that_protect_the_flow_each_refuse_alone() {
    let cases: [(&str, &str, &str); 10] = [
        (
            "[provider]\n",
            "[provider]\nauth_params = { state = \"x\" }\n",
            "provider.auth_params.state: is set by the gateway",
        ),
        (
            "[provider]\n",
            "[provider]\nauth_params = { nonce = \"x\" }\n",
            "provider.auth_params.nonce: is set by the gateway",
        ),
        (
            "[provider]\n",
            "[provider]\nauth_params = { code_challenge = \"x\" }\n",
            "provider.auth_params.code_challenge: is set by the gateway",
        ),
        (
            "[provider]\n",
            "[provider]\nauth_params = { redirect_uri = \"https://evil.test/\" }\n",
            "provider.auth_params.redirect_uri: is set by the gateway",
        ),
        (
            "[provider]\n",
            "[provider]\nscopes = [\"profile\"]\n",
            "provider.scopes: must include \"openid\"",
        ),
        (
            "[provider]\n",
            "[provider]\nredirect_uri = \"/\"\n",
            "provider.redirect_uri: must not be \"/\"",
        ),
        (
            "path = \"/static\"",
            "path = \"/\"",
            "route[1].path: \"/\" is already used by another route",
        ),
        (
            "[session]\n",
            "[session]\ncookie_name = \"oidc_state_x\"\n",
            "session.state_cookie_prefix: must not share a prefix with session.cookie_name",
        ),
        (
            "[server]\n",
            "[admin]\nlisten = \"127.0.0.1:8080\"\n\n[server]\n",
            "admin.listen: 127.0.0.1:8080 is also a proxied listen address",
        ),
        (
            "[session]\n",
            "[headers]\nclaim_prefix = \"\"\n\n[session]\n",
            "headers.claim_prefix: must not be empty",
        ),
    ];
    for (from, to, problem) in cases {
        let text = VALID.replacen(from, to, 1);
        assert_ne!(text, VALID, "{problem}: the case changes the file");
        assert_problems(&check(&text, &[]), &[problem]);
    }
}

#[test]
fn listen_takes_host_names() {
    let text = VALID.replace("listen = \"127.0.0.1:8080\"", "listen = \"localhost:8080\"");
    let out = check(&text, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = VALID.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = [\"localhost\", \"localhost:http\"]",
    );
    assert_problems(
        &check(&text, &[]),
        &["server.listen[0]: ", "server.listen[1]: "],
    );
}

#[test]
fn a_gateway_without_login_routes_needs_no_passphrase() {
    let text = VALID
        .replace("passphrase = \"0123456789abcdef0123456789abcdef\"", "")
        .replace(
            "upstream = \"http://127.0.0.1:7000\"",
            "upstream = \"http://127.0.0.1:7000\"\nauth = \"oauth20\"",
        );
    let out = check(&text, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn an_empty_passphrase_or_list_is_refused() {
    let text = VALID.replace("0123456789abcdef0123456789abcdef", "");
    assert_problems(
        &check(&text, &[]),
        &["session.passphrase: must not be empty"],
    );
    let text = VALID.replace(
        "passphrase = \"0123456789abcdef0123456789abcdef\"",
        "passphrases = []",
    );
    assert_problems(
        &check(&text, &[]),
        &["session.passphrases: must list at least one passphrase"],
    );
}

#[test]
fn an_unset_environment_variable_is_named_with_the_key_that_uses_it() {
    let text = VALID.replace("s3cret-client-secret", "${OIDCGW_TEST_UNSET_VARIABLE}");
    assert_problems(
        &check(&text, &[]),
        &["provider.client_secret: environment variable OIDCGW_TEST_UNSET_VARIABLE is not set"],
    );
    // Set, it is used (and not echoed).
    let out = check(
        &text,
        &[("OIDCGW_TEST_UNSET_VARIABLE", "from-the-environment")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("from-the-environment"));
}

#[test]
fn an_unreadable_secret_file_is_named() {
    let text = VALID.replace(
        "client_secret = \"s3cret-client-secret\"",
        "client_secret_file = \"/nonexistent/oidc-gateway/client_secret\"",
    );
    let out = check(&text, &[]);
    assert_problems(&out, &["provider.client_secret_file: cannot read"]);
    assert!(out
        .stderr
        .contains("/nonexistent/oidc-gateway/client_secret"));
}

#[test]
fn secret_files_are_read_relative_to_the_config_file() {
    let dir = scratch_dir();
    let conf = dir.join("etc");
    std::fs::create_dir_all(conf.join("secrets")).unwrap();
    std::fs::write(conf.join("secrets/client"), "from-a-file\n").unwrap();
    std::fs::write(conf.join("secrets/pass"), "0123456789abcdef-from-a-file\n").unwrap();
    let text = VALID
        .replace(
            "client_secret = \"s3cret-client-secret\"",
            "client_secret_file = \"secrets/client\"",
        )
        .replace(
            "passphrase = \"0123456789abcdef0123456789abcdef\"",
            "passphrase_file = \"secrets/pass\"",
        );
    std::fs::write(conf.join("gateway.toml"), text).unwrap();
    // Run from elsewhere: the paths are relative to the file, not the working directory.
    let out = run_in(&dir, &["check-config", "--config", "etc/gateway.toml"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn several_problems_are_all_listed_at_once() {
    let text = VALID
        .replace(
            "[server]\n",
            "[server]\nlisn = \"x\"\nshutdown_grace = \"forever\"\n",
        )
        .replace(
            "passphrase = \"0123456789abcdef0123456789abcdef\"",
            "same_site = \"sometimes\"",
        )
        .replace("s3cret-client-secret", "${OIDCGW_TEST_UNSET_VARIABLE}")
        .replace("http://127.0.0.1:7001", "ftp://127.0.0.1:7001")
        .replace("auth = \"none\"", "auth = \"maybe\"");
    let out = check(&text, &[]);
    assert_problems(
        &out,
        &[
            "server.lisn: unknown key",
            "server.shutdown_grace: ",
            "provider.client_secret: environment variable OIDCGW_TEST_UNSET_VARIABLE is not set",
            "session.passphrase: is required",
            "session.same_site: \"sometimes\" is not one of lax | strict | none",
            "route[1].upstream: \"ftp://127.0.0.1:7001\" is not an http(s) URL",
            "route[1].auth: \"maybe\" is not one of openid-connect | oauth20 | none",
        ],
    );
}

#[test]
fn a_wrongly_typed_value_is_named_on_one_line() {
    let text = VALID.replace(
        "client_id = \"gateway\"",
        "client_id = \"gateway\"\nuserinfo = \"yes\"",
    );
    let out = check(&text, &[]);
    assert_problems(&out, &["provider.userinfo: invalid type"]);
    assert_eq!(
        out.stderr.lines().count(),
        2,
        "summary and one problem line:\n{}",
        out.stderr
    );
}

#[test]
fn missing_sections_and_broken_toml_are_reported() {
    assert_problems(
        &check("[server]\nlisten = \"127.0.0.1:1\"\n", &[]),
        &[
            "provider: the [provider] section is required",
            "provider.issuer: is required",
            "provider.client_id: is required",
            "session.passphrase: is required",
            "route: at least one [[route]] is required",
        ],
    );
    let out = check("[server\nlisten = ", &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not valid TOML"), "{}", out.stderr);
}

#[test]
fn run_refuses_to_start_on_a_broken_file_and_a_missing_file_is_an_error() {
    let dir = scratch_dir();
    let text = VALID.replace("http://127.0.0.1:7001", "ftp://127.0.0.1:7001");
    std::fs::write(dir.join("gateway.toml"), text).unwrap();
    for args in [
        &["run", "--config", "gateway.toml"][..],
        &["--config", "gateway.toml"][..],
    ] {
        let out = run_in(&dir, args, &[]);
        assert_ne!(out.code, 0, "{args:?}");
        assert!(
            out.stderr.contains("route[1].upstream: "),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = run_in(&dir, &["check-config", "--config", "missing.toml"], &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
}

/// Every `${NAME}` a file references.
fn env_references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(name.to_string());
        }
        rest = &after[end..];
    }
    names
}

#[test]
fn every_file_in_conf_is_valid() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = 0;
    // conf/ and its subdirectories (conf/forward-auth/).
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&conf).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push(path);
        }
    }
    for path in files {
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let names = env_references(&text);
        // `*_PORT` variables get a port number each; every other one a 32-character value.
        let values: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if n.ends_with("_PORT") {
                    (18081 + i).to_string()
                } else {
                    "a-test-value-of-32-characters-xx".to_string()
                }
            })
            .collect();
        let env: Vec<(&str, &str)> = names
            .iter()
            .zip(&values)
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let out = run_in(
            &conf,
            &["check-config", "--config", path.to_str().unwrap()],
            &env,
        );
        assert_eq!(out.code, 0, "{}:\n{}", path.display(), out.stderr);
        checked += 1;
    }
    assert!(
        checked >= 4,
        "conf/ has example files, conf/forward-auth/ one more"
    );
}
