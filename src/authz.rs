//! Claim rules (`require_claims`): `name:value` (equal, or an element of an array claim),
//! `name~regex` (a string claim, or an element of an array claim, matches), with dotted
//! names reaching into objects (`realm_access.roles:admin`). A route's rules must all hold.
//! `scope:value` also holds when `value` is one word of a space-delimited `scope` string
//! (RFC 7662 and RFC 9068 send scopes that way).

use regex::Regex;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct ClaimRule {
    path: Vec<String>,
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
        let value = &rest[1..];
        let test = if rest.starts_with(':') {
            Test::Equals(value.to_string())
        } else {
            Test::Matches(Regex::new(value).map_err(|e| format!("invalid regex: {e}"))?)
        };
        Ok(ClaimRule {
            path: name.split('.').map(str::to_string).collect(),
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
        let mut current = match claims.get(&self.path[0]) {
            Some(v) => v,
            None => return false,
        };
        for part in &self.path[1..] {
            current = match current.get(part) {
                Some(v) => v,
                None => return false,
            };
        }
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
        matches!(self.test, Test::Equals(_)) && self.path.last().is_some_and(|p| p == "scope")
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
    fn bad_rules_are_reported() {
        assert!(ClaimRule::parse("novalue").is_err());
        assert!(ClaimRule::parse(":x").is_err());
        assert!(ClaimRule::parse("a..b:x").is_err());
        assert!(ClaimRule::parse("a~(").is_err());
    }
}
