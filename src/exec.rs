//! `.exec_audited(db)` on SeaORM's own write builders: a drop-in for `.exec(db)` that returns
//! the same result type and logs every row the statement changed.
//!
//! ```
//! # use sea_orm::entity::prelude::*;
//! # use sea_orm::{DatabaseConnection, DeleteResult};
//! use sea_orm_audit::ExecAudited;
//! # async fn demo<E: EntityTrait>(db: &DatabaseConnection) -> Result<DeleteResult, DbErr>
//! # where E::Model: sea_orm_audit::Auditable {
//! // Was: E::delete_many().exec(db).await
//! E::delete_many().exec_audited(db).await
//! # }
//! ```
//!
//! Each call is one transaction (a savepoint inside the caller's).
//!
//! - DELETE and UPDATE: the rows the statement matches are read first (locked with `FOR
//!   UPDATE` on PostgreSQL and MySQL), the statement runs through SeaORM, and its entries are
//!   written before the commit. If the statement changed rows the read did not see (a row
//!   inserted meanwhile that matches the filter), the count SeaORM reports tells, and
//!   everything rolls back with [`Error::RowsChangedMeanwhile`]: a write is never committed
//!   without its entries.
//! - INSERT: the statement runs through SeaORM on a connection that notes the keys of the rows
//!   it inserted (from `RETURNING`, or what the driver reports), and those rows are read back
//!   by key before the commit, while no other transaction can change them.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Mutex;

use sea_orm::sea_query::{IntoValueTuple, ValueTuple};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, DeleteMany, DeleteResult, EntityTrait,
    ExecResult, FromQueryResult, Insert, InsertMany, InsertManyResult, InsertResult, Iterable,
    ModelTrait, PrimaryKeyToColumn, PrimaryKeyTrait, QueryResult, QueryTrait, Statement,
    TransactionSession, TransactionTrait, TryFromU64, TryInsert, TryInsertResult, UpdateMany,
    UpdateResult, Value,
};

use crate::auditable::{Auditable, object_id};
use crate::bulk::{
    autoinc_step, check_keys_kept, create_entries, delete_entries, fetch_by_keys, update_entries,
};
use crate::capture_db;
use crate::error::Error;
use crate::sql::finish;
use crate::store;
use crate::strict::{self, ManyGuard};

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;

/// Audited execution of a SeaORM write builder: `.exec_audited(db)` instead of `.exec(db)`,
/// the same result type, and one log entry per row the statement changed, all in one
/// transaction (a savepoint inside the caller's).
///
/// - `delete_many()`, `update_many()`: the rows the statement matches are read first; a
///   statement that changed rows its read did not see rolls back with
///   [`Error::RowsChangedMeanwhile`](crate::Error::RowsChangedMeanwhile).
/// - `insert(am)`, `insert_many(..)` and their `TryInsert` (`on_conflict_do_nothing()`): one
///   `create` per row inserted, with the row as stored, the entry an `ActiveModel::insert`
///   hook writes. A row skipped by `ON CONFLICT DO NOTHING` is not logged. Refused before
///   anything runs, with [`Error::BulkInsertUnreadable`](crate::Error::BulkInsertUnreadable):
///   upserts (`ON CONFLICT .. DO UPDATE`), and on MySQL any conflict clause (MySQL does not
///   say which rows it inserted). Without `RETURNING` (MySQL), a multi-row insert of
///   auto-increment keys is read back as the range the statement was assigned, which is exact
///   only under `innodb_autoinc_lock_mode` 0 or 1 (MariaDB's default), checked first.
///
/// An entity in database mode (`capture = "database"`) is logged by its trigger: the call then
/// runs the statement in [`capture_db::transaction`](crate::capture_db::transaction), which
/// hands the [`AuditContext`](crate::AuditContext) to the trigger, and writes no entry of its
/// own.
#[async_trait::async_trait]
pub trait ExecAudited {
    /// What `.exec(db)` returns for this builder.
    type Output;

