//! Database-side capture: triggers that write the same `audit_log` rows the hooks write, for
//! entities declared `#[audit(capture = "database")]` ([`Capture::Database`]).
//!
//! Hooks see only active-model operations. A trigger sees every write to its table:
//! `Entity::insert`/`insert_many`/`update_many`/`delete_many`/`delete_by_id`, upserts, raw SQL,
//! and writes from other programs (psql). The trigger is generated from the entity's
//! [`Auditable`] definition: the columns SeaORM names (`IdenStatic::as_str`), the exclude and
//! mask lists (applied inside the database, so a masked value never reaches the log), and, per
//! column, the value encoding of [`value::to_json`](crate::value::to_json) for the Rust type
//! of the field. It writes the same diff, object id and hash chain as the hooks, so the
//! library's readers (`logs_for`, `History`, the timeline functions, `verify`) take its rows as
//! they are. A write that changes a primary key is logged as the old object's `delete` and the
//! new object's `create`, so each object's chain stays its own. `TRUNCATE` fires no row
//! trigger: PostgreSQL's capture deletes the rows first (each logged as a `DELETE` would be);
//! MySQL fires no trigger at all on it, and SQLite has none.
//!
//! ```
//! use sea_orm::{ConnectionTrait, Database, DbErr};
//! use sea_orm_audit::{AuditContext, capture_db, logs_for_id};
//!
//! mod post {
//!     use sea_orm::entity::prelude::*;
//!
//!     #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
//!     #[sea_orm(table_name = "posts")]
//!     #[audit(capture = "database", mask(secret))]
//!     pub struct Model {
//!         #[sea_orm(primary_key)]
//!         pub id: i32,
//!         pub title: String,
//!         pub secret: String,
//!     }
//!
//!     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
//!     pub enum Relation {}
//!
//!     sea_orm_audit::impl_audited_behavior!();
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), DbErr> {
//! # use sea_orm_migration::MigratorTrait;
//! # struct Migrator;
//! # impl MigratorTrait for Migrator {
//! #     fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
//! #         sea_orm_audit_migration::migrations()
//! #     }
//! # }
//! let db = Database::connect("sqlite::memory:").await?;
//! # Migrator::up(&db, None).await?;
//! # db.execute_unprepared("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL, secret TEXT NOT NULL)").await?;
//! capture_db::install::<post::Model, _>(&db).await?; // from a migration, in an application
//!
//! AuditContext::new().actor("alice").scope(capture_db::transaction(&db, |txn| {
//!     Box::pin(async move {
//!         txn.execute_unprepared("INSERT INTO posts (title, secret) VALUES ('Hello', 'hunter2')")
//!             .await?;
//!         Ok::<_, DbErr>(())
//!     })
//! }))
//! .await?;
//! db.execute_unprepared("UPDATE posts SET title = 'Hi'").await?; // no context: no actor
//! capture_db::seal(&db).await?; // hash what the triggers left unsealed (SQLite, MySQL here)
//!
//! let history = logs_for_id(&db, "posts", "1").await?;
//! assert_eq!(history[1].actor.as_deref(), Some("alice"));
//! assert_eq!(history[1].changes.as_ref().unwrap().new_value["secret"], "***FILTERED***");
//! assert_eq!(history[0].actor, None);
//! assert_eq!(history[0].changes.as_ref().unwrap().new_value["title"], "Hi");
//! assert!(sea_orm_audit::verify(&db).await?.problems.is_empty());
//! # Ok(()) }
//! ```
//!
//! Install it from a migration, with the connection the migration is given:
//!
//! ```ignore
//! #[async_trait::async_trait]
//! impl MigrationTrait for Migration {
//!     async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
//!         sea_orm_audit::capture_db::install::<post::Model, _>(manager.get_connection()).await
//!     }
//!     async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
//!         sea_orm_audit::capture_db::uninstall::<post::Model, _>(manager.get_connection()).await
//!     }
//! }
//! ```
//!
//! Install again (a new migration) whenever the entity or its audit policy changes; [`check`]
//! reports a table whose trigger no longer matches its entity.
//!
//! **Context.** The trigger takes actor, tool and data from a transaction-local setting the
//! library sets from the current [`AuditContext`]: by [`transaction`] when it begins, and on
//! PostgreSQL by the hook helpers of a database-mode entity before each active-model write
//! (on SQLite and MySQL a context row that only [`transaction`] creates and deletes before it
//! commits). It lives until the end of the transaction that set it and is never seen by
//! another transaction, connection or pooled request, so a write it does not cover (autocommit
//! outside [`transaction`], another program) is recorded with no actor, never a stale one.
//! A pool built with `carry_context` (features `sqlx-postgres`, `sqlx-mysql`, `sqlx-sqlite`)
//! also hands each connection the context of the task that acquires it, for writes outside
//! transactions.
//!
//! **Deferred seal.** An entity declared `seal = "deferred"` ([`Seal::Deferred`]) has its
//! entries written unsealed on every backend, PostgreSQL included, and sealed later by
//! [`seal`] (a [`Sealer`]): writes cost less, entries wait unprotected until the seal.
//!
//! Backends: PostgreSQL 11+ (row triggers in PL/pgSQL, SHA-256 in SQL), SQLite and
//! MySQL/MariaDB (row triggers; hashes computed afterwards by [`seal`], since SQLite has no
//! SHA-256 and MySQL's JSON text is not the canonical text). Any other backend gets
//! [`Error::CaptureNotSupported`] from [`install`] and from the hooks of a database-mode entity,
//! rather than an unaudited entity.

mod mysql;
mod pool;
mod postgres;
mod seal;
mod sqlite;

#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
pub use pool::{carry_context, check_carried};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::sea_query::ColumnType;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityName,
    EntityTrait, IdenStatic, Iterable, PrimaryKeyToColumn, Statement, TransactionTrait, Value,
};
use serde_json::{Map, Value as Json};

use crate::auditable::{Auditable, Capture, Seal};
use crate::context::AuditContext;
use crate::error::Error;
use crate::limits;
use crate::sql::finish;

