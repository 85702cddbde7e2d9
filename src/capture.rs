//! The hook helpers: capture the row before and after each write and log the diff.
//!
//! `after_save` receives only the new model, so `before_save` hands the old row over through a
//! small in-memory table keyed by (current task, entity type, object id). The key includes the
//! tokio task (or, outside tokio tasks, the thread), so concurrent writers never see each other's
//! snapshots. A write that fails after `before_save` leaves its snapshot behind; it is replaced by
//! the next audited write of the same object in the same task, never read by another task, and
//! dropped after [`STALE_AFTER`] once the table holds more than [`PURGE_ABOVE`] entries.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityName, EntityTrait,
    FromQueryResult, Iterable, PrimaryKeyToColumn, QueryFilter, QuerySelect, QueryTrait, Value,
};
use serde_json::{Map, Value as Json};

use crate::Action;
use crate::auditable::{Auditable, object_id, snapshot};
use crate::capture_db;
use crate::chain;
use crate::context::AuditContext;
use crate::diff::diff_maps;
use crate::error::Error;
use crate::limits;
use crate::scope::Scope;
use crate::store::{self, NewEntry};
use crate::strict;

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;

/// Snapshots older than this are considered abandoned by failed writes.
pub const STALE_AFTER: Duration = Duration::from_secs(600);
/// The snapshot table is swept for abandoned entries only above this size.
pub const PURGE_ABOVE: usize = 1024;