    /// Runs the statement like `.exec(db)` and logs one entry per row it changed, in one
    /// transaction.
    async fn exec_audited<C>(self, db: &C) -> Result<Self::Output, DbErr>
    where
        C: ConnectionTrait + TransactionTrait;
}

/// SeaORM's own `.exec(db)` of each builder, behind one name.
#[async_trait::async_trait]
trait Exec: QueryTrait + Send + Sized {
    type Output: Send;
    async fn exec_on<C: ConnectionTrait>(self, db: &C) -> Result<Self::Output, DbErr>;
}

/// What every audited execution starts with: strict mode's allowance for the table, a
/// transaction of its own (a savepoint inside the caller's), and the statement as built.
struct Run<T> {
    table: &'static str,
    _strict: ManyGuard,
    txn: T,
    backend: DbBackend,
    statement: Statement,
}

impl<T> Run<T>
where
    T: ConnectionTrait + TransactionSession,
{
    /// The rows `builder` matches, read first (`verb` and `before_where` locate the table and
    /// the condition in its statement), then `builder` run. Refused, as
    /// [`Error::RowsChangedMeanwhile`], when it changed other rows than the read found (an
    /// UPDATE: more rows; MySQL counts only the rows it changed).
    async fn read_then_run<E, B>(
        &self,
        builder: B,
        verb: &str,
        before_where: Option<&str>,
        rows_affected: fn(&B::Output) -> u64,
    ) -> Result<(Vec<E::Model>, B::Output), DbErr>
    where
        E: EntityTrait,
        B: Exec,
    {
        let select = matching_rows(self.backend, &self.statement, verb, before_where)?;
        let old = rows::<E, _>(&self.txn, select).await?;
        let result = builder.exec_on(&self.txn).await?;
        let update = verb.starts_with("UPDATE");
        check_count(
            self.table,
            old.len(),
            rows_affected(&result),
            self.backend,
            update,
        )?;
        Ok((old, result))
    }

    /// `statement`: the builder's, built for `db`'s backend before the first await (a builder
    /// need not be `Sync`).
    async fn start<E, C>(db: &C, statement: Statement) -> Result<Self, DbErr>
    where
        E: EntityTrait,
        C: ConnectionTrait + TransactionTrait<Transaction = T>,
    {
        let table = E::default().table_name();
        let _strict = strict::expect_many(table);
        let txn = db.begin().await?;
        let backend = txn.get_database_backend();
        Ok(Run {
            table,
            _strict,
            txn,
            backend,
            statement,
        })
    }
}

/// A database-mode entity: its trigger logs every row. The statement runs in
/// [`capture_db::transaction`], which hands the current context to the trigger on every
/// backend and seals what the trigger wrote ([`capture_db::transaction_unsealed`] for an
/// entity whose seal is deferred).
async fn by_trigger<E, B, C>(db: &C, builder: B) -> Result<B::Output, DbErr>
where
    E: EntityTrait,
    E::Model: Auditable,
    B: Exec + 'static,
    C: TransactionTrait,
{
    let _strict = strict::expect_many(E::default().table_name());
    if <E::Model as Auditable>::SEAL == crate::Seal::Deferred {
        capture_db::transaction_unsealed(db, move |txn| builder.exec_on(txn)).await
    } else {
        capture_db::transaction(db, move |txn| builder.exec_on(txn)).await
    }
}

#[async_trait::async_trait]
impl<E> ExecAudited for DeleteMany<E>
where
    E: EntityTrait,
    E::Model: Auditable,
{
    type Output = DeleteResult;

    async fn exec_audited<C>(self, db: &C) -> Result<DeleteResult, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        if capture_db::in_database::<E::Model>() {
            return by_trigger::<E, _, _>(db, self).await;
        }
        let statement = db.get_database_backend().build(self.as_query());
        let run = Run::start::<E, _>(db, statement).await?;
        let result = async {
            let (old, result) = run
                .read_then_run::<E, _>(self, "DELETE FROM ", None, |r| r.rows_affected)
                .await?;
            store::write_many(&run.txn, delete_entries(&old)).await?;
            Ok(result)
        }
        .await;
        finish(run.txn, result).await
    }
}

