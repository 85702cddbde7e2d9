//! A log entry as the library reads it back: what it records ([`Action`], [`Status`]) and the
//! decoded row ([`LogEntry`]).

use std::fmt;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, QuerySelect, QueryTrait};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::audit_log;
use crate::diff::Changes;
use crate::error::{Error, Result};

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
#[non_exhaustive]
pub enum Action {
    /// An object was inserted.
    Create,
    /// An object or resource was read.
    Read,
    /// An object was updated.
    Update,
    /// An object was deleted.
    Delete,
    /// A user logged in.
    Login,
    /// A user logged out.
    Logout,
    /// A login attempt failed.
    LoginFailed,
    /// Any other action, by name.
    Custom(String),
}

impl Action {
    /// The name stored in `audit_log.action`.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Login => "login",
            Action::Logout => "logout",
            Action::LoginFailed => "login_failed",
            Action::Custom(name) => name,
        }
    }
}

impl From<String> for Action {
    fn from(s: String) -> Self {
        match s.as_str() {
            "create" => Action::Create,
            "read" => Action::Read,
            "update" => Action::Update,
            "delete" => Action::Delete,
            "login" => Action::Login,
            "logout" => Action::Logout,
            "login_failed" => Action::LoginFailed,
            _ => Action::Custom(s),
        }
    }
}

impl From<&str> for Action {
    fn from(s: &str) -> Self {
        Action::from(s.to_owned())
    }
}

impl From<Action> for String {
    fn from(a: Action) -> Self {
        a.as_str().to_owned()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the recorded action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// It succeeded (every captured write).
    Success,
    /// It failed (a failed login, a rejected request).
    Failed,
}

impl Status {
    /// The name stored in `audit_log.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failed => "failed",
        }
    }
}

/// One entry of the audit log, decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogEntry {
    /// Row id; larger is newer.
    pub id: i64,
    /// The entity type the entry is about.
    pub entity_type: String,
    /// The object's canonical id.
    pub object_id: String,
    /// What happened.
    pub action: Action,
    /// Who did it, if known.
    pub actor: Option<String>,
    /// When (UTC).
    pub created_at: DateTime<Utc>,
    /// The diff, for writes.
    pub changes: Option<Changes>,
    /// The category of work.
    pub tool: Option<String>,
    /// A human-readable message.
    pub message: Option<String>,
    /// Success or failure.
    pub status: Status,
    /// Context and request data.
    pub data: Map<String, Json>,
}

/// The columns a [`LogEntry`] is made of: everything but the chain hashes, which readers of
/// history do not need (two 64-character strings per row saved on every page).
#[derive(Debug, sea_orm::FromQueryResult)]
struct EntryRow {
    id: i64,
    entity_type: String,
    object_id: String,
    action: String,
    actor: Option<String>,
    created_at: DateTime<Utc>,
    changes: Option<Json>,
    tool: Option<String>,
    message: Option<String>,
    status: String,
    data: Option<Json>,
}

pub(crate) const ENTRY_COLUMNS: [audit_log::Column; 11] = [
    audit_log::Column::Id,
    audit_log::Column::EntityType,
    audit_log::Column::ObjectId,
    audit_log::Column::Action,
    audit_log::Column::Actor,
    audit_log::Column::CreatedAt,
    audit_log::Column::Changes,
    audit_log::Column::Tool,
    audit_log::Column::Message,
    audit_log::Column::Status,
    audit_log::Column::Data,
];

/// Reads entries: only the columns a [`LogEntry`] holds. A row that cannot be read fails
/// the read, naming it.
pub(crate) async fn entries<C: ConnectionTrait>(
    db: &C,
    select: sea_orm::Select<audit_log::Entity>,
) -> std::result::Result<Vec<LogEntry>, sea_orm::DbErr> {
    let statement = select
        .select_only()
        .columns(ENTRY_COLUMNS)
        .build(db.get_database_backend());
    let rows = db.query_all_raw(statement).await?;
    Ok(rows.iter().map(read_entry).collect::<Result<Vec<_>>>()?)
}

/// One entry from a row holding [`ENTRY_COLUMNS`].
pub(crate) fn read_entry(row: &sea_orm::QueryResult) -> Result<LogEntry> {
    audit_log::read_row::<EntryRow>(row).and_then(LogEntry::try_from)
}

impl TryFrom<audit_log::Model> for LogEntry {
    type Error = Error;

    fn try_from(row: audit_log::Model) -> Result<Self> {
        LogEntry::try_from(EntryRow {
            id: row.id,
            entity_type: row.entity_type,
            object_id: row.object_id,
            action: row.action,
            actor: row.actor,
            created_at: row.created_at,
            changes: row.changes,
            tool: row.tool,
            message: row.message,
            status: row.status,
            data: row.data,
        })
    }
}

impl TryFrom<EntryRow> for LogEntry {
    type Error = Error;

    fn try_from(row: EntryRow) -> Result<Self> {
        let changes = match row.changes {
            None | Some(Json::Null) => None,
            Some(json) => Some(changes_of(row.id, json)?),
        };
        let status = match row.status.as_str() {
            "success" => Status::Success,
            "failed" => Status::Failed,
            other => {
                return Err(Error::Corrupt {
                    id: row.id,
                    reason: format!("unknown status {other:?}"),
                });
            }
        };
        let data = match row.data {
            None | Some(Json::Null) => Map::new(),
            Some(Json::Object(map)) => map,
            Some(_) => {
                return Err(Error::Corrupt {
                    id: row.id,
                    reason: "data is not a JSON object".into(),
                });
            }
        };
        Ok(LogEntry {
            id: row.id,
            entity_type: row.entity_type,
            object_id: row.object_id,
            action: Action::from(row.action),
            actor: row.actor,
            created_at: row.created_at,
            changes,
            tool: row.tool,
            message: row.message,
            status,
            data,
        })
    }
}

/// The diff schema of a stored row, moving its two maps out of the decoded JSON (a history page
/// decodes 50 of them; `serde_json::from_value` would rebuild every map).
fn changes_of(id: i64, json: Json) -> Result<Changes> {
    let corrupt = |what: &str| Error::Corrupt {
        id,
        reason: format!("changes is not a diff schema: {what}"),
    };
    let Json::Object(mut map) = json else {
        return Err(corrupt("not a JSON object"));
    };
    let mut side = |key: &str| match map.remove(key) {
        Some(Json::Object(values)) => Ok(values),
        Some(_) => Err(corrupt(&format!("{key} is not an object"))),
        None => Err(corrupt(&format!("no {key}"))),
    };
    Ok(Changes {
        old_value: side("old_value")?,
        new_value: side("new_value")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_diffs_decode_or_report_the_row() {
        let changes =
            changes_of(7, json!({"old_value": {"a": 1}, "new_value": {"a": [2]}})).unwrap();
        assert_eq!(changes.old_value["a"], 1);
        assert_eq!(changes.new_value["a"], json!([2]));
        for bad in [
            json!([]),
            json!({"old_value": {}}),
            json!({"old_value": {}, "new_value": 3}),
        ] {
            match changes_of(7, bad) {
                Err(Error::Corrupt { id: 7, reason }) => {
                    assert!(reason.starts_with("changes is not a diff schema"))
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
