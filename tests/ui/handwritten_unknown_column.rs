// A hand-written impl (outside a generated entity file) names Column variants: a typo is a
// compile error, not a silent pass.
mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub password_hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

impl sea_orm_audit::Auditable for users::Model {
    const MASK: &'static [users::Column] = &[users::Column::PasswordHsh];
}

fn main() {}