/// How a column's value becomes JSON, following [`value::to_json`](crate::value::to_json) for
/// the field's Rust type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Bool,
    /// Integers of every width: decimal numbers.
    Int,
    /// `f32`/`f64`: shortest round-trip numbers, NaN and infinities as strings.
    Float,
    /// Text, chars and string enums: their text as a JSON string.
    Text,
    /// Hyphenated lowercase, as a JSON string.
    Uuid,
    /// Every digit, as a JSON string.
    Decimal,
    /// Base64, standard alphabet, padded.
    Bytes,
    Json,
    /// `%Y-%m-%d` (chrono's `NaiveDate`, and the `time` crate's `Date`, whose text is the
    /// same for the years both write with four digits).
    Date,
    /// `%H:%M:%S%.f`.
    Time,
    /// `%Y-%m-%dT%H:%M:%S%.f`.
    NaiveDateTime,
    /// RFC 3339 in UTC, as chrono writes it (`+00:00`), for `DateTime<Utc>` and
    /// `DateTime<FixedOffset>` (SQLite keeps the offset written; the others store UTC).
    UtcDateTime,
    /// `DateTime<Local>`: RFC 3339 with the application's local offset, which no trigger
    /// knows.
    LocalDateTime,
    /// The `time` crate's `Time`: `H:MM:SS.f`, the hour unpadded, the fraction without
    /// trailing zeros (at least one digit).
    TimeTime,
    /// The `time` crate's `PrimitiveDateTime`: its date, `T`, its time as [`Encoding::TimeTime`].
    TimeDateTime,
    /// The `time` crate's `OffsetDateTime`: RFC 3339 as `time` writes it (no fraction when
    /// zero, no trailing zeros, `Z` for UTC).
    TimeOffsetDateTime,
}

/// Why `DateTime<Local>` is refused on every backend.
const LOCAL_REFUSED: &str = "a DateTime<Local> is logged with the application's local UTC \
                             offset, which the database does not know; declare the field \
                             DateTime<Utc> or DateTime<FixedOffset>, or exclude it";

/// What the log does with a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Captured,
    Masked,
    Excluded,
}

/// One column of the entity, as the generated trigger treats it.
#[derive(Debug, Clone)]
struct ColumnSpec {
    name: &'static str,
    encoding: Encoding,
    role: Role,
    /// The column's type in the database, where the backend's encoding depends on it (MySQL:
    /// a `TIMESTAMP` reads in the session's zone, a `DATETIME` as stored), lowercase.
    stored_as: Option<String>,
}

/// Everything a backend's generator needs, read from the entity and its [`Auditable`] impl.
#[derive(Debug, Clone)]
struct Spec {
    table: &'static str,
    entity_type: &'static str,
    /// Every column, in the entity's order.
    columns: Vec<ColumnSpec>,
    /// Indexes into `columns` of the primary key, in key order.
    key: Vec<usize>,
    log_unchanged: bool,
    /// [`Seal::Deferred`]: the trigger writes entries unsealed (PostgreSQL's would hash them).
    seal_deferred: bool,
}

