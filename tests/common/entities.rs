//! Entities used by the suite, one per key shape and policy.

use sea_orm::DatabaseConnection;

use super::create_table;

/// A module with `post`'s shape (and a masked `secret`) on `$table`, under the given
/// `#[audit(..)]` policy.
#[allow(unused_macros)]
macro_rules! post_shaped {
    ($(#[$doc:meta])* mod $name:ident, $table:literal, #[$audit:meta]) => {
        $(#[$doc])*
        mod $name {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
            #[sea_orm(table_name = $table)]
            #[$audit]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                #[sea_orm(unique)]
                pub title: String,
                pub body: String,
                pub views: i32,
                #[audit(mask)]
                pub secret: Option<String>,
                pub updated_at: Option<DateTimeUtc>,
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            sea_orm_audit::impl_audited_behavior!();
        }
    };
}
// Path-scoped, so that a test file can `use common::entities::post_shaped;`.
#[allow(unused_imports)]
pub(crate) use post_shaped;

/// Integer key, user-owned hooks composing with the audit helpers, excluded and masked columns.
pub mod post {
    use sea_orm::ActiveValue::Set;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "posts")]
    #[audit(exclude(updated_at))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub title: String,
        pub body: String,
        pub views: i32,
        #[audit(mask)]
        pub secret: Option<String>,
        pub updated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl sea_orm_audit::Describe for Model {
        fn describe(&self) -> String {
            format!("\"{}\"", self.title)
        }
    }

    // The shape loco generates: the application's own hook, plus one line per audit helper.
    #[async_trait::async_trait]
    impl ActiveModelBehavior for ActiveModel {
        async fn before_save<C>(mut self, db: &C, insert: bool) -> Result<Self, DbErr>
        where
            C: ConnectionTrait,
        {
            if self.is_changed() {
                self.updated_at = Set(Some(chrono::Utc::now()));
            }
            sea_orm_audit::before_save(self, db, insert).await
        }

        async fn after_save<C>(model: Model, db: &C, insert: bool) -> Result<Model, DbErr>
        where
            C: ConnectionTrait,
        {
            sea_orm_audit::after_save(model, db, insert).await
        }

        async fn before_delete<C>(self, db: &C) -> Result<Self, DbErr>
        where
            C: ConnectionTrait,
        {
            sea_orm_audit::before_delete(self, db).await
        }

        async fn after_delete<C>(self, db: &C) -> Result<Self, DbErr>
        where
            C: ConnectionTrait,
        {
            sea_orm_audit::after_delete(self, db).await
        }
    }
}

/// UUID key set by the application, renamed entity type, the whole impl from the macro.
pub mod document {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "documents")]
    #[audit(entity_type = "document")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// String key; records no-op updates.
pub mod tag {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "tags")]
    #[audit(log_unchanged)]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub slug: String,
        pub label: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// Composite key (integer + string), a renamed column.
pub mod translation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "translations")]
    #[audit(mask(text_body))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub post_id: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub lang: String,
        #[sea_orm(column_name = "text_body")]
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// One column of each value type.
pub mod sample {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "samples")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(column_type = "Decimal(Some((20, 4)))")]
        pub price: Decimal,
        pub blob: Vec<u8>,
        pub doc: Json,
        pub note: Option<String>,
        pub ratio: f64,
        pub day: Date,
        pub at: DateTimeUtc,
        pub local: DateTime,
        pub flag: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// Every column type the suite covers.
pub mod kitchen {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    pub enum Mood {
        #[sea_orm(string_value = "happy")]
        Happy,
        #[sea_orm(string_value = "grumpy")]
        Grumpy,
    }

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "kitchen")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(column_type = "Text")]
        pub long_text: String,
        pub unicode: String,
        pub maybe_text: Option<String>,
        pub blob: Vec<u8>,
        pub ratio: f64,
        pub small: f32,
        pub maybe_ratio: Option<f64>,
        #[sea_orm(column_type = "Decimal(Some((30, 10)))")]
        pub amount: Decimal,
        pub doc: Json,
        pub mood: Mood,
        pub maybe_mood: Option<Mood>,
        pub day: Date,
        pub clock: Time,
        pub naive: DateTime,
        pub stamp: DateTimeWithTimeZone,
        pub utc: DateTimeUtc,
        pub uid: Uuid,
        pub big: i64,
        pub flag: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// Wired wrongly on purpose: after_save without before_save.
pub mod unwired {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "unwired")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    #[async_trait::async_trait]
    impl ActiveModelBehavior for ActiveModel {
        async fn after_save<C>(model: Model, db: &C, insert: bool) -> Result<Model, DbErr>
        where
            C: ConnectionTrait,
        {
            sea_orm_audit::after_save(model, db, insert).await
        }
    }
}

pub async fn create_tables(db: &DatabaseConnection) {
    create_table(db, post::Entity).await;
    create_table(db, document::Entity).await;
    create_table(db, tag::Entity).await;
    create_table(db, translation::Entity).await;
    create_table(db, sample::Entity).await;
    create_table(db, unwired::Entity).await;
    create_table(db, kitchen::Entity).await;
    if db.get_database_backend() == sea_orm::DbBackend::MySql {
        // MySQL's TEXT and BLOB stop at 64 KiB; the suite stores 1 MiB.
        use sea_orm::ConnectionTrait;
        db.execute_unprepared(
            "ALTER TABLE kitchen MODIFY long_text LONGTEXT NOT NULL, MODIFY `blob` LONGBLOB NOT NULL, \
             MODIFY stamp DATETIME(6) NOT NULL, MODIFY utc DATETIME(6) NOT NULL",
        )
        .await
        .expect("widen kitchen columns");
    }
}
