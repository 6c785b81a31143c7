//! The gateway.toml being written: tables of keys, each value with the comments that name
//! the Apache directives it came from. Values are rendered by the `toml` crate, never by
//! string concatenation.

use toml::Value;

/// One key of a table, or a comment line without a key (a directive that needs none).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: Option<String>,
    pub value: Option<Value>,
    pub comments: Vec<String>,
}

/// A table (`[session]`) or one element of an array of tables (`[[route]]`).
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub header: String,
    pub entries: Vec<Entry>,
    /// Comments written above the header.
    pub preamble: Vec<String>,
}

impl Table {
    pub(crate) fn new(header: &str) -> Table {
        Table {
            header: header.to_string(),
            entries: Vec::new(),
            preamble: Vec::new(),
        }
    }

    /// Sets `key`; a key set again keeps its place and gains the new comment.
    pub(crate) fn set(&mut self, key: &str, value: Value, comment: String) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.key.as_deref() == Some(key))
        {
            e.value = Some(value);
            if !e.comments.contains(&comment) {
                e.comments.push(comment);
            }
            return;
        }
        self.entries.push(Entry {
            key: Some(key.to_string()),
            value: Some(value),
            comments: vec![comment],
        });
    }

    /// A comment line of its own (a directive mapped to the gateway's fixed behaviour).
    pub(crate) fn note(&mut self, comment: String) {
        self.entries.push(Entry {
            key: None,
            value: None,
            comments: vec![comment],
        });
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|e| e.key.as_deref() == Some(key))
            .and_then(|e| e.value.as_ref())
    }

    pub(crate) fn remove(&mut self, key: &str) {
        self.entries.retain(|e| e.key.as_deref() != Some(key));
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Orders keys as `order` lists them (unlisted keys after, in insertion order), comment
    /// lines last.
    pub(crate) fn sort(&mut self, order: &[&str]) {
        self.entries.sort_by_key(|e| match &e.key {
            Some(k) => order.iter().position(|o| o == k).unwrap_or(order.len()),
            None => order.len() + 1,
        });
    }

    pub(crate) fn render(&self, out: &mut String) {
        for line in &self.preamble {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&self.header);
        out.push('\n');
        for e in &self.entries {
            for c in &e.comments {
                out.push_str(&format!("# {c}\n"));
            }
            if let (Some(k), Some(v)) = (&e.key, &e.value) {
                out.push_str(&format!("{k} = {}\n", render_value(v)));
            }
        }
    }
}

/// A value as TOML writes it inline (strings escaped, arrays and tables inline).
pub(crate) fn render_value(v: &Value) -> String {
    match v {
        Value::Table(t) => {
            let parts: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", render_key(k), render_value(v)))
                .collect();
            if parts.is_empty() {
                "{}".to_string()
            } else {
                format!("{{ {} }}", parts.join(", "))
            }
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(render_value).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// A key: bare when TOML allows it, else a quoted string.
fn render_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

/// The whole document, tables in the order given; empty single tables are left out.
pub(crate) fn render(header: &[String], tables: &[Table]) -> String {
    let mut out = String::new();
    for line in header {
        out.push_str(&format!("# {line}\n"));
    }
    for t in tables {
        if t.is_empty() && !t.header.starts_with("[[") {
            continue;
        }
        out.push('\n');
        t.render(&mut out);
    }
    out
}

pub(crate) fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

pub(crate) fn list<I: IntoIterator<Item = String>>(items: I) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}
