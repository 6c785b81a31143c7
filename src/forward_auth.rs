//! Forward-auth mode (docs/behaviour.md §11.6): a front proxy that keeps serving the app
//! (nginx `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`, Envoy `ext_authz`)
//! asks the gateway, for each of its requests, "who is this, may they?". This module reads
//! the original request out of the check's headers and turns the check into that request,
//! so the gateway runs the very route pipeline of proxy mode on it (routes, sessions,
//! refresh, claim rules, identity headers) and, where proxy mode would forward, answers
//! 200 with the identity headers instead ([`answer`]).
//!
//! And `server.login_path`: `GET <login_path>?rd=<url>` starts a login that comes back to
//! `rd`, the page nginx's `error_page 401` sends browsers to.

use crate::error::GatewayError;
use crate::identity::IdentityHeaders;
use crate::oidc::{chooser, login};
use crate::redirect::validate_redirect;
use crate::request::{Asker, RequestCtx, XFH, XFP};
use crate::response::{self, empty_body, Body};
use crate::services::Services;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode, Uri};

/// Traefik and Caddy: the original method and request target (origin-form).
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// nginx (the ingress-nginx convention): the original absolute URL and method.
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
/// nginx (its `auth_request` documentation's example): the original request target.
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");

/// Whether a request for `path` is a forward-auth check: `fa_path` itself, or (Envoy,
/// which appends the original path to its `path_prefix`) a path below it.
pub(crate) fn is_check(fa_path: &str, path: &str) -> bool {
    path.strip_prefix(fa_path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Turns a forward-auth check (from a trusted proxy) into the request it is about: its
/// method and target become the original's, and the original scheme and host are put in
/// `X-Forwarded-Proto`/`-Host` when they came in nginx's `X-Original-URL`, so that the
/// request context is worked out as for any proxied request. Where the original is read:
///
/// 1. `X-Original-URL` (absolute or origin-form), or `X-Original-URI` (a path), and
///    `X-Original-Method` (nginx);
/// 2. `X-Forwarded-Uri` and `X-Forwarded-Method` (Traefik, Caddy; nginx when the method
///    is missing);
/// 3. the path after `fa_path`, with the check's own method and query (Envoy).
pub(crate) fn into_original(parts: &mut Parts, fa_path: &str) -> Result<Asker, GatewayError> {
    let text = |name: &HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let (asker, target, method) = if let Some(url) = text(&X_ORIGINAL_URL) {
        let uri: Uri = url
            .parse()
            .map_err(|_| bad("X-Original-URL is not a URL"))?;
        let origin = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme @ ("http" | "https")), Some(authority)) => {
                Some((scheme.to_string(), authority.as_str().to_string()))
            }
            (None, None) => None,
            _ => return Err(bad("X-Original-URL is not an http(s) URL")),
        };
        let method = text(&X_ORIGINAL_METHOD).map(str::to_string);
        if let Some((scheme, authority)) = origin {
            let value = |v: String| {
                HeaderValue::try_from(v).map_err(|_| bad("X-Original-URL has an invalid host"))
            };
            parts.headers.insert(XFP, value(scheme)?);
            parts.headers.insert(XFH, value(authority)?);
        }
        let target = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        (Asker::StatusOnly, target, method)
    } else if let Some(target) = text(&X_ORIGINAL_URI) {
        let method = text(&X_ORIGINAL_METHOD).map(str::to_string);
        (Asker::StatusOnly, target.to_string(), method)
    } else if let Some(target) = text(&X_FORWARDED_URI) {
        let method = text(&X_FORWARDED_METHOD).map(str::to_string);
        // Traefik and Caddy always send the method. An nginx configuration that sends
        // X-Forwarded-Uri (oauth2-proxy's documented one) does not, and auth_request
        // turns a 302 into a 500: without the method, the answers are nginx's.
        let asker = if method.is_some() {
            Asker::PassesAnswers
        } else {
            Asker::StatusOnly
        };
        (asker, target.to_string(), method)
    } else {
        let rest = &parts.uri.path()[fa_path.len()..];
        if rest.is_empty() {
            return Err(bad(
                "the original request is missing: a forward-auth check carries X-Forwarded-Uri (Traefik, Caddy), X-Original-URL (nginx), or the original path after the forward-auth path (Envoy)",
            ));
        }
        let target = match parts.uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_string(),
        };
        (Asker::PassesAnswers, target, None)
    };
    if !target.starts_with('/') {
        return Err(bad("the original request target is not a path"));
    }
    parts.uri = target
        .parse()
        .map_err(|_| bad("the original request target is not a valid path"))?;
    if let Some(method) = method {
        parts.method = Method::from_bytes(method.as_bytes())
            .map_err(|_| bad("the original method is not an HTTP method"))?;
    }
    Ok(asker)
}

fn bad(why: &str) -> GatewayError {
    GatewayError::BadRequest(format!("Forward-auth check: {why}."))
}

