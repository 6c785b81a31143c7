//! `[[headers.set]]` and `route.headers`: headers built from a claim or a template, checked
//! here once at start (names the gateway owns are refused, templates are parsed) so that
//! building them per session or token is a walk over ready parts.

use super::Encoding;
use crate::authz::ClaimPath;
use http::HeaderName;

/// One configured header: its name and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetHeader {
    pub name: HeaderName,
    pub source: HeaderSource,
    /// Written between the elements of an array of scalars (`join`, default
    /// `[headers] claim_delimiter`).
    pub join: String,
    /// The entry's `encoding`, else `[headers] encoding`; applies to the whole value.
    pub encoding: Encoding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    /// `claim = "realm_access.roles"`: the claim's value, rendered like `OIDC_CLAIM_*`.
    Claim(ClaimPath),
    /// `value = "Bearer {access_token}"`.
    Template(Vec<Part>),
}

/// A piece of a `value` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `{access_token}`: the session's access token, or the bearer token.
    AccessToken,
    /// `{id_token}`: the session's raw ID token (none on `oauth20` routes).
    IdToken,
    /// `{sub}`: the session's subject, or the token's `sub` claim.
    Sub,
    /// `{claim:dotted.path}`.
    Claim(ClaimPath),
}

impl Part {
    /// Whether the text this part puts in is a credential (the header is then marked
    /// sensitive: never indexed by HTTP/2, hidden in `Debug`).
    pub fn is_secret(&self) -> bool {
        matches!(self, Part::AccessToken | Part::IdToken)
    }
}

/// What a `value` template may contain, for error messages.
const PLACEHOLDERS: &str =
    "{access_token}, {id_token}, {sub}, {claim:NAME} ({{ and }} for literal braces)";

/// Parses a `value` template: literal text with `{placeholder}`s, `{{` and `}}` for braces.
pub(crate) fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        text.push_str(&rest[..i]);
        let (brace, after) = (&rest[i..i + 1], &rest[i + 1..]);
        if after.starts_with(brace) {
            text.push_str(brace);
            rest = &after[1..];
            continue;
        }
        if brace == "}" {
            return Err("has a lone \"}\" (write \"}}\" for a literal one)".into());
        }
        let Some(end) = after.find('}') else {
            return Err(format!(
                "has an unclosed \"{{\"; placeholders are {PLACEHOLDERS}"
            ));
        };
        let part = placeholder(&after[..end])?;
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(part);
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn placeholder(inner: &str) -> Result<Part, String> {
    match inner {
        "access_token" => Ok(Part::AccessToken),
        "id_token" => Ok(Part::IdToken),
        "sub" => Ok(Part::Sub),
        _ => match inner.strip_prefix("claim:") {
            Some(path) => ClaimPath::parse(path)
                .map(Part::Claim)
                .map_err(|e| format!("{{{inner}}}: {e}")),
            None => Err(format!(
                "unknown placeholder {{{inner}}}; placeholders are {PLACEHOLDERS}"
            )),
        },
    }
}

/// Why the gateway will not set a header of this (lowercase) name, if it will not: it is
/// hop-by-hop or message framing, or the gateway sets or filters it itself.
pub(crate) fn refused_name(name: &str) -> Option<&'static str> {
    let reason = match name {
        "connection"
        | "keep-alive"
        | "proxy-connection"
        | "te"
        | "trailer"
        | "upgrade"
        | "proxy-authorization"
        | "proxy-authenticate"
        | "http2-settings" => "is a hop-by-hop header: it never reaches the upstream",
        "host" | "content-length" | "transfer-encoding" => {
            "frames or addresses the request: the proxy sets it"
        }
        "cookie" => "carries the client's cookies (the gateway removes its own from it)",
        "x-request-id" => "is the gateway's request id (docs/behaviour.md §12.4)",
        "traceparent" | "tracestate" => "carries the gateway's trace context",
        "forwarded" | "x-real-ip" | "x-original-url" | "x-rewrite-url" | "true-client-ip"
        | "x-client-ip" | "client-ip" => {
            "describes the client and is passed from trusted proxies only"
        }
        _ if name.starts_with("x-forwarded-") => {
            "is an X-Forwarded-* header, which the gateway sets itself"
        }
        _ => return None,
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(p: &str) -> Part {
        Part::Claim(ClaimPath::parse(p).unwrap())
    }

    #[test]
    fn templates_parse_into_text_and_placeholders() {
        assert_eq!(
            parse_template("Bearer {access_token}").unwrap(),
            [Part::Text("Bearer ".into()), Part::AccessToken]
        );
        assert_eq!(
            parse_template("{sub}|{id_token}|{claim:realm_access.roles}!").unwrap(),
            [
                Part::Sub,
                Part::Text("|".into()),
                Part::IdToken,
                Part::Text("|".into()),
                claim("realm_access.roles"),
                Part::Text("!".into()),
            ]
        );
        assert_eq!(
            parse_template("{{literal}} {claim:https://example.com/roles}").unwrap(),
            [
                Part::Text("{literal} ".into()),
                claim("https://example.com/roles")
            ]
        );
        assert_eq!(parse_template("").unwrap(), []);
        assert_eq!(
            parse_template("plain").unwrap(),
            [Part::Text("plain".into())]
        );
        assert_eq!(parse_template("}}{{").unwrap(), [Part::Text("}{".into())]);
    }

    #[test]
    fn bad_templates_say_why() {
        let err = |t: &str| parse_template(t).unwrap_err();
        assert!(err("{token}").contains("unknown placeholder {token}"));
        assert!(
            err("{token}").contains("{claim:NAME}"),
            "lists the valid ones"
        );
        assert!(err("{ sub }").contains("unknown placeholder"));
        assert!(err("{claim:}").contains("empty claim name"));
        assert!(err("{claim:a..b}").contains("empty claim name"));
        assert!(err("Bearer {access_token").contains("unclosed"));
        assert!(err("a } b").contains("lone"));
        assert!(err("{refresh_token}").contains("unknown placeholder"));
    }

    #[test]
    fn secret_parts() {
        assert!(Part::AccessToken.is_secret());
        assert!(Part::IdToken.is_secret());
        assert!(!Part::Sub.is_secret());
        assert!(!claim("email").is_secret());
    }

    #[test]
    fn gateway_owned_names_are_refused() {
        for name in [
            "host",
            "connection",
            "content-length",
            "transfer-encoding",
            "cookie",
            "x-forwarded-for",
            "x-forwarded-user",
            "x-request-id",
            "traceparent",
            "forwarded",
            "te",
            "proxy-authorization",
        ] {
            assert!(refused_name(name).is_some(), "{name}");
        }
        for name in ["x-email", "authorization", "x-roles", "remote-user"] {
            assert!(refused_name(name).is_none(), "{name}");
        }
    }
}
