//! `.exec_audited(db)` on SeaORM's own builders: the result `.exec(db)` returns, and one entry
//! per changed row; a statement that changed rows its read did not see rolls back.

mod common;

use std::time::Duration;

use common::entities::post;
use common::proxy::{FaultProxy, upstream_of};
use common::{TestDb, all_logs};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, Database, DbBackend, DbErr, DeleteResult,
    EntityTrait, PaginatorTrait, QueryFilter, UpdateResult,
};
use sea_orm_audit::{Action, ExecAudited, FILTERED, verify};

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
