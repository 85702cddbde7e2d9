//! The integration suite: every behaviour of the capture path on a real database.
//! Backend: see `tests/common/mod.rs` (SQLite unless `AUDIT_TEST_DATABASE_URL` is set).

mod common;

use common::entities::{document, post, sample, tag, translation, unwired};
use common::{TestDb, all_logs};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, ModelTrait,
    TransactionTrait,
};
use sea_orm_audit::{Action, AtomicExt, AuditContext, FILTERED, logs_for, logs_for_id};
use serde_json::json;

/// A post with a secret (a masked column) set.
fn new_post(title: &str) -> post::ActiveModel {
    post::ActiveModel {
        secret: Set(Some("s3cret".into())),
        ..common::new_post(title)
    }
}

#[tokio::test]
async fn insert_logs_the_row_as_stored() {
    let t = TestDb::new().await;
    let p = new_post("hello").insert(&t.db).await.unwrap();
    let logs = logs_for(&t.db, &p).await.unwrap();
    assert_eq!(logs.len(), 1);
    let e = &logs[0];
    assert_eq!(e.action, Action::Create);
    assert_eq!(e.entity_type, "posts");
    assert_eq!(e.object_id, p.id.to_string());
    assert_eq!(e.actor, None, "no context: actor is null");
    let ch = e.changes.as_ref().unwrap();
    assert!(ch.old_value.is_empty());
    assert_eq!(
        ch.new_value["id"],
        json!(p.id),
        "database-generated id included"
    );
    assert_eq!(ch.new_value["title"], json!("hello"));
    assert_eq!(ch.new_value["views"], json!(0));
    assert_eq!(
        ch.new_value["secret"],
        json!(FILTERED),
        "masked, never the real value"
    );
    assert!(!ch.new_value.contains_key("updated_at"), "excluded");
    let raw = all_logs(&t.db).await;
    assert!(
        !raw[0]
            .changes
            .as_ref()
            .unwrap()
            .to_string()
            .contains("s3cret")
    );
    t.finish().await;
}

#[tokio::test]
async fn update_logs_only_changed_fields_with_the_stored_before_values() {
    let t = TestDb::new().await;
    let p = new_post("a").insert(&t.db).await.unwrap();
    // A hand-built active model: only the changed column is known to the caller.
    let am = post::ActiveModel {
        id: Set(p.id),
        views: Set(7),
        ..Default::default()
    };
    let updated = am.update(&t.db).await.unwrap();
    assert_eq!(updated.views, 7);
    let logs = logs_for(&t.db, &updated).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].action, Action::Update, "newest first");
    let ch = logs[0].changes.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(ch).unwrap(),
        json!({"old_value": {"views": 0}, "new_value": {"views": 7}})
    );

    // Masked field change: recorded as changed, never with its value.
    let mut am = updated.clone().into_active_model();
    am.secret = Set(Some("other".into()));
    am.update(&t.db).await.unwrap();
    let logs = logs_for(&t.db, &updated).await.unwrap();
    let ch = logs[0].changes.as_ref().unwrap();
    assert_eq!(ch.old_value["secret"], json!(FILTERED));
    assert_eq!(ch.new_value["secret"], json!(FILTERED));
    assert_eq!(ch.fields(), vec!["secret"]);
    t.finish().await;
}

#[tokio::test]
async fn updates_that_change_nothing_write_nothing_unless_asked() {
    let t = TestDb::new().await;
    let p = new_post("same").insert(&t.db).await.unwrap();
    // Same value Set (updated_at changes, but it is excluded).
    let mut am = p.clone().into_active_model();
    am.title = Set("same".into());
    am.update(&t.db).await.unwrap();
    // Nothing Set at all.
    p.clone().into_active_model().update(&t.db).await.unwrap();
    assert_eq!(
        logs_for(&t.db, &p).await.unwrap().len(),
        1,
        "only the create"
    );
    assert_eq!(
        sea_orm_audit::__private::pending_snapshots_for_current_task(),
        0
    );

    // `log_unchanged` entities record them.
    let tg = tag::ActiveModel {
        slug: Set("rust".into()),
        label: Set("Rust".into()),
    }
    .insert(&t.db)
    .await
    .unwrap();
    let mut am = tg.clone().into_active_model();
    am.label = Set("Rust".into());
    am.update(&t.db).await.unwrap();
    let logs = logs_for(&t.db, &tg).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].action, Action::Update);
    assert!(logs[0].changes.as_ref().unwrap().is_empty());
    t.finish().await;
}