impl Spec {
    fn of<M: Auditable>() -> Result<Spec, Error> {
        type Am<M> = <<M as sea_orm::ModelTrait>::Entity as EntityTrait>::ActiveModel;
        let table = <M::Entity as Default>::default().table_name();
        // A value of each field's own Rust type: its `Value` variant says how `to_json`
        // encodes it, which the column type alone cannot (chrono and time share SQL types).
        let sample = <Am<M> as ActiveModelTrait>::default_values();
        let (excluded, masked) = (M::excluded(), M::masked());
        let mut columns = Vec::new();
        for col in <M::Entity as EntityTrait>::Column::iter() {
            let name = col.as_str();
            let encoding = match sample.get(col) {
                ActiveValue::Set(v) | ActiveValue::Unchanged(v) => encoding_of_value(&v),
                ActiveValue::NotSet => None,
            }
            .or_else(|| encoding_of_type(col.def().get_column_type()))
            .ok_or_else(|| Error::CaptureUnsupportedColumn {
                table: table.to_owned(),
                column: name.to_owned(),
                reason: "its Rust type has no encoding the triggers reproduce",
            })?;
            let role = if excluded.contains(&name) {
                Role::Excluded
            } else if masked.contains(&name) {
                Role::Masked
            } else {
                Role::Captured
            };
            columns.push(ColumnSpec {
                name,
                encoding,
                role,
                stored_as: None,
            });
        }
        let key = <M::Entity as EntityTrait>::PrimaryKey::iter()
            .map(|k| {
                let name = k.into_column().as_str();
                columns
                    .iter()
                    .position(|c| c.name == name)
                    .ok_or_else(|| Error::Internal(format!("key column {name} is no column")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Spec {
            table,
            entity_type: M::entity_type(),
            columns,
            key,
            log_unchanged: M::LOG_UNCHANGED,
            seal_deferred: M::SEAL == Seal::Deferred,
        })
    }

    /// Refuses the first column whose value the trigger must encode (a captured or key
    /// column) and whose encoding `refusal` says the backend cannot reproduce, naming it.
    fn require(&self, refusal: impl Fn(Encoding) -> Option<&'static str>) -> Result<(), Error> {
        for (i, c) in self.columns.iter().enumerate() {
            if c.role != Role::Captured && !self.key.contains(&i) {
                continue;
            }
            if let Some(reason) = refusal(c.encoding) {
                return Err(self.unsupported(c.name, reason));
            }
        }
        Ok(())
    }

    fn unsupported(&self, column: &str, reason: &'static str) -> Error {
        Error::CaptureUnsupportedColumn {
            table: self.table.to_owned(),
            column: column.to_owned(),
            reason,
        }
    }

    /// Whether an object id of this key may be longer than the log's key column holds
    /// ([`limits::MAX_KEY_CHARS`]) or hold a NUL, so the triggers must refuse such a row as
    /// the hooks do (rather than let the database truncate it, as MariaDB does outside strict
    /// mode, or keep it whole, as SQLite does): a key of text, bytes, JSON or decimals, or of
    /// more bounded columns than fit.
    fn key_needs_check(&self) -> bool {
        let bounded = |e: Encoding| {
            !matches!(
                e,
                Encoding::Text | Encoding::Bytes | Encoding::Json | Encoding::Decimal
            )
        };
        // A bounded value's text is at most 40 characters (a `time` offset date-time); in a
        // composite key, with its quotes and comma.
        self.key.iter().any(|i| !bounded(self.columns[*i].encoding))
            || 43 * self.key.len() + 2 > limits::MAX_KEY_CHARS
    }

    /// The columns the diff holds (captured and masked), sorted by name as the canonical
    /// content sorts keys (by bytes).
    fn logged_sorted(&self) -> Vec<&ColumnSpec> {
        let mut cols: Vec<&ColumnSpec> = self
            .columns
            .iter()
            .filter(|c| c.role != Role::Excluded)
            .collect();
        cols.sort_by(|a, b| a.name.cmp(b.name));
        cols
    }
}

/// The error a trigger raises for a row whose object id the log cannot hold (short: MySQL's
/// `MESSAGE_TEXT` holds 128 characters).
const KEY_REFUSAL: &str =
    "sea-orm-audit: audit log field `object_id` is over 191 characters or holds NUL";
const _: () = assert!(limits::MAX_KEY_CHARS == 191);

/// The encoding [`value::to_json`](crate::value::to_json) uses for this variant (each backend
/// refuses, with its reason, the ones it cannot reproduce exactly).
fn encoding_of_value(value: &Value) -> Option<Encoding> {
    #[allow(unreachable_patterns)]
    Some(match value {
        Value::Bool(_) => Encoding::Bool,
        Value::TinyInt(_)
        | Value::SmallInt(_)
        | Value::Int(_)
        | Value::BigInt(_)
        | Value::TinyUnsigned(_)
        | Value::SmallUnsigned(_)
        | Value::Unsigned(_)
        | Value::BigUnsigned(_) => Encoding::Int,
        Value::Float(_) | Value::Double(_) => Encoding::Float,
        Value::String(_) | Value::Char(_) | Value::Enum(_) => Encoding::Text,
        Value::Uuid(_) => Encoding::Uuid,
        Value::Decimal(_) => Encoding::Decimal,
        Value::Bytes(_) => Encoding::Bytes,
        Value::Json(_) => Encoding::Json,
        Value::ChronoDate(_) => Encoding::Date,
        Value::ChronoTime(_) => Encoding::Time,
        Value::ChronoDateTime(_) => Encoding::NaiveDateTime,
        Value::ChronoDateTimeUtc(_) | Value::ChronoDateTimeWithTimeZone(_) => Encoding::UtcDateTime,
        Value::ChronoDateTimeLocal(_) => Encoding::LocalDateTime,
        Value::TimeDate(_) => Encoding::Date,
        Value::TimeTime(_) => Encoding::TimeTime,
        Value::TimeDateTime(_) => Encoding::TimeDateTime,
        Value::TimeDateTimeWithTimeZone(_) => Encoding::TimeOffsetDateTime,
        // Variants of features this crate does not enable (arrays, jiff...).
        _ => return None,
    })
}

/// For fields whose type gives no sample value (SeaORM leaves them `NotSet`): the types whose
/// JSON does not depend on the Rust type.
fn encoding_of_type(ty: &ColumnType) -> Option<Encoding> {
    Some(match ty {
        ColumnType::Enum { .. } | ColumnType::String(_) | ColumnType::Text => Encoding::Text,
        ColumnType::Uuid => Encoding::Uuid,
        ColumnType::Boolean => Encoding::Bool,
        ColumnType::TinyInteger
        | ColumnType::SmallInteger
        | ColumnType::Integer
        | ColumnType::BigInteger => Encoding::Int,
        ColumnType::Json | ColumnType::JsonBinary => Encoding::Json,
        _ => return None,
    })
}

/// One way the installed capture of a table differs from its entity (see [`check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Drift {
    /// No capture trigger is installed on the table: its writes are not logged.
    NotInstalled,
    /// The trigger was generated from another definition of the entity (columns, types,
    /// exclude or mask lists, entity type), or installed by a version of this library that
    /// wrote other entries (PostgreSQL: without the TRUNCATE trigger): install it again.
    EntityChanged,
    /// Columns of the table that the trigger neither logs nor excludes, such as a column added
    /// after the capture was installed: their changes are not logged.
    UncapturedColumns(Vec<String>),
}

/// The record an install keeps beside its trigger (in the trigger's text, or the function's
/// comment): the fingerprint of the generated SQL, and the table's columns it knows (logged
/// or excluded).
fn registry(spec: &Spec, fingerprint: String) -> Json {
    serde_json::json!({
        "fingerprint": fingerprint,
        "columns": spec.columns.iter().map(|c| c.name).collect::<Vec<_>>(),
    })
}

/// The SHA-256 of generated SQL, in hex.
fn fingerprint(sql: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Marks the registry comment in an insert trigger's text (SQLite and MySQL keep it as
/// written, in `sqlite_master` and `information_schema`).
const REGISTRY: &str = "/* sea_orm_audit registry: ";

/// `trigger` (a `CREATE TRIGGER .. BEGIN\n ..`) with `registry` in a comment after its
/// `BEGIN`. A `*/` in a name would end the comment early: it is written `*\/`, JSON's own
/// escape of `/`, which reads back the same.
fn with_registry(trigger: &str, registry: &Json) -> String {
    let json = registry.to_string().replace("*/", "*\\/");
    trigger.replacen(" BEGIN\n", &format!(" BEGIN\n{REGISTRY}{json} */\n"), 1)
}

/// The registry [`with_registry`] wrote into a trigger's text (`Null` if there is none).
fn embedded_registry(text: &str) -> Json {
    text.split_once(REGISTRY)
        .and_then(|(_, rest)| rest.split_once(" */"))
        .and_then(|(json, _)| serde_json::from_str(json).ok())
        .unwrap_or(Json::Null)
}

/// What [`check`] reports, from the registry an install recorded, the fingerprint the entity
/// gives now, whether the install is outdated otherwise, and the table's columns.
fn drift(
    recorded: &Json,
    expected: &str,
    outdated: bool,
    table_columns: Vec<String>,
) -> Vec<Drift> {
    let mut drift = Vec::new();
    if recorded.get("fingerprint").and_then(Json::as_str) != Some(expected) || outdated {
        drift.push(Drift::EntityChanged);
    }
    let known: Vec<&str> = recorded
        .get("columns")
        .and_then(Json::as_array)
        .map(|cols| cols.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let uncaptured: Vec<String> = table_columns
        .into_iter()
        .filter(|name| !known.contains(&name.as_str()))
        .collect();
    if !uncaptured.is_empty() {
        drift.push(Drift::UncapturedColumns(uncaptured));
    }
    drift
}

/// Installs (or replaces) the capture trigger of `M`'s table. Idempotent; call it from a
/// migration with `manager.get_connection()`, and again after the entity or its audit policy
/// changes. Needs the `audit_log` migration to have run.
pub async fn install<M, C>(db: &C) -> Result<(), DbErr>
where
    M: Auditable,
    C: ConnectionTrait,
{
    match db.get_database_backend() {
        DbBackend::Postgres => postgres::install(db, &Spec::of::<M>()?).await,
        DbBackend::Sqlite => sqlite::install(db, &Spec::of::<M>()?).await,
        DbBackend::MySql => mysql::install(db, &Spec::of::<M>()?).await,
        other => Err(not_supported(other).into()),
    }
}

/// Removes the capture trigger of `M`'s table (nothing if none is installed). The shared
/// helper functions stay: other tables' triggers use them.
pub async fn uninstall<M, C>(db: &C) -> Result<(), DbErr>
where
    M: Auditable,
    C: ConnectionTrait,
{
    let table = <M::Entity as Default>::default().table_name();
    match db.get_database_backend() {
        DbBackend::Postgres => postgres::uninstall(db, table).await,
        DbBackend::Sqlite => sqlite::uninstall(db, table).await,
        DbBackend::MySql => mysql::uninstall(db, table).await,
        other => Err(not_supported(other).into()),
    }
}

/// Compares the installed capture of `M`'s table with the entity: empty when they match.
/// Run it in a test or at startup; a column added to the table after the capture was
/// installed shows as [`Drift::UncapturedColumns`] (or [`Drift::EntityChanged`] once the
/// entity has the field too) instead of going unaudited silently.
pub async fn check<M, C>(db: &C) -> Result<Vec<Drift>, DbErr>
where
    M: Auditable,
    C: ConnectionTrait,
{
    match db.get_database_backend() {
        DbBackend::Postgres => postgres::check(db, &Spec::of::<M>()?).await,
        DbBackend::Sqlite => sqlite::check(db, &Spec::of::<M>()?).await,
        DbBackend::MySql => mysql::check(db, &Spec::of::<M>()?).await,
        other => Err(not_supported(other).into()),
    }
}

/// Runs `f` in a transaction whose writes carry the current [`AuditContext`] into the rows
/// the triggers write, and commits if `f` returns `Ok` (rolls back otherwise). Every write
/// made through `txn` is attributed, whatever its path (active model, `Entity::update_many`,
/// raw SQL); writes outside such a transaction are recorded with no actor. Begun on a
/// transaction (a savepoint), it gives back, when it ends, the context that was in effect
/// there: the enclosing transaction's later writes carry their own actor again.
///
/// ```ignore
/// AuditContext::new().actor("alice").scope(async {
///     capture_db::transaction(&db, |txn| Box::pin(async move {
///         post::Entity::update_many().col_expr(post::Column::Views, Expr::value(0)).exec(txn).await?;
///         Ok::<_, DbErr>(())
///     })).await
/// }).await?;
/// ```
pub async fn transaction<D, F, T, E>(db: &D, f: F) -> Result<T, E>
where
    D: TransactionTrait,
    F: for<'c> FnOnce(
            &'c D::Transaction,
        ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    E: From<DbErr>,
{
    run_transaction(db, true, f).await
}

/// [`transaction`] without its seal: on SQLite and MySQL the entries its writes produced are
/// left, unsealed, to the next [`seal`] (a [`Sealer`]'s), which saves the seal's statements
/// (and on MySQL a second commit) on every transaction. Use it with entities declared
/// `seal = "deferred"` ([`Seal::Deferred`]); on PostgreSQL it is [`transaction`].
pub async fn transaction_unsealed<D, F, T, E>(db: &D, f: F) -> Result<T, E>
where
    D: TransactionTrait,
    F: for<'c> FnOnce(
            &'c D::Transaction,
        ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    E: From<DbErr>,
{
    run_transaction(db, false, f).await
}

async fn run_transaction<D, F, T, E>(db: &D, seals: bool, f: F) -> Result<T, E>
where
    D: TransactionTrait,
    F: for<'c> FnOnce(
            &'c D::Transaction,
        ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    E: From<DbErr>,
{
    // Refused before anything begins.
    let context = current_context().map_err(DbErr::from)?;
    let given = Carried::default();
    let txn = CARRIED.scope(given.clone(), db.begin()).await?;
    let backend = txn.get_database_backend();
    // Top level on a pool that carries the context (`carry_context`): the callback that gave
    // this transaction its connection, in this task, has just set this very context in its
    // session, where the triggers read it (PostgreSQL's setting; MySQL's user variables, read
    // where the connection has no context row; SQLite's temporary table, read by the
    // connection's temporary trigger). Nothing to write then, and nothing to delete: two
    // statements fewer on MySQL, one on PostgreSQL and on SQLite (which takes the write lock
    // with a write that changes nothing instead, below).
    let carried = given
        .take()
        .filter(|(carried, _)| !is_transaction::<D>() && *carried == context);
    let in_session = carried.is_some();
    // What to put back when this one ends. Nested (begun on a transaction: a savepoint of its
    // connection), the context in effect there, which this one's replaces until then;
    // top-level on SQLite and MySQL, no row: the context row must never be committed.
    let restore = if is_transaction::<D>() {
        match in_effect(&txn).await {
            Ok(before) => Some(before),
            Err(e) => return finish(txn, Err(e.into())).await,
        }
    } else if backend == DbBackend::Postgres || in_session {
        None
    } else {
        Some(InEffect::Row(None))
    };
    if !in_session && let Err(e) = set_context(&txn, true, context.clone()).await {
        return finish(txn, Err(e.into())).await;
    }
    // SQLite, a top-level transaction that wrote no context row: take the write lock now, as
    // that row's write does on a plain pool. Otherwise a closure that reads before it writes
    // (an event's chain head, the application's own SELECT) starts a snapshot, and its first
    // write fails at once with "database is locked" once another connection has committed
    // since, where on a plain pool it waits for the lock.
    if in_session
        && backend == DbBackend::Sqlite
        && let Err(e) = sqlite::take_write_lock(&txn).await
    {
        return finish(txn, Err(e.into())).await;
    }
    // MySQL and SQLite (whose callbacks set a token), the session's context: a hook of another context
    // writes a row after all (see `before_write`), which this one then deletes as it would its
    // own.
    let own_row = carried
        .and_then(|(_, token)| token)
        .map(|token| SessionRow {
            token,
            written: Arc::new(AtomicBool::new(false)),
        });
    // Another context set inside an enclosing `transaction` (this one may be its savepoint)
    // can outlive this one there.
    let (mut flags, mut session_rows) = OPENED
        .try_with(|o| {
            if o.context != context {
                o.clear();
            }
            (o.flags.clone(), o.session_rows.clone())
        })
        .unwrap_or_default();
    flags.push(Arc::new(AtomicBool::new(true)));
    session_rows.extend(own_row.clone());
    let opened = Opened {
        handle: handle_of(&txn),
        context,
        flags,
        session_rows,
        in_session: own_row.is_some(),
    };
    let outcome = OPENED.scope(opened, f(&txn)).await;
    // A hook's row goes as this one's own would, unless it is gone already (rolled back with
    // a savepoint): a DELETE of a missing row would lock the gap where other connections' rows
    // go, until the commit. Where the read fails, the DELETE is tried all the same (a
    // statement that commits implicitly may have committed the row); if it fails too, this
    // one fails and rolls back.
    let restore = match (restore, own_row) {
        (None, Some(row)) if row.written.load(Ordering::Relaxed) => {
            // SQLite: a DELETE of a missing row locks nothing another connection waits for.
            if backend == DbBackend::Sqlite {
                Some(InEffect::Row(None))
            } else {
                match mysql::context_row_state(&txn, &[]).await {
                    Ok((false, _)) => None,
                    _ => Some(InEffect::Row(None)),
                }
            }
        }
        (restore, _) => restore,
    };
    let result = match outcome {
        Ok(value) => async {
            // Nested, the enclosing transaction's later writes, raw SQL included, carry its
            // context again. (A rollback to the savepoint gives it back by itself, unless
            // MySQL's DDL ended the savepoint: see the error path.)
            if let Some(before) = restore {
                give_back(&txn, before).await?;
            }
            if seals && backend == DbBackend::Sqlite {
                // One writer at a time: this transaction sees every entry before its own, so
                // its entries commit sealed.
                seal(&txn).await?;
            }
            Ok(value)
        }
        .await
        .map_err(|e: DbErr| E::from(e)),
        Err(e) => {
            if let Some(before) = restore.filter(|_| backend == DbBackend::MySql) {
                // A statement of the closure that commits implicitly (DDL, TRUNCATE) committed
                // the context row with it (and ended the savepoint of a nested one), and the
                // rollback cannot take it back: put back as it was before this one (deleted,
                // for a top-level one) here, where the session autocommits after such a
                // statement, it never outlives this transaction. Otherwise the rollback undoes
                // this too. (UPDATE or DELETE only: never a row where there was none.)
                give_back(&txn, before).await.ok();
            }
            Err(e)
        }
    };
    let value = finish(txn, result).await?;
    if seals && backend == DbBackend::MySql && !is_transaction::<D>() {
        // After the commit, outside the transaction (see `is_transaction`). The write
        // committed: a failed seal leaves its entries to the next one rather than reporting a
        // committed write as failed, which invites a second write.
        if let Err(e) = seal_in_new_transaction(db).await {
            warn_left_unsealed(&e);
        }
    }
    Ok(value)
}

/// Computes the hashes of entries the triggers wrote unsealed (see
/// [`ProblemKind::Unsealed`](crate::chain::ProblemKind::Unsealed)) and returns how many: every
/// entry on SQLite and MySQL, and on PostgreSQL those of entities declared
/// [`Seal::Deferred`] (its trigger hashes the others). The hook helpers of database-mode
/// entities that seal on write and [`transaction`] seal what they wrote; call it for writes
/// made any other way (raw SQL outside [`transaction`], other programs, deferred entities),
/// on a timer ([`Sealer`]) and before [`verify`](crate::verify). Until then those entries are
/// not protected: an edit made before the seal is sealed with them. One call seals the
/// entries there were when it began; entries written while it runs wait for the next call.
///
/// On MySQL, call it outside a transaction: inside one it returns an error, because under
/// REPEATABLE READ the transaction's snapshot can hide the entry before one the transaction
/// wrote itself, and the seal would link past it. There [`transaction`] seals right after its
/// commit, a hook outside a transaction after its write, and a hook writing through a
/// transaction you began leaves its entries to the next seal. On MariaDB a seal waits for no
/// lock: an entry another transaction holds (a writer whose event chains from it) is left,
/// with what follows it in its object, to the next call, so a seal never deadlocks a writer.
pub async fn seal<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    match db.get_database_backend() {
        DbBackend::MySql if is_transaction::<C>() => Err(DbErr::Custom(
            "capture_db::seal on MySQL runs outside a transaction: a transaction's snapshot \
             can hide the entry before one it wrote, and the seal would link past it"
                .to_owned(),
        )),
        DbBackend::Sqlite | DbBackend::MySql | DbBackend::Postgres => seal::seal(db).await,
        _ => Ok(0),
    }
}

/// Seals ([`seal`]) on a timer, in a task of its own, until stopped or dropped: what entities
/// declared [`Seal::Deferred`], [`transaction_unsealed`] and writes from outside the
/// application need. Entries stay unsealed for about one period, up to two for an entry
/// written while a seal runs (each seal stops at the entry that was last when it began),
/// plus the time a seal takes; a failed
/// seal is logged (`tracing`), counted ([`Sealer::failures`]) and retried at the next tick.
/// On PostgreSQL the role `db` connects as needs UPDATE on `audit_log`.
///
/// ```ignore
/// let sealer = capture_db::Sealer::spawn(db.clone(), Duration::from_secs(1));
/// // ... serve ...
/// sealer.stop().await?; // and seal what is left
/// ```
pub struct Sealer<D: ConnectionTrait + Send + Sync + 'static> {
    db: D,
    /// Dropped or set to `true`: the task ends after the seal under way. The task is never
    /// aborted: a seal cut off inside a statement could leave its pooled connection to a
    /// return that never completes, and the pool's `close` waiting for it forever.
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    sealed: Arc<std::sync::atomic::AtomicU64>,
    failures: Arc<std::sync::atomic::AtomicU64>,
}

impl<D: ConnectionTrait + Clone + Send + Sync + 'static> Sealer<D> {
    /// Starts sealing every `every` (at least 1 ms) through `db`, the pool: not a
    /// transaction, which MySQL's seal refuses. Needs a Tokio runtime.
    pub fn spawn(db: D, every: std::time::Duration) -> Sealer<D> {
        let sealed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (conn, count, failed) = (db.clone(), sealed.clone(), failures.clone());
        let every = every.max(std::time::Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    // `stop` set, or the Sealer dropped.
                    _ = stopped.wait_for(|stop| *stop) => break,
                    _ = timer.tick() => {}
                }
                match seal(&conn).await {
                    Ok(n) => {
                        count.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "capture_db::Sealer: seal failed; retrying at the next tick");
                    }
                }
            }
        });
        Sealer {
            db,
            stop,
            task: Some(task),
            sealed,
            failures,
        }
    }
}

