//! Bulk insert, update and delete of 10,000 rows: SeaORM's own against `bulk::*` (hook mode)
//! and against SeaORM's own on the database-mode entity (triggers; on SQLite and MySQL
//! followed by `capture_db::seal`, timed apart; on PostgreSQL also with the seal deferred), and
//! the floor of writing the log rows alone.

use std::collections::BTreeMap;
use std::time::Instant;

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    TransactionTrait,
};
use sea_orm_audit::{audit_log, capture_db};
use serde_json::json;

use super::backends::Target;
use super::entities::{
    audited, audited_new, captured, captured_new, deferred, deferred_new, plain, plain_new,
};
use super::settings::Settings;
use super::stats::{Report, Samples, ms, ratio};

pub(crate) async fn bulk_ops(
    t: &Target,
    settings: &Settings,
    report: &mut Report,
) -> Result<(), DbErr> {
    let db = &t.db;
    let rows = settings.bulk_rows();
    let per = match db.get_database_backend() {
        DbBackend::Postgres => 100,
        _ => 500,
    };
    let seals = db.get_database_backend() != DbBackend::Postgres;
    // Rows the single-row section left with `views = 0` would be matched too: set them apart,
    // so each side updates and deletes exactly the rows it inserted.
    plain::Entity::update_many()
        .col_expr(plain::Column::Views, Expr::value(1))
        .filter(plain::Column::Views.eq(0))
        .exec(db)
        .await?;
    audited::Entity::update_many()
        .col_expr(audited::Column::Views, Expr::value(1))
        .filter(audited::Column::Views.eq(0))
        .exec(db)
        .await?;
    captured::Entity::update_many()
        .col_expr(captured::Column::Views, Expr::value(1))
        .filter(captured::Column::Views.eq(0))
        .exec(db)
        .await?;
    deferred::Entity::update_many()
        .col_expr(deferred::Column::Views, Expr::value(1))
        .filter(deferred::Column::Views.eq(0))
        .exec(db)
        .await?;
    capture_db::seal(db).await?;
    // A deferred seal changes the trigger on PostgreSQL only: elsewhere it is `Database`'s.
    let sides: &[Side] = if db.get_database_backend() == DbBackend::Postgres {
        &[Side::Plain, Side::Hooks, Side::Database, Side::Deferred]
    } else {
        &[Side::Plain, Side::Hooks, Side::Database]
    };
    let mut times: BTreeMap<(&str, Side), Samples> = BTreeMap::new();
    for round in 0..settings.bulk_rounds() {
        for k in 0..sides.len() {
            let side = sides[(round + k) % sides.len()];
            // insert
            let start = Instant::now();
            match side {
                Side::Hooks => {
                    sea_orm_audit::bulk::insert_many(db, (0..rows).map(audited_new)).await?;
                }
                Side::Plain => {
                    let txn = db.begin().await?;
                    let all: Vec<plain::ActiveModel> = (0..rows).map(plain_new).collect();
                    for chunk in all.chunks(per) {
                        plain::Entity::insert_many(chunk.to_vec())
                            .exec_without_returning(&txn)
                            .await?;
                    }
                    txn.commit().await?;
                }
                Side::Database => {
                    let txn = db.begin().await?;
                    let all: Vec<captured::ActiveModel> = (0..rows).map(captured_new).collect();
                    for chunk in all.chunks(per) {
                        captured::Entity::insert_many(chunk.to_vec())
                            .exec_without_returning(&txn)
                            .await?;
                    }
                    txn.commit().await?;
                }
                Side::Deferred => {
                    let txn = db.begin().await?;
                    let all: Vec<deferred::ActiveModel> = (0..rows).map(deferred_new).collect();
                    for chunk in all.chunks(per) {
                        deferred::Entity::insert_many(chunk.to_vec())
                            .exec_without_returning(&txn)
                            .await?;
                    }
                    txn.commit().await?;
                }
            }
            times
                .entry(("insert", side))
                .or_default()
                .push(start.elapsed());
            seal_timed(db, side, "insert", &mut times).await?;
            // update every row just inserted (they are the only rows with views = 0)
            let start = Instant::now();
            match side {
                Side::Hooks => {
                    sea_orm_audit::bulk::update_many::<audited::Entity, _>(
                        db,
                        Condition::all().add(audited::Column::Views.eq(0)),
                        audited::ActiveModel {
                            views: Set(7),
                            ..Default::default()
                        },
                    )
                    .await?;
                }
                Side::Plain => {
                    plain::Entity::update_many()
                        .col_expr(plain::Column::Views, Expr::value(7))
                        .filter(plain::Column::Views.eq(0))
                        .exec(db)
                        .await?;
                }
                Side::Database => {
                    captured::Entity::update_many()
                        .col_expr(captured::Column::Views, Expr::value(7))
                        .filter(captured::Column::Views.eq(0))
                        .exec(db)
                        .await?;
                }
                Side::Deferred => {
                    deferred::Entity::update_many()
                        .col_expr(deferred::Column::Views, Expr::value(7))
                        .filter(deferred::Column::Views.eq(0))
                        .exec(db)
                        .await?;
                }
            }
            times
                .entry(("update", side))
                .or_default()
                .push(start.elapsed());
            seal_timed(db, side, "update", &mut times).await?;
            // delete them
            let start = Instant::now();
            match side {
                Side::Hooks => {
                    sea_orm_audit::bulk::delete_many::<audited::Entity, _>(
                        db,
                        Condition::all().add(audited::Column::Views.eq(7)),
                    )
                    .await?;
                }
                Side::Plain => {
                    plain::Entity::delete_many()
                        .filter(plain::Column::Views.eq(7))
                        .exec(db)
                        .await?;
                }
                Side::Database => {
                    captured::Entity::delete_many()
                        .filter(captured::Column::Views.eq(7))
                        .exec(db)
                        .await?;
                }
                Side::Deferred => {
                    deferred::Entity::delete_many()
                        .filter(deferred::Column::Views.eq(7))
                        .exec(db)
                        .await?;
                }
            }
            times
                .entry(("delete", side))
                .or_default()
                .push(start.elapsed());
            seal_timed(db, side, "delete", &mut times).await?;
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
            .entry(("log rows", Side::Plain))
            .or_default()
            .push(start.elapsed());
    }
    let floor = times[&("log rows", Side::Plain)].median();
    for (side, label) in [(Side::Database, ""), (Side::Deferred, ", seal deferred")] {
        if !sides.contains(&side) {
            continue;
        }
        for op in ["insert", "update", "delete"] {
            let p = times[&(op, Side::Plain)].median();
            let h = times[&(op, Side::Hooks)].median();
            let d = times[&(op, side)].median();
            let (seal, with_seal) = match times.get(&(seal_key(op), side)) {
                Some(s) if seals || side == Side::Deferred => {
                    (ms(s.median()), ratio(d + s.median(), p))
                }
                _ => ("-".to_owned(), "-".to_owned()),
            };
            report.line(format!(
                "| {} | {op}{label} | {} | {} | {} | {seal} | {} | {} | {with_seal} | {} | {} | {} |",
                t.name,
                ms(p),
                ms(h),
                ms(d),
                ratio(h, p),
                ratio(d, p),
                ms(floor),
                ratio(h, p + floor),
                ratio(d, p + floor),
            ));
        }
    }
    Ok(())
}

/// The three sides of a bulk operation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Side {
    /// SeaORM's own `insert_many`/`update_many`/`delete_many`, no audit.
    Plain,
    /// `sea_orm_audit::bulk::*` on the hook-mode entity.
    Hooks,
    /// SeaORM's own `*_many` on the database-mode entity: the triggers log each row.
    Database,
    /// The same on the entity whose seal is deferred (PostgreSQL only: elsewhere the same
    /// trigger as `Database`).
    Deferred,
}

fn seal_key(op: &str) -> &'static str {
    match op {
        "insert" => "seal insert",
        "update" => "seal update",
        _ => "seal delete",
    }
}

/// After a database side's write: `capture_db::seal` of the entries its triggers wrote
/// unsealed (SQLite and MySQL; the deferred side everywhere), timed on its own.
async fn seal_timed(
    db: &DatabaseConnection,
    side: Side,
    op: &str,
    times: &mut BTreeMap<(&'static str, Side), Samples>,
) -> Result<(), DbErr> {
    let unsealed = match side {
        Side::Database => db.get_database_backend() != DbBackend::Postgres,
        Side::Deferred => true,
        _ => false,
    };
    if !unsealed {
        return Ok(());
    }
    let start = Instant::now();
    capture_db::seal(db).await?;
    times
        .entry((seal_key(op), side))
        .or_default()
        .push(start.elapsed());
    Ok(())
}