#[tokio::test]
async fn delete_logs_the_full_row_even_from_a_key_only_model() {
    let t = TestDb::new().await;
    let p = new_post("gone").insert(&t.db).await.unwrap();
    let res = post::ActiveModel {
        id: Set(p.id),
        ..Default::default()
    }
    .delete(&t.db)
    .await
    .unwrap();
    assert_eq!(res.rows_affected, 1);
    let logs = logs_for_id(&t.db, "posts", &p.id.to_string())
        .await
        .unwrap();
    assert_eq!(logs.len(), 2, "history of a deleted object");
    assert_eq!(logs[0].action, Action::Delete);
    let ch = logs[0].changes.as_ref().unwrap();
    assert!(ch.new_value.is_empty());
    assert_eq!(ch.old_value["title"], json!("gone"));
    assert_eq!(ch.old_value["body"], json!("body"));
    assert_eq!(ch.old_value["secret"], json!(FILTERED));
    // logs_for on the (now deleted) loaded model works too.
    assert_eq!(logs_for(&t.db, &p).await.unwrap().len(), 2);

    // A delete that matches nothing writes nothing.
    let res = post::ActiveModel {
        id: Set(p.id),
        ..Default::default()
    }
    .delete(&t.db)
    .await
    .unwrap();
    assert_eq!(res.rows_affected, 0);
    assert_eq!(logs_for(&t.db, &p).await.unwrap().len(), 2);
    // ModelTrait::delete goes through the same hooks.
    let q = new_post("second").insert(&t.db).await.unwrap();
    q.clone().delete(&t.db).await.unwrap();
    assert_eq!(logs_for(&t.db, &q).await.unwrap()[0].action, Action::Delete);
    t.finish().await;
}

#[tokio::test]
async fn failed_writes_leave_no_log_rows_without_a_transaction() {
    let t = TestDb::new().await;
    let p = new_post("taken").insert(&t.db).await.unwrap();
    let other = new_post("other").insert(&t.db).await.unwrap();
    let before = all_logs(&t.db).await.len();

    // Insert violating UNIQUE(title).
    assert!(new_post("taken").insert(&t.db).await.is_err());
    // Update violating UNIQUE(title).
    let mut am = other.clone().into_active_model();
    am.title = Set("taken".into());
    assert!(am.update(&t.db).await.is_err());
    // Update of a missing row.
    let am = post::ActiveModel {
        id: Set(999_999),
        views: Set(1),
        ..Default::default()
    };
    assert!(matches!(
        am.update(&t.db).await,
        Err(DbErr::RecordNotUpdated)
    ));
    assert_eq!(all_logs(&t.db).await.len(), before, "no orphan log rows");

    // The snapshot the failed update left behind does not leak into the next update.
    let mut am = other.clone().into_active_model();
    am.views = Set(3);
    am.update(&t.db).await.unwrap();
    let logs = logs_for(&t.db, &other).await.unwrap();
    assert_eq!(
        serde_json::to_value(logs[0].changes.as_ref().unwrap()).unwrap(),
        json!({"old_value": {"views": 0}, "new_value": {"views": 3}})
    );
    assert_eq!(logs_for(&t.db, &p).await.unwrap().len(), 1);
    t.finish().await;
}

/// `update_without_returning` runs `before_save` and never `after_save` (SeaORM 2.0.4): in hook
/// mode its write is not logged (README, the table of write paths), and the snapshot its
/// `before_save` left does not leak into the next audited write of the object, in or outside
/// a transaction: that entry's old value is the row as `update_without_returning` stored it.
#[tokio::test]
async fn update_without_returning_is_not_logged_and_leaves_nothing_to_the_next_write() {
    let t = TestDb::new().await;
    let p = new_post("unlogged").insert(&t.db).await.unwrap();
    for (round, in_tx) in [(1, false), (2, true)] {
        let before = all_logs(&t.db).await.len();
        let txn = t.db.begin().await.unwrap();
        let mut am = p.clone().into_active_model();
        am.views = Set(round * 10);
        if in_tx {
            am.update_without_returning(&txn).await.unwrap();
        } else {
            am.update_without_returning(&t.db).await.unwrap();
        }
        let mut am = p.clone().into_active_model();
        am.views = Set(round * 10 + 1);
        if in_tx {
            am.update(&txn).await.unwrap();
        } else {
            am.update(&t.db).await.unwrap();
        }
        txn.commit().await.unwrap();
        let logs = logs_for(&t.db, &p).await.unwrap();
        assert_eq!(all_logs(&t.db).await.len(), before + 1, "{logs:#?}");
        assert_eq!(
            serde_json::to_value(logs[0].changes.as_ref().unwrap()).unwrap(),
            json!({"old_value": {"views": round * 10}, "new_value": {"views": round * 10 + 1}})
        );
    }
    t.finish().await;
}

