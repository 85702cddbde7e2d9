//! Single-row insert, update and delete, one transaction per operation and 1,000 in one
//! transaction: plain, the hand-written baseline, and the hooks, interleaved.

use std::collections::BTreeMap;
use std::time::Instant;

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, QuerySelect, TransactionTrait,
};
use sea_orm_audit::audit_log;
use serde_json::{Map, Value as Json, json};

use super::backends::Target;
use super::entities::{audited, audited_new, plain, plain_new};
use super::settings::Settings;
use super::stats::{Report, Samples, ratio, us};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Variant {
    Plain,
    Baseline,
    Audited,
}

pub(crate) const VARIANTS: [Variant; 3] = [Variant::Plain, Variant::Baseline, Variant::Audited];

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

pub(crate) async fn single_row_ops(
    t: &Target,
    settings: &Settings,
    report: &mut Report,
) -> Result<(), DbErr> {
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
