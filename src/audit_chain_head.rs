//! The `audit_chain_head` table as a SeaORM entity (MySQL/MariaDB only): the newest entry of
//! each object's chain, one row per object that has entries.
//!
//! Created by `sea-orm-audit-migration` (`ChainHeads`), and kept by a trigger on `audit_log`:
//! every row inserted into the log, whoever writes it, moves its object's head here. Hook mode
//! locks this row and the entry it names, found by their primary keys, to read the head as
//! committed (see `chain::mysql_locked_head`): a locking read by a unique key that finds its
//! row locks that row alone, where the locking read of the newest log entry by object locked
//! the gap before it, which holds the next entry of the object sorting just before (that
//! object's writers waited, or deadlocked). PostgreSQL and SQLite have no such table: they
//! need no locking read.

use sea_orm::entity::prelude::*;

/// One object's chain head.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_chain_head")]
pub struct Model {
    /// The audited entity type, as in `audit_log`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub entity_type: String,
    /// The object id, as in `audit_log`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub object_id: String,
    /// The id of the object's newest entry in `audit_log`.
    pub head_id: i64,
    /// That entry's hash as it was written. The head read takes the entry's hash as stored
    /// now (a trigger's entry is sealed later), and this one only once retention pruned it.
    pub hash: Option<String>,
}

/// `audit_chain_head` has no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
