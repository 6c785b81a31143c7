//! Redirect-target validation (docs/behaviour.md §10): whether a URL a request asks the gateway to send
//! the browser to (refresh `return_to`, logout target) stays on this site.
//!
//! The checks are layered on purpose. Cheap syntactic rules reject the known tricks
//! (control characters, scheme-relative `//`, `/\`, encoded slashes, smuggled schemes);
//! then the URL is parsed with the WHATWG parser browsers implement, and the host it
//! resolves to is compared, so tricks nobody listed (IDN look-alikes, userinfo, odd
//! IP notations) are judged by what a browser would actually do.

use percent_encoding::percent_decode_str;
use regex::Regex;
use url::Url;

/// Longer targets are refused outright.
pub(crate) const MAX_REDIRECT_LEN: usize = 16 * 1024;

/// A placeholder origin to resolve relative targets against; only its host matters.
const PROBE_BASE: &str = "http://redirect-probe.invalid/";
const PROBE_HOST: &str = "redirect-probe.invalid";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("redirect target is longer than 16 KiB")]
    TooLong,
    #[error("redirect target contains a control character")]
    ControlCharacter,
    #[error("redirect target has a scheme other than http or https")]
    BadScheme,
    #[error("redirect target is not in redirect_urls_allowed")]
    NotAllowed,
    #[error("redirect target is empty or malformed")]
    Malformed,
    #[error("redirect target points to another host")]
    OtherHost,
}

/// Validates a URL the gateway would redirect a browser to (refresh return_to, logout
/// target). `request_host` is the Host (with port, as the client sent it) of the current
/// request; `allowed` are the anchored regexes from config. Returns the normalised URL to
/// redirect to (backslashes turned into '/').
///
/// When `allowed` is non-empty the URL must match one of them and is then not compared
/// with `request_host` (nor limited to http/https); control characters, script schemes,
/// `//`-style relative targets and dot segments are refused either way, as
/// mod_auth_openidc also keeps its relative-URL checks next to its allow-list.
pub fn validate_redirect(
    target: &str,
    request_host: &str,
    allowed: &[Regex],
) -> Result<String, RedirectError> {
    let url = normalise(target)?;
    // With an allow-list the pattern decides which hosts are fine; every other check holds.
    if !allowed.is_empty() && !allowed.iter().any(|re| re.is_match(&url)) {
        return Err(RedirectError::NotAllowed);
    }
    if has_dot_segment(&url) {
        return Err(RedirectError::Malformed);
    }
    let parsed = match scheme(&url) {
        Some(s) if allowed.is_empty() => check_absolute(&url, s, Some(request_host))?,
        // The pattern vouched for the host; scheme, slashes and userinfo are still checked
        // (a loose `https://app\.example\.com.*` also matches `…com@evil.test`).
        Some(s) => check_absolute(&url, s, None)?,
        None => check_relative(&url)?,
    };
    check_path(parsed.path())?;
    Ok(url)
}

/// The checks no allow-list can waive, and `\` turned into `/`.
fn normalise(target: &str) -> Result<String, RedirectError> {
    if target.is_empty() {
        return Err(RedirectError::Malformed);
    }
    if target.len() > MAX_REDIRECT_LEN {
        return Err(RedirectError::TooLong);
    }
    if has_control(target) {
        return Err(RedirectError::ControlCharacter);
    }
    // Browsers read `\` as `/` in http(s) URLs; normalising first means every later
    // check sees what the browser will see.
    let url = target.replace('\\', "/");
    // Browsers strip leading and trailing blanks, so ` //evil.com` would escape the checks.
    if url.starts_with(char::is_whitespace) || url.ends_with(char::is_whitespace) {
        return Err(RedirectError::Malformed);
    }
    if scheme(&url).is_some_and(is_script_scheme) {
        return Err(RedirectError::BadScheme);
    }
    Ok(url)
}

/// Any C0 control, DEL or C1 control, raw or percent-encoded (`%00`–`%1F`, `%7F`).
fn has_control(s: &str) -> bool {
    if s.chars().any(char::is_control) {
        return true;
    }
    s.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && match w[1] {
                b'0' | b'1' => w[2].is_ascii_hexdigit(),
                b'7' => w[2].eq_ignore_ascii_case(&b'f'),
                _ => false,
            }
    })
}

