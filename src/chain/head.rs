//! Reading the head of an object's chain: the hash the next entry links to.

use std::collections::HashMap;
use std::sync::LazyLock;

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityName, EntityTrait, IdenStatic,
    QueryFilter, QuerySelect, Statement,
};

use crate::sql::{Placeholders, quote};
use crate::{audit_chain_head, audit_log};

/// The newest hash of one object's chain (served by `idx_audit_log_object`); the entity type
/// and the object id are bound to the next two placeholders of `p`. Written out rather than built: it runs once
/// per audited update, delete and event, and SeaORM's query builder cost more CPU than the
/// rest of the log write. The literal `LIMIT 1` also keeps SQLite from re-preparing the
/// statement on every execution (it does for a bound LIMIT it planned with).
///
/// MySQL reads the head of one object from its own table instead (see [`mysql_locked_head`]).
pub(crate) fn head_sql(backend: DbBackend, p: &mut Placeholders) -> String {
    use audit_log::Column as Col;
    let q = |name: &str| quote(backend, name);
    format!(
        "SELECT {hash} FROM {table} WHERE {entity_type} = {a} AND {object_id} = {b} ORDER BY \
         {id} DESC LIMIT 1",
        hash = q(Col::Hash.as_str()),
        table = q(audit_log::Entity.table_name()),
        entity_type = q(Col::EntityType.as_str()),
        a = p.next(),
        object_id = q(Col::ObjectId.as_str()),
        b = p.next(),
        id = q(Col::Id.as_str()),
    )
}

/// [`head_sql`] as a scalar subquery, for the before-image (see `capture`).
pub(crate) fn head_subquery(backend: DbBackend, entity_type: &str, object_id: &str) -> SimpleExpr {
    let sql = head_sql(backend, &mut Placeholders::new(backend));
    Expr::cust_with_values(format!("({sql})"), [entity_type, object_id])
}

/// The newest hash of one object's chain, read so that it is current (see [`head_sql`]).
pub(crate) async fn head<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Option<String>, DbErr> {
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        head_sql(backend, &mut Placeholders::new(backend)),
        [entity_type.into(), object_id.into()],
    );
    match db.query_one_raw(statement).await? {
        Some(row) => row.try_get("", "hash"),
        None => Ok(None),
    }
}

/// Newest hashes of many objects of one entity type (for bulk writes), `object_id -> hash`.
pub(crate) async fn heads<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_ids: &[String],
) -> Result<HashMap<String, String>, DbErr> {
    let mut out = HashMap::with_capacity(object_ids.len());
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        for chunk in object_ids.chunks(crate::sql::KEYS_PER_STATEMENT) {
            out.extend(postgres_heads(db, entity_type, chunk).await?);
        }
        return Ok(out);
    }
    for chunk in object_ids.chunks(crate::sql::KEYS_PER_STATEMENT) {
        let newest = audit_log::Entity::find()
            .select_only()
            .column_as(audit_log::Column::Id.max(), "id")
            .filter(audit_log::Column::EntityType.eq(entity_type))
            .filter(audit_log::Column::ObjectId.is_in(chunk.iter().map(String::as_str)))
            .group_by(audit_log::Column::ObjectId);
        let ids: Vec<i64> = newest.into_tuple().all(db).await?;
        if ids.is_empty() {
            continue;
        }
        let mut query = audit_log::Entity::find()
            .select_only()
            .column(audit_log::Column::ObjectId)
            .column(audit_log::Column::Hash)
            .filter(audit_log::Column::Id.is_in(ids));
        if db.get_database_backend() == sea_orm::DbBackend::MySql {
            query = query.lock_exclusive();
        }
        let rows: Vec<(String, Option<String>)> = query.into_tuple().all(db).await?;
        out.extend(rows.into_iter().filter_map(|(id, hash)| Some((id, hash?))));
    }
    Ok(out)
}

/// PostgreSQL: one index lookup per object, whatever the table's statistics. The
/// `MAX(id) ... IN (...) GROUP BY` form used elsewhere was planned as a filter over the whole
/// type on a freshly grown table (6 s per 1,000 objects at 50,000 rows, found by the benchmark).
async fn postgres_heads<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_ids: &[String],
) -> Result<Vec<(String, String)>, DbErr> {
    let mut p = Placeholders::new(DbBackend::Postgres);
    let mut sql = p.fill(
        "SELECT v.object_id, (SELECT a.hash FROM audit_log a WHERE a.entity_type = {p} AND \
         a.object_id = v.object_id ORDER BY a.id DESC LIMIT 1) AS hash FROM (VALUES ",
    );
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(object_ids.len() + 1);
    values.push(entity_type.into());
    for (i, id) in object_ids.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&p.fill("({p}::text)"));
        values.push(id.as_str().into());
    }
    sql.push_str(") AS v(object_id)");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let object_id: String = row.try_get("", "object_id")?;
        let hash: Option<String> = row.try_get("", "hash")?;
        if let Some(hash) = hash {
            out.push((object_id, hash));
        }
    }
    Ok(out)
}

