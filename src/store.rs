//! Writing log rows.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, NotSet};
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

    fn into_active_model(self) -> audit_log::ActiveModel {
        let ctx = AuditContext::current();
        let (ctx_actor, ctx_tool, mut data) = match ctx {
            Some(c) => (c.actor, c.tool, c.data),
            None => (None, None, Map::new()),
        };
        // Entry data wins over context data for the same key.
        data.extend(self.data);
        audit_log::ActiveModel {
            id: NotSet,
            entity_type: Set(self.entity_type),
            object_id: Set(self.object_id),
            action: Set(self.action.as_str().to_owned()),
            actor: Set(self.actor.or(ctx_actor)),
            created_at: Set(Utc::now()),
            changes: Set(self.changes),
            tool: Set(self.tool.or(ctx_tool)),
            message: Set(self.message),
            status: Set(self.status.as_str().to_owned()),
            data: Set((!data.is_empty()).then_some(Json::Object(data))),
            prev_hash: Set(None),
            hash: Set(None),
        }
    }
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
    let per = rows_per_insert(db.get_database_backend());
    let mut rows = entries
        .into_iter()
        .map(NewEntry::into_active_model)
        .peekable();
    while rows.peek().is_some() {
        let batch: Vec<_> = rows.by_ref().take(per).collect();
        let n = batch.len();
        audit_log::Entity::insert_many(batch)
            .exec_without_returning(db)
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
    audit_log::Entity::insert(entry.into_active_model())
        .exec_without_returning(db)
        .await
        .map_err(|e| Error::db(what, e))?;
    Ok(())
}
