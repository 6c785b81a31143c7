//! `${NAME}` references to environment variables inside any string of the file.

use super::ConfigProblem;
use toml::Value;

/// Replaces every `${NAME}` in every string of `value`, reporting unset variables with the
/// key path. `$${` writes a literal `${`.
pub(crate) fn interpolate(value: &mut Value, path: &str, problems: &mut Vec<ConfigProblem>) {
    match value {
        Value::String(s) if s.contains("${") => match expand(s) {
            Ok(expanded) => *s = expanded,
            Err(reason) => problems.push(ConfigProblem::error(path, reason)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), problems);
            }
        }
        Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate(v, &child, problems);
            }
        }
        _ => {}
    }
}

fn expand(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${...} reference".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid environment variable name {name:?}"));
        }
        match std::env::var(name) {
            Ok(v) => out.push_str(&v),
            Err(_) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn expands_and_reports() {
        std::env::set_var("OIDCGW_TEST_X", "v");
        assert_eq!(expand("a${OIDCGW_TEST_X}b").unwrap(), "avb");
        assert_eq!(expand("$${OIDCGW_TEST_X}").unwrap(), "${OIDCGW_TEST_X}");
        assert!(expand("${OIDCGW_TEST_UNSET_Q}")
            .unwrap_err()
            .contains("OIDCGW_TEST_UNSET_Q"));
        assert!(expand("${oops").is_err());
    }
}