#[async_trait::async_trait]
impl<E> ExecAudited for UpdateMany<E>
where
    E: EntityTrait,
    E::Model: Auditable,
{
    type Output = UpdateResult;

    async fn exec_audited<C>(self, db: &C) -> Result<UpdateResult, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        if capture_db::in_database::<E::Model>() {
            return by_trigger::<E, _, _>(db, self).await;
        }
        let statement = db.get_database_backend().build(self.as_query());
        let run = Run::start::<E, _>(db, statement).await?;
        let result = async {
            let (old, result) = run
                .read_then_run::<E, _>(self, "UPDATE ", Some(" WHERE "), |r| r.rows_affected)
                .await?;
            let keys: Vec<ValueTuple> = old.iter().map(ModelTrait::get_primary_key_value).collect();
            let new = fetch_by_keys::<E, _>(&run.txn, &keys, false).await?;
            check_keys_kept(&old, &new)?;
            store::write_many(&run.txn, update_entries(&old, &new)).await?;
            Ok(result)
        }
        .await;
        finish(run.txn, result).await
    }
}

macro_rules! exec_audited_insert {
    ($builder:ident, $output:ty) => {
        #[async_trait::async_trait]
        impl<A> Exec for $builder<A>
        where
            A: ActiveModelTrait + Send,
        {
            type Output = $output;
            async fn exec_on<C: ConnectionTrait>(self, db: &C) -> Result<$output, DbErr> {
                self.exec(db).await
            }
        }

        #[async_trait::async_trait]
        impl<A> ExecAudited for $builder<A>
        where
            A: ActiveModelTrait + Send + 'static,
            ModelOf<A>: Auditable,
        {
            type Output = $output;

            async fn exec_audited<C>(self, db: &C) -> Result<$output, DbErr>
            where
                C: ConnectionTrait + TransactionTrait,
            {
                if capture_db::in_database::<ModelOf<A>>() {
                    return by_trigger::<A::Entity, _, _>(db, self).await;
                }
                let statement = db.get_database_backend().build(self.as_query());
                let run = Run::start::<A::Entity, _>(db, statement).await?;
                insert_audited::<A::Entity, _, _>(run, self).await
            }
        }
    };
}

exec_audited_insert!(Insert, InsertResult<A>);
exec_audited_insert!(InsertMany, InsertManyResult<A>);
exec_audited_insert!(TryInsert, TryInsertResult<InsertResult<A>>);

#[async_trait::async_trait]
impl<E: EntityTrait> Exec for DeleteMany<E> {
    type Output = DeleteResult;
    async fn exec_on<C: ConnectionTrait>(self, db: &C) -> Result<DeleteResult, DbErr> {
        self.exec(db).await
    }
}

#[async_trait::async_trait]
impl<E: EntityTrait> Exec for UpdateMany<E> {
    type Output = UpdateResult;
    async fn exec_on<C: ConnectionTrait>(self, db: &C) -> Result<UpdateResult, DbErr> {
        self.exec(db).await
    }
}

/// Runs an INSERT through SeaORM on a connection that notes which rows it inserted, reads
/// those rows back in the same transaction (where they are still ours alone: no other
/// transaction can change or delete a row before its insert commits) and logs a `create`
/// for each.
async fn insert_audited<E, B, T>(run: Run<T>, builder: B) -> Result<B::Output, DbErr>
where
    E: EntityTrait,
    E::Model: Auditable,
    B: Exec,
    T: ConnectionTrait + TransactionSession,
{
    let result = insert_logged::<E, B, T>(&run, builder).await;
    finish(run.txn, result).await
}