/// A failed write inside a transaction that goes on and commits leaves no log row: the
/// failures undone by a savepoint (every backend), and on SQLite and MySQL, which keep a
/// transaction going after a failed statement, without one too. The writes that succeeded
/// around them are logged once each.
#[tokio::test]
async fn failed_writes_leave_no_log_rows_in_a_transaction_that_commits() {
    let t = TestDb::new().await;
    let taken = new_post("taken").insert(&t.db).await.unwrap();
    let other = new_post("other").insert(&t.db).await.unwrap();
    let before = all_logs(&t.db).await.len();
    let continues = t.db.get_database_backend() != sea_orm::DbBackend::Postgres;

    let txn = t.db.begin().await.unwrap();
    let mut am = other.clone().into_active_model();
    am.views = Set(1);
    am.update(&txn).await.unwrap();
    // Undone by a savepoint: an insert and an update violating UNIQUE(title).
    let savepoint = txn.begin().await.unwrap();
    assert!(new_post("taken").insert(&savepoint).await.is_err());
    savepoint.rollback().await.unwrap();
    let savepoint = txn.begin().await.unwrap();
    let mut am = other.clone().into_active_model();
    am.title = Set("taken".into());
    assert!(am.update(&savepoint).await.is_err());
    savepoint.rollback().await.unwrap();
    if continues {
        // The same failures with no savepoint: the transaction goes on.
        assert!(new_post("taken").insert(&txn).await.is_err());
        let mut am = other.clone().into_active_model();
        am.title = Set("taken".into());
        assert!(am.update(&txn).await.is_err());
    }
    let mut am = taken.clone().into_active_model();
    am.views = Set(2);
    am.update(&txn).await.unwrap();
    txn.commit().await.unwrap();

    let logs = all_logs(&t.db).await;
    assert_eq!(logs.len(), before + 2, "{:#?}", &logs[before..]);
    let changes: Vec<_> = logs[before..]
        .iter()
        .map(|e| (e.object_id.clone(), e.changes.clone().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [
            (
                other.id.to_string(),
                json!({"old_value": {"views": 0}, "new_value": {"views": 1}})
            ),
            (
                taken.id.to_string(),
                json!({"old_value": {"views": 0}, "new_value": {"views": 2}})
            ),
        ]
    );
    t.finish().await;
}

#[tokio::test]
async fn rollback_removes_both_and_commit_keeps_both() {
    let t = TestDb::new().await;
    let txn = t.db.begin().await.unwrap();
    let p = new_post("rolled back").insert(&txn).await.unwrap();
    assert_eq!(
        logs_for(&txn, &p).await.unwrap().len(),
        1,
        "log row visible inside the transaction"
    );
    txn.rollback().await.unwrap();
    assert!(
        post::Entity::find_by_id(p.id)
            .one(&t.db)
            .await
            .unwrap()
            .is_none()
    );
    assert!(all_logs(&t.db).await.is_empty());

    let p =
        t.db.transaction::<_, _, DbErr>(|txn| {
            Box::pin(async move {
                let p = new_post("committed").insert(txn).await?;
                let mut am = p.into_active_model();
                am.views = Set(5);
                am.update(txn).await
            })
        })
        .await
        .unwrap();
    assert_eq!(logs_for(&t.db, &p).await.unwrap().len(), 2);

    // A failing write inside a transaction: the caller rolls back, nothing remains.
    let txn = t.db.begin().await.unwrap();
    let mut am = p.clone().into_active_model();
    am.views = Set(6);
    am.update(&txn).await.unwrap();
    assert!(new_post("committed").insert(&txn).await.is_err());
    txn.rollback().await.unwrap();
    assert_eq!(logs_for(&t.db, &p).await.unwrap().len(), 2);
    t.finish().await;
}

#[tokio::test]
async fn atomic_helpers_commit_the_write_and_its_log_together() {
    let t = TestDb::new().await;
    let p = new_post("atomic").insert_atomic(&t.db).await.unwrap();
    let mut am = p.clone().into_active_model();
    am.views = Set(1);
    let p = am.update_atomic(&t.db).await.unwrap();
    let mut am = p.clone().into_active_model();
    am.views = Set(2);
    am.save_atomic(&t.db).await.unwrap();
    assert!(new_post("atomic").insert_atomic(&t.db).await.is_err());
    p.clone()
        .into_active_model()
        .delete_atomic(&t.db)
        .await
        .unwrap();
    let actions: Vec<Action> = logs_for(&t.db, &p)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        vec![
            Action::Delete,
            Action::Update,
            Action::Update,
            Action::Create
        ]
    );
    t.finish().await;
}

