//! Masking sensitive values in request data: JSON bodies (whole or cut short), query strings,
//! headers.

use serde_json::Value as Json;

use crate::diff::FILTERED;

/// Keys masked by default: `password`, `token`, `access` and `refresh` (what Django's activity
/// trackers mask), plus `secret`, `authorization` and `api_key`.
pub const DEFAULT_SENSITIVE_KEYS: &[&str] = &[
    "password",
    "token",
    "access",
    "refresh",
    "secret",
    "authorization",
    "api_key",
];

/// The words of a key, as slices of it: split at non-alphanumerics and camelCase humps, so
/// `newPassword`, `new_password` and `X-New-Password` all hold the words new, password.
fn words(key: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut prev_lower = false;
    for (i, c) in key.char_indices() {
        if !c.is_alphanumeric() {
            if let Some(s) = start.take() {
                out.push(&key[s..i]);
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase()
            && prev_lower
            && let Some(s) = start.replace(i)
        {
            out.push(&key[s..i]);
        }
        start.get_or_insert(i);
        prev_lower = c.is_lowercase() || c.is_numeric();
    }
    if let Some(s) = start {
        out.push(&key[s..]);
    }
    out
}

/// A word of a key against a lowercase word of a sensitive key.
fn word_eq(word: &str, lower: &str) -> bool {
    if word.is_ascii() {
        word.eq_ignore_ascii_case(lower)
    } else {
        word.to_lowercase() == lower
    }
}

/// Sensitive keys, split into lowercase words once (keys are checked for every field of every
/// body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sensitive {
    words: Vec<Vec<String>>,
}

impl Sensitive {
    pub(crate) fn new<S: AsRef<str>>(keys: &[S]) -> Self {
        let words = keys
            .iter()
            .map(|k| words(k.as_ref()).iter().map(|w| w.to_lowercase()).collect())
            .filter(|w: &Vec<String>| !w.is_empty())
            .collect();
        Sensitive { words }
    }

    pub(crate) fn push(&mut self, key: &str) {
        self.words.extend(Sensitive::new(&[key]).words);
    }

    pub(crate) fn matches(&self, key: &str) -> bool {
        let have = words(key);
        self.words.iter().any(|want| {
            have.windows(want.len())
                .any(|w| w.iter().zip(want).all(|(h, w)| word_eq(h, w)))
        })
    }
}

/// Whether `key` is sensitive: one of `sensitive` appears in it as whole words, whatever the
/// case and separators. With `password`: `password`, `newPassword`, `password_confirmation`
/// match; `passwords_policy_url`... does not (`passwords` is another word). With `access`:
/// `access`, `access_token` match, `accessibility` does not.
///
/// ```
/// use sea_orm_audit::web::is_sensitive_key;
/// let keys = ["password", "api_key"];
/// assert!(is_sensitive_key("newPassword", &keys));
/// assert!(is_sensitive_key("X-API-Key", &keys));
/// assert!(!is_sensitive_key("passwordless", &keys));
/// ```
pub fn is_sensitive_key<S: AsRef<str>>(key: &str, sensitive: &[S]) -> bool {
    Sensitive::new(sensitive).matches(key)
}

/// Replaces the value of every sensitive key, at any depth, with `"***FILTERED***"`. A `null`
/// stays `null`: it reveals only that nothing was sent.
///
/// ```
/// use serde_json::json;
/// let mut body = json!({"user": "alice", "auth": {"password": "hunter2"}, "items": [{"token": 7}]});
/// sea_orm_audit::web::mask_json(&mut body, &["password", "token"]);
/// assert_eq!(body, json!({"user": "alice", "auth": {"password": "***FILTERED***"}, "items": [{"token": "***FILTERED***"}]}));
/// ```
pub fn mask_json<S: AsRef<str>>(value: &mut Json, sensitive: &[S]) {
    mask_value(value, &Sensitive::new(sensitive));
}

pub(crate) fn mask_value(value: &mut Json, sensitive: &Sensitive) {
    match value {
        Json::Object(map) => {
            for (key, value) in map.iter_mut() {
                if sensitive.matches(key) {
                    if !value.is_null() {
                        *value = Json::String(FILTERED.to_owned());
                    }
                } else {
                    mask_value(value, sensitive);
                }
            }
        }
        Json::Array(items) => {
            for item in items {
                mask_value(item, sensitive);
            }
        }
        _ => {}
    }
}

/// Masks JSON text that may be cut short or invalid (a body over the size cap): the value of
/// every sensitive key is replaced, the rest is copied. A value cut off by the end of the text
/// is dropped rather than kept in part.
pub(crate) fn mask_json_text(text: &str, sensitive: &Sensitive) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Ctx {
        Object { expect_key: bool },
        Array,
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut stack: Vec<Ctx> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let end = string_end(b, i);
                let literal = &text[i..end];
                out.push_str(literal);
                i = end;
                if let Some(Ctx::Object { expect_key: true }) = stack.last() {
                    let j = skip_ws(b, i);
                    if j < b.len() && b[j] == b':' {
                        out.push_str(&text[i..=j]);
                        i = j + 1;
                        if let Some(Ctx::Object { expect_key }) = stack.last_mut() {
                            *expect_key = false;
                        }
                        let key = serde_json::from_str::<String>(literal)
                            .unwrap_or_else(|_| literal.trim_matches('"').to_owned());
                        if sensitive.matches(&key) {
                            let start = skip_ws(b, i);
                            out.push_str(&text[i..start]);
                            let after = value_end(b, start);
                            if after <= b.len() && text.get(start..after) != Some("null") {
                                out.push('"');
                                out.push_str(FILTERED);
                                out.push('"');
                            } else {
                                out.push_str("null");
                            }
                            i = after;
                        }
                    }
                }
            }
            b'{' => {
                stack.push(Ctx::Object { expect_key: true });
                out.push('{');
                i += 1;
            }
            b'[' => {
                stack.push(Ctx::Array);
                out.push('[');
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                out.push(char::from(b[i]));
                i += 1;
            }
            b',' => {
                if let Some(Ctx::Object { expect_key }) = stack.last_mut() {
                    *expect_key = true;
                }
                out.push(',');
                i += 1;
            }
            _ => {
                // Copy up to the next structural byte; those are ASCII, so this stays on char
                // boundaries.
                let next = b[i..]
                    .iter()
                    .position(|c| matches!(c, b'"' | b'{' | b'[' | b'}' | b']' | b','))
                    .map_or(b.len(), |p| i + p);
                out.push_str(&text[i..next]);
                i = next;
            }
        }
    }
    out
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index after the string literal starting at `start` (or the end of the text).
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The index after the JSON value starting at `start` (or the end of the text).
fn value_end(b: &[u8], start: usize) -> usize {
    match b.get(start) {
        None => start,
        Some(b'"') => string_end(b, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = start;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        Some(_) => {
            let mut i = start;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace()
            {
                i += 1;
            }
            i
        }
    }
}

/// Masks the values of sensitive query parameters in a path with query, keeping the rest of
/// the text as it was sent.
pub(crate) fn mask_query(path_and_query: &str, sensitive: &Sensitive) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (raw_key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = form_urlencoded::parse(raw_key.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            if !value.is_empty() && sensitive.matches(&key) {
                format!("{raw_key}={FILTERED}")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEYS: &[&str] = DEFAULT_SENSITIVE_KEYS;

    fn keys() -> Sensitive {
        Sensitive::new(KEYS)
    }

    #[test]
    fn key_words() {
        assert!(is_sensitive_key("password", KEYS));
        assert!(is_sensitive_key("PASSWORD", KEYS));
        assert!(is_sensitive_key("new_password", KEYS));
        assert!(is_sensitive_key("oldPassword", KEYS));
        assert!(is_sensitive_key("access_token", KEYS));
        assert!(is_sensitive_key("refreshToken", KEYS));
        assert!(is_sensitive_key("X-Auth-Token", KEYS));
        assert!(!is_sensitive_key("accessibility", KEYS));
        assert!(!is_sensitive_key("tokens_used", KEYS));
        assert!(!is_sensitive_key("title", KEYS));
        assert!(!is_sensitive_key("", KEYS));
        assert!(is_sensitive_key("card-number", &["card_number"]));
        assert!(!is_sensitive_key("card", &["card_number"]));
        assert!(is_sensitive_key("ÜberPassword", KEYS));
        assert!(is_sensitive_key("PASSWORD_HASH", KEYS));
        assert!(is_sensitive_key("clé_Secret", KEYS));
        assert!(!is_sensitive_key("x", &["", "-"]));
    }

    #[test]
    fn nested_json() {
        let mut v = json!({
            "username": "alice",
            "password": "hunter2",
            "profile": {"secret": {"deep": 1}, "name": "A", "refresh": null},
            "sessions": [{"access": "abc", "ip": "1.2.3.4"}, "password"],
        });
        mask_json(&mut v, KEYS);
        assert_eq!(
            v,
            json!({
                "username": "alice",
                "password": "***FILTERED***",
                "profile": {"secret": "***FILTERED***", "name": "A", "refresh": null},
                "sessions": [{"access": "***FILTERED***", "ip": "1.2.3.4"}, "password"],
            })
        );
    }

    #[test]
    fn truncated_text() {
        let full = r#"{"user":"a","password":"hunter2","n":[1,{"token":{"x":"}"}}],"note":"ok"}"#;
        let masked = mask_json_text(full, &keys());
        assert_eq!(
            masked,
            r#"{"user":"a","password":"***FILTERED***","n":[1,{"token":"***FILTERED***"}],"note":"ok"}"#
        );
        // The masked text of a complete document is the same document masked.
        let mut parsed: Json = serde_json::from_str(full).unwrap();
        mask_json(&mut parsed, KEYS);
        assert_eq!(serde_json::from_str::<Json>(&masked).unwrap(), parsed);
        // Cut inside a sensitive value: nothing of the value is kept.
        for cut in 1..full.len() {
            let masked = mask_json_text(&full[..cut], &keys());
            assert!(!masked.contains("hunter"), "{cut}: {masked}");
            assert!(!masked.contains("\"x\""), "{cut}: {masked}");
        }
        // Escaped quotes in strings and keys, spaces, null.
        let text = r#"{ "a\"b" : "c\"d", "Password" : null , "secret": 12.5e3 }"#;
        assert_eq!(
            mask_json_text(text, &keys()),
            r#"{ "a\"b" : "c\"d", "Password" : null , "secret": "***FILTERED***" }"#
        );
        // Not JSON at all: copied.
        assert_eq!(mask_json_text("hello ] } ,", &keys()), "hello ] } ,");
        assert_eq!(mask_json_text("ünïcödé\"", &keys()), "ünïcödé\"");
    }

    #[test]
    fn query_strings() {
        assert_eq!(mask_query("/a", &keys()), "/a");
        assert_eq!(
            mask_query("/a?x=1&access_token=abc&y&password=&Token=z", &keys()),
            "/a?x=1&access_token=***FILTERED***&y&password=&Token=***FILTERED***"
        );
        assert_eq!(
            mask_query("/a?pass%77ord=secret", &keys()),
            "/a?pass%77ord=***FILTERED***"
        );
    }
}
