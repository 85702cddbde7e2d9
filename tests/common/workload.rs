//! The exactness workload: many writers updating a few rows at once, each write storing a value
//! unique to its writer, sequence number and attempt, under its writer's actor; then the log
//! compared with what each writer knows it committed. Used by `tests/exactness.rs` (in one
//! process and from two at once) and `tests/db_capture_readers.rs`.
//!
//! Included with `#[path]` by the files that use it (it needs `crate::common`), so the other
//! test binaries do not compile it.

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use sea_orm_audit::chain::ProblemKind;
use sea_orm_audit::{AuditContext, audit_log, capture_db};
use sea_orm_migration::MigratorTrait;
use serde_json::{Value as Json, json};

use crate::common;

/// Rows every writer of a mode updates (hook mode: these in transactions, as many more in
/// autocommit).
pub const ROWS: i32 = 4;

/// Captured by the database: every write path logged by the trigger.
pub mod db_row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "conc_db_rows")]
    #[audit(capture = "database")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub val: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// Captured by the database, its entries sealed later (`seal = "deferred"`).
pub mod deferred_row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "conc_deferred_rows")]
    #[audit(capture = "database", seal = "deferred")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub val: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// Logged by the hooks.
pub mod hook_row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "conc_hook_rows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub val: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `#[audit(capture = "database")]`: transactions through `capture_db::transaction`.
    Database,
    /// The hook helpers: transactions through `db.begin()`.
    Hooks,
    /// `#[audit(capture = "database", seal = "deferred")]`: transactions through
    /// `capture_db::transaction_unsealed`, entries sealed by `capture_db::Sealer`s.
    Deferred,
}

impl Mode {
    pub fn table(self) -> &'static str {
        match self {
            Mode::Database => "conc_db_rows",
            Mode::Hooks => "conc_hook_rows",
            Mode::Deferred => "conc_deferred_rows",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Database => "database",
            Mode::Hooks => "hooks",
            Mode::Deferred => "deferred",
        }
    }

    pub fn parse(name: &str) -> Mode {
        match name {
            "database" => Mode::Database,
            "hooks" => Mode::Hooks,
            "deferred" => Mode::Deferred,
            other => panic!("unknown mode {other}"),
        }
    }

    /// The row a write goes to. Database mode: transactional and autocommit writers share the
    /// rows (the trigger makes both exact). Hook mode: autocommit writers get rows of their own
    /// (`ROWS + 1..=2 * ROWS`), so that the transactions' exact history can be checked apart
    /// from what the README says of autocommit.
    pub fn row(self, writer: usize, seq: usize, in_txn: bool) -> i32 {
        let base = i32::try_from((writer + seq) % ROWS as usize).unwrap() + 1;
        match (self, in_txn) {
            (Mode::Hooks, false) => base + ROWS,
            _ => base,
        }
    }

    /// Every row the workload writes.
    pub fn rows(self) -> Range<i32> {
        match self {
            Mode::Database | Mode::Deferred => 1..ROWS + 1,
            Mode::Hooks => 1..2 * ROWS + 1,
        }
    }
}

pub fn actor(writer: usize) -> String {
    format!("w{writer}")
}

/// One committed write, as its writer knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub writer: usize,
    pub seq: usize,
    pub row: i32,
    pub value: String,
    pub in_txn: bool,
}

impl Write {
    fn to_json(&self) -> Json {
        json!([self.writer, self.seq, self.row, self.value, self.in_txn])
    }

    fn from_json(v: &Json) -> Write {
        Write {
            writer: v[0].as_u64().unwrap() as usize,
            seq: v[1].as_u64().unwrap() as usize,
            row: i32::try_from(v[2].as_i64().unwrap()).unwrap(),
            value: v[3].as_str().unwrap().to_owned(),
            in_txn: v[4].as_bool().unwrap(),
        }
    }
}

/// What a run of writers did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub committed: Vec<Write>,
    /// Transactions retried after a busy, deadlock or lock-timeout error (rolled back).
    pub retries: usize,
    /// Wall-clock milliseconds of the first write's start and the last write's end.
    pub started_ms: u128,
    pub ended_ms: u128,
}

