//! The modules of `src/` import one way: no module imports one that imports it back.
//!
//! A module is a file (`src/a.rs` or `src/a/mod.rs` is `a`, `src/a/b.rs` is `a::b`). An edge is
//! any `crate::..` or `super::..` path in its text (comments stripped), resolved to the longest
//! known module prefix, following the crate root's and modules' `pub use` re-exports (so
//! `crate::Action` counts as a use of the module defining `Action`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(parts.join("::"), strip_comments(&text));
        }
    }
    out
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `crate::a::b` / `super::a` path in `text`, and the items of `use crate::a::{x, y}`.
fn paths(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for kind in ["crate", "super"] {
        let pat = format!("{kind}::");
        let mut rest = text;
        while let Some(at) = rest.find(&pat) {
            let before = rest[..at].chars().last();
            rest = &rest[at + pat.len()..];
            if before.is_some_and(is_ident) {
                continue;
            }
            let tail: String = rest
                .chars()
                .take_while(|c| is_ident(*c) || *c == ':')
                .collect();
            let mut parts: Vec<String> = tail
                .split("::")
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            let after = &rest[tail.len()..];
            if tail.ends_with("::") && after.starts_with('{') {
                let inner = &after[1..after.find('}').unwrap_or(after.len())];
                for item in inner.split(',') {
                    let item = item.trim().split("::").next().unwrap_or("").trim();
                    if !item.is_empty() && item != "self" {
                        let mut p = parts.clone();
                        p.push(item.to_owned());
                        out.push((kind.to_owned(), p));
                    }
                }
                parts.push(String::new());
            }
            parts.retain(|p| !p.is_empty());
            out.push((kind.to_owned(), parts));
        }
    }
    out
}

/// `pub use a::{X, Y};` and `pub use a::X;` in module `m`: X -> a.
fn reexports(mods: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (m, text) in mods {
        let prefix = if m.is_empty() {
            String::new()
        } else {
            format!("{m}::")
        };
        for stmt in text.split(';') {
            let Some(at) = stmt.find("pub use ") else {
                continue;
            };
            let body = stmt[at + 8..].trim();
            let body = body
                .strip_prefix("crate::")
                .or_else(|| body.strip_prefix("self::"))
                .unwrap_or(body);
            if let Some((path, inner)) = body.split_once("::{") {
                for item in inner.trim_end_matches('}').split(',') {
                    let item = item.trim();
                    if !item.is_empty() && item != "self" && !item.contains("::") {
                        out.insert(format!("{prefix}{item}"), format!("{prefix}{path}"));
                    }
                }
            } else if let Some((path, item)) = body.rsplit_once("::") {
                out.insert(
                    format!("{prefix}{}", item.trim()),
                    format!("{prefix}{path}"),
                );
            }
        }
    }
    out
}

fn resolve(
    parts: &[String],
    mods: &BTreeMap<String, String>,
    reexports: &BTreeMap<String, String>,
    depth: usize,
) -> Option<String> {
    for n in (1..=parts.len()).rev() {
        let name = parts[..n].join("::");
        if mods.contains_key(&name) {
            return Some(name);
        }
        if let Some(target) = reexports.get(&name).filter(|_| depth < 8) {
            let parts: Vec<String> = target.split("::").map(str::to_owned).collect();
            return resolve(&parts, mods, reexports, depth + 1);
        }
    }
    None
}

fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let reexports = reexports(mods);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in mods {
        let here: Vec<String> = m
            .split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        for (kind, parts) in paths(text) {
            let mut full = if kind == "crate" {
                Vec::new()
            } else {
                here[..here.len().saturating_sub(1)].to_vec()
            };
            full.extend(parts);
            if let Some(target) = resolve(&full, mods, &reexports, 0)
                && target != *m
                && !target.is_empty()
            {
                out.entry(m.clone()).or_default().insert(target);
            }
        }
    }
    out
}

/// The cycles of the graph, each as a list of modules (strongly connected components of more
/// than one module).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges.keys().chain(edges.values().flatten()).collect();
    let reaches = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reaches(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let component: Vec<String> = nodes
            .iter()
            .filter(|m| reach[*n].contains(**m) && reach[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        done.extend(component.iter().cloned());
        if component.len() > 1 {
            out.push(component);
        }
    }
    out
}

#[test]
fn src_modules_have_no_import_cycles() {
    let mods = modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(mods.len() > 10, "found only {} modules", mods.len());
    let edges = edges(&mods);
    let found = cycles(&edges);
    let report: Vec<String> = found
        .iter()
        .map(|c| {
            let inner: Vec<String> = c
                .iter()
                .flat_map(|m| {
                    edges[m]
                        .iter()
                        .filter(|t| c.contains(t))
                        .map(move |t| format!("{m} -> {t}"))
                })
                .collect();
            format!("cycle {}: {}", c.join(", "), inner.join("; "))
        })
        .collect();
    assert!(found.is_empty(), "{}", report.join("\n"));
}

/// The checker finds a cycle when there is one (so a pass above means something).
#[test]
fn the_checker_sees_a_cycle() {
    let mods: BTreeMap<String, String> = [
        (String::new(), "pub use a::Thing;".to_owned()),
        ("a".to_owned(), "use crate::b::helper;".to_owned()),
        ("b".to_owned(), "use crate::Thing;".to_owned()),
        ("c".to_owned(), "use super::a;".to_owned()),
    ]
    .into_iter()
    .collect();
    let found = cycles(&edges(&mods));
    assert_eq!(found, vec![vec!["a".to_owned(), "b".to_owned()]]);
}
