//! Apache configuration syntax: lines, continuations, quoted arguments, nested sections,
//! `Define` and `Include`/`IncludeOptional` (globs, bounded depth, cycle detection).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How deep `Include`s may nest (Apache allows 128; real configs use two or three).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a directive or section was written: a file label and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    /// The file, relative to the first input's directory when it is below it.
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One directive with its arguments (quotes removed, `${NAME}` of `Define`d names expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub source: Source,
    /// Order of appearance over all files (includes spliced in place).
    pub seq: usize,
    /// The directory of the file it was read from (for relative paths it names).
    pub dir: PathBuf,
}

impl Directive {
    /// Whether the directive is `name` (Apache directive names are case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// A section (`<VirtualHost *:443>` … `</VirtualHost>`) with what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub args: Vec<String>,
    pub source: Source,
    pub seq: usize,
    pub children: Vec<Node>,
}

impl Section {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Directive(Directive),
    Section(Section),
}

/// A problem met while reading: the place and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProblem {
    pub source: Source,
    pub seq: usize,
    pub directive: String,
    pub reason: String,
}

/// Everything read from the input files.
#[derive(Debug, Default)]
pub struct Parsed {
    pub nodes: Vec<Node>,
    pub problems: Vec<ParseProblem>,
}

/// An input file that could not be read at all (exit status 1).
#[derive(Debug)]
pub struct Unreadable {
    pub path: PathBuf,
    pub error: std::io::Error,
}

struct Reader {
    base: PathBuf,
    defines: BTreeMap<String, String>,
    seq: usize,
    problems: Vec<ParseProblem>,
    /// Canonical paths of the files being read, outermost first (cycle detection).
    stack: Vec<PathBuf>,
}

/// Reads `files` (in order) and everything they include.
pub fn parse_files(files: &[PathBuf]) -> Result<Parsed, Unreadable> {
    let base = files
        .first()
        .and_then(|f| f.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut reader = Reader {
        base,
        defines: BTreeMap::new(),
        seq: 0,
        problems: Vec::new(),
        stack: Vec::new(),
    };
    let mut nodes = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).map_err(|error| Unreadable {
            path: file.clone(),
            error,
        })?;
        // Apache reads bytes; a Latin-1 comment must not stop the import.
        let text = String::from_utf8_lossy(&bytes);
        nodes.extend(reader.read_text(file, &text));
    }
    Ok(Parsed {
        nodes,
        problems: reader.problems,
    })
}

/// Parses one text as if read from `path` (its includes are resolved relative to it).
pub fn parse_text(path: &Path, text: &str) -> Parsed {
    let mut reader = Reader {
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        defines: BTreeMap::new(),
        seq: 0,
        problems: Vec::new(),
        stack: Vec::new(),
    };
    let nodes = reader.read_text(path, text);
    Parsed {
        nodes,
        problems: reader.problems,
    }
}

/// A logical line: continuations joined, with the line it started on.
struct Line {
    number: usize,
    text: String,
}

/// Joins `\`-continued lines and drops comments and blank lines.
fn logical_lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut current: Option<Line> = None;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (body, continued) = match raw.trim_end().strip_suffix('\\') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let line = match current.take() {
            Some(mut l) => {
                // The continuation's indentation counts as one separating space.
                if !l.text.ends_with(char::is_whitespace) {
                    l.text.push(' ');
                }
                l.text.push_str(body.trim_start());
                l
            }
            None => Line {
                number: i + 1,
                text: body.to_string(),
            },
        };
        if continued {
            current = Some(line);
        } else {
            out.push(line);
        }
    }
    out.extend(current);
    out.retain(|l| {
        let t = l.text.trim_start();
        !t.is_empty() && !t.starts_with('#')
    });
    out
}

