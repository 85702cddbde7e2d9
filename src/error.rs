//! The crate's one error type.

use sea_orm::DbErr;

/// Everything that can go wrong while recording or reading the audit log.
///
/// Converts into [`DbErr`], so `?` works inside `ActiveModelBehavior` hooks and a failing log
/// write fails the write it describes: a database error as the database's own `DbErr` (its
/// kind intact), anything else as `DbErr::Custom` prefixed `sea-orm-audit:`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database rejected a statement issued by the audit layer.
    #[error("{context}: {source}")]
    Db {
        /// What the audit layer was doing.
        context: String,
        /// The database error.
        #[source]
        source: DbErr,
    },
    /// `after_save`/`after_delete` ran without the snapshot its `before_*` hook takes.
    #[error(
        "no before-snapshot for {action} of {entity_type} {object_id}: call \
         sea_orm_audit::before_save / before_delete in the matching hook"
    )]
    MissingSnapshot {
        /// `update` or `delete`.
        action: &'static str,
        /// The audited entity type.
        entity_type: String,
        /// The object's canonical id.
        object_id: String,
    },
    /// Another audited write of the same object is in flight in the same task (two writes
    /// joined with `tokio::join!`, say) and did not finish within
    /// [`IN_FLIGHT_WAIT`](crate::IN_FLIGHT_WAIT). Raised by the `before_*` hook, so
    /// this write did not run.
    #[error(
        "another audited write of {entity_type} {object_id} is in flight in this task; \
         run writes of one object one after the other"
    )]
    WriteInFlight {
        /// The audited entity type.
        entity_type: String,
        /// The object's canonical id.
        object_id: String,
    },
    /// An update or delete reached the audit hook without a complete primary key.
    #[error("{entity_type}: the primary key is not set, so the object cannot be audited")]
    MissingPrimaryKey {
        /// The audited entity type.
        entity_type: String,
    },
    /// A stored log row could not be decoded.
    #[error("audit_log row {id}: {reason}")]
    Corrupt {
        /// The row's id.
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// A field of a log row is longer than its column holds (see [`crate::MAX_KEY_CHARS`]).
    /// Checked before the audited write runs, so nothing was written.
    #[error("audit log field `{field}` is {chars} characters long; at most {max_chars} fit")]
    TooLong {
        /// `entity_type`, `object_id`, `action`, `actor` or `tool`.
        field: &'static str,
        /// The limit.
        max_chars: usize,
        /// The value's length.
        chars: usize,
    },
    /// A JSON value an audited write sets nests more arrays and objects than serde_json reads
    /// back ([`crate::READABLE_JSON_DEPTH`]): SeaORM's read of the row after the write
    /// would fail, after the write and before its entry (outside a transaction the row stayed
    /// with no entry). Checked before the write runs, so nothing was written.
    #[error(
        "column `{column}` is set to JSON nested deeper than {max} levels, which cannot be read back"
    )]
    JsonTooDeep {
        /// The column.
        column: String,
        /// The limit.
        max: usize,
    },
    /// A field of a log row holds a NUL character, which the database cannot store.
    #[error("audit log field `{field}` contains a NUL character, which the database cannot store")]
    Nul {
        /// The field.
        field: &'static str,
    },
    /// A trusted proxy network (`web::Cidr`) that does not parse.
    #[error("invalid IP network {input:?}: {reason}")]
    BadNetwork {
        /// The text given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `ActivityWriter::flush` after the writer shut down.
    #[error("the API activity writer has shut down")]
    WriterStopped,
    /// No log entry has this id.
    #[error("no audit log entry {entry_id}")]
    NoSuchEntry {
        /// The id asked for.
        entry_id: i64,
    },
    /// The entry exists but is about another object than the one named.
    #[error(
        "entry {entry_id} is about {}, not {expected}",
        found.as_deref().unwrap_or("another object")
    )]
    EntryNotAbout {
        /// The entry.
        entry_id: i64,
        /// What the caller named (an entity type, or an entity type and object id).
        expected: String,
        /// What the entry is about, where known.
        found: Option<String>,
    },
    /// `revert` was given an entry that records no change (an event, a read).
    #[error("entry {entry_id} ({action}) records no change to undo")]
    NothingToUndo {
        /// The entry.
        entry_id: i64,
        /// Its action.
        action: String,
    },
    /// `restore` of an object whose last entry is not a delete.
    #[error("{entity_type} {object_id} is not deleted")]
    NotDeleted {
        /// The entity type.
        entity_type: String,
        /// The object id.
        object_id: String,
    },
    /// `restore` of an object the log knows nothing about.
    #[error("{entity_type} {object_id} has no history")]
    NoHistory {
        /// The entity type.
        entity_type: String,
        /// The object id.
        object_id: String,
    },
    /// Columns whose values the log never stored (masked, or too deeply nested): a restore
    /// must fill them itself (`restore_with`).
    #[error(
        "{entity_type} {object_id}: masked column(s) {} were never stored (masked, or nested \
         too deep to record); fill them with restore_with",
        columns.join(", ")
    )]
    NotRecorded {
        /// The entity type.
        entity_type: String,
        /// The object id.
        object_id: String,
        /// The columns.
        columns: Vec<&'static str>,
    },
    /// An object id that does not fit the entity's primary key.
    #[error("object id {object_id:?} does not fit the primary key: {reason}")]
    BadObjectId {
        /// The object id.
        object_id: String,
        /// Why.
        reason: String,
    },
    /// A logged value that no longer fits its column's type.
    #[error("column {column}: {value} does not fit the column's type")]
    ValueDoesNotFit {
        /// The column.
        column: &'static str,
        /// The logged value.
        value: String,
    },
    /// A retention policy that says neither `older_than` nor `keep_latest`.
    #[error("a retention policy needs older_than, keep_latest or both")]
    EmptyRetentionPolicy,
    /// A message template that cannot be rendered.
    #[error("message template {template:?}: {reason}")]
    BadTemplate {
        /// The template text.
        template: String,
        /// What is wrong (a placeholder without a value, an unclosed brace).
        reason: String,
    },
    /// A bulk insert (or `.exec_audited(db)` on an insert) whose inserted rows cannot be
    /// known exactly: refused before it runs, or rolled back.
    #[error("bulk insert into {entity_type}: {reason}")]
    BulkInsertUnreadable {
        /// The entity type.
        entity_type: String,
        /// Why the rows cannot be found.
        reason: String,
    },
    /// Writes that bypassed the audit hooks, reported by [`crate::Strict::check`].
    #[error("{} unaudited write(s): {}", writes.len(), writes.join("; "))]
    UnauditedWrites {
        /// Each write, as `table: SQL`.
        writes: Vec<String>,
    },
    /// The `audit_log` table, or on MySQL/MariaDB `audit_chain_head`, does not exist: the
    /// audit migrations have not run (or ran after a migration that writes audited rows).
    #[error(
        "the audit_log table (on MySQL also audit_chain_head) does not exist: run \
         sea_orm_audit_migration::migrations() (or create_schema) before any write to an \
         audited entity, and put them first in your Migrator ({source})"
    )]
    MissingLogTable {
        /// The database's error.
        #[source]
        source: DbErr,
    },
    /// An audited bulk statement changed a different number of rows than it matched when read
    /// just before (a matching row was inserted meanwhile): rolled back, nothing written.
    #[error(
        "{entity_type}: the statement changed {affected} row(s) but {read} matched just before; \
         rolled back so that no change goes unlogged (retry it)"
    )]
    RowsChangedMeanwhile {
        /// The entity type.
        entity_type: String,
        /// Rows read before the statement.
        read: u64,
        /// Rows the statement reported.
        affected: u64,
    },
    /// A statement `exec_audited` cannot read the matching rows of (a CTE, custom SQL with
    /// placeholders it cannot account for).
    #[error("exec_audited cannot find the rows this statement matches: {sql}")]
    UnsupportedStatement {
        /// The statement.
        sql: String,
    },
    /// A bulk update (`bulk::update_many`, `exec_audited`) changed a primary key: the hooks'
    /// log pairs each row's before- and after-image by its key, so it cannot log this write;
    /// it was rolled back. Write it as a delete and an insert, or capture the entity in the
    /// database, whose triggers log it as the old object's `delete` and the new one's
    /// `create`.
    #[error(
        "{entity_type}: this update changes a primary key, which the hooks cannot log (rolled \
         back); delete and insert instead, or use database-side capture"
    )]
    KeyChanged {
        /// The entity type.
        entity_type: String,
    },
    /// Database-side capture ([`crate::capture_db`]) is not available on this backend. An
    /// entity declared `capture = "database"` fails its audited writes here rather than go
    /// unaudited.
    #[error("database-side capture is not supported on {backend} yet; use hook capture")]
    CaptureNotSupported {
        /// The backend's name.
        backend: &'static str,
    },
    /// A column whose Rust type the database-side capture cannot encode exactly as the hooks do
    /// (`DateTime<Local>`, the `time` crate's types, arrays...).
    #[error(
        "{table}.{column}: database-side capture cannot encode this column's type as the hooks do: {reason}"
    )]
    CaptureUnsupportedColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// A name the database would truncate or refuse (PostgreSQL identifiers hold 63 bytes,
    /// MySQL's 64 characters).
    #[error(
        "identifier {name} is longer than the database's {max_bytes} (bytes on PostgreSQL, characters on MySQL)"
    )]
    IdentifierTooLong {
        /// The name.
        name: String,
        /// The limit.
        max_bytes: usize,
    },
    /// [`capture_db::check_carried`](crate::capture_db::check_carried): the pool gave out a
    /// connection whose session does not hold the acquiring task's context, so writes through
    /// it could be recorded under another task's actor.
    #[error("the pool does not carry the audit context: {reason}")]
    ContextNotCarried {
        /// What the check saw.
        reason: String,
    },
    /// A table that does not exist (installing a capture needs the table and `audit_log`).
    #[error("table {table} does not exist")]
    NoSuchTable {
        /// The table.
        table: String,
    },
    /// A log row the query builder refused (a bug in this crate).
    #[error("building the audit log INSERT: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn db(context: impl Into<String>, source: DbErr) -> Self {
        if is_missing_log_table(&source) {
            return Error::MissingLogTable { source };
        }
        Error::Db {
            context: context.into(),
            source,
        }
    }
}

