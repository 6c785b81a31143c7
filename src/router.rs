//! Maps a request path to its route: longest configured prefix, on path-segment boundaries,
//! matched against the path as the most lenient upstream would read it, so that no
//! spelling reaches one route's upstream under another route's rules: percent-decoded
//! (`/%61dmin`), `\` as `/` and `//` merged (nginx), `;params` removed from every segment
//! (Tomcat, Jetty: `/open;x/admin` is `/open/admin`), and dot segments refused in any
//! spelling (`..`, `%2e%2e`, `..;`, `.;x`). Decoded control characters and invalid or
//! overlong UTF-8 (`%c0%ae`) are refused. Routes may match case-insensitively (IIS).
//!
//! The upstream still receives the request's own path; this normal form only decides
//! the route.

use crate::config::RouteConfig;
use percent_encoding::percent_decode_str;
use std::borrow::Cow;

pub(crate) struct Router {
    /// Longest path first.
    routes: Vec<RouteConfig>,
    /// Whether any route has a `host`: without, the request's host is not looked at.
    by_host: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RouteError {
    /// The path contains `.` or `..` segments (raw, encoded, or with `;params`).
    #[error("the path contains dot segments")]
    DotSegment,
    /// A decoded control character (NUL, CR, LF, …).
    #[error("the path contains a control character")]
    Control,
    /// The decoded path is not UTF-8 (including overlong encodings such as `%c0%ae`).
    #[error("the path is not valid UTF-8")]
    Encoding,
}

impl Router {
    pub(crate) fn new(routes: &[RouteConfig]) -> Router {
        let mut routes = routes.to_vec();
        routes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        Router {
            by_host: routes.iter().any(|r| !r.hosts.is_empty()),
            routes,
        }
    }

    /// The route for `raw_path` on any host, `Ok(None)` when no route matches.
    pub(crate) fn route(&self, raw_path: &str) -> Result<Option<&RouteConfig>, RouteError> {
        Ok(self.route_indexed("", raw_path)?.map(|(_, route)| route))
    }

    /// The route for a request to `host` (as the browser sees the gateway, maybe with a
    /// port) and `raw_path`, with its index in [`Router::routes`]: among the routes whose
    /// path prefix matches, those with the most specific matching `host` (an exact name,
    /// then the longest `*.domain`, then routes without `host`), and of these the longest
    /// path.
    pub(crate) fn route_indexed(
        &self,
        host: &str,
        raw_path: &str,
    ) -> Result<Option<(usize, &RouteConfig)>, RouteError> {
        let path = normalise(raw_path)?;
        let mut matching = self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| prefix_matches(&r.path, &path, r.case_insensitive));
        if !self.by_host {
            return Ok(matching.next());
        }
        let host = host_name(host);
        let mut best: Option<(usize, (usize, &RouteConfig))> = None;
        for (index, route) in matching {
            let specificity = if route.hosts.is_empty() {
                Some(0)
            } else {
                route
                    .hosts
                    .iter()
                    .filter(|h| h.matches(host))
                    .map(|h| h.specificity())
                    .max()
            };
            // Longest path first: a later route wins only with a more specific host.
            if let Some(specificity) = specificity {
                if best.is_none_or(|(b, _)| specificity > b) {
                    best = Some((specificity, (index, route)));
                }
            }
        }
        Ok(best.map(|(_, found)| found))
    }

    /// Every route, in the order they are tried (longest prefix first).
    pub(crate) fn routes(&self) -> &[RouteConfig] {
        &self.routes
    }
}

/// The name part of a `Host` value: without its port and a trailing dot (`[::1]:8080` is
/// `[::1]`, `Example.com.:80` is `Example.com`).
fn host_name(host: &str) -> &str {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => name,
        _ => host,
    };
    name.strip_suffix('.').unwrap_or(name)
}

