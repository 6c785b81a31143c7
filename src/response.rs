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
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}.code{{color:#666;font-size:.9rem}}</style></head>\
         <body><h1>{title}</h1><p>{message}</p>{link_html}<p class=\"code\">{status}</p></body></html>",
        title = escape_html(title),
        message = escape_html(message),
        status = status.as_u16(),
    );
    html_response(status, html)
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

/// Adds Set-Cookie headers to a response.
pub(crate) fn with_cookies(
    mut response: Response<Body>,
    cookies: Vec<HeaderValue>,
) -> Response<Body> {
    for c in cookies {
        response.headers_mut().append(http::header::SET_COOKIE, c);
    }
    response
}
