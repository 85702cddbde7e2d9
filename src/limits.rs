//! What a log row can hold, checked before anything is written.
//!
//! | field | limit | beyond it |
//! |---|---|---|
//! | `entity_type`, `object_id`, `actor`, `tool` | [`MAX_KEY_CHARS`] characters, no NUL | [`Error::TooLong`] / [`Error::Nul`] naming the field |
//! | `action` | [`MAX_ACTION_CHARS`] characters, no NUL | the same |
//! | `message`, strings inside `changes` and `data` | no NUL on PostgreSQL (it stores none) | [`Error::Nul`] naming the field |
//! | a JSON value (a JSON column, an event's or the context's data) | [`MAX_JSON_DEPTH`] levels | stored as the string [`TOO_DEEP`] |
//!
//! The key columns are `VARCHAR(191)` (191 characters of utf8mb4 fit MySQL's index key limit);
//! every backend gets the same limit, so an application moving between them meets no surprise.
//! The hooks check the key fields in `before_save`/`before_delete`, before the audited write
//! runs, so a value over a limit fails that write with nothing written, in or outside a
//! transaction. A too-deep value is recorded as a marker, not refused: SeaORM stores it, and
//! refusing would fail the application's write for a value the application accepts.

use sea_orm::DbBackend;
use serde_json::Value as Json;

use crate::error::{Error, Result};

/// Longest `entity_type`, `object_id`, `actor` and `tool`, in characters.
pub const MAX_KEY_CHARS: usize = 191;

/// Longest `action` (a custom one: `Action::Custom`), in characters: the log's `action`
/// column is `VARCHAR(64)` (`sea_orm_audit_migration`), which MySQL outside a strict
/// `sql_mode` would cut and SQLite would keep whole.
pub const MAX_ACTION_CHARS: usize = 64;

/// Deepest JSON value recorded as it is (arrays and objects nested in each other). A log
/// entry wraps a column value in two more levels (`changes.new_value.<column>`), and MariaDB's
/// JSON columns refuse more than 31 levels (its `JSON_VALID` check), serde_json and sqlx more
/// than 128: at this depth every entry is stored and reads back on every backend. One limit
/// for all backends, so an application moving between them sees the same log.
pub const MAX_JSON_DEPTH: usize = 29;

/// The most arrays and objects nested in each other that serde_json reads (its recursion
/// limit, 128, counts the one that fails), so the most a SeaORM model reads back.
pub const READABLE_JSON_DEPTH: usize = 127;

/// How a JSON value nested deeper than [`MAX_JSON_DEPTH`] is recorded: this text, then
/// ` sha256:` and a digest of the value.
pub const TOO_DEEP: &str = "***TOO_DEEP***";

/// Checks one key field (`entity_type`, `object_id`, `actor`, `tool`).
pub(crate) fn check_key(field: &'static str, value: &str) -> Result<()> {
    check_chars(field, value, MAX_KEY_CHARS)
}

/// Checks an entry's action (a custom one can be any text) against the log's column.
pub(crate) fn check_action(value: &str) -> Result<()> {
    check_chars("action", value, MAX_ACTION_CHARS)
}

fn check_chars(field: &'static str, value: &str, max_chars: usize) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::Nul { field });
    }
    // Counting stops at the first character over the limit: a huge value costs no more.
    if value.len() > max_chars && value.chars().nth(max_chars).is_some() {
        return Err(Error::TooLong {
            field,
            max_chars,
            chars: value.chars().count(),
        });
    }
    Ok(())
}

/// Refuses a JSON value set on `column` that nests deeper than serde_json reads back
/// ([`READABLE_JSON_DEPTH`]), before the write runs.
pub(crate) fn check_readable(column: &str, value: &Json) -> Result<()> {
    if deeper_than(value, READABLE_JSON_DEPTH) {
        return Err(Error::JsonTooDeep {
            column: column.to_owned(),
            max: READABLE_JSON_DEPTH,
        });
    }
    Ok(())
}

/// Checks a text field the backend may refuse NUL in.
pub(crate) fn check_text(backend: DbBackend, field: &'static str, value: &str) -> Result<()> {
    if backend == DbBackend::Postgres && value.contains('\0') {
        return Err(Error::Nul { field });
    }
    Ok(())
}

