//! Exact history under concurrency: 16 tasks x 50 transactional updates of one row.

mod common;

use common::TestDb;
use common::entities::post;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, TransactionTrait};
use sea_orm_audit::{Action, AuditContext, logs_for};
use serde_json::json;

const TASKS: usize = 16;
const UPDATES: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_times_fifty_updates_form_an_exact_chain() {
    let t = TestDb::new().await;
    let row = post::ActiveModel {
        title: Set("contended".into()),
        body: Set("start".into()),
        views: Set(0),
        ..Default::default()
    }
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
