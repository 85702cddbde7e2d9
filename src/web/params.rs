//! Query parameters of the history API: parsed strictly, never spliced into SQL.

use chrono::{DateTime, Utc};

use crate::{Action, DEFAULT_PAGE, History, MAX_PAGE, Status};

/// A rejected parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadParam {
    pub(crate) parameter: String,
    pub(crate) message: String,
}

fn bad(parameter: &str, message: impl Into<String>) -> BadParam {
    BadParam {
        parameter: parameter.to_owned(),
        message: message.into(),
    }
}

/// The filters of every listing.
pub(crate) const FILTERS: &[&str] = &[
    "entity_type",
    "object_id",
    "actor",
    "tool",
    "action",
    "status",
    "created_after",
    "created_before",
    "limit",
    "offset",
    "cursor",
];

/// Longest text filter (the width of the indexed columns).
const MAX_TEXT: usize = 191;

/// A parsed query: the history query, and the parameters to repeat in the `next` link.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) history: History,
    /// Filters as given (not the page position), for the next link.
    pub(crate) keep: Vec<(String, String)>,
    /// The page size, clamped.
    pub(crate) limit: u64,
}

/// Parses `query`, accepting only `allowed` parameters, each at most once.
pub(crate) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Parsed, BadParam> {
    let mut history = History::new();
    let mut limit = DEFAULT_PAGE;
    let mut keep = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut entity_type = None;
    let mut object_id = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let key = key.into_owned();
        if !allowed.contains(&key.as_str()) {
            let shown: String = key.chars().take(64).collect();
            return Err(bad(
                &shown,
                format!("unknown parameter; accepted: {}", allowed.join(", ")),
            ));
        }
        if seen.contains(&key) {
            return Err(bad(&key, "given more than once"));
        }
        seen.push(key.clone());
        let value = value.into_owned();
        if value.is_empty() {
            return Err(bad(&key, "must not be empty"));
        }
        if value.contains('\0') {
            // PostgreSQL refuses NUL in text; no stored value holds one.
            return Err(bad(&key, "must not contain NUL characters"));
        }
        match key.as_str() {
            "limit" => {
                limit = number(&key, &value)?.clamp(1, MAX_PAGE);
                history = history.limit(limit);
            }
            "offset" => {
                // SQLite and PostgreSQL take a signed 64-bit OFFSET.
                let offset = number(&key, &value)?;
                if i64::try_from(offset).is_err() {
                    return Err(bad(&key, "out of range"));
                }
                history = history.offset(offset);
            }
            "cursor" => {
                let cursor =
                    i64::try_from(number(&key, &value)?).map_err(|_| bad(&key, "out of range"))?;
                history = history.before(cursor);
            }
            _ => {
                history = filter(history, &key, &value, &mut entity_type, &mut object_id)?;
                keep.push((key, value));
            }
        }
    }
    match (entity_type, object_id) {
        (Some(t), Some(id)) => history = history.object(t, id),
        (Some(t), None) => history = history.entity_type(t),
        (None, Some(_)) => {
            return Err(bad("object_id", "needs entity_type as well"));
        }
        (None, None) => {}
    }
    Ok(Parsed {
        history,
        keep,
        limit,
    })
}

fn filter(
    history: History,
    key: &str,
    value: &str,
    entity_type: &mut Option<String>,
    object_id: &mut Option<String>,
) -> Result<History, BadParam> {
    if value.chars().count() > MAX_TEXT {
        return Err(bad(key, format!("longer than {MAX_TEXT} characters")));
    }
    Ok(match key {
        "entity_type" => {
            *entity_type = Some(value.to_owned());
            history
        }
        "object_id" => {
            *object_id = Some(value.to_owned());
            history
        }
        "actor" => history.actor(value),
        "tool" => history.tool(value),
        "action" => history.action(Action::from(value)),
        "status" => history.status(match value {
            "success" => Status::Success,
            "failed" => Status::Failed,
            _ => return Err(bad(key, "must be success or failed")),
        }),
        "created_after" => history.created_after(timestamp(key, value)?),
        "created_before" => history.created_before(timestamp(key, value)?),
        _ => return Err(bad(key, "unknown parameter")),
    })
}

