//! What an API activity entry may hold, so that every backend stores it.
//!
//! One request must never stop the log: a value a backend refuses fails the whole batch it is
//! in. So every field is cut to its column's width before it is queued, NUL characters (which
//! PostgreSQL refuses in text and in `jsonb`) are replaced, JSON is cut at the log's depth limit
//! inside each value, and an entry larger than [`MAX_ENTRY_BYTES`] loses its bodies (or, if that is
//! not enough, is stored in its reduced form). What the database refuses all the same is found
//! by the writer, which stores the one refused entry reduced (see [`reduced`]).

use serde_json::{Map, Value as Json, json};

use crate::store::NewEntry;

/// Characters kept of a method (in `data.method` and the action).
pub(crate) const MAX_METHOD: usize = 32;
/// Characters kept of the actor and the tool: the width of their columns.
pub(crate) const MAX_ID: usize = crate::MAX_KEY_CHARS;
/// Bytes kept of the recorded path and query.
pub(crate) const MAX_PATH: usize = 2048;
/// Bytes kept of each recorded header (all its values joined).
pub(crate) const MAX_HEADER: usize = 1024;
/// Bytes kept of the message (MySQL's `TEXT` holds 65,535).
pub(crate) const MAX_MESSAGE: usize = 4096;
/// Levels of JSON nesting kept in each value of `data`: the log's own limit, applied inside a
/// body instead of to the whole body, so a deep body keeps its upper levels.
pub(crate) const MAX_DEPTH: usize = crate::MAX_JSON_DEPTH;
/// Largest entry, in bytes of its `data` as JSON plus its message. Far below MySQL's smallest
/// usual `max_allowed_packet` (1 MiB before 8.0, 16 MiB on MariaDB), which every statement
/// must fit.
pub(crate) const MAX_ENTRY_BYTES: usize = 256 * 1024;
/// Bytes of entries per INSERT statement (a statement stops earlier at its row count).
pub(crate) const STATEMENT_BYTES: usize = 1024 * 1024;

/// What replaces a NUL character.
const NUL_MARK: &str = "\u{2400}";

/// `text` cut to at most `max` characters, the last of them `…` when something was cut.
pub(crate) fn cap_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let end = text
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(text.len(), |(i, _)| i);
            format!("{}…", &text[..end])
        }
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), followed by `…[N bytes]`
/// giving the original size when something was cut.
pub(crate) fn cap_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes]", &text[..end], text.len())
}

/// `text` without NUL characters.
pub(crate) fn no_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', NUL_MARK)
    } else {
        text
    }
}

/// A text column's value: no NUL, at most `max` characters.
pub(crate) fn column(text: String, max: usize) -> String {
    let text = no_nul(text);
    if text.len() <= max {
        text // bytes >= characters
    } else {
        cap_chars(&text, max)
    }
}

/// Replaces NUL characters in strings and keys and cuts nesting at [`MAX_DEPTH`]; returns an
/// upper bound of the value's size as JSON text (control characters counted as `\u00XX`,
/// numbers as 24 bytes), close enough to size statements by, so that the exact size is
/// computed only for large entries.
pub(crate) fn sanitize(value: &mut Json, depth: usize) -> usize {
    if depth > MAX_DEPTH && matches!(value, Json::Array(_) | Json::Object(_)) {
        // serde_json's drop recurses: a value deeper than a body can be goes level by level.
        crate::limits::dispose(std::mem::replace(value, Json::from(crate::TOO_DEEP)));
    }
    match value {
        Json::Null | Json::Bool(_) => 5,
        Json::Number(_) => 24,
        Json::String(s) => text_bound(s),
        Json::Array(items) => items
            .iter_mut()
            .map(|item| sanitize(item, depth + 1) + 1)
            .sum::<usize>()
            .saturating_add(2),
        Json::Object(map) => sanitize_map(map, depth) + 2,
    }
}

