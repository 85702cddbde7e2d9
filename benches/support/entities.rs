//! The benchmarked entity, without hooks (plain), audited by hooks, and audited by database
//! triggers, and the rows written to them.

use sea_orm::ActiveValue::{NotSet, Set};

/// A small posts entity (id, title, body, views), without hooks: the plain baseline.
pub(crate) mod plain {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "plain_posts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub views: i32,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The same entity, audited by sea-orm-audit.
pub(crate) mod audited {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "audited_posts")]
    #[audit(entity_type = "post")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub views: i32,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

pub(crate) fn body() -> String {
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ".repeat(3)
}

pub(crate) fn plain_new(i: usize) -> plain::ActiveModel {
    plain::ActiveModel {
        id: NotSet,
        title: Set(format!("Post {i}")),
        body: Set(body()),
        views: Set(0),
        updated_at: Set(chrono::Utc::now()),
    }
}

pub(crate) fn audited_new(i: usize) -> audited::ActiveModel {
    audited::ActiveModel {
        id: NotSet,
        title: Set(format!("Post {i}")),
        body: Set(body()),
        views: Set(0),
        updated_at: Set(chrono::Utc::now()),
    }
}

/// The same entity in database mode: triggers installed by `capture_db::install` write its log
/// rows. `updated_at` is excluded because SQLite's and MySQL's triggers do not encode chrono
/// timestamps yet (`install` refuses them); the other four columns are logged as in hook mode.
pub(crate) mod captured {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "captured_posts")]
    #[audit(
        entity_type = "captured_post",
        capture = "database",
        exclude(updated_at)
    )]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub views: i32,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

pub(crate) fn captured_new(i: usize) -> captured::ActiveModel {
    captured::ActiveModel {
        id: NotSet,
        title: Set(format!("Post {i}")),
        body: Set(body()),
        views: Set(0),
        updated_at: Set(chrono::Utc::now()),
    }
}

/// The database-mode entity with its seal deferred (`seal = "deferred"`): on PostgreSQL its
/// trigger neither reads the chain head nor hashes; everywhere its entries wait for
/// `capture_db::seal`.
pub(crate) mod deferred {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "deferred_posts")]
    #[audit(
        entity_type = "deferred_post",
        capture = "database",
        seal = "deferred",
        exclude(updated_at)
    )]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub views: i32,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

pub(crate) fn deferred_new(i: usize) -> deferred::ActiveModel {
    deferred::ActiveModel {
        id: NotSet,
        title: Set(format!("Post {i}")),
        body: Set(body()),
        views: Set(0),
        updated_at: Set(chrono::Utc::now()),
    }
}
