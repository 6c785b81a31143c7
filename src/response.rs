//! Responses the gateway writes itself: HTML pages (every reflected value escaped),
//! redirects and JSON, all with `Cache-Control: no-store`, plus the body type shared with
//! proxied responses.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// A response body: streamed from the upstream, or written by the gateway.
pub(crate) type Body = Either<Incoming, Full<Bytes>>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(bytes.into()))
}

pub(crate) fn empty_body() -> Body {
    Either::Right(Full::new(Bytes::new()))
}

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small HTML page: a title, a message, and optionally a link (href, text).
/// All three are escaped here; callers pass plain text.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Response<Body> {
    let link_html = link
        .map(|(href, text)| {
            format!(
                "<p><a href=\"{}\">{}</a></p>",
                escape_html(href),
                escape_html(text)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<p>{message}</p>{link_html}<p class=\"code\">{status}</p>",
        message = escape_html(message),
        status = status.as_u16(),
    );
    html_response(status, document(title, &body))
}

/// The gateway's one page layout: `title` (escaped here) as the title and heading, then
/// `body_html`, which the caller has escaped.
pub(crate) fn document(title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}.code{{color:#666;font-size:.9rem}}\
         table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;vertical-align:top;padding:.4rem .6rem;border-bottom:1px solid #ddd}}\
         th{{font-weight:600;white-space:nowrap}}pre{{margin:0;font-size:.85rem;white-space:pre-wrap;word-break:break-all}}</style></head>\
         <body><h1>{title}</h1>{body_html}</body></html>",
        title = escape_html(title),
    )
}

pub(crate) fn html_response(status: StatusCode, html: String) -> Response<Body> {
    let mut response = Response::new(full(html));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, NO_STORE);
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    response
}

/// `302` to `location`. A location that is not a valid header value becomes a 400 page.
pub(crate) fn redirect(location: &str) -> Response<Body> {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = Response::new(empty_body());
            *response.status_mut() = StatusCode::FOUND;
            response.headers_mut().insert(LOCATION, value);
            response.headers_mut().insert(CACHE_CONTROL, NO_STORE);
            response
        }
        Err(_) => page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The redirect target is not a valid URL.",
            None,
        ),
    }
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, NO_STORE);
    response
}

/// A plain-text response (status pages for non-browser clients, admin endpoints).
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(CACHE_CONTROL, NO_STORE);
    response
}

/// Adds Set-Cookie headers to a response, and keeps shared caches from storing it: a
/// response that sets a gateway cookie is `private` unless it already says `no-store` or
/// `private` (a shared cache would hand one user's session cookie to the next).
pub(crate) fn with_cookies(
    mut response: Response<Body>,
    cookies: Vec<HeaderValue>,
) -> Response<Body> {
    if cookies.is_empty() {
        return response;
    }
    let headers = response.headers_mut();
    for c in cookies {
        headers.append(http::header::SET_COOKIE, c);
    }
    if let Some(value) = private_cache_control(headers.get_all(CACHE_CONTROL)) {
        headers.insert(CACHE_CONTROL, value);
    }
    response
}

/// The `Cache-Control` to send instead of `current` so that no shared cache stores the
/// response: `private` before the other directives, `public` and `s-maxage` dropped.
/// `None` when `current` already says `no-store` or `private`.
fn private_cache_control(current: http::header::GetAll<'_, HeaderValue>) -> Option<HeaderValue> {
    let mut kept = vec!["private"];
    for directive in current
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let name = directive.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("private") {
            return None;
        }
        if !name.eq_ignore_ascii_case("public") && !name.eq_ignore_ascii_case("s-maxage") {
            kept.push(directive);
        }
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_control_after(upstream: Option<&str>) -> Option<String> {
        let mut resp = Response::new(empty_body());
        if let Some(v) = upstream {
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        let resp = with_cookies(resp, vec![HeaderValue::from_static("s=1")]);
        resp.headers()
            .get(CACHE_CONTROL)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn a_response_setting_a_cookie_is_not_for_shared_caches() {
        assert_eq!(cache_control_after(None).as_deref(), Some("private"));
        assert_eq!(
            cache_control_after(Some("public, max-age=600, s-maxage=900")).as_deref(),
            Some("private, max-age=600")
        );
        assert_eq!(
            cache_control_after(Some("no-store")).as_deref(),
            Some("no-store")
        );
        assert_eq!(
            cache_control_after(Some("Private, max-age=5")).as_deref(),
            Some("Private, max-age=5")
        );
    }

    #[test]
    fn without_a_cookie_the_upstream_decides() {
        let mut resp = Response::new(empty_body());
        resp.headers_mut().insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        let resp = with_cookies(resp, Vec::new());
        assert_eq!(resp.headers()[CACHE_CONTROL], "public, max-age=60");
    }
}
