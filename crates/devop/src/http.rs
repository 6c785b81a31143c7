//! Request and response plumbing for the development provider: bounded form bodies,
//! OAuth parameter lists (no repeats, empty means absent) and response builders.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::error::FormError;

pub(crate) type Resp = Response<Full<Bytes>>;

/// Largest request body any endpoint reads.
const MAX_BODY: usize = 64 * 1024;

/// Decoded `application/x-www-form-urlencoded` (or query) parameters, in order.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a query string or form body. RFC 6749 §3.1: parameters sent without a
    /// value are treated as omitted.
    pub(crate) fn parse(input: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(input)
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The value of `name`, if present (the first, if repeated).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter, in order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether `name` occurs more than once.
    pub(crate) fn is_repeated(&self, name: &str) -> bool {
        self.0.iter().filter(|(k, _)| k == name).count() > 1
    }

    /// The first parameter name that occurs more than once (RFC 6749 §3.1, §3.2).
    pub(crate) fn repeated(&self) -> Option<&str> {
        self.0.iter().enumerate().find_map(|(i, (k, _))| {
            self.0[..i]
                .iter()
                .any(|(earlier, _)| earlier == k)
                .then_some(k.as_str())
        })
    }
}

/// Reads a whole `application/x-www-form-urlencoded` body (at most 64 KiB).
pub(crate) async fn read_form(headers: &HeaderMap, body: Incoming) -> Result<Params, FormError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(FormError::NotFormEncoded);
    }
    let collected = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| FormError::BodyUnreadable)?;
    Ok(Params::parse(&collected.to_bytes()))
}

/// JSON with `Cache-Control: no-store` (RFC 6749 §5.1 requires it for token responses).
pub(crate) fn json(status: StatusCode, body: &Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(h);
    resp
}

/// An HTML page that cannot be framed and runs no script.
pub(crate) fn html(status: StatusCode, body: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    no_store(h);
    resp
}

/// `302 Found` to `location`.
pub(crate) fn redirect(location: &str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        // Only registered URIs plus encoded parameters get here; this cannot happen.
        Err(_) => *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    no_store(resp.headers_mut());
    resp
}

/// A plain-text answer (404, 405).
pub(crate) fn text(status: StatusCode, body: &'static str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `base` with `pairs` appended to its query (`?` or `&`), form-urlencoded.
pub(crate) fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", query.finish())
}

/// Escapes text for HTML element content and quoted attribute values (the pages of the
/// OP and of the echo upstream reflect request values).
pub(crate) fn escape(s: &str) -> String {
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