impl<D: ConnectionTrait + Send + Sync + 'static> Sealer<D> {
    /// Entries sealed by the timer so far.
    pub fn sealed(&self) -> u64 {
        self.sealed.load(Ordering::Relaxed)
    }

    /// Seals that failed so far (each retried at the next tick).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Stops the timer, waits for the seal under way to finish, and seals what is left;
    /// returns how many that last seal sealed.
    pub async fn stop(mut self) -> Result<u64, DbErr> {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            // The task ends on its own; a panic in it is the only error, and it sealed
            // nothing more then.
            let _ = task.await;
        }
        seal(&self.db).await
    }
}

impl<D: ConnectionTrait + Send + Sync + 'static> Drop for Sealer<D> {
    /// The task ends after the seal under way (see `stop`).
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A seal after a committed write failed: the write stands, its entries wait for the next seal.
fn warn_left_unsealed(e: &DbErr) {
    tracing::warn!(error = %e, "capture_db: the seal after a committed write failed; \
        its entries stay unsealed until the next capture_db::seal");
}

/// Whether `C` is SeaORM's connection pool handle, on which every statement outside a
/// transaction runs alone (named by type, as in [`is_transaction`]).
fn is_pool<C: ?Sized>() -> bool {
    std::any::type_name::<C>().ends_with("::DatabaseConnection")
}

