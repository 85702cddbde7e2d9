//! The hash format of the chain (see the module docs of `chain`): the canonical content of an
//! entry, its digest, and the link to the previous entry.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::audit_log;

/// The `hash` a SQLite or MySQL capture trigger writes: the entry waits for `capture_db::seal`.
pub(crate) const UNSEALED: &str = "unsealed";

/// The fields an entry's hash covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Content<'a> {
    pub(crate) entity_type: &'a str,
    pub(crate) object_id: &'a str,
    pub(crate) action: &'a str,
    pub(crate) actor: Option<&'a str>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) changes: Option<&'a Json>,
    pub(crate) tool: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    pub(crate) status: &'a str,
    pub(crate) data: Option<&'a Json>,
}

impl<'a> Content<'a> {
    pub(crate) fn of(row: &'a audit_log::Model) -> Self {
        Content {
            entity_type: &row.entity_type,
            object_id: &row.object_id,
            action: &row.action,
            actor: row.actor.as_deref(),
            created_at: row.created_at,
            changes: row.changes.as_ref(),
            tool: row.tool.as_deref(),
            message: row.message.as_deref(),
            status: &row.status,
            data: row.data.as_ref(),
        }
    }
}

/// Timestamps are stored with microsecond precision on every backend; hash what is stored.
pub(crate) fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = at.timestamp_subsec_nanos();
    at - chrono::Duration::nanoseconds(i64::from(nanos % 1000))
}

/// The entry hash (see the module docs): [`link_hash`] of the content's [`content_digest`].
/// The one function every Rust path (writes, `verify`) hashes entries with.
pub(crate) fn entry_hash(c: &Content<'_>, prev: Option<&str>) -> String {
    link_hash(&content_digest(c), prev)
}

/// First level: hex SHA-256 of the canonical content text.
///
/// Runs once per entry written and per entry verified, on the write path of every audited
/// save, so it writes the text straight into one byte buffer: no intermediate `String`s per
/// field, no `strftime` parsing.
pub(crate) fn content_digest(c: &Content<'_>) -> String {
    let mut text = Vec::with_capacity(512);
    text.push(b'[');
    for (i, s) in [
        Some(c.entity_type),
        Some(c.object_id),
        Some(c.action),
        c.actor,
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            text.push(b',');
        }
        opt_str(&mut text, *s);
    }
    text.push(b',');
    write_timestamp(&mut text, truncate_to_micros(c.created_at));
    text.push(b',');
    opt_json(&mut text, c.changes);
    for s in [c.tool, c.message, Some(c.status)] {
        text.push(b',');
        opt_str(&mut text, s);
    }
    text.push(b',');
    opt_json(&mut text, c.data);
    text.push(b']');
    sha256_hex(&text)
}

/// `created_at` as a JSON string, `"%Y-%m-%dT%H:%M:%S%.6fZ"` in chrono's terms.
fn write_timestamp(out: &mut Vec<u8>, at: DateTime<Utc>) {
    let year = at.year();
    let nanos = at.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Signed years and leap seconds: rare enough to leave to chrono's formatter.
        write_str(out, &at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        return;
    }
    out.push(b'"');
    push_digits(out, year.unsigned_abs(), 4);
    for (sep, value) in [(b'-', at.month()), (b'-', at.day()), (b'T', at.hour())] {
        out.push(sep);
        push_digits(out, value, 2);
    }
    for (sep, value) in [(b':', at.minute()), (b':', at.second())] {
        out.push(sep);
        push_digits(out, value, 2);
    }
    out.push(b'.');
    push_digits(out, nanos / 1000, 6);
    out.extend_from_slice(b"Z\"");
}

/// `value` in decimal, zero-padded to `width` digits (`value` has at most `width` digits).
fn push_digits(out: &mut Vec<u8>, value: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        // `value / div % 10` is a single decimal digit, so the cast cannot truncate.
        out.push(b'0' + (value / div % 10) as u8);
        div /= 10;
    }
}

/// The text the second level starts with: the digest and the separator. PostgreSQL's
/// [`POSTGRES_LINK_HASH`] takes it as one bound parameter, so no SQL string literal has to spell
/// a newline (escape syntax differs between databases and settings).
pub(crate) fn link_prefix(digest: &str) -> String {
    let mut text = String::with_capacity(digest.len() + 1 + 64);
    text.push_str(digest);
    text.push('\n');
    text
}

