#![allow(elided_lifetimes_in_paths)]
#![allow(clippy::wildcard_imports)]
pub use sea_orm_migration::prelude::*;
mod m20220101_000001_users;

mod m20261130_102826_notes;
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        // sea-orm-audit's first: the migrations after it may write audited rows.
        [
            sea_orm_audit_migration::migrations(),
            vec![
                Box::new(m20220101_000001_users::Migration),
                Box::new(m20261130_102826_notes::Migration),
                // inject-above (do not remove this comment)
            ],
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