/// Seals in a transaction of its own, on one connection: it writes no entry, so every entry its
/// snapshot shows committed before it, with its predecessor (see [`is_transaction`]).
async fn seal_in_new_transaction<D: TransactionTrait>(db: &D) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    let result = seal::seal(&txn).await;
    finish(txn, result).await
}

/// Whether `C` is a SeaORM transaction (or a reference to one): `ConnectionTrait` cannot say,
/// the type can. MySQL seals only outside transactions: under REPEATABLE READ a transaction's
/// snapshot is taken at its first read, and when another writer of the same object commits
/// after that and before this transaction's write, the snapshot shows this transaction's entry
/// but not that writer's, so a seal inside it would link the entry past its predecessor and
/// fork the chain. SQLite admits one writer at a time, so a transaction that wrote sees every
/// entry before its own.
fn is_transaction<C: ?Sized>() -> bool {
    std::any::type_name::<C>().contains("DatabaseTransaction")
}

tokio::task_local! {
    /// Inside [`transaction`]: the transaction it began and the context it set there.
    static OPENED: Opened;
}

/// What the hooks of a write through the transaction [`transaction`] began can skip.
struct Opened {
    /// That transaction's identity: its address (it cannot move or be freed while the
    /// closure borrows it) and type.
    handle: (usize, &'static str),
    /// The context it set when it began.
    context: Context,
    /// One flag per enclosing [`transaction`], this one's last: true while no other context
    /// has been set in this task since it began. A context set through another handle (a
    /// savepoint, a nested `transaction`) can stay in effect in this transaction, so it
    /// clears every flag.
    flags: Vec<Arc<AtomicBool>>,
    /// MySQL: the enclosing [`transaction`]s (this one included) that left their context in
    /// the session and wrote no row.
    session_rows: Vec<SessionRow>,
    /// Whether this one is among them (its row is the last).
    in_session: bool,
}

/// A MySQL [`transaction`] whose context is the session's: the token `carry_context` gave its
/// connection, and whether a hook may have written a context row there since, which it must
/// then delete before its commit.
#[derive(Clone)]
struct SessionRow {
    token: i64,
    written: Arc<AtomicBool>,
}

tokio::task_local! {
    /// While [`transaction`] begins one, what `carry_context`'s callbacks set on the
    /// connection they gave out in this task.
    static CARRIED: Carried;
}

/// The context a `carry_context` callback set in the session of the connection it gave out,
/// and on MySQL the token it set with it (`@sea_orm_audit_token`, unique in this process),
/// which tells that connection from others in SQL.
#[derive(Clone, Default)]
struct Carried(Arc<std::sync::Mutex<Option<Given>>>);

/// What a `carry_context` callback set: the context, and MySQL's token.
type Given = (Context, Option<i64>);

impl Carried {
    /// Forgets what was set on an earlier connection, when a callback starts: one whose
    /// statement failed notes nothing, and the pool discards its connection. A note is made
    /// only once the statement succeeded, and nothing runs after the callback before sqlx
    /// hands the connection out (its ping and sea-orm's run before it), so a note names the
    /// connection the transaction got.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-mysql",
            feature = "sqlx-sqlite"
        )),
        allow(dead_code)
    )]
    fn reset(&self) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
    }

    /// Notes what a callback set, once the statement setting it succeeded.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-mysql",
            feature = "sqlx-sqlite"
        )),
        allow(dead_code)
    )]
    fn note(&self, context: Context, token: Option<i64>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((context, token));
        }
    }

    fn take(&self) -> Option<Given> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

