//! Reading history back: per-object history and the filtered, paginated [`History`] query.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityName, EntityTrait, IdenStatic, QueryFilter,
    QueryOrder, Statement, Value,
};

use crate::Action;
use crate::audit_log;
use crate::audit_log::Column as Col;
use crate::auditable::Auditable;
use crate::entry::{ENTRY_COLUMNS, LogEntry, Status, entries, read_entry};
use crate::error::Result;
use crate::sql::{Placeholders, quote, time_value};

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
    let select = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq(entity_type))
        .filter(audit_log::Column::ObjectId.eq(object_id))
        .order_by_desc(audit_log::Column::Id);
    entries(db, select).await
}

/// Most entries one [`History::fetch`] returns; larger limits are clamped to it.
pub const MAX_PAGE: u64 = 1000;
/// Entries per page when no limit is given.
pub const DEFAULT_PAGE: u64 = 50;

/// A filtered, paginated query over the whole log, newest first.
///
/// Every filter is served by an index of the shipped migration. Page with a keyset cursor
/// ([`Page::next`], then [`History::before`]) for stable pages while entries are being written,
/// or with [`History::offset`].
///
/// ```
/// # use sea_orm_audit::{Action, History};
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
/// let mut query = History::new().actor("alice").action(Action::Update).limit(20);
/// loop {
///     let page = query.fetch(db).await?;
///     for entry in &page.entries { println!("{} {}", entry.id, entry.object_id); }
///     match page.next { Some(cursor) => query = query.before(cursor), None => break }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct History {
    entity_type: Option<String>,
    hidden_types: Vec<String>,
    object_id: Option<String>,
    actor: Option<String>,
    tool: Option<String>,
    action: Option<Action>,
    status: Option<Status>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    before_id: Option<i64>,
    limit: Option<u64>,
    offset: u64,
}

/// One page of [`History`] results.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The entries, newest first.
    pub entries: Vec<LogEntry>,
    /// Cursor for the next (older) page, if there is one: pass it to [`History::before`].
    pub next: Option<i64>,
}

impl History {
    /// All entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only entries about this entity type.
    pub fn entity_type(mut self, entity_type: impl Into<String>) -> Self {
        self.entity_type = Some(entity_type.into());
        self
    }