/// A database error met by a function that returns this crate's [`Error`]: its kind intact,
/// in [`Error::Db`].
impl From<DbErr> for Error {
    fn from(source: DbErr) -> Self {
        Error::db("the database", source)
    }
}

impl From<Error> for DbErr {
    /// The database's own errors pass through unchanged, so a caller can still match their
    /// kind (`DbErr::Query`/`Exec` with the driver's error and code, `sql_err()`) to detect a
    /// deadlock, a lock timeout or a constraint violation and retry; what the audit layer was
    /// doing is reported through `tracing` (target `sea_orm_audit`, level `debug`). The crate's
    /// own conditions become `DbErr::Custom` with the message prefixed `sea-orm-audit:`.
    fn from(err: Error) -> Self {
        match err {
            Error::Db { context, source } => {
                tracing::debug!(target: "sea_orm_audit", %context, error = %source, "database error");
                source
            }
            other => DbErr::Custom(format!("sea-orm-audit: {other}")),
        }
    }
}

/// SQLite: `no such table: audit_log`; PostgreSQL: `relation "audit_log" does not exist`;
/// MySQL: `Table 'db.audit_log' doesn't exist` (or `audit_chain_head`).
fn is_missing_log_table(err: &DbErr) -> bool {
    let text = err.to_string();
    (text.contains("audit_log") || text.contains("audit_chain_head"))
        && (text.contains("no such table")
            || text.contains("does not exist")
            || text.contains("doesn't exist"))
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
