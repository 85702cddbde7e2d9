//! Audited counterparts of SeaORM's bulk writes, which call no hooks.
//!
//! Each function runs in one transaction of its own (a savepoint when `db` already is a
//! transaction), so the rows and their log entries commit together. Statements are batched:
//! multi-row INSERTs, `RETURNING` where the backend has it, key lists of at most
//! [`KEYS_PER_STATEMENT`] otherwise. Like SeaORM's own bulk methods they do not run the
//! entity's `ActiveModelBehavior` hooks.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, IntoValueTuple, ValueTuple};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityName,
    EntityTrait, IntoActiveModel, Iterable, ModelTrait, PrimaryKeyToColumn, PrimaryKeyTrait,
    QueryFilter, QuerySelect, Statement, TransactionTrait, Value,
};
use serde_json::Map;

use crate::Action;
use crate::auditable::{Auditable, snapshot};
use crate::capture::change_entry;
use crate::error::Error;
use crate::sql::finish;
use crate::store;
use crate::strict;

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;

pub use crate::sql::KEYS_PER_STATEMENT;

fn key_columns<E: EntityTrait>() -> Vec<E::Column> {
    E::PrimaryKey::iter().map(|k| k.into_column()).collect()
}

/// `pk IN (...)` for one or many key columns.
fn keys_condition<E: EntityTrait>(keys: &[ValueTuple]) -> Condition {
    let cols = key_columns::<E>();
    if cols.len() == 1 {
        let values = keys.iter().filter_map(|k| k.clone().into_iter().next());
        Condition::all().add(cols[0].is_in(values))
    } else {
        let tuple = Expr::tuple(cols.iter().map(|c| Expr::col(*c)));
        Condition::all().add(tuple.in_tuples(keys.iter().cloned()))
    }
}

pub(crate) async fn fetch_by_keys<E, C>(
    db: &C,
    keys: &[ValueTuple],
    lock: bool,
) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        let mut query = E::find().filter(keys_condition::<E>(chunk));
        if lock && db.get_database_backend() != DbBackend::Sqlite {
            query = query.lock_exclusive();
        }
        out.extend(query.all(db).await?);
    }
    Ok(out)
}

/// Inserts many rows and logs one `create` per row, as stored.
///
/// Uses `INSERT ... RETURNING` where available. On MySQL (no `RETURNING`), rows whose keys are
/// all set are read back by key; auto-increment rows are read back from the ids MySQL assigned
/// to the statement, one block `auto_increment_increment` apart under `innodb_autoinc_lock_mode`
/// 0 or 1 (MariaDB's default), or, under mode 2, where a concurrent insert's ids may
/// interleave, inserted one row per statement; a row count that does not match is reported as
/// an error and rolls everything back.
pub async fn insert_many<A, C>(
    db: &C,
    models: impl IntoIterator<Item = A>,
) -> Result<Vec<ModelOf<A>>, DbErr>
where
    A: ActiveModelTrait + Send,
    ModelOf<A>: Auditable + IntoActiveModel<A>,
    C: ConnectionTrait + TransactionTrait,
{
    let _strict = strict::expect_many(A::Entity::default().table_name());
    let models: Vec<A> = models.into_iter().collect();
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let txn = db.begin().await?;
    let result = async {
        let per = crate::sql::rows_per_insert(txn.get_database_backend());
        let mut inserted = Vec::with_capacity(models.len());
        let mut rows = models.into_iter().peekable();
        while rows.peek().is_some() {
            let batch: Vec<A> = rows.by_ref().take(per).collect();
            if txn.support_returning() {
                inserted.extend(
                    A::Entity::insert_many(batch)
                        .exec_with_returning(&txn)
                        .await?,
                );
            } else {
                inserted.extend(insert_without_returning::<A, _>(&txn, batch).await?);
            }
        }
        store::write_many(&txn, create_entries(&inserted)).await?;
        Ok(inserted)
    }
    .await;
    finish(txn, result).await
}