impl Outcome {
    pub fn to_json(&self) -> Json {
        json!({
            "committed": self.committed.iter().map(Write::to_json).collect::<Vec<_>>(),
            "retries": self.retries,
            "started_ms": self.started_ms.to_string(),
            "ended_ms": self.ended_ms.to_string(),
        })
    }

    pub fn from_json(v: &Json) -> Outcome {
        Outcome {
            committed: v["committed"]
                .as_array()
                .unwrap()
                .iter()
                .map(Write::from_json)
                .collect(),
            retries: v["retries"].as_u64().unwrap() as usize,
            started_ms: v["started_ms"].as_str().unwrap().parse().unwrap(),
            ended_ms: v["ended_ms"].as_str().unwrap().parse().unwrap(),
        }
    }

    pub fn merge(mut self, other: Outcome) -> Outcome {
        self.committed.extend(other.committed);
        self.retries += other.retries;
        self.started_ms = self.started_ms.min(other.started_ms);
        self.ended_ms = self.ended_ms.max(other.ended_ms);
        self
    }
}

pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// One workload's private database, named after this worktree (`conc`) so that sessions
/// sharing the servers never collide.
pub struct WorkDb {
    pub db: DatabaseConnection,
    pub url: String,
    server: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Pool options without `capture_db::carry_context`: a plain pool, as an application builds it.
pub fn plain_options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(max_connections).sqlx_logging(false);
    opt
}

/// Pool options; the pool carries each task's context to the triggers
/// (`capture_db::carry_context`, with the crate features on).
pub fn options(url: &str, max_connections: u32) -> ConnectOptions {
    #[allow(unused_mut)]
    let mut opt = plain_options(url, max_connections);
    #[cfg(all(
        feature = "sqlx-postgres",
        feature = "sqlx-mysql",
        feature = "sqlx-sqlite"
    ))]
    sea_orm_audit::capture_db::carry_context(&mut opt);
    opt
}

/// Whether database-mode writes outside transactions carry their writer's context: the pool
/// of `options` carries it, with the crate features on.
pub fn carries_context() -> bool {
    cfg!(all(
        feature = "sqlx-postgres",
        feature = "sqlx-mysql",
        feature = "sqlx-sqlite"
    ))
}

impl WorkDb {
    /// A fresh database (server) or file (SQLite, WAL) with the audit migration, both tables
    /// (the database-mode one with its capture installed) and `mode.rows()` of each, created
    /// without context (create entries with no actor).
    pub async fn new() -> WorkDb {
        let work = match std::env::var("AUDIT_TEST_DATABASE_URL") {
            Ok(server_url) if !server_url.starts_with("sqlite") => {
                let name = format!(
                    "audit_conc_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0)
                );
                let admin = Database::connect(options(&server_url, 1)).await.unwrap();
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let (base, _) = server_url.rsplit_once('/').expect("URL has a database");
                let url = format!("{base}/{name}");
                let db = Database::connect(options(&url, 8)).await.unwrap();
                WorkDb {
                    db,
                    url,
                    server: Some((server_url, name)),
                    _dir: None,
                }
            }
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("conc.db").display());
                let db = Database::connect(options(&url, 8)).await.unwrap();
                // WAL is a property of the file: every connection and process opening it uses
                // it. sqlx gives each connection a busy timeout of 5 s.
                db.execute_unprepared("PRAGMA journal_mode=WAL")
                    .await
                    .expect("WAL");
                WorkDb {
                    db,
                    url,
                    server: None,
                    _dir: Some(dir),
                }
            }
        };
        common::Migrator::up(&work.db, None).await.expect("migrate");
        common::create_table(&work.db, db_row::Entity).await;
        common::create_table(&work.db, hook_row::Entity).await;
        common::create_table(&work.db, deferred_row::Entity).await;
        capture_db::install::<db_row::Model, _>(&work.db)
            .await
            .expect("install capture");
        capture_db::install::<deferred_row::Model, _>(&work.db)
            .await
            .expect("install deferred capture");
        for id in Mode::Database.rows() {
            db_row::Entity::insert(db_row::ActiveModel {
                id: Set(id),
                val: Set(format!("init-{id}")),
            })
            .exec(&work.db)
            .await
            .unwrap();
            deferred_row::Entity::insert(deferred_row::ActiveModel {
                id: Set(id),
                val: Set(format!("init-{id}")),
            })
            .exec(&work.db)
            .await
            .unwrap();
        }
        for id in Mode::Hooks.rows() {
            hook_row::ActiveModel {
                id: Set(id),
                val: Set(format!("init-{id}")),
            }
            .insert(&work.db)
            .await
            .unwrap();
        }
        work
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Drops a server-side database (after every process writing to it has ended).
    pub async fn finish(self) {
        let WorkDb { db, server, .. } = self;
        db.close().await.ok();
        if let Some((server_url, name)) = server {
            common::drop_server_db(&server_url, &name).await;
        }
    }
}

