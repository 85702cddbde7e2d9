//! Run with: `cargo run --example database_capture`
//!
//! Database-side capture on SQLite (nothing to install): the `posts` table gets triggers
//! generated from its `Auditable` definition, so writes that no hook sees are logged too —
//! SeaORM's bulk builders, raw SQL — each exactly once, with the actor of the context the
//! write ran in, or none. Prints the history and checks the hash chain.

// SeaORM entities are `pub` by convention; here they live in a private module.
#![allow(unreachable_pub)]

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DbErr, EntityTrait,
    QueryFilter, Schema,
};
use sea_orm_audit::{AuditContext, History, capture_db, verify};

mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "posts")]
    #[audit(entity_type = "post", capture = "database", mask(secret))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        pub views: i32,
        pub secret: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    // In database mode the hooks only hand the context to the triggers.
    sea_orm_audit::impl_audited_behavior!();
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut opt = ConnectOptions::new("sqlite::memory:");
    opt.max_connections(1).sqlx_logging(false);
    let db = Database::connect(opt).await?;
    // In an application: the audit migrations, your table, then `install` in a migration.
    sea_orm_audit_migration::create_schema(&db).await?;
    let backend = db.get_database_backend();
    db.execute(&Schema::new(backend).create_table_from_entity(post::Entity))
        .await?;
    capture_db::install::<post::Model, _>(&db).await?;
    assert!(capture_db::check::<post::Model, _>(&db).await?.is_empty());

    // An active-model insert by alice, in a capture transaction: her context reaches the
    // trigger. (A write the context cannot be shown to belong to gets no actor, never a stale
    // one: on SQLite and MySQL that is any write outside `capture_db::transaction`.)
    AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(&db, |txn| {
            Box::pin(async move {
                post::ActiveModel {
                    title: Set("Hello".into()),
                    views: Set(0),
                    secret: Set("hunter2".into()),
                    ..Default::default()
                }
                .insert(txn)
                .await
            })
        }))
        .await?;

    // SeaORM's bulk builders and raw SQL by bob, in a capture transaction: logged, as bob.
    AuditContext::new()
        .actor("bob")
        .scope(capture_db::transaction(&db, |txn| {
            Box::pin(async move {
                post::Entity::update_many()
                    .col_expr(post::Column::Views, Expr::value(10))
                    .filter(post::Column::Title.eq("Hello"))
                    .exec(txn)
                    .await?;
                txn.execute_unprepared(
                    "INSERT INTO posts (title, views, secret) VALUES ('Raw', 1, 's')",
                )
                .await?;
                Ok::<_, DbErr>(())
            })
        }))
        .await?;

    // A write with no context (another program, a script): logged, with no actor.
    db.execute_unprepared("DELETE FROM posts WHERE title = 'Raw'")
        .await?;
    capture_db::seal(&db).await?; // SQLite cannot hash in a trigger: seal what it wrote

    let page = History::new().entity_type("post").fetch(&db).await?;
    for entry in page.entries.iter().rev() {
        println!(
            "#{} {} post {} by {}: {}",
            entry.id,
            entry.action,
            entry.object_id,
            entry.actor.as_deref().unwrap_or("(no actor)"),
            serde_json::to_string(&entry.changes)?
        );
    }
    assert_eq!(
        page.entries.len(),
        4,
        "insert, bulk update, raw insert, raw delete"
    );
    let actors: Vec<Option<&str>> = page
        .entries
        .iter()
        .rev()
        .map(|e| e.actor.as_deref())
        .collect();
    assert_eq!(actors, [Some("alice"), Some("bob"), Some("bob"), None]);
    let text = serde_json::to_string(&page.entries)?;
    assert!(
        !text.contains("hunter2"),
        "the masked value never reaches the log"
    );
    let report = verify(&db).await?;
    assert!(report.is_ok(), "{report:?}");
    println!("verify: {} entries checked, chain intact", report.checked);
    Ok(())
}
