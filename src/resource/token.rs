//! Finding the bearer token of a request in the places `accept_token_as` allows
//! (RFC 6750: header, query, form body; plus a named cookie). More than one token, in one
//! place or across several, is an invalid request.

use crate::config::TokenSource;
use crate::request::request_cookies;
use http::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use http::request::Parts;

#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    None,
    One(String),
    /// Several tokens, or a malformed Authorization header.
    Ambiguous,
}

impl Found {
    fn add(self, token: String) -> Found {
        match self {
            Found::None => Found::One(token),
            _ => Found::Ambiguous,
        }
    }
}

/// The largest form body read when looking for `access_token` in it.
pub(crate) const MAX_FORM_BODY: usize = 64 * 1024;

/// Whether the request carries a form body worth reading for the `post` source.
pub(crate) fn wants_form_body(sources: &[TokenSource], parts: &Parts) -> bool {
    sources.contains(&TokenSource::Post)
        && parts.method == http::Method::POST
        && parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            })
}

/// Looks in every allowed place; `form` is the request body when it was read.
pub fn find(sources: &[TokenSource], parts: &Parts, form: Option<&[u8]>) -> Found {
    let mut found = Found::None;
    for source in sources {
        match source {
            TokenSource::Header => found = from_header(&parts.headers, found),
            TokenSource::Query => {
                for t in params(parts.uri.query().unwrap_or("").as_bytes()) {
                    found = found.add(t);
                }
            }
            TokenSource::Post => {
                for t in params(form.unwrap_or_default()) {
                    found = found.add(t);
                }
            }
            TokenSource::Cookie(name) => {
                for (_, v) in request_cookies(&parts.headers).filter(|(n, _)| n == name) {
                    if !v.is_empty() {
                        found = found.add(v.to_string());
                    }
                }
            }
        }
    }
    found
}

fn from_header(headers: &HeaderMap, mut found: Found) -> Found {
    for value in headers.get_all(AUTHORIZATION) {
        let Ok(v) = value.to_str() else {
            return Found::Ambiguous;
        };
        let Some((scheme, token)) = v.trim().split_once(' ') else {
            continue;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            continue;
        }
        let token = token.trim();
        if token.is_empty() || token.contains(' ') {
            return Found::Ambiguous;
        }
        found = found.add(token.to_string());
    }
    found
}

/// `access_token` values; an empty one (`?access_token=`) is no token, as an empty
/// cookie is.
fn params(body: &[u8]) -> impl Iterator<Item = String> + '_ {
    form_urlencoded::parse(body)
        .filter(|(k, v)| k == "access_token" && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

/// The longest token sent to the provider; a longer one is invalid without asking.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Whether `token` can be an access token at all: RFC 6750's `b64token` syntax (which
/// JWTs and the opaque tokens of every provider we know fit) within [`MAX_TOKEN_LEN`].
/// Anything else is refused as `invalid_token` without a call to the provider, so a
/// hostile client cannot make the provider answer an error we would have to interpret.
pub(crate) fn is_plausible(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn empty_parameters_are_no_token() {
        let q = parts("/x?access_token=", &[]);
        assert_eq!(find(&[TokenSource::Query], &q, None), Found::None);
        let q = parts("/x?access_token&access_token=abc", &[]);
        assert_eq!(
            find(&[TokenSource::Query], &q, None),
            Found::One("abc".into())
        );
        assert_eq!(
            find(&[TokenSource::Post], &q, Some(b"access_token=&x=1")),
            Found::None
        );
    }

    #[test]
    fn plausible_tokens() {
        for ok in ["abc", "a.b.c", "Zm9v+/_-~.x==", "x="] {
            assert!(is_plausible(ok), "{ok}");
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        for bad in [
            "",
            "=",
            "a b",
            "a\"b",
            "<script>",
            "\u{e9}",
            long.as_str(),
            "a=b",
        ] {
            assert!(!is_plausible(bad), "{bad}");
        }
    }

    #[test]
    fn sources() {
        let all = [
            TokenSource::Header,
            TokenSource::Query,
            TokenSource::Post,
            TokenSource::Cookie("at".into()),
        ];
        let p = parts("/x", &[("authorization", "Bearer abc")]);
        assert_eq!(find(&all, &p, None), Found::One("abc".into()));
        let p = parts("/x?access_token=q", &[]);
        assert_eq!(find(&all, &p, None), Found::One("q".into()));
        assert_eq!(find(&[TokenSource::Header], &p, None), Found::None);
        let p = parts("/x", &[("cookie", "a=1; at=c")]);
        assert_eq!(find(&all, &p, None), Found::One("c".into()));
        let p = parts("/x", &[]);
        assert_eq!(
            find(&all, &p, Some(b"access_token=f&x=1")),
            Found::One("f".into())
        );
    }

    #[test]
    fn ambiguity_is_refused() {
        let all = [TokenSource::Header, TokenSource::Query];
        let p = parts("/x?access_token=a&access_token=b", &[]);
        assert_eq!(find(&all, &p, None), Found::Ambiguous);
        let p = parts("/x?access_token=a", &[("authorization", "Bearer b")]);
        assert_eq!(find(&all, &p, None), Found::Ambiguous);
        let p = parts("/x", &[("authorization", "Bearer a b")]);
        assert_eq!(find(&all, &p, None), Found::Ambiguous);
        let p = parts("/x", &[("authorization", "Basic Zm9v")]);
        assert_eq!(find(&all, &p, None), Found::None);
    }
}
