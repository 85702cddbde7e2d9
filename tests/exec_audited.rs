//! `.exec_audited(db)` on SeaORM's own builders: the result `.exec(db)` returns, and one entry
//! per changed row; a statement that changed rows its read did not see rolls back. Inserts log
//! the entry a hook writes; conflicts, refusals and failures log nothing; database-mode
//! entities are logged once, by their trigger.

#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::entities::{post, post_shaped, translation};
use common::proxy::{FaultProxy, upstream_of};
use common::{TestDb, all_logs};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, Database, DbBackend, DbErr, DeleteResult,
    EntityTrait, InsertManyResult, InsertResult, PaginatorTrait, QueryFilter, SqlErr,
    TryInsertResult, UpdateResult,
};
use sea_orm_audit::{Action, AuditContext, ExecAudited, FILTERED, capture_db, verify};
use serde_json::Value as Json;

async fn posts(t: &TestDb, n: i32) {
    for i in 0..n {
        post::ActiveModel {
            title: Set(format!("p{i}")),
            body: Set("b".into()),
            views: Set(i),
            secret: Set(Some("s3cret".into())),
            ..Default::default()
        }
        .insert(&t.db)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn delete_many_returns_what_exec_returns_and_logs_each_row() {
    let t = TestDb::new().await;
    posts(&t, 6).await;
    let before = all_logs(&t.db).await.len();
    let result: DeleteResult = post::Entity::delete_many()
        .filter(post::Column::Views.gte(3))
        .exec_audited(&t.db)
        .await
        .unwrap();
    assert_eq!(result.rows_affected, 3);
    assert_eq!(post::Entity::find().count(&t.db).await.unwrap(), 3);
    let logs = all_logs(&t.db).await;
    let deletes: Vec<_> = logs[before..]
        .iter()
        .filter(|l| l.action == "delete")
        .collect();
    assert_eq!(deletes.len(), 3);
    for d in &deletes {
        let old = &d.changes.as_ref().unwrap()["old_value"];
        assert!(old["views"].as_i64().unwrap() >= 3, "{old}");
        assert_eq!(old["secret"], FILTERED);
    }
    // Nothing matched: nothing logged, the same result as exec.
    let none = post::Entity::delete_many()
        .filter(post::Column::Views.gte(100))
        .exec_audited(&t.db)
        .await
        .unwrap();
    assert_eq!(none.rows_affected, 0);
    assert_eq!(all_logs(&t.db).await.len(), logs.len());
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

#[tokio::test]
async fn update_many_returns_what_exec_returns_and_logs_each_change() {
    let t = TestDb::new().await;
    posts(&t, 5).await;
    let before = all_logs(&t.db).await.len();
    let result: UpdateResult = post::Entity::update_many()
        .col_expr(post::Column::Views, Expr::col(post::Column::Views).add(100))
        .col_expr(post::Column::Body, Expr::value("bulk"))
        .filter(post::Column::Views.lt(3))
        .exec_audited(&t.db)
        .await
        .unwrap();
    assert_eq!(result.rows_affected, 3);
    let logs = all_logs(&t.db).await;
    let updates = &logs[before..];
    assert_eq!(updates.len(), 3);
    for u in updates {
        assert_eq!(u.action, Action::Update.as_str());
        let changes = u.changes.as_ref().unwrap();
        let (old, new) = (&changes["old_value"], &changes["new_value"]);
        assert_eq!(
            new["views"].as_i64().unwrap(),
            old["views"].as_i64().unwrap() + 100
        );
        assert_eq!(new["body"], "bulk");
        assert!(
            changes["new_value"].get("title").is_none(),
            "only what changed: {changes}"
        );
    }
    // No WHERE at all: every row.
    let all = post::Entity::update_many()
        .col_expr(post::Column::Body, Expr::value("all"))
        .exec_audited(&t.db)
        .await
        .unwrap();
    assert_eq!(all.rows_affected, 5);
    assert_eq!(all_logs(&t.db).await.len(), logs.len() + 5);
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

/// PostgreSQL: a matching row committed by another connection while the DELETE is held back
/// (a statement delay injected by the proxy) is deleted too; the count tells, and everything
/// rolls back instead of committing a delete with no entry. (MySQL's locking read takes gap
/// locks that make such an insert wait; SQLite admits one writer.)
#[tokio::test]
async fn a_row_matched_meanwhile_rolls_everything_back() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::Postgres {
        return t.finish().await;
    }
    posts(&t, 3).await;
    let proxy = FaultProxy::start(upstream_of(&t.url)).await;
    let mut opt = ConnectOptions::new(proxy.url(&t.url));
    opt.max_connections(2).sqlx_logging(false);
    let slow = Database::connect(opt).await.unwrap();
    proxy.delay(Some(("DELETE FROM", Duration::from_millis(700))));
    let logs_before = all_logs(&t.db).await.len();
    let deleting = tokio::spawn(async move {
        post::Entity::delete_many()
            .filter(post::Column::Views.gte(0))
            .exec_audited(&slow)
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Committed while the DELETE waits in the proxy: no hook, so no entry of its own.
    post::Entity::insert(post::ActiveModel {
        title: Set("meanwhile".into()),
        body: Set("b".into()),
        views: Set(7),
        ..Default::default()
    })
    .exec(&t.db)
    .await
    .unwrap();
    let err: DbErr = deleting.await.unwrap().unwrap_err();
    assert!(proxy.delayed() >= 1, "the delay fired");
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(post::Entity::find().count(&t.db).await.unwrap(), 4);
    assert_eq!(all_logs(&t.db).await.len(), logs_before);
    t.finish().await;
}

fn draft(title: &str, views: i32) -> post::ActiveModel {
    post::ActiveModel {
        title: Set(title.into()),
        body: Set("b".into()),
        views: Set(views),
        secret: Set(Some("s3cret".into())),
        ..Default::default()
    }
}

/// `changes` with the row's own id and title blanked, to compare two rows' entries.
fn shape(changes: &Json) -> Json {
    let mut c = changes.clone();
    let new = c["new_value"].as_object_mut().unwrap();
    new.insert("id".into(), Json::Null);
    new.insert("title".into(), Json::Null);
    c
}

/// Custom SQL whose text holds what looks like a placeholder (a `?`, or `$5` on PostgreSQL)
/// cannot be split into the read of the matching rows: refused before anything runs, never
/// run unlogged.
#[tokio::test]
async fn a_statement_whose_rows_cannot_be_read_is_refused_and_not_run() {
    let t = TestDb::new().await;
    posts(&t, 3).await;
    let logs = all_logs(&t.db).await.len();
    let odd = if t.backend() == DbBackend::Postgres {
        "title <> 'costs $5'"
    } else {
        "title <> 'why?'"
    };
    let refused = |result: Result<(), DbErr>| {
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("exec_audited cannot find the rows this statement matches"),
            "{err}"
        );
    };
    refused(
        post::Entity::delete_many()
            .filter(Expr::cust(odd))
            .exec_audited(&t.db)
            .await
            .map(|_| ()),
    );
    refused(
        post::Entity::update_many()
            .col_expr(post::Column::Views, Expr::value(99))
            .filter(Expr::cust(odd))
            .exec_audited(&t.db)
            .await
            .map(|_| ()),
    );
    assert_eq!(post::Entity::find().count(&t.db).await.unwrap(), 3);
    let views: Vec<i32> = post::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .iter()
        .map(|p| p.views)
        .collect();
    assert!(!views.contains(&99), "{views:?}");
    assert_eq!(all_logs(&t.db).await.len(), logs);
    t.finish().await;
}

#[tokio::test]
async fn insert_returns_what_exec_returns_and_logs_what_the_hook_logs() {
    let t = TestDb::new().await;
    let hooked = draft("by hook", 4).insert(&t.db).await.unwrap();
    let result: InsertResult<post::ActiveModel> = post::Entity::insert(draft("by exec", 4))
        .exec_audited(&t.db)
        .await
        .unwrap();
    assert_ne!(result.last_insert_id, hooked.id);
    let stored = post::Entity::find_by_id(result.last_insert_id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.title, "by exec");
    let logs = all_logs(&t.db).await;
    assert_eq!(logs.len(), 2);
    let (hook, exec) = (&logs[0], &logs[1]);
    assert_eq!(exec.action, Action::Create.as_str());
    assert_eq!(exec.object_id, result.last_insert_id.to_string());
    let changes = exec.changes.as_ref().unwrap();
    assert_eq!(changes["new_value"]["title"], "by exec");
    assert_eq!(changes["new_value"]["id"], result.last_insert_id);
    assert_eq!(changes["new_value"]["secret"], FILTERED);
    assert_eq!(shape(changes), shape(hook.changes.as_ref().unwrap()));
    assert_eq!(exec.entity_type, hook.entity_type);
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

#[tokio::test]
async fn insert_many_logs_every_row_and_an_empty_one_nothing() {
    let t = TestDb::new().await;
    // Auto-increment keys: RETURNING, or on MySQL the statement's block of ids.
    let result: InsertManyResult<post::ActiveModel> =
        post::Entity::insert_many((0..5).map(|i| draft(&format!("m{i}"), i)))
            .exec_audited(&t.db)
            .await
            .unwrap();
    let last = result.last_insert_id.unwrap();
    let stored = post::Entity::find().all(&t.db).await.unwrap();
    assert_eq!(stored.len(), 5);
    let logs = all_logs(&t.db).await;
    assert_eq!(logs.len(), 5);
    for (row, log) in stored.iter().zip(&logs) {
        assert_eq!(log.action, "create");
        assert_eq!(log.object_id, row.id.to_string());
        assert_eq!(
            log.changes.as_ref().unwrap()["new_value"]["title"],
            row.title
        );
    }
    assert!(stored.iter().any(|r| r.id == last));
    // Keys set by the caller (composite), on every backend.
    translation::Entity::insert_many((0..3).map(|i| translation::ActiveModel {
        post_id: Set(i),
        lang: Set("en".into()),
        body: Set(format!("t{i}")),
    }))
    .exec_audited(&t.db)
    .await
    .unwrap();
    let logs = all_logs(&t.db).await;
    let created: Vec<_> = logs[5..].iter().map(|l| l.object_id.clone()).collect();
    assert_eq!(created.len(), 3, "{created:?}");
    for l in &logs[5..] {
        assert_eq!(l.entity_type, "translations");
        assert_eq!(
            l.changes.as_ref().unwrap()["new_value"]["text_body"],
            FILTERED
        );
    }
    // Nothing to insert: no statement, no entry, what exec returns.
    let empty = post::Entity::insert_many(Vec::<post::ActiveModel>::new())
        .exec_audited(&t.db)
        .await
        .unwrap();
    assert!(empty.last_insert_id.is_none());
    assert_eq!(all_logs(&t.db).await.len(), 8);
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

#[tokio::test]
async fn a_failing_insert_logs_nothing_and_keeps_its_error() {
    let t = TestDb::new().await;
    draft("taken", 1).insert(&t.db).await.unwrap();
    let err = post::Entity::insert(draft("taken", 2))
        .exec_audited(&t.db)
        .await
        .unwrap_err();
    assert!(
        matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
        "{err}"
    );
    // A batch with one bad row: none of it stays, nothing is logged.
    let err = post::Entity::insert_many([draft("fresh", 3), draft("taken", 4)])
        .exec_audited(&t.db)
        .await
        .unwrap_err();
    assert!(err.sql_err().is_some(), "{err}");
    assert_eq!(post::Entity::find().count(&t.db).await.unwrap(), 1);
    assert_eq!(all_logs(&t.db).await.len(), 1);
    t.finish().await;
}

/// `ON CONFLICT DO NOTHING`: the rows skipped are not logged, the rows inserted are (PostgreSQL
/// and SQLite report which through RETURNING). MySQL does not say which rows such a statement
/// inserted, and no backend tells an upsert's updated rows from its inserted ones: both are
/// refused before anything runs.
#[tokio::test]
async fn conflicts_log_only_inserted_rows_and_upserts_are_refused() {
    let t = TestDb::new().await;
    draft("taken", 1).insert(&t.db).await.unwrap();
    let upsert = post::Entity::insert(draft("taken", 99))
        .on_conflict(
            OnConflict::column(post::Column::Title)
                .update_column(post::Column::Views)
                .to_owned(),
        )
        .exec_audited(&t.db)
        .await
        .unwrap_err();
    assert!(upsert.to_string().contains("refused"), "{upsert}");
    let stored = post::Entity::find().all(&t.db).await.unwrap();
    assert_eq!((stored.len(), stored[0].views), (1, 1), "nothing ran");

    let skip = post::Entity::insert_many([draft("taken", 5), draft("new", 6)])
        .on_conflict_do_nothing_on([post::Column::Title])
        .exec_audited(&t.db)
        .await;
    let single = post::Entity::insert(draft("taken", 7))
        .on_conflict(
            OnConflict::column(post::Column::Title)
                .do_nothing()
                .to_owned(),
        )
        .exec_audited(&t.db)
        .await;
    if t.backend() == DbBackend::MySql {
        let err = skip.unwrap_err();
        assert!(err.to_string().contains("MySQL does not say"), "{err}");
        assert!(single.is_err());
        assert_eq!(post::Entity::find().count(&t.db).await.unwrap(), 1);
        assert_eq!(all_logs(&t.db).await.len(), 1);
        return t.finish().await;
    }
    assert!(matches!(skip.unwrap(), TryInsertResult::Inserted(_)));
    assert!(matches!(single.unwrap_err(), DbErr::RecordNotInserted));
    let all_conflict = post::Entity::insert_many([draft("taken", 8)])
        .on_conflict_do_nothing_on([post::Column::Title])
        .exec_audited(&t.db)
        .await
        .unwrap();
    assert!(matches!(all_conflict, TryInsertResult::Conflicted));
    let logs = all_logs(&t.db).await;
    assert_eq!(logs.len(), 2, "the first row, and `new` only");
    assert_eq!(
        logs[1].changes.as_ref().unwrap()["new_value"]["title"],
        "new"
    );
    assert_eq!(post::Entity::find().count(&t.db).await.unwrap(), 2);
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

post_shaped!(
    /// `post`'s shape, captured by the database.
    mod db_post,
    "exec_db_posts",
    #[audit(capture = "database", exclude(updated_at))]
);

post_shaped!(
    /// The same, its seal deferred.
    mod db_deferred_post,
    "exec_db_deferred_posts",
    #[audit(capture = "database", seal = "deferred", exclude(updated_at))]
);

/// Every `exec_audited` path on a database-mode entity, under alice's context: the entries
/// its trigger wrote, oldest first.
macro_rules! exec_every_path {
    ($t:expr, $entity:ident) => {{
        let t = $t;
        common::create_table(&t.db, $entity::Entity).await;
        capture_db::install::<$entity::Model, _>(&t.db)
            .await
            .unwrap();
        let row = |title: &str, views: i32| $entity::ActiveModel {
            title: Set(title.into()),
            body: Set("b".into()),
            views: Set(views),
            secret: Set(Some("s3cret".into())),
            ..Default::default()
        };
        AuditContext::new()
            .actor("alice")
            .scope(async {
                $entity::Entity::insert(row("one", 1))
                    .exec_audited(&t.db)
                    .await
                    .unwrap();
                $entity::Entity::insert_many([row("two", 2), row("three", 3)])
                    .exec_audited(&t.db)
                    .await
                    .unwrap();
                $entity::Entity::update_many()
                    .col_expr($entity::Column::Views, Expr::value(10))
                    .filter($entity::Column::Views.gte(2))
                    .exec_audited(&t.db)
                    .await
                    .unwrap();
                $entity::Entity::delete_many()
                    .filter($entity::Column::Title.eq("one"))
                    .exec_audited(&t.db)
                    .await
                    .unwrap();
            })
            .await;
        let logs = all_logs(&t.db).await;
        let actions: Vec<&str> = logs.iter().map(|l| l.action.as_str()).collect();
        assert_eq!(
            actions,
            ["create", "create", "create", "update", "update", "delete"]
        );
        for l in &logs {
            assert_eq!(l.actor.as_deref(), Some("alice"), "{l:?}");
        }
        assert_eq!(
            logs[0].changes.as_ref().unwrap()["new_value"]["secret"],
            FILTERED
        );
        logs
    }};
}

/// A database-mode entity is logged by its trigger, once per row, with the caller's context:
/// `exec_audited` writes no entry of its own for it.
#[tokio::test]
async fn database_mode_is_logged_once_by_the_trigger() {
    let t = TestDb::new().await;
    exec_every_path!(&t, db_post);
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

/// With its seal deferred, the same entries, each left to the seal (`exec_audited` runs it in
/// `capture_db::transaction_unsealed`): `Unsealed` in `verify` until `capture_db::seal`.
#[tokio::test]
async fn database_mode_with_a_deferred_seal_leaves_its_entries_to_the_seal() {
    use sea_orm_audit::chain::ProblemKind;
    let t = TestDb::new().await;
    let logs = exec_every_path!(&t, db_deferred_post);
    assert!(
        logs.iter().all(|l| l.hash.as_deref() == Some("unsealed")),
        "{logs:#?}"
    );
    let report = verify(&t.db).await.unwrap();
    assert_eq!(report.problems.len(), logs.len(), "{report:#?}");
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Unsealed),
        "{report:#?}"
    );
    capture_db::seal(&t.db).await.unwrap();
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

/// Concurrent multi-row inserts (auto-increment ids from one sequence, or on MySQL one block
/// per statement): every row gets exactly its own entry; inside a caller's transaction that
/// rolls back, neither rows nor entries stay.
#[tokio::test]
async fn concurrent_inserts_each_log_their_own_rows() {
    let t = TestDb::new().await;
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let db = t.db.clone();
            tokio::spawn(async move {
                for round in 0..3 {
                    post::Entity::insert_many(
                        (0..10).map(|i| draft(&format!("t{task}-r{round}-{i}"), i)),
                    )
                    .exec_audited(&db)
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rows = post::Entity::find().all(&t.db).await.unwrap();
    let logs = all_logs(&t.db).await;
    assert_eq!((rows.len(), logs.len()), (120, 120));
    let logged: std::collections::HashMap<String, Json> = logs
        .iter()
        .map(|l| {
            (
                l.object_id.clone(),
                l.changes.clone().unwrap()["new_value"]["title"].clone(),
            )
        })
        .collect();
    for row in &rows {
        assert_eq!(logged[&row.id.to_string()], row.title, "row {}", row.id);
    }
    let txn = sea_orm::TransactionTrait::begin(&t.db).await.unwrap();
    post::Entity::insert_many([draft("gone", 1), draft("gone too", 2)])
        .exec_audited(&txn)
        .await
        .unwrap();
    sea_orm::TransactionSession::rollback(txn).await.unwrap();
    assert_eq!(post::Entity::find().count(&t.db).await.unwrap(), 120);
    assert_eq!(all_logs(&t.db).await.len(), 120);
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

/// MySQL, no RETURNING: a multi-row insert's auto-increment ids are its block,
/// `auto_increment_increment` apart (set to 3 for this session), and each row is read back by
/// its own id.
#[tokio::test]
async fn mysql_reads_an_insert_block_with_its_increment() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let mut opt = ConnectOptions::new(&t.url);
    opt.max_connections(1).sqlx_logging(false);
    let db = Database::connect(opt).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(&db, "SET SESSION auto_increment_increment = 3")
        .await
        .unwrap();
    post::Entity::insert_many((0..4).map(|i| draft(&format!("s{i}"), i)))
        .exec_audited(&db)
        .await
        .unwrap();
    let rows = post::Entity::find().all(&db).await.unwrap();
    let ids: Vec<i32> = rows.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[1] - w[0] == 3), "{ids:?}");
    let logs = all_logs(&t.db).await;
    assert_eq!(logs.len(), 4);
    for (row, log) in rows.iter().zip(&logs) {
        assert_eq!(log.object_id, row.id.to_string());
        assert_eq!(
            log.changes.as_ref().unwrap()["new_value"]["title"],
            row.title
        );
    }
    db.close().await.unwrap();
    t.finish().await;
}
