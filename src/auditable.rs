//! The audit identity and policy of an entity, and how its rows become JSON and object ids.

use sea_orm::{EntityName, EntityTrait, IdenStatic, Iterable, ModelTrait, Value};
use serde_json::{Map, Value as Json};

use crate::value::{json_to_key_text, to_json};

/// An entity model whose writes are audited. Implement it with `#[derive(Auditable)]`:
///
/// ```
/// use sea_orm::entity::prelude::*;
/// use sea_orm_audit::Auditable;
///
/// #[derive(Clone, Debug, PartialEq, DeriveEntityModel, Auditable)]
/// #[sea_orm(table_name = "users")]
/// #[audit(entity_type = "user", exclude(updated_at), mask(password_hash))]
/// pub struct Model {
///     #[sea_orm(primary_key)]
///     pub id: i32,
///     pub email: String,
///     pub password_hash: String,
///     pub updated_at: DateTimeUtc,
/// }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// # pub enum Relation {}
/// sea_orm_audit::impl_audited_behavior!();
///
/// assert_eq!(<Model as Auditable>::entity_type(), "user");
/// assert_eq!(<Model as Auditable>::excluded(), ["updated_at"]);
/// assert_eq!(<Model as Auditable>::masked(), ["password_hash"]);
/// ```
///
/// Attributes on the struct: `entity_type = "..."` (default: the table name),
/// `exclude(field, ..)` (left out of diffs), `mask(field, ..)` (stored as
/// `"***FILTERED***"`), `log_unchanged` (also record updates that change nothing). Fields
/// can carry `#[audit(exclude)]` or `#[audit(mask)]` themselves. Names are the model's field
/// names; the derive turns each into the entity's `Column` variant, and the column name is
/// SeaORM's (`rename_all`, `column_name`), so a mask cannot miss the key it is meant to hide.
///
/// The impl can also be written by hand, outside a generated entity file (loco's `models/`,
/// sea-orm-cli's output), with the same compile-time check, since the lists are `Column`
/// variants:
///
/// ```
/// # mod users {
/// # use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
/// # #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub password_hash: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// # pub enum Relation {}
/// # sea_orm_audit::impl_audited_behavior!();
/// # }
/// impl sea_orm_audit::Auditable for users::Model {
///     const MASK: &'static [users::Column] = &[users::Column::PasswordHash];
/// }
/// ```
pub trait Auditable: ModelTrait + Send + Sync + 'static {
    /// Overrides the entity type name; `None` uses the table name.
    const ENTITY_TYPE: Option<&'static str> = None;
    /// Columns left out of diffs (an update changing only these records nothing).
    const EXCLUDE: &'static [ColumnOf<Self>] = &[];
    /// Columns whose values are never stored: they appear as `"***FILTERED***"`.
    const MASK: &'static [ColumnOf<Self>] = &[];
    /// Record updates whose diff is empty (off by default).
    const LOG_UNCHANGED: bool = false;
    /// Who writes the log rows: the hook helpers (default) or triggers in the database (see
    /// [`capture_db`](crate::capture_db)). In [`Capture::Database`] mode the hook helpers and
    /// `bulk::*` write no row themselves, so no write is logged twice.
    const CAPTURE: Capture = Capture::Hooks;
    /// When the hashes of the entries written in [`Capture::Database`] mode are computed (see
    /// [`Seal`]). Hook mode hashes each entry as it writes it, whatever this says.
    const SEAL: Seal = Seal::OnWrite;

    /// The name log rows are keyed by.
    fn entity_type() -> &'static str {
        Self::ENTITY_TYPE.unwrap_or_else(|| Self::Entity::default().table_name())
    }

    /// The names of the excluded columns, as SeaORM names them.
    fn excluded() -> Vec<&'static str> {
        Self::EXCLUDE.iter().map(IdenStatic::as_str).collect()
    }

    /// The names of the masked columns, as SeaORM names them.
    fn masked() -> Vec<&'static str> {
        Self::MASK.iter().map(IdenStatic::as_str).collect()
    }

    /// The canonical object id of this row (see [`object_id`]).
    fn audit_object_id(&self) -> String {
        object_id(self.get_primary_key_value())
    }
}

/// Who writes an entity's log rows (see [`Auditable::CAPTURE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capture {
    /// The hook helpers and `bulk::*` write the rows: only active-model operations and
    /// `bulk::*` are logged.
    Hooks,
    /// Triggers installed by [`capture_db::install`](crate::capture_db::install) write the rows:
    /// every write to the table is logged, whatever path it takes.
    Database,
}

/// When the chain hashes of a database-mode entity's entries are computed (see
/// [`Auditable::SEAL`] and [`capture_db`](crate::capture_db)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seal {
    /// With the write: PostgreSQL's trigger hashes each entry it writes; on SQLite and MySQL
    /// the hook helpers seal after an active-model write, and
    /// [`capture_db::transaction`](crate::capture_db::transaction) seals with its commit.
    OnWrite,
    /// Later, by [`capture_db::seal`](crate::capture_db::seal) (or a
    /// [`capture_db::Sealer`](crate::capture_db::Sealer) on a timer): the trigger writes the
    /// entry unsealed and this entity's write paths do not hash, so writes cost less (a seal
    /// run for another reason, such as another entity's hook on SQLite or MySQL, seals these
    /// entries too), and until the seal `verify` reports the entries as
    /// [`Unsealed`](crate::chain::ProblemKind::Unsealed), unprotected against an edit.
    Deferred,
}

/// The `Column` type of a model's entity.
pub type ColumnOf<M> = <<M as ModelTrait>::Entity as EntityTrait>::Column;

/// Every column of `model` as a JSON object keyed by column name.
pub fn snapshot<M: ModelTrait>(model: &M) -> Map<String, Json> {
    <M::Entity as EntityTrait>::Column::iter()
        .map(|col| (col.as_str().to_owned(), to_json(&model.get(col))))
        .collect()
}

/// The canonical text of a primary key, as stored in `audit_log.object_id`.
///
/// A single-column key is its plain text: integers in decimal (`42`), strings as they are,
/// UUIDs hyphenated lowercase. A composite key is the JSON array of its values in key column
/// order (`[7,"en"]`), so no separator can be confused with the data.
pub fn object_id(pk: impl IntoIterator<Item = Value>) -> String {
    let mut values: Vec<Json> = pk.into_iter().map(|v| to_json(&v)).collect();
    if values.len() == 1 {
        json_to_key_text(&values.remove(0))
    } else {
        Json::Array(values).to_string()
    }
}
