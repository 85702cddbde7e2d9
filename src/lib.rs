//! # sea-orm-audit
//!
//! Automatic change history for [SeaORM 2](https://www.sea-ql.org/SeaORM/) entities: derive
//! [`Auditable`] on a model, call one helper from each `ActiveModelBehavior` hook (or let
//! [`impl_audited_behavior!`] write the impl), add the shipped migration, and every `insert`,
//! `update` and `delete` through the active model writes one `audit_log` row holding the diff
//! `{"old_value": {..}, "new_value": {..}}` of the fields that changed, who did it and when.
//!
//! ```
//! use sea_orm::entity::prelude::*;
//! use sea_orm::{ActiveValue::Set, Database};
//! use sea_orm_audit::{AuditContext, Auditable};
//!
//! mod post {
//!     use sea_orm::entity::prelude::*;
//!
//!     #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
//!     #[sea_orm(table_name = "posts")]
//!     #[audit(exclude(updated_at))]
//!     pub struct Model {
//!         #[sea_orm(primary_key)]
//!         pub id: i32,
//!         pub title: String,
//!         pub updated_at: Option<DateTimeUtc>,
//!     }
//!
//!     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
//!     pub enum Relation {}
//!
//!     sea_orm_audit::impl_audited_behavior!();
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), DbErr> {
//! let db = Database::connect("sqlite::memory:").await?;
//! # use sea_orm_migration::MigratorTrait;
//! # struct Migrator;
//! # impl MigratorTrait for Migrator {
//! #     fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
//! #         sea_orm_audit_migration::migrations()
//! #     }
//! # }
//! Migrator::up(&db, None).await?; // your Migrator, with sea_orm_audit_migration::migrations()
//! # db.execute_unprepared("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL, updated_at TEXT)").await?;
//!
//! let post = AuditContext::new().actor("alice").scope(async {
//!     post::ActiveModel { title: Set("Hello".into()), ..Default::default() }.insert(&db).await
//! }).await?;
//!
//! let history = sea_orm_audit::logs_for(&db, &post).await?;
//! assert_eq!(history[0].actor.as_deref(), Some("alice"));
//! assert_eq!(history[0].changes.as_ref().unwrap().new_value["title"], "Hello");
//! # Ok(()) }
//! ```
//!
//! ## Modules of the design
//!
//! | concept | items |
//! |---|---|
//! | identity and policy | [`Auditable`], [`object_id`] |
//! | capture (hooks) | [`before_save`], [`after_save`], [`before_delete`], [`after_delete`], [`impl_audited_behavior!`] |
//! | capture (database triggers) | [`Capture`], [`Seal`], [`capture_db::install`], [`capture_db::check`], [`capture_db::transaction`], [`capture_db::transaction_unsealed`], [`capture_db::seal`], [`capture_db::Sealer`] |
//! | diff | [`diff`], [`diff_maps`], [`Changes`] |
//! | actor | [`AuditContext`] |
//! | events | [`Event`], [`events::login`], [`Template`], [`Describe`] |
//! | atomicity | [`AtomicExt`] |
//! | bulk writes | [`bulk`], [`ExecAudited`] (`.exec_audited(db)` on SeaORM's builders) |
//! | capture report | [`Strict`] |
//! | tamper evidence | [`verify`], [`chain`], [`audit_chain_head`] (MySQL/MariaDB) |
//! | retention | [`prune`], [`Retention`] |
//! | listeners | [`listen::Tail`], [`listen::JsonLinesSink`] |
//! | point in time | [`timeline::state_at`], [`timeline::restore`], [`timeline::revert`], [`timeline::deleted`] |
//! | reading | [`logs_for`], [`logs_for_id`], [`History`], [`LogEntry`], [`audit_log`] |
//! | errors | [`Error`]: each condition a variant; database errors keep their kind |
//! | values | [`value::to_json`] |
//! | limits | [`MAX_KEY_CHARS`], [`MAX_ACTION_CHARS`], [`MAX_JSON_DEPTH`], [`READABLE_JSON_DEPTH`], [`TOO_DEEP`] |
//! | web (feature `axum`) | `web::AuditLayer`, `web::ActivityLog`, `web::ActivityWriter`, `web::HistoryApi` |
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `axum` | the `web` module: a tower layer that attributes every change to the request's actor, IP and request id; the API activity log with its background batch writer; the history HTTP API and viewer page |
//!
//! The crate depends on `sea-orm` without default features: your application chooses the
//! database backend, runtime and TLS.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit_chain_head;
pub mod audit_log;
mod auditable;
pub mod bulk;
mod capture;
pub mod capture_db;
pub mod chain;
mod context;
mod diff;
mod entry;
mod error;
pub mod events;
mod exec;
mod limits;
pub mod listen;
mod pending;
mod prune_marker;
mod query;
mod retention;
mod scope;
mod sql;
mod store;
mod strict;
mod template;
pub mod timeline;
mod transaction;
pub mod value;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod web;

pub use auditable::{Auditable, Capture, ColumnOf, Seal, object_id, snapshot};
pub use capture::{after_delete, after_save, before_delete, before_save};
pub use chain::{Report, verify, verify_object};
pub use context::AuditContext;
pub use diff::{Changes, FILTERED, diff, diff_maps};
pub use entry::{Action, LogEntry, Status};
pub use error::{Error, Result};
pub use events::Event;
pub use exec::ExecAudited;
pub use limits::{MAX_ACTION_CHARS, MAX_JSON_DEPTH, MAX_KEY_CHARS, READABLE_JSON_DEPTH, TOO_DEEP};
pub use pending::{IN_FLIGHT_WAIT, PURGE_ABOVE, SNAPSHOT_BYTES, STALE_AFTER};
pub use query::{DEFAULT_PAGE, History, MAX_PAGE, Page, logs_for, logs_for_id};
pub use retention::{PruneReport, Retention, prune};
pub use sea_orm_audit_macros::Auditable;
pub use strict::{Strict, Violation};
pub use template::{Describe, Template};
pub use transaction::AtomicExt;

/// Traits and the derive, for glob import.
pub mod prelude {
    pub use crate::{AtomicExt, Auditable, ExecAudited};
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[doc(hidden)]
pub mod __private {
    pub use crate::pending::{
        evicted_snapshots, pending_snapshot_bytes, pending_snapshots,
        pending_snapshots_for_current_task,
    };
    pub use async_trait;
    pub use sea_orm::{ActiveModelBehavior, ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait};
}