/// An error an application retries the transaction for: SQLite's busy (a deferred transaction
/// that read before writing, when another writer committed meanwhile), a deadlock, a lock
/// wait timeout. The transaction was rolled back: nothing of it committed.
pub fn retryable(err: &DbErr) -> bool {
    let text = err.to_string();
    [
        "database is locked",
        "Deadlock",
        "deadlock",
        "Lock wait timeout",
        "could not serialize",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// One write of `mode`, through a path chosen by `seq`: active-model updates and (database
/// mode) `Entity::update_many`, which no hook sees.
async fn write_once<C: ConnectionTrait>(
    c: &C,
    mode: Mode,
    row: i32,
    value: String,
    seq: usize,
) -> Result<(), DbErr> {
    match mode {
        Mode::Hooks => hook_row::ActiveModel {
            id: Set(row),
            val: Set(value),
        }
        .update(c)
        .await
        .map(|_| ()),
        Mode::Database if seq % 4 < 2 => db_row::ActiveModel {
            id: Set(row),
            val: Set(value),
        }
        .update(c)
        .await
        .map(|_| ()),
        Mode::Database => {
            let done = db_row::Entity::update_many()
                .col_expr(db_row::Column::Val, Expr::value(value))
                .filter(db_row::Column::Id.eq(row))
                .exec(c)
                .await?;
            assert_eq!(done.rows_affected, 1, "row {row} exists");
            Ok(())
        }
        Mode::Deferred if seq % 4 < 2 => deferred_row::ActiveModel {
            id: Set(row),
            val: Set(value),
        }
        .update(c)
        .await
        .map(|_| ()),
        Mode::Deferred => {
            let done = deferred_row::Entity::update_many()
                .col_expr(deferred_row::Column::Val, Expr::value(value))
                .filter(deferred_row::Column::Id.eq(row))
                .exec(c)
                .await?;
            assert_eq!(done.rows_affected, 1, "row {row} exists");
            Ok(())
        }
    }
}

/// A write in a transaction of its own (database mode: `capture_db::transaction`; hook mode:
/// `db.begin()`), retried as an application would on a busy or deadlock error with a new
/// value. Returns the value committed and how many attempts were rolled back.
async fn write_in_txn(
    db: &DatabaseConnection,
    mode: Mode,
    writer: usize,
    seq: usize,
    row: i32,
) -> Result<(String, usize), DbErr> {
    let mut retries = 0;
    for attempt in 0.. {
        let value = format!("w{writer}-s{seq}-a{attempt}");
        let v = value.clone();
        let result = match mode {
            Mode::Database => {
                capture_db::transaction(db, |txn| {
                    Box::pin(async move { write_once(txn, mode, row, v, seq).await })
                })
                .await
            }
            Mode::Deferred => {
                capture_db::transaction_unsealed(db, |txn| {
                    Box::pin(async move { write_once(txn, mode, row, v, seq).await })
                })
                .await
            }
            Mode::Hooks => {
                let txn = db.begin().await?;
                match write_once(&txn, mode, row, v, seq).await {
                    Ok(()) => txn.commit().await,
                    Err(e) => {
                        txn.rollback().await.ok();
                        Err(e)
                    }
                }
            }
        };
        match result {
            Ok(()) => return Ok((value, retries)),
            Err(e) if retryable(&e) && attempt < 1000 => {
                retries += 1;
                let pause = u64::try_from(attempt.min(20)).unwrap() + (writer as u64 % 3);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

/// Runs `writers` at once, each `updates` writes under its own actor: odd sequence numbers in
/// a transaction, even ones in autocommit. Panics on any error that is not retryable.
pub async fn run(
    db: &DatabaseConnection,
    mode: Mode,
    writers: Range<usize>,
    updates: usize,
) -> Outcome {
    let started_ms = now_ms();
    let mut tasks = Vec::new();
    for writer in writers {
        let db = db.clone();
        tasks.push(tokio::spawn(
            AuditContext::new().actor(actor(writer)).scope(async move {
                let mut out = Outcome::default();
                for seq in 0..updates {
                    let in_txn = seq % 2 == 1;
                    let row = mode.row(writer, seq, in_txn);
                    let value = if in_txn {
                        let (value, retries) = write_in_txn(&db, mode, writer, seq, row).await?;
                        out.retries += retries;
                        value
                    } else {
                        let value = format!("w{writer}-s{seq}-a0");
                        write_once(&db, mode, row, value.clone(), seq).await?;
                        value
                    };
                    out.committed.push(Write {
                        writer,
                        seq,
                        row,
                        value,
                        in_txn,
                    });
                }
                Ok::<_, DbErr>(out)
            }),
        ));
    }
    let mut all = Outcome::default();
    for task in tasks {
        all = all.merge(task.await.unwrap().expect("a write failed"));
    }
    all.started_ms = started_ms;
    all.ended_ms = now_ms();
    all
}

/// The log compared with the committed writes.
#[derive(Debug, Default)]
pub struct Tally {
    /// Update entries of the mode's table.
    pub entries: usize,
    /// Entries whose value no committed write stored, stored on another row, or whose actor
    /// is not allowed for their write (see [`check`]).
    pub misattributed: Vec<String>,
    /// Committed writes with no entry.
    pub missing: Vec<String>,
    /// Values logged more than once.
    pub duplicates: Vec<String>,
    /// Entries whose `old_value` is not the previous entry's `new_value` of their object where
    /// the mode promises an exact history (database mode; hook mode in transactions)...
    pub stale_where_exact: Vec<String>,
    /// ...and where it does not (hook mode in autocommit): counted, not an error.
    pub stale_autocommit: usize,
    /// Autocommit entries recorded with no actor (database mode may give them none).
    pub actorless: usize,
    /// Rows whose stored value is not their last entry's `new_value` (checked where the
    /// history must be exact).
    pub final_mismatch: Vec<String>,
}

/// Compares the mode's update entries with `committed`. Actors: exactly their writer's, except
/// database-mode autocommit writes on a pool that cannot carry the context (SQLite): their
/// writer's or none, never another writer's.
pub async fn check(db: &DatabaseConnection, mode: Mode, committed: &[Write]) -> Tally {
    let by_value: HashMap<&str, &Write> = committed.iter().map(|w| (w.value.as_str(), w)).collect();
    assert_eq!(by_value.len(), committed.len(), "values are unique");
    let rows = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq(mode.table()))
        .order_by_asc(audit_log::Column::Id)
        .all(db)
        .await
        .unwrap();
    let mut tally = Tally::default();
    let mut seen = HashSet::new();
    // Each object's value as its latest entry says.
    let mut state: HashMap<String, Json> = HashMap::new();
    for entry in rows {
        let changes = entry.changes.clone().unwrap_or(Json::Null);
        let new = changes["new_value"]["val"].clone();
        if entry.action == "create" {
            state.insert(entry.object_id.clone(), new);
            continue;
        }
        assert_eq!(entry.action, "update", "entry {}", entry.id);
        tally.entries += 1;
        let what = format!(
            "entry {} of {} by {:?}: {changes}",
            entry.id, entry.object_id, entry.actor
        );
        let old = changes["old_value"]["val"].clone();
        let previous = state.insert(entry.object_id.clone(), new.clone());
        let Some(write) = new.as_str().and_then(|v| by_value.get(v)) else {
            tally
                .misattributed
                .push(format!("{what}: no committed write stored it"));
            continue;
        };
        if !seen.insert(write.value.clone()) {
            tally.duplicates.push(what.clone());
        }
        if entry.object_id != write.row.to_string() {
            tally
                .misattributed
                .push(format!("{what}: written to row {}", write.row));
        }
        let own = Some(actor(write.writer));
        let allowed = match (mode, write.in_txn) {
            (Mode::Database | Mode::Deferred, false) if !carries_context() => {
                entry.actor.is_none() || entry.actor == own
            }
            _ => entry.actor == own,
        };
        if !allowed {
            tally
                .misattributed
                .push(format!("{what}: written by {:?}", own));
        }
        if entry.actor.is_none() {
            tally.actorless += 1;
        }
        if previous.as_ref() != Some(&old) {
            if write.in_txn || mode != Mode::Hooks {
                tally
                    .stale_where_exact
                    .push(format!("{what}: previous entry stored {previous:?}"));
            } else {
                tally.stale_autocommit += 1;
            }
        }
    }
    for write in committed {
        if !seen.contains(&write.value) {
            tally.missing.push(format!("{write:?}"));
        }
    }
    // Where the history is exact, replaying it gives each row as stored.
    let exact_rows: Vec<i32> = match mode {
        Mode::Database | Mode::Deferred => mode.rows().collect(),
        Mode::Hooks => (1..ROWS + 1).collect(),
    };
    let stored: Vec<(i32, String)> = match mode {
        Mode::Database => db_row::Entity::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.val))
            .collect(),
        Mode::Hooks => hook_row::Entity::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.val))
            .collect(),
        Mode::Deferred => deferred_row::Entity::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.val))
            .collect(),
    };
    for (id, val) in stored {
        if exact_rows.contains(&id) && state.get(&id.to_string()) != Some(&json!(val)) {
            tally.final_mismatch.push(format!(
                "row {id} holds {val}, its last entry says {:?}",
                state.get(&id.to_string())
            ));
        }
    }
    tally
}

