//! The gateway's cookies on the wire: finding them in a request's `Cookie` headers without
//! allocating, reassembling chunked values under fixed bounds, stripping them before the
//! upstream sees the request, and writing `Set-Cookie` values with the configured attributes.

use super::codec::MAX_SEALED_LEN;
use super::InvalidReason;
use crate::config::{CookieDomain, SameSite};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use std::borrow::Cow;

#[cfg(test)]
mod tests;

/// Longest cookie value written as one cookie; longer sealed values are chunked.
pub(crate) const CHUNK_SIZE: usize = 4000;
/// Most chunks a session may use (and the most a request may claim).
pub(crate) const MAX_CHUNKS: usize = 16;

/// The attributes every gateway cookie carries: `Path=/; HttpOnly; SameSite=…`, plus
/// `Domain=…` when configured and `Secure` on https. Built once; each cookie then costs one
/// string allocation.
#[derive(Debug, Clone)]
pub(crate) struct CookieAttrs {
    secure: String,
    insecure: String,
}

impl CookieAttrs {
    /// `domain` was checked by config validation: a plain host name.
    pub fn new(same_site: SameSite, domain: Option<&CookieDomain>) -> CookieAttrs {
        let domain = domain
            .map(|d| format!("; Domain={}", d.as_str()))
            .unwrap_or_default();
        let same_site = same_site.as_str();
        // Browsers drop `SameSite=None` cookies that lack `Secure`; on plain http leave the
        // attribute out (the browser default, Lax) so the cookie is stored at all.
        let insecure = if same_site == "None" {
            format!("; Path=/; HttpOnly{domain}")
        } else {
            format!("; Path=/; HttpOnly; SameSite={same_site}{domain}")
        };
        let secure = format!("; Path=/; HttpOnly; SameSite={same_site}; Secure{domain}");
        CookieAttrs { secure, insecure }
    }

    fn suffix(&self, secure: bool) -> &str {
        if secure {
            &self.secure
        } else {
            &self.insecure
        }
    }

    /// `Set-Cookie: name=value; <attributes>` (a browser-session cookie: no `Max-Age`).
    /// `None` if `name` or `value` holds bytes a header cannot carry.
    pub fn set(&self, name: &str, value: &str, secure: bool) -> Option<HeaderValue> {
        let suffix = self.suffix(secure);
        let mut s = String::with_capacity(name.len() + 1 + value.len() + suffix.len());
        s.push_str(name);
        s.push('=');
        s.push_str(value);
        s.push_str(suffix);
        HeaderValue::try_from(s).ok()
    }

    /// A `Set-Cookie` that deletes `name` (same path and domain as when it was set).
    pub fn expire(&self, name: &str, secure: bool) -> Option<HeaderValue> {
        let s = format!(
            "{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{}",
            self.suffix(secure)
        );
        HeaderValue::try_from(s).ok()
    }
}

/// Every `name=value` pair in the request's `Cookie` headers, in order, as raw bytes
/// (trimmed, surrounding double quotes removed from the value). A piece without `=` has an
/// empty name, as browsers treat it.
pub fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| pieces(v.as_bytes()))
        .filter_map(split_pair)
}

