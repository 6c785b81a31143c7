//! Unit tests of the Apache parser (continuations, quotes, nesting, includes) and of the
//! import as a whole on small texts.

use super::parse::{parse_files, parse_text, split_args, Node};
use super::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn scratch() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oidc-gateway-import-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn directives(nodes: &[Node]) -> Vec<(String, Vec<String>, usize)> {
    let mut out = Vec::new();
    for n in nodes {
        match n {
            Node::Directive(d) => out.push((d.name.clone(), d.args.clone(), d.source.line)),
            Node::Section(s) => out.extend(directives(&s.children)),
        }
    }
    out
}

#[test]
fn quotes_and_escapes() {
    assert_eq!(
        split_args(r#"a "b c" 'd e' "f \"g\"" h\i"#).unwrap(),
        vec!["a", "b c", "d e", r#"f "g""#, r"h\i"]
    );
    assert_eq!(split_args(r#""""#).unwrap(), vec![""]);
    assert!(split_args(r#""open"#).is_err());
}

#[test]
fn continuations_join_lines_and_keep_the_first_line_number() {
    let p = parse_text(
        Path::new("/x/site.conf"),
        "# comment\nOIDCScope \"openid \\\n   email\"\n\n  OIDCClientID  app\n",
    );
    assert_eq!(
        directives(&p.nodes),
        vec![
            ("OIDCScope".to_string(), vec!["openid email".to_string()], 2),
            ("OIDCClientID".to_string(), vec!["app".to_string()], 5),
        ]
    );
}

#[test]
fn sections_nest_and_mismatches_are_reported() {
    let p = parse_text(
        Path::new("/x/site.conf"),
        "<VirtualHost *:443>\n<Location \"/app\">\nRequire valid-user\n</Location>\n</virtualhost>\n</Location>\n<Location /x>\n",
    );
    let Node::Section(vh) = &p.nodes[0] else {
        panic!("a section")
    };
    assert!(vh.is("VirtualHost"));
    let Node::Section(loc) = &vh.children[0] else {
        panic!("a section")
    };
    assert_eq!(loc.args, vec!["/app"]);
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(p.problems[0].reason.contains("not open"));
    assert!(p.problems[1].reason.contains("never closed"));
}

#[test]
fn defines_are_expanded_and_other_references_kept() {
    let p = parse_text(
        Path::new("/x/site.conf"),
        "Define IDP https://idp.example.com\nOIDCProviderIssuer ${IDP}/realms/a\nOIDCClientSecret ${SECRET}\n",
    );
    let d = directives(&p.nodes);
    assert_eq!(d[0].1, vec!["https://idp.example.com/realms/a"]);
    assert_eq!(d[1].1, vec!["${SECRET}"]);
}

#[test]
fn includes_globs_cycles_and_missing_files() {
    let dir = scratch();
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::write(
        dir.join("main.conf"),
        "Include conf.d/*.conf\nIncludeOptional missing/*.conf\nIncludeOptional nothing.conf\nInclude absent.conf\nOIDCClientID last\n",
    )
    .unwrap();
    std::fs::write(dir.join("conf.d/b.conf"), "OIDCScope b\n").unwrap();
    std::fs::write(
        dir.join("conf.d/a.conf"),
        "OIDCScope a\nInclude ../main.conf\n",
    )
    .unwrap();
    let p = parse_files(&[dir.join("main.conf")]).unwrap();
    let names: Vec<String> = directives(&p.nodes)
        .into_iter()
        .map(|(n, a, _)| format!("{n} {}", a.join(" ")))
        .collect();
    assert_eq!(
        names,
        vec!["OIDCScope a", "OIDCScope b", "OIDCClientID last"]
    );
    let reasons: Vec<&str> = p.problems.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("cycle"), "{reasons:?}");
    assert!(
        reasons[1].contains("cannot read absent.conf"),
        "{reasons:?}"
    );
    assert_eq!(p.problems[0].source.file, "conf.d/a.conf");
}

#[test]
fn include_depth_is_bounded() {
    let dir = scratch();
    for i in 0..20 {
        std::fs::write(
            dir.join(format!("f{i}.conf")),
            format!("OIDCScope s{i}\nInclude f{}.conf\n", i + 1),
        )
        .unwrap();
    }
    std::fs::write(dir.join("f20.conf"), "OIDCScope end\n").unwrap();
    let p = parse_files(&[dir.join("f0.conf")]).unwrap();
    assert_eq!(directives(&p.nodes).len(), 16);
    assert!(p.problems.iter().any(|p| p.reason.contains("deeper")));
}

#[test]
fn an_unreadable_input_is_an_error() {
    let dir = scratch();
    assert!(matches!(
        import(&[dir.join("none.conf")]),
        Err(ImportError::Unreadable { .. })
    ));
}

fn import_text(text: &str) -> Import {
    let dir = scratch();
    std::fs::write(dir.join("site.conf"), text).unwrap();
    import(&[dir.join("site.conf")]).unwrap()
}

#[test]
fn secrets_are_never_copied() {
    let out = import_text(
        "OIDCProviderMetadataURL https://idp.example.com/.well-known/openid-configuration\nOIDCClientID app\nOIDCClientSecret very-secret-value-1\nOIDCCryptoPassphrase very-secret-value-2\nOIDCRedirectURI /cb\nOIDCOAuthIntrospectionClientAuthBearerToken very-secret-value-3\n<Location />\nAuthType openid-connect\nRequire valid-user\nProxyPass http://app:8080/\n</Location>\n",
    );
    let all = format!("{}{}", out.toml, out.report());
    for secret in [
        "very-secret-value-1",
        "very-secret-value-2",
        "very-secret-value-3",
    ] {
        assert!(!all.contains(secret), "{all}");
    }
    assert!(out
        .toml
        .contains("client_secret = \"${OIDC_CLIENT_SECRET}\""));
    assert!(out
        .toml
        .contains("passphrase = \"${OIDC_CRYPTO_PASSPHRASE}\""));
}

#[test]
fn an_unmapped_rule_fails_closed() {
    let out = import_text(
        "OIDCProviderMetadataURL https://idp.example.com/.well-known/openid-configuration\nOIDCClientID app\nOIDCRedirectURI /cb\n<Location /app>\nAuthType openid-connect\nRequire claims_expr '.x == 1'\nProxyPass http://app:8080/app\n</Location>\n",
    );
    assert!(out.toml.contains(FAIL_CLOSED_RULE), "{}", out.toml);
    assert_eq!(out.exit_code(), 2);
    assert!(out
        .report()
        .contains("site.conf:6 Require: a jq expression"));
}

#[test]
fn values_the_gateway_refuses_are_left_out_and_reported() {
    let out = import_text(
        "OIDCProviderMetadataURL https://idp.example.com/.well-known/openid-configuration\nOIDCClientID app\nOIDCRedirectURI /\nOIDCCookie \"bad cookie\"\nOIDCCryptoPassphrase short\n<Location />\nAuthType openid-connect\nRequire valid-user\nProxyPass http://app:8080/\n</Location>\n",
    );
    assert!(!out.toml.contains("redirect_uri"), "{}", out.toml);
    assert!(!out.toml.contains("cookie_name"), "{}", out.toml);
    assert!(
        out.toml.contains("allow_weak_passphrase = true"),
        "{}",
        out.toml
    );
    let report = out.report();
    assert!(
        report.contains("OIDCRedirectURI, site.conf:3: the gateway refuses its value"),
        "{report}"
    );
    assert!(
        report.contains("OIDCCookie, site.conf:4: the gateway refuses its value"),
        "{report}"
    );
    assert!(!report.contains("short"), "{report}");
    assert_eq!(out.exit_code(), 2);
}

#[test]
fn a_latin1_file_is_read() {
    let dir = scratch();
    let mut bytes = b"# caf\xe9\nOIDCClientID app\n".to_vec();
    bytes.extend_from_slice(b"ProxyPass / http://app:8080/\n");
    std::fs::write(dir.join("site.conf"), bytes).unwrap();
    assert!(import(&[dir.join("site.conf")]).is_ok());
}

#[test]
fn client_assertions_and_form_post_are_mapped_and_a_key_file_is_reported() {
    let site = |extra: &str| {
        import_text(&format!(
            "OIDCProviderMetadataURL https://idp.example.com/.well-known/openid-configuration\nOIDCClientID app\nOIDCClientSecret a-secret-of-more-than-32-characters-xx\nOIDCCryptoPassphrase p\nOIDCRedirectURI /cb\n{extra}<Location />\nAuthType openid-connect\nRequire valid-user\nProxyPass http://app:8080/\n</Location>\n"
        ))
    };
    let out = site("OIDCProviderTokenEndpointAuth client_secret_jwt\nOIDCResponseMode form_post\n");
    assert!(
        out.toml
            .contains("token_endpoint_auth = \"client_secret_jwt\""),
        "{}",
        out.toml
    );
    assert!(
        out.toml.contains("response_mode = \"form_post\""),
        "{}",
        out.toml
    );
    let out = site("OIDCProviderTokenEndpointAuth private_key_jwt\n");
    assert!(!out.toml.contains("private_key_jwt"), "{}", out.toml);
    assert!(
        out.report().contains("private_key_file"),
        "{}",
        out.report()
    );
}
