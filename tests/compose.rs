//! docker-compose.yml, conf/docker.toml and the Keycloak realm in conf/keycloak/ must agree:
//! no Docker engine runs in CI, so this is what keeps "Try it with Keycloak" working.
//! (`scripts/e2e` also validates the compose file itself with `docker-compose config`.)

use oidc_gateway::config::Config;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn realm() -> Value {
    let dir = root().join("conf/keycloak");
    let mut realms: Vec<Value> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect();
    assert_eq!(realms.len(), 1, "one realm file in conf/keycloak/");
    realms.remove(0)
}

/// The `${NAME}` references in `text`.
fn env_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let end = rest.find('}').expect("closed ${");
        let name = rest[..end].split([':', '-']).next().unwrap().to_string();
        out.push(name);
        rest = &rest[end..];
    }
    out
}

/// Whether a compose service block sets environment variable `var` (a `VAR: value` line).
fn sets_env(block: &str, var: &str) -> bool {
    block
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("{var}:")))
}

/// The lines of one top-level service block of docker-compose.yml (no YAML parser needed
/// for these checks: the file is ours and kept in block style).
fn service(compose: &str, name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| *l != header);
    assert!(
        lines.next().is_some(),
        "service {name} in docker-compose.yml"
    );
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    ") || l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn keycloak_realm_gateway_config_and_compose_agree() {
    let compose = read("docker-compose.yml");
    let toml_text = read("conf/docker.toml");
    let raw: toml::Table = toml::from_str(&toml_text).expect("conf/docker.toml is TOML");
    let provider = raw["provider"].as_table().expect("[provider]");
    let realm = realm();

    // The client: same id; confidential, with the secret from the same variable.
    let client_id = provider["client_id"].as_str().unwrap();
    let clients = realm["clients"].as_array().expect("realm clients");
    let client = clients
        .iter()
        .find(|c| c["clientId"] == client_id)
        .unwrap_or_else(|| panic!("realm has no client {client_id:?}"));
    assert_eq!(client["publicClient"], false, "a confidential client");
    assert_eq!(
        client["standardFlowEnabled"], true,
        "authorization code flow"
    );
    let secret_in_config = provider["client_secret"].as_str().unwrap();
    let secret_in_realm = client["secret"].as_str().unwrap();
    assert_eq!(env_refs(secret_in_config), ["OIDC_CLIENT_SECRET"]);
    assert_eq!(
        env_refs(secret_in_realm),
        env_refs(secret_in_config),
        "realm and gateway read the secret from the same variable"
    );

    // The issuer names this realm, on Keycloak's published port.
    let issuer = provider["issuer"].as_str().unwrap();
    let realm_name = realm["realm"].as_str().unwrap();
    assert!(
        issuer.ends_with(&format!("/realms/{realm_name}")),
        "{issuer} names realm {realm_name}"
    );
    let kc_port = url::Url::parse(issuer).unwrap().port().unwrap();
    let keycloak = service(&compose, "keycloak");
    assert!(keycloak.contains("quay.io/keycloak/keycloak"));
    assert!(keycloak.contains("start-dev") && keycloak.contains("--import-realm"));
    assert!(keycloak.contains(&format!("--http-port={kc_port}")));
    assert!(keycloak.contains(&format!(":{kc_port}:{kc_port}\"")));
    assert!(keycloak.contains("./conf/keycloak:/opt/keycloak/data/import"));

    // The redirect URI Keycloak allows is the gateway's, on the port compose publishes.
    let redirect_path = provider["redirect_uri"].as_str().unwrap();
    let listen = raw["server"]["listen"].as_str().unwrap();
    let gw_port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let expected = format!("http://localhost:{gw_port}{redirect_path}");
    let redirects: Vec<&str> = client["redirectUris"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        redirects.contains(&expected.as_str()),
        "{expected} in {redirects:?}"
    );
    assert!(compose.contains(&format!("127.0.0.1:{gw_port}:{gw_port}\"")));
    let post_logout = client["attributes"]["post.logout.redirect.uris"]
        .as_str()
        .unwrap();
    assert!(post_logout.starts_with(&format!("http://localhost:{gw_port}/")));

    // A user to log in with.
    let users = realm["users"].as_array().unwrap();
    let alice = users.iter().find(|u| u["username"] == "alice").unwrap();
    assert_eq!(alice["credentials"][0]["value"], "alice");

    // Every variable the realm and the gateway config read is passed by compose.
    let gateway = service(&compose, "gateway");
    for var in env_refs(&toml_text) {
        assert!(
            sets_env(&gateway, &var),
            "compose passes {var} to the gateway"
        );
    }
    for var in env_refs(&read(&format!("conf/keycloak/{realm_name}-realm.json"))) {
        assert!(
            sets_env(&keycloak, &var),
            "compose passes {var} to keycloak"
        );
    }
    assert!(gateway.contains("/etc/oidc-gateway/docker.toml"));
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("/etc/oidc-gateway/docker.toml"));
    assert!(dockerfile.contains("AS build") && dockerfile.contains("debian:bookworm-slim"));

    // Routes point at the compose echo service.
    let routes = raw["route"].as_array().unwrap();
    for r in routes {
        let upstream = url::Url::parse(r["upstream"].as_str().unwrap()).unwrap();
        let host = upstream.host_str().unwrap();
        assert!(
            compose.contains(&format!("\n  {host}:\n")),
            "upstream host {host} is a compose service"
        );
    }

    // And the gateway accepts the file, with the variables set as compose sets them.
    std::env::set_var("OIDC_CLIENT_SECRET", "compose-test-secret");
    std::env::set_var(
        "OIDC_CRYPTO_PASSPHRASE",
        "compose-test-passphrase-0123456789",
    );
    let config = Config::from_toml(&toml_text, "conf/docker.toml", Some(Path::new("conf")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.provider.client_id, client_id);
    assert_eq!(config.redirect_path(), redirect_path);
    assert!(config.provider.allow_http);
    assert_eq!(
        config.provider.client_secret.expose(),
        "compose-test-secret"
    );
}
