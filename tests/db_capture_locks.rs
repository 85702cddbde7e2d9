//! Database mode: writers of unrelated objects never wait for each other. While one
//! `capture_db::transaction` holds a write of one object (an update, the first entry of a new
//! object, a delete), another connection writes other objects through every path and seals;
//! its lock wait timeout is 2 s, so a wait is an error, not a slow test. PostgreSQL and MySQL:
//! SQLite admits one writer at a time by design, so there every writer waits for the open
//! write transaction (its busy timeout), audited or not.

mod common;
#[path = "common/workload.rs"]
mod workload;

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter,
};
use sea_orm_audit::{AuditContext, audit_log, capture_db};
use workload::{WorkDb, db_row};

/// Every unrelated write the other connection makes while the holder's transaction is open:
/// an autocommit active-model update, `update_many`, a `capture_db::transaction`, a new
/// object created and deleted through `Entity::insert` and `delete_by_id`, and a seal.
async fn unrelated_writes(other: &DatabaseConnection, round: usize) -> Result<(), DbErr> {
    db_row::ActiveModel {
        id: Set(2),
        val: Set(format!("other-{round}")),
    }
    .update(other)
    .await?;
    db_row::Entity::update_many()
        .col_expr(db_row::Column::Val, Expr::value(format!("many-{round}")))
        .filter(db_row::Column::Id.eq(3))
        .exec(other)
        .await?;
    let value = format!("txn-{round}");
    capture_db::transaction(other, |txn| {
        Box::pin(async move {
            db_row::ActiveModel {
                id: Set(4),
                val: Set(value),
            }
            .update(txn)
            .await
            .map(drop)
        })
    })
    .await?;
    let fresh = 100 + i32::try_from(round).unwrap();
    db_row::Entity::insert(db_row::ActiveModel {
        id: Set(fresh),
        val: Set(format!("fresh-{round}")),
    })
    .exec(other)
    .await?;
    db_row::Entity::delete_by_id(fresh).exec(other).await?;
    capture_db::seal(other).await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_mode_writers_of_other_objects_never_wait() {
    let w = WorkDb::new().await;
    let backend = w.backend();
    if backend == DbBackend::Sqlite {
        return w.finish().await;
    }
    // One connection, so that the session setting holds for every statement.
    let other = Database::connect(workload::options(&w.url, 1))
        .await
        .unwrap();
    other
        .execute_unprepared(if backend == DbBackend::MySql {
            "SET SESSION innodb_lock_wait_timeout = 2"
        } else {
            "SET lock_timeout = '2s'"
        })
        .await
        .unwrap();
    // The holder: row 1 updated; then object 10 created (its first entry); then deleted.
    let holds = ["update", "create", "delete"];
    for (round, hold) in holds.into_iter().enumerate() {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let db = w.db.clone();
        let holder = tokio::spawn(AuditContext::new().actor("holder").scope(async move {
            capture_db::transaction(&db, |txn| {
                Box::pin(async move {
                    match hold {
                        "update" => {
                            db_row::ActiveModel {
                                id: Set(1),
                                val: Set("held".into()),
                            }
                            .update(txn)
                            .await?;
                        }
                        "create" => {
                            db_row::ActiveModel {
                                id: Set(10),
                                val: Set("held-new".into()),
                            }
                            .insert(txn)
                            .await?;
                        }
                        _ => {
                            db_row::Entity::delete_by_id(10).exec(txn).await?;
                        }
                    }
                    held_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    Ok::<_, DbErr>(())
                })
            })
            .await
        }));
        held_rx.await.unwrap();
        let result = AuditContext::new()
            .actor("other")
            .scope(unrelated_writes(&other, round))
            .await;
        release_tx.send(()).unwrap();
        holder.await.unwrap().unwrap();
        result.unwrap_or_else(|e| panic!("while the holder's {hold} was open: {e}"));
    }
    capture_db::seal(&w.db).await.unwrap();
    let report = sea_orm_audit::verify(&w.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // Each round: the holder's entry and the other connection's five.
    let entries = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq("conc_db_rows"))
        .filter(audit_log::Column::Actor.is_in(["holder", "other"]))
        .all(&w.db)
        .await
        .unwrap();
    let by = |actor: &str| {
        entries
            .iter()
            .filter(|e| e.actor.as_deref() == Some(actor))
            .count()
    };
    assert_eq!(by("holder"), holds.len());
    // Autocommit writes carry the actor where the pool does (`carry_context`); the
    // `capture_db::transaction` one always.
    let per_round = if workload::carries_context(backend) {
        5
    } else {
        1
    };
    assert_eq!(by("other"), per_round * holds.len(), "{entries:#?}");
    other.close().await.ok();
    w.finish().await;
}
