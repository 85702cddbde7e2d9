//! Bulk insert, update and delete of 10,000 rows: SeaORM's own against `bulk::*`, and the
//! floor of writing the log rows alone.

use std::collections::BTreeMap;
use std::time::Instant;

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ColumnTrait, Condition, DbBackend, DbErr, EntityTrait, QueryFilter, TransactionTrait,
};
use sea_orm_audit::audit_log;
use serde_json::json;

use super::backends::Target;
use super::entities::{audited, audited_new, plain, plain_new};
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