async fn insert_without_returning<A, C>(db: &C, batch: Vec<A>) -> Result<Vec<ModelOf<A>>, DbErr>
where
    A: ActiveModelTrait + Send,
    ModelOf<A>: Auditable + IntoActiveModel<A>,
    C: ConnectionTrait,
{
    let n = batch.len();
    let keys: Option<Vec<ValueTuple>> = batch.iter().map(|am| am.get_primary_key_value()).collect();
    if let Some(keys) = keys {
        A::Entity::insert_many(batch)
            .exec_without_returning(db)
            .await?;
        return fetch_by_keys::<A::Entity, C>(db, &keys, false).await;
    }
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    let unreadable = |reason: String| Error::BulkInsertUnreadable {
        entity_type: entity_type.to_owned(),
        reason,
    };
    if key_columns::<A::Entity>().len() != 1 {
        return Err(unreadable(
            "without RETURNING, rows need their primary key set or a single auto-increment key"
                .into(),
        )
        .into());
    }
    // A multi-row insert's ids are one block, `auto_increment_increment` apart, under
    // `innodb_autoinc_lock_mode` 0 or 1; under 2 a concurrent insert's ids can interleave with
    // them, and a range read would take its rows for ours: one row per statement there, each
    // id exact.
    // Rows that set their key take no id from the block: one row per statement for those
    // batches too.
    let some_keys_set = batch.iter().any(|am| am.get_primary_key_value().is_some());
    let step = if n == 1 {
        Some(1)
    } else if some_keys_set {
        None
    } else {
        autoinc_step(db).await?
    };
    let ids: Vec<i64> = match step {
        Some(step) => {
            let result = A::Entity::insert_many(batch).exec(db).await?;
            let first = first_id(result.last_insert_id)
                .ok_or_else(|| unreadable("MySQL reported no insert id".into()))?;
            let step = i64::try_from(step).unwrap_or(1);
            (0..i64::try_from(n).unwrap_or(i64::MAX))
                .map(|k| first + k * step)
                .collect()
        }
        None => {
            let mut ids = Vec::with_capacity(n);
            for am in batch {
                let result = A::Entity::insert(am).exec(db).await?;
                ids.push(
                    first_id(Some(result.last_insert_id))
                        .ok_or_else(|| unreadable("MySQL reported no insert id".into()))?,
                );
            }
            ids
        }
    };
    let keys: Vec<ValueTuple> = ids.iter().map(|id| id.into_value_tuple()).collect();
    let mut rows = fetch_by_keys::<A::Entity, C>(db, &keys, false).await?;
    if rows.len() != n {
        return Err(unreadable(format!(
            "inserted {n} rows but found {} with the ids MySQL reported",
            rows.len()
        ))
        .into());
    }
    // In the order of the models given.
    let order: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    rows.sort_by_key(|m| {
        first_id(Some(m.get_primary_key_value()))
            .and_then(|id| order.get(&id).copied())
            .unwrap_or(usize::MAX)
    });
    Ok(rows)
}

/// The integer of an auto-increment key as SeaORM reports it.
fn first_id<K: IntoValueTuple>(key: Option<K>) -> Option<i64> {
    key.map(IntoValueTuple::into_value_tuple)
        .and_then(|t| t.into_iter().next())
        .and_then(|v| integer(&v))
}

/// `auto_increment_increment` when a multi-row insert's ids are one block (lock mode 0 or 1).
pub(crate) async fn autoinc_step<C: ConnectionTrait>(db: &C) -> Result<Option<u64>, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::MySql,
            "SELECT CAST(@@innodb_autoinc_lock_mode AS SIGNED) AS lock_mode, \
             CAST(@@auto_increment_increment AS SIGNED) AS step",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row from SELECT @@innodb_autoinc_lock_mode".into()))?;
    let mode: i64 = row.try_get("", "lock_mode")?;
    let step: i64 = row.try_get("", "step")?;
    Ok(matches!(mode, 0 | 1)
        .then(|| u64::try_from(step).ok())
        .flatten())
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::TinyInt(Some(x)) => Some(i64::from(*x)),
        Value::SmallInt(Some(x)) => Some(i64::from(*x)),
        Value::Int(Some(x)) => Some(i64::from(*x)),
        Value::BigInt(Some(x)) => Some(*x),
        Value::TinyUnsigned(Some(x)) => Some(i64::from(*x)),
        Value::SmallUnsigned(Some(x)) => Some(i64::from(*x)),
        Value::Unsigned(Some(x)) => Some(i64::from(*x)),
        Value::BigUnsigned(Some(x)) => i64::try_from(*x).ok(),
        _ => None,
    }
}

/// Updates every row matching `filter` with the `Set` columns of `values`, and logs one `update`
/// per row whose audited values changed. Returns the updated rows.
///
/// The matching rows are read first (`FOR UPDATE` on PostgreSQL and MySQL), then updated by
/// key, so the log describes exactly the rows written, with their exact before-images.
pub async fn update_many<E, C>(
    db: &C,
    filter: Condition,
    values: E::ActiveModel,
) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: Auditable,
    E::ActiveModel: Send,
    C: ConnectionTrait + TransactionTrait,
{
    let _strict = strict::expect_many(E::default().table_name());
    let txn = db.begin().await?;
    let result = async {
        let mut query = E::find().filter(filter.clone());
        if txn.get_database_backend() != DbBackend::Sqlite {
            query = query.lock_exclusive();
        }
        let old = query.all(&txn).await?;
        if old.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<ValueTuple> = old.iter().map(ModelTrait::get_primary_key_value).collect();
        let mut new = Vec::with_capacity(old.len());
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let update = E::update_many()
                .set(values.clone())
                .filter(keys_condition::<E>(chunk));
            if txn.support_returning() {
                new.extend(update.exec_with_returning(&txn).await?);
            } else {
                update.exec(&txn).await?;
                new.extend(fetch_by_keys::<E, _>(&txn, chunk, false).await?);
            }
        }
        check_keys_kept(&old, &new)?;
        store::write_many(&txn, update_entries(&old, &new)).await?;
        Ok(new)
    }
    .await;
    finish(txn, result).await
}