impl Opened {
    fn clear(&self) {
        for flag in &self.flags {
            flag.store(false, Ordering::Relaxed);
        }
    }

    fn only_its_context(&self) -> bool {
        self.flags
            .last()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }
}

fn handle_of<C>(db: &C) -> (usize, &'static str) {
    (db as *const C as usize, std::any::type_name::<C>())
}

/// Before an active-model write of a database-mode entity (its `before_*` hook). Through the
/// transaction [`transaction`] began, while only its context was ever set there, the setting
/// already holds the current context: nothing to do; nor outside a transaction, where nothing
/// set here reaches the write. Otherwise the current context is set.
pub(crate) async fn before_write<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres | DbBackend::Sqlite | DbBackend::MySql => {
            if is_pool::<C>() {
                // A context the log cannot hold is still refused, as on every other path.
                AuditContext::check_current()?;
                // Outside a transaction SeaORM runs the write as a statement of its own, on
                // whichever pooled connection it takes then: a setting made here could not
                // reach it (PostgreSQL's lasts for this statement, SQLite's and MySQL's context
                // row exists only inside `transaction`). `carry_context` carries it instead.
                return Ok(());
            }
            let current = current_context()?;
            let set = OPENED.try_with(|o| {
                o.handle == handle_of(db) && o.only_its_context() && o.context == current
            });
            if set == Ok(true) {
                return Ok(());
            }
            set_context(db, false, current).await
        }
        other => Err(not_supported(other).into()),
    }
}