/// What `verify` says, after sealing where the backend needs it.
#[derive(Debug, Default)]
pub struct Verified {
    /// `ProblemKind::Unsealed` before the seal (SQLite and MySQL database mode).
    pub unsealed_before: usize,
    pub sealed: u64,
    /// Forks of hook mode's autocommit rows.
    pub forks: usize,
    /// Every other problem, with its object's chain.
    pub broken: Vec<String>,
}

/// Seals and verifies. [`assert_exact`] then asserts what must hold: no problem at all, except
/// forks of hook mode's autocommit rows (the README: autocommit writers may fork a chain,
/// never tamper with it).
pub async fn verify(db: &DatabaseConnection) -> Verified {
    let before = sea_orm_audit::verify(db).await.unwrap();
    let unsealed_before = before
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Unsealed)
        .count();
    let sealed = capture_db::seal(db).await.unwrap();
    let report = sea_orm_audit::verify(db).await.unwrap();
    let autocommit_rows: Vec<String> = (ROWS + 1..2 * ROWS + 1).map(|r| r.to_string()).collect();
    let mut forks = 0;
    let mut broken = Vec::new();
    for p in &report.problems {
        let allowed = p.entity_type == Mode::Hooks.table()
            && autocommit_rows.contains(&p.object_id)
            && matches!(p.kind, ProblemKind::Fork { .. });
        if allowed {
            forks += 1;
        } else {
            broken.push(format!(
                "{p:?}\n{}",
                chain_of(db, &p.entity_type, &p.object_id).await
            ));
        }
    }
    Verified {
        unsealed_before,
        sealed,
        forks,
        broken,
    }
}

