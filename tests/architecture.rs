//! The shape of `src/`: its modules import one way (no module imports one that imports it
//! back), and the typed views of the log row hold the columns of its one definition.
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

/// The field names of `struct name` in `text` (a struct with named fields, comments stripped).
fn struct_fields(text: &str, name: &str) -> Option<BTreeSet<String>> {
    let text = strip_comments(text);
    let at = text.find(&format!("struct {name}"))?;
    let rest = &text[at..];
    let open = rest.find('{')?;
    let close = open + rest[open..].find('}')?;
    let fields = rest[open + 1..close]
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line
                .strip_prefix("pub(crate) ")
                .or_else(|| line.strip_prefix("pub "))
                .unwrap_or(line);
            let (field, _) = line.split_once(':')?;
            (!field.is_empty() && field.chars().all(is_ident)).then(|| field.to_owned())
        })
        .collect();
    Some(fields)
}

/// The typed views of the log row, by file and struct, and how each differs from the
/// `audit_log` entity's columns (the one definition): the columns it leaves out and the fields
/// it adds that are not columns.
const ROW_VIEWS: &[(&str, &str, &[&str], &[&str])] = &[
    ("src/entry.rs", "EntryRow", &["prev_hash", "hash"], &[]),
    ("src/entry.rs", "LogEntry", &["prev_hash", "hash"], &[]),
    (
        "src/chain/hash.rs",
        "Content",
        &["id", "prev_hash", "hash"],
        &[],
    ),
    (
        "src/store.rs",
        "NewEntry",
        &["id", "prev_hash", "hash"],
        &["starts_chain", "known_head"],
    ),
    (
        "src/store.rs",
        "Row",
        &["id", "prev_hash", "hash"],
        &["starts_chain", "known_head"],
    ),
];

/// Every view's fields against the columns it should hold, as a list of mismatches.
fn row_view_mismatches(columns: &BTreeSet<String>, read: impl Fn(&str) -> String) -> Vec<String> {
    let mut out = Vec::new();
    for (file, name, without, extra) in ROW_VIEWS {
        let Some(fields) = struct_fields(&read(file), name) else {
            out.push(format!("{file}: no struct {name}"));
            continue;
        };
        let expected: BTreeSet<String> = columns
            .iter()
            .filter(|c| !without.contains(&c.as_str()))
            .cloned()
            .chain(extra.iter().map(|f| (*f).to_owned()))
            .collect();
        if fields != expected {
            out.push(format!(
                "{file} {name}: missing {:?}, not columns {:?}",
                expected.difference(&fields).collect::<Vec<_>>(),
                fields.difference(&expected).collect::<Vec<_>>()
            ));
        }
    }
    out
}

/// The log row's columns are defined once, by the `audit_log` entity; its typed views
/// (`NewEntry`, `store::Row`, `chain::Content`, `EntryRow`, `LogEntry`) hold exactly its
/// columns, less the ones each leaves out by design. The column lists are checked in
/// `store`'s unit tests, the migration in tests/migration.rs.
#[test]
fn the_row_views_hold_the_entity_columns() {
    use sea_orm::{IdenStatic, Iterable};
    let columns: BTreeSet<String> = sea_orm_audit::audit_log::Column::iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = std::fs::read_to_string(root.join("src/audit_log.rs")).unwrap();
    assert_eq!(struct_fields(&model, "Model"), Some(columns.clone()));
    let mismatches = row_view_mismatches(&columns, |file| {
        std::fs::read_to_string(root.join(file)).unwrap()
    });
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The row check sees a column one view lacks and a field that is no column.
#[test]
fn the_row_check_sees_a_missing_column() {
    let columns: BTreeSet<String> = ["id", "entity_type", "object_id", "prev_hash", "hash"]
        .map(str::to_owned)
        .into();
    let read = |file: &str| match file {
        "src/entry.rs" => "pub(crate) struct EntryRow {\n    id: i64, // a comment: x\n    \
                           entity_type: String,\n    object_id: String,\n    extra: u8,\n}\n\
                           pub struct LogEntry {\n    /// Docs: here.\n    pub id: i64,\n    \
                           pub entity_type: String,\n}"
            .to_owned(),
        _ => String::new(),
    };
    let found = row_view_mismatches(&columns, read);
    assert_eq!(found.len(), 5, "{found:#?}");
    assert_eq!(
        found[0],
        "src/entry.rs EntryRow: missing [], not columns [\"extra\"]"
    );
    assert_eq!(
        found[1],
        "src/entry.rs LogEntry: missing [\"object_id\"], not columns []"
    );
    assert!(found[2].ends_with("no struct Content"), "{found:#?}");
}