/// [`insert_audited`]'s write and entries, inside `run`'s transaction.
async fn insert_logged<E, B, T>(run: &Run<T>, builder: B) -> Result<B::Output, DbErr>
where
    E: EntityTrait,
    E::Model: Auditable,
    B: Exec,
    T: ConnectionTrait + TransactionSession,
{
    let entity_type = <E::Model as Auditable>::entity_type();
    refuse_upsert(entity_type, &run.statement)?;
    let observed = Observed::<E, T> {
        inner: &run.txn,
        seen: Mutex::new(Vec::new()),
        entity: PhantomData,
    };
    let out = builder.exec_on(&observed).await?;
    let seen = observed
        .seen
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let mut keys = Vec::new();
    for insert in seen {
        match insert {
            Seen::Returned(returned) => keys.extend(returned),
            Seen::Executed {
                statement,
                last_insert_id,
                rows_affected,
            } => keys.extend(
                keys_without_returning::<E, _>(
                    &run.txn,
                    entity_type,
                    &statement,
                    last_insert_id,
                    rows_affected,
                )
                .await?,
            ),
        }
    }
    let found = fetch_by_keys::<E, _>(&run.txn, &keys, false).await?;
    let mut by_id: HashMap<String, E::Model> = found
        .into_iter()
        .map(|m| (m.audit_object_id(), m))
        .collect();
    let inserted: Vec<E::Model> = keys
        .iter()
        .filter_map(|k| by_id.remove(&object_id(k.clone())))
        .collect();
    if inserted.len() != keys.len() {
        return Err(Error::BulkInsertUnreadable {
            entity_type: entity_type.to_owned(),
            reason: format!(
                "inserted {} rows but found {} of them by key; rolled back",
                keys.len(),
                inserted.len()
            ),
        }
        .into());
    }
    store::write_many(&run.txn, create_entries(&inserted)).await?;
    Ok(out)
}

/// An upsert's updated rows cannot be told from its inserted ones (the log would record an
/// update as a `create` with no old value), and MySQL reports neither for a conflict clause
/// (SeaORM's `on_conflict_do_nothing` is `ON DUPLICATE KEY UPDATE pk = pk` there): refused
/// before anything runs.
fn refuse_upsert(entity_type: &str, statement: &Statement) -> Result<(), Error> {
    let sql = &statement.sql;
    let reason = if sql.contains(" ON DUPLICATE KEY UPDATE ") {
        "MySQL does not say which rows an insert with a conflict clause inserted; \
         use bulk::insert_many, or active models"
    } else if sql.contains(" ON CONFLICT ") && sql.contains(" DO UPDATE ") {
        "an upsert (ON CONFLICT .. DO UPDATE) updates rows it cannot tell from the ones it \
         inserts; use active models, or bulk::update_many and bulk::insert_many"
    } else {
        return Ok(());
    };
    Err(Error::BulkInsertUnreadable {
        entity_type: entity_type.to_owned(),
        reason: format!("refused, nothing was written: {reason}"),
    })
}

/// One INSERT as SeaORM ran it.
enum Seen {
    /// With `RETURNING`: the keys of exactly the rows inserted.
    Returned(Vec<ValueTuple>),
    /// Without: the statement and what the driver reported.
    Executed {
        statement: Statement,
        last_insert_id: u64,
        rows_affected: u64,
    },
}

/// The caller's transaction, passed through untouched, noting each INSERT SeaORM runs on it.
struct Observed<'a, E, T> {
    inner: &'a T,
    seen: Mutex<Vec<Seen>>,
    entity: PhantomData<fn() -> E>,
}

impl<E, T> Observed<'_, E, T> {
    fn note(&self, seen: Seen) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seen);
    }
}

fn is_insert(statement: &Statement) -> bool {
    statement.sql.starts_with("INSERT ")
}