fn prefix_matches(prefix: &str, path: &str, case_insensitive: bool) -> bool {
    if prefix == "/" {
        return true;
    }
    let Some(head) = path.as_bytes().get(..prefix.len()) else {
        return false;
    };
    let same = if case_insensitive {
        head.eq_ignore_ascii_case(prefix.as_bytes())
    } else {
        head == prefix.as_bytes()
    };
    same && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

/// The path as routes are matched against it (see the module docs). Borrows when the
/// path needs no work (the common case: no `%`, `\`, `;` or `//`).
pub(crate) fn normalise(raw_path: &str) -> Result<Cow<'_, str>, RouteError> {
    // One pass: anything to decode, split or check (non-ASCII may hold a C1 control,
    // which the slow path refuses like a decoded one).
    let needs_work = raw_path
        .bytes()
        .any(|b| matches!(b, b'%' | b'\\' | b';') || !(0x20..0x7f).contains(&b))
        || raw_path.contains("//");
    if !needs_work {
        if raw_path.split('/').any(is_dot_segment) {
            return Err(RouteError::DotSegment);
        }
        return Ok(Cow::Borrowed(raw_path));
    }
    let bytes: Cow<'_, [u8]> = percent_decode_str(raw_path).into();
    let decoded = std::str::from_utf8(&bytes).map_err(|_| RouteError::Encoding)?;
    if decoded.chars().any(char::is_control) {
        return Err(RouteError::Control);
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in decoded.split(['/', '\\']) {
        // `;params` go: `..;x` is a dot segment, `admin;jsessionid=1` is `admin`.
        let segment = segment.split(';').next().unwrap_or("");
        if is_dot_segment(segment) {
            return Err(RouteError::DotSegment);
        }
        if segment.is_empty() {
            continue;
        }
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || decoded.ends_with(['/', '\\']) {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

fn is_dot_segment(segment: &str) -> bool {
    segment == "." || segment == ".."
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthKind, UnauthAction};

    fn route(path: &str) -> RouteConfig {
        RouteConfig {
            path: path.into(),
            upstream: crate::config::UpstreamTarget::new(
                url::Url::parse("http://127.0.0.1:1/").unwrap(),
            ),
            auth: AuthKind::None,
            unauth_action: UnauthAction::Auth,
            require_claims: vec![],
            preserve_host: false,
            upgrades: vec!["websocket".into()],
            case_insensitive: false,
            hosts: vec![],
            anonymous_methods: vec![],
            header_list: 0,
            preserve_post: false,
            providers: vec![0],
        }
    }

    fn hosted(path: &str, hosts: &[&str]) -> RouteConfig {
        let mut r = route(path);
        r.hosts = hosts
            .iter()
            .map(|h| crate::config::HostPattern::parse(h).unwrap())
            .collect();
        r
    }

    #[test]
    fn the_most_specific_host_then_the_longest_path_wins() {
        let r = Router::new(&[
            route("/"),
            route("/api"),
            hosted("/", &["app.example.com"]),
            hosted("/admin", &["*.example.com"]),
            hosted("/", &["*.example.com"]),
            hosted("/", &["*.eu.example.com", "legacy.test"]),
        ]);
        let p = |host: &str, path: &str| {
            let (_, found) = r.route_indexed(host, path).unwrap().unwrap();
            let hosts: Vec<String> = found.hosts.iter().map(|h| h.to_string()).collect();
            format!("{}{}", hosts.join("|"), found.path)
        };
        // An exact name beats every wildcard and the host-less routes, even a longer path.
        assert_eq!(p("app.example.com", "/api/x"), "app.example.com/");
        assert_eq!(p("APP.Example.com:8443", "/admin"), "app.example.com/");
        assert_eq!(p("app.example.com.", "/"), "app.example.com/");
        // Within one host pattern, the longest path.
        assert_eq!(p("other.example.com", "/admin/x"), "*.example.com/admin");
        assert_eq!(p("other.example.com", "/api"), "*.example.com/");
        // The longer wildcard domain wins.
        assert_eq!(
            p("x.eu.example.com", "/admin"),
            "*.eu.example.com|legacy.test/"
        );
        assert_eq!(p("legacy.test", "/"), "*.eu.example.com|legacy.test/");
        // `*.example.com` is not `example.com` itself; unknown hosts take host-less routes.
        assert_eq!(p("example.com", "/api/x"), "/api");
        assert_eq!(p("elsewhere.test", "/"), "/");
        assert_eq!(p("[::1]:8080", "/api"), "/api");
        assert_eq!(p("evil-example.com", "/"), "/");
    }

    #[test]
    fn a_host_without_a_matching_route_has_none() {
        let r = Router::new(&[hosted("/", &["app.example.com"])]);
        assert!(r.route_indexed("other.test", "/").unwrap().is_none());
        assert!(r.route_indexed("app.example.com", "/").unwrap().is_some());
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let r = Router::new(&[route("/"), route("/api"), route("/api/v2")]);
        let p = |s: &str| r.route(s).unwrap().map(|r| r.path.clone()).unwrap();
        assert_eq!(p("/"), "/");
        assert_eq!(p("/api"), "/api");
        assert_eq!(p("/api/"), "/api");
        assert_eq!(p("/api/x"), "/api");
        assert_eq!(p("/apix"), "/");
        assert_eq!(p("/api/v2/y"), "/api/v2");
        assert_eq!(p("/api/v20"), "/api");
        assert_eq!(p("/%61pi/x"), "/api");
        assert_eq!(p("//api//v2"), "/api/v2");
        assert_eq!(p("/api%2fv2"), "/api/v2");
        assert_eq!(p("\\api\\v2"), "/api/v2");
    }

    #[test]
    fn no_route_without_root() {
        let r = Router::new(&[route("/app")]);
        assert!(r.route("/other").unwrap().is_none());
        assert!(r.route("/app/x").unwrap().is_some());
    }

    #[test]
    fn dot_segments_refused() {
        let r = Router::new(&[route("/")]);
        for p in [
            "/a/../b",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a/.%2E/b",
            "/..",
            "/a/..%2fb",
            "/a\\..\\b",
        ] {
            assert_eq!(r.route(p).unwrap_err(), RouteError::DotSegment, "{p}");
        }
        assert!(r.route("/a/..b/c").is_ok());
    }

    #[test]
    fn params_are_removed_from_every_segment() {
        let r = Router::new(&[route("/"), route("/open"), route("/open/admin")]);
        let p = |s: &str| r.route(s).unwrap().map(|r| r.path.clone()).unwrap();
        assert_eq!(p("/open;x/admin"), "/open/admin");
        assert_eq!(p("/open/admin;jsessionid=1/x"), "/open/admin");
        assert_eq!(p("/open/admin%3bx"), "/open/admin");
        assert_eq!(p("/open;/admin"), "/open/admin");
        assert_eq!(p("/open/x;/admin"), "/open");
    }

    #[test]
    fn dot_segments_with_params_are_refused() {
        let r = Router::new(&[route("/")]);
        for p in [
            "/open/..;/admin",
            "/a/.;x/b",
            "/a/%2e%2e;/b",
            "/a/..;x",
            "/;/..;/x",
        ] {
            assert_eq!(r.route(p).unwrap_err(), RouteError::DotSegment, "{p}");
        }
    }

    #[test]
    fn control_characters_and_bad_utf8_are_refused() {
        let r = Router::new(&[route("/")]);
        for p in ["/a%00b", "/a%0d%0ab", "/a%7f", "/a%09"] {
            assert_eq!(r.route(p).unwrap_err(), RouteError::Control, "{p}");
        }
        // Overlong `.` (%c0%ae), a lone continuation byte, a truncated sequence.
        for p in ["/a/%c0%ae%c0%ae/b", "/a%80", "/a%e2%82"] {
            assert_eq!(r.route(p).unwrap_err(), RouteError::Encoding, "{p}");
        }
        assert!(r.route("/caf%c3%a9").is_ok(), "valid UTF-8 passes");
        assert!(r.route("/café").is_ok(), "raw UTF-8 too");
        // A C1 control, raw or encoded.
        assert_eq!(r.route("/a\u{82}b").unwrap_err(), RouteError::Control);
        assert_eq!(r.route("/a%c2%82b").unwrap_err(), RouteError::Control);
    }

    #[test]
    fn empty_segments_merge_as_nginx_does() {
        let r = Router::new(&[route("/"), route("/admin")]);
        let p = |s: &str| r.route(s).unwrap().map(|r| r.path.clone()).unwrap();
        assert_eq!(p("//admin"), "/admin");
    }

    #[test]
    fn case_insensitive_routes_match_any_case() {
        let mut admin = route("/Admin");
        admin.case_insensitive = true;
        let r = Router::new(&[route("/"), admin]);
        let p = |s: &str| r.route(s).unwrap().map(|r| r.path.clone()).unwrap();
        assert_eq!(p("/ADMIN/x"), "/Admin");
        assert_eq!(p("/admin"), "/Admin");
        assert_eq!(p("/%41dmin"), "/Admin");
        assert_eq!(p("/adminx"), "/");
        let strict = Router::new(&[route("/"), route("/Admin")]);
        assert_eq!(strict.route("/ADMIN").unwrap().unwrap().path, "/");
    }
}