/// After an active-model write of a database-mode entity (its `after_*` hook), unless its seal
/// is deferred or PostgreSQL's trigger hashed the entry: seals (outside
/// a transaction, a failed seal is logged, not returned: the write committed), unless
/// the write went through the transaction [`transaction`] began, which seals with its commit,
/// or, on MySQL, through any transaction (see [`is_transaction`]): the next seal outside one
/// seals it.
pub(crate) async fn after_write<M: Auditable, C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    // PostgreSQL's trigger hashed the entry, or nothing seals on write.
    if M::SEAL == Seal::Deferred || db.get_database_backend() == DbBackend::Postgres {
        return Ok(());
    }
    if OPENED.try_with(|o| o.handle == handle_of(db)) == Ok(true) {
        return Ok(());
    }
    if db.get_database_backend() == DbBackend::MySql && is_transaction::<C>() {
        return Ok(());
    }
    match seal(db).await {
        // Outside a transaction the write has committed: a failed seal (a connection cut)
        // must not report it as failed, which invites a second write. Its entry waits for
        // the next seal, as a raw write's does.
        Err(e) if is_pool::<C>() => {
            warn_left_unsealed(&e);
            Ok(())
        }
        other => other.map(drop),
    }
}

/// Actor, tool and data, as handed to the triggers.
type Context = Option<(Option<String>, Option<String>, Option<Json>)>;

/// Hands the current [`AuditContext`] (or its absence) to the triggers for the rest of the
/// current transaction. PostgreSQL: a transaction-local setting; outside a transaction it lasts
/// for this statement only, so it cannot reach a later write. SQLite: the context row, written
/// by `transaction` when it `begins`, and otherwise only replaced where it exists (inside
/// `transaction`, which alone can delete it before every commit, whatever happens in between).
async fn set_context<C: ConnectionTrait>(db: &C, begins: bool, ctx: Context) -> Result<(), DbErr> {
    if !begins {
        let _ = OPENED.try_with(|o| {
            if o.context != ctx {
                o.clear();
            }
        });
    }
    match db.get_database_backend() {
        DbBackend::Postgres => postgres::set_context(db, postgres_context(ctx)).await,
        backend @ (DbBackend::Sqlite | DbBackend::MySql) => {
            let (actor, tool, data) = ctx.unwrap_or_default();
            let data = data.map(|d| d.to_string());
            if backend == DbBackend::MySql && !begins {
                return replace_mysql_context(db, actor, tool, data).await;
            }
            if backend == DbBackend::Sqlite && !begins {
                return replace_sqlite_context(db, actor, tool, data).await;
            }
            let row = if begins {
                ContextRow::Begin(actor, tool, data)
            } else {
                ContextRow::Replace(actor, tool, data)
            };
            if backend == DbBackend::Sqlite {
                sqlite::set_context(db, row).await
            } else {
                mysql::set_context(db, row).await
            }
        }
        other => Err(not_supported(other).into()),
    }
}

/// MySQL, a hook's context (actor, tool, data). Through the [`transaction`] that wrote its
/// context row, it replaces that row. Through the one that left its context in the session
/// instead (`SessionRow`), whose connection has no row to replace, it writes one by an upsert
/// that runs only on a connection holding that one's token, and the transaction deletes it
/// before its commit. Through any other handle (a savepoint, a transaction begun by hand, of
/// this connection or another), it first reads, without locking, whether the connection has a
/// row and whether it holds the token of a transaction around it: it replaces the row if there
/// is one, writes one if the connection is such a transaction's, and otherwise writes nothing
/// (a row nothing would delete would outlive the transaction). Never an UPDATE of a missing
/// row: under REPEATABLE READ it locks the gap where the row would go, and every other
/// connection's context row inserted there waits; two such connections deadlocked (1213, one
/// seeded model run in ten on MariaDB).
async fn replace_mysql_context<C: ConnectionTrait>(
    db: &C,
    actor: Option<String>,
    tool: Option<String>,
    data: Option<String>,
) -> Result<(), DbErr> {
    let (through_it, in_session, rows) = OPENED
        .try_with(|o| {
            (
                o.handle == handle_of(db),
                o.in_session,
                o.session_rows.clone(),
            )
        })
        .unwrap_or_default();
    let replace = || ContextRow::Replace(actor.clone(), tool.clone(), data.clone());
    // The transactions whose token the connection may hold, where it gets a row.
    let claimed = if through_it {
        match rows.last() {
            Some(own) if in_session => vec![own.clone()],
            // That transaction wrote its row when it began.
            _ => return mysql::set_context(db, replace()).await,
        }
    } else {
        let tokens: Vec<i64> = rows.iter().map(|r| r.token).collect();
        match mysql::context_row_state(db, &tokens).await? {
            (true, _) => return mysql::set_context(db, replace()).await,
            (false, true) => rows,
            (false, false) => return Ok(()),
        }
    };
    for r in &claimed {
        // Before the statement: cancelled in flight, it may still have run.
        r.written.store(true, Ordering::Relaxed);
    }
    let tokens: Vec<i64> = claimed.iter().map(|r| r.token).collect();
    mysql::claim_context(db, (actor, tool, data), &tokens).await
}

/// SQLite, a hook's context (actor, tool, data). Where no [`transaction`] around it left its
/// context in the connection's temporary table (`carry_context`), it replaces the context row
/// if there is one: only `transaction` writes one, and deletes it before its commit. Where
/// one did, the row may be missing: it is written, on the connection holding such a
/// transaction's token only, and those transactions delete it before their commit.
async fn replace_sqlite_context<C: ConnectionTrait>(
    db: &C,
    actor: Option<String>,
    tool: Option<String>,
    data: Option<String>,
) -> Result<(), DbErr> {
    let rows = OPENED
        .try_with(|o| o.session_rows.clone())
        .unwrap_or_default();
    if rows.is_empty() {
        return sqlite::set_context(db, ContextRow::Replace(actor, tool, data)).await;
    }
    for r in &rows {
        // Before the statement: cancelled in flight, it may still have run.
        r.written.store(true, Ordering::Relaxed);
    }
    let tokens: Vec<i64> = rows.iter().map(|r| r.token).collect();
    sqlite::claim_context(db, (actor, tool, data), &tokens).await
}