/// Splits arguments as Apache's `ap_getword_conf` does: words separated by white space;
/// `"…"` or `'…'` quote a word, inside which a backslash escapes the quote character.
pub fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.peek() {
                        Some(&next) if next == first || next == '\\' => {
                            word.push(next);
                            chars.next();
                        }
                        _ => word.push('\\'),
                    }
                } else if c == first {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            if !closed {
                return Err(format!("unterminated {first} quote"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        args.push(word);
    }
    Ok(args)
}

/// Whether a file name component matches a wildcard pattern (`*`, `?`, `[...]` as a
/// literal character class is not supported: Apache configs use `*` and `?`).
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pattern[1..], name) || (!name.is_empty() && wildcard(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard(&pattern[1..], &name[1..]),
        _ => false,
    }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Expands a path whose components may hold wildcards, in sorted order (Apache includes
/// the matches of a glob in alphabetical order). Hidden files match only an explicit `.`.
fn expand_glob(path: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for component in path.components() {
        let part = component.as_os_str().to_string_lossy().into_owned();
        if !has_wildcard(&part) {
            for f in &mut found {
                f.push(component.as_os_str());
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') || part.starts_with('.'))
                .filter(|n| wildcard(part.as_bytes(), n.as_bytes()))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found
}

impl Reader {
    fn label(&self, path: &Path) -> String {
        let shown = path.strip_prefix(&self.base).unwrap_or(path);
        shown.display().to_string()
    }

    fn problem(&mut self, source: Source, directive: &str, reason: impl Into<String>) {
        self.seq += 1;
        self.problems.push(ParseProblem {
            source,
            seq: self.seq,
            directive: directive.to_string(),
            reason: reason.into(),
        });
    }

    /// Replaces `${NAME}` of a `Define`d NAME; others stay (the gateway reads them from
    /// the environment, as Apache does for names it has not defined).
    fn expand(&self, arg: &str) -> String {
        let mut out = String::new();
        let mut rest = arg;
        while let Some(pos) = rest.find("${") {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 2..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    match self.defines.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("${");
                            out.push_str(name);
                            out.push('}');
                        }
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[pos..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn read_text(&mut self, path: &Path, text: &str) -> Vec<Node> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.stack.push(canonical);
        let file = self.label(path);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        // Open sections, innermost last; the bottom entry is the file's top level.
        let mut open: Vec<Section> = vec![Section {
            name: String::new(),
            args: Vec::new(),
            source: Source {
                file: file.clone(),
                line: 0,
            },
            seq: 0,
            children: Vec::new(),
        }];
        for line in logical_lines(text) {
            let source = Source {
                file: file.clone(),
                line: line.number,
            };
            let t = line.text.trim();
            if let Some(close) = t.strip_prefix("</") {
                let name = close.trim_end_matches('>').trim();
                if open.len() > 1 && open.last().is_some_and(|s| s.is(name)) {
                    let done = open.pop().expect("an open section");
                    open.last_mut()
                        .expect("the top level")
                        .children
                        .push(Node::Section(done));
                } else {
                    let expected = open
                        .last()
                        .filter(|_| open.len() > 1)
                        .map(|s| format!("</{}>", s.name))
                        .unwrap_or_else(|| "no open section".to_string());
                    self.problem(
                        source,
                        &format!("</{name}>"),
                        format!("closes a section that is not open (expected {expected}); fix the nesting"),
                    );
                }
                continue;
            }
            if let Some(open_tag) = t.strip_prefix('<') {
                let Some(inner) = open_tag.trim_end().strip_suffix('>') else {
                    self.problem(
                        source,
                        t.split_whitespace().next().unwrap_or(t),
                        "section line without a closing '>'; fix the syntax",
                    );
                    continue;
                };
                let (name, rest) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
                let args = match split_args(rest) {
                    Ok(a) => a.iter().map(|a| self.expand(a)).collect(),
                    Err(e) => {
                        self.problem(
                            source.clone(),
                            &format!("<{name}>"),
                            format!("{e}; fix the quoting"),
                        );
                        Vec::new()
                    }
                };
                self.seq += 1;
                open.push(Section {
                    name: name.to_string(),
                    args,
                    source,
                    seq: self.seq,
                    children: Vec::new(),
                });
                continue;
            }
            let (name, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
            let args: Vec<String> = match split_args(rest) {
                Ok(a) => a.iter().map(|a| self.expand(a)).collect(),
                Err(e) => {
                    self.problem(source, name, format!("{e}; fix the quoting"));
                    continue;
                }
            };
            if name.eq_ignore_ascii_case("Define") {
                if let Some(var) = args.first() {
                    let value = args.get(1).cloned().unwrap_or_default();
                    self.defines.insert(var.clone(), value);
                }
                self.seq += 1;
                continue;
            }
            if name.eq_ignore_ascii_case("UnDefine") {
                if let Some(var) = args.first() {
                    self.defines.remove(var);
                }
                self.seq += 1;
                continue;
            }
            if name.eq_ignore_ascii_case("Include") || name.eq_ignore_ascii_case("IncludeOptional")
            {
                let optional = name.eq_ignore_ascii_case("IncludeOptional");
                let included = self.include(&dir, name, optional, &args, source);
                open.last_mut()
                    .expect("the top level")
                    .children
                    .extend(included);
                continue;
            }
            self.seq += 1;
            let directive = Directive {
                name: name.to_string(),
                args,
                source,
                seq: self.seq,
                dir: dir.clone(),
            };
            open.last_mut()
                .expect("the top level")
                .children
                .push(Node::Directive(directive));
        }
        while open.len() > 1 {
            let unclosed = open.pop().expect("an open section");
            self.problem(
                unclosed.source.clone(),
                &format!("<{}>", unclosed.name),
                format!("is never closed (no </{}>); fix the nesting", unclosed.name),
            );
            open.last_mut()
                .expect("the top level")
                .children
                .push(Node::Section(unclosed));
        }
        self.stack.pop();
        open.pop().map(|s| s.children).unwrap_or_default()
    }

    fn include(
        &mut self,
        dir: &Path,
        name: &str,
        optional: bool,
        args: &[String],
        source: Source,
    ) -> Vec<Node> {
        let Some(pattern) = args.first() else {
            self.problem(
                source,
                name,
                "names no file; add the path or remove the line",
            );
            return Vec::new();
        };
        let target = dir.join(pattern);
        let files: Vec<PathBuf> = if has_wildcard(pattern) {
            expand_glob(&target)
                .into_iter()
                .filter(|p| p.is_file())
                .collect()
        } else if target.is_dir() {
            // Apache includes every file of a named directory, in order.
            expand_glob(&target.join("*"))
                .into_iter()
                .filter(|p| p.is_file())
                .collect()
        } else {
            vec![target.clone()]
        };
        if files.is_empty() && !optional && has_wildcard(pattern) {
            self.problem(
                source.clone(),
                name,
                format!(
                    "{pattern:?} matches no file; check the path (IncludeOptional allows none)"
                ),
            );
        }
        let mut nodes = Vec::new();
        for file in files {
            if self.stack.len() >= MAX_INCLUDE_DEPTH {
                self.problem(
                    source.clone(),
                    name,
                    format!(
                        "includes nest deeper than {MAX_INCLUDE_DEPTH} files; {} was not read",
                        file.display()
                    ),
                );
                continue;
            }
            let canonical = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if self.stack.contains(&canonical) {
                self.problem(
                    source.clone(),
                    name,
                    format!(
                        "{} includes itself (a cycle); it was read once",
                        self.label(&file)
                    ),
                );
                continue;
            }
            match std::fs::read(&file) {
                Ok(bytes) => nodes.extend(self.read_text(&file, &String::from_utf8_lossy(&bytes))),
                Err(_) if optional => {}
                Err(e) => self.problem(
                    source.clone(),
                    name,
                    format!(
                        "cannot read {}: {e}; fix the path or use IncludeOptional",
                        self.label(&file)
                    ),
                ),
            }
        }
        nodes
    }
}
