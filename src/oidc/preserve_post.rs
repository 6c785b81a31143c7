//! A browser's form POST kept across a login (`route.preserve_post`, mod_auth_openidc's
//! `OIDCPreservePost`): the url-encoded body (at most [`MAX_BODY`]) is sealed and kept
//! server-side under a random id that the login state cookie records; after the callback,
//! a page re-submits it to the original URL, so the person does not lose what they typed.
//!
//! Only forms from the gateway's own origin are kept (`Sec-Fetch-Site: same-origin`, else an
//! `Origin` equal to the request's): the re-submission is same-origin and carries the new
//! session cookie, so keeping a cross-site form would turn a blocked cross-site POST
//! (`SameSite` cookies, the app's Origin check) into an accepted one.

use super::login;
use super::state::STATE_LIFETIME;
use crate::error::{GatewayError, NotKept, NotResent};
use crate::provider::Provider;
use crate::request::{self, RequestCtx, BODY_READ_TIMEOUT};
use crate::response::{self, escape_html, Body};
use crate::secret::random_id;
use crate::services::kept_posts::KEPT_FOR;
use crate::services::Services;
use crate::session::Purpose;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

/// The largest form body kept.
pub(crate) const MAX_BODY: usize = 64 * 1024;

// A kept form outlives every state cookie that can ask for it.
const _: () = assert!(STATE_LIFETIME as u64 <= KEPT_FOR.as_secs());

/// A kept form as sealed: the id it is kept under and the URL it was posted to (both
/// checked against the login state that asks for it), and the body as received.
#[derive(Serialize, Deserialize)]
struct Kept {
    #[serde(rename = "i")]
    id: String,
    #[serde(rename = "u")]
    return_to: String,
    #[serde(rename = "b")]
    body: String,
}

/// Starts the login of a browser's form POST on a `preserve_post` route: checks and reads
/// the form, starts the login with its id in the state cookie, and keeps the form. The
/// refusal (too large, not a url-encoded UTF-8 form, cross-origin, store down) names its
/// reason and lets the person start again; no login is started then.
pub(crate) async fn keep_and_login(
    gw: &Services,
    provider: &Provider,
    ctx: &RequestCtx,
    parts: &Parts,
    body: Incoming,
) -> Result<Response<Body>, GatewayError> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let return_to = login::on_site(path);
    let refuse = |why| GatewayError::PostNotKept {
        why,
        return_to: return_to.clone(),
    };
    if let Err(why) = check_head(&parts.headers, ctx) {
        request::discard_body(body).await;
        return Err(refuse(why));
    }
    let form = read(body).await.map_err(refuse)?;
    let body = decodable(form).map_err(refuse)?;
    let id = random_id();
    let (location, cookies) = login::build(
        gw,
        provider,
        ctx,
        &parts.headers,
        &parts.method,
        path,
        Some(id.clone()),
    )
    .await?;
    let kept = Kept {
        id: id.clone(),
        return_to: return_to.clone(),
        body,
    };
    let json = serde_json::to_vec(&kept).map_err(|_| refuse(NotKept::Unavailable))?;
    let sealed = gw.sessions.codec().seal(Purpose::KeptPost, &json);
    gw.kept_posts
        .put(&id, sealed)
        .await
        .map_err(|_| refuse(NotKept::Unavailable))?;
    gw.metrics.logins_started.inc();
    tracing::debug!(bytes = kept.body.len(), "form kept across the login");
    Ok(response::with_cookies(
        response::redirect(&location),
        cookies,
    ))
}

/// What the request head alone decides: same origin, a url-encoded form, not declared
/// larger than [`MAX_BODY`], UTF-8.
fn check_head(headers: &HeaderMap, ctx: &RequestCtx) -> Result<(), NotKept> {
    if !same_origin(headers, ctx) {
        return Err(NotKept::CrossOrigin);
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or(NotKept::MediaType)?;
    let mut params = content_type.split(';');
    let media = params.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(NotKept::MediaType);
    }
    for param in params {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !value.eq_ignore_ascii_case("utf-8")
            && !value.eq_ignore_ascii_case("utf8")
        {
            return Err(NotKept::NotUtf8);
        }
    }
    // A compressed body would be kept, and re-sent, as its compressed bytes.
    if headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(NotKept::MediaType);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(NotKept::TooLarge);
    }
    Ok(())
}

/// Whether the form may come from a page of the gateway's own origin: `Sec-Fetch-Site`
/// when the browser sends it, else `Origin` (which browsers send with every form POST,
/// `null` from opaque origins). A request with neither (a client that is not a browser, as
/// mod_auth_openidc's `OIDCPreservePost` accepts) cannot have been made cross-site by a
/// victim's browser, so it is kept.
fn same_origin(headers: &HeaderMap, ctx: &RequestCtx) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return site.trim().eq_ignore_ascii_case("same-origin");
    }
    header("origin").is_none_or(|o| o.trim().eq_ignore_ascii_case(&ctx.origin()))
}