/// MySQL: the id of the object's newest entry as `audit_chain_head` holds it in the
/// transaction's snapshot (a plain read, locking nothing), as a scalar subquery for the
/// statement that reads the before-image; NULL when the snapshot shows no head row. Its value
/// goes to [`mysql_current_head`]. `row_key` is a never-NULL column of that statement's row:
/// referring to it makes MariaDB read the head row when it reads the statement's row, after
/// that row's lock was granted, so in a snapshot that holds the previous writer's entry. A
/// subquery of constants only is read while MariaDB plans the statement, before the lock
/// wait: with it, 16 transactions updating an object with no history forked its chain
/// (`contention_on_an_object_without_history_keeps_one_chain`, on 10.11).
pub(crate) fn mysql_head_id_subquery(
    entity_type: &str,
    object_id: &str,
    row_key: SimpleExpr,
) -> SimpleExpr {
    use audit_chain_head::Column as Head;
    let q = |name: &str| quote(DbBackend::MySql, name);
    // `?` is where `cust_with_exprs` puts each expression, in order, on MySQL.
    let sql = format!(
        "(SELECT {head_id} FROM {heads} WHERE {entity_type} = ? AND {object_id} = ? AND ? \
         IS NOT NULL)",
        head_id = q(Head::HeadId.as_str()),
        heads = q(audit_chain_head::Entity.table_name()),
        entity_type = q(Head::EntityType.as_str()),
        object_id = q(Head::ObjectId.as_str()),
    );
    Expr::cust_with_exprs(sql, [Expr::val(entity_type), Expr::val(object_id), row_key])
}

/// MySQL: the head of one object's chain, read so that it is current: a plain read of its
/// `audit_chain_head` row first, then [`mysql_current_head`].
pub(crate) async fn mysql_head<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Option<String>, DbErr> {
    let found =
        audit_chain_head::Entity::find_by_id((entity_type.to_owned(), object_id.to_owned()))
            .select_only()
            .column(audit_chain_head::Column::HeadId)
            .into_tuple::<i64>()
            .one(db)
            .await?;
    mysql_current_head(db, entity_type, object_id, found).await
}

/// MySQL: the head of one object's chain as committed, given the id of the head entry the
/// transaction's snapshot shows in `audit_chain_head` (`None`: no head row in the snapshot).
pub(crate) async fn mysql_current_head<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
    snapshot_head_id: Option<i64>,
) -> Result<Option<String>, DbErr> {
    match snapshot_head_id {
        None => mysql_claimed_head(db, entity_type, object_id).await,
        // A placeholder (see `mysql_claimed_head`): no entry to lock, only the head row.
        Some(0) => mysql_head_row_hash(db, entity_type, object_id).await,
        Some(id) => mysql_locked_head(db, entity_type, object_id, id).await,
    }
}

/// MySQL: the head of an object whose `audit_chain_head` row the transaction's snapshot does
/// not show, read as committed. Its row is claimed by an upsert (`INSERT .. ON DUPLICATE KEY
/// UPDATE`): it inserts a placeholder (`head_id` 0, no hash) if there is no row, or locks the
/// row there is, by its primary key either way, so with no gap lock (an insert takes none, and
/// a duplicate of the primary key is locked as a record). The row, now there and ours, is then
/// read with a lock, so as committed: the head another transaction committed after our
/// snapshot is found and chained from (`mysql_a_stale_snapshot_still_chains_from_the_head`),
/// where the plain read alone started a second chain, which `verify` reported as a fork. The
/// hash is taken from the head row, which holds it as written (a trigger's entry sealed since
/// is left to the seal): locking the entry too, after the head row, could deadlock with a bulk
/// write, which locks entries first (see [`mysql_locked_head`]). A placeholder that no entry
/// follows (the transaction rolled back, or logged nothing) stays, and means "no head": the
/// trigger replaces it with the object's first entry.
async fn mysql_claimed_head<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Option<String>, DbErr> {
    let claim = Statement::from_sql_and_values(
        DbBackend::MySql,
        MYSQL_CLAIM_HEAD.as_str(),
        [entity_type.into(), object_id.into()],
    );
    db.execute_raw(claim).await?;
    mysql_head_row_hash(db, entity_type, object_id).await
}

/// The hash of the object's `audit_chain_head` row, which is locked; `None` for a placeholder.
/// Only once the row is known to be there: a locking read that finds none locks a gap.
async fn mysql_head_row_hash<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Option<String>, DbErr> {
    let head = audit_chain_head::Entity::find_by_id((entity_type.to_owned(), object_id.to_owned()))
        .lock_exclusive()
        .one(db)
        .await?;
    Ok(head.filter(|h| h.head_id != 0).and_then(|h| h.hash))
}

