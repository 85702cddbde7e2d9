//! Strict mode: writes to audited tables outside the audited paths are reported.

mod common;

use common::entities::post;
use common::{TestDb, new_post};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel,
    ModelTrait, QueryFilter, TransactionTrait,
};
use sea_orm_audit::{Strict, bulk};

#[tokio::test]
async fn audited_paths_are_clean_and_bypasses_are_reported() {
    let mut t = TestDb::new().await;
    let strict = Strict::new().watch::<post::Entity>();
    strict.install(&mut t.db);
    let db = &t.db;

    // Every audited path: hooks (also in a transaction) and bulk.
    let p = new_post("a").insert(db).await.unwrap();
    let mut edit = p.clone().into_active_model();
    edit.views = Set(1);
    let p = edit.update(db).await.unwrap();
    p.clone().into_active_model().update(db).await.unwrap(); // nothing Set
    let txn = db.begin().await.unwrap();
    let q = new_post("b").insert(&txn).await.unwrap();
    q.delete(&txn).await.unwrap();
    txn.commit().await.unwrap();
    bulk::insert_many(db, [new_post("c"), new_post("d")])
        .await
        .unwrap();
    bulk::update_many::<post::Entity, _>(
        db,
        Condition::all(),
        post::ActiveModel {
            views: Set(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    bulk::delete_by_id::<post::Entity, _>(db, p.id)
        .await
        .unwrap();
    assert_eq!(strict.violations(), vec![], "audited paths only");
    strict.check().unwrap();

    // Each SeaORM path that calls no hooks, and raw SQL.
    post::Entity::insert(new_post("e")).exec(db).await.unwrap();
    post::Entity::insert_many([new_post("f"), new_post("g")])
        .exec(db)
        .await
        .unwrap();
    post::Entity::update_many()
        .col_expr(post::Column::Views, sea_orm::sea_query::Expr::value(9))
        .filter(post::Column::Title.eq("e"))
        .exec(db)
        .await
        .unwrap();
    post::Entity::delete_many()
        .filter(post::Column::Title.eq("f"))
        .exec(db)
        .await
        .unwrap();
    // Raw SQL through a Statement is seen (`execute_unprepared` is not: SeaORM reports no metric
    // for it, see the README).
    let raw = sea_orm::Statement::from_string(
        db.get_database_backend(),
        "UPDATE posts SET body = 'raw' WHERE title = 'g'",
    );
    db.execute_raw(raw).await.unwrap();
    let violations = strict.violations();
    assert_eq!(violations.len(), 5, "{violations:#?}");
    assert!(violations.iter().all(|v| v.table == "posts"));
    assert!(violations[0].sql.to_uppercase().starts_with("INSERT"));
    assert!(violations[3].sql.to_uppercase().starts_with("DELETE"));
    let err = strict.check().unwrap_err().to_string();
    assert!(err.contains("5 unaudited write(s)"), "{err}");
    t.finish().await;
}
