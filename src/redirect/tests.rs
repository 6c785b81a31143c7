use super::*;
use RedirectError::*;

const HOST: &str = "app.example.com";

fn check(target: &str) -> Result<String, RedirectError> {
    validate_redirect(target, HOST, &[])
}

/// As config validation builds them.
fn allow(patterns: &[&str]) -> Vec<Regex> {
    patterns
        .iter()
        .map(|p| Regex::new(&format!("^(?:{p})$")).unwrap())
        .collect()
}

/// Open-redirect payloads against a gateway at `app.example.com` with no allow-list,
/// after the well-known public payload lists, and every one must be refused.
const PAYLOADS: &[&str] = &[
    // scheme-relative and slash/backslash mixes
    "//evil.com",
    "///evil.com",
    "////evil.com",
    "//evil.com/%2f..",
    "/\\evil.com",
    "\\\\evil.com",
    "\\/evil.com",
    "/\\/evil.com",
    "\\/\\/evil.com",
    "//app.example.com/x",
    " //evil.com",
    "\u{a0}//evil.com",
    // absolute URLs elsewhere
    "https://evil.com",
    "http://evil.com/",
    "https://evil.com/app.example.com",
    "https://app.example.com.evil.com/",
    "https://evilapp.example.com/",
    "https://app.example.com:8443/",
    "https://app.example.com.:443/",
    // userinfo tricks
    "https://app.example.com@evil.com/",
    "https://evil.com@app.example.com/",
    "https://app.example.com:443@evil.com/",
    "http://app.example.com:80@evil.com/",
    "https://app.example.com%2f@evil.com",
    "https://evil.com%2f@app.example.com",
    "https://app.example.com%40evil.com",
    "https://:@evil.com",
    // delimiters that end the authority early
    "https://evil.com#@app.example.com",
    "https://evil.com?@app.example.com",
    "https://evil.com\\@app.example.com",
    "http://evil.com:80\\@app.example.com/",
    // schemes without slashes, and slash confusion after the scheme
    "https:evil.com",
    "https:/evil.com",
    "http:/\\evil.com",
    "https:\\\\evil.com",
    "https:////evil.com",
    "https:/%5cevil.com",
    "https://",
    "http:",
    // script and other schemes
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.domain)",
    "javascript://%0aalert(1)",
    "javascript://app.example.com/%0Aalert(1)",
    "javascript:alert(1);//https://app.example.com/",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "java%0ascript:alert(1)",
    "\u{1}javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "DATA:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "ftp://app.example.com/",
    "file:///etc/passwd",
    "blob:https://app.example.com/uuid",
    "mailto:a@evil.com",
    "ｊavascript:alert(1)",
    // schemes smuggled behind the first slash
    "/http://evil.com",
    "/https:evil.com",
    "/javascript:alert(1)",
    "/%68ttp://evil.com",
    "/http%3a//evil.com",
    // encoded slashes and backslashes right after the first slash
    "/%2f%2fevil.com",
    "/%2F/evil.com",
    "/%5cevil.com",
    "/%5C%5Cevil.com",
    "/%5c/evil.com",
    "https://app.example.com/%2f%2fevil.com",
    "https://app.example.com//evil.com",
    "https://app.example.com/http://evil.com",
    // dot segments, plain and encoded
    "/%2e%2e//evil.com",
    "/..//evil.com",
    "/./\\evil.com",
    "/a/../..//evil.com",
    "/%2E%2E/%2E%2E/evil.com",
    "/.%2e/evil.com",
    "https://app.example.com/a/..//evil.com",
    // CRLF and other control characters, raw and encoded
    "/\r\nSet-Cookie:x=1",
    "/%0d%0aLocation:%20https://evil.com",
    "/%0D%0ASet-Cookie:%20x=1",
    "/foo%00.evil.com",
    "/%09/evil.com",
    "/%7f/evil.com",
    "/%1b[0m",
    "/\u{0}evil",
    "/\u{85}evil",
    "https://app.example.com/\t",
    "https://evil.com%00.app.example.com/",
    // not starting with a slash at all
    "evil.com",
    "evil.com/app",
    "./evil.com",
    "../evil.com",
    "?next=//evil.com",
    "#//evil.com",
    "%2f%2fevil.com",
    "%5c%5cevil.com",
    "〱evil.com",
    // IDN, Unicode and IP notations, judged by the parsed host
    "http://ⓔⓥⓘⓛ.ⓒⓞⓜ/",
    "https://evil。com",
    "https://app.example.com。evil.com",
    "https://аpp.example.com/",
    "https://app.example.com\u{2025}evil.com",
    "https://app.example.com.\u{200b}evil.com",
    "http://0x7f.1/",
    "http://2130706433/",
    "http://[::1]/",
    // empty
    "",
];

