//! What auditing costs, side by side. See BENCHMARKS.md.
//!
//! ```sh
//! cargo bench --bench audit                      # SQLite file and in-memory
//! AUDIT_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench audit
//! AUDIT_BENCH_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench --bench audit
//! cargo bench --bench audit -- --quick --only postgres --skip history
//! ```
//!
//! For each backend and each single-row operation it runs three variants on the same
//! connection, interleaved (plain, baseline, audited, rotating which goes first):
//! plain SeaORM; a hand-written minimal audit in the same transaction (SELECT the old row, the
//! write, one INSERT into `audit_log` with a serde_json diff); and sea-orm-audit's hooks. Then
//! the bulk operations on 10,000 rows, and history lookups at 1,000,000 log rows.

#![allow(missing_docs, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    QuerySelect, Schema, Statement, TransactionTrait,
};
use sea_orm_audit::{History, audit_log};

/// The axum layer's latency and the activity writer's throughput.
#[cfg(feature = "axum")]
#[path = "support/web.rs"]
mod web;
use sea_orm_migration::MigratorTrait;
use serde_json::{Map, Value as Json, json};

/// A small posts entity (id, title, body, views), without hooks: the plain baseline.
mod plain {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "plain_posts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub views: i32,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The same entity, audited by sea-orm-audit.
mod audited {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "audited_posts")]
    #[audit(entity_type = "post")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub views: i32,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        sea_orm_audit_migration::migrations()
    }
}

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    quick: bool,
    only: Vec<String>,
    skip: Vec<String>,
}

impl Settings {
    fn from_args() -> Settings {
        let mut s = Settings {
            quick: false,
            only: Vec::new(),
            skip: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => s.quick = true,
                "--only" => s.only.extend(args.next()),
                "--skip" => s.skip.extend(args.next()),
                "--bench" => {} // passed by `cargo bench`
                other => eprintln!("ignoring argument {other}"),
            }
        }
        s
    }

    /// `--only` and `--skip` take backends (sqlite-file, sqlite-mem, postgres, mysql) and
    /// sections (single, bulk, history, web); `--only` of one kind leaves the other kind alone.
    fn wants(&self, what: &str) -> bool {
        const BACKENDS: [&str; 4] = ["sqlite-file", "sqlite-mem", "postgres", "mysql"];
        let same_kind = |o: &&String| BACKENDS.contains(&o.as_str()) == BACKENDS.contains(&what);
        let only: Vec<&String> = self.only.iter().filter(same_kind).collect();
        (only.is_empty() || only.iter().any(|o| *o == what)) && !self.skip.iter().any(|s| s == what)
    }

    /// Single-row operations per variant with one transaction each.
    fn own_tx_ops(&self) -> usize {
        if self.quick { 200 } else { 2_000 }
    }

    /// Rounds of 1,000 operations in one transaction.
    fn batch_rounds(&self) -> usize {
        if self.quick { 1 } else { 3 }
    }

    fn bulk_rows(&self) -> usize {
        if self.quick { 1_000 } else { 10_000 }
    }

    fn bulk_rounds(&self) -> usize {
        if self.quick { 2 } else { 5 }
    }

    /// Requests per variant through the axum layer.
    #[cfg(feature = "axum")]
    fn web_requests(&self) -> usize {
        if self.quick { 300 } else { 3_000 }
    }

    /// Activity entries per writer round.
    #[cfg(feature = "axum")]
    fn writer_entries(&self) -> usize {
        if self.quick { 2_000 } else { 10_000 }
    }

    fn history_rows(&self) -> usize {
        if self.quick { 100_000 } else { 1_000_000 }
    }
}

// ---------------------------------------------------------------------------------------------
// Backends

struct Target {
    name: &'static str,
    db: DatabaseConnection,
    _dir: Option<tempfile::TempDir>,
}