/// [`sanitize`] for the members of an object at `depth`.
pub(crate) fn sanitize_map(map: &mut Map<String, Json>, depth: usize) -> usize {
    if map.keys().any(|k| k.contains('\0')) {
        let members = std::mem::take(map);
        *map = members.into_iter().map(|(k, v)| (no_nul(k), v)).collect();
    }
    map.iter_mut()
        .map(|(key, value)| key.len() + escapes(key) + 4 + sanitize(value, depth + 1))
        .sum()
}

/// Replaces NUL in a JSON string; returns a bound of its size as JSON text.
fn text_bound(s: &mut String) -> usize {
    if s.contains('\0') {
        *s = s.replace('\0', NUL_MARK);
    }
    s.len() + escapes(s) + 2
}

/// Bytes JSON's escapes add to `s` at most.
fn escapes(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            0..=0x1f => 5,
            b'"' | b'\\' => 1,
            _ => 0,
        })
        .sum()
}

/// The exact size of a value as JSON text.
pub(crate) fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Keys of `data` kept by the reduced form of an entry (all short: they are capped or
/// generated).
const REDUCED_KEEPS: &[&str] = &[
    "request_id",
    "method",
    "path",
    "route",
    "event",
    "status_code",
    "duration_ms",
    "ip",
];

/// The reduced form of an entry: the same request id, time, actor and action, the request
/// line and status in `data`, `data.reduced` saying why, and nothing else (no bodies, headers,
/// claims or message, which is where a refused value would be).
pub(crate) fn reduced(entry: &NewEntry, reason: &str) -> NewEntry {
    let mut data: Map<String, Json> = REDUCED_KEEPS
        .iter()
        .filter_map(|key| Some(((*key).to_owned(), entry.data.get(*key)?.clone())))
        .collect();
    let reason = ascii_reason(reason);
    data.insert("reduced".into(), json!(reason));
    let mut out = NewEntry::new(
        &entry.entity_type,
        entry.object_id.clone(),
        entry.action.clone(),
    );
    out.actor = entry.actor.clone();
    out.tool = entry.tool.clone();
    out.status = entry.status;
    out.created_at = entry.created_at;
    // Not the reason: a database's error text may hold what it refuses again.
    out.message = Some("entry reduced (see data.reduced)".to_owned());
    out.data = data;
    out
}

/// A reason as printable ASCII of at most 300 characters: a database's error message may
/// quote the very value it refused.
pub(crate) fn ascii_reason(reason: &str) -> String {
    let ascii: String = reason
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    cap_chars(&ascii, 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps() {
        assert_eq!(cap_chars("abcdef", 4), "abc…");
        assert_eq!(cap_chars("abcd", 4), "abcd");
        assert_eq!(cap_chars("ééééé", 3).chars().count(), 3);
        assert_eq!(cap_bytes("abcdef", 4), "abcd…[6 bytes]");
        assert_eq!(cap_bytes("éé", 3), "é…[4 bytes]");
        assert_eq!(column("a\0b".into(), 10), "a\u{2400}b");
        assert_eq!(column("x".repeat(200), MAX_ID).chars().count(), MAX_ID);
    }

    #[test]
    fn sanitize_removes_nul_and_depth() {
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!([deep]);
        }
        let mut value = json!({"a\u{0}": "x\u{0}y", "q\"\n": "\"\\\n\u{1}é", "deep": deep});
        let bound = sanitize(&mut value, 0);
        let text = value.to_string();
        assert!(!text.contains("\\u0000"), "{text}");
        assert!(text.contains(crate::TOO_DEEP));
        assert!(bound >= text.len());
        let mut depth = 0;
        let mut v = &value["deep"];
        while let Json::Array(items) = v {
            depth += 1;
            v = &items[0];
        }
        assert!(depth <= MAX_DEPTH);
    }

    #[test]
    fn exact_length() {
        let map = json!({"a": "b\n", "c": [1, null]});
        let Json::Object(map) = map else { panic!() };
        assert_eq!(json_len(&map), Json::Object(map.clone()).to_string().len());
    }
}
