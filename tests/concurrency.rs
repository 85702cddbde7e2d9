//! Exact history under concurrency: 16 tasks x 50 transactional updates of one row, and
//! concurrent events about one object.

mod common;

use common::TestDb;
use common::entities::post;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel, QuerySelect,
    TransactionTrait,
};
use sea_orm_audit::chain::ProblemKind;
use sea_orm_audit::{Action, AuditContext, Event, logs_for, logs_for_id};
use serde_json::json;

const TASKS: usize = 16;
const UPDATES: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_times_fifty_updates_form_an_exact_chain() {
    let t = TestDb::new().await;
    let row = common::post_with_body("contended", "start")
        .insert(&t.db)
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let db = t.db.clone();
        let id = row.id;
        tasks.push(tokio::spawn(
            AuditContext::new()
                .actor(format!("task{task}"))
                .scope(async move {
                    for n in 0..UPDATES {
                        let txn = db.begin().await?;
                        if txn.get_database_backend() == DbBackend::Sqlite {
                            // SQLite has no row locks: take the write lock before the hook's read.
                            txn.execute_unprepared("UPDATE posts SET views = views WHERE 0")
                                .await?;
                        }
                        // Half the updates touch two columns, half one: the chain must hold per field.
                        let mut am = post::ActiveModel {
                            id: Set(id),
                            body: Set(format!("task{task}-{n}")),
                            ..Default::default()
                        };
                        if n % 2 == 0 {
                            am.views = Set(i32::try_from(task * 1000 + n).unwrap());
                        }
                        am.update(&txn).await?;
                        txn.commit().await?;
                    }
                    Ok::<_, DbErr>(())
                }),
        ));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let mut history = logs_for(&t.db, &row).await.unwrap();
    history.reverse(); // oldest first
    assert_eq!(history.len(), 1 + TASKS * UPDATES);
    assert_eq!(history[0].action, Action::Create);
    let mut state = history[0].changes.as_ref().unwrap().new_value.clone();
    for (i, entry) in history.iter().enumerate().skip(1) {
        let changes = entry.changes.as_ref().unwrap();
        for (field, old) in &changes.old_value {
            assert_eq!(
                &state[field], old,
                "entry {i} ({:?}) field {field}: old_value is the previous new_value",
                entry.actor
            );
        }
        let body = changes.new_value["body"].as_str().unwrap();
        assert!(
            body.starts_with(&format!("{}-", entry.actor.as_deref().unwrap())),
            "entry {i} attributed to its writer"
        );
        for (field, new) in &changes.new_value {
            state.insert(field.clone(), new.clone());
        }
    }
    let stored = post::Entity::find_by_id(row.id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        state["body"],
        json!(stored.body),
        "the newest entry matches the stored row"
    );
    assert_eq!(state["views"], json!(stored.views));
    // The object's hash chain is exact too: no forks under concurrent transactional writers.
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.first_broken());
    assert_eq!(report.checked, 1 + (TASKS * UPDATES) as u64);
    t.finish().await;
}

const EVENT_TASKS: usize = 8;
const EVENTS: usize = 25;