fn options(url: &str) -> ConnectOptions {
    let mut opt = ConnectOptions::new(url);
    // One connection for every variant; no ping before each acquire (see BENCHMARKS.md,
    // "Facts these numbers rest on").
    opt.max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .sqlx_logging(false);
    opt
}

async fn fresh_server_db(server_url: &str, name: &str) -> Result<DatabaseConnection, DbErr> {
    let admin = Database::connect(options(server_url)).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    admin.close().await?;
    let (base, _) = server_url
        .rsplit_once('/')
        .ok_or_else(|| DbErr::Custom(format!("{server_url}: no database path")))?;
    Database::connect(options(&format!("{base}/{name}"))).await
}

async fn targets(settings: &Settings) -> Result<Vec<Target>, DbErr> {
    let mut out = Vec::new();
    if settings.wants("sqlite-file") {
        let dir = tempfile::tempdir().map_err(|e| DbErr::Custom(e.to_string()))?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        let db = Database::connect(options(&url)).await?;
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        db.execute_unprepared("PRAGMA synchronous=NORMAL").await?;
        out.push(Target {
            name: "sqlite-file",
            db,
            _dir: Some(dir),
        });
    }
    if settings.wants("sqlite-mem") {
        let db = Database::connect(options("sqlite::memory:")).await?;
        out.push(Target {
            name: "sqlite-mem",
            db,
            _dir: None,
        });
    }
    if settings.wants("postgres") {
        match std::env::var("AUDIT_BENCH_POSTGRES_URL") {
            Ok(url) => out.push(Target {
                name: "postgres",
                db: fresh_server_db(&url, "sea_orm_audit_bench").await?,
                _dir: None,
            }),
            Err(_) => eprintln!("postgres skipped: set AUDIT_BENCH_POSTGRES_URL"),
        }
    }
    if settings.wants("mysql") {
        match std::env::var("AUDIT_BENCH_MYSQL_URL") {
            Ok(url) => out.push(Target {
                name: "mysql",
                db: fresh_server_db(&url, "sea_orm_audit_bench").await?,
                _dir: None,
            }),
            Err(_) => eprintln!("mysql skipped: set AUDIT_BENCH_MYSQL_URL"),
        }
    }
    Ok(out)
}

async fn create_schema(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await?;
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(plain::Entity))
        .await?;
    db.execute(&schema.create_table_from_entity(audited::Entity))
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Statistics

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    fn p99(&self) -> Duration {
        self.quantile(0.99)
    }
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        "-".into()
    } else {
        format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
    }
}

/// One printed table, kept to print again at the end.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn line(&mut self, line: String) {
        println!("{line}");
        self.lines.push(line);
    }
}

// ---------------------------------------------------------------------------------------------
// The three variants of a single-row operation

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Plain,
    Baseline,
    Audited,
}

const VARIANTS: [Variant; 3] = [Variant::Plain, Variant::Baseline, Variant::Audited];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Insert,
    Update,
    Delete,
}

fn body() -> String {
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ".repeat(3)
}

fn plain_new(i: usize) -> plain::ActiveModel {
    plain::ActiveModel {
        id: NotSet,
        title: Set(format!("Post {i}")),
        body: Set(body()),
        views: Set(0),
        updated_at: Set(chrono::Utc::now()),
    }
}

fn audited_new(i: usize) -> audited::ActiveModel {
    audited::ActiveModel {
        id: NotSet,
        title: Set(format!("Post {i}")),
        body: Set(body()),
        views: Set(0),
        updated_at: Set(chrono::Utc::now()),
    }
}

fn lock<S: QuerySelect>(select: S, backend: DbBackend) -> S {
    if backend == DbBackend::Sqlite {
        select
    } else {
        select.lock_exclusive()
    }
}