/// The context in effect in a transaction, as a nested [`transaction`] finds it when it begins
/// and puts it back when it ends (a top-level one on SQLite and MySQL: no row).
enum InEffect {
    /// PostgreSQL's setting, as text (empty: none).
    Setting(String),
    /// SQLite's and MySQL's context row, if there is one.
    Row(Option<(Option<String>, Option<String>, Option<String>)>),
}

async fn in_effect<C: ConnectionTrait>(db: &C) -> Result<InEffect, DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => postgres::context_in_effect(db).await.map(InEffect::Setting),
        DbBackend::Sqlite => context_row(db, sqlite::context_row_sql()).await,
        DbBackend::MySql => context_row(db, mysql::context_row_sql()).await,
        other => Err(not_supported(other).into()),
    }
}

/// SQLite's and MySQL's context row of this connection, read by `sql`.
async fn context_row<C: ConnectionTrait>(db: &C, sql: String) -> Result<InEffect, DbErr> {
    let statement = Statement::from_string(db.get_database_backend(), sql);
    let row = db
        .query_one_raw(statement)
        .await
        .map_err(mysql::installed_before)?;
    let Some(r) = row else {
        return Ok(InEffect::Row(None));
    };
    let get = |column: &str| r.try_get::<Option<String>>("", column);
    Ok(InEffect::Row(Some((
        get("actor")?,
        get("tool")?,
        get("data")?,
    ))))
}

/// Puts back what [`in_effect`] read: the setting, or the row (or none: deleted).
async fn give_back<C: ConnectionTrait>(db: &C, before: InEffect) -> Result<(), DbErr> {
    let row = match before {
        InEffect::Setting(text) => return postgres::set_context(db, text).await,
        InEffect::Row(Some((actor, tool, data))) => ContextRow::Replace(actor, tool, data),
        InEffect::Row(None) => ContextRow::End,
    };
    if db.get_database_backend() == DbBackend::Sqlite {
        sqlite::set_context(db, row).await
    } else {
        mysql::set_context(db, row).await
    }
}

/// The current [`AuditContext`] as the triggers get it, or an error where the log cannot hold
/// its actor or tool (see `limits`).
fn current_context() -> Result<Context, Error> {
    AuditContext::check_current()?;
    Ok(AuditContext::current().map(context_parts))
}

/// SQLite's and MySQL's insert and delete triggers: `row(action, object id, changes)` is the
/// statement writing the entry, `object` the dialect's JSON object function, and the keys and
/// the column lists (`'name', value, ...`) come as `[NEW, OLD]`.
fn insert_and_delete_triggers(
    [insert_name, delete_name]: [&str; 2],
    table: &str,
    object: &str,
    [new_key, old_key]: [&str; 2],
    [new_all, old_all]: [&str; 2],
    row: impl Fn(&str, &str, &str) -> String,
) -> (String, String) {
    let insert = format!(
        "CREATE TRIGGER {insert_name} AFTER INSERT ON {table} FOR EACH ROW BEGIN\n{}\nEND",
        row(
            "create",
            new_key,
            &format!("{object}('new_value', {object}({new_all}), 'old_value', {object}())"),
        )
    );
    let delete = format!(
        "CREATE TRIGGER {delete_name} AFTER DELETE ON {table} FOR EACH ROW BEGIN\n{}\nEND",
        row(
            "delete",
            old_key,
            &format!("{object}('new_value', {object}(), 'old_value', {object}({old_all}))"),
        )
    );
    (insert, delete)
}

/// The log's columns a trigger's INSERT names, quoted: every column but the id, in the
/// entity's order, which the generated SQL follows for the values.
fn log_columns(backend: DbBackend) -> Vec<String> {
    crate::audit_log::Column::iter()
        .filter(|c| !matches!(c, crate::audit_log::Column::Id))
        .map(|c| crate::sql::quote(backend, c.as_str()))
        .collect()
}

/// The PostgreSQL setting's text for a context: a JSON object, or empty for none.
fn postgres_context(ctx: Context) -> String {
    ctx.map(|(actor, tool, data)| {
        let mut out = Map::new();
        out.insert("actor".into(), actor.map_or(Json::Null, Json::String));
        out.insert("tool".into(), tool.map_or(Json::Null, Json::String));
        out.insert("data".into(), data.unwrap_or(Json::Null));
        Json::Object(out).to_string()
    })
    .unwrap_or_default()
}

/// Actor, tool and data (bounded as the library bounds it, see `limits`; `None` when empty, as
/// the hooks store it).
fn context_parts(ctx: AuditContext) -> (Option<String>, Option<String>, Option<Json>) {
    let mut data = ctx.data;
    for value in data.values_mut() {
        limits::bound_in_place(value);
    }
    let data = (!data.is_empty()).then_some(Json::Object(data));
    (ctx.actor, ctx.tool, data)
}

fn not_supported(backend: DbBackend) -> Error {
    Error::CaptureNotSupported {
        backend: match backend {
            DbBackend::MySql => "MySQL",
            DbBackend::Sqlite => "SQLite",
            _ => "this backend",
        },
    }
}

/// What `transaction` and the hooks do with the context row.
pub(crate) enum ContextRow {
    /// Begin: the row exists for the rest of this transaction (NULLs without a context).
    Begin(Option<String>, Option<String>, Option<String>),
    /// A hook inside such a transaction: the current context replaces the row's, if the row
    /// exists (it exists only inside `transaction`, which deletes it before committing).
    Replace(Option<String>, Option<String>, Option<String>),
    /// End: the row goes before the commit.
    End,
}

/// Whether `M`'s log rows are written by the database (the hooks then write none).
pub(crate) fn in_database<M: Auditable>() -> bool {
    M::CAPTURE == Capture::Database
}

#[cfg(test)]
mod tests {
    use super::{is_pool, is_transaction};
    use sea_orm::{DatabaseConnection, DatabaseTransaction};

    /// The hooks tell SeaORM's pool handle from a transaction by type: SeaORM's type names
    /// must keep matching.
    #[test]
    fn pool_and_transaction_are_told_apart_by_type() {
        assert!(is_pool::<DatabaseConnection>());
        assert!(is_pool::<&DatabaseConnection>());
        assert!(!is_pool::<DatabaseTransaction>());
        assert!(is_transaction::<DatabaseTransaction>());
        assert!(is_transaction::<&DatabaseTransaction>());
        assert!(!is_transaction::<DatabaseConnection>());
    }
}
