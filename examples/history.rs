//! Run with: `cargo run --example history`
//!
//! Using a history once it exists: builds one on SQLite (three actors, many edits, a delete, an
//! event), queries it with filters and pages, rebuilds a post as it was at an earlier time,
//! restores a deleted post (the restore is logged too), then tampers with a log row in plain SQL
//! and shows `verify` catching it.

// SeaORM entities are `pub` by convention; here they live in a private module.
#![allow(unreachable_pub)]

use std::time::Duration;

use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr,
    IntoActiveModel, Schema,
};
use sea_orm_audit::timeline::{deleted, restore, state_at};
use sea_orm_audit::{Action, AuditContext, Event, History, LogEntry, Template, verify};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "posts")]
    #[audit(entity_type = "post")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        pub views: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        sea_orm_audit_migration::migrations()
    }
}

async fn connect() -> Result<DatabaseConnection, DbErr> {
    let mut opt = ConnectOptions::new("sqlite::memory:");
    opt.max_connections(1).sqlx_logging(false);
    let db = Database::connect(opt).await?;
    Migrator::up(&db, None).await?;
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(post::Entity))
        .await?;
    Ok(db)
}

fn line(entry: &LogEntry) -> String {
    format!(
        "#{:<3} {:<6} {:<6} {:<3} by {:<6} {}",
        entry.id,
        entry.action,
        entry.entity_type,
        entry.object_id,
        entry.actor.as_deref().unwrap_or("-"),
        entry.message.as_deref().unwrap_or("")
    )
}

fn other(msg: impl Into<String>) -> DbErr {
    DbErr::Custom(msg.into())
}

#[tokio::main]
async fn main() -> Result<(), DbErr> {
    let db = connect().await?;

    // 1. Build a history: alice writes ten posts, bob and carol edit them.
    let posts = AuditContext::new()
        .actor("alice")
        .tool("editor")
        .scope(async {
            let mut posts = Vec::new();
            for i in 1..=10 {
                let post = post::ActiveModel {
                    title: Set(format!("Post {i}")),
                    views: Set(0),
                    ..Default::default()
                }
                .insert(&db)
                .await?;
                posts.push(post);
            }
            Ok::<_, DbErr>(posts)
        })
        .await?;
    let first = posts[0].clone();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before_edits = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    AuditContext::new()
        .actor("bob")
        .tool("moderation")
        .scope(async {
            for post in &posts {
                let mut edit = post.clone().into_active_model();
                edit.title = Set(format!("{} (reviewed)", post.title));
                edit.views = Set(post.id * 10);
                edit.update(&db).await?;
            }
            posts[1].clone().into_active_model().delete(&db).await?;
            Event::new("publish")
                .actor("bob")
                .tool("moderation")
                .target(&first)
                .template(
                    Template::new("{user} published {post}")
                        .value("user", "bob")
                        .value("post", first.title.as_str()),
                )
                .record(&db)
                .await?;
            Ok::<_, DbErr>(())
        })
        .await?;

    // 2. Query it with filters and pages.
    println!("bob's updates, newest first, pages of 4 (keyset cursor):");
    let mut query = History::new().actor("bob").action(Action::Update).limit(4);
    let mut page_no = 1;
    loop {
        let page = query.fetch(&db).await?;
        println!("  page {page_no}:");
        for entry in &page.entries {
            println!("    {}", line(entry));
        }
        match page.next {
            Some(cursor) => query = query.before(cursor),
            None => break,
        }
        page_no += 1;
    }
    let total = History::new().entity_type("post").count(&db).await?;
    let moderation = History::new().tool("moderation").count(&db).await?;
    println!("{total} entries about posts, {moderation} written by the moderation tool");
    let custom = History::new().action("publish").fetch(&db).await?;
    for entry in &custom.entries {
        println!("custom event: {}", line(entry));
    }

    // 3. An object's state at an earlier time.
    let id = first.id.to_string();
    let then = state_at(&db, "post", &id, before_edits)
        .await?
        .ok_or_else(|| other("post 1 had no state before the edits"))?;
    println!(
        "post {id} before bob's edits: title {}, views {}",
        then["title"], then["views"]
    );

    // 4. Restore a deleted post; the restore is itself logged.
    for gone in deleted::<post::Model, _>(&db).await? {
        println!(
            "deleted: post {} by {} at {}",
            gone.object_id,
            gone.deleted_by.as_deref().unwrap_or("-"),
            gone.deleted_at
        );
        let back = AuditContext::new()
            .actor("carol")
            .scope(restore::<post::ActiveModel, _>(&db, &gone.object_id))
            .await?;
        println!("restored: {back:?}");
    }
    let newest = History::new()
        .entity_type("post")
        .limit(1)
        .fetch(&db)
        .await?;
    println!("newest entry: {}", line(&newest.entries[0]));

    // 5. Tamper evidence: rewrite an entry in plain SQL, behind the library's back.
    let report = verify(&db).await?;
    println!("verify before tampering: ok = {}", report.is_ok());
    let victim = History::new()
        .object("post", &id)
        .action(Action::Update)
        .fetch(&db)
        .await?;
    let victim = victim.entries[0].id;
    db.execute_unprepared(&format!(
        "UPDATE audit_log SET actor = 'mallory' WHERE id = {victim}"
    ))
    .await?;
    let report = verify(&db).await?;
    let problem = report
        .first_broken()
        .ok_or_else(|| other("verify missed the tampering"))?;
    println!(
        "verify after tampering: ok = {}; first broken entry #{} ({} {}): {:?}",
        report.is_ok(),
        problem.id,
        problem.entity_type,
        problem.object_id,
        problem.kind
    );
    if problem.id != victim {
        return Err(other("verify pointed at the wrong entry"));
    }
    Ok(())
}