#[tokio::test]
async fn a_failing_log_write_fails_the_operation_with_a_reason() {
    let t = TestDb::new().await;
    t.db.execute_unprepared("DROP TABLE audit_log")
        .await
        .unwrap();
    let err = new_post("no log table")
        .insert_atomic(&t.db)
        .await
        .unwrap_err();
    // A missing log table is a setup error: the message says which migration to run first.
    let msg = err.to_string();
    assert!(msg.contains("sea-orm-audit"), "{msg}");
    assert!(
        msg.contains("sea_orm_audit_migration::migrations()"),
        "{msg}"
    );
    // In its own transaction, the write rolled back with its log.
    let n = post::Entity::find().all(&t.db).await.unwrap().len();
    assert_eq!(n, 0);
    t.finish().await;
}

#[tokio::test]
async fn key_shapes_have_canonical_object_ids() {
    let t = TestDb::new().await;
    let id = uuid::Uuid::new_v4();
    let d = document::ActiveModel {
        id: Set(id),
        name: Set("spec".into()),
    }
    .insert(&t.db)
    .await
    .unwrap();
    let mut am = d.clone().into_active_model();
    am.name = Set("spec v2".into());
    am.update(&t.db).await.unwrap();
    let logs = logs_for(&t.db, &d).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].entity_type, "document", "overridden entity type");
    assert_eq!(logs[0].object_id, id.hyphenated().to_string());

    let tg = tag::ActiveModel {
        slug: Set("a,b \"c\"".into()),
        label: Set("x".into()),
    }
    .insert(&t.db)
    .await
    .unwrap();
    assert_eq!(
        logs_for(&t.db, &tg).await.unwrap()[0].object_id,
        "a,b \"c\""
    );

    let tr = translation::ActiveModel {
        post_id: Set(7),
        lang: Set("en".into()),
        body: Set("hi".into()),
    }
    .insert(&t.db)
    .await
    .unwrap();
    let mut am = tr.clone().into_active_model();
    am.body = Set("hello".into());
    am.update(&t.db).await.unwrap();
    tr.clone().delete(&t.db).await.unwrap();
    let logs = logs_for_id(&t.db, "translations", r#"[7,"en"]"#)
        .await
        .unwrap();
    assert_eq!(logs.len(), 3);
    assert_eq!(
        logs[1].changes.as_ref().unwrap().new_value["text_body"],
        json!(FILTERED),
        "renamed column, masked"
    );
    assert_eq!(
        logs[0].changes.as_ref().unwrap().old_value["lang"],
        json!("en")
    );
    t.finish().await;
}

