// The names README snippets take for granted: tests/audit.rs `ui` compiles every ```rust
// snippet of README.md against them. Not a test target of its own.

use sea_orm::DatabaseConnection;

pub mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "posts")]
    #[audit(entity_type = "post", exclude(updated_at))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        pub body: String,
        pub views: i32,
        pub draft: bool,
        pub updated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();

    impl sea_orm_audit::Describe for Model {
        fn describe(&self) -> String {
            self.title.clone()
        }
    }
}

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "users")]
    #[audit(mask(password_hash))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub password_hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// A generated entity file (sea-orm-cli, loco's `_entities/`): no derive of ours in it.
pub mod models {
    pub mod _entities {
        pub mod users {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
            #[sea_orm(table_name = "generated_users")]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                pub password_hash: String,
                pub updated_at: Option<DateTimeUtc>,
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            sea_orm_audit::impl_audited_behavior!();
        }
    }
}

/// A snippet's free variables.
pub struct Given {
    pub client_ip: std::net::IpAddr,
    pub t0: chrono::DateTime<chrono::Utc>,
    pub t1: chrono::DateTime<chrono::Utc>,
    pub yesterday: chrono::DateTime<chrono::Utc>,
    pub entry_id: i64,
    pub post: post::Model,
    pub drafts: Vec<post::ActiveModel>,
}

pub async fn run_the_code_under_test(db: &DatabaseConnection) {}

pub fn save_position(id: i64) {}

pub fn reset() -> String {
    String::new()
}
