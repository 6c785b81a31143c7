//! Claim rules (`require_claims`): `name:value` (equal, or an element of an array claim),
//! `name~regex` (a string claim, or an element of an array claim, matches), with dotted
//! names reaching into objects (`realm_access.roles:admin`). A route's rules must all hold.
//! `scope:value` also holds when `value` is one word of a space-delimited `scope` string
//! (RFC 7662 and RFC 9068 send scopes that way).
//!
//! Also [`ClaimPath`], the dotted claim names that rules and `[[headers.set]]` share.

use regex::Regex;
use serde_json::{Map, Value};

/// Longest dotted claim path accepted, in segments: lookups try each run of segments as
/// one name, so the work grows with the square of this.
pub(crate) const MAX_PATH_SEGMENTS: usize = 16;

/// A claim name that may reach into JSON objects: `realm_access.roles` is the `roles`
/// member of the `realm_access` claim. Names that contain dots themselves
/// (`https://example.com/roles`, `a.b`) stay reachable: at each level the longest run of
/// segments that names a member is taken, so a literal `a.b` claim wins over `a`'s `b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    text: String,
    /// Byte offsets of the dots between segments in `text`.
    dots: Vec<usize>,
}

impl ClaimPath {
    /// Parses a dotted name; the error says what is wrong with it.
    pub(crate) fn parse(name: &str) -> Result<ClaimPath, String> {
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(format!("{name:?} has an empty claim name"));
        }
        let dots: Vec<usize> = name.match_indices('.').map(|(i, _)| i).collect();
        if dots.len() >= MAX_PATH_SEGMENTS {
            return Err(format!(
                "{name:?} has more than {MAX_PATH_SEGMENTS} dotted segments"
            ));
        }
        Ok(ClaimPath {
            text: name.to_string(),
            dots,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn segments(&self) -> usize {
        self.dots.len() + 1
    }

    /// Start of segment `i` in `text`.
    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.dots[i - 1] + 1
        }
    }

    /// End (exclusive) of segment `i` in `text`.
    fn end(&self, i: usize) -> usize {
        self.dots.get(i).copied().unwrap_or(self.text.len())
    }