/// The scheme, if `s` starts with one (RFC 3986: ALPHA *( ALPHA / DIGIT / + / - / . ) ":").
fn scheme(s: &str) -> Option<&str> {
    let end = s.find(':')?;
    let candidate = &s[..end];
    let mut bytes = candidate.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    (first_ok && rest_ok).then_some(candidate)
}

fn is_script_scheme(s: &str) -> bool {
    ["javascript", "data", "vbscript"]
        .iter()
        .any(|bad| s.eq_ignore_ascii_case(bad))
}

/// `.` or `..` path segments, also percent-encoded (`%2e%2e`): a same-host URL could
/// resolve to a path such as `//evil.com` that a later relative redirect would follow.
fn has_dot_segment(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    path.split('/').any(|seg| {
        if seg.is_empty() || seg.len() > 6 {
            return false;
        }
        let decoded = percent_decode_str(seg).decode_utf8_lossy();
        decoded == "." || decoded == ".."
    })
}

/// An http(s) URL whose host and port are the request's, with no userinfo.
/// An absolute http(s) URL with `//` after the scheme and no userinfo, on `request_host`
/// when one is given (without an allow-list).
fn check_absolute(
    url: &str,
    scheme: &str,
    request_host: Option<&str>,
) -> Result<Url, RedirectError> {
    let is_http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    if !is_http {
        return Err(RedirectError::BadScheme);
    }
    // `https:evil.com` is resolved by browsers as `https://evil.com`; demand the slashes.
    if !url[scheme.len() + 1..].starts_with("//") {
        return Err(RedirectError::Malformed);
    }
    let parsed = Url::parse(url).map_err(|_| RedirectError::Malformed)?;
    if let Some(request_host) = request_host {
        let (host, port) =
            authority(request_host, parsed.scheme()).ok_or(RedirectError::OtherHost)?;
        if parsed.host_str() != Some(host.as_str()) || parsed.port() != port {
            return Err(RedirectError::OtherHost);
        }
    }
    // `https://evil.com@app.example.com/` reads as evil.com to a person.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RedirectError::Malformed);
    }
    Ok(parsed)
}

/// The request's host and port as the URL parser sees them under `scheme`, so both sides
/// of the comparison are normalised alike (case, IDN, IP notation, default ports).
fn authority(request_host: &str, scheme: &str) -> Option<(String, Option<u16>)> {
    let suspicious = |c: char| "/\\?#@".contains(c) || c.is_whitespace() || c.is_control();
    if request_host.is_empty() || request_host.contains(suspicious) {
        return None;
    }
    let base = Url::parse(&format!("{scheme}://{request_host}/")).ok()?;
    Some((base.host_str()?.to_owned(), base.port()))
}

/// A path that starts with exactly one `/` and stays on the host when a browser resolves it.
fn check_relative(url: &str) -> Result<Url, RedirectError> {
    let Some(rest) = url.strip_prefix('/') else {
        return Err(RedirectError::Malformed);
    };
    if rest.starts_with('/') {
        return Err(RedirectError::OtherHost);
    }
    let base = Url::parse(PROBE_BASE).map_err(|_| RedirectError::Malformed)?;
    let resolved = base.join(url).map_err(|_| RedirectError::Malformed)?;
    if resolved.host_str() != Some(PROBE_HOST) || resolved.port().is_some() {
        return Err(RedirectError::OtherHost);
    }
    Ok(resolved)
}

/// The resolved path must not begin like a host (`//`, `/%2f`, `/%5c`) or a scheme
/// (`/http:`, `/javascript:`, also percent-encoded): code that strips the leading slash,
/// or redirects again relative to it, would leave the site.
fn check_path(path: &str) -> Result<(), RedirectError> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.starts_with('/') {
        return Err(RedirectError::OtherHost);
    }
    let head = rest.as_bytes().get(..3).unwrap_or_default();
    if head.eq_ignore_ascii_case(b"%2f") || head.eq_ignore_ascii_case(b"%5c") {
        return Err(RedirectError::OtherHost);
    }
    let first = rest.split('/').next().unwrap_or_default();
    let decoded = percent_decode_str(first).decode_utf8_lossy();
    if scheme(&decoded).is_some() {
        return Err(RedirectError::BadScheme);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
