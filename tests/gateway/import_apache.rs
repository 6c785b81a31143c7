//! `oidc-gateway import-apache` (docs/behaviour.md §1, README "Coming from mod_auth_openidc"):
//! the built binary on each Apache configuration under `tests/import/<name>/` prints exactly
//! `expected.toml` on stdout and `expected.report` on stderr, exits 2 when the report lists
//! something not mapped (else 0), and what it prints passes `check-config`.
//! `UPDATE_GOLDEN=1 cargo test --test gateway -- import_apache::` rewrites the golden files.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_oidc-gateway");

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("apache.conf").is_file())
        .collect();
    dirs.sort();
    dirs
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env("RUST_LOG", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run oidc-gateway");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Every `${NAME}` the text references, each with a value of the shape its name suggests.
fn env_for(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = after[..end].to_string();
        rest = &after[end..];
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let value = if name.ends_with("_URL") || name.ends_with("ISSUER") {
            "http://127.0.0.1:7000".to_string()
        } else {
            "a-test-value-of-32-characters-xx".to_string()
        };
        out.push((name, value));
    }
    out
}

#[test]
fn every_golden_config_imports_as_recorded_and_passes_check_config() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases();
    assert!(cases.len() >= 12, "at least 12 golden configs");
    let mut failures = Vec::new();
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let out = run(dir, &["import-apache", "apache.conf"], &[]);
        assert!(
            out.code == 0 || out.code == 2,
            "{name}: exit status {}\n{}",
            out.code,
            out.stderr
        );
        let expected_code = if out.stderr.contains("Not mapped (") {
            2
        } else {
            0
        };
        assert_eq!(
            out.code, expected_code,
            "{name}: exit status\n{}",
            out.stderr
        );
        if update {
            std::fs::write(dir.join("expected.toml"), &out.stdout).unwrap();
            std::fs::write(dir.join("expected.report"), &out.stderr).unwrap();
        } else {
            let toml = std::fs::read_to_string(dir.join("expected.toml")).unwrap_or_default();
            let report = std::fs::read_to_string(dir.join("expected.report")).unwrap_or_default();
            if toml != out.stdout {
                failures.push(format!(
                    "{name}: stdout differs from expected.toml:\n{}",
                    out.stdout
                ));
            }
            if report != out.stderr {
                failures.push(format!(
                    "{name}: stderr differs from expected.report:\n{}",
                    out.stderr
                ));
            }
        }
        // The output passes check-config, with its variables set.
        let scratch =
            std::env::temp_dir().join(format!("oidc-gateway-import-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(scratch.join("gateway.toml"), &out.stdout).unwrap();
        let checked = run(
            &scratch,
            &["check-config", "--config", "gateway.toml"],
            &env_for(&out.stdout),
        );
        assert_eq!(checked.code, 0, "{name}: check-config:\n{}", checked.stderr);
        let _ = std::fs::remove_dir_all(&scratch);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn out_writes_the_file_and_secrets_never_appear() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import");
    let scratch =
        std::env::temp_dir().join(format!("oidc-gateway-import-out-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let target = scratch.join("gateway.toml");
    let out = run(
        &dir.join("redis-cache"),
        &[
            "import-apache",
            "apache.conf",
            "--out",
            target.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(&target).unwrap();
    assert!(written.contains("store = \"redis\""));
    // Every secret of every golden config stays out of every output.
    for case in cases() {
        let conf = std::fs::read_to_string(case.join("apache.conf")).unwrap();
        let out = run(&case, &["import-apache", "apache.conf"], &[]);
        for line in conf.lines() {
            let Ok(words) = oidc_gateway::import_apache::parse::split_args(line) else {
                continue;
            };
            let mut words = words.into_iter();
            let Some(directive) = words.next() else {
                continue;
            };
            let secret = matches!(
                directive.to_ascii_lowercase().as_str(),
                "oidcclientsecret"
                    | "oidccryptopassphrase"
                    | "oidcoauthclientsecret"
                    | "oidcrediscachepassword"
            );
            for value in words.filter(|_| secret) {
                let value = value.as_str();
                if value.starts_with("${") {
                    continue;
                }
                assert!(
                    !out.stdout.contains(value) && !out.stderr.contains(value),
                    "{}: the value of {directive} was copied",
                    case.display()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn an_unreadable_file_exits_1() {
    let out = run(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["import-apache", "tests/import/no-such-file.conf"],
        &[],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}