/// One object's entries, oldest first, for a failure message.
async fn chain_of(db: &DatabaseConnection, entity_type: &str, object_id: &str) -> String {
    let rows = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq(entity_type))
        .filter(audit_log::Column::ObjectId.eq(object_id))
        .order_by_asc(audit_log::Column::Id)
        .all(db)
        .await
        .unwrap();
    let short = |h: &Option<String>| h.as_deref().map(|h| h[..8.min(h.len())].to_owned());
    rows.iter()
        .map(|r| {
            let c = r.changes.clone().unwrap_or(Json::Null);
            format!(
                "    {} {} {:?} {} -> {} prev {:?} hash {:?}",
                r.id,
                r.action,
                r.actor,
                c["old_value"]["val"],
                c["new_value"]["val"],
                short(&r.prev_hash),
                short(&r.hash)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts the tally: 0 misattributed, 0 missing, 0 duplicates, every chain exact where the
/// mode promises it, and prints the figures the README cites.
pub fn assert_exact(label: &str, mode: Mode, out: &Outcome, tally: &Tally, verified: &Verified) {
    let show = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join("\n  ");
    assert!(
        tally.misattributed.is_empty(),
        "{} misattributed:\n  {}",
        tally.misattributed.len(),
        show(&tally.misattributed)
    );
    assert!(
        tally.missing.is_empty(),
        "{} committed writes without an entry:\n  {}",
        tally.missing.len(),
        show(&tally.missing)
    );
    assert!(
        tally.duplicates.is_empty(),
        "{} duplicates:\n  {}",
        tally.duplicates.len(),
        show(&tally.duplicates)
    );
    assert!(
        tally.stale_where_exact.is_empty(),
        "{} entries whose old_value is not the previous new_value:\n  {}",
        tally.stale_where_exact.len(),
        show(&tally.stale_where_exact)
    );
    assert!(
        tally.final_mismatch.is_empty(),
        "{}",
        show(&tally.final_mismatch)
    );
    assert_eq!(tally.entries, out.committed.len());
    assert!(
        verified.broken.is_empty(),
        "verify: {} problems:\n{}",
        verified.broken.len(),
        verified
            .broken
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let in_txn = out.committed.iter().filter(|w| w.in_txn).count();
    eprintln!(
        "exactness {label} {}: {} writes ({in_txn} in transactions, {} retried; {} autocommit), \
         {} entries: 0 misattributed, 0 missing, 0 duplicates; {} autocommit entries with an \
         older old_value, {} forks, {} autocommit entries without actor; {} unsealed before \
         the seal, {} sealed",
        mode.name(),
        out.committed.len(),
        out.retries,
        out.committed.len() - in_txn,
        tally.entries,
        tally.stale_autocommit,
        verified.forks,
        tally.actorless,
        verified.unsealed_before,
        verified.sealed,
    );
}

/// The environment variable a child process reads its orders from (JSON).
pub const CHILD_ENV: &str = "SEA_ORM_AUDIT_CONC_CHILD";

/// Child processes running this test binary's ignored test, each with its order.
pub struct Children {
    running: Vec<(std::process::Child, std::path::PathBuf)>,
}

/// Starts this test binary's ignored test `test` once per order, all at once, each with its
/// order in [`CHILD_ENV`] and `"out"` set to a file in `dir` it writes its answer to.
pub fn spawn_children(test: &str, orders: Vec<Json>, dir: &Path) -> Children {
    let exe = std::env::current_exe().expect("test binary");
    let mut running = Vec::new();
    for (i, mut order) in orders.into_iter().enumerate() {
        let out = dir.join(format!("child-{i}.json"));
        order["out"] = json!(out.display().to_string());
        let child = std::process::Command::new(&exe)
            .args([
                test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, order.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn child");
        running.push((child, out));
    }
    Children { running }
}

impl Children {
    /// Waits for every child; returns their answers in order. Fails with a child's output
    /// when it failed or its test did not run.
    pub async fn wait(self) -> Vec<Json> {
        let mut answers = Vec::new();
        for (child, out) in self.running {
            let output = tokio::task::spawn_blocking(move || child.wait_with_output())
                .await
                .unwrap()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(output.status.success(), "child failed: {text}");
            assert!(
                text.contains("1 passed"),
                "the child test did not run: {text}"
            );
            let answer = std::fs::read_to_string(&out).expect("child answer");
            answers.push(serde_json::from_str(&answer).unwrap());
        }
        answers
    }
}

/// The order a child was given, if this process is one.
pub fn child_order() -> Option<Json> {
    std::env::var(CHILD_ENV)
        .ok()
        .map(|s| serde_json::from_str(&s).expect("child order"))
}

/// Writes a child's answer where its order says.
pub fn answer(order: &Json, answer: &Json) {
    std::fs::write(order["out"].as_str().unwrap(), answer.to_string()).unwrap();
}
