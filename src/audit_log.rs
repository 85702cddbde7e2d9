//! The `audit_log` table as a SeaORM entity, for queries the typed API does not cover.
//!
//! The table is created by `sea-orm-audit-migration`. Prefer [`crate::History`] and
//! [`crate::LogEntry`] for reading; this entity exposes the raw columns.

use sea_orm::entity::prelude::*;
use sea_orm::{FromQueryResult, QueryResult};

use crate::error::Error;

/// One row of `audit_log`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// Monotonic id; newest rows have the largest ids.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The audited entity type (by default its table name).
    pub entity_type: String,
    /// Canonical text of the object's primary key (see the crate docs).
    pub object_id: String,
    /// `create`, `update`, `delete`, `login`... or a custom action name.
    pub action: String,
    /// Who acted, if known.
    pub actor: Option<String>,
    /// When the row was written (UTC).
    pub created_at: DateTimeUtc,
    /// The diff schema `{"old_value": .., "new_value": ..}`.
    pub changes: Option<Json>,
    /// A category for the work done.
    pub tool: Option<String>,
    /// A human-readable message.
    pub message: Option<String>,
    /// `success` or `failed`.
    pub status: String,
    /// Context and request data.
    pub data: Option<Json>,
    /// Hash of the previous entry in this entry's chain (tamper evidence).
    pub prev_hash: Option<String>,
    /// Hash of this entry's canonical content and `prev_hash`.
    pub hash: Option<String>,
}

/// `audit_log` has no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Decodes one row of the log as `T` (the whole [`Model`], or a view of some of its columns).
/// A row that cannot be read (another program stored a value of the wrong kind in it: a time
/// that is not one, a JSON number beyond an `f64`) is [`Error::Corrupt`] with its id, which the
/// driver's error does not name.
pub(crate) fn read_row<T: FromQueryResult>(row: &QueryResult) -> Result<T, Error> {
    T::from_query_result(row, "").map_err(|err| Error::Corrupt {
        id: row.try_get("", Column::Id.as_str()).unwrap_or_default(),
        reason: format!("cannot be read: {err}"),
    })
}
