//! `oidc-gateway import-apache`: turns an Apache + mod_auth_openidc configuration into a
//! gateway.toml, and reports every directive it could not map (README "Coming from
//! mod_auth_openidc"). Depends only on `config`, which checks what it writes.

mod doc;
mod map;
pub mod parse;

use crate::config::{Config, ConfigProblem, Severity};
use doc::{list, s, Table};
use map::Mapper;
use parse::Source;
use std::fmt::Write as _;
use std::path::PathBuf;
use toml::Value;

pub use map::FAIL_CLOSED_RULE;

/// A directive (or section) that was not mapped, or was left out as not needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub source: Source,
    pub seq: usize,
    pub directive: String,
    pub message: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.source.file.is_empty() {
            write!(f, "{}: {}", self.directive, self.message)
        } else if self.source.line == 0 {
            write!(
                f,
                "{} {}: {}",
                self.source.file, self.directive, self.message
            )
        } else {
            write!(f, "{} {}: {}", self.source, self.directive, self.message)
        }
    }
}

/// An environment variable the written file reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvNote {
    pub name: String,
    pub what: String,
    pub source: Option<Source>,
}

/// The result of an import.
#[derive(Debug)]
pub struct Import {
    /// The gateway.toml text.
    pub toml: String,
    /// Directives that were not mapped: each makes the exit status 2.
    pub unmapped: Vec<Note>,
    /// Directives that configure Apache itself and need nothing in the gateway.
    pub ignored: Vec<Note>,
    /// Environment variables the file references.
    pub env: Vec<EnvNote>,
}

impl Import {
    /// The report printed on stderr.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if !self.unmapped.is_empty() {
            let _ = writeln!(out, "Not mapped ({}):", self.unmapped.len());
            for n in &self.unmapped {
                let _ = writeln!(out, "  {n}");
            }
        }
        if !self.ignored.is_empty() {
            let _ = writeln!(
                out,
                "Left out, not needed by the gateway ({}):",
                self.ignored.len()
            );
            for n in &self.ignored {
                let _ = writeln!(out, "  {n}");
            }
        }
        if !self.env.is_empty() {
            let _ = writeln!(out, "Set these environment variables for the gateway:");
            for e in &self.env {
                let _ = writeln!(out, "  {}: {}", e.name, e.what);
            }
        }
        let _ = writeln!(
            out,
            "{}",
            if self.unmapped.is_empty() {
                "Every directive was mapped.".to_string()
            } else {
                format!(
                    "{} directive{} not mapped: review them before running the gateway.",
                    self.unmapped.len(),
                    if self.unmapped.len() == 1 { "" } else { "s" }
                )
            }
        );
        out
    }

    /// 0 when everything was mapped, 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.unmapped.is_empty() {
            0
        } else {
            2
        }
    }
}

/// Why an import produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {error}", path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The written file does not pass check-config: a bug in the importer.
    #[error("the imported configuration does not pass check-config (an importer bug, please report it):\n{0}")]
    Invalid(String),
}

/// Keys in the order the gateway's documentation lists them.
const ORDER: &[&str] = &[
    "name",
    "title",
    "listen",
    "trusted_proxies",
    "upstream_timeout",
    "issuer",
    "client_id",
    "client_secret",
    "token_endpoint_auth",
    "redirect_uri",
    "scopes",
    "pkce",
    "auth_params",
    "userinfo",
    "http_timeout",
    "trusted_audiences",
    "jwks_refresh",
    "passphrase",
    "passphrases",
    "allow_weak_passphrase",
    "store",
    "memory_capacity",
    "cookie_name",
    "cookie_domain",
    "state_cookie_prefix",
    "same_site",
    "inactivity_timeout",
    "max_duration",
    "refresh_before_expiry",
    "claim_prefix",
    "claim_delimiter",
    "pass_access_token",
    "pass_id_token",
    "pass_userinfo",
    "pass_refresh_token",
    "encoding",
    "remote_user_claim",
    "remote_user_header",
    "introspection_endpoint",
    "introspection_cache",
    "accept_token_as",
    "jwt",
    "audience",
    "info",
    "redirect_urls_allowed",
    "url",
    "username",
    "password",
    "timeout",
    "path",
    "host",
    "upstream",
    "auth",
    "unauth_action",
    "require_claims",
    "preserve_post",
    "preserve_host",
    "provider",
    "providers",
    "claim",
    "value",
];