#[test]
fn there_are_at_least_fifty_payloads_and_no_duplicates() {
    let mut unique: Vec<&str> = PAYLOADS.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), PAYLOADS.len(), "duplicate payloads");
    assert!(PAYLOADS.len() >= 50, "only {} payloads", PAYLOADS.len());
}

#[test]
fn every_open_redirect_payload_is_refused() {
    let passed: Vec<(&str, String)> = PAYLOADS
        .iter()
        .filter_map(|p| check(p).ok().map(|ok| (*p, ok)))
        .collect();
    assert!(passed.is_empty(), "payloads let through: {passed:#?}");
}

#[test]
fn payloads_are_refused_with_a_loose_allow_list_that_still_names_the_host() {
    // A careless pattern must not reopen what the structural checks close.
    let allowed = allow(&[r"(https?://app\.example\.com)?/.*"]);
    for p in [
        "//evil.com",
        "/\\evil.com",
        "/%2f%2fevil.com",
        "/%5cevil.com",
        "/http://evil.com",
        "/..//evil.com",
        "/%0d%0aSet-Cookie:x",
        "https://app.example.com//evil.com",
    ] {
        assert!(validate_redirect(p, HOST, &allowed).is_err(), "{p}");
    }
}

#[test]
fn errors_name_the_failed_check() {
    assert_eq!(check(""), Err(Malformed));
    assert_eq!(check("evil.com"), Err(Malformed));
    assert_eq!(check("https:evil.com"), Err(Malformed));
    assert_eq!(check("/%2e%2e/x"), Err(Malformed));
    assert_eq!(check("https://evil.com@app.example.com/"), Err(Malformed));
    assert_eq!(check(" /x"), Err(Malformed));
    assert_eq!(check("/x\r\n"), Err(ControlCharacter));
    assert_eq!(check("/x%0A"), Err(ControlCharacter));
    assert_eq!(check("/x%7F"), Err(ControlCharacter));
    assert_eq!(check("javascript:alert(1)"), Err(BadScheme));
    assert_eq!(check("ftp://app.example.com/"), Err(BadScheme));
    assert_eq!(check("/http:/x"), Err(BadScheme));
    assert_eq!(check("//evil.com"), Err(OtherHost));
    assert_eq!(check("/\\evil.com"), Err(OtherHost));
    assert_eq!(check("/%2fevil.com"), Err(OtherHost));
    assert_eq!(check("/%5Cevil.com"), Err(OtherHost));
    assert_eq!(check("https://evil.com/"), Err(OtherHost));
    assert_eq!(check("https://app.example.com@evil.com/"), Err(OtherHost));
}

#[test]
fn too_long_targets_are_refused() {
    let at_limit = format!("/{}", "a".repeat(MAX_REDIRECT_LEN - 1));
    assert!(check(&at_limit).is_ok());
    let over = format!("/{}", "a".repeat(MAX_REDIRECT_LEN));
    assert_eq!(check(&over), Err(TooLong));
}

#[test]
fn errors_read_as_short_reasons() {
    assert_eq!(
        OtherHost.to_string(),
        "redirect target points to another host"
    );
    assert_eq!(TooLong.to_string(), "redirect target is longer than 16 KiB");
}

// ---- targets that pass ----

const GOOD: &[&str] = &[
    "/",
    "/app?x=1",
    "/a/b#frag",
    "/a/b?c=d&e=f#g",
    "https://app.example.com/x",
    "http://app.example.com/x?y=%2F",
    "https://app.example.com",
    "https://app.example.com/",
    "HTTPS://APP.EXAMPLE.COM/x",
    "https://app.example.com:443/x",
    "/search?q=http://evil.com",
    "/login?next=//evil.com",
    "/a/b:c",
    "/caf%C3%A9",
    "/café",
    "/path%20with%20spaces",
    "/%2e%2e.txt",
    "/.well-known/x",
    "/a/%2F/b",
];

#[test]
fn good_targets_pass_unchanged() {
    for t in GOOD {
        assert_eq!(check(t).as_deref(), Ok(*t), "{t}");
    }
}

#[test]
fn backslashes_are_returned_as_slashes() {
    assert_eq!(check("/a\\b\\c").as_deref(), Ok("/a/b/c"));
    assert_eq!(
        check("https:\\\\app.example.com\\x").as_deref(),
        Ok("https://app.example.com/x")
    );
}

#[test]
fn request_host_with_port() {
    let host = "localhost:8080";
    let ok = |t: &str| validate_redirect(t, host, &[]);
    assert!(ok("http://localhost:8080/x").is_ok());
    assert!(ok("http://LOCALHOST:8080/x").is_ok());
    assert_eq!(ok("http://localhost/x"), Err(OtherHost));
    assert_eq!(ok("http://localhost:8081/x"), Err(OtherHost));
    assert_eq!(ok("http://localhost:8080@evil.com/x"), Err(OtherHost));
}