/// The hand-written log row: what a minimal audit writes, one statement.
async fn baseline_log(
    txn: &DatabaseTransaction,
    action: &str,
    id: i32,
    old: Map<String, Json>,
    new: Map<String, Json>,
) -> Result<(), DbErr> {
    let row = audit_log::ActiveModel {
        id: NotSet,
        entity_type: Set("plain_post".into()),
        object_id: Set(id.to_string()),
        action: Set(action.into()),
        actor: Set(None),
        created_at: Set(chrono::Utc::now()),
        changes: Set(Some(json!({ "old_value": old, "new_value": new }))),
        tool: Set(None),
        message: Set(None),
        status: Set("success".into()),
        data: Set(None),
        prev_hash: Set(None),
        hash: Set(None),
    };
    audit_log::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

fn to_map(model: &plain::Model) -> Map<String, Json> {
    match serde_json::to_value(model) {
        Ok(Json::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The fields whose values differ, old and new.
fn json_diff(
    old: &Map<String, Json>,
    new: &Map<String, Json>,
) -> (Map<String, Json>, Map<String, Json>) {
    let mut o = Map::new();
    let mut n = Map::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            o.insert(k.clone(), old.get(k).cloned().unwrap_or(Json::Null));
            n.insert(k.clone(), v.clone());
        }
    }
    (o, n)
}

/// Pre-created rows for updates and deletes, per variant.
struct Rows {
    plain: Vec<i32>,
    audited: Vec<i32>,
}

async fn seed_rows(db: &DatabaseConnection, n: usize) -> Result<Rows, DbErr> {
    let mut plain_ids = Vec::with_capacity(2 * n);
    for chunk in (0..2 * n).collect::<Vec<_>>().chunks(100) {
        let txn = db.begin().await?;
        for &i in chunk {
            plain_ids.push(plain_new(i).insert(&txn).await?.id);
        }
        txn.commit().await?;
    }
    let mut audited_ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let rows = chunk.iter().map(|&i| audited_new(i));
        audited_ids.extend(
            sea_orm_audit::bulk::insert_many(db, rows)
                .await?
                .into_iter()
                .map(|m| m.id),
        );
    }
    // Plain and baseline share the plain table; each gets its own rows.
    Ok(Rows {
        plain: plain_ids,
        audited: audited_ids,
    })
}

/// One operation of one variant on row `id` (ignored for inserts), inside `txn`.
async fn run_op(
    txn: &DatabaseTransaction,
    op: Op,
    variant: Variant,
    i: usize,
    id: i32,
) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    match (op, variant) {
        (Op::Insert, Variant::Plain) => {
            plain_new(i).insert(txn).await?;
        }
        (Op::Insert, Variant::Baseline) => {
            let model = plain_new(i).insert(txn).await?;
            baseline_log(txn, "create", model.id, Map::new(), to_map(&model)).await?;
        }
        (Op::Insert, Variant::Audited) => {
            audited_new(i).insert(txn).await?;
        }
        (Op::Update, Variant::Plain) => {
            plain::ActiveModel {
                id: Set(id),
                views: Set(i as i32 + 1),
                ..Default::default()
            }
            .update(txn)
            .await?;
        }
        (Op::Update, Variant::Baseline) => {
            let old = lock(plain::Entity::find_by_id(id), backend)
                .one(txn)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(id.to_string()))?;
            let new = plain::ActiveModel {
                id: Set(id),
                views: Set(i as i32 + 1),
                ..Default::default()
            }
            .update(txn)
            .await?;
            let (o, n) = json_diff(&to_map(&old), &to_map(&new));
            baseline_log(txn, "update", id, o, n).await?;
        }
        (Op::Update, Variant::Audited) => {
            audited::ActiveModel {
                id: Set(id),
                views: Set(i as i32 + 1),
                ..Default::default()
            }
            .update(txn)
            .await?;
        }
        (Op::Delete, Variant::Plain) => {
            plain::ActiveModel {
                id: Set(id),
                ..Default::default()
            }
            .delete(txn)
            .await?;
        }
        (Op::Delete, Variant::Baseline) => {
            let old = lock(plain::Entity::find_by_id(id), backend)
                .one(txn)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(id.to_string()))?;
            plain::ActiveModel {
                id: Set(id),
                ..Default::default()
            }
            .delete(txn)
            .await?;
            baseline_log(txn, "delete", id, to_map(&old), Map::new()).await?;
        }
        (Op::Delete, Variant::Audited) => {
            audited::ActiveModel {
                id: Set(id),
                ..Default::default()
            }
            .delete(txn)
            .await?;
        }
    }
    Ok(())
}