/// Records `EVENT_TASKS` x `EVENTS` events about one object at once, each on its own
/// connection, either directly or in a transaction of its own. Returns the number of
/// transactions MySQL rolled back as deadlock victims (each retried until it committed).
async fn record_events_concurrently(t: &TestDb, in_transactions: bool) -> usize {
    let mut tasks = Vec::new();
    for task in 0..EVENT_TASKS {
        let db = t.db.clone();
        tasks.push(tokio::spawn(async move {
            let mut deadlocks = 0;
            for n in 0..EVENTS {
                let event = Event::new("note")
                    .target_id("ticket", "7")
                    .message(format!("task{task}-{n}"));
                if !in_transactions {
                    event.record(&db).await?;
                    continue;
                }
                loop {
                    let attempt = async {
                        let txn = db.begin().await?;
                        if txn.get_database_backend() == DbBackend::Sqlite {
                            // As an application would with BEGIN IMMEDIATE: take the write lock
                            // before the head read, so no other writer commits in between.
                            txn.execute_unprepared("UPDATE audit_log SET id = id WHERE 0")
                                .await?;
                        }
                        event.clone().record(&txn).await?;
                        txn.commit().await
                    };
                    match attempt.await {
                        Ok(()) => break,
                        // InnoDB's answer to two locking head reads that then both insert
                        // after the head; the transaction is rolled back and must be retried.
                        Err(e) if is_deadlock(&e) && deadlocks < 10_000 => {
                            deadlocks += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok::<_, DbErr>(deadlocks)
        }));
    }
    let mut deadlocks = 0;
    for task in tasks {
        deadlocks += task.await.unwrap().unwrap();
    }
    deadlocks
}

/// Events are covered by no row lock, so nothing but the head read itself orders concurrent
/// events about one object. Whatever the backend and the mode, every event is written and
/// hashed correctly (SQL-computed hashes on PostgreSQL included); `verify` may report forks,
/// never tampering. Inside transactions SQLite and MySQL keep the chain exact; PostgreSQL's
/// READ COMMITTED head read can fork it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_events_about_one_object_are_all_logged_and_verifiable() {
    for in_transactions in [false, true] {
        let t = TestDb::new().await;
        // A chain with a head: concurrent first entries would each start a chain of their own.
        Event::new("note")
            .target_id("ticket", "7")
            .message("first")
            .record(&t.db)
            .await
            .unwrap();
        let deadlocks = record_events_concurrently(&t, in_transactions).await;
        let history = logs_for_id(&t.db, "ticket", "7").await.unwrap();
        assert_eq!(history.len(), 1 + EVENT_TASKS * EVENTS);
        let report = sea_orm_audit::verify(&t.db).await.unwrap();
        assert_eq!(report.checked, 1 + (EVENT_TASKS * EVENTS) as u64);
        assert!(
            report
                .problems
                .iter()
                .all(|p| matches!(p.kind, ProblemKind::Fork { .. })),
            "in_transactions={in_transactions}: {:?}",
            report.first_broken()
        );
        let backend = t.backend();
        if in_transactions && backend != DbBackend::Postgres {
            assert!(report.is_ok(), "{backend:?}: {:?}", report.first_broken());
        }
        // MySQL serializes them on their object's `audit_chain_head` row, locked by its key.
        assert_eq!(deadlocks, 0, "{backend:?}");
        eprintln!(
            "{backend:?} events in_transactions={in_transactions}: {} forks, {deadlocks} \
             deadlocks retried",
            report.problems.len()
        );
        t.finish().await;
    }
}

/// InnoDB's deadlock, recognised by its error number on the driver's error: the kind a caller
/// matches to retry, which the audit layer must pass through unchanged.
fn is_deadlock(e: &DbErr) -> bool {
    database_error(e).is_some_and(|db| db.code().as_deref() == Some("40001"))
}

/// The database's own error inside a `DbErr`, if it is one.
fn database_error(e: &DbErr) -> Option<&dyn sea_orm::sqlx::error::DatabaseError> {
    use sea_orm::{RuntimeErr, sqlx};
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => {
            match &**err {
                sqlx::Error::Database(db) => Some(&**db),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A lock timeout in the audit layer's own locking read (the before-image) reaches the caller
/// as the database's error, with its code, not as text.
#[tokio::test]
async fn a_lock_timeout_in_the_before_image_keeps_its_kind() {
    let t = TestDb::new().await;
    let code = match t.backend() {
        DbBackend::Postgres => "55P03", // lock_not_available
        DbBackend::MySql => "HY000",    // 1205 Lock wait timeout exceeded
        _ => return t.finish().await,   // SQLite has no row locks to time out on
    };
    let p = common::new_post("locked").insert(&t.db).await.unwrap();
    let holder = t.db.begin().await.unwrap();
    post::Entity::find_by_id(p.id)
        .lock_exclusive()
        .one(&holder)
        .await
        .unwrap();
    let waiter = t.db.begin().await.unwrap();
    let timeout = match t.backend() {
        DbBackend::Postgres => "SET LOCAL lock_timeout = '200ms'",
        _ => "SET SESSION innodb_lock_wait_timeout = 1",
    };
    waiter.execute_unprepared(timeout).await.unwrap();
    let mut am = p.clone().into_active_model();
    am.title = Set("waited".into());
    let err = am.update(&waiter).await.unwrap_err();
    let found = database_error(&err).and_then(|db| db.code().map(|c| c.into_owned()));
    assert_eq!(found.as_deref(), Some(code), "{err:?}");
    if t.backend() == DbBackend::MySql {
        // HY000 is shared by many errors: the number says which.
        let number = database_error(&err)
            .and_then(|db| db.try_downcast_ref::<sea_orm::sqlx::mysql::MySqlDatabaseError>())
            .map(|m| m.number());
        assert_eq!(number, Some(1205), "{err:?}");
    }
    waiter.rollback().await.unwrap();
    holder.rollback().await.unwrap();
    t.finish().await;
}
