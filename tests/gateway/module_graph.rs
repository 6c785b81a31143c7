//! The top-level modules of `src/` depend on each other one way only: this test reads every
//! source file, collects the `crate::<module>` paths each top-level module uses, and fails
//! on any cycle, naming it. (`main.rs` and `lib.rs` are the roots and are left out.)
//!
//! When it fails: move the shared item down (into `services`, `error`, `request`, …) rather
//! than importing upward; `src/lib.rs` lists the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level module a file under `src/` belongs to: `a.rs` and `a/**` are `a`.
fn top_module(rel: &Path) -> String {
    let first = rel.components().next().expect("a path under src/");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The modules named by `crate::x` and `crate::{x, y::z}` paths in `code` (comments are
/// stripped first, so a doc link does not count as a dependency).
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let preceded_by_ident = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            rest = &rest[at + "crate::".len()..];
            if preceded_by_ident {
                continue; // e.g. `oidc_gateway_crate::` or `$crate::`
            }
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                for item in group.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn collect(dir: &Path, src: &Path, graph: &mut Graph) {
    for entry in fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect(&path, src, graph);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src).expect("under src");
        let module = top_module(rel);
        if module == "main" || module == "lib" {
            continue;
        }
        let code = fs::read_to_string(&path).expect("readable source");
        let deps = graph.entry(module.clone()).or_default();
        for dep in crate_paths(&code) {
            if dep != module {
                deps.insert(dep);
            }
        }
    }
}

/// One cycle through `start`, if any, as the list of modules along it.
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &Graph,
        node: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

fn cycles(graph: &Graph) -> Vec<String> {
    let mut found = BTreeSet::new();
    for module in graph.keys() {
        if let Some(mut cycle) = cycle_from(graph, module) {
            // One spelling per cycle: rotated to start at its smallest module.
            let min = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| *m)
                .map(|(i, _)| i);
            cycle.rotate_left(min.unwrap_or(0));
            cycle.push(cycle[0].clone());
            found.insert(cycle.join(" -> "));
        }
    }
    found.into_iter().collect()
}

#[test]
fn top_level_modules_have_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    collect(&src, &src, &mut graph);
    assert!(
        graph.len() > 10 && graph.contains_key("gateway") && graph.contains_key("session"),
        "the source tree was not read: {graph:?}"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "cycles between top-level modules:\n  {}\n(edges: {graph:#?})",
        found.join("\n  ")
    );
}

#[test]
fn the_checker_sees_a_cycle_and_grouped_imports() {
    let deps = crate_paths(
        "use crate::{config::X, session};\nlet a = crate::gateway::f(); // crate::hooks\n",
    );
    assert_eq!(
        deps.into_iter().collect::<Vec<_>>(),
        ["config", "gateway", "session"]
    );
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    graph.entry("d".into()).or_default().insert("a".into());
    assert_eq!(cycles(&graph), ["a -> b -> c -> a"]);
    graph.get_mut("c").unwrap().clear();
    assert!(cycles(&graph).is_empty());
}
