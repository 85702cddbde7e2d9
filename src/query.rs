//! Reading history back: typed log entries and per-object history.

use std::fmt;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::audit_log;
use crate::auditable::Auditable;
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

impl TryFrom<audit_log::Model> for LogEntry {
    type Error = Error;

    fn try_from(row: audit_log::Model) -> Result<Self> {
        let changes = match row.changes {
            None | Some(Json::Null) => None,
            Some(json) => Some(serde_json::from_value(json).map_err(|e| Error::Corrupt {
                id: row.id,
                reason: format!("changes is not a diff schema: {e}"),
            })?),
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

/// The history of one object, newest first.
///
/// ```
/// # use sea_orm::entity::prelude::*;
/// # async fn demo(db: &sea_orm::DatabaseConnection, post: &impl sea_orm_audit::Auditable) -> Result<(), DbErr> {
/// for entry in sea_orm_audit::logs_for(db, post).await? {
///     println!("{} {} by {:?}", entry.created_at, entry.action, entry.actor);
/// }
/// # Ok(()) }
/// ```
pub async fn logs_for<M, C>(db: &C, model: &M) -> Result<Vec<LogEntry>, sea_orm::DbErr>
where
    M: Auditable,
    C: ConnectionTrait,
{
    logs_for_id(db, M::entity_type(), &model.audit_object_id()).await
}

/// The history of an object by entity type and canonical object id, newest first; works for
/// deleted objects too.
pub async fn logs_for_id<C>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Vec<LogEntry>, sea_orm::DbErr>
where
    C: ConnectionTrait,
{
    let rows = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq(entity_type))
        .filter(audit_log::Column::ObjectId.eq(object_id))
        .order_by_desc(audit_log::Column::Id)
        .all(db)
        .await?;
    let entries = rows
        .into_iter()
        .map(LogEntry::try_from)
        .collect::<Result<Vec<_>>>()?;
    Ok(entries)
}
