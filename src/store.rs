//! Writing log rows.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use std::sync::LazyLock;

use sea_orm::sea_query::{Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityName, IdenStatic, Statement, Value};
use serde_json::{Map, Value as Json};

use crate::chain::{
    self, Content, POSTGRES_LINK_HASH, UNSEALED, content_digest, entry_hash, head, head_sql,
    link_prefix, truncate_to_micros,
};
use crate::context::AuditContext;
use crate::error::{Error, Result};
use crate::limits;
use crate::sql::{Placeholders, quote, rows_per_insert, time_value};
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
    /// A captured create: starts a new segment of the object's chain (no head lookup).
    pub(crate) starts_chain: bool,
    /// The object's chain head, when the caller already read it in a way that is current for
    /// this write (the before-image on SQLite and MySQL, see `capture`): no head lookup.
    pub(crate) known_head: Option<Option<String>>,
    /// When it happened, if not now (API activity is written in batches after the fact).
    pub(crate) created_at: Option<DateTime<Utc>>,
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
            starts_chain: false,
            known_head: None,
            created_at: None,
        }
    }

    /// The row exactly as it will be stored, with the current context applied, or the limit
    /// (see `limits`) it breaks.
    fn resolve(
        self,
        backend: DbBackend,
        created_at: DateTime<Utc>,
        ctx: Option<&AuditContext>,
    ) -> Result<Row> {
        let (ctx_actor, ctx_tool, mut data) = match ctx {
            Some(c) => (c.actor.clone(), c.tool.clone(), c.data.clone()),
            None => (None, None, Map::new()),
        };
        // Entry data wins over context data for the same key.
        data.extend(self.data);
        for value in data.values_mut() {
            limits::bound_in_place(value);
        }
        let mut changes = self.changes;
        if let Some(Json::Object(sides)) = &mut changes {
            for side in sides.values_mut() {
                match side {
                    Json::Object(columns) => columns.values_mut().for_each(limits::bound_in_place),
                    other => limits::bound_in_place(other),
                }
            }
        }
        let row = Row {
            entity_type: self.entity_type,
            object_id: self.object_id,
            action: self.action.as_str().to_owned(),
            actor: self.actor.or(ctx_actor),
            created_at: self.created_at.map_or(created_at, truncate_to_micros),
            changes,
            tool: self.tool.or(ctx_tool),
            message: self.message,
            status: self.status.as_str(),
            data: (!data.is_empty()).then_some(Json::Object(data)),
            starts_chain: self.starts_chain,
            known_head: self.known_head,
        };
        row.check(backend)?;
        Ok(row)
    }
}

struct Row {
    entity_type: String,
    object_id: String,
    action: String,
    actor: Option<String>,
    created_at: DateTime<Utc>,
    changes: Option<Json>,
    tool: Option<String>,
    message: Option<String>,
    status: &'static str,
    data: Option<Json>,
    starts_chain: bool,
    known_head: Option<Option<String>>,
}

impl Row {
    /// Every limit of `limits`, before anything is written.
    fn check(&self, backend: DbBackend) -> Result<()> {
        limits::check_key("entity_type", &self.entity_type)?;
        limits::check_key("object_id", &self.object_id)?;
        limits::check_action(&self.action)?;
        for (field, value) in [("actor", &self.actor), ("tool", &self.tool)] {
            if let Some(value) = value {
                limits::check_key(field, value)?;
            }
        }
        if let Some(message) = &self.message {
            limits::check_text(backend, "message", message)?;
        }
        for (field, value) in [("changes", &self.changes), ("data", &self.data)] {
            if let Some(value) = value {
                limits::check_json(backend, field, value)?;
            }
        }
        Ok(())
    }

    fn content(&self) -> Content<'_> {
        Content {
            entity_type: &self.entity_type,
            object_id: &self.object_id,
            action: &self.action,
            actor: self.actor.as_deref(),
            created_at: self.created_at,
            changes: self.changes.as_ref(),
            tool: self.tool.as_deref(),
            message: self.message.as_deref(),
            status: self.status,
            data: self.data.as_ref(),
        }
    }

    /// The row's values, in [`COLUMNS`] order.
    fn into_values(
        self,
        backend: DbBackend,
        prev: Option<String>,
        hash: String,
    ) -> [SimpleExpr; 12] {
        let [a, b, c, d, e, f, g, h, i, j] = self.into_content_values(backend).map(Into::into);
        [a, b, c, d, e, f, g, h, i, j, prev.into(), hash.into()]
    }

    /// The values of every column but the two hashes, in [`COLUMNS`] order.
    fn into_content_values(self, backend: DbBackend) -> [Value; 10] {
        [
            self.entity_type.into(),
            self.object_id.into(),
            self.action.into(),
            self.actor.into(),
            time_value(backend, self.created_at),
            self.changes.into(),
            self.tool.into(),
            self.message.into(),
            self.status.into(),
            self.data.into(),
        ]
    }
}