#[test]
fn request_host_is_compared_case_insensitively() {
    assert!(validate_redirect("https://app.example.com/x", "App.Example.COM", &[]).is_ok());
}

#[test]
fn default_ports_compare_equal() {
    assert!(validate_redirect("https://h.test/x", "h.test:443", &[]).is_ok());
    assert!(validate_redirect("http://h.test:80/x", "h.test", &[]).is_ok());
    assert_eq!(
        validate_redirect("http://h.test/x", "h.test:443", &[]),
        Err(OtherHost)
    );
}

#[test]
fn ipv6_request_host() {
    assert!(validate_redirect("http://[::1]:8080/x", "[::1]:8080", &[]).is_ok());
    assert_eq!(
        validate_redirect("http://[::2]:8080/x", "[::1]:8080", &[]),
        Err(OtherHost)
    );
}

#[test]
fn a_suspicious_request_host_matches_nothing_absolute() {
    for host in ["", "evil.com@app.example.com", "app.example.com/x", "a b"] {
        assert_eq!(
            validate_redirect("https://app.example.com/x", host, &[]),
            Err(OtherHost),
            "{host:?}"
        );
    }
    // Relative targets do not depend on the host.
    assert!(validate_redirect("/x", "", &[]).is_ok());
}

// ---- allow-list ----

#[test]
fn allow_list_admits_matching_urls_on_other_hosts() {
    let allowed = allow(&[r"https://app\.example\.com/.*", r"https://other\.test/done"]);
    let host = "gateway.internal:8080";
    let v = |t: &str| validate_redirect(t, host, &allowed);
    assert_eq!(
        v("https://app.example.com/x").as_deref(),
        Ok("https://app.example.com/x")
    );
    assert!(v("https://other.test/done").is_ok());
    assert_eq!(v("https://other.test/done/more"), Err(NotAllowed));
    assert_eq!(v("https://evil.com/"), Err(NotAllowed));
    assert_eq!(v("https://app.example.com.evil.com/"), Err(NotAllowed));
    assert_eq!(v("/relative"), Err(NotAllowed));
}

#[test]
fn allow_list_matches_the_normalised_url() {
    let allowed = allow(&[r"https://app\.example\.com/.*"]);
    assert_eq!(
        validate_redirect("https:\\\\app.example.com\\x", "h", &allowed).as_deref(),
        Ok("https://app.example.com/x")
    );
}

#[test]
fn allow_list_never_admits_controls_or_script_schemes() {
    let allowed = allow(&[".*"]);
    let v = |t: &str| validate_redirect(t, HOST, &allowed);
    assert_eq!(v("javascript:alert(1)"), Err(BadScheme));
    assert_eq!(v("data:text/html,x"), Err(BadScheme));
    assert_eq!(v("/x\r\nSet-Cookie: a"), Err(ControlCharacter));
    assert_eq!(v("/x%0d%0a"), Err(ControlCharacter));
    assert_eq!(v(&"a".repeat(MAX_REDIRECT_LEN + 1)), Err(TooLong));
    assert_eq!(v(""), Err(Malformed));
    // The administrator asked for any host: that much is honoured.
    assert!(v("https://anywhere.test/x").is_ok());
}

/// An allow-list decides the host, never the rest: userinfo, other schemes and a missing
/// `//` are refused even when a loose pattern matches them.
#[test]
fn allow_list_keeps_the_scheme_and_userinfo_checks() {
    let allowed = allow(&[r"https://app\.example\.com.*", r"ftp://.*", r"https:app.*"]);
    let v = |t: &str| validate_redirect(t, HOST, &allowed);
    assert!(v("https://app.example.com/x").is_ok());
    assert_eq!(v("https://app.example.com@evil.test/"), Err(Malformed));
    assert_eq!(v("https://app.example.com:pw@evil.test/"), Err(Malformed));
    assert_eq!(v("ftp://files.test/x"), Err(BadScheme));
    assert_eq!(v("https:app.example.com"), Err(Malformed));
}

#[test]
fn allow_list_for_relative_paths() {
    let allowed = allow(&["/app/.*"]);
    let v = |t: &str| validate_redirect(t, HOST, &allowed);
    assert!(v("/app/x?y=1").is_ok());
    assert_eq!(v("/other"), Err(NotAllowed));
    assert_eq!(v(&format!("https://{HOST}/app/x")), Err(NotAllowed));
}

#[test]
fn never_panics_on_odd_input() {
    let odd = [
        "%",
        "%%",
        "%2",
        "/%",
        "/%E",
        "/%ZZ",
        ":",
        "a:",
        "/:",
        "/\u{10ffff}",
        "[",
        "http://[",
        "http://[::1",
        "https://a:99999/",
        "/%c3",
        "/%ff%fe",
    ];
    for t in odd {
        let _ = check(t);
    }
}