/// Imports `files` (the first one's directory names the files in comments and reports).
pub fn import(files: &[PathBuf]) -> Result<Import, ImportError> {
    let parsed = parse::parse_files(files).map_err(|u| ImportError::Unreadable {
        path: u.path,
        error: u.error,
    })?;
    let first = files
        .first()
        .map(|f| {
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let mut m = Mapper::new();
    for p in parsed.problems {
        m.unmapped.push(Note {
            source: p.source,
            seq: p.seq,
            directive: p.directive,
            message: p.reason,
        });
    }
    m.walk(&parsed.nodes, 0, None);
    m.globals();
    m.finish_redis();
    let at = Source {
        file: first,
        line: 0,
    };
    let providers = providers(&mut m, &at);
    m.build_routes(
        &providers
            .iter()
            .filter_map(|p| p.0.clone())
            .collect::<Vec<_>>(),
    );
    defaults(&mut m, &at);
    let mut tables = Vec::new();
    tables.push(m.server.clone());
    for (_, t) in &providers {
        tables.push(t.clone());
    }
    if providers.len() == 1 {
        // The one provider's keys live in `[provider]` (built on `m.provider`).
        tables.pop();
        tables.push(m.provider.clone());
    }
    tables.push(m.session.clone());
    tables.push(m.headers.clone());
    tables.extend(m.header_sets.iter().cloned());
    tables.push(m.oauth.clone());
    tables.push(m.hooks.clone());
    tables.push(m.redis.clone());
    tables.extend(m.routes.iter().cloned());
    for t in &mut tables {
        t.sort(ORDER);
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let header = vec![
        format!(
            "Imported from Apache + mod_auth_openidc ({}) by oidc-gateway import-apache.",
            names.join(", ")
        ),
        "Each key names the directive it came from. Check it with: oidc-gateway check-config --config FILE".to_string(),
    ];
    let text = checked_render(&header, &mut tables, &mut m.unmapped)?;
    let mut unmapped = m.unmapped;
    unmapped.sort_by(|a, b| a.seq.cmp(&b.seq).then(a.source.cmp(&b.source)));
    unmapped.dedup();
    let mut ignored = m.ignored;
    ignored.sort_by(|a, b| a.seq.cmp(&b.seq).then(a.source.cmp(&b.source)));
    ignored.dedup();
    Ok(Import {
        toml: text,
        unmapped,
        ignored,
        env: m.env,
    })
}

/// The providers: `[provider]` from the static OIDCProvider* directives, or `[[provider]]`
/// entries when OIDCMetadataDir named several (the static settings are their defaults).
fn providers(m: &mut Mapper, at: &Source) -> Vec<(Option<String>, Table)> {
    if m.extra_providers.is_empty() {
        return vec![(None, m.provider.clone())];
    }
    let mut out = Vec::new();
    let static_op = m.provider.get("issuer").is_some() && m.provider.get("client_id").is_some();
    if static_op {
        let mut t = m.provider.clone();
        t.header = "[[provider]]".to_string();
        t.set(
            "name",
            s("default"),
            "the OP of OIDCProviderMetadataURL".to_string(),
        );
        out.push((Some("default".to_string()), t));
    }
    let shared = [
        "redirect_uri",
        "scopes",
        "pkce",
        "auth_params",
        "token_endpoint_auth",
        "http_timeout",
        "jwks_refresh",
    ];
    for p in std::mem::take(&mut m.extra_providers) {
        let mut t = p.table;
        for key in shared {
            if t.get(key).is_none() {
                if let Some(e) = m
                    .provider
                    .entries
                    .iter()
                    .find(|e| e.key.as_deref() == Some(key))
                    .cloned()
                {
                    t.entries.push(e);
                }
            }
        }
        out.push((p.name, t));
    }
    if !static_op {
        for key in ["client_id", "client_secret", "issuer"] {
            if m.provider.get(key).is_some() {
                m.unmapped.push(Note {
                    source: at.clone(),
                    seq: 0,
                    directive: "OIDCMetadataDir".to_string(),
                    message: format!(
                        "provider.{key} is set without a complete static provider (issuer and client ID): it was not used"
                    ),
                });
            }
        }
    }
    out
}

/// What the gateway needs that Apache had by default: scopes, claim encoding, session
/// store, passphrase, a provider, a route.
fn defaults(m: &mut Mapper, at: &Source) {
    let logs_in = m
        .routes
        .iter()
        .any(|r| r.get("auth").and_then(Value::as_str) == Some("openid-connect"));
    let multi = m.routes.iter().any(|r| r.get("providers").is_some());
    if !multi {
        let issuer = Required {
            key: "issuer",
            env: "OIDC_ISSUER",
            directive: "OIDCProviderMetadataURL",
            missing: "no OIDCProviderMetadataURL or OIDCProviderIssuer",
            what: "the OP's issuer",
            env_what:
                "the OP's issuer URL (its metadata is at {issuer}/.well-known/openid-configuration)",
        };
        let client_id = Required {
            key: "client_id",
            env: "OIDC_CLIENT_ID",
            directive: "OIDCClientID",
            missing: "no OIDCClientID",
            what: "the client ID",
            env_what: "the client ID registered at the OP",
        };
        for required in [issuer, client_id] {
            required.fill_from_env(m, at);
        }
        if m.provider.get("scopes").is_none() {
            m.provider.set(
                "scopes",
                list(vec!["openid".to_string()]),
                "mod_auth_openidc's default (OIDCScope not set)".to_string(),
            );
        }
    }
    if m.headers.get("encoding").is_none() && (logs_in || !m.routes.is_empty()) {
        m.headers.set(
            "encoding",
            s("latin1"),
            "mod_auth_openidc's default (OIDCPassClaimsAs not set)".to_string(),
        );
    }
    if logs_in && m.session.get("store").is_none() {
        m.session.set(
            "store",
            s("memory"),
            "mod_auth_openidc's default (OIDCSessionType server-cache, OIDCCacheType shm)"
                .to_string(),
        );
    }
    if logs_in && m.session.get("passphrase").is_none() && m.session.get("passphrases").is_none() {
        m.session.set(
            "passphrase",
            s("${OIDC_CRYPTO_PASSPHRASE}"),
            "no OIDCCryptoPassphrase (Apache made a random one at each start)".to_string(),
        );
        push_env(
            m,
            "OIDC_CRYPTO_PASSPHRASE",
            "the session passphrase: 32 random characters (openssl rand -hex 16)",
        );
    }
    if m.oauth.get("jwt").and_then(Value::as_bool) == Some(true)
        && m.oauth.get("audience").is_none()
    {
        m.oauth.set(
            "audience",
            s("${OIDC_OAUTH_AUDIENCE}"),
            "no OIDCOAuthVerifyAudience: required with jwt = true".to_string(),
        );
        m.unmapped.push(Note {
            source: at.clone(),
            seq: 0,
            directive: "OIDCOAuthVerifyAudience".to_string(),
            message: "not set: without an audience any JWT the OP signed would pass, so the gateway requires one: set OIDC_OAUTH_AUDIENCE to this API's audience".to_string(),
        });
        push_env(
            m,
            "OIDC_OAUTH_AUDIENCE",
            "the aud of this API's JWT access tokens",
        );
    }
    if m.routes.is_empty() {
        let mut t = Table::new("[[route]]");
        t.set(
            "path",
            s("/"),
            "no ProxyPass was found: the gateway needs a route".to_string(),
        );
        t.set("upstream", s("${UPSTREAM_URL}"), "no ProxyPass".to_string());
        t.set("auth", s("openid-connect"), "no ProxyPass".to_string());
        m.routes.push(t);
        m.unmapped.push(Note {
            source: at.clone(),
            seq: 0,
            directive: "ProxyPass".to_string(),
            message: "none was found: the gateway only proxies; one route / to UPSTREAM_URL, behind login, was written: set it or edit the route".to_string(),
        });
        push_env(
            m,
            "UPSTREAM_URL",
            "the application's URL (http://host:port)",
        );
    }
}

/// A provider key Apache's configuration must give; without it, the output reads it from
/// an environment variable, and the report says which one to set.
struct Required {
    key: &'static str,
    env: &'static str,
    directive: &'static str,
    missing: &'static str,
    what: &'static str,
    env_what: &'static str,
}

impl Required {
    fn fill_from_env(&self, m: &mut Mapper, at: &Source) {
        if m.provider.get(self.key).is_some() {
            return;
        }
        m.provider.set(
            self.key,
            s(&format!("${{{}}}", self.env)),
            self.missing.to_string(),
        );
        m.unmapped.push(Note {
            source: at.clone(),
            seq: 0,
            directive: self.directive.to_string(),
            message: format!("not found: {} is read from {}; set it", self.what, self.env),
        });
        push_env(m, self.env, self.env_what);
    }
}

fn push_env(m: &mut Mapper, name: &str, what: &str) {
    if !m.env.iter().any(|e| e.name == name) {
        m.env.push(EnvNote {
            name: name.to_string(),
            what: what.to_string(),
            source: None,
        });
    }
}

/// Checks the written file as `check-config` would, with every `${NAME}` replaced by a
/// value of the right shape (the variables need not be set where the import runs).
fn verify(text: &str) -> Result<(), Vec<ConfigProblem>> {
    let invalid = |reason: String| vec![ConfigProblem::error("", reason)];
    let mut value: Value =
        toml::from_str(text).map_err(|e| invalid(format!("not valid TOML: {e}")))?;
    placeholders(&mut value, "");
    let checked =
        toml::to_string(&value).map_err(|e| invalid(format!("cannot re-serialise: {e}")))?;
    Config::from_toml(&checked, "imported configuration", None)
        .map(|_| ())
        .map_err(|e| e.problems)
}

/// Renders the tables and checks them as `check-config` does. A value the gateway refuses
/// (a cookie name, a redirect URI, a host it cannot take) is removed and reported with the
/// reason, so the file keeps passing `check-config`; a problem no removal can fix is an
/// importer bug.
fn checked_render(
    header: &[String],
    tables: &mut [Table],
    unmapped: &mut Vec<Note>,
) -> Result<String, ImportError> {
    // Each round removes at least one key, so the loop ends.
    for _ in 0..64 {
        let text = doc::render(header, tables);
        let problems = match verify(&text) {
            Ok(()) => return Ok(text),
            Err(problems) => problems,
        };
        let mut removed = false;
        for p in problems.iter().filter(|p| p.severity == Severity::Error) {
            if let Some(note) = remove_refused(tables, &p.key, &p.reason) {
                unmapped.push(note);
                removed = true;
            }
        }
        if !removed {
            return Err(ImportError::Invalid(
                problems
                    .iter()
                    .map(|p| format!("  {p}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ));
        }
    }
    Err(ImportError::Invalid(
        "  too many refused values".to_string(),
    ))
}

/// Removes the key a problem names (`session.cookie_name`, `route[1].host`,
/// `provider[0].scopes[2]`), unless it is one the file cannot do without.
fn remove_refused(tables: &mut [Table], key: &str, reason: &str) -> Option<Note> {
    let (table, rest) = key.split_once('.')?;
    let field: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if [
        "issuer",
        "client_id",
        "path",
        "upstream",
        "auth",
        "name",
        "url",
    ]
    .contains(&field.as_str())
    {
        return None;
    }
    let (base, index) = match table.split_once('[') {
        Some((b, i)) => (b, i.trim_end_matches(']').parse::<usize>().ok()?),
        None => (table, 0),
    };
    let candidates: Vec<usize> = (0..tables.len())
        .filter(|&i| {
            let h = &tables[i].header;
            h == &format!("[{base}]") || h == &format!("[[{base}]]")
        })
        .collect();
    let t = &mut tables[*candidates.get(index)?];
    let entry = t
        .entries
        .iter()
        .find(|e| e.key.as_deref() == Some(field.as_str()))?
        .clone();
    t.remove(&field);
    let from = entry.comments.join("; ");
    Some(Note {
        source: Source {
            file: String::new(),
            line: 0,
        },
        seq: usize::MAX,
        directive: from,
        message: format!(
            "the gateway refuses its value ({key}: {reason}); the key was left out (the gateway's default applies): fix the value and add it back"
        ),
    })
}

fn placeholders(value: &mut Value, key: &str) {
    match value {
        Value::String(text) if text.contains("${") => {
            let whole =
                text.starts_with("${") && text.ends_with('}') && text.matches("${").count() == 1;
            *text = if whole {
                whole_placeholder(key).to_string()
            } else {
                replace_references(text, key)
            };
        }
        Value::Array(items) => {
            for item in items {
                placeholders(item, key);
            }
        }
        Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                placeholders(v, k);
            }
        }
        _ => {}
    }
}

/// A value of the right shape for `key` standing for a whole `${NAME}`.
fn whole_placeholder(key: &str) -> &'static str {
    match key {
        "issuer" | "introspection_endpoint" => "https://idp.example.com",
        "upstream" => "http://127.0.0.1:7000",
        "url" => "redis://127.0.0.1:6379/0",
        "redirect_uri" => "/oauth2/callback",
        _ => "placeholder-of-32-characters-xx",
    }
}

/// `text` with each `${NAME}` replaced by a value of the right shape where it stands: the
/// start of a URL-valued key (`${ISSUER}/token`), a port (`http://h:${PORT}/`), else a word.
fn replace_references(text: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        match rest[pos..].find('}') {
            Some(end) => {
                let url_key = matches!(
                    key,
                    "issuer" | "introspection_endpoint" | "upstream" | "url"
                );
                let port = out.ends_with(':') && !out.ends_with("://") && out.contains("://");
                out.push_str(if out.is_empty() && url_key {
                    whole_placeholder(key)
                } else if port {
                    "7000"
                } else {
                    "placeholder"
                });
                rest = &rest[pos + end + 1..];
            }
            None => {
                out.push_str(&rest[pos..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