/// The `;`-separated pieces of one `Cookie` header value. memchr, not a byte loop: the
/// sealed session value (kilobytes) is walked by every request, more than once.
fn pieces(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b';', current) {
            Some(i) => {
                rest = Some(&current[i + 1..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn split_pair(piece: &[u8]) -> Option<(&[u8], &[u8])> {
    let piece = trim(piece);
    if piece.is_empty() {
        return None;
    }
    Some(match memchr::memchr(b'=', piece) {
        Some(i) => (trim(&piece[..i]), unquote(trim(&piece[i + 1..]))),
        None => (&piece[..0], piece),
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn unquote(s: &[u8]) -> &[u8] {
    match s {
        [b'"', inner @ .., b'"'] => inner,
        _ => s,
    }
}

/// What a cookie name is, relative to the gateway's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `<name>`: an unchunked session cookie.
    Plain,
    /// `<name>_chunks`.
    Count,
    /// `<name>_<i>` with `i` a canonical index below [`MAX_CHUNKS`].
    Chunk(usize),
    /// `<name>_<digits>` that we would never write (`_16`, `_007`): still ours to strip.
    StrayChunk,
    /// `<state_cookie_prefix>…`.
    State,
    Other,
}

/// The gateway's cookie names, and the rules that say whether a name is one of them.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    session: String,
    count: String,
    state_prefix: String,
}

impl Names {
    pub(crate) fn new(session: &str, state_prefix: &str) -> Names {
        Names {
            session: session.to_owned(),
            count: format!("{session}_chunks"),
            state_prefix: state_prefix.to_owned(),
        }
    }

    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    pub(crate) fn count(&self) -> &str {
        &self.count
    }

    pub(crate) fn chunk(&self, i: usize) -> String {
        format!("{}_{i}", self.session)
    }

    pub(crate) fn classify(&self, name: &[u8]) -> Kind {
        if !self.state_prefix.is_empty() && name.starts_with(self.state_prefix.as_bytes()) {
            return Kind::State;
        }
        let Some(rest) = name.strip_prefix(self.session.as_bytes()) else {
            return Kind::Other;
        };
        match rest {
            [] => Kind::Plain,
            b"_chunks" => Kind::Count,
            [b'_', digits @ ..] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
                match chunk_index(digits) {
                    Some(i) => Kind::Chunk(i),
                    None => Kind::StrayChunk,
                }
            }
            _ => Kind::Other,
        }
    }

    pub(crate) fn is_ours(&self, name: &[u8]) -> bool {
        self.classify(name) != Kind::Other
    }
}

/// `"0"` … `"15"`, no leading zeros.
fn chunk_index(digits: &[u8]) -> Option<usize> {
    let i = match digits {
        [d] => usize::from(d - b'0'),
        [b'1', d] => 10 + usize::from(d - b'0'),
        _ => return None,
    };
    (i < MAX_CHUNKS).then_some(i)
}

/// The session cookies one request presented (first occurrence of each name wins),
/// borrowed from its headers. Fixed size: a request claiming any number of chunks costs
/// the same.
#[derive(Debug, Default)]
pub(crate) struct Presented<'a> {
    pub(crate) plain: Option<&'a [u8]>,
    pub(crate) count: Option<&'a [u8]>,
    pub(crate) chunks: [Option<&'a [u8]>; MAX_CHUNKS],
}

impl<'a> Presented<'a> {
    pub(crate) fn scan(headers: &'a HeaderMap, names: &Names) -> Presented<'a> {
        let mut p = Presented::default();
        for (name, value) in pairs(headers) {
            let slot = match names.classify(name) {
                Kind::Plain => &mut p.plain,
                Kind::Count => &mut p.count,
                Kind::Chunk(i) => &mut p.chunks[i],
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        p
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.plain.is_none() && self.count.is_none() && self.chunks.iter().all(Option::is_none)
    }

    /// The sealed value: borrowed when unchunked, joined when chunked. `Ok(None)` when no
    /// session cookie was presented at all. The claimed chunk count is validated before
    /// anything is allocated, and the joined length is bounded by [`MAX_SEALED_LEN`].
    pub(crate) fn sealed(&self) -> Result<Option<Cow<'a, str>>, InvalidReason> {
        if let Some(plain) = self.plain {
            let s = std::str::from_utf8(plain).map_err(|_| InvalidReason::Encoding)?;
            return Ok(Some(Cow::Borrowed(s)));
        }
        if self.is_empty() {
            return Ok(None);
        }
        let n = self
            .count
            .and_then(parse_count)
            .ok_or(InvalidReason::ChunkCount)?;
        let mut total = 0usize;
        for chunk in &self.chunks[..n] {
            total += chunk.ok_or(InvalidReason::ChunkMissing)?.len();
        }
        if total > MAX_SEALED_LEN {
            return Err(InvalidReason::TooLarge);
        }
        let mut joined = String::with_capacity(total);
        for chunk in self.chunks[..n].iter().flatten() {
            joined.push_str(std::str::from_utf8(chunk).map_err(|_| InvalidReason::Encoding)?);
        }
        Ok(Some(Cow::Owned(joined)))
    }
}

/// A chunk count: one or two ASCII digits, 1 to [`MAX_CHUNKS`].
fn parse_count(v: &[u8]) -> Option<usize> {
    let n = match v {
        [d] if d.is_ascii_digit() => usize::from(d - b'0'),
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            usize::from(a - b'0') * 10 + usize::from(b - b'0')
        }
        _ => return None,
    };
    (1..=MAX_CHUNKS).contains(&n).then_some(n)
}

/// Splits a sealed value into [`CHUNK_SIZE`] pieces (base64url, so any byte is a boundary).
pub(crate) fn chunks(sealed: &str) -> impl Iterator<Item = &str> {
    sealed
        .as_bytes()
        .chunks(CHUNK_SIZE)
        // Base64url is ASCII, so every byte offset is a char boundary.
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
}

/// Rewrites the request's `Cookie` header(s) without the gateway's cookies, merged into one
/// header (HTTP/2 clients may send one field per cookie; an HTTP/1.1 upstream must get one
/// line, RFC 9113 §8.2.3); removes it when nothing is left. Leaves the headers untouched
/// (no allocation) when there is one header and none of our cookies.
pub(crate) fn strip(headers: &mut HeaderMap, names: &Names) {
    let several = headers.get_all(COOKIE).iter().nth(1).is_some();
    if !several && !pairs(headers).any(|(name, _)| names.is_ours(name)) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in headers.get_all(COOKIE) {
        for piece in pieces(value.as_bytes()) {
            let Some((name, _)) = split_pair(piece) else {
                continue;
            };
            if names.is_ours(name) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(trim(piece));
        }
    }
    headers.remove(COOKIE);
    if kept.is_empty() {
        return;
    }
    // The bytes came from valid header values, joined by "; ", so this cannot fail; if it
    // somehow did, dropping the header is the safe side.
    if let Ok(v) = HeaderValue::from_bytes(&kept) {
        headers.insert(COOKIE, v);
    }
}