/// Second level: hex SHA-256 of `digest + "\n" + prev` (`prev` empty for the first entry of a
/// segment). [`POSTGRES_LINK_HASH`] computes the same in SQL.
pub(crate) fn link_hash(digest: &str, prev: Option<&str>) -> String {
    let mut text = link_prefix(digest);
    text.push_str(prev.unwrap_or(""));
    sha256_hex(text.as_bytes())
}

/// [`link_hash`] in PostgreSQL 11+ SQL, over `{prefix}` (a parameter bound to [`link_prefix`])
/// and `{prev}` (the previous hash, NULL for none). The text hashed is ASCII (hex digits and a
/// newline), so the encoding cannot change its bytes; `encode(.., 'hex')` is lowercase, like
/// [`sha256_hex`]. SQLite has no SHA-256 function, and MySQL reads the head with the
/// before-image (see `capture`), so neither needs one.
pub(crate) const POSTGRES_LINK_HASH: &str =
    "encode(sha256(convert_to({prefix} || coalesce({prev}, ''), 'UTF8')), 'hex')";

fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_json(out: &mut Vec<u8>, v: Option<&Json>) {
    match v {
        Some(v) => canonical(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string, escaped as serde_json escapes it (the same input always gives the same text).
fn write_str(out: &mut Vec<u8>, s: &str) {
    write_json(out, &s);
}

/// Appends serde_json's compact text of `value`: what `Json`'s `Display` prints.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Cannot fail: strings, numbers, booleans and null always serialize, and writing to a `Vec`
    // never errs (`Json`'s `Display`, used here before, relies on the same).
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Canonical JSON: object keys sorted at every depth, numbers as serde_json prints the parsed
/// value, negative zero as zero (PostgreSQL's jsonb has no negative zero).
fn canonical(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                canonical(out, v);
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(out, item);
            }
            out.push(b']');
        }
        Json::Number(n) if n.is_f64() => match n.as_f64() {
            Some(0.0) => out.extend_from_slice(b"0.0"),
            Some(x) => write_float(out, x),
            None => write_json(out, v),
        },
        other => write_json(out, other),
    }
}

/// A float as the log hands it back on every backend. serde_json prints a float of 1e16 or
/// more with an exponent (`4.115226350636237e16`); PostgreSQL's jsonb stores that number as a
/// decimal and returns it in digits (`41152263506362370`), which read back as an integer where
/// one fits. Such a float is written in those digits, so that the hash computed before the
/// write and the one `verify` computes from the stored row agree. Digits beyond the integer
/// range read back as the same float, which keeps serde_json's text.
fn write_float(out: &mut Vec<u8>, x: f64) {
    let text = serde_json::to_string(&x).unwrap_or_default();
    if let Some(digits) = exponent_in_digits(&text) {
        let fits = if digits.starts_with('-') {
            digits.parse::<i64>().is_ok()
        } else {
            digits.parse::<u64>().is_ok()
        };
        if fits {
            return out.extend_from_slice(digits.as_bytes());
        }
    }
    out.extend_from_slice(text.as_bytes());
}