/// The answer to a check that proxy mode would have forwarded: 200, with the identity
/// headers the pipeline put in the original request (none for an anonymous one) and the
/// pipeline's `Set-Cookie` values (a refreshed or touched session).
pub(crate) fn answer(
    identity: &IdentityHeaders,
    request: &HeaderMap,
    cookies: Vec<HeaderValue>,
) -> Response<Body> {
    let mut response = Response::new(empty_body());
    let headers = response.headers_mut();
    for (name, value) in request {
        if identity.is_reserved(name.as_str().as_bytes()) {
            headers.append(name.clone(), value.clone());
        }
    }
    // A check's answer is about one browser's request: no cache may keep it.
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response::with_cookies(response, cookies)
}

/// `GET <server.login_path>?rd=<url>[&provider=<name>]`: starts a login (at the named
/// provider; with several and none named, the chooser of them all) that comes back to `rd`, validated
/// like every redirect target (same host, or `hooks.redirect_urls_allowed`). Without `rd`,
/// a trusted proxy's `X-Original-URL` is the return address (nginx's `error_page 401`
/// handing the browser's request to this path: a URL cannot be escaped into a query
/// parameter in plain nginx), and a request that is not a browser navigation (an XHR) is
/// answered 401 rather than sent to the provider; else `/`.
pub(crate) async fn login(gw: &Services, ctx: &RequestCtx, parts: &Parts) -> Response<Body> {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let mut refused = response::page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "A login is started with GET.",
            None,
        );
        refused
            .headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return refused;
    }
    let query = || form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes());
    let rd = raw_rd(parts.uri.query()).or_else(|| {
        query()
            .find(|(k, _)| k == "rd")
            .map(|(_, v)| v.into_owned())
    });
    let named = query()
        .find(|(k, _)| k == "provider")
        .map(|(_, v)| v.into_owned());
    let original = ctx
        .trusted
        .then(|| parts.headers.get(X_ORIGINAL_URL))
        .flatten()
        .and_then(|v| v.to_str().ok());
    let rd = rd
        .filter(|rd| !rd.is_empty())
        .or_else(|| original.map(str::to_string));
    if original.is_some() && !login::is_browser_navigation(&parts.headers) {
        gw.metrics.refused("unauthenticated");
        return login::unauthorized();
    }
    let target = match rd.as_deref() {
        None => "/".to_string(),
        Some(rd) => {
            match validate_redirect(rd, &ctx.host, &gw.config.hooks.redirect_urls_allowed) {
                Ok(target) => target,
                Err(e) => {
                    gw.metrics.refused("bad_redirect");
                    return response::page(
                        StatusCode::BAD_REQUEST,
                        "Invalid request",
                        &format!("The return address cannot be used: {e}."),
                        None,
                    );
                }
            }
        }
    };
    let return_to = on_this_origin(&target, &ctx.origin()).unwrap_or(&target);
    let provider = match named.as_deref() {
        Some(name) => match gw.providers.by_name(name) {
            Some((_, provider)) => provider,
            None => {
                return response::page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    "This gateway has no provider of that name.",
                    None,
                )
            }
        },
        // Several providers and none named: the person chooses (on-site targets; the
        // chooser's links carry a path).
        None if gw.providers.len() > 1 && return_to.starts_with('/') => {
            let all: Vec<usize> = (0..gw.providers.len()).collect();
            return chooser::page(gw, &all, return_to, Vec::new());
        }
        None => gw.providers.default_provider(),
    };
    login::start(
        gw,
        provider,
        ctx,
        &parts.headers,
        &Method::GET,
        return_to,
        Vec::new(),
    )
    .await
}

/// An `rd` written into the query unescaped, as nginx configurations do
/// (`?rd=$scheme://$host$request_uri`): when the query starts with `rd=` followed by an
/// unescaped URL or path, all the rest is the target, its own `&` and `?` included.
fn raw_rd(query: Option<&str>) -> Option<String> {
    let rest = query?.strip_prefix("rd=")?;
    let unescaped =
        rest.starts_with("http://") || rest.starts_with("https://") || rest.starts_with('/');
    (unescaped && rest.contains('&')).then(|| rest.to_string())
}