    /// Leaves out entries of these entity types (e.g. `"api"` activity from a user's own
    /// history).
    pub fn without_entity_types<S: Into<String>>(
        mut self,
        types: impl IntoIterator<Item = S>,
    ) -> Self {
        self.hidden_types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Only entries about one object (by entity type and canonical id).
    pub fn object(mut self, entity_type: impl Into<String>, object_id: impl Into<String>) -> Self {
        self.entity_type = Some(entity_type.into());
        self.object_id = Some(object_id.into());
        self
    }

    /// Only entries about this model's row.
    pub fn of<M: Auditable>(self, model: &M) -> Self {
        self.object(M::entity_type(), model.audit_object_id())
    }

    /// Only entries by this actor.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Only entries of this tool.
    pub fn tool(mut self, tool: impl Into<String>) -> Self {
        self.tool = Some(tool.into());
        self
    }

    /// Only entries with this action.
    pub fn action(mut self, action: impl Into<Action>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Only entries with this status.
    pub fn status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }

    /// Only entries written at or after this time.
    pub fn created_after(mut self, at: DateTime<Utc>) -> Self {
        self.created_after = Some(at);
        self
    }

    /// Only entries written strictly before this time.
    pub fn created_before(mut self, at: DateTime<Utc>) -> Self {
        self.created_before = Some(at);
        self
    }

    /// Keyset pagination: only entries older than this cursor ([`Page::next`]).
    pub fn before(mut self, cursor: i64) -> Self {
        self.before_id = Some(cursor);
        self
    }

    /// Page size: 1 to [`MAX_PAGE`] (clamped); [`DEFAULT_PAGE`] if not set.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Skips this many entries (limit/offset pagination).
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// Entries per page: the limit clamped to 1..=[`MAX_PAGE`].
    fn page_size(&self) -> u64 {
        self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
    }

    /// The statement [`fetch`](Self::fetch) runs on `backend` (for `EXPLAIN`).
    ///
    /// Written out by hand rather than with SeaORM's query builder: the text depends only on
    /// which filters are set, and building it through sea-query cost more client time than
    /// decoding the page (BENCHMARKS.md, "History as fixed SQL", has the figures). The
    /// page size is a literal, as in a hand-written query; values are bound, timestamps the way
    /// the backend compares them correctly (on MySQL as `DATETIME`: sqlx's TIMESTAMP binding
    /// turns dates after 2038 into NULL).
    pub fn statement(&self, backend: DbBackend) -> Statement {
        let limit = self.page_size();
        let mut sql = String::with_capacity(320);
        sql.push_str("SELECT ");
        for (i, column) in ENTRY_COLUMNS.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&quote(backend, column.as_str()));
        }
        sql.push_str(" FROM ");
        sql.push_str(&quote(backend, audit_log::Entity.table_name()));
        let values = self.filter_sql(&mut sql, backend, true);
        sql.push_str(" ORDER BY ");
        sql.push_str(&quote(backend, Col::Id.as_str()));
        // One more than the page: whether there is a next page.
        sql.push_str(&format!(" DESC LIMIT {}", limit + 1));
        if self.offset > 0 {
            sql.push_str(&format!(" OFFSET {}", self.offset));
        }
        Statement::from_sql_and_values(backend, sql, values)
    }

    /// Appends the WHERE clause; returns the values it binds.
    fn filter_sql(&self, sql: &mut String, backend: DbBackend, with_cursor: bool) -> Vec<Value> {
        let mut values: Vec<Value> = Vec::new();
        let mut placeholders = Placeholders::new(backend);
        let mut add = |column: Col, op: &str, value: Value| {
            sql.push_str(if values.is_empty() {
                " WHERE "
            } else {
                " AND "
            });
            sql.push_str(&quote(backend, column.as_str()));
            sql.push_str(op);
            sql.push_str(&placeholders.next());
            values.push(value);
        };
        let text = |v: &str| Value::from(v.to_owned());
        if let Some(v) = &self.entity_type {
            add(Col::EntityType, " = ", text(v));
        }
        if let Some(v) = &self.object_id {
            add(Col::ObjectId, " = ", text(v));
        }
        for v in &self.hidden_types {
            add(Col::EntityType, " <> ", text(v));
        }
        if let Some(v) = &self.actor {
            add(Col::Actor, " = ", text(v));
        }
        if let Some(v) = &self.tool {
            add(Col::Tool, " = ", text(v));
        }
        if let Some(v) = &self.action {
            add(Col::Action, " = ", text(v.as_str()));
        }
        if let Some(v) = self.status {
            add(Col::Status, " = ", text(v.as_str()));
        }
        if let Some(v) = self.created_after {
            add(Col::CreatedAt, " >= ", time_value(backend, v));
        }
        if let Some(v) = self.created_before {
            add(Col::CreatedAt, " < ", time_value(backend, v));
        }
        if let (true, Some(id)) = (with_cursor, self.before_id) {
            add(Col::Id, " < ", Value::from(id));
        }
        values
    }

    /// One page of entries, newest first.
    pub async fn fetch<C: ConnectionTrait>(&self, db: &C) -> Result<Page, sea_orm::DbErr> {
        let limit = usize::try_from(self.page_size()).unwrap_or(usize::MAX);
        let results = db
            .query_all_raw(self.statement(db.get_database_backend()))
            .await?;
        let more = results.len() > limit;
        let mut entries = Vec::with_capacity(results.len().min(limit));
        for result in results.iter().take(limit) {
            entries.push(read_entry(result)?);
        }
        let next = if more {
            entries.last().map(|e| e.id)
        } else {
            None
        };
        Ok(Page { entries, next })
    }

    /// How many entries match the filters (ignoring cursor, limit and offset).
    pub async fn count<C: ConnectionTrait>(&self, db: &C) -> Result<u64, sea_orm::DbErr> {
        let backend = db.get_database_backend();
        let mut sql = String::from("SELECT COUNT(*) AS n FROM ");
        sql.push_str(&quote(backend, audit_log::Entity.table_name()));
        let values = self.filter_sql(&mut sql, backend, false);
        let row = db
            .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
            .ok_or_else(|| sea_orm::DbErr::RecordNotFound("COUNT(*) returned no row".into()))?;
        let n: i64 = row.try_get("", "n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