/// Reads the body, stopping as soon as it passes [`MAX_BODY`] (the rest is then discarded,
/// bounded, so that the client reads the refusal).
async fn read(mut body: Incoming) -> Result<Bytes, NotKept> {
    let mut form = BytesMut::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            // The client went away mid-body: nothing to keep.
            let frame = frame.map_err(|_| NotKept::Timeout)?;
            if let Some(data) = frame.data_ref() {
                if form.len() + data.len() > MAX_BODY {
                    return Err(NotKept::TooLarge);
                }
                form.extend_from_slice(data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(form.freeze()),
        Ok(Err(NotKept::TooLarge)) => {
            request::discard_body(body).await;
            Err(NotKept::TooLarge)
        }
        Ok(Err(why)) => Err(why),
        Err(_) => Err(NotKept::Timeout),
    }
}

/// The body as text, once every field decodes to UTF-8 that an HTML form can send back
/// (no NUL, which the page could not carry).
fn decodable(form: Bytes) -> Result<String, NotKept> {
    let text = String::from_utf8(form.into()).map_err(|_| NotKept::NotUtf8)?;
    fields(&text)?;
    Ok(text)
}

/// The fields of a url-encoded form, in order, repeated names kept: `+` is a space, `%XX` a
/// byte, a `%` not followed by two hex digits stays as it is (the WHATWG parser's rules),
/// empty `&&` pieces are skipped. Unlike `form_urlencoded`, invalid UTF-8 is an error, not
/// replaced: a kept form is re-sent exactly or not at all.
pub(crate) fn fields(body: &str) -> Result<Vec<(String, String)>, NotKept> {
    body.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn hex(digit: Option<&u8>) -> Option<u8> {
    digit
        .and_then(|d| char::from(*d).to_digit(16))
        .and_then(|d| u8::try_from(d).ok())
}

fn decode(s: &str) -> Result<String, NotKept> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    let text = String::from_utf8(out).map_err(|_| NotKept::NotUtf8)?;
    if text.contains('\0') {
        return Err(NotKept::NotUtf8);
    }
    Ok(text)
}

/// The answer to a finished login that kept a form: the page that re-submits it to
/// `return_to`, or, when it is gone, a page that says so (the session is in place either
/// way; the caller adds its cookies).
pub(crate) async fn resubmit(gw: &Services, id: &str, return_to: &str) -> Response<Body> {
    match take(gw, id, return_to).await {
        Ok(fields) => {
            tracing::debug!(
                fields = fields.len(),
                "re-submitting the form kept across the login"
            );
            page(return_to, &fields, &random_id())
        }
        Err(why) => {
            let error = GatewayError::PostNotResent {
                why,
                return_to: return_to.to_string(),
            };
            gw.metrics.refused(error.kind());
            error.into_response()
        }
    }
}

/// Drops the form kept for a login that failed: it cannot be re-submitted any more.
pub(crate) async fn discard(gw: &Services, id: &str) {
    let _ = gw.kept_posts.take(id).await;
}

async fn take(
    gw: &Services,
    id: &str,
    return_to: &str,
) -> Result<Vec<(String, String)>, NotResent> {
    let sealed = gw
        .kept_posts
        .take(id)
        .await
        .map_err(|_| NotResent::Unavailable)?
        .ok_or(NotResent::Gone)?;
    let kept: Kept = gw
        .sessions
        .codec()
        .open(Purpose::KeptPost, &sealed)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(NotResent::Mismatch)?;
    if kept.id != id || kept.return_to != return_to {
        return Err(NotResent::Mismatch);
    }
    fields(&kept.body).map_err(|_| NotResent::Mismatch)
}

/// The page that re-submits `fields` to `action` (same origin): a POST form of hidden
/// inputs in their original order, sent by a script the CSP allows by its `nonce`, with a
/// button for browsers without script. Every name and value is escaped.
///
/// No `form-action` in the CSP: browsers apply it to the redirects that follow the
/// submission too, so `'self'` would break an app that answers the form with a redirect to
/// another origin; the one form here posts to an escaped same-origin path.
pub(crate) fn page(action: &str, fields: &[(String, String)], nonce: &str) -> Response<Body> {
    let mut inputs = String::with_capacity(
        fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 48)
            .sum::<usize>(),
    );
    for (name, value) in fields {
        inputs.push_str("<input type=\"hidden\" name=\"");
        inputs.push_str(&escape_html(name));
        inputs.push_str("\" value=\"");
        inputs.push_str(&escape_html(value));
        inputs.push_str("\">");
    }
    // `HTMLFormElement.prototype.submit`: a field named "submit" shadows `form.submit`.
    let body = format!(
        "<p>You are logged in. Sending the form you filled in before the login&hellip;</p>\
         <form method=\"post\" action=\"{action}\">{inputs}\
         <noscript><p>Script is off in this browser: press the button to send the form.</p></noscript>\
         <p><button type=\"submit\">Send the form</button></p></form>\
         <script nonce=\"{nonce}\">HTMLFormElement.prototype.submit.call(document.forms[0]);</script>",
        action = escape_html(action),
        nonce = escape_html(nonce),
    );
    let mut response = response::html_response(
        StatusCode::OK,
        response::document("Sending your form", &body),
    );
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; \
         base-uri 'none'; frame-ancestors 'none'"
    )) {
        headers.insert("content-security-policy", csp);
    }
    // The origin only: the page's URL holds the authorization response (`code`, `state`),
    // which the app must not see. Not `no-referrer`: a POST under it carries `Origin: null`,
    // which the Origin checks of CSRF protections refuse.
    headers.insert("referrer-policy", HeaderValue::from_static("strict-origin"));
    response
}

#[cfg(test)]
mod tests;
