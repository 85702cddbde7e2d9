//! `.exec_audited(db)` on SeaORM's own bulk builders: a drop-in for `.exec(db)` that returns
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
//! Each call is one transaction (a savepoint inside the caller's): the rows the statement
//! matches are read first (locked with `FOR UPDATE` on PostgreSQL and MySQL), the statement
//! runs through SeaORM, and its entries are written before the commit. If the statement
//! changed rows the read did not see (a row inserted meanwhile that matches the filter), the
//! count SeaORM reports tells, and everything rolls back with [`Error::RowsChangedMeanwhile`]:
//! a write is never committed without its entries.

use sea_orm::sea_query::ValueTuple;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, DeleteMany, DeleteResult, EntityTrait, FromQueryResult,
    ModelTrait, QueryTrait, Statement, TransactionSession, TransactionTrait, UpdateMany,
    UpdateResult,
};

use crate::auditable::Auditable;
use crate::bulk::{check_keys_kept, delete_entries, fetch_by_keys, update_entries};
use crate::error::Error;
use crate::store;
use crate::strict;

/// Audited execution of a SeaORM bulk builder: `.exec_audited(db)` instead of `.exec(db)`,
/// the same result type, and one log entry per row the statement changed, all in one
/// transaction (a savepoint inside the caller's). A statement that changed rows its read did
/// not see rolls back with [`Error::RowsChangedMeanwhile`](crate::Error::RowsChangedMeanwhile).
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
        let table = E::default().table_name();
        let _strict = strict::expect_many(table);
        let txn = db.begin().await?;
        let backend = txn.get_database_backend();
        let statement = backend.build(self.as_query());
        let select = matching_rows(backend, &statement, "DELETE FROM ", None)?;
        let old = rows::<E, _>(&txn, select).await?;
        let result = self.exec(&txn).await?;
        check_count(table, old.len(), result.rows_affected, backend, false)?;
        store::write_many(&txn, delete_entries(&old)).await?;
        txn.commit().await?;
        Ok(result)
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
        let table = E::default().table_name();
        let _strict = strict::expect_many(table);
        let txn = db.begin().await?;
        let backend = txn.get_database_backend();
        let statement = backend.build(self.as_query());
        let select = matching_rows(backend, &statement, "UPDATE ", Some(" WHERE "))?;
        let old = rows::<E, _>(&txn, select).await?;
        let result = self.exec(&txn).await?;
        check_count(table, old.len(), result.rows_affected, backend, true)?;
        let keys: Vec<ValueTuple> = old.iter().map(ModelTrait::get_primary_key_value).collect();
        let new = fetch_by_keys::<E, _>(&txn, &keys, false).await?;
        check_keys_kept(&old, &new)?;
        store::write_many(&txn, update_entries(&old, &new)).await?;
        txn.commit().await?;
        Ok(result)
    }
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