fn key_of<E: EntityTrait>(row: &QueryResult) -> Result<ValueTuple, DbErr> {
    let cols: Vec<String> = E::PrimaryKey::iter()
        .map(|k| sea_orm::IdenStatic::as_str(&k.into_column()).to_owned())
        .collect();
    row.try_get_many::<<E::PrimaryKey as PrimaryKeyTrait>::ValueType>("", &cols)
        .map(IntoValueTuple::into_value_tuple)
}

#[async_trait::async_trait]
impl<E, T> ConnectionTrait for Observed<'_, E, T>
where
    E: EntityTrait,
    T: ConnectionTrait,
{
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        if !is_insert(&stmt) {
            return self.inner.execute_raw(stmt).await;
        }
        let result = self.inner.execute_raw(stmt.clone()).await?;
        // PostgreSQL reports no insert id (SeaORM's `last_insert_id` panics there); its inserts
        // come back through RETURNING.
        let last_insert_id = match self.get_database_backend() {
            DbBackend::Postgres => 0,
            _ => result.last_insert_id(),
        };
        self.note(Seen::Executed {
            statement: stmt,
            last_insert_id,
            rows_affected: result.rows_affected(),
        });
        Ok(result)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.inner.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let insert = is_insert(&stmt);
        let row = self.inner.query_one_raw(stmt).await?;
        if insert {
            let keys = row.iter().map(key_of::<E>).collect::<Result<_, _>>()?;
            self.note(Seen::Returned(keys));
        }
        Ok(row)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let insert = is_insert(&stmt);
        let rows = self.inner.query_all_raw(stmt).await?;
        if insert {
            let keys = rows.iter().map(key_of::<E>).collect::<Result<_, _>>()?;
            self.note(Seen::Returned(keys));
        }
        Ok(rows)
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        self.inner.is_mock_connection()
    }
}

/// The keys of the rows an INSERT without `RETURNING` inserted: those it set itself, or, for
/// an auto-increment key, the ids the driver reports. One row's id is exact on every backend.
/// Several rows' ids are the range MySQL assigned to the statement, exact when
/// `innodb_autoinc_lock_mode` is 0 or 1 (a multi-row VALUES insert then takes its ids in one
/// block, `auto_increment_increment` apart); mode 2 interleaves concurrent inserts, and SQLite
/// without `RETURNING` reports only the last rowid: refused. The rows are then read by key in
/// the same transaction and counted, which rolls back any mismatch.
async fn keys_without_returning<E, C>(
    db: &C,
    entity_type: &str,
    statement: &Statement,
    last_insert_id: u64,
    rows_affected: u64,
) -> Result<Vec<ValueTuple>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let unreadable = |reason: String| -> DbErr {
        Error::BulkInsertUnreadable {
            entity_type: entity_type.to_owned(),
            reason,
        }
        .into()
    };
    let key_columns: Vec<&str> = E::PrimaryKey::iter()
        .map(|k| sea_orm::IdenStatic::as_str(&k.into_column()))
        .collect();
    let rows = statement_keys(db.get_database_backend(), statement, &key_columns)
        .ok_or_else(|| unreadable(format!("cannot read the rows of: {}", statement.sql)))?;
    let n = rows.len() as u64;
    if rows_affected != n {
        return Err(unreadable(format!(
            "the statement reported {rows_affected} rows for {n} values"
        )));
    }
    if rows.iter().all(Option::is_some) {
        return Ok(rows.into_iter().flatten().collect());
    }
    if rows.iter().any(Option::is_some) || key_columns.len() != 1 {
        return Err(unreadable(
            "without RETURNING, set every row's key or none (a single auto-increment key)".into(),
        ));
    }
    let step = if n == 1 {
        1
    } else {
        if db.get_database_backend() != DbBackend::MySql {
            return Err(unreadable(
                "several auto-increment rows without RETURNING (enable SeaORM's \
                 `sqlite-use-returning-for-3_35`, a default feature)"
                    .into(),
            ));
        }
        autoinc_step(db).await?.ok_or_else(|| {
            unreadable(
                "innodb_autoinc_lock_mode is 2: the ids of a multi-row insert may interleave \
                 with other inserts' (insert one row per statement, or use lock mode 1)"
                    .into(),
            )
        })?
    };
    (0..n)
        .map(|k| {
            let id = last_insert_id + k * step;
            <<E::PrimaryKey as PrimaryKeyTrait>::ValueType as TryFromU64>::try_from_u64(id)
                .map(IntoValueTuple::into_value_tuple)
        })
        .collect()
}