/// Checks the strings (keys and values) of a JSON value the backend may refuse NUL in.
pub(crate) fn check_json(backend: DbBackend, field: &'static str, value: &Json) -> Result<()> {
    if backend != DbBackend::Postgres {
        return Ok(());
    }
    refuse_nul(field, value)
}

/// Refuses a NUL character in any string (key or value) of `value`, on every backend.
pub(crate) fn refuse_nul(field: &'static str, value: &Json) -> Result<()> {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Json::String(s) if s.contains('\0') => return Err(Error::Nul { field }),
            Json::Array(items) => stack.extend(items),
            Json::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return Err(Error::Nul { field });
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `value` nests arrays and objects deeper than `max`. Iterative: a value of any
/// depth is measured without recursion (a recursive walk overflows the stack on 10,000 levels).
pub(crate) fn deeper_than(value: &Json, max: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: &mut dyn Iterator<Item = &Json> = match v {
            Json::Array(items) => &mut items.iter(),
            Json::Object(map) => &mut map.values(),
            _ => continue,
        };
        if depth + 1 > max {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

/// About the bytes a JSON value holds in memory: the text of its strings and keys, and a little
/// per value. Iterative, as [`deeper_than`]: a value of any depth is measured without
/// recursion. What the activity queue and the before-image table count against their bounds.
pub(crate) fn json_size(value: &Json) -> usize {
    let mut size = 0;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        size += 8;
        match v {
            Json::String(s) => size += s.len(),
            Json::Array(items) => stack.extend(items),
            Json::Object(map) => {
                size += map.keys().map(String::len).sum::<usize>();
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    size
}

/// [`json_size`] of a map's keys and values.
pub(crate) fn map_size(map: &serde_json::Map<String, Json>) -> usize {
    map.iter().map(|(k, v)| k.len() + json_size(v)).sum()
}

/// `value` as recorded: itself, or, when it nests deeper than [`MAX_JSON_DEPTH`], the marker
/// `"***TOO_DEEP*** sha256:<hex>"` with a digest of the value, so that two different deep
/// values still differ in a diff (a change between them is recorded, not lost).
pub(crate) fn bounded(value: &Json) -> Json {
    if deeper_than(value, MAX_JSON_DEPTH) {
        too_deep_marker(value)
    } else {
        value.clone()
    }
}

fn too_deep_marker(value: &Json) -> Json {
    use sha2::{Digest, Sha256};
    // An unambiguous token stream, produced without recursion.
    enum Item<'a> {
        Value(&'a Json),
        Close(u8),
    }
    let mut hasher = Sha256::new();
    let text = |hasher: &mut Sha256, tag: u8, s: &str| {
        hasher.update([tag]);
        hasher.update((s.len() as u64).to_be_bytes());
        hasher.update(s.as_bytes());
    };
    let mut stack = vec![Item::Value(value)];
    while let Some(item) = stack.pop() {
        match item {
            Item::Close(c) => hasher.update([c]),
            Item::Value(Json::Null) => hasher.update(b"z"),
            Item::Value(Json::Bool(b)) => hasher.update(if *b { b"t" } else { b"f" }),
            Item::Value(Json::Number(n)) => text(&mut hasher, b'n', &n.to_string()),
            Item::Value(Json::String(s)) => text(&mut hasher, b's', s),
            Item::Value(Json::Array(items)) => {
                hasher.update(b"[");
                stack.push(Item::Close(b']'));
                stack.extend(items.iter().rev().map(Item::Value));
            }
            Item::Value(Json::Object(map)) => {
                hasher.update(b"{");
                stack.push(Item::Close(b'}'));
                // Keys are hashed as the entries come off the stack, in order.
                for (k, v) in map.iter().rev() {
                    stack.push(Item::Value(v));
                    stack.push(Item::Close(b':'));
                    text(&mut hasher, b'k', k);
                }
            }
        }
    }
    digest_marker(&hasher.finalize())
}

/// The [`TOO_DEEP`] marker naming a SHA-256 digest.
fn digest_marker(digest: &[u8]) -> Json {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Json::String(format!("{TOO_DEEP} sha256:{hex}"))
}

/// The [`TOO_DEEP`] marker of a text no reader can take as JSON: the digest of its bytes.
fn text_marker(text: &str) -> Json {
    use sha2::{Digest, Sha256};
    digest_marker(&Sha256::digest(text.as_bytes()))
}

/// Replaces `value` by [`TOO_DEEP`] when it nests deeper than [`MAX_JSON_DEPTH`], taking the
/// old value apart without recursion.
pub(crate) fn bound_in_place(value: &mut Json) {
    if deeper_than(value, MAX_JSON_DEPTH) {
        let marker = too_deep_marker(value);
        dispose(std::mem::replace(value, marker));
    }
}

/// How the SQLite and MySQL triggers record a JSON column value that may nest deeper than
/// [`MAX_JSON_DEPTH`] (they cannot hash, nor always measure the depth): this text, then the
/// value's JSON text as stored. `capture_db::seal` replaces it by what [`bounded`] gives,
/// before it hashes the entry. It starts with [`TOO_DEEP`]: until then readers take it for a
/// marker.
pub(crate) const DEFERRED: &str = "***TOO_DEEP*** unsealed:";

/// Replaces a [`DEFERRED`] value by the value it holds, or by its marker when that nests
/// deeper than [`MAX_JSON_DEPTH`]; whether it replaced anything. Text deeper than serde_json
/// reads (128 levels; the hooks cannot read such a value back either) gets a marker with the
/// digest of the text.
pub(crate) fn resolve_deferred(value: &mut Json) -> bool {
    let Some(text) = value.as_str().and_then(|s| s.strip_prefix(DEFERRED)) else {
        return false;
    };
    let resolved = match serde_json::from_str::<Json>(text) {
        Ok(parsed) => {
            let out = bounded(&parsed);
            dispose(parsed);
            out
        }
        Err(_) => text_marker(text),
    };
    *value = resolved;
    true
}

/// Reads an entry's diff as a trigger stored it, which serde_json may refuse although the
/// database wrote it: on SQLite, text that is not UTF-8 (a column written as a blob cast to
/// text) and `\u` escapes of lone surrogates; on SQLite and MySQL, numbers beyond what an `f64`
/// holds (`1e400`; SQLite writes JSON5's `Infinity` as `9e999`). Such text is read with U+FFFD
/// for bytes that are not UTF-8 and for lone surrogates, and such a number as the string of its
/// text (as a float's infinity is logged as a string); text that still does not parse becomes
/// the marker of its digest. Returns the value and whether it differs from the stored text, which
/// the seal then stores in its place (so that every reader can read the entry).
pub(crate) fn lenient_json(bytes: &[u8]) -> (Json, bool) {
    let text = String::from_utf8_lossy(bytes);
    let lossy = matches!(text, std::borrow::Cow::Owned(_));
    if let Ok(value) = serde_json::from_str::<Json>(&text) {
        return (value, lossy);
    }
    match serde_json::from_str::<Json>(&repaired_json_text(&text)) {
        Ok(value) => (value, true),
        Err(_) => (text_marker(&text), true),
    }
}

/// JSON text with each number that overflows an `f64` turned into a string of its text, and
/// each `\u` escape of a lone surrogate into `\ufffd`; everything else as it was.
fn repaired_json_text(text: &str) -> String {
    let b = text.as_bytes();
    let hex_at = |i: usize| {
        text.get(i..i + 4)
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let (mut out, mut i, mut copied) = (String::with_capacity(text.len() + 16), 0, 0);
    // Every position sliced at is an ASCII byte's, so a char boundary.
    let replace = |out: &mut String, copied: &mut usize, from: usize, to: usize, with: &str| {
        out.push_str(&text[*copied..from]);
        out.push_str(with);
        *copied = to;
    };
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] != b'\\' {
                        i += 1;
                        continue;
                    }
                    if b.get(i + 1) != Some(&b'u') {
                        i += 2;
                        continue;
                    }
                    let pair = match hex_at(i + 2) {
                        Some(0xD800..=0xDBFF) => {
                            text.get(i + 6..i + 8) == Some("\\u")
                                && matches!(hex_at(i + 8), Some(0xDC00..=0xDFFF))
                        }
                        Some(0xDC00..=0xDFFF) => false,
                        _ => {
                            i += 2;
                            continue;
                        }
                    };
                    if pair {
                        i += 12;
                    } else {
                        replace(&mut out, &mut copied, i, i + 6, "\\ufffd");
                        i += 6;
                    }
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let number = &text[start..i];
                if number.parse::<f64>().is_ok_and(f64::is_infinite) {
                    let quoted = Json::String(number.to_owned()).to_string();
                    replace(&mut out, &mut copied, start, i, &quoted);
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

/// Whether a recorded value is a [`TOO_DEEP`] marker.
pub(crate) fn is_too_deep(value: &Json) -> bool {
    value.as_str().is_some_and(|s| s.starts_with(TOO_DEEP))
}

/// Drops a JSON value level by level: serde_json's drop recurses, and overflows the stack on a
/// value nested thousands deep.
pub(crate) fn dispose(value: Json) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Json::Array(items) => stack.extend(items),
            Json::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Json {
        let mut v = json!(1);
        for _ in 0..depth {
            v = Json::Array(vec![v]);
        }
        v
    }

    #[test]
    fn what_serde_json_refuses_is_read_leniently() {
        let read = |text: &[u8]| lenient_json(text);
        assert_eq!(read(br#"{"a":1}"#), (json!({"a": 1}), false));
        assert_eq!(
            read(br#"{"a":1e400,"b":[-9e999,2.5],"c":"1e400"}"#),
            (
                json!({"a": "1e400", "b": ["-9e999", 2.5], "c": "1e400"}),
                true
            )
        );
        assert_eq!(
            read(br#"{"a":"x\ud800y","b":"\ud83d\ude00","c":"\udc00","d":"\\ud800"}"#),
            (
                json!({"a": "x\u{fffd}y", "b": "\u{1f600}", "c": "\u{fffd}", "d": "\\ud800"}),
                true
            )
        );
        assert_eq!(
            read(b"{\"a\":\"f\xffo\"}"),
            (json!({"a": "f\u{fffd}o"}), true)
        );
        let (marker, repaired) = read(b"{\"a\":");
        assert!(repaired && is_too_deep(&marker), "{marker}");
        // Truncated escapes and text after a string are left as they are, and refused.
        assert!(is_too_deep(&read(br#"{"a":"\ud8"#).0));
    }

    #[test]
    fn depth_counts_containers() {
        assert!(!deeper_than(&json!(1), 0));
        assert!(deeper_than(&json!([1]), 0));
        assert!(!deeper_than(&nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH));
        assert!(deeper_than(&nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH));
        assert!(!deeper_than(&json!({"a": [1], "b": {"c": 2}}), 2));
        assert!(deeper_than(&json!({"a": [1], "b": {"c": [2]}}), 2));
    }

    #[test]
    fn ten_thousand_levels_do_not_overflow() {
        let deep = nested(10_000);
        let marker = bounded(&deep);
        assert!(is_too_deep(&marker), "{marker}");
        assert_ne!(
            marker,
            bounded(&nested(10_001)),
            "different values, different markers"
        );
        assert_eq!(bounded(&nested(3)), nested(3));
        let mut owned = deep;
        bound_in_place(&mut owned);
        assert_eq!(owned, marker);
        let mut shallow = nested(3);
        bound_in_place(&mut shallow);
        assert_eq!(shallow, nested(3));
    }

    #[test]
    fn key_limits_name_the_field() {
        assert!(check_key("actor", &"a".repeat(191)).is_ok());
        let err = check_key("actor", &"é".repeat(192)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLong {
                    field: "actor",
                    chars: 192,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            check_key("tool", "a\0b"),
            Err(Error::Nul { field: "tool" })
        ));
        assert!(check_text(DbBackend::Sqlite, "message", "a\0b").is_ok());
        assert!(check_text(DbBackend::Postgres, "message", "a\0b").is_err());
        let data = json!({"k": ["x\u{0}y"]});
        assert!(matches!(
            check_json(DbBackend::Postgres, "data", &data),
            Err(Error::Nul { field: "data" })
        ));
    }

    /// serde_json reads `READABLE_JSON_DEPTH` containers nested in each other, arrays or
    /// objects, and refuses one more; `check_readable` refuses exactly those.
    #[test]
    fn readable_depth_is_serde_jsons() {
        for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
            let nest = |n: usize| format!("{}1{}", open.repeat(n), close.repeat(n));
            let read = |n: usize| serde_json::from_str::<Json>(&nest(n));
            assert!(read(READABLE_JSON_DEPTH).is_ok());
            assert!(read(READABLE_JSON_DEPTH + 1).is_err());
            let deepest = read(READABLE_JSON_DEPTH).unwrap();
            assert!(check_readable("doc", &deepest).is_ok());
            let deeper = Json::Array(vec![deepest]);
            assert!(matches!(
                check_readable("doc", &deeper),
                Err(Error::JsonTooDeep {
                    max: READABLE_JSON_DEPTH,
                    ..
                })
            ));
        }
    }
}