/// Row ids for the i-th operation of each variant: plain and baseline use disjoint halves of
/// the plain table.
fn row_for(rows: &Rows, variant: Variant, i: usize) -> i32 {
    match variant {
        Variant::Plain => rows.plain[2 * i],
        Variant::Baseline => rows.plain[2 * i + 1],
        Variant::Audited => rows.audited[i],
    }
}

async fn single_row_ops(t: &Target, settings: &Settings, report: &mut Report) -> Result<(), DbErr> {
    let db = &t.db;
    for (mode, label) in [(false, "own tx"), (true, "1000/tx")] {
        let n = if mode {
            1_000 * settings.batch_rounds()
        } else {
            settings.own_tx_ops()
        };
        for op in [Op::Insert, Op::Update, Op::Delete] {
            let rows = if op == Op::Insert {
                Rows {
                    plain: Vec::new(),
                    audited: Vec::new(),
                }
            } else {
                seed_rows(db, n).await?
            };
            let mut samples: BTreeMap<&str, Samples> = BTreeMap::new();
            // Warm up each variant (statement caches, pages).
            for v in VARIANTS {
                let txn = db.begin().await?;
                run_op(&txn, Op::Insert, v, 0, 0).await?;
                txn.rollback().await?;
            }
            if mode {
                for round in 0..settings.batch_rounds() {
                    for k in 0..3 {
                        let v = VARIANTS[(round + k) % 3];
                        let txn = db.begin().await?;
                        for j in 0..1_000 {
                            let i = round * 1_000 + j;
                            let id = if op == Op::Insert {
                                0
                            } else {
                                row_for(&rows, v, i)
                            };
                            let start = Instant::now();
                            run_op(&txn, op, v, i, id).await?;
                            samples.entry(name(v)).or_default().push(start.elapsed());
                        }
                        txn.commit().await?;
                    }
                }
            } else {
                for i in 0..n {
                    for k in 0..3 {
                        let v = VARIANTS[(i + k) % 3];
                        let id = if op == Op::Insert {
                            0
                        } else {
                            row_for(&rows, v, i)
                        };
                        let start = Instant::now();
                        let txn = db.begin().await?;
                        run_op(&txn, op, v, i, id).await?;
                        txn.commit().await?;
                        samples.entry(name(v)).or_default().push(start.elapsed());
                    }
                }
            }
            let p = &samples["plain"];
            let b = &samples["baseline"];
            let a = &samples["audited"];
            report.line(format!(
                "| {} | {:?} | {label} | {} / {} | {} / {} | {} / {} | {} | {} | {} |",
                t.name,
                op,
                us(p.median()),
                us(p.p99()),
                us(b.median()),
                us(b.p99()),
                us(a.median()),
                us(a.p99()),
                ratio(a.median(), p.median()),
                ratio(b.median(), p.median()),
                ratio(a.median(), b.median()),
            ));
        }
    }
    Ok(())
}

fn name(v: Variant) -> &'static str {
    match v {
        Variant::Plain => "plain",
        Variant::Baseline => "baseline",
        Variant::Audited => "audited",
    }
}

// ---------------------------------------------------------------------------------------------
// Bulk