/// `target`'s path and query when it is an absolute URL on `origin` (`scheme://host`).
fn on_this_origin<'t>(target: &'t str, origin: &str) -> Option<&'t str> {
    let rest = target.get(..origin.len())?;
    if !rest.eq_ignore_ascii_case(origin) {
        return None;
    }
    match &target[origin.len()..] {
        "" => Some("/"),
        tail if tail.starts_with('/') => Some(tail),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, headers: &[(&str, &str)]) -> Result<(Asker, Parts), GatewayError> {
        let mut builder = http::Request::builder().uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        let asker = into_original(&mut parts, "/oauth2/auth")?;
        Ok((asker, parts))
    }

    #[test]
    fn checks_are_the_path_or_below_it() {
        assert!(is_check("/oauth2/auth", "/oauth2/auth"));
        assert!(is_check("/oauth2/auth", "/oauth2/auth/app/x"));
        assert!(!is_check("/oauth2/auth", "/oauth2/authx"));
        assert!(!is_check("/oauth2/auth", "/oauth2"));
    }

    #[test]
    fn nginx_sends_the_original_url() {
        let (asker, parts) = check(
            "/oauth2/auth",
            &[
                ("x-original-url", "https://app.example.com:8443/a/b?c=d"),
                ("x-original-method", "POST"),
            ],
        )
        .unwrap();
        assert_eq!(asker, Asker::StatusOnly);
        assert_eq!(parts.uri, "/a/b?c=d");
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.headers[XFP], "https");
        assert_eq!(parts.headers[XFH], "app.example.com:8443");
        let (_, parts) = check("/oauth2/auth", &[("x-original-url", "/rel?x")]).unwrap();
        assert_eq!(parts.uri, "/rel?x");
        assert_eq!(parts.method, Method::GET);
        assert!(!parts.headers.contains_key(XFH));
    }

    #[test]
    fn nginx_may_send_the_original_uri_alone() {
        let (asker, parts) = check(
            "/oauth2/auth",
            &[("x-original-uri", "/p?q"), ("x-original-method", "PUT")],
        )
        .unwrap();
        assert_eq!(asker, Asker::StatusOnly);
        assert_eq!(parts.uri, "/p?q");
        assert_eq!(parts.method, Method::PUT);
    }

    #[test]
    fn traefik_and_caddy_send_forwarded_uri_and_method() {
        let (asker, parts) = check(
            "/oauth2/auth",
            &[
                ("x-forwarded-uri", "/x/y?z=1"),
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-host", "app.test"),
            ],
        )
        .unwrap();
        assert_eq!(asker, Asker::PassesAnswers);
        assert_eq!(parts.uri, "/x/y?z=1");
        assert_eq!(parts.method, Method::DELETE);
        assert_eq!(parts.headers[XFH], "app.test", "left as the proxy sent it");
    }

    #[test]
    fn envoy_appends_the_original_path() {
        let (asker, parts) = check("/oauth2/auth/app/page?q=1", &[]).unwrap();
        assert_eq!(asker, Asker::PassesAnswers);
        assert_eq!(parts.uri, "/app/page?q=1");
    }

    #[test]
    fn a_check_without_its_original_or_with_a_broken_one_is_refused() {
        for (uri, headers) in [
            ("/oauth2/auth", vec![]),
            ("/oauth2/auth", vec![("x-original-url", "ftp://h/x")]),
            ("/oauth2/auth", vec![("x-original-url", "http://")]),
            ("/oauth2/auth", vec![("x-forwarded-uri", "x/y")]),
            ("/oauth2/auth", vec![("x-forwarded-uri", "http://evil/x")]),
            (
                "/oauth2/auth",
                vec![("x-forwarded-uri", "/x"), ("x-forwarded-method", "G ET")],
            ),
        ] {
            assert!(
                matches!(check(uri, &headers), Err(GatewayError::BadRequest(_))),
                "{uri} {headers:?}"
            );
        }
    }

    #[test]
    fn an_unescaped_rd_keeps_its_own_query() {
        assert_eq!(
            raw_rd(Some("rd=https://app.test/a?x=1&y=2")).as_deref(),
            Some("https://app.test/a?x=1&y=2")
        );
        assert_eq!(raw_rd(Some("rd=/a?x=1&y=2")).as_deref(), Some("/a?x=1&y=2"));
        // Escaped, or nothing after it: the usual query parsing.
        assert_eq!(
            raw_rd(Some("rd=https%3A%2F%2Fapp.test%2F&provider=a")),
            None
        );
        assert_eq!(raw_rd(Some("rd=/a")), None);
        assert_eq!(raw_rd(Some("provider=a&rd=/a?x&y")), None);
        assert_eq!(raw_rd(None), None);
    }

    #[test]
    fn nginx_may_send_forwarded_uri_without_a_method() {
        let (asker, parts) = check("/oauth2/auth", &[("x-forwarded-uri", "/x?y")]).unwrap();
        assert_eq!(asker, Asker::StatusOnly, "no 302 for auth_request");
        assert_eq!(parts.uri, "/x?y");
    }

    #[test]
    fn absolute_targets_on_this_origin_become_paths() {
        let o = "https://app.test";
        assert_eq!(on_this_origin("https://app.test/x?y", o), Some("/x?y"));
        assert_eq!(on_this_origin("https://APP.test", o), Some("/"));
        assert_eq!(on_this_origin("https://app.test.evil/x", o), None);
        assert_eq!(on_this_origin("https://app.test:444/x", o), None);
        assert_eq!(on_this_origin("http://app.test/x", o), None);
        assert_eq!(on_this_origin("/x", o), None);
    }
}