/// One `create` entry per row, the row as stored as `new_value`: the entry an
/// `ActiveModel::insert` hook writes, for each row of a bulk insert.
pub(crate) fn create_entries<M: Auditable>(inserted: &[M]) -> Vec<crate::store::NewEntry> {
    inserted
        .iter()
        .filter_map(|m| {
            change_entry::<M>(
                Action::Create,
                m.audit_object_id(),
                &Map::new(),
                &snapshot(m),
            )
        })
        .collect()
}

/// One `delete` entry per row, its full before-image as `old_value`: the entries of a bulk
/// delete.
pub(crate) fn delete_entries<M: Auditable>(deleted: &[M]) -> Vec<crate::store::NewEntry> {
    deleted
        .iter()
        .filter_map(|m| {
            change_entry::<M>(
                Action::Delete,
                m.audit_object_id(),
                &snapshot(m),
                &Map::new(),
            )
        })
        .collect()
}

/// Refuses a bulk update whose rows after the write (`new`) are not the rows before it
/// (`old`) by key: the entries pair them by object id, so a changed key would leave the write
/// unlogged.
pub(crate) fn check_keys_kept<M: Auditable>(old: &[M], new: &[M]) -> Result<(), Error> {
    // The database's triggers log this entity, key changes included.
    if crate::capture_db::in_database::<M>() {
        return Ok(());
    }
    let ids: std::collections::HashSet<String> = old.iter().map(|m| m.audit_object_id()).collect();
    if new.len() != old.len() || new.iter().any(|m| !ids.contains(&m.audit_object_id())) {
        return Err(Error::KeyChanged {
            entity_type: M::entity_type().to_owned(),
        });
    }
    Ok(())
}

/// One `update` entry per row of `new` that differs from its row in `old` (matched by object
/// id): the entries of a bulk update.
pub(crate) fn update_entries<M: Auditable>(old: &[M], new: &[M]) -> Vec<crate::store::NewEntry> {
    let mut before: HashMap<String, Map<String, serde_json::Value>> = old
        .iter()
        .map(|m| (m.audit_object_id(), snapshot(m)))
        .collect();
    new.iter()
        .filter_map(|m| {
            let id = m.audit_object_id();
            let old = before.remove(&id)?;
            change_entry::<M>(Action::Update, id, &old, &snapshot(m))
        })
        .collect()
}

/// Deletes every row matching `filter` and logs one `delete` per row with its full
/// before-image. Returns the number of rows deleted.
///
/// One `DELETE ... RETURNING` where the backend has it; otherwise the rows are read
/// `FOR UPDATE` and deleted by key.
pub async fn delete_many<E, C>(db: &C, filter: Condition) -> Result<u64, DbErr>
where
    E: EntityTrait,
    E::Model: Auditable,
    C: ConnectionTrait + TransactionTrait,
{
    let _strict = strict::expect_many(E::default().table_name());
    let txn = db.begin().await?;
    let result = async {
        let deleted: Vec<E::Model> = if txn.support_returning() {
            E::delete_many()
                .filter(filter)
                .exec_with_returning(&txn)
                .await?
        } else {
            let old = E::find().filter(filter).lock_exclusive().all(&txn).await?;
            let keys: Vec<ValueTuple> = old.iter().map(ModelTrait::get_primary_key_value).collect();
            for chunk in keys.chunks(KEYS_PER_STATEMENT) {
                E::delete_many()
                    .filter(keys_condition::<E>(chunk))
                    .exec(&txn)
                    .await?;
            }
            old
        };
        store::write_many(&txn, delete_entries(&deleted)).await?;
        Ok(deleted.len() as u64)
    }
    .await;
    finish(txn, result).await
}

/// Deletes the row with this primary key, logging it like [`delete_many`]. Returns 0 or 1.
pub async fn delete_by_id<E, C>(
    db: &C,
    id: impl Into<<E::PrimaryKey as PrimaryKeyTrait>::ValueType>,
) -> Result<u64, DbErr>
where
    E: EntityTrait,
    E::Model: Auditable,
    C: ConnectionTrait + TransactionTrait,
{
    let key = id.into().into_value_tuple();
    let mut cond = Condition::all();
    for (col, value) in key_columns::<E>().into_iter().zip(key) {
        cond = cond.add(col.eq(value));
    }
    delete_many::<E, C>(db, cond).await
}