/// Columns written by the library, in the order of [`Row::into_values`].
const COLUMNS: [audit_log::Column; 12] = [
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
    audit_log::Column::PrevHash,
    audit_log::Column::Hash,
];

/// Writes many entries with multi-row INSERTs on `db`, linking each into its object's chain.
pub(crate) async fn write_many<C: ConnectionTrait>(db: &C, entries: Vec<NewEntry>) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let now = truncate_to_micros(Utc::now());
    let ctx = AuditContext::current();
    let rows: Vec<Row> = entries
        .into_iter()
        .map(|e| e.resolve(backend, now, ctx.as_ref()))
        .collect::<Result<_>>()?;
    let mut heads = chain_heads(db, &rows).await?;
    let per = rows_per_insert(backend);
    let total = rows.len();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut insert = Query::insert();
        insert.into_table(audit_log::Entity).columns(COLUMNS);
        for row in rows.by_ref().take(per) {
            let key = (row.entity_type.clone(), row.object_id.clone());
            let prev = if row.starts_chain {
                None
            } else if let Some(head) = heads.get(&key) {
                head.clone() // looked up, or an earlier row of this batch
            } else {
                row.known_head.clone().flatten()
            };
            let (prev, hash) = match prev {
                // The predecessor waits for a seal (a trigger wrote it, the entity was in
                // database mode then): so does this entry, which the seal then links to it.
                // Its `prev_hash` says so until then: the capture triggers leave theirs NULL,
                // and SQLite's `carry_context` fills a context only into those (an event or a
                // hook entry here was written with its own context, or none on purpose).
                Some(head) if head == UNSEALED => (Some(UNSEALED.to_owned()), UNSEALED.to_owned()),
                prev => {
                    let hash = entry_hash(&row.content(), prev.as_deref());
                    (prev, hash)
                }
            };
            heads.insert(key, Some(hash.clone()));
            insert
                .values(row.into_values(backend, prev, hash))
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        db.execute(&insert)
            .await
            .map_err(|e| Error::db(format!("writing {total} audit log row(s)"), e))?;
    }
    Ok(())
}

type Heads = HashMap<(String, String), Option<String>>;

/// The current chain head of every object a continuing row belongs to.
async fn chain_heads<C: ConnectionTrait>(db: &C, rows: &[Row]) -> Result<Heads> {
    let mut wanted: HashMap<&str, Vec<String>> = HashMap::new();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for row in rows
        .iter()
        .filter(|r| !r.starts_chain && r.known_head.is_none())
    {
        if seen.insert((row.entity_type.as_str(), row.object_id.as_str())) {
            wanted
                .entry(row.entity_type.as_str())
                .or_default()
                .push(row.object_id.clone());
        }
    }
    let mut heads = Heads::new();
    for (entity_type, ids) in wanted {
        let context = || format!("reading the chain head of {entity_type} {}", ids[0]);
        if let [only] = ids.as_slice() {
            let hash = current_head(db, entity_type, only)
                .await
                .map_err(|e| Error::db(context(), e))?;
            heads.insert((entity_type.to_owned(), only.clone()), hash);
        } else {
            let found = chain::heads(db, entity_type, &ids)
                .await
                .map_err(|e| Error::db(context(), e))?;
            for (object_id, hash) in found {
                heads.insert((entity_type.to_owned(), object_id), Some(hash));
            }
        }
    }
    Ok(heads)
}

/// The newest hash of one object's chain, read so that it is current (see [`head_sql`] and,
/// for MySQL, [`chain::mysql_head`]).
async fn current_head<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Option<String>, DbErr> {
    match db.get_database_backend() {
        DbBackend::MySql => chain::mysql_head(db, entity_type, object_id).await,
        _ => head(db, entity_type, object_id).await,
    }
}

/// Writes one entry on `db` (the caller's connection or transaction).
pub(crate) async fn write<C: ConnectionTrait>(db: &C, entry: NewEntry) -> Result<()> {
    let what = format!(
        "writing the audit log row for {} of {} {}",
        entry.action.as_str(),
        entry.entity_type,
        entry.object_id
    );
    let result = if reads_head_in_insert(db.get_database_backend(), &entry) {
        write_linked(db, entry).await
    } else {
        write_many(db, vec![entry]).await
    };
    result.map_err(|e| match e {
        Error::Db { source, .. } => Error::db(what, source),
        other => other,
    })
}