type Key = (Scope, &'static str, String);

#[derive(Debug)]
enum Pending {
    /// Update with nothing `Set`: nothing can change.
    Unchanged,
    /// The row as stored before the write, and the chain head if it was read with it.
    Before(Map<String, Json>, Option<Option<String>>),
    /// Update or delete of a row that does not exist: the write matches nothing.
    Absent,
}

static PENDING: LazyLock<Mutex<HashMap<Key, (Instant, Pending)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn put(key: Key, pending: Pending) {
    // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
    let mut map = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() > PURGE_ABOVE {
        let now = Instant::now();
        map.retain(|_, (at, _)| now.duration_since(*at) < STALE_AFTER);
    }
    map.insert(key, (Instant::now(), pending));
}

fn take(key: &Key) -> Option<Pending> {
    let mut map = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    map.remove(key).map(|(_, p)| p)
}

/// How many before-snapshots are waiting for their `after_*` hook (diagnostics and tests).
pub fn pending_snapshots() -> usize {
    PENDING.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// How many of those belong to the current task (or thread).
pub fn pending_snapshots_for_current_task() -> usize {
    let scope = Scope::current();
    let map = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    map.keys().filter(|(s, _, _)| *s == scope).count()
}

/// Column alias of the chain head read along with the before-image (SQLite, MySQL).
const HEAD_ALIAS: &str = "__sea_orm_audit_chain_head";

/// The row as stored before a write, and, where it could be read in the same statement, the
/// head of the object's chain.
struct BeforeImage<M> {
    row: Option<M>,
    /// `Some(head)`: read with the row (SQLite, MySQL); `None`: read by the log INSERT
    /// (PostgreSQL).
    head: Option<Option<String>>,
}

/// Fetches the stored row with this primary key, locking it (`FOR UPDATE`) where the backend
/// supports row locks, so that inside a transaction no other writer can change it before our
/// write.
///
/// Where it is exact, the object's chain head comes back in the same statement (a scalar
/// subquery), saving a round trip per update and delete:
///
/// - **SQLite** has one writer, and a transaction that read a head another connection then
///   superseded cannot write any more (`SQLITE_BUSY_SNAPSHOT`).
/// - **MySQL/MariaDB**: the subquery is a locking read (`FOR UPDATE`, see
///   [`chain::head_sql`]), which reads the newest committed entry, not the
///   transaction's snapshot. It runs when the select list is evaluated, after the row was
///   read, so after the row lock was granted (checked on MariaDB 10.11: a second writer
///   waits for the row, then reads the first writer's committed entry): the previous writer
///   of the object has committed its entry by then. The locks are those the separate head
///   read this replaces took, only two statements earlier. Outside a transaction each
///   statement commits on its own, as before: two concurrent writers of one object can fork
///   its chain (reported by `verify`), but cannot deadlock, since no statement both reads the
///   head and inserts after it. Reading the head in the log INSERT (as on PostgreSQL) would
///   deadlock exactly there: two such INSERTs both take shared locks on the head, then each
///   waits for the other's gap lock to insert after it (8 tasks x 50 updates of one row
///   outside transactions lost 15-38 log rows to deadlock errors in an experiment on MariaDB
///   when this design was chosen).
/// - **PostgreSQL**: the subquery would see the statement's snapshot, taken before the wait
///   for the row lock, and miss a concurrent writer's entry; the head is read by the log
///   INSERT instead (see `store::reads_head_in_insert`).
async fn fetch_before<E, C>(
    db: &C,
    pk: impl IntoIterator<Item = Value>,
    entity_type: &str,
    object_id: &str,
) -> Result<BeforeImage<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let mut query = E::find();
    for (key, value) in E::PrimaryKey::iter().zip(pk) {
        query = query.filter(key.into_column().eq(value));
    }
    let backend = db.get_database_backend();
    if backend != DbBackend::Sqlite {
        query = query.lock_exclusive();
    }
    if backend == DbBackend::Postgres {
        let row = query.one(db).await?;
        return Ok(BeforeImage { row, head: None });
    }
    let query = query.column_as(
        chain::head_subquery(backend, entity_type, object_id),
        HEAD_ALIAS,
    );
    let Some(result) = db.query_one_raw(query.build(backend)).await? else {
        return Ok(BeforeImage {
            row: None,
            head: None,
        });
    };
    let row = E::Model::from_query_result(&result, "")?;
    let head: Option<String> = result.try_get("", HEAD_ALIAS)?;
    Ok(BeforeImage {
        row: Some(row),
        head: Some(head),
    })
}

fn pk_of<A>(am: &A) -> Result<sea_orm::sea_query::ValueTuple, Error>
where
    A: ActiveModelTrait,
    ModelOf<A>: Auditable,
{
    am.get_primary_key_value()
        .ok_or_else(|| Error::MissingPrimaryKey {
            entity_type: <ModelOf<A> as Auditable>::entity_type().to_owned(),
        })
}

/// Fails before the audited write runs when its log row would break a limit (see `limits`):
/// afterwards, outside a transaction, the write would already have committed without its row.
fn check_limits(entity_type: &str, object_id: Option<&str>) -> Result<(), Error> {
    limits::check_key("entity_type", entity_type)?;
    if let Some(id) = object_id {
        limits::check_key("object_id", id)?;
    }
    AuditContext::check_current()
}

/// Call from `ActiveModelBehavior::before_save`, last (after your own changes to the model):
/// on update, remembers the row as stored so `after_save` can diff it.
///
/// ```ignore
/// async fn before_save<C: ConnectionTrait>(self, db: &C, insert: bool) -> Result<Self, DbErr> {
///     sea_orm_audit::before_save(self, db, insert).await
/// }
/// ```
pub async fn before_save<A, C>(am: A, db: &C, insert: bool) -> Result<A, DbErr>
where
    A: ActiveModelTrait + Send,
    ModelOf<A>: Auditable,
    C: ConnectionTrait,
{
    strict::expect_one(A::Entity::default().table_name());
    if capture_db::in_database::<ModelOf<A>>() {
        capture_db::before_write(db).await?;
        return Ok(am);
    }
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    if insert {
        // An auto-increment key is not known yet (and always fits); a key set by the caller is.
        let id = am.get_primary_key_value().map(object_id);
        check_limits(entity_type, id.as_deref())?;
        return Ok(am);
    }
    let pk = pk_of(&am)?;
    let key = (Scope::current(), entity_type, object_id(pk.clone()));
    check_limits(entity_type, Some(&key.2))?;
    let any_set = <A::Entity as EntityTrait>::Column::iter().any(|c| am.get(c).is_set());
    if !any_set {
        put(key, Pending::Unchanged);
        return Ok(am);
    }
    let before = fetch_before::<A::Entity, C>(db, pk, entity_type, &key.2)
        .await
        .map_err(|e| Error::db(format!("reading {entity_type} {} before update", key.2), e))?;
    let pending = match before.row {
        Some(row) => Pending::Before(snapshot(&row), before.head),
        None => Pending::Absent,
    };
    put(key, pending);
    Ok(am)
}

/// Call from `ActiveModelBehavior::after_save`: logs the insert (all audited fields) or the
/// update (the fields that changed), on the same connection or transaction as the write.
pub async fn after_save<M, C>(model: M, db: &C, insert: bool) -> Result<M, DbErr>
where
    M: Auditable,
    C: ConnectionTrait,
{
    strict::done(<M::Entity as Default>::default().table_name());
    if capture_db::in_database::<M>() {
        capture_db::after_write(db).await?;
        return Ok(model);
    }
    let entity_type = M::entity_type();
    let id = model.audit_object_id();
    let after = snapshot(&model);
    let (action, old, head) = if insert {
        (Action::Create, Map::new(), None)
    } else {
        match take(&(Scope::current(), entity_type, id.clone())) {
            Some(Pending::Before(old, head)) => (Action::Update, old, head),
            Some(Pending::Unchanged) if !M::LOG_UNCHANGED => return Ok(model),
            Some(Pending::Unchanged) => (Action::Update, after.clone(), None),
            // The update matched no row; SeaORM reports that itself.
            Some(Pending::Absent) => return Ok(model),
            None => {
                return Err(Error::MissingSnapshot {
                    action: "update",
                    entity_type: entity_type.to_owned(),
                    object_id: id,
                }
                .into());
            }
        }
    };
    if let Some(mut entry) = change_entry::<M>(action, id, &old, &after) {
        entry.known_head = head;
        store::write(db, entry).await?;
    }
    Ok(model)
}

/// The log entry for one change of an `M` row, or `None` for an update that changed nothing
/// (unless the entity logs unchanged updates).
pub(crate) fn change_entry<M: Auditable>(
    action: Action,
    object_id: String,
    old: &Map<String, Json>,
    new: &Map<String, Json>,
) -> Option<NewEntry> {
    // The database's triggers log this entity (`bulk::*` come here too).
    if capture_db::in_database::<M>() {
        return None;
    }
    let mut changes = diff_maps(old, new, &M::excluded());
    if action == Action::Update && changes.is_empty() && !M::LOG_UNCHANGED {
        return None;
    }
    changes.mask(&M::masked());
    let mut entry = NewEntry::new(M::entity_type(), object_id, action.clone());
    entry.starts_chain = action == Action::Create;
    entry.changes = Some(changes.into_json());
    Some(entry)
}

/// Call from `ActiveModelBehavior::before_delete`: remembers the full row as stored (even when
/// the active model carries only the primary key).
pub async fn before_delete<A, C>(am: A, db: &C) -> Result<A, DbErr>
where
    A: ActiveModelTrait + Send,
    ModelOf<A>: Auditable,
    C: ConnectionTrait,
{
    strict::expect_one(A::Entity::default().table_name());
    if capture_db::in_database::<ModelOf<A>>() {
        capture_db::before_write(db).await?;
        return Ok(am);
    }
    let pk = pk_of(&am)?;
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    let key = (Scope::current(), entity_type, object_id(pk.clone()));
    check_limits(entity_type, Some(&key.2))?;
    let before = fetch_before::<A::Entity, C>(db, pk, entity_type, &key.2)
        .await
        .map_err(|e| Error::db(format!("reading {entity_type} {} before delete", key.2), e))?;
    let pending = match before.row {
        Some(row) => Pending::Before(snapshot(&row), before.head),
        None => Pending::Absent,
    };
    put(key, pending);
    Ok(am)
}

/// Call from `ActiveModelBehavior::after_delete`: logs the deleted row (all audited fields as
/// `old_value`). A delete that matched no row logs nothing.
pub async fn after_delete<A, C>(am: A, db: &C) -> Result<A, DbErr>
where
    A: ActiveModelTrait + Send,
    ModelOf<A>: Auditable,
    C: ConnectionTrait,
{
    strict::done(A::Entity::default().table_name());
    if capture_db::in_database::<ModelOf<A>>() {
        capture_db::after_write(db).await?;
        return Ok(am);
    }
    let pk = pk_of(&am)?;
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    let id = object_id(pk);
    let (old, head) = match take(&(Scope::current(), entity_type, id.clone())) {
        Some(Pending::Before(old, head)) => (old, head),
        Some(Pending::Absent | Pending::Unchanged) => return Ok(am),
        None => {
            return Err(Error::MissingSnapshot {
                action: "delete",
                entity_type: entity_type.to_owned(),
                object_id: id,
            }
            .into());
        }
    };
    if let Some(mut entry) = change_entry::<ModelOf<A>>(Action::Delete, id, &old, &Map::new()) {
        entry.known_head = head;
        store::write(db, entry).await?;
    }
    Ok(am)
}

/// Writes the whole `impl ActiveModelBehavior for ActiveModel` for an entity with no hooks of
/// its own. Use it in the entity's module; pass the type if it is not called `ActiveModel`.
///
/// Entities that already have hooks call [`before_save`], [`after_save`], [`before_delete`] and
/// [`after_delete`](crate::after_delete) from them instead, one line each.
#[macro_export]
macro_rules! impl_audited_behavior {
    () => {
        $crate::impl_audited_behavior!(ActiveModel);
    };
    ($active_model:ty) => {
        #[$crate::__private::async_trait::async_trait]
        impl $crate::__private::ActiveModelBehavior for $active_model {
            async fn before_save<C>(
                self,
                db: &C,
                insert: bool,
            ) -> ::std::result::Result<Self, $crate::__private::DbErr>
            where
                C: $crate::__private::ConnectionTrait,
            {
                $crate::before_save(self, db, insert).await
            }

            async fn after_save<C>(
                model: <<Self as $crate::__private::ActiveModelTrait>::Entity as $crate::__private::EntityTrait>::Model,
                db: &C,
                insert: bool,
            ) -> ::std::result::Result<
                <<Self as $crate::__private::ActiveModelTrait>::Entity as $crate::__private::EntityTrait>::Model,
                $crate::__private::DbErr,
            >
            where
                C: $crate::__private::ConnectionTrait,
            {
                $crate::after_save(model, db, insert).await
            }

            async fn before_delete<C>(
                self,
                db: &C,
            ) -> ::std::result::Result<Self, $crate::__private::DbErr>
            where
                C: $crate::__private::ConnectionTrait,
            {
                $crate::before_delete(self, db).await
            }

            async fn after_delete<C>(
                self,
                db: &C,
            ) -> ::std::result::Result<Self, $crate::__private::DbErr>
            where
                C: $crate::__private::ConnectionTrait,
            {
                $crate::after_delete(self, db).await
            }
        }
    };
}
