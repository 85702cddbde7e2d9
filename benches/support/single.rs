//! Single-row insert, update and delete, one transaction per operation and 1,000 in one
//! transaction: plain, the hand-written baseline, the hooks, and database-side capture (with
//! the context `capture_db::transaction` sets, without a context, and the trigger alone),
//! interleaved.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use sea_orm_audit::{AuditContext, audit_log, capture_db};
use serde_json::{Map, Value as Json, json};

use super::backends::Target;
use super::entities::{
    audited, audited_new, captured, captured_new, deferred, deferred_new, plain, plain_new,
};
use super::settings::Settings;
use super::stats::{Report, Samples, ratio, us};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Variant {
    Plain,
    Baseline,
    /// Hook mode.
    Audited,
    /// Database mode, active-model writes inside `capture_db::transaction` under an
    /// `AuditContext`: what an application attributing its writes does.
    DbContext,
    /// Database mode, active-model writes in a plain `begin()`/`commit()` with no context:
    /// the hooks still hand the (empty) context to the trigger and seal.
    DbBare,
    /// Database mode, the trigger alone: `Entity::insert`/`update`/`delete_by_id`, which run
    /// no hooks, so no context and (SQLite, MySQL) entries left for a later `seal`.
    DbTrigger,
    /// Database mode with `seal = "deferred"`: active-model writes inside
    /// `capture_db::transaction_unsealed` under an `AuditContext`, the seal timed apart.
    DbDeferred,
    /// `DbDeferred` through a pool of its own built with `capture_db::carry_context` (its
    /// callback sets the context on every acquire, and the transaction then hands none over).
    /// PostgreSQL and MySQL.
    DbCarried,
}