/// `4.2e+16` as `42000000000000000`, for a positive exponent that leaves no fraction.
fn exponent_in_digits(text: &str) -> Option<String> {
    let (mantissa, exponent) = text.split_once('e')?;
    let exponent: usize = exponent.trim_start_matches('+').parse().ok()?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let zeros = exponent.checked_sub(fraction.len())?;
    Some(format!("{whole}{fraction}{}", "0".repeat(zeros)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the chain format (see the module docs) to values computed outside this crate
    /// (Python's hashlib), so a change to the canonical text or the second level shows here.
    #[test]
    fn the_hash_format_is_stable() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05.123456789Z".parse().unwrap();
        let changes = serde_json::json!({"b": 1, "a": [-0.0]});
        let content = Content {
            entity_type: "post",
            object_id: "7",
            action: "update",
            actor: Some("alice"),
            created_at: at,
            changes: Some(&changes),
            tool: None,
            message: Some("hi \"x\"\n"),
            status: "success",
            data: None,
        };
        // sha256 of ["post","7","update","alice","2026-01-02T03:04:05.123456Z",
        // {"a":[0.0],"b":1},null,"hi \"x\"\n","success",null]
        let digest = "97de1ad42b7d70be2ec51b7560a7b422b621a2b37a5edec6d7c9c9a78b59cae3";
        assert_eq!(content_digest(&content), digest);
        let prev = "ab".repeat(32);
        // sha256 of digest + "\n" (+ prev)
        assert_eq!(
            entry_hash(&content, None),
            "b13854dd73407726606dff23be1e6206d322afcbbac451fcac15fe9fb3caeebe"
        );
        assert_eq!(
            entry_hash(&content, Some(&prev)),
            "7d44321a7fe92c286f34d3b6f88b07697bfe4271f2b642b9f12bd6327326ed17"
        );
        assert_eq!(
            entry_hash(&content, Some(&prev)),
            link_hash(digest, Some(&prev))
        );

        // Escapes, non-ASCII text, nested keys, floats, big integers, data.
        let changes = serde_json::json!({
            "b": 1,
            "c": {"z": [2.5e-8, 1e300, -12, u64::MAX], "y": "é🦀"},
            "a": [-0.0],
        });
        let data = serde_json::json!({"n": null, "k": true});
        let content = Content {
            changes: Some(&changes),
            message: Some("hi \"x\"\n\u{1f}\\"),
            data: Some(&data),
            ..content
        };
        // sha256 of ["post","7","update","alice","2026-01-02T03:04:05.123456Z",{"a":[0.0],"b":1,
        // "c":{"y":"é🦀","z":[2.5e-8,1e+300,-12,18446744073709551615]}},null,
        // "hi \"x\"\n\u001f\\","success",{"k":true,"n":null}]
        assert_eq!(
            content_digest(&content),
            "9a9f3e30644201cc67c74755b1a264eab3e7f8fd98d05c268399026eb8c69616"
        );
    }

    /// A float's canonical text is the text of the value the database hands back: PostgreSQL
    /// returns whole floats of 1e16 and more in digits, read back as integers where they fit.
    #[test]
    fn whole_floats_hash_as_the_digits_postgres_returns() {
        let text = |v: &Json| {
            let mut out = Vec::new();
            canonical(&mut out, v);
            String::from_utf8(out).unwrap()
        };
        for x in [
            f64::from(4.115_226_3e16_f32),
            1e16,
            -1e16,
            1.5e16,
            123_456_789_012_345_680.0,
            9.2e18,
            -9.2e18,
            1.8e19,
            1e20,
            -1e19,
            f64::MAX,
            9_999_999_999_999_998.0,
            2.0,
            -2.5,
            1e300,
        ] {
            let float = serde_json::json!(x);
            // What jsonb hands back: an exponent spelled out in digits, other text as written.
            let written = float.to_string();
            let digits = exponent_in_digits(&written).unwrap_or(written);
            let back: Json = serde_json::from_str(&digits).unwrap();
            assert_eq!(text(&float), text(&back), "{x}");
        }
        assert_eq!(text(&serde_json::json!(1e16)), "10000000000000000");
        // jsonb's digits, not the float's exact binary value (41152263506362368).
        let widened = f64::from(4.115_226_3e16_f32);
        assert_eq!(text(&serde_json::json!(widened)), "41152263506362370");
        assert_eq!(text(&serde_json::json!(2.0)), "2.0");
        assert_eq!(text(&serde_json::json!(1e20)), "1e+20");
    }

    #[test]
    fn timestamps_are_written_as_chrono_formats_them() {
        let cases = [
            "2026-01-02T03:04:05.123456Z",
            "2026-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "0000-01-01T00:00:00.000001Z",
            "0999-07-08T09:10:11.5Z",
            "9999-12-31T23:59:59.999999Z",
            "+10000-01-01T00:00:00Z",
            "-0001-01-01T00:00:00Z",
        ];
        for case in cases {
            let at: DateTime<Utc> = case.parse().unwrap();
            let mut fast = Vec::new();
            write_timestamp(&mut fast, at);
            let mut chrono = Vec::new();
            write_str(
                &mut chrono,
                &at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            );
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(chrono).unwrap()
            );
        }
    }
}