/// Checks a value given in the path (`/{entity_type}/{object_id}/log`) as a filter would be.
pub(crate) fn path_value(key: &str, value: &str) -> Result<(), BadParam> {
    if value.contains('\0') {
        return Err(bad(key, "must not contain NUL characters"));
    }
    if value.chars().count() > MAX_TEXT {
        return Err(bad(key, format!("longer than {MAX_TEXT} characters")));
    }
    Ok(())
}

fn number(key: &str, value: &str) -> Result<u64, BadParam> {
    value
        .parse::<u64>()
        .map_err(|_| bad(key, "must be a non-negative integer"))
}

fn timestamp(key: &str, value: &str) -> Result<DateTime<Utc>, BadParam> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            bad(
                key,
                "must be an RFC 3339 timestamp such as 2026-11-25T10:00:00Z",
            )
        })
}

/// The query string of the page after `cursor`: the same filters and limit.
pub(crate) fn next_query(keep: &[(String, String)], limit: u64, cursor: i64) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in keep {
        query.append_pair(k, v);
    }
    query.append_pair("limit", &limit.to_string());
    query.append_pair("cursor", &cursor.to_string());
    query.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(query: &str) -> BadParam {
        parse(Some(query), FILTERS).unwrap_err()
    }

    #[test]
    fn strict_parameters() {
        assert_eq!(err("actr=bob").parameter, "actr");
        assert_eq!(err("limit=ten").parameter, "limit");
        assert_eq!(err("limit=-1").parameter, "limit");
        assert_eq!(err("offset=1.5").parameter, "offset");
        assert_eq!(err("cursor=99999999999999999999").parameter, "cursor");
        assert_eq!(err("offset=18446744073709551615").parameter, "offset");
        assert_eq!(err("offset=9223372036854775808").parameter, "offset");
        assert!(parse(Some("offset=9223372036854775807"), FILTERS).is_ok());
        assert_eq!(err("actor=a%00b").parameter, "actor");
        assert_eq!(err("created_after=%00").parameter, "created_after");
        assert_eq!(err("status=ok").parameter, "status");
        assert_eq!(err("created_after=yesterday").parameter, "created_after");
        assert_eq!(err("actor=a&actor=b").parameter, "actor");
        assert_eq!(err("actor=").parameter, "actor");
        assert_eq!(err("object_id=1").parameter, "object_id");
        assert_eq!(err(&format!("tool={}", "x".repeat(192))).parameter, "tool");
        assert!(parse(Some("actor=bob"), &["limit"]).is_err());
    }

    #[test]
    fn filters_and_next() {
        let parsed = parse(
            Some("entity_type=post&object_id=%5B7%2C%22en%22%5D&action=update&limit=5000&created_after=2026-01-01T00:00:00%2B01:00"),
            FILTERS,
        )
        .unwrap();
        assert_eq!(
            parsed.history,
            History::new()
                .object("post", "[7,\"en\"]")
                .action(Action::Update)
                .limit(MAX_PAGE)
                .created_after("2025-12-31T23:00:00Z".parse().unwrap())
        );
        assert_eq!(
            next_query(&parsed.keep, 1000, 42),
            "entity_type=post&object_id=%5B7%2C%22en%22%5D&action=update&created_after=2026-01-01T00%3A00%3A00%2B01%3A00&limit=1000&cursor=42"
        );
        assert_eq!(parse(None, FILTERS).unwrap().history, History::new());
        assert_eq!(
            parse(Some("limit=0"), FILTERS).unwrap().history,
            History::new().limit(1)
        );
    }
}