pub(crate) const VARIANTS: [Variant; 8] = [
    Variant::Plain,
    Variant::Baseline,
    Variant::Audited,
    Variant::DbContext,
    Variant::DbBare,
    Variant::DbTrigger,
    Variant::DbDeferred,
    Variant::DbCarried,
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    Insert,
    Update,
    Delete,
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
#[derive(Default)]
struct Rows {
    plain: Vec<i32>,
    audited: Vec<i32>,
    /// Three rows per operation: database mode with context, without, trigger alone.
    captured: Vec<i32>,
    /// One row per operation of the deferred-seal entity.
    deferred: Vec<i32>,
    /// And one for `DbCarried`.
    carried: Vec<i32>,
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
    let captured_ids = seed_captured(db, 3 * n).await?;
    let deferred_ids = seed_db_mode(db, n, deferred::Column::Id, deferred_new).await?;
    let carried_ids = seed_db_mode(db, n, deferred::Column::Id, deferred_new).await?;
    // Plain and baseline share the plain table; each gets its own rows.
    Ok(Rows {
        plain: plain_ids,
        audited: audited_ids,
        captured: captured_ids,
        deferred: deferred_ids,
        carried: carried_ids,
    })
}

/// `n` rows of the database-mode table, their entries sealed; their ids in order.
pub(crate) async fn seed_captured(db: &DatabaseConnection, n: usize) -> Result<Vec<i32>, DbErr> {
    seed_db_mode(db, n, captured::Column::Id, captured_new).await
}

/// `n` rows of a database-mode table whose key is `id`, made by `new`, their entries sealed;
/// their ids in order.
async fn seed_db_mode<E, A>(
    db: &DatabaseConnection,
    n: usize,
    id: E::Column,
    new: fn(usize) -> A,
) -> Result<Vec<i32>, DbErr>
where
    E: EntityTrait,
    A: sea_orm::ActiveModelTrait<Entity = E> + Clone + Send,
{
    let per = match db.get_database_backend() {
        DbBackend::Postgres => 100,
        _ => 500,
    };
    let before: Option<i32> = E::find()
        .select_only()
        .column_as(id.max(), "max")
        .into_tuple::<Option<i32>>()
        .one(db)
        .await?
        .flatten();
    let txn = db.begin().await?;
    let all: Vec<A> = (0..n).map(new).collect();
    for chunk in all.chunks(per) {
        E::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    capture_db::seal(db).await?;
    E::find()
        .select_only()
        .column(id)
        .filter(id.gt(before.unwrap_or(0)))
        .order_by_asc(id)
        .into_tuple::<i32>()
        .all(db)
        .await
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
        (_, Variant::DbContext | Variant::DbBare) => captured_op(txn, op, i, id, true).await?,
        (_, Variant::DbTrigger) => captured_op(txn, op, i, id, false).await?,
        (Op::Insert, Variant::DbDeferred | Variant::DbCarried) => {
            deferred_new(i).insert(txn).await?;
        }
        (Op::Update, Variant::DbDeferred | Variant::DbCarried) => {
            deferred::ActiveModel {
                id: Set(id),
                views: Set(i as i32 + 1),
                ..Default::default()
            }
            .update(txn)
            .await?;
        }
        (Op::Delete, Variant::DbDeferred | Variant::DbCarried) => {
            deferred::ActiveModel {
                id: Set(id),
                ..Default::default()
            }
            .delete(txn)
            .await?;
        }
    }
    Ok(())
}

/// One operation on the database-mode table: through the active model (its hooks set the
/// context and seal), or through `Entity::*` (no hooks: the trigger alone). Both return the
/// row as plain's active-model calls do (`exec_with_returning` re-reads it on MySQL too).
async fn captured_op(
    txn: &DatabaseTransaction,
    op: Op,
    i: usize,
    id: i32,
    hooks: bool,
) -> Result<(), DbErr> {
    let update = captured::ActiveModel {
        id: Set(id),
        views: Set(i as i32 + 1),
        ..Default::default()
    };
    let delete = captured::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    match (op, hooks) {
        (Op::Insert, true) => {
            captured_new(i).insert(txn).await?;
        }
        (Op::Insert, false) => {
            captured::Entity::insert(captured_new(i))
                .exec_with_returning(txn)
                .await?;
        }
        (Op::Update, true) => {
            update.update(txn).await?;
        }
        (Op::Update, false) => {
            captured::Entity::update(update).exec(txn).await?;
        }
        (Op::Delete, true) => {
            delete.delete(txn).await?;
        }
        (Op::Delete, false) => {
            captured::Entity::delete(delete).exec(txn).await?;
        }
    }
    Ok(())
}

/// Row ids for the i-th operation of each variant: plain and baseline use disjoint halves of
/// the plain table, the database-mode variants thirds of theirs.
fn row_for(rows: &Rows, op: Op, variant: Variant, i: usize) -> i32 {
    if op == Op::Insert {
        return 0;
    }
    match variant {
        Variant::Plain => rows.plain[2 * i],
        Variant::Baseline => rows.plain[2 * i + 1],
        Variant::Audited => rows.audited[i],
        Variant::DbContext => rows.captured[3 * i],
        Variant::DbBare => rows.captured[3 * i + 1],
        Variant::DbTrigger => rows.captured[3 * i + 2],
        Variant::DbDeferred => rows.deferred[i],
        Variant::DbCarried => rows.carried[i],
    }
}

/// The actor the database-mode runs attribute their writes to.
fn context() -> AuditContext {
    AuditContext::new().actor("bench").tool("bench")
}

/// One operation in a transaction of its own, begin to commit. `DbContext` runs it through
/// `capture_db::transaction` (begin, context, op, seal, commit); the others through
/// `begin()`/`commit()`.
async fn own_tx(
    db: &DatabaseConnection,
    op: Op,
    v: Variant,
    i: usize,
    id: i32,
) -> Result<Duration, DbErr> {
    let start = Instant::now();
    if v == Variant::DbContext {
        context()
            .scope(capture_db::transaction(db, move |txn| {
                Box::pin(async move { run_op(txn, op, v, i, id).await })
            }))
            .await?;
    } else if matches!(v, Variant::DbDeferred | Variant::DbCarried) {
        context()
            .scope(capture_db::transaction_unsealed(db, move |txn| {
                Box::pin(async move { run_op(txn, op, v, i, id).await })
            }))
            .await?;
    } else {
        let txn = db.begin().await?;
        run_op(&txn, op, v, i, id).await?;
        txn.commit().await?;
    }
    Ok(start.elapsed())
}

/// 1,000 operations in one transaction, each timed alone (begin and commit are not).
async fn one_tx(
    db: &DatabaseConnection,
    op: Op,
    v: Variant,
    first: usize,
    ids: Vec<i32>,
) -> Result<Vec<Duration>, DbErr> {
    if v == Variant::DbContext {
        context()
            .scope(capture_db::transaction(db, move |txn| {
                Box::pin(timed_ops(txn, op, v, first, ids))
            }))
            .await
    } else if matches!(v, Variant::DbDeferred | Variant::DbCarried) {
        context()
            .scope(capture_db::transaction_unsealed(db, move |txn| {
                Box::pin(timed_ops(txn, op, v, first, ids))
            }))
            .await
    } else {
        let txn = db.begin().await?;
        let times = timed_ops(&txn, op, v, first, ids).await?;
        txn.commit().await?;
        Ok(times)
    }
}

async fn timed_ops(
    txn: &DatabaseTransaction,
    op: Op,
    v: Variant,
    first: usize,
    ids: Vec<i32>,
) -> Result<Vec<Duration>, DbErr> {
    let mut times = Vec::with_capacity(ids.len());
    for (j, id) in ids.into_iter().enumerate() {
        let start = Instant::now();
        run_op(txn, op, v, first + j, id).await?;
        times.push(start.elapsed());
    }
    Ok(times)
}

pub(crate) async fn single_row_ops(
    t: &Target,
    settings: &Settings,
    report: &mut Report,
    database: &mut Report,
    deferred_report: &mut Report,
) -> Result<(), DbErr> {
    let db = &t.db;
    let backend = db.get_database_backend();
    let seals = backend != DbBackend::Postgres;
    let carrying = carrying_pool(t).await?;
    // The variants this backend runs (`DbCarried` needs a pool that carries the context), and
    // the pool each runs on.
    let variants: Vec<Variant> = VARIANTS
        .into_iter()
        .filter(|&v| v != Variant::DbCarried || carrying.is_some())
        .collect();
    let pool = |v: Variant| match (&carrying, v) {
        (Some(carrying), Variant::DbCarried) => carrying,
        _ => db,
    };
    let count = variants.len();
    for (mode, label) in [(false, "own tx"), (true, "1000/tx")] {
        let n = if mode {
            1_000 * settings.batch_rounds()
        } else {
            settings.own_tx_ops()
        };
        for op in [Op::Insert, Op::Update, Op::Delete] {
            let rows = if op == Op::Insert {
                Rows::default()
            } else {
                seed_rows(db, n).await?
            };
            let mut samples: BTreeMap<&str, Samples> = BTreeMap::new();
            // Warm up each variant (statement caches, pages).
            for &v in &variants {
                let txn = pool(v).begin().await?;
                run_op(&txn, Op::Insert, v, 0, 0).await?;
                txn.rollback().await?;
            }
            // The trigger alone leaves its entries unsealed on SQLite and MySQL: sealed after
            // each of its turns, timed apart, so no other variant seals them.
            let mut seal = Samples::default();
            // The deferred-seal entity's entries, sealed after each of its turns, timed apart.
            let mut deferred_seal = Samples::default();
            if mode {
                for round in 0..settings.batch_rounds() {
                    for k in 0..count {
                        let v = variants[(round + k) % count];
                        let first = round * 1_000;
                        let ids = (first..first + 1_000)
                            .map(|i| row_for(&rows, op, v, i))
                            .collect();
                        for d in one_tx(pool(v), op, v, first, ids).await? {
                            samples.entry(name(v)).or_default().push(d);
                        }
                        if v == Variant::DbTrigger {
                            let start = Instant::now();
                            capture_db::seal(db).await?;
                            seal.push(start.elapsed() / 1_000);
                        } else if v == Variant::DbDeferred {
                            let start = Instant::now();
                            capture_db::seal(db).await?;
                            deferred_seal.push(start.elapsed() / 1_000);
                        } else if v == Variant::DbCarried
                            || (v == Variant::DbBare && backend == DbBackend::MySql)
                        {
                            // The carried variant's entries wait for a seal like the deferred
                            // one's, and on MySQL, which seals outside transactions only, the
                            // hooks' like the trigger's: untimed here.
                            capture_db::seal(db).await?;
                        }
                    }
                }
            } else {
                for i in 0..n {
                    for k in 0..count {
                        let v = variants[(i + k) % count];
                        let d = own_tx(pool(v), op, v, i, row_for(&rows, op, v, i)).await?;
                        samples.entry(name(v)).or_default().push(d);
                        if v == Variant::DbTrigger {
                            let start = Instant::now();
                            capture_db::seal(db).await?;
                            seal.push(start.elapsed());
                        } else if v == Variant::DbDeferred {
                            let start = Instant::now();
                            capture_db::seal(db).await?;
                            deferred_seal.push(start.elapsed());
                        } else if v == Variant::DbCarried
                            || (v == Variant::DbBare && backend == DbBackend::MySql)
                        {
                            capture_db::seal(db).await?;
                        }
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
            let c = &samples["db context"];
            let bare = &samples["db no context"];
            let trig = &samples["db trigger"];
            let (seal_us, with_seal) = if seals {
                (
                    us(seal.median()),
                    ratio(trig.median() + seal.median(), p.median()),
                )
            } else {
                ("-".to_owned(), "-".to_owned())
            };
            database.line(format!(
                "| {} | {:?} | {label} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} | {seal_us} \
                 | {} | {} | {} | {with_seal} | {} |",
                t.name,
                op,
                us(p.median()),
                us(p.p99()),
                us(a.median()),
                us(a.p99()),
                us(c.median()),
                us(c.p99()),
                us(bare.median()),
                us(bare.p99()),
                us(trig.median()),
                us(trig.p99()),
                ratio(c.median(), p.median()),
                ratio(bare.median(), p.median()),
                ratio(trig.median(), p.median()),
                ratio(c.median(), a.median()),
            ));
            let d = &samples["db deferred"];
            let (carried_us, carried_ratio) = match samples.get("db carried") {
                Some(cd) => (
                    format!("{} / {}", us(cd.median()), us(cd.p99())),
                    ratio(cd.median(), a.median()),
                ),
                None => ("-".to_owned(), "-".to_owned()),
            };
            deferred_report.line(format!(
                "| {} | {:?} | {label} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | \
                 {carried_us} | {carried_ratio} |",
                t.name,
                op,
                us(p.median()),
                us(a.median()),
                us(c.median()),
                us(d.median()),
                us(d.p99()),
                us(deferred_seal.median()),
                ratio(d.median(), p.median()),
                ratio(d.median() + deferred_seal.median(), p.median()),
                ratio(d.median(), a.median()),
                ratio(d.median(), c.median()),
            ));
        }
    }
    Ok(())
}

/// A pool of one connection to the target's database built with `capture_db::carry_context`
/// (none for SQLite in memory, which a second pool cannot open).
async fn carrying_pool(t: &Target) -> Result<Option<DatabaseConnection>, DbErr> {
    #[cfg(any(
        feature = "sqlx-postgres",
        feature = "sqlx-mysql",
        feature = "sqlx-sqlite"
    ))]
    if let Some(url) = &t.url {
        let mut options = super::backends::options(url);
        capture_db::carry_context(&mut options);
        return sea_orm::Database::connect(options).await.map(Some);
    }
    let _ = t;
    Ok(None)
}

fn name(v: Variant) -> &'static str {
    match v {
        Variant::Plain => "plain",
        Variant::Baseline => "baseline",
        Variant::Audited => "audited",
        Variant::DbContext => "db context",
        Variant::DbBare => "db no context",
        Variant::DbTrigger => "db trigger",
        Variant::DbDeferred => "db deferred",
        Variant::DbCarried => "db carried",
    }
}
