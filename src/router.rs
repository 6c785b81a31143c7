//! Maps a request path to its route: longest configured prefix, on path-segment boundaries,
//! matched against the *decoded* path so that `/%61dmin` or `/public/..%2fadmin` cannot
//! reach one route's upstream under another route's rules.

use crate::config::RouteConfig;
use percent_encoding::percent_decode_str;
use std::borrow::Cow;

pub(crate) struct Router {
    /// Longest path first.
    routes: Vec<RouteConfig>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// The path contains `.` or `..` segments (raw or encoded).
    DotSegment,
}

impl Router {
    pub(crate) fn new(routes: &[RouteConfig]) -> Router {
        let mut routes = routes.to_vec();
        routes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        Router { routes }
    }

    /// The route for `raw_path`, `Ok(None)` when no route matches.
    pub(crate) fn route(&self, raw_path: &str) -> Result<Option<&RouteConfig>, RouteError> {
        let path = normalise(raw_path)?;
        Ok(self.routes.iter().find(|r| prefix_matches(&r.path, &path)))
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

/// Percent-decodes, turns `\` into `/`, collapses repeated slashes, and refuses dot
/// segments. Borrows when the path needs none of that (the common case).
pub(crate) fn normalise(raw_path: &str) -> Result<Cow<'_, str>, RouteError> {
    let needs_work = raw_path.contains(['%', '\\']) || raw_path.contains("//");
    let decoded: Cow<'_, str> = if needs_work {
        let d = percent_decode_str(raw_path).decode_utf8_lossy();
        let mut out = String::with_capacity(d.len());
        for c in d.chars() {
            let c = if c == '\\' { '/' } else { c };
            if c == '/' && out.ends_with('/') {
                continue;
            }
            out.push(c);
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(raw_path)
    };
    if decoded.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(RouteError::DotSegment);
    }
    Ok(decoded)
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
            )
            .unwrap(),
            auth: AuthKind::None,
            unauth_action: UnauthAction::Auth,
            require_claims: vec![],
            preserve_host: false,
            upgrades: vec!["websocket".into()],
        }
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
}
