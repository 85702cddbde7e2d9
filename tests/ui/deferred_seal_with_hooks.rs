use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
#[sea_orm(table_name = "users")]
#[audit(seal = "deferred")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub password: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

fn main() {}
