//! Property tests over generated hostile input (the fuzz targets in `fuzz/` explore the
//! same parsers with coverage guidance; these run in every `cargo test`): a redirect
//! target that passes validation never leaves the host; a path routed to an open route
//! never normalises, under Tomcat's or nginx's rules, into a protected prefix; and no
//! parser an anonymous client feeds panics. Generation is a fixed-seed xorshift, so a
//! failure reproduces.

use oidc_gateway::fuzzing;

/// xorshift64*: small, deterministic, good enough to pick tokens.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    /// `1..=max` tokens from `from`, concatenated.
    fn string(&mut self, from: &[&str], max: u64) -> String {
        let n = 1 + self.next() % max;
        (0..n).map(|_| self.pick(from)).collect()
    }
}

const PATH_TOKENS: &[&str] = &[
    "/",
    "//",
    "\\",
    "open",
    "admin",
    "ADMIN",
    "x",
    ".",
    "..",
    ";",
    ";x",
    ";jsessionid=1",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%3b",
    "%00",
    "%0a",
    "%c0%ae",
    "%e2%80%ae",
    "%25",
    "%",
    "%zz",
    "?",
    "#",
    "é",
    "%c3%a9",
    " ",
];

const URL_TOKENS: &[&str] = &[
    "/",
    "//",
    "\\",
    "\\\\",
    "http:",
    "https:",
    "javascript:",
    "//evil.test",
    "evil.test",
    "app.test",
    "@",
    ":",
    "%2f",
    "%5c",
    "%2e",
    "..",
    ".",
    "?",
    "#",
    "%0d%0a",
    "\t",
    " ",
    "%00",
    "user:pw@",
    "app.test.evil.test",
    "[::1]",
    "127.0.0.1",
    "0x7f.1",
    "%40",
    "\u{3002}",
    "xn--",
    "x",
    "/x",
];

/// A model of how Tomcat maps a request path to a resource: percent-decode, `\` as `/`,
/// strip `;params` from every segment, merge empty segments, resolve dot segments.
fn tomcat(raw: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    Some(format!("/{}", out.join("/")))
}

/// nginx: percent-decode, merge `//`, resolve dot segments; `;` is literal.
fn nginx(raw: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    Some(format!("/{}", out.join("/")))
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

#[test]
fn a_path_routed_to_the_open_route_never_reaches_the_protected_one_upstream() {
    // Routes: `/open` open, `/open/admin` protected (case-sensitive upstreams).
    let mut g = Gen(0x5eed_0001);
    let mut routed_open = 0;
    for _ in 0..50_000 {
        let raw = format!("/{}", g.string(PATH_TOKENS, 10));
        let Some(route) = fuzzing::open_or_protected(&raw) else {
            continue; // refused (400) or no route
        };
        fuzzing::route_path(&raw);
        if route != "/open" {
            continue;
        }
        routed_open += 1;
        for (upstream, mapped) in [("tomcat", tomcat(&raw)), ("nginx", nginx(&raw))] {
            if let Some(mapped) = mapped {
                assert!(
                    !under(&mapped, "/open/admin"),
                    "{raw:?} was routed to /open but {upstream} serves {mapped:?}"
                );
            }
        }
    }
    assert!(
        routed_open > 300,
        "the generator reached the open route: {routed_open}"
    );
}

#[test]
fn a_redirect_target_that_passes_never_leaves_the_host() {
    let mut g = Gen(0x5eed_0002);
    for _ in 0..50_000 {
        let target = g.string(URL_TOKENS, 8);
        for host in ["app.test", "app.test:8443", "127.0.0.1:8080"] {
            fuzzing::redirect_target(&target, host);
        }
    }
}

#[test]
fn hostile_cookies_queries_and_headers_do_not_panic() {
    let mut g = Gen(0x5eed_0003);
    let cookie_tokens = &[
        "oidc_session=",
        "oidc_session_0=",
        "oidc_session_1=",
        "oidc_session_chunks=",
        "oidc_session_chunks=2",
        "oidc_session_chunks=17",
        "oidc_state_x=",
        "a=b",
        "; ",
        ";",
        "=",
        "\"",
        "AAAA",
        "eyJ",
        "\n",
        "%",
        " ",
        "x",
    ];
    let query_tokens = &[
        "code=",
        "state=",
        "error=",
        "logout=",
        "logout=get",
        "logout=backchannel",
        "refresh=",
        "access_token=",
        "remove_at_cache=",
        "info=json",
        "sid=",
        "iss=",
        "&",
        "=",
        "%",
        "%zz",
        "+",
        "x",
        "%2F",
    ];
    let header_tokens = &[
        "host: app.test",
        "host: evil.test/x",
        "host: a@b",
        "host: ",
        "x-forwarded-host: evil",
        "x-forwarded-proto: https",
        "x-forwarded-for: 1.2.3.4",
        "\n",
        ":",
        " ",
        ",",
        "x",
    ];
    for _ in 0..20_000 {
        fuzzing::session_cookies(g.string(cookie_tokens, 12).as_bytes());
        fuzzing::hook_query(&g.string(query_tokens, 12));
        let headers = g.string(header_tokens, 8);
        fuzzing::request_context(headers.as_bytes(), false);
        fuzzing::request_context(headers.as_bytes(), true);
    }
}