/// [`mysql_claimed_head`]'s upsert; the entity type and object id are its placeholders.
static MYSQL_CLAIM_HEAD: LazyLock<String> = LazyLock::new(|| {
    use audit_chain_head::Column as Head;
    let q = |name: &str| quote(DbBackend::MySql, name);
    format!(
        "INSERT INTO {heads} ({entity_type}, {object_id}, {head_id}, {hash}) VALUES (?, ?, 0, \
         NULL) ON DUPLICATE KEY UPDATE {head_id} = {head_id}",
        heads = q(audit_chain_head::Entity.table_name()),
        entity_type = q(Head::EntityType.as_str()),
        object_id = q(Head::ObjectId.as_str()),
        head_id = q(Head::HeadId.as_str()),
        hash = q(Head::Hash.as_str()),
    )
});

/// MySQL: the head of an object whose `audit_chain_head` row a plain read found, with the id
/// of the head entry it named, read as committed, not as the transaction's REPEATABLE READ
/// snapshot (which can predate the previous writer's entry): that entry and the head row are
/// locked (`FOR UPDATE`) by their primary keys, in one statement. When the head row names a
/// newer entry (one committed after the snapshot), that entry's hash is taken from the head
/// row, which holds it as written: locking that entry too, after the head row, deadlocked
/// concurrent events about one object (39 of 200 in `tests/concurrency.rs`).
///
/// Why that table, and why a plain read first. InnoDB's locking read of a range locks the gap
/// before each record it reads, and of a range it finds empty, the gap where it would be.
/// Reading the newest log entry of an object that way (as this did before) locked the gap
/// before it; when the object had one entry, that gap is where the next entry of the object
/// sorting just before goes, so that object's writers waited for this transaction (1205 after
/// the lock wait timeout) or deadlocked with it (`tests/hook_exact.rs`,
/// `mysql_unrelated_writers_never_wait_for_a_chain_head_lock`). A locking read by a unique key
/// that finds its row locks that row alone; one that finds none locks a gap again, where other
/// objects' first heads go. So the row is locked only once a plain read has found it (head
/// rows are never deleted), in a statement of its own: MariaDB reads a table looked up by a
/// constant key while it plans a statement, with its locks, even in a `CASE` branch that never
/// runs (seen on 10.11: a gap lock on the head table for an object with no entries, and 16
/// first updates of new objects deadlocked). The plain read sees the transaction's snapshot:
/// when that predates the row, the row is claimed and read as committed instead (see
/// [`mysql_claimed_head`]); when it predates a newer head, the locked row names it (below).
///
/// Why the entry, and in that order. Bulk writes lock the newest entries of their objects by
/// id (see [`heads`]) and move the head rows when they insert their entries (the trigger): an
/// event about one of those objects must wait for them, or it chains from the head the bulk
/// write read too. Locking the head row first and the entry second deadlocked with them
/// (`mysql_an_event_waits_for_a_bulk_write_that_read_its_head`); every writer locks entries
/// before head rows. The entry's hash is read as stored now: a trigger's entry (database mode)
/// is sealed later, without touching the head row. When retention pruned the entry, the head
/// row's hash (the pruned entry's, which the prune's marker lists, so `verify` accepts the next
/// entry linking to it) is read with the head row locked alone.
async fn mysql_locked_head<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
    head_id: i64,
) -> Result<Option<String>, DbErr> {
    let statement = Statement::from_sql_and_values(
        DbBackend::MySql,
        MYSQL_LOCKED_HEAD.as_str(),
        [head_id.into()],
    );
    let Some(row) = db.query_one_raw(statement).await? else {
        return mysql_head_row_hash(db, entity_type, object_id).await;
    };
    let now: i64 = row.try_get("", "head_id")?;
    if now == head_id {
        return row.try_get("", "hash");
    }
    // A newer entry, committed after the snapshot: its hash as written, which only a seal
    // changes (then `UNSEALED` leaves this entry to the seal too).
    row.try_get("", "head_hash")
}

/// [`mysql_locked_head`]'s statement; the entry's id is its placeholder. The entry is read
/// first (a constant key), the head row second (its key taken from the entry): InnoDB locks
/// them in that order. Written out once, as [`head_sql`] is: it runs once per audited update,
/// delete and event.
static MYSQL_LOCKED_HEAD: LazyLock<String> = LazyLock::new(|| {
    use audit_chain_head::Column as Head;
    use audit_log::Column as Log;
    let q = |name: &str| quote(DbBackend::MySql, name);
    format!(
        "SELECT a.{hash} AS hash, h.{head_id} AS head_id, h.{head_hash} AS head_hash FROM {log} a \
         JOIN {heads} h ON \
         h.{entity_type} = a.{log_entity_type} AND h.{object_id} = a.{log_object_id} \
         WHERE a.{id} = ? FOR UPDATE",
        hash = q(Log::Hash.as_str()),
        head_id = q(Head::HeadId.as_str()),
        head_hash = q(Head::Hash.as_str()),
        log = q(audit_log::Entity.table_name()),
        heads = q(audit_chain_head::Entity.table_name()),
        entity_type = q(Head::EntityType.as_str()),
        log_entity_type = q(Log::EntityType.as_str()),
        object_id = q(Head::ObjectId.as_str()),
        log_object_id = q(Log::ObjectId.as_str()),
        id = q(Log::Id.as_str()),
    )
});