/// Each row's key as an INSERT built by SeaORM sets it (`None`: left to the database), read
/// from its column list and bound values: `INSERT INTO t (a, b) VALUES (?, ?), (?, ?)`, or
/// one row of defaults. `None` for any other shape.
fn statement_keys(
    backend: DbBackend,
    statement: &Statement,
    key_columns: &[&str],
) -> Option<Vec<Option<ValueTuple>>> {
    let values: Vec<Value> = statement
        .values
        .as_ref()
        .map(|v| v.0.clone())
        .unwrap_or_default();
    let placeholders = match backend {
        DbBackend::Postgres => statement.sql.matches('$').count(),
        _ => statement.sql.matches('?').count(),
    };
    if placeholders != values.len() {
        return None;
    }
    let Some(open) = statement.sql.find(" (") else {
        // `DEFAULT VALUES` / `() VALUES ()`: one row, every column left to the database.
        return values.is_empty().then(|| vec![None]);
    };
    let close = statement.sql[open..].find(") VALUES ")? + open;
    let listed = &statement.sql[open + 2..close];
    if listed.is_empty() {
        return values.is_empty().then(|| vec![None]);
    }
    let columns: Vec<String> = listed
        .split(", ")
        .map(|c| c.trim_matches(|q| q == '"' || q == '`').to_owned())
        .collect();
    if columns.is_empty() || !values.len().is_multiple_of(columns.len()) {
        return None;
    }
    let at: Vec<Option<usize>> = key_columns
        .iter()
        .map(|k| columns.iter().position(|c| c == k))
        .collect();
    let keys = values
        .chunks(columns.len())
        .map(|row| {
            let key: Option<Vec<Value>> = at
                .iter()
                .map(|i| i.map(|i| row[i].clone()).filter(|v| *v != v.as_null()))
                .collect();
            key.map(ValueTuple::Many)
        })
        .collect();
    Some(keys)
}

/// The rows a DELETE or UPDATE built by SeaORM matches: `SELECT *` from its table with its
/// WHERE clause and the values bound there, locked where the backend locks rows.
///
/// `DELETE FROM t WHERE c` keeps everything after the table; `UPDATE t SET .. WHERE c` keeps
/// the WHERE clause and drops the SET values (renumbering PostgreSQL's placeholders). A
/// statement of another shape (a CTE, a placeholder count that does not add up) is refused
/// rather than guessed at.
fn matching_rows(
    backend: DbBackend,
    statement: &Statement,
    verb: &str,
    split_at: Option<&str>,
) -> Result<Statement, Error> {
    let unsupported = || Error::UnsupportedStatement {
        sql: statement.sql.clone(),
    };
    let values = statement
        .values
        .as_ref()
        .map(|v| v.0.clone())
        .unwrap_or_default();
    let rest = statement.sql.strip_prefix(verb).ok_or_else(unsupported)?;
    let placeholders = |text: &str| match backend {
        DbBackend::Postgres => text.matches('$').count(),
        _ => text.matches('?').count(),
    };
    if placeholders(&statement.sql) != values.len() {
        return Err(unsupported());
    }
    let (from, condition, kept) = match split_at {
        None => {
            // DELETE FROM t [WHERE ..]: the table is the first token.
            let table_end = rest.find(' ').unwrap_or(rest.len());
            (&rest[..table_end], &rest[table_end..], values)
        }
        Some(marker) => {
            let table_end = rest.find(" SET ").ok_or_else(unsupported)?;
            let table = &rest[..table_end];
            match rest.find(marker) {
                None => (table, "", Vec::new()),
                Some(at) => {
                    let dropped = placeholders(&rest[..at]);
                    (table, &rest[at..], values[dropped..].to_vec())
                }
            }
        }
    };
    let mut condition = condition.to_owned();
    if backend == DbBackend::Postgres && split_at.is_some() {
        condition = renumber(&condition);
    }
    let lock = if backend == DbBackend::Sqlite {
        ""
    } else {
        " FOR UPDATE"
    };
    Ok(Statement::from_sql_and_values(
        backend,
        format!("SELECT * FROM {from}{condition}{lock}"),
        kept,
    ))
}