#[tokio::test]
async fn values_convert_faithfully() {
    let t = TestDb::new().await;
    let at = chrono::DateTime::parse_from_rfc3339("2030-06-01T12:30:45Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let s = sample::ActiveModel {
        id: NotSet,
        price: Set("1234567.8901".parse().unwrap()),
        blob: Set(vec![0xff, 0xfe, 0x00, 0x80]),
        doc: Set(json!({"nested": {"list": [1, "two", null]}})),
        note: Set(None),
        ratio: Set(0.25),
        day: Set(chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
        at: Set(at),
        local: Set(at.naive_utc()),
        flag: Set(true),
    }
    .insert(&t.db)
    .await
    .unwrap();
    let logs = logs_for(&t.db, &s).await.unwrap();
    let v = &logs[0].changes.as_ref().unwrap().new_value;
    assert_eq!(v["price"], json!("1234567.8901"));
    assert_eq!(v["blob"], json!("//4AgA=="));
    assert_eq!(v["doc"], json!({"nested": {"list": [1, "two", null]}}));
    assert_eq!(v["note"], json!(null));
    assert_eq!(v["ratio"], json!(0.25));
    assert_eq!(v["day"], json!("2024-02-29"));
    let stamp = v["at"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(stamp).unwrap(),
        at,
        "RFC 3339, not an SQL literal: {stamp}"
    );
    assert_eq!(v["local"], json!("2030-06-01T12:30:45"));
    assert_eq!(v["flag"], json!(true));
    t.finish().await;
}

#[tokio::test]
async fn context_attributes_rows_and_follows_spawned_tasks() {
    let t = TestDb::new().await;
    let db = t.db.clone();
    let p = AuditContext::new()
        .actor("alice")
        .tool("editor")
        .with("request_id", "r-1")
        .scope(async {
            let p = new_post("ctx").insert(&db).await.unwrap();
            let db2 = db.clone();
            let id = p.id;
            AuditContext::spawn(async move {
                post::ActiveModel {
                    id: Set(id),
                    views: Set(9),
                    ..Default::default()
                }
                .update(&db2)
                .await
                .unwrap();
            })
            .await
            .unwrap();
            // A plain tokio::spawn does not inherit the scope.
            let db3 = db.clone();
            tokio::spawn(async move {
                post::ActiveModel {
                    id: Set(id),
                    views: Set(10),
                    ..Default::default()
                }
                .update(&db3)
                .await
                .unwrap();
            })
            .await
            .unwrap();
            p
        })
        .await;
    let logs = logs_for(&t.db, &p).await.unwrap();
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[2].actor.as_deref(), Some("alice"));
    assert_eq!(logs[2].tool.as_deref(), Some("editor"));
    assert_eq!(logs[2].data["request_id"], json!("r-1"));
    assert_eq!(
        logs[1].actor.as_deref(),
        Some("alice"),
        "carried into the spawned task"
    );
    assert_eq!(logs[0].actor, None, "plain spawn: no context");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_are_attributed_correctly() {
    let t = TestDb::new().await;
    let shared = new_post("shared").insert(&t.db).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let db = t.db.clone();
        let shared_id = shared.id;
        tasks.push(tokio::spawn(
            AuditContext::new()
                .actor(format!("user{i}"))
                .scope(async move {
                    let own = new_post(&format!("own {i}")).insert(&db).await?;
                    for n in 1..=3 {
                        let am = post::ActiveModel {
                            id: Set(own.id),
                            views: Set(n),
                            ..Default::default()
                        };
                        am.update(&db).await?;
                        // Same row from every task, in a transaction: the hook's locked read makes the
                        // before-image exact. SQLite has no row locks; take its write lock first, as an
                        // application must (a read-then-write transaction fails with SQLITE_BUSY).
                        let txn = db.begin().await?;
                        if txn.get_database_backend() == sea_orm::DbBackend::Sqlite {
                            txn.execute_unprepared("UPDATE posts SET views = views WHERE 0")
                                .await?;
                        }
                        let am = post::ActiveModel {
                            id: Set(shared_id),
                            body: Set(format!("user{i}-{n}")),
                            ..Default::default()
                        };
                        am.update(&txn).await?;
                        txn.commit().await?;
                    }
                    assert_eq!(
                        sea_orm_audit::__private::pending_snapshots_for_current_task(),
                        0
                    );
                    Ok::<_, DbErr>(own)
                }),
        ));
    }
    let mut owns = Vec::new();
    for task in tasks {
        owns.push(task.await.unwrap().unwrap());
    }
    for (i, own) in owns.iter().enumerate() {
        let logs = logs_for(&t.db, own).await.unwrap();
        assert_eq!(logs.len(), 4, "create + 3 updates of own row {i}");
        for e in &logs {
            assert_eq!(e.actor.as_deref(), Some(format!("user{i}").as_str()));
        }
        let ch = logs[0].changes.as_ref().unwrap();
        assert_eq!(ch.old_value["views"], json!(2));
        assert_eq!(ch.new_value["views"], json!(3));
    }
    let shared_logs = logs_for(&t.db, &shared).await.unwrap();
    assert_eq!(shared_logs.len(), 1 + 32 * 3);
    // The chain is exact: each update starts where the previous one ended.
    let mut updates: Vec<_> = shared_logs
        .iter()
        .filter(|e| e.action == Action::Update)
        .collect();
    updates.reverse();
    let mut previous = json!("body");
    for (n, e) in updates.iter().enumerate() {
        let ch = e.changes.as_ref().unwrap();
        assert_eq!(ch.old_value["body"], previous, "entry {n}");
        let written = ch.new_value["body"].as_str().unwrap();
        assert!(
            written.starts_with(&format!("{}-", e.actor.as_deref().unwrap())),
            "attributed to its writer: {written}"
        );
        previous = ch.new_value["body"].clone();
    }
    let stored = post::Entity::find_by_id(shared.id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        json!(stored.body),
        previous,
        "the newest entry matches the stored row"
    );
    let mut per_actor = std::collections::HashMap::new();
    for e in &updates {
        *per_actor.entry(e.actor.clone().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(per_actor.len(), 32);
    assert!(per_actor.values().all(|&n| n == 3));
    t.finish().await;
}

#[tokio::test]
async fn missing_before_hook_is_a_clear_error() {
    let t = TestDb::new().await;
    let u = unwired::ActiveModel {
        name: Set("x".into()),
        ..Default::default()
    }
    .insert(&t.db)
    .await
    .unwrap();
    let mut am = u.into_active_model();
    am.name = Set("y".into());
    let err = am.update_atomic(&t.db).await.unwrap_err().to_string();
    assert!(
        err.contains("no before-snapshot for update of unwired"),
        "{err}"
    );
    assert!(err.contains("before_save"), "{err}");
    t.finish().await;
}

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass(readme_snippets());
}

/// Every ```rust snippet of README.md as one program, so the README cannot drift from the API.
/// The quick start is a rustdoc doctest; the fragments (`rust,ignore` for rustdoc, so that the
/// README stays free of hidden setup lines) are compiled here against tests/readme/preamble.rs:
/// a fragment defining `impl ActiveModelBehavior` goes in a module with an entity of its own,
/// any other in an `async fn` with the preamble's `Given` values in scope. Snippets of the
/// `axum` feature are compiled when the suite runs with it.
fn readme_snippets() -> std::path::PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let mut program = format!(
        "#![allow(dead_code, unused_imports, unused_variables, unused_mut, unreachable_pub, \
         missing_docs, clippy::all)]\n#[path = \"{root}/tests/readme/preamble.rs\"]\nmod \
         preamble;\nuse preamble::*;\nuse sea_orm::entity::prelude::*;\nuse \
         sea_orm::ActiveValue::Set;\nuse sea_orm::{{Condition, DatabaseConnection}};\nuse \
         sea_orm_audit::{{AuditContext, Event, History, Action, Status, Template}};\nuse \
         std::time::Duration;\n"
    );
    let mut snippets = 0;
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```rust,ignore" {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let body = body.join("\n");
        if body.contains("sea_orm_audit::web") && !cfg!(feature = "axum") {
            continue; // compiled when the suite runs with `--features axum` (CI does)
        }
        if body.contains("carry_context")
            && !cfg!(all(feature = "sqlx-postgres", feature = "sqlx-mysql"))
        {
            continue; // likewise with the features that provide it
        }
        snippets += 1;
        if body.contains("impl ActiveModelBehavior") {
            program += &format!(
                "mod snippet_{snippets} {{\nuse sea_orm::entity::prelude::*;\nuse \
                 sea_orm::ActiveValue::Set;\n#[derive(Clone, Debug, PartialEq, \
                 DeriveEntityModel, sea_orm_audit::Auditable)]\n#[sea_orm(table_name = \
                 \"hooked\")]\npub struct Model {{ #[sea_orm(primary_key)] pub id: i32, pub \
                 updated_at: Option<DateTimeUtc> }}\n#[derive(Copy, Clone, Debug, EnumIter, \
                 DeriveRelation)]\npub enum Relation {{}}\n{body}\n}}\n"
            );
        } else {
            program += &format!(
                "async fn snippet_{snippets}(mut db: DatabaseConnection, given: Given) -> \
                 std::result::Result<(), Box<dyn std::error::Error>> {{\nlet Given {{ client_ip, t0, t1, \
                 yesterday, entry_id, post, drafts }} = given;\n{body}\nOk(())\n}}\n"
            );
        }
    }
    assert!(snippets >= 10, "found only {snippets} README snippets");
    program += "fn main() {}\n";
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("readme_snippets.rs");
    std::fs::write(&path, program).unwrap();
    path
}

#[tokio::test]
async fn statements_per_audited_operation() {
    use std::sync::Arc;
    let mut t = TestDb::new().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    t.db.set_metric_callback(move |info| {
        sink.lock().unwrap().push(
            info.statement
                .sql
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_uppercase(),
        );
    });
    let take = |s: &Arc<std::sync::Mutex<Vec<String>>>| std::mem::take(&mut *s.lock().unwrap());
    let mysql = t.backend() == sea_orm::DbBackend::MySql;

    let p = new_post("counted").insert(&t.db).await.unwrap();
    // INSERT row (+ SELECT it back without RETURNING), INSERT log: creates read no chain head.
    let expected: &[&str] = if mysql {
        &["INSERT", "SELECT", "INSERT"]
    } else {
        &["INSERT", "INSERT"]
    };
    assert_eq!(take(&seen), expected);

    // Nothing Set: no read by the audit layer, only SeaORM's own re-read of the row.
    p.clone().into_active_model().update(&t.db).await.unwrap();
    assert_eq!(take(&seen), ["SELECT"]);

    let mut am = p.clone().into_active_model();
    am.views = Set(1);
    am.update(&t.db).await.unwrap();
    // Before-image, UPDATE (+ re-read without RETURNING), INSERT log. SQLite reads the chain
    // head with the before-image, PostgreSQL in the log INSERT. MySQL reads with the
    // before-image whether the object has a head, and then, since it has (its create), locks
    // and reads it in a statement of its own (see `chain::mysql_locked_head`).
    let expected: &[&str] = if mysql {
        &["SELECT", "SELECT", "UPDATE", "SELECT", "INSERT"]
    } else {
        &["SELECT", "UPDATE", "INSERT"]
    };
    assert_eq!(take(&seen), expected);

    p.delete(&t.db).await.unwrap();
    let expected: &[&str] = if mysql {
        &["SELECT", "SELECT", "DELETE", "INSERT"]
    } else {
        &["SELECT", "DELETE", "INSERT"]
    };
    assert_eq!(take(&seen), expected);

    // An event continues its object's chain: PostgreSQL reads the head in the INSERT; SQLite
    // reads it first; MySQL reads whether there is one, and when there is, locks and reads
    // it; when there is none, claims the head row (an upsert) and reads it locked (no row lock
    // covers events, see `chain::mysql_claimed_head`).
    for (n, mysql) in [
        (0, &["SELECT", "INSERT", "SELECT"][..]),
        (1, &["SELECT", "SELECT"][..]),
    ] {
        sea_orm_audit::Event::new("note")
            .target_id("ticket", "1")
            .record(&t.db)
            .await
            .unwrap();
        let expected: Vec<&str> = match t.backend() {
            sea_orm::DbBackend::Postgres => vec!["INSERT"],
            sea_orm::DbBackend::MySql => [mysql, &["INSERT"]].concat(),
            _ => vec!["SELECT", "INSERT"],
        };
        assert_eq!(take(&seen), expected, "event {n}");
    }

    // The first update of a row with no history (written behind the hooks' back): MySQL
    // claims the head row (an upsert) and reads it locked, two statements more than
    // elsewhere, as for an event about a new object.
    t.db.execute_unprepared(
        "INSERT INTO posts (id, title, body, views) VALUES (777, 'unlogged', 'b', 0)",
    )
    .await
    .unwrap();
    take(&seen);
    post::ActiveModel {
        id: Set(777),
        views: Set(1),
        ..Default::default()
    }
    .update(&t.db)
    .await
    .unwrap();
    let expected: &[&str] = if mysql {
        &["SELECT", "INSERT", "SELECT", "UPDATE", "SELECT", "INSERT"]
    } else {
        &["SELECT", "UPDATE", "INSERT"]
    };
    assert_eq!(take(&seen), expected);
    t.finish().await;
}
