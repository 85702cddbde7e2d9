pub use super::_entities::notes::{ActiveModel, Entity, Model};
use sea_orm::entity::prelude::*;
pub type Notes = Entity;

impl sea_orm_audit::Auditable for Model {
    const EXCLUDE: &'static [super::_entities::notes::Column] =
        &[super::_entities::notes::Column::UpdatedAt];
}

#[async_trait::async_trait]
impl ActiveModelBehavior for ActiveModel {
    async fn before_save<C>(self, db: &C, insert: bool) -> std::result::Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        if !insert && self.updated_at.is_unchanged() {
            let mut this = self;
            this.updated_at = sea_orm::ActiveValue::Set(chrono::Utc::now().into());
            sea_orm_audit::before_save(this, db, insert).await
        } else {
            sea_orm_audit::before_save(self, db, insert).await
        }
    }
    async fn after_save<C: ConnectionTrait>(
        model: Model,
        db: &C,
        insert: bool,
    ) -> std::result::Result<Model, DbErr> {
        sea_orm_audit::after_save(model, db, insert).await
    }
    async fn before_delete<C: ConnectionTrait>(self, db: &C) -> std::result::Result<Self, DbErr> {
        sea_orm_audit::before_delete(self, db).await
    }
    async fn after_delete<C: ConnectionTrait>(self, db: &C) -> std::result::Result<Self, DbErr> {
        sea_orm_audit::after_delete(self, db).await
    }
}

// implement your read-oriented logic here
impl Model {}

// implement your write-oriented logic here
impl ActiveModel {}

// implement your custom finders, selectors oriented logic here
impl Entity {}