/// `$k`, `$k+1`, .. renumbered from `$1`, in order.
fn renumber(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

async fn rows<E, C>(db: &C, select: Statement) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    db.query_all_raw(select)
        .await?
        .iter()
        .map(|row| E::Model::from_query_result(row, ""))
        .collect()
}

/// SeaORM's count against the rows read before. MySQL counts only rows an UPDATE changed (rows
/// set to what they held are not counted), so there an update may report fewer, never more.
fn check_count(
    entity_type: &str,
    read: usize,
    affected: u64,
    backend: DbBackend,
    update: bool,
) -> Result<(), Error> {
    let read = read as u64;
    let fine = if update && backend == DbBackend::MySql {
        affected <= read
    } else {
        affected == read
    };
    if fine {
        Ok(())
    } else {
        Err(Error::RowsChangedMeanwhile {
            entity_type: entity_type.to_owned(),
            read,
            affected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_keys_are_read_from_the_column_list_and_values() {
        let keys = |sql: &str, values: Vec<Value>| {
            let statement = Statement::from_sql_and_values(DbBackend::MySql, sql, values);
            statement_keys(DbBackend::MySql, &statement, &["id"])
        };
        let both = keys(
            "INSERT INTO `t` (`id`, `name`) VALUES (?, ?), (?, ?)",
            vec![7.into(), "a".into(), 9.into(), "b".into()],
        )
        .unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[1], Some(ValueTuple::Many(vec![9.into()])));
        let auto = keys(
            "INSERT INTO `t` (`id`, `name`) VALUES (?, ?)",
            vec![Value::Int(None), "a".into()],
        )
        .unwrap();
        assert_eq!(auto, vec![None]);
        assert_eq!(
            keys("INSERT INTO `t` (`name`) VALUES (?)", vec!["a".into()]).unwrap(),
            vec![None]
        );
        assert_eq!(
            keys("INSERT INTO `t` () VALUES ()", vec![]).unwrap(),
            vec![None]
        );
        // A placeholder count that does not add up: not guessed at.
        assert!(keys("INSERT INTO `t` (`id`) VALUES (?)", vec![]).is_none());
    }

    #[test]
    fn placeholders_renumber_from_one() {
        assert_eq!(
            renumber(r#" WHERE "a" = $3 AND "b" IN ($4, $5)"#),
            r#" WHERE "a" = $1 AND "b" IN ($2, $3)"#
        );
    }

    #[test]
    fn an_update_keeps_its_where_clause_and_values() {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            r#"UPDATE "posts" SET "views" = $1 WHERE "posts"."id" > $2"#,
            [5.into(), 10.into()],
        );
        let select =
            matching_rows(DbBackend::Postgres, &statement, "UPDATE ", Some(" WHERE ")).unwrap();
        assert_eq!(
            select.sql,
            r#"SELECT * FROM "posts" WHERE "posts"."id" > $1 FOR UPDATE"#
        );
        assert_eq!(select.values.unwrap().0, vec![sea_orm::Value::from(10)]);
        let odd = Statement::from_string(DbBackend::MySql, "WITH x AS (..) DELETE FROM t");
        assert!(matching_rows(DbBackend::MySql, &odd, "DELETE FROM ", None).is_err());
    }
}
