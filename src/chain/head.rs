//! Reading the head of an object's chain: the hash the next entry links to.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityName, EntityTrait, IdenStatic,
    QueryFilter, QuerySelect, Statement,
};

use crate::audit_log;
use crate::sql::{Placeholders, quote};

/// The newest hash of one object's chain (served by `idx_audit_log_object`); the entity type
/// and the object id are bound to the next two placeholders of `p`. Written out rather than built: it runs once
/// per audited update, delete and event, and SeaORM's query builder cost more CPU than the
/// rest of the log write. The literal `LIMIT 1` also keeps SQLite from re-preparing the
/// statement on every execution (it does for a bound LIMIT it planned with).
///
/// With `FOR UPDATE` on MySQL, whose REPEATABLE READ snapshot could otherwise predate the row
/// lock just taken: a locking read reads the newest committed row and waits for uncommitted
/// ones.
pub(crate) fn head_sql(backend: DbBackend, p: &mut Placeholders) -> String {
    use audit_log::Column as Col;
    let lock = if backend == DbBackend::MySql {
        " FOR UPDATE"
    } else {
        ""
    };
    let q = |name: &str| quote(backend, name);
    format!(
        "SELECT {hash} FROM {table} WHERE {entity_type} = {a} AND {object_id} = {b} ORDER BY \
         {id} DESC LIMIT 1{lock}",
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

/// MySQL's read of one object's chain head, as a scalar expression with the placeholders
/// entity type, object id, entity type, object id: [`head_sql`]'s locking read, made only when
/// a plain read finds the object has entries.
///
/// InnoDB's locking read of an empty range locks the gap where the range would be, which also
/// holds the next entry of whichever object sorts just before: every writer of that object
/// would wait for this transaction (up to `1205 Lock wait timeout exceeded`). An object with
/// entries is locked within its own range instead. The plain read sees the transaction's
/// snapshot; for a captured write it runs after the row lock was granted, so it sees the
/// entries of every earlier writer of the row unless the transaction read before that
/// writer committed (then the first entries fork, which `verify` reports).
pub(crate) fn mysql_head_sql() -> String {
    use audit_log::Column as Col;
    let backend = DbBackend::MySql;
    let q = |name: &str| quote(backend, name);
    let mut p = Placeholders::new(backend);
    format!(
        "CASE WHEN EXISTS (SELECT 1 FROM {table} WHERE {entity_type} = {a} AND {object_id} = \
         {b}) THEN ({head}) END",
        table = q(audit_log::Entity.table_name()),
        entity_type = q(Col::EntityType.as_str()),
        a = p.next(),
        object_id = q(Col::ObjectId.as_str()),
        b = p.next(),
        head = head_sql(backend, &mut p),
    )
}