    /// The value this path names in `claims`, if any. Allocates nothing.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (mut object, mut from) = (claims, 0);
        loop {
            let start = self.start(from);
            let (to, value) = (from..self.segments())
                .rev()
                .find_map(|to| Some((to, object.get(&self.text[start..self.end(to)])?)))?;
            if to + 1 == self.segments() {
                return Some(value);
            }
            object = value.as_object()?;
            from = to + 1;
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClaimRule {
    path: ClaimPath,
    test: Test,
    source: String,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(String),
    Matches(Regex),
}

impl ClaimRule {
    /// Parses one rule; the error says what is wrong with it.
    pub(crate) fn parse(rule: &str) -> Result<ClaimRule, String> {
        let pos = rule
            .find([':', '~'])
            .ok_or_else(|| format!("{rule:?} is not name:value or name~regex"))?;
        let (name, rest) = rule.split_at(pos);
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(format!("{rule:?} has an empty claim name"));
        }
        let path = ClaimPath::parse(name).map_err(|e| format!("{rule:?}: {e}"))?;
        let value = &rest[1..];
        let test = if rest.starts_with(':') {
            Test::Equals(value.to_string())
        } else {
            Test::Matches(Regex::new(value).map_err(|e| format!("invalid regex: {e}"))?)
        };
        Ok(ClaimRule {
            path,
            test,
            source: rule.to_string(),
        })
    }

    /// The rule as written, for logs and error pages.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the rule holds for these claims.
    pub(crate) fn holds(&self, claims: &Map<String, Value>) -> bool {
        let Some(current) = self.path.lookup(claims) else {
            return false;
        };
        match current {
            Value::Array(items) => items.iter().any(|v| self.scalar_holds(v)),
            Value::String(scopes) if self.is_scope_equality() => {
                self.scalar_holds(current)
                    || scopes
                        .split_ascii_whitespace()
                        .any(|word| matches!(&self.test, Test::Equals(want) if word == want))
            }
            v => self.scalar_holds(v),
        }
    }

    fn is_scope_equality(&self) -> bool {
        let path = self.path.as_str();
        matches!(self.test, Test::Equals(_)) && (path == "scope" || path.ends_with(".scope"))
    }

    fn scalar_holds(&self, v: &Value) -> bool {
        let owned;
        let s = match v {
            Value::String(s) => s.as_str(),
            Value::Bool(b) => {
                if *b {
                    "true"
                } else {
                    "false"
                }
            }
            Value::Number(n) => {
                owned = n.to_string();
                owned.as_str()
            }
            _ => return false,
        };
        match &self.test {
            Test::Equals(want) => s == want,
            Test::Matches(re) => re.is_match(s),
        }
    }
}

/// The first rule of `rules` that does not hold, if any.
pub(crate) fn first_failing<'a>(
    rules: &'a [ClaimRule],
    claims: &Map<String, Value>,
) -> Option<&'a ClaimRule> {
    rules.iter().find(|r| !r.holds(claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        json!({
            "sub": "alice",
            "email": "alice@example.com",
            "email_verified": true,
            "groups": ["users", "admins"],
            "realm_access": {"roles": ["offline", "editor"]},
            "level": 3
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn equality_array_regex_and_paths() {
        let c = claims();
        let holds = |r: &str| ClaimRule::parse(r).unwrap().holds(&c);
        assert!(holds("sub:alice"));
        assert!(!holds("sub:alic"));
        assert!(holds("groups:admins"));
        assert!(!holds("groups:root"));
        assert!(holds("email~@example\\.com$"));
        assert!(!holds("email~@evil\\.com$"));
        assert!(holds("realm_access.roles:editor"));
        assert!(!holds("realm_access.missing:editor"));
        assert!(holds("email_verified:true"));
        assert!(holds("level:3"));
        assert!(!holds("nothing:x"));
    }

    #[test]
    fn scope_words() {
        let c = json!({"scope": "openid api:read  email", "aud": "a b"});
        let c = c.as_object().unwrap();
        let holds = |r: &str| ClaimRule::parse(r).unwrap().holds(c);
        assert!(holds("scope:api:read"));
        assert!(holds("scope:email"));
        assert!(holds("scope:openid api:read  email"));
        assert!(!holds("scope:api"));
        assert!(!holds("aud:a"), "only scope is split into words");
        assert!(holds("scope~api:read"));
    }

    #[test]
    fn paths_walk_objects_and_reach_dotted_names() {
        let c = json!({
            "realm_access": {"roles": ["admin"], "deep": {"x": 1}},
            "https://example.com/roles": ["editor"],
            "a.b": "literal",
            "a": {"b": "nested", "c": "only-nested"},
            "https://example.com/claims": {"team": "blue"},
            "s": "text"
        });
        let c = c.as_object().unwrap();
        let get = |p: &str| ClaimPath::parse(p).unwrap().lookup(c).cloned();
        assert_eq!(get("realm_access.roles"), Some(json!(["admin"])));
        assert_eq!(get("realm_access.deep.x"), Some(json!(1)));
        assert_eq!(get("realm_access"), c.get("realm_access").cloned());
        assert_eq!(get("https://example.com/roles"), Some(json!(["editor"])));
        assert_eq!(get("a.b"), Some(json!("literal")), "the literal name wins");
        assert_eq!(get("a.c"), Some(json!("only-nested")));
        assert_eq!(get("https://example.com/claims.team"), Some(json!("blue")));
        assert_eq!(get("s.x"), None, "a string has no members");
        assert_eq!(get("realm_access.roles.0"), None, "arrays are not walked");
        assert_eq!(get("missing"), None);
        assert_eq!(get("realm_access.missing"), None);
        assert!(ClaimPath::parse("").is_err());
        assert!(ClaimPath::parse("a.").is_err());
        assert!(ClaimPath::parse(".a").is_err());
        assert!(ClaimPath::parse(&["x"; MAX_PATH_SEGMENTS].join(".")).is_ok());
        assert!(ClaimPath::parse(&["x"; MAX_PATH_SEGMENTS + 1].join(".")).is_err());
    }

    #[test]
    fn rules_on_nested_and_dotted_claims() {
        let c = json!({
            "realm_access": {"roles": ["offline_access", "admin"]},
            "resource_access": {"app": {"roles": ["viewer"]}},
            "a.b": "x",
            "api": {"scope": "read write"}
        });
        let c = c.as_object().unwrap();
        let holds = |r: &str| ClaimRule::parse(r).unwrap().holds(c);
        assert!(holds("realm_access.roles:admin"));
        assert!(!holds("realm_access.roles:root"));
        assert!(holds("realm_access.roles~^adm"));
        assert!(holds("resource_access.app.roles:viewer"));
        assert!(!holds("resource_access.other.roles:viewer"));
        assert!(holds("a.b:x"));
        assert!(
            holds("api.scope:write"),
            "a nested scope is split into words too"
        );
    }

    #[test]
    fn bad_rules_are_reported() {
        assert!(ClaimRule::parse("novalue").is_err());
        assert!(ClaimRule::parse(":x").is_err());
        assert!(ClaimRule::parse("a..b:x").is_err());
        assert!(ClaimRule::parse("a~(").is_err());
    }
}
