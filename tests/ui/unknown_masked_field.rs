use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
#[sea_orm(table_name = "users")]
#[audit(mask(pasword))]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub password: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

// The model is still Auditable: the unknown name is the only error, with no cascade.
fn needs_auditable<M: sea_orm_audit::Auditable>() {}

fn main() {
    needs_auditable::<Model>();
}
