//! Database mode: writers of unrelated objects never wait for each other. While one
//! `capture_db::transaction` holds a write of one object (an update, the first entry of a new
//! object, a delete), or a plain transaction holds a raw write through the trigger, another
//! connection (on MySQL one whose id sorts before the holder's) writes other objects through
//! every path and seals;
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
    EntityTrait, QueryFilter, TransactionTrait,
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
    others_never_wait(true).await;
}

/// The same on plain pools (no `carry_context`): every `capture_db::transaction` writes its
/// context row (MySQL) or setting (PostgreSQL), the case the gap locks were about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_mode_writers_of_other_objects_never_wait_on_plain_pools() {
    others_never_wait(false).await;
}

/// `carry`: pools built with `carry_context` (when the crate features allow it).
async fn others_never_wait(carry: bool) {
    let (options, carries): (fn(&str, u32) -> sea_orm::ConnectOptions, bool) = if carry {
        (workload::options, workload::carries_context())
    } else {
        (workload::plain_options, false)
    };
    let w = WorkDb::new().await;
    let backend = w.backend();
    if backend == DbBackend::Sqlite {
        return w.finish().await;
    }
    // One connection, so that the session setting holds for every statement.
    let other = Database::connect(options(&w.url, 1)).await.unwrap();
    let lock_timeout = if backend == DbBackend::MySql {
        "SET SESSION innodb_lock_wait_timeout = 2"
    } else {
        "SET lock_timeout = '2s'"
    };
    other.execute_unprepared(lock_timeout).await.unwrap();
    // The holder's connection is opened after the other's: on MySQL its id is higher, so the
    // other's context row sorts before the holder's in their table.
    let holder_db = Database::connect(options(&w.url, 1)).await.unwrap();
    // The holder: row 1 updated; then object 10 created (its first entry); then deleted; then
    // row 1 updated by raw SQL in a transaction of its own (`begin`, no context row).
    let holds = ["update", "create", "delete", "plain"];
    for (round, hold) in holds.into_iter().enumerate() {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let db = holder_db.clone();
        if hold == "plain" {
            // A connection of its own that never wrote a context row: on MySQL the trigger's
            // lookup of its row then finds none (not one an earlier transaction of the same
            // connection left delete-marked), so a lock taken by that lookup would cover the
            // gap where the next connections' rows go.
            let db = Database::connect(options(&w.url, 1)).await.unwrap();
            let holder = tokio::spawn(AuditContext::new().actor("holder").scope(async move {
                let txn = db.begin().await?;
                txn.execute_unprepared("UPDATE conc_db_rows SET val = 'held-plain' WHERE id = 1")
                    .await?;
                held_tx.send(()).unwrap();
                release_rx.await.unwrap();
                txn.commit().await?;
                db.close().await
            }));
            held_rx.await.unwrap();
            let result = AuditContext::new()
                .actor("other")
                .scope(unrelated_writes(&other, round))
                .await;
            // And a connection opened after the holder's, that never wrote a context row: on
            // MySQL its row is a new record of the context table (not one left delete-marked
            // by an earlier transaction of the same connection, which InnoDB writes over in
            // place), in the gap after the holder's.
            let fresh = Database::connect(options(&w.url, 1)).await.unwrap();
            let fresh_result = async {
                fresh.execute_unprepared(lock_timeout).await?;
                AuditContext::new()
                    .actor("fresh")
                    .scope(capture_db::transaction(&fresh, |txn| {
                        Box::pin(async move {
                            db_row::ActiveModel {
                                id: Set(4),
                                val: Set("fresh".into()),
                            }
                            .update(txn)
                            .await
                            .map(drop)
                        })
                    }))
                    .await
            }
            .await;
            fresh.close().await.ok();
            release_tx.send(()).unwrap();
            holder.await.unwrap().unwrap();
            result.unwrap_or_else(|e| panic!("while the holder's {hold} was open: {e}"));
            fresh_result.unwrap_or_else(|e| {
                panic!("a new connection, while the holder's {hold} was open: {e}")
            });
            continue;
        }
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
        // The control: a write of the held row itself waits, and times out, so the check
        // above can fail.
        if hold == "update" {
            let blocked = other
                .execute_unprepared("UPDATE conc_db_rows SET val = 'blocked' WHERE id = 1")
                .await;
            let error = blocked.expect_err("a write of the held row did not wait for the holder");
            assert!(error.to_string().to_lowercase().contains("lock"), "{error}");
        }
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
    // Autocommit writes, and the holder's plain transaction, carry the actor where the pool
    // does (`carry_context`); `capture_db::transaction` always.
    assert_eq!(by("holder"), holds.len() - usize::from(!carries));
    let per_round = if carries { 5 } else { 1 };
    assert_eq!(by("other"), per_round * holds.len(), "{entries:#?}");
    other.close().await.ok();
    holder_db.close().await.ok();
    w.finish().await;
}

/// MySQL: a database-mode hook writing, under a context of its own, through a transaction that
/// has no context row (a plain `begin()` on a pool that carries the context, or a savepoint of
/// a `capture_db::transaction` that left its context in the session) locks nothing in the
/// context table: another connection's `capture_db::transaction`, which writes its context
/// row there, does not wait for it. The hook used to send an UPDATE of the missing row, which
/// under REPEATABLE READ locked the gap where every other connection's row goes (here 1205
/// after the 2 s lock wait timeout), and two such hooks deadlocked (1213) in the seeded model
/// of `tests/db_capture_context.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_without_a_context_row_locks_nothing_of_other_connections() {
    let w = WorkDb::new().await;
    if w.backend() != DbBackend::MySql {
        return w.finish().await;
    }
    // A pool that does not carry the context: its `capture_db::transaction` writes its row.
    let mut plain = sea_orm::ConnectOptions::new(w.url.clone());
    plain.max_connections(1).sqlx_logging(false);
    let other = Database::connect(plain).await.unwrap();
    other
        .execute_unprepared("SET SESSION innodb_lock_wait_timeout = 2")
        .await
        .unwrap();
    let holder_db = Database::connect(workload::options(&w.url, 1))
        .await
        .unwrap();
    async fn hook_write<C: ConnectionTrait>(c: &C, hold: &str) -> Result<(), DbErr> {
        let update = db_row::ActiveModel {
            id: Set(1),
            val: Set(format!("held-{hold}")),
        }
        .update(c);
        AuditContext::new()
            .actor("hook")
            .scope(update)
            .await
            .map(drop)
    }
    for hold in ["plain", "savepoint"] {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let db = holder_db.clone();
        let holder = tokio::spawn(AuditContext::new().actor("holder").scope(async move {
            if hold == "plain" {
                let txn = db.begin().await?;
                hook_write(&txn, hold).await?;
                held_tx.send(()).unwrap();
                release_rx.await.unwrap();
                return txn.commit().await;
            }
            capture_db::transaction(&db, |txn| {
                Box::pin(async move {
                    let savepoint = txn.begin().await?;
                    hook_write(&savepoint, hold).await?;
                    savepoint.commit().await?;
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
            .scope(capture_db::transaction(&other, move |txn| {
                Box::pin(async move {
                    db_row::ActiveModel {
                        id: Set(2),
                        val: Set(format!("other-{hold}")),
                    }
                    .update(txn)
                    .await
                    .map(drop)
                })
            }))
            .await;
        release_tx.send(()).unwrap();
        holder.await.unwrap().unwrap();
        result.unwrap_or_else(|e| panic!("while the holder's {hold} hook was open: {e}"));
    }
    capture_db::seal(&w.db).await.unwrap();
    let report = sea_orm_audit::verify(&w.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let entries = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq("conc_db_rows"))
        .filter(audit_log::Column::Action.eq("update"))
        .all(&w.db)
        .await
        .unwrap();
    let got: Vec<(String, Option<String>)> = entries
        .into_iter()
        .map(|e| (e.object_id, e.actor))
        .collect();
    let who = |id: &str, actor: &str| (id.to_owned(), Some(actor.to_owned()));
    // Through the plain transaction the session's context (the task's that began it); through
    // the savepoint the hook's, as a row written for it.
    assert_eq!(
        got,
        vec![
            who("1", "holder"),
            who("2", "other"),
            who("1", "hook"),
            who("2", "other")
        ]
    );
    other.close().await.ok();
    holder_db.close().await.ok();
    w.finish().await;
}
