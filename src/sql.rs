//! The one place hand-written SQL is put together: placeholders, identifier quoting, statement
//! sizes and time binding per backend. Every hand-written statement of the crate goes through
//! it; sea-query builds the rest. Also how the crate's own transactions end ([`finish`]).

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, DbErr, TransactionSession, Value};

/// Keys per `IN (...)` list or multi-row statement: well under every backend's limit on bound
/// parameters (SQLite 32,766, PostgreSQL 65,535, MySQL 65,535).
pub const KEYS_PER_STATEMENT: usize = 1000;

/// Rows per multi-row INSERT of log entries. PostgreSQL stays at 100, below the size at which
/// sqlx 0.9 stalls on each such statement (BENCHMARKS.md, "Facts these numbers rest on");
/// SQLite and MySQL take larger batches well.
pub(crate) fn rows_per_insert(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Postgres => 100,
        _ => 500,
    }
}

/// A `created_at` value, to write or compare with. sqlx binds `DateTime<Utc>` as a MySQL
/// TIMESTAMP parameter, which turns anything after 2038-01-19 into NULL even for a DATETIME
/// column: bind the UTC wall time as DATETIME there.
pub(crate) fn time_value(backend: DbBackend, at: DateTime<Utc>) -> Value {
    match backend {
        DbBackend::MySql => Value::ChronoDateTime(Some(at.naive_utc())),
        _ => Value::ChronoDateTimeUtc(Some(at)),
    }
}

/// Numbers a statement's placeholders in order: `$1, $2, ..` on PostgreSQL, `?` elsewhere.
/// Values are bound in the same order, never written into the text.
#[derive(Debug)]
pub(crate) struct Placeholders {
    backend: DbBackend,
    next: usize,
}

impl Placeholders {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Placeholders { backend, next: 1 }
    }

    /// The next placeholder.
    pub(crate) fn next(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        match self.backend {
            DbBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        }
    }

    /// `template` with each `{p}` replaced by the next placeholder.
    pub(crate) fn fill(&mut self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(at) = rest.find("{p}") {
            out.push_str(&rest[..at]);
            out.push_str(&self.next());
            rest = &rest[at + 3..];
        }
        out.push_str(rest);
        out
    }
}

/// An identifier (table or column name, as SeaORM names it) quoted for the backend.
pub(crate) fn quote(backend: DbBackend, ident: &str) -> String {
    match backend {
        DbBackend::MySql => format!("`{}`", ident.replace('`', "``")),
        _ => format!("\"{}\"", ident.replace('"', "\"\"")),
    }
}

/// A text literal for statements that take no parameters (DDL: `COMMENT ON`, trigger bodies):
/// single quotes doubled. Assumes standard-conforming strings (a backslash is an ordinary
/// character): the default of PostgreSQL 9.1+ and of SQLite; MySQL's is [`mysql_literal`].
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A string literal that reads the same whatever the session's `sql_mode`: MySQL reads
/// backslash escapes in literals unless `NO_BACKSLASH_ESCAPES` is set (sqlx does not set it),
/// and a trigger keeps the mode it was created in. Text with a backslash (an entity type
/// `App\Models\Post`, a column name) is written as its UTF-8 bytes in hex; before, such an
/// entity type was logged without its backslashes, and a column name with a quote, whose JSON
/// path needs one, failed every update.
pub(crate) fn mysql_literal(text: &str) -> String {
    if !text.contains('\\') {
        return literal(text);
    }
    let hex: String = text.bytes().map(|b| format!("{b:02X}")).collect();
    format!("CONVERT(X'{hex}' USING utf8mb4)")
}

/// Ends a transaction the crate began: commits it if `result` is `Ok`, otherwise rolls it back
/// and returns the error. Every one of the crate's transactions ends here rather than by
/// being dropped, except where SeaORM leaves no choice: a COMMIT that fails, and a caller's
/// future cancelled mid-transaction, still end by the drop. SeaORM's drop only queues the
/// rollback, which the pool sends once the connection is back, after the caller's next
/// statement has perhaps run; until then the transaction's locks stay held: MariaDB's row
/// locks (another connection's `FOR UPDATE NOWAIT` was refused, 3 runs of 3) and SQLite's
/// write lock ("database is locked", 1 of 3; in CI after a refused key change) in
/// `tests/bulk.rs` `a_failed_bulk_write_gives_back_its_locks_before_it_returns` before this
/// (PostgreSQL passed it before too: a statement's error aborts the transaction there and
/// frees its locks at once; an error of the crate's own between statements would not).
pub(crate) async fn finish<T, E, X>(txn: X, result: Result<T, E>) -> Result<T, E>
where
    X: TransactionSession,
    E: From<DbErr>,
{
    match result {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        // The error is what to report; a failed rollback leaves the queued one.
        Err(e) => {
            txn.rollback().await.ok();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_in_order() {
        let mut p = Placeholders::new(DbBackend::Postgres);
        assert_eq!(
            p.fill("a = {p} AND b IN ({p}, {p})"),
            "a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(p.next(), "$4");
        let mut p = Placeholders::new(DbBackend::MySql);
        assert_eq!(p.fill("a = {p} AND b = {p}"), "a = ? AND b = ?");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote(DbBackend::Postgres, "audit_log"), "\"audit_log\"");
        assert_eq!(quote(DbBackend::MySql, "a`b"), "`a``b`");
        assert_eq!(quote(DbBackend::Sqlite, "a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(mysql_literal("it's"), "'it''s'");
        assert_eq!(mysql_literal("a\\b"), "CONVERT(X'615C62' USING utf8mb4)");
    }
}
