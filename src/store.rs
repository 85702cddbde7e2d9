//! Writing log rows.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{InsertStatement, Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DbBackend, Value};
use serde_json::{Map, Value as Json};

use crate::context::AuditContext;
use crate::error::{Error, Result};
use crate::{Action, Status, audit_log};

/// A log row about to be written. Fields left `None` are filled from the current
/// [`AuditContext`].
#[derive(Debug, Clone)]
pub(crate) struct NewEntry {
    pub(crate) entity_type: String,
    pub(crate) object_id: String,
    pub(crate) action: Action,
    pub(crate) changes: Option<Json>,
    pub(crate) actor: Option<String>,
    pub(crate) tool: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) status: Status,
    pub(crate) data: Map<String, Json>,
}

impl NewEntry {
    pub(crate) fn new(entity_type: &str, object_id: String, action: Action) -> Self {
        NewEntry {
            entity_type: entity_type.to_owned(),
            object_id,
            action,
            changes: None,
            actor: None,
            tool: None,
            message: None,
            status: Status::Success,
            data: Map::new(),
        }
    }

    /// The row's values, in [`COLUMNS`] order.
    fn into_values(self, backend: DbBackend, now: DateTime<Utc>) -> [SimpleExpr; 10] {
        let (ctx_actor, ctx_tool, mut data) = match AuditContext::current() {
            Some(c) => (c.actor, c.tool, c.data),
            None => (None, None, Map::new()),
        };
        // Entry data wins over context data for the same key.
        data.extend(self.data);
        let data = (!data.is_empty()).then_some(Json::Object(data));
        [
            self.entity_type.into(),
            self.object_id.into(),
            self.action.as_str().to_owned().into(),
            self.actor.or(ctx_actor).into(),
            created_at(backend, now),
            self.changes.into(),
            self.tool.or(ctx_tool).into(),
            self.message.into(),
            self.status.as_str().into(),
            data.into(),
        ]
    }
}

/// Columns written by the library, in the order of [`NewEntry::into_values`].
const COLUMNS: [audit_log::Column; 10] = [
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

/// sqlx binds `DateTime<Utc>` as a MySQL TIMESTAMP parameter, which turns anything after
/// 2038-01-19 into NULL even for a DATETIME column: bind the UTC wall time as DATETIME there.
fn created_at(backend: DbBackend, now: DateTime<Utc>) -> SimpleExpr {
    match backend {
        DbBackend::MySql => Value::ChronoDateTime(Some(now.naive_utc())).into(),
        _ => Value::ChronoDateTimeUtc(Some(now)).into(),
    }
}

fn insert_statement(backend: DbBackend, entries: Vec<NewEntry>) -> Result<InsertStatement> {
    let now = Utc::now();
    let mut insert = Query::insert();
    insert.into_table(audit_log::Entity).columns(COLUMNS);
    for entry in entries {
        insert
            .values(entry.into_values(backend, now))
            .map_err(|e| Error::Invalid {
                what: "audit log row",
                reason: e.to_string(),
            })?;
    }
    Ok(insert)
}

/// Rows per multi-row INSERT of log entries. PostgreSQL stays at 100: sqlx 0.9 stalls ~40 ms per
/// statement on loopback once a multi-row INSERT reaches ~200 rows (no TCP_NODELAY), see
/// PERFORMANCE-NOTES; SQLite and MySQL take larger batches well.
pub(crate) fn rows_per_insert(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Postgres => 100,
        _ => 500,
    }
}

/// Writes many entries with multi-row INSERTs on `db`.
pub(crate) async fn write_many<C: ConnectionTrait>(db: &C, entries: Vec<NewEntry>) -> Result<()> {
    let backend = db.get_database_backend();
    let per = rows_per_insert(backend);
    let mut rows = entries.into_iter().peekable();
    while rows.peek().is_some() {
        let batch: Vec<_> = rows.by_ref().take(per).collect();
        let n = batch.len();
        let stmt = insert_statement(backend, batch)?;
        db.execute(&stmt)
            .await
            .map_err(|e| Error::db(format!("writing {n} audit log rows"), e))?;
    }
    Ok(())
}

/// Writes one entry on `db` (the caller's connection or transaction).
pub(crate) async fn write<C: ConnectionTrait>(db: &C, entry: NewEntry) -> Result<()> {
    let what = format!(
        "writing the audit log row for {} of {} {}",
        entry.action.as_str(),
        entry.entity_type,
        entry.object_id
    );
    let stmt = insert_statement(db.get_database_backend(), vec![entry])?;
    db.execute(&stmt).await.map_err(|e| Error::db(what, e))?;
    Ok(())
}