/// Whether the entry is written by one statement that reads its chain head and computes its
/// hash in SQL (PostgreSQL), instead of a head read followed by the INSERT.
///
/// PostgreSQL (READ COMMITTED) takes a statement's snapshot when the statement starts. A
/// captured update or delete runs its log INSERT after the hook's `FOR UPDATE` on the row was
/// granted, so after the previous writer of the object committed (or rolled back): the
/// snapshot holds that writer's entry, and no other writer can append before we commit. The
/// separate head read this replaces followed the same snapshot rule, one round trip earlier,
/// so entries no row lock covers (events, prune markers) gain and lose nothing either: as
/// before, concurrent ones about one object can fork their chain (`verify` reports a `Fork`).
/// Under REPEATABLE READ or SERIALIZABLE, a writer that committed after our snapshot makes the
/// hook's `FOR UPDATE` fail with a serialization error, so a stale head is never written.
///
/// SQLite and MySQL read the head of a captured update or delete with the before-image (see
/// `capture`, which also says why MySQL does not read it in the INSERT); SQLite cannot hash in
/// SQL. Creates start a new chain segment and read no head at all.
fn reads_head_in_insert(backend: DbBackend, entry: &NewEntry) -> bool {
    backend == DbBackend::Postgres && !entry.starts_chain && entry.known_head.is_none()
}

/// PostgreSQL's INSERT of one entry that reads its chain head and computes its hash (see
/// [`reads_head_in_insert`]): `$1`..`$10` the columns in [`COLUMNS`] order, `$11` the
/// [`link_prefix`] of the entry's digest. Written out once: the text never changes, so the
/// connection prepares it once and no write pays for building it with SeaORM's query builders
/// (BENCHMARKS.md, "Fixed on the way", has the cost this removed). `OFFSET 0` keeps PostgreSQL
/// from inlining the subquery into both places that use `h.prev`, which would look the head up
/// twice.
static POSTGRES_LINKED_INSERT: LazyLock<String> = LazyLock::new(|| {
    let pg = DbBackend::Postgres;
    let columns: Vec<String> = COLUMNS.iter().map(|c| quote(pg, c.as_str())).collect();
    // A head that waits for a seal (see `write_many`) leaves this entry to the seal too.
    format!(
        "INSERT INTO {table} ({columns}) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         CASE WHEN h.prev = {unsealed} THEN NULL ELSE h.prev END, \
         CASE WHEN h.prev = {unsealed} THEN {unsealed} ELSE {hash} END \
         FROM (SELECT ({head}) AS prev OFFSET 0) AS h",
        table = quote(pg, audit_log::Entity.table_name()),
        columns = columns.join(", "),
        unsealed = crate::sql::literal(UNSEALED),
        hash = POSTGRES_LINK_HASH
            .replace("{prefix}", "$11")
            .replace("{prev}", "h.prev"),
        // $1 and $2: the entity type and object id, the first two columns.
        head = head_sql(
            DbBackend::Postgres,
            &mut Placeholders::new(DbBackend::Postgres)
        ),
    )
});

/// Writes one entry whose chain head is read, and whose hash is computed, by the INSERT itself
/// (see [`reads_head_in_insert`]).
async fn write_linked<C: ConnectionTrait>(db: &C, entry: NewEntry) -> Result<()> {
    let backend = db.get_database_backend();
    let row = entry.resolve(
        backend,
        truncate_to_micros(Utc::now()),
        AuditContext::current().as_ref(),
    )?;
    let prefix = link_prefix(&content_digest(&row.content()));
    let mut values = Vec::with_capacity(11);
    values.extend(row.into_content_values(backend));
    values.push(prefix.into());
    let statement =
        Statement::from_sql_and_values(backend, POSTGRES_LINKED_INSERT.as_str(), values);
    db.execute_raw(statement)
        .await
        .map_err(|e| Error::db("writing 1 audit log row", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use super::*;
    use crate::entry::ENTRY_COLUMNS;

    /// The log row's columns are defined once, by the `audit_log` entity; every hand-listed
    /// view of them is checked against it here (the migration's in tests/migration.rs).
    #[test]
    fn column_lists_follow_the_entity() {
        let all: Vec<audit_log::Column> = audit_log::Column::iter().collect();
        let names = |cols: &[audit_log::Column]| -> Vec<&'static str> {
            cols.iter().map(IdenStatic::as_str).collect()
        };
        // Written by the library: everything but the id, in the entity's order.
        assert_eq!(names(&COLUMNS), names(&all[1..]));
        // Read back as entries: everything but the two hashes, in the entity's order.
        let without_hashes: Vec<audit_log::Column> = all
            .iter()
            .copied()
            .filter(|c| !matches!(c, audit_log::Column::PrevHash | audit_log::Column::Hash))
            .collect();
        assert_eq!(names(&ENTRY_COLUMNS), names(&without_hashes));
    }
}
