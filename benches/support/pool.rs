//! Autocommit writes of the database-mode table under an `AuditContext`, through a pool that
//! carries the context into each connection it hands out (`capture_db::carry_context`) and
//! through one that does not: what attributing writes outside transactions costs (SQLite: a
//! file, a second pool cannot open a database in memory). Both pools
//! have one connection and no ping before an acquire; the hooks seal after each write on SQLite
//! and MySQL in both.

use std::time::{Duration, Instant};

use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, Database, DatabaseConnection, DbErr};
use sea_orm_audit::{AuditContext, capture_db};

use super::backends::{Target, options};
use super::entities::{captured, captured_new};
use super::settings::Settings;
use super::single::seed_captured;
use super::stats::{Report, Samples, ratio, us};

/// One autocommit active-model write, timed with its hooks.
async fn write(db: &DatabaseConnection, op: &str, i: usize, id: i32) -> Result<Duration, DbErr> {
    let start = Instant::now();
    AuditContext::new()
        .actor("bench")
        .tool("bench")
        .scope(async {
            match op {
                "insert" => captured_new(i).insert(db).await.map(drop),
                "update" => captured::ActiveModel {
                    id: Set(id),
                    views: Set(i32::try_from(i).unwrap_or(i32::MAX)),
                    ..Default::default()
                }
                .update(db)
                .await
                .map(drop),
                _ => captured::ActiveModel {
                    id: Set(id),
                    ..Default::default()
                }
                .delete(db)
                .await
                .map(drop),
            }
        })
        .await?;
    Ok(start.elapsed())
}

pub(crate) async fn pool_context(
    t: &Target,
    settings: &Settings,
    report: &mut Report,
) -> Result<(), DbErr> {
    let Some(url) = &t.url else {
        return Ok(());
    };
    let mut opt = options(url);
    capture_db::carry_context(&mut opt);
    let carrying = Database::connect(opt).await?;
    let n = settings.own_tx_ops();
    for op in ["insert", "update", "delete"] {
        let ids = if op == "insert" {
            vec![0; 2 * n]
        } else {
            seed_captured(&t.db, 2 * n).await?
        };
        // Warm up both pools (statement caches).
        for db in [&t.db, &carrying] {
            let row = captured_new(0).insert(db).await?;
            write(db, "delete", 0, row.id).await?;
        }
        let (mut plain, mut carried) = (Samples::default(), Samples::default());
        for i in 0..n {
            // Alternate which goes first, so that a noisy moment hits both alike.
            let order = if i % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for carry in order {
                if carry {
                    carried.push(write(&carrying, op, i, ids[2 * i + 1]).await?);
                } else {
                    plain.push(write(&t.db, op, i, ids[2 * i]).await?);
                }
            }
        }
        report.line(format!(
            "| {} | {op} | {} / {} | {} / {} | {} |",
            t.name,
            us(plain.median()),
            us(plain.p99()),
            us(carried.median()),
            us(carried.p99()),
            ratio(carried.median(), plain.median()),
        ));
    }
    carrying.close().await?;
    Ok(())
}
