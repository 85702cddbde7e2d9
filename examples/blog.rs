//! Run with: `cargo run --example blog`
//!
//! A SQLite-backed blog whose posts are audited: runs the migration, creates, edits and deletes
//! posts as two different actors, and prints each post's history.

// SeaORM entities are `pub` by convention; here they live in a private module.
#![allow(unreachable_pub)]

use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr,
    IntoActiveModel, Schema,
};
use sea_orm_audit::{AuditContext, LogEntry, logs_for_id};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "posts")]
    #[audit(entity_type = "post", exclude(updated_at))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub views: i32,
        pub updated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    // The application's own hook (sets updated_at) with one audit line per hook.
    #[async_trait::async_trait]
    impl ActiveModelBehavior for ActiveModel {
        async fn before_save<C: ConnectionTrait>(
            mut self,
            db: &C,
            insert: bool,
        ) -> Result<Self, DbErr> {
            self.updated_at = sea_orm::ActiveValue::Set(Some(chrono::Utc::now()));
            sea_orm_audit::before_save(self, db, insert).await
        }

        async fn after_save<C: ConnectionTrait>(
            model: Model,
            db: &C,
            insert: bool,
        ) -> Result<Model, DbErr> {
            sea_orm_audit::after_save(model, db, insert).await
        }

        async fn before_delete<C: ConnectionTrait>(self, db: &C) -> Result<Self, DbErr> {
            sea_orm_audit::before_delete(self, db).await
        }

        async fn after_delete<C: ConnectionTrait>(self, db: &C) -> Result<Self, DbErr> {
            sea_orm_audit::after_delete(self, db).await
        }
    }
}

/// The application's migrator: its own migrations plus sea-orm-audit's.
struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        sea_orm_audit_migration::migrations()
    }
}

async fn connect() -> Result<DatabaseConnection, DbErr> {
    // One connection: every connection to `sqlite::memory:` is a database of its own.
    let mut opt = ConnectOptions::new("sqlite::memory:");
    opt.max_connections(1).sqlx_logging(false);
    let db = Database::connect(opt).await?;
    Migrator::up(&db, None).await?;
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(post::Entity))
        .await?;
    Ok(db)
}

fn print_history(title: &str, history: &[LogEntry]) {
    println!("\nHistory of {title} (newest first):");
    for entry in history {
        let who = entry.actor.as_deref().unwrap_or("(nobody)");
        println!(
            "  #{:<3} {} {:<7} by {}",
            entry.id,
            entry.created_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            entry.action,
            who
        );
        if let Some(changes) = &entry.changes {
            for field in changes.fields() {
                let old = changes.old_value.get(field).map(|v| v.to_string());
                let new = changes.new_value.get(field).map(|v| v.to_string());
                println!(
                    "        {field}: {} -> {}",
                    old.as_deref().unwrap_or("-"),
                    new.as_deref().unwrap_or("-")
                );
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), DbErr> {
    let db = connect().await?;
    let alice = AuditContext::new().actor("alice").tool("blog");
    let bob = AuditContext::new().actor("bob").tool("blog");

    let (first, second) = alice
        .clone()
        .scope(async {
            let first = post::ActiveModel {
                title: Set("Hello, audit".into()),
                body: Set("Every change is recorded.".into()),
                views: Set(0),
                ..Default::default()
            }
            .insert(&db)
            .await?;
            let second = post::ActiveModel {
                title: Set("Draft".into()),
                body: Set("To be deleted".into()),
                views: Set(0),
                ..Default::default()
            }
            .insert(&db)
            .await?;
            Ok::<_, DbErr>((first, second))
        })
        .await?;

    bob.clone()
        .scope(async {
            let mut edit = first.clone().into_active_model();
            edit.title = Set("Hello, audit trail".into());
            edit.views = Set(42);
            edit.update(&db).await?;
            // Sets views to the value it already has; only updated_at changes, and it is
            // excluded: no history entry.
            post::ActiveModel {
                id: Set(first.id),
                views: Set(42),
                ..Default::default()
            }
            .update(&db)
            .await?;
            second.clone().into_active_model().delete(&db).await?;
            Ok::<_, DbErr>(())
        })
        .await?;

    alice
        .scope(async {
            let mut edit = post::ActiveModel {
                id: Set(first.id),
                ..Default::default()
            };
            edit.body = Set("Every change is recorded, with who and when.".into());
            edit.update(&db).await
        })
        .await?;

    print_history(
        "post 1",
        &logs_for_id(&db, "post", &first.id.to_string()).await?,
    );
    print_history(
        "post 2 (deleted)",
        &logs_for_id(&db, "post", &second.id.to_string()).await?,
    );
    Ok(())
}