async fn bulk_ops(t: &Target, settings: &Settings, report: &mut Report) -> Result<(), DbErr> {
    let db = &t.db;
    let rows = settings.bulk_rows();
    let per = match db.get_database_backend() {
        DbBackend::Postgres => 100,
        _ => 500,
    };
    let mut times: BTreeMap<(&str, bool), Samples> = BTreeMap::new();
    for round in 0..settings.bulk_rounds() {
        for audited_first in [round % 2 == 0, round % 2 != 0] {
            let audited_side = audited_first;
            // insert
            let start = Instant::now();
            if audited_side {
                sea_orm_audit::bulk::insert_many(db, (0..rows).map(audited_new)).await?;
            } else {
                let txn = db.begin().await?;
                let all: Vec<plain::ActiveModel> = (0..rows).map(plain_new).collect();
                for chunk in all.chunks(per) {
                    plain::Entity::insert_many(chunk.to_vec())
                        .exec_without_returning(&txn)
                        .await?;
                }
                txn.commit().await?;
            }
            times
                .entry(("insert", audited_side))
                .or_default()
                .push(start.elapsed());
            // update every row just inserted (they are the only rows with views = 0)
            let start = Instant::now();
            if audited_side {
                sea_orm_audit::bulk::update_many::<audited::Entity, _>(
                    db,
                    Condition::all().add(audited::Column::Views.eq(0)),
                    audited::ActiveModel {
                        views: Set(7),
                        ..Default::default()
                    },
                )
                .await?;
            } else {
                plain::Entity::update_many()
                    .col_expr(plain::Column::Views, sea_orm::sea_query::Expr::value(7))
                    .filter(plain::Column::Views.eq(0))
                    .exec(db)
                    .await?;
            }
            times
                .entry(("update", audited_side))
                .or_default()
                .push(start.elapsed());
            // delete them
            let start = Instant::now();
            if audited_side {
                sea_orm_audit::bulk::delete_many::<audited::Entity, _>(
                    db,
                    Condition::all().add(audited::Column::Views.eq(7)),
                )
                .await?;
            } else {
                plain::Entity::delete_many()
                    .filter(plain::Column::Views.eq(7))
                    .exec(db)
                    .await?;
            }
            times
                .entry(("delete", audited_side))
                .or_default()
                .push(start.elapsed());
        }
        // The floor for any design that keeps one log row per changed row: writing those rows
        // alone, prebuilt, with multi-row INSERTs in one transaction.
        let prebuilt: Vec<audit_log::ActiveModel> = (0..rows)
            .map(|i| audit_log::ActiveModel {
                id: NotSet,
                entity_type: Set("post".into()),
                object_id: Set(i.to_string()),
                action: Set("update".into()),
                actor: Set(None),
                created_at: Set(chrono::Utc::now()),
                changes: Set(Some(
                    json!({"old_value": {"views": 0}, "new_value": {"views": 7}}),
                )),
                tool: Set(None),
                message: Set(None),
                status: Set("success".into()),
                data: Set(None),
                prev_hash: Set(Some("0".repeat(64))),
                hash: Set(Some("f".repeat(64))),
            })
            .collect();
        let start = Instant::now();
        let txn = db.begin().await?;
        for chunk in prebuilt.chunks(per) {
            audit_log::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        times
            .entry(("log rows", false))
            .or_default()
            .push(start.elapsed());
    }
    let floor = times[&("log rows", false)].median();
    for op in ["insert", "update", "delete"] {
        let p = &times[&(op, false)];
        let a = &times[&(op, true)];
        report.line(format!(
            "| {} | bulk {op} {rows} rows | {} | {} | {} | {} | {} |",
            t.name,
            ms(p.median()),
            ms(a.median()),
            ratio(a.median(), p.median()),
            ms(floor),
            ratio(a.median(), p.median() + floor),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// History lookups

/// Objects with at least 100 entries; the lookups read their newest 50.
const HOT_OBJECTS: usize = 1_000;

async fn seed_history(db: &DatabaseConnection, total: usize) -> Result<(), DbErr> {
    let objects = total / 10;
    let per = match db.get_database_backend() {
        DbBackend::Postgres => 100,
        _ => 500,
    };
    // Round-robin over objects, so an object's entries are spread over the table as in life:
    // hot objects get 100 entries, the others share the rest.
    let mut order: Vec<usize> = Vec::with_capacity(total);
    let cold_total = total - HOT_OBJECTS * 100;
    let cold = objects - HOT_OBJECTS;
    for round in 0..100 {
        order.extend(0..HOT_OBJECTS);
        let start = round * cold_total / 100;
        let end = (round + 1) * cold_total / 100;
        for k in start..end {
            order.push(HOT_OBJECTS + k % cold);
        }
    }
    let now = chrono::Utc::now();
    let started = Instant::now();
    for (n, chunk) in order.chunks(per).enumerate() {
        let rows = chunk.iter().map(|&o| audit_log::ActiveModel {
            id: NotSet,
            entity_type: Set("post".into()),
            object_id: Set(o.to_string()),
            action: Set("update".into()),
            actor: Set(Some(format!("user{}", o % 50))),
            created_at: Set(now),
            changes: Set(Some(
                json!({"old_value": {"views": n}, "new_value": {"views": n + 1}}),
            )),
            tool: Set(Some("bench".into())),
            message: Set(None),
            status: Set("success".into()),
            data: Set(None),
            prev_hash: Set(None),
            hash: Set(None),
        });
        audit_log::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    eprintln!(
        "  seeded {total} log rows over {objects} objects in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared("ANALYZE audit_log").await?;
    }
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("ANALYZE").await?;
    }
    Ok(())
}

/// The same query in raw SQL, decoding the columns a caller would read.
async fn raw_history(db: &DatabaseConnection, object_id: &str) -> Result<usize, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT id, entity_type, object_id, action, actor, created_at, changes, tool, message, \
             status, data FROM audit_log WHERE entity_type = $1 AND object_id = $2 ORDER BY id \
             DESC LIMIT 50"
        }
        _ => {
            "SELECT id, entity_type, object_id, action, actor, created_at, changes, tool, message, \
             status, data FROM audit_log WHERE entity_type = ? AND object_id = ? ORDER BY id DESC \
             LIMIT 50"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            ["post".into(), object_id.into()],
        ))
        .await?;
    let mut n = 0;
    for row in rows {
        // Every selected column, as a caller reading history would.
        let _: i64 = row.try_get("", "id")?;
        let _: String = row.try_get("", "entity_type")?;
        let _: String = row.try_get("", "object_id")?;
        let _: String = row.try_get("", "action")?;
        let _: Option<String> = row.try_get("", "actor")?;
        let _: chrono::DateTime<chrono::Utc> = row.try_get("", "created_at")?;
        let _: Option<Json> = row.try_get("", "changes")?;
        let _: Option<String> = row.try_get("", "tool")?;
        let _: Option<String> = row.try_get("", "message")?;
        let _: String = row.try_get("", "status")?;
        let _: Option<Json> = row.try_get("", "data")?;
        n += 1;
    }
    Ok(n)
}

async fn history(t: &Target, settings: &Settings, report: &mut Report) -> Result<(), DbErr> {
    let db = &t.db;
    let total = settings.history_rows();
    // The single-row and bulk runs left some rows; start from a clean log.
    db.execute_unprepared("DELETE FROM audit_log").await?;
    seed_history(db, total).await?;
    let lookups = if settings.quick { 500 } else { 5_000 };
    let mut lib = Samples::default();
    let mut raw = Samples::default();
    for i in 0..lookups {
        let object = (i * 7919 % HOT_OBJECTS).to_string();
        for k in 0..2 {
            let start = Instant::now();
            if (i + k) % 2 == 0 {
                let page = History::new()
                    .object("post", object.as_str())
                    .limit(50)
                    .fetch(db)
                    .await?;
                assert_eq!(page.entries.len(), 50);
                lib.push(start.elapsed());
            } else {
                let n = raw_history(db, &object).await?;
                assert_eq!(n, 50);
                raw.push(start.elapsed());
            }
        }
    }
    report.line(format!(
        "| {} | {total} rows | {} / {} | {} / {} | {} |",
        t.name,
        us(raw.median()),
        us(raw.p99()),
        us(lib.median()),
        us(lib.p99()),
        ratio(lib.p99(), raw.p99())
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), DbErr> {
    let settings = Settings::from_args();
    let targets = targets(&settings).await?;
    let mut single = Report::default();
    let mut bulk = Report::default();
    let mut hist = Report::default();
    #[cfg(feature = "axum")]
    let (mut latency, mut writer) = (Report::default(), Report::default());
    for t in &targets {
        eprintln!("== {}", t.name);
        create_schema(&t.db).await?;
        if settings.wants("single") {
            if single.lines.is_empty() {
                single.line(
                    "| backend | op | mode | plain µs p50 / p99 | baseline µs p50 / p99 | audited µs \
                     p50 / p99 | audited/plain | baseline/plain | audited/baseline |"
                        .into(),
                );
                single.line("|---|---|---|---|---|---|---|---|---|".into());
            }
            single_row_ops(t, &settings, &mut single).await?;
        }
        if settings.wants("bulk") {
            if bulk.lines.is_empty() {
                bulk.line(
                    "| backend | op | plain ms p50 | audited ms p50 | audited/plain | log rows \
                     alone ms | audited/(plain + log rows) |"
                        .into(),
                );
                bulk.line("|---|---|---|---|---|---|---|".into());
            }
            bulk_ops(t, &settings, &mut bulk).await?;
        }
        if settings.wants("history") {
            if hist.lines.is_empty() {
                hist.line(
                    "| backend | log size | raw SQL µs p50 / p99 | History µs p50 / p99 | p99 ratio |"
                        .into(),
                );
                hist.line("|---|---|---|---|---|".into());
            }
            history(t, &settings, &mut hist).await?;
        }
        #[cfg(feature = "axum")]
        if settings.wants("web") {
            if latency.lines.is_empty() {
                latency.line(
                    "| backend | no layer µs p50 / p99 | context layer µs p50 / p99 | context + \
                     activity log µs p50 / p99 | context/none | activity/none |"
                        .into(),
                );
                latency.line("|---|---|---|---|---|---|".into());
            }
            web::layer_latency(t.name, &t.db, settings.web_requests(), &mut latency).await?;
            if writer.lines.is_empty() {
                writer.line(
                    "| backend | entries | writer entries/s | raw multi-row INSERT rows/s | \
                     writer time / raw time |"
                        .into(),
                );
                writer.line("|---|---|---|---|---|".into());
            }
            let rounds = settings.bulk_rounds().min(3);
            web::writer_throughput(
                t.name,
                &t.db,
                settings.writer_entries(),
                rounds,
                &mut writer,
            )
            .await?;
        }
    }
    println!("\n## Single-row operations (median / p99 per operation)\n");
    for l in &single.lines {
        println!("{l}");
    }
    println!("\n## Bulk operations\n");
    for l in &bulk.lines {
        println!("{l}");
    }
    println!("\n## History lookups: newest 50 entries of one object\n");
    for l in &hist.lines {
        println!("{l}");
    }
    #[cfg(feature = "axum")]
    {
        println!("\n## axum layer: latency of a JSON request with one database query\n");
        for l in &latency.lines {
            println!("{l}");
        }
        println!(
            "\n## Activity writer: one flush of queued entries vs the same rows inserted raw\n"
        );
        for l in &writer.lines {
            println!("{l}");
        }
    }
    Ok(())
}
