//! Faithful conversion of SeaORM values to JSON.
//!
//! `sea_query::sea_value_to_json_value` quotes timestamps as SQL literals, turns decimals into
//! lossy floats and panics on non-UTF-8 bytes, so the audit layer converts values itself:
//!
//! | SQL value | JSON |
//! |---|---|
//! | NULL of any type | `null` |
//! | integers, booleans | numbers, booleans |
//! | finite floats | numbers; NaN and infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | decimals | strings with every digit (`"12.50"`) |
//! | text, enums (string-valued), chars | strings |
//! | bytes | base64 strings (standard alphabet, padded) |
//! | JSON | the JSON itself (nested deeper than [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH): the string [`TOO_DEEP`](crate::TOO_DEEP)) |
//! | UUID | hyphenated lowercase string |
//! | date / time / naive datetime | ISO 8601 (`2025-01-02`, `03:04:05.123`, `2025-01-02T03:04:05`) |
//! | datetime with zone | RFC 3339 with its offset (`2025-01-02T03:04:05+00:00`) |

use base64::Engine as _;
use sea_orm::Value;
use serde_json::{Number, Value as Json};

/// Converts one SeaORM value to JSON without loss and without panicking.
pub fn to_json(value: &Value) -> Json {
    #[allow(unreachable_patterns)]
    match value {
        Value::Bool(v) => opt(v, |v| Json::Bool(*v)),
        Value::TinyInt(v) => opt(v, |v| Json::from(*v)),
        Value::SmallInt(v) => opt(v, |v| Json::from(*v)),
        Value::Int(v) => opt(v, |v| Json::from(*v)),
        Value::BigInt(v) => opt(v, |v| Json::from(*v)),
        Value::TinyUnsigned(v) => opt(v, |v| Json::from(*v)),
        Value::SmallUnsigned(v) => opt(v, |v| Json::from(*v)),
        Value::Unsigned(v) => opt(v, |v| Json::from(*v)),
        Value::BigUnsigned(v) => opt(v, |v| Json::from(*v)),
        Value::Float(v) => opt(v, |v| float(f64::from(*v))),
        Value::Double(v) => opt(v, |v| float(*v)),
        Value::String(v) => opt(v, |v| Json::String(v.clone())),
        Value::Char(v) => opt(v, |v| Json::String(v.to_string())),
        Value::Enum(v) => match v {
            sea_orm::sea_query::OptionEnum::Some(e) => Json::String(e.value.to_string()),
            sea_orm::sea_query::OptionEnum::None(_) => Json::Null,
        },
        Value::Bytes(v) => opt(v, |v| {
            Json::String(base64::engine::general_purpose::STANDARD.encode(v))
        }),
        // Bounded: a value nested too deep to read back is recorded as a marker.
        Value::Json(v) => opt(v, |v| crate::limits::bounded(v)),
        Value::ChronoDate(v) => opt(v, |v| Json::String(v.format("%Y-%m-%d").to_string())),
        Value::ChronoTime(v) => opt(v, |v| Json::String(v.format("%H:%M:%S%.f").to_string())),
        Value::ChronoDateTime(v) => opt(v, |v| {
            Json::String(v.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
        }),
        Value::ChronoDateTimeUtc(v) => opt(v, |v| Json::String(v.to_rfc3339())),
        Value::ChronoDateTimeLocal(v) => opt(v, |v| Json::String(v.to_rfc3339())),
        Value::ChronoDateTimeWithTimeZone(v) => opt(v, |v| Json::String(v.to_rfc3339())),
        Value::TimeDate(v) => opt(v, |v| Json::String(v.to_string())),
        Value::TimeTime(v) => opt(v, |v| Json::String(v.to_string())),
        Value::TimeDateTime(v) => opt(v, |v| {
            let (date, time) = (v.date(), v.time());
            Json::String(format!("{date}T{time}"))
        }),
        Value::TimeDateTimeWithTimeZone(v) => opt(v, |v| {
            match v.format(&time::format_description::well_known::Rfc3339) {
                Ok(s) => Json::String(s),
                Err(_) => Json::String(v.to_string()),
            }
        }),
        Value::Uuid(v) => opt(v, |v| Json::String(v.hyphenated().to_string())),
        Value::Decimal(v) => opt(v, |v| Json::String(v.to_string())),
        // Variants that exist only when the application enables more sea-query features
        // (arrays, jiff, bigdecimal, network types...). Their Display is the value's own text.
        other => fallback(other),
    }
}

fn opt<T>(v: &Option<T>, f: impl FnOnce(&T) -> Json) -> Json {
    v.as_ref().map_or(Json::Null, f)
}

fn float(v: f64) -> Json {
    match Number::from_f64(v) {
        Some(n) => Json::Number(n),
        None if v.is_nan() => Json::String("NaN".into()),
        None if v > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

fn fallback(value: &Value) -> Json {
    // `to_string` renders SQL literal syntax; strip the quotes it adds around text.
    let text = value.to_string();
    let trimmed = text
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .map(|s| s.replace("''", "'"))
        .unwrap_or(text);
    Json::String(trimmed)
}

/// The SeaORM values a stored JSON value may stand for, most likely first: [`to_json`] in
/// reverse. The caller tries them with `ActiveModelTrait::try_set`, which accepts only the
/// variant of the field's Rust type, so no column type table is needed.
pub(crate) fn candidates(json: &Json) -> Vec<Value> {
    match json {
        Json::Null => null_values(),
        Json::Bool(b) => vec![Value::Bool(Some(*b))],
        Json::Number(n) => {
            let mut out = Vec::new();
            if let Some(i) = n.as_i64() {
                out.push(Value::BigInt(Some(i)));
                if let Ok(v) = i32::try_from(i) {
                    out.push(Value::Int(Some(v)));
                }
                if let Ok(v) = i16::try_from(i) {
                    out.push(Value::SmallInt(Some(v)));
                }
                if let Ok(v) = i8::try_from(i) {
                    out.push(Value::TinyInt(Some(v)));
                }
            }
            if let Some(u) = n.as_u64() {
                out.push(Value::BigUnsigned(Some(u)));
                if let Ok(v) = u32::try_from(u) {
                    out.push(Value::Unsigned(Some(v)));
                }
                if let Ok(v) = u16::try_from(u) {
                    out.push(Value::SmallUnsigned(Some(v)));
                }
                if let Ok(v) = u8::try_from(u) {
                    out.push(Value::TinyUnsigned(Some(v)));
                }
            }
            if let Some(f) = n.as_f64() {
                out.push(Value::Double(Some(f)));
                #[allow(clippy::cast_possible_truncation)]
                out.push(Value::Float(Some(f as f32)));
            }
            out.push(Value::Json(Some(Box::new(json.clone()))));
            out
        }
        Json::String(s) => string_candidates(s, json),
        Json::Array(_) | Json::Object(_) => vec![Value::Json(Some(Box::new(json.clone())))],
    }
}

fn string_candidates(s: &str, json: &Json) -> Vec<Value> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
    let mut out = vec![Value::String(Some(s.to_owned()))];
    let mut chars = s.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        out.push(Value::Char(Some(c)));
    }
    if let Ok(u) = s.parse::<uuid::Uuid>() {
        out.push(Value::Uuid(Some(u)));
    }
    if let Ok(d) = s.parse::<rust_decimal::Decimal>() {
        out.push(Value::Decimal(Some(d)));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        out.push(Value::ChronoDateTimeUtc(Some(
            t.with_timezone(&chrono::Utc),
        )));
        out.push(Value::ChronoDateTimeWithTimeZone(Some(t)));
        out.push(Value::ChronoDateTimeLocal(Some(
            t.with_timezone(&chrono::Local),
        )));
        if let Ok(o) =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        {
            out.push(Value::TimeDateTimeWithTimeZone(Some(o)));
        }
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        out.push(Value::ChronoDateTime(Some(t)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        out.push(Value::ChronoDate(Some(d)));
    }
    if let Ok(t) = NaiveTime::parse_from_str(s, "%H:%M:%S%.f") {
        out.push(Value::ChronoTime(Some(t)));
    }
    let special = match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    };
    if let Some(f) = special {
        out.push(Value::Double(Some(f)));
        #[allow(clippy::cast_possible_truncation)]
        out.push(Value::Float(Some(f as f32)));
    }
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s) {
        out.push(Value::Bytes(Some(bytes)));
    }
    out.push(Value::Json(Some(Box::new(json.clone()))));
    out
}

/// NULL of every type: an `Option<T>` field accepts only its own type's NULL.
fn null_values() -> Vec<Value> {
    vec![
        Value::String(None),
        Value::Int(None),
        Value::BigInt(None),
        Value::SmallInt(None),
        Value::TinyInt(None),
        Value::Unsigned(None),
        Value::BigUnsigned(None),
        Value::SmallUnsigned(None),
        Value::TinyUnsigned(None),
        Value::Bool(None),
        Value::Double(None),
        Value::Float(None),
        Value::Decimal(None),
        Value::Uuid(None),
        Value::Json(None),
        Value::Bytes(None),
        Value::Char(None),
        Value::ChronoDate(None),
        Value::ChronoTime(None),
        Value::ChronoDateTime(None),
        Value::ChronoDateTimeUtc(None),
        Value::ChronoDateTimeLocal(None),
        Value::ChronoDateTimeWithTimeZone(None),
        Value::TimeDate(None),
        Value::TimeTime(None),
        Value::TimeDateTime(None),
        Value::TimeDateTimeWithTimeZone(None),
    ]
}

/// Renders a JSON scalar as the plain text used in canonical object ids.
pub(crate) fn json_to_key_text(json: &Json) -> String {
    match json {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::prelude::*;

    #[test]
    fn converts_edge_values_without_loss_or_panic() {
        assert_eq!(to_json(&Value::Int(None)), Json::Null);
        assert_eq!(to_json(&Value::Double(Some(f64::NAN))), Json::from("NaN"));
        assert_eq!(
            to_json(&Value::Float(Some(f32::NEG_INFINITY))),
            Json::from("-Infinity")
        );
        assert_eq!(
            to_json(&Value::Bytes(Some(vec![0xff, 0x00, 0xfe]))),
            Json::from("/wD+")
        );
        let dec: Decimal = "1234567890123456789.123456789".parse().unwrap();
        assert_eq!(
            to_json(&Value::Decimal(Some(dec))),
            Json::from("1234567890123456789.123456789")
        );
        let ts = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05.5+02:00").unwrap();
        assert_eq!(
            to_json(&Value::ChronoDateTimeWithTimeZone(Some(ts))),
            Json::from("2025-01-02T03:04:05.500+02:00")
        );
        let utc = ts.with_timezone(&chrono::Utc);
        assert_eq!(
            to_json(&Value::ChronoDateTimeUtc(Some(utc))),
            Json::from("2025-01-02T01:04:05.500+00:00")
        );
        let naive = ts.naive_utc();
        assert_eq!(
            to_json(&Value::ChronoDateTime(Some(naive))),
            Json::from("2025-01-02T01:04:05.500")
        );
        assert_eq!(
            to_json(&Value::Json(Some(Box::new(
                serde_json::json!({"a": [1, 2]})
            )))),
            serde_json::json!({"a": [1, 2]})
        );
    }
}
