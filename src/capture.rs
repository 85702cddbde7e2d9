//! The hook helpers: capture the row before and after each write and log the diff.
//!
//! `after_save` receives only the new model, so `before_save` hands the old row over through a
//! small in-memory table keyed by (current task, entity type, object id). The key includes the
//! tokio task (or, outside tokio tasks, the thread), so concurrent writers never see each other's
//! snapshots. Two writes of one object in one task (joined futures) would share a key: the
//! second `before_*` hook waits until the first write has logged (see [`IN_FLIGHT_WAIT`] and
//! `Claim::acquire`), so each `after_*` hook takes its own snapshot. A write that fails after
//! `before_save` leaves its snapshot behind; it is replaced by the next audited write of the
//! same object in the same task, never read by another task, and dropped after [`STALE_AFTER`]
//! once the table holds more than [`PURGE_ABOVE`] entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityName,
    EntityTrait, FromQueryResult, IdenStatic, Iterable, PrimaryKeyToColumn, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Value,
};
use serde_json::{Map, Value as Json};
use tokio::sync::Notify;

use crate::Action;
use crate::audit_log;
use crate::auditable::{Auditable, object_id, snapshot};
use crate::context::AuditContext;
use crate::diff::diff_maps;
use crate::error::Error;
use crate::limits;
use crate::store::{self, NewEntry};
use crate::strict;
use crate::value::to_json;

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;

/// Snapshots older than this are considered abandoned by failed writes.
pub const STALE_AFTER: Duration = Duration::from_secs(600);
/// The snapshot table is swept for abandoned entries only above this size.
pub const PURGE_ABOVE: usize = 1024;
/// How long a `before_*` hook waits for each step (its read, its write, its log row) of
/// another audited write of the same object in the same task that it saw running (futures
/// joined with `tokio::join!`). A step that takes longer fails this write with
/// [`Error::WriteInFlight`], before it runs.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

/// The `data` key of an entry whose before-image read found no row although the write then
/// changed one (another writer inserted it in between): its `old_value` is unknown, not empty.
pub(crate) const BEFORE_IMAGE: &str = "before_image";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

impl Scope {
    pub(crate) fn current() -> Self {
        match tokio::task::try_id() {
            Some(id) => Scope::Task(id),
            None => Scope::Thread(std::thread::current().id()),
        }
    }
}

type Key = (Scope, &'static str, String);

#[derive(Debug)]
enum Pending {
    /// The `before_*` hook is still reading: its write has not run yet.
    Reading,
    /// The `after_*` hook took the snapshot and is writing the log row.
    Logging,
    /// Update with nothing `Set`: nothing can change.
    Unchanged,
    /// Update or delete of a stored row.
    Before {
        /// The row as stored before the write.
        row: Map<String, Json>,
        /// The chain head, if it was read with the row.
        head: Option<Option<String>>,
        /// The columns the update sets, with the values the application gave them.
        written: Map<String, Json>,
    },
    /// Update or delete of a row the before-image read did not find.
    Absent {
        /// As in `Before`.
        written: Map<String, Json>,
        /// Delete: the log's newest entry about the object, read then, was not a delete.
        logged_as_existing: bool,
    },
}

struct Slot {
    at: Instant,
    ticket: u64,
    pending: Pending,
}

static PENDING: LazyLock<Mutex<HashMap<Key, Slot>>> = LazyLock::new(|| Mutex::new(HashMap::new()));
/// Woken whenever a slot is taken or given up, for hooks waiting on a write of the same key.
static RELEASED: Notify = Notify::const_new();
static TICKETS: AtomicU64 = AtomicU64::new(0);

fn table() -> MutexGuard<'static, HashMap<Key, Slot>> {
    // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

fn in_flight(key: &Key) -> Error {
    Error::WriteInFlight {
        entity_type: key.1.to_owned(),
        object_id: key.2.clone(),
    }
}

/// A `before_*` hook's hold on its key, from before its read until it leaves its snapshot.
/// Dropped without [`Claim::leave`] (the read failed, or the future was dropped), it frees the
/// key.
struct Claim {
    key: Key,
    ticket: u64,
    left: bool,
}

impl Claim {
    /// Claims `key` once no other write of it is in flight in this task.
    ///
    /// A slot whose hook is running (`Reading`, `Logging`) is a write in flight for certain:
    /// its `Claim` or `Release` frees the slot however the hook ends. A snapshot between the
    /// two hooks is either a write in flight (joined futures) or the leftover of a write that
    /// failed; nothing tells them apart but having seen the same write earlier while one of
    /// its hooks ran. So the hook waits for a write it saw running, for at most
    /// [`IN_FLIGHT_WAIT`] from the slot's last change, and takes any other snapshot as a
    /// leftover and replaces it at once: a retry after a failed write does not wait (it may
    /// hold locks in its transaction). Outside a tokio runtime, with no timer at hand, it
    /// never waits.
    async fn acquire(key: Key) -> Result<Claim, Error> {
        let can_wait = tokio::runtime::Handle::try_current().is_ok();
        // The ticket of the write of this key seen with a hook running.
        let mut seen_running = None;
        loop {
            let released = RELEASED.notified();
            tokio::pin!(released);
            // Registered before the table is read, so a release in between is not missed.
            released.as_mut().enable();
            let claimed = {
                let mut map = table();
                let now = Instant::now();
                if map.len() > PURGE_ABOVE {
                    map.retain(|_, s| now.duration_since(s.at) < STALE_AFTER);
                }
                let busy_until = map.get(&key).and_then(|slot| {
                    let running = matches!(slot.pending, Pending::Reading | Pending::Logging);
                    if running {
                        seen_running = Some(slot.ticket);
                    }
                    let in_flight_for_sure = running || seen_running == Some(slot.ticket);
                    let deadline = slot.at + IN_FLIGHT_WAIT;
                    if !in_flight_for_sure || now.duration_since(slot.at) >= STALE_AFTER {
                        None // left behind by a write that failed
                    } else if can_wait && now < deadline {
                        Some(Ok(deadline))
                    } else {
                        Some(Err(in_flight(&key)))
                    }
                });
                match busy_until {
                    Some(Ok(deadline)) => Err(deadline),
                    Some(Err(e)) => return Err(e),
                    None => {
                        let ticket = TICKETS.fetch_add(1, Ordering::Relaxed);
                        let slot = Slot {
                            at: now,
                            ticket,
                            pending: Pending::Reading,
                        };
                        map.insert(key.clone(), slot);
                        Ok(Claim {
                            key: key.clone(),
                            ticket,
                            left: false,
                        })
                    }
                }
            };
            match claimed {
                Ok(claim) => {
                    if can_wait {
                        // Lets a future joined with this one run up to its own claim while this
                        // one is `Reading`, even when our read would not yield: it then sees
                        // this write running.
                        tokio::task::yield_now().await;
                    }
                    return Ok(claim);
                }
                Err(deadline) => {
                    let _ = tokio::time::timeout_at(deadline.into(), released).await;
                }
            }
        }
    }

    /// Leaves the snapshot for the `after_*` hook.
    fn leave(mut self, pending: Pending) -> Result<(), Error> {
        self.left = true;
        let mut map = table();
        let slot = map.get_mut(&self.key).filter(|s| s.ticket == self.ticket);
        let Some(slot) = slot else {
            // Taken over after STALE_AFTER: this write must not run on someone else's snapshot.
            return Err(in_flight(&self.key));
        };
        slot.at = Instant::now();
        slot.pending = pending;
        drop(map);
        RELEASED.notify_waiters();
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let mut map = table();
        if map.get(&self.key).is_some_and(|s| s.ticket == self.ticket) {
            map.remove(&self.key);
        }
        drop(map);
        RELEASED.notify_waiters();
    }
}

/// Frees a key once the `after_*` hook that took its snapshot has written the log row (or
/// failed): until then the next write of the object in this task waits, so that its chain head
/// read finds this entry.
struct Release {
    key: Key,
    ticket: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut map = table();
        if map.get(&self.key).is_some_and(|s| s.ticket == self.ticket) {
            map.remove(&self.key);
        }
        drop(map);
        RELEASED.notify_waiters();
    }
}

/// The snapshot a `before_*` hook left for `key`, if its read has finished, and the
/// [`Release`] that frees the key.
fn take(key: &Key) -> Option<(Pending, Release)> {
    let mut map = table();
    let slot = map
        .get_mut(key)
        .filter(|s| !matches!(s.pending, Pending::Reading | Pending::Logging))?;
    slot.at = Instant::now();
    let pending = std::mem::replace(&mut slot.pending, Pending::Logging);
    let release = Release {
        key: key.clone(),
        ticket: slot.ticket,
    };
    Some((pending, release))
}

/// How many before-snapshots are waiting for their `after_*` hook (diagnostics and tests).
pub fn pending_snapshots() -> usize {
    table().len()
}

/// How many of those belong to the current task (or thread).
pub fn pending_snapshots_for_current_task() -> usize {
    let scope = Scope::current();
    table().keys().filter(|(s, _, _)| *s == scope).count()
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
///   [`store::mysql_head_sql`]), which reads the newest committed entry, not the
///   transaction's snapshot. It runs when the select list is evaluated, after the row was
///   read, so after the row lock was granted (checked on MariaDB 10.11: a second writer
///   waits for the row, then reads the first writer's committed entry): the previous writer
///   of the object has committed its entry by then. It locks only when a plain read finds the
///   object has entries: a locking read that finds none locks the gap where they would be,
///   and with it the next entry of whichever object sorts just before, so unrelated writers
///   would wait for this transaction. Outside a transaction each statement commits on its
///   own, as before: two concurrent writers of one object can fork its chain (reported by
///   `verify`), but cannot deadlock, since no statement both reads the head and inserts after
///   it. Reading the head in the log INSERT (as on PostgreSQL) would deadlock exactly there:
///   two such INSERTs both take shared locks on the head, then each waits for the other's gap
///   lock to insert after it (8 tasks x 50 updates of one row outside transactions lost 15-38
///   log rows to deadlock errors in an experiment on MariaDB when this design was chosen).
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
        store::head_subquery(backend, entity_type, object_id),
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

/// Whether the row with this primary key exists (a plain read).
async fn exists<E, C>(db: &C, pk: impl IntoIterator<Item = Value>) -> Result<bool, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let mut query = E::find();
    for (key, value) in E::PrimaryKey::iter().zip(pk) {
        query = query.filter(key.into_column().eq(value));
    }
    Ok(query.one(db).await?.is_some())
}

/// Whether the log's newest entry about the object says it exists (is not a delete).
async fn logged_as_existing<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<bool, DbErr> {
    let newest: Option<String> = audit_log::Entity::find()
        .select_only()
        .column(audit_log::Column::Action)
        .filter(audit_log::Column::EntityType.eq(entity_type))
        .filter(audit_log::Column::ObjectId.eq(object_id))
        .order_by_desc(audit_log::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    Ok(newest.is_some_and(|action| action != Action::Delete.as_str()))
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

/// The columns an update sets (`Set`), with the values the application gave them, as
/// `backend` stores them where that is known for every value of the type: MySQL keeps no UTC
/// offset (a timestamp reads back in UTC).
fn written_values<A: ActiveModelTrait>(am: &A, backend: DbBackend) -> Map<String, Json> {
    <A::Entity as EntityTrait>::Column::iter()
        .filter_map(|col| match am.get(col) {
            ActiveValue::Set(value) => Some((col.as_str().to_owned(), stored(value, backend))),
            _ => None,
        })
        .collect()
}

fn stored(value: Value, backend: DbBackend) -> Json {
    if backend != DbBackend::MySql {
        return to_json(&value);
    }
    let value = match value {
        Value::ChronoDateTimeWithTimeZone(Some(v)) => {
            Value::ChronoDateTimeWithTimeZone(Some(v.with_timezone(&chrono::Utc).fixed_offset()))
        }
        Value::TimeDateTimeWithTimeZone(Some(v)) => {
            Value::TimeDateTimeWithTimeZone(Some(v.to_offset(time::UtcOffset::UTC)))
        }
        other => other,
    };
    to_json(&value)
}

/// The row after an update: `before` with every column the update set replaced by its new
/// value, and no other column changed. The new value is the one the database returned with
/// the write (`RETURNING`) where the connection supports it, else (MySQL) the value written:
/// SeaORM re-reads the row after its UPDATE there, and outside a transaction another writer
/// may have written in between, so the re-read is never used.
fn after_image(
    before: &Map<String, Json>,
    written: Map<String, Json>,
    returned: &Map<String, Json>,
    returning: bool,
) -> Map<String, Json> {
    let mut row = before.clone();
    for (column, value) in written {
        let value = match returned.get(&column) {
            Some(returned) if returning => returned.clone(),
            _ => value,
        };
        row.insert(column, value);
    }
    row
}

/// Call from `ActiveModelBehavior::before_save`, last (after your own changes to the model):
/// on update, remembers the row as stored so `after_save` can diff it.
///
/// ```ignore
/// async fn before_save<C: ConnectionTrait>(self, db: &C, insert: bool) -> Result<Self, DbErr> {
///     sea_orm_audit::before_save(self, db, insert).await
/// }
/// ```
///
/// Fails with [`Error::WriteInFlight`] (before the write) when another update or delete of
/// the same object runs in the same task and does not finish within [`IN_FLIGHT_WAIT`].
pub async fn before_save<A, C>(am: A, db: &C, insert: bool) -> Result<A, DbErr>
where
    A: ActiveModelTrait + Send,
    ModelOf<A>: Auditable,
    C: ConnectionTrait,
{
    strict::expect_one(A::Entity::default().table_name());
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    if insert {
        // An auto-increment key is not known yet (and always fits); a key set by the caller is.
        let id = am.get_primary_key_value().map(object_id);
        check_limits(entity_type, id.as_deref())?;
        return Ok(am);
    }
    let pk = pk_of(&am)?;
    let id = object_id(pk.clone());
    check_limits(entity_type, Some(&id))?;
    let claim = Claim::acquire((Scope::current(), entity_type, id.clone())).await?;
    let written = written_values(&am, db.get_database_backend());
    if written.is_empty() {
        claim.leave(Pending::Unchanged)?;
        return Ok(am);
    }
    let before = fetch_before::<A::Entity, C>(db, pk, entity_type, &id)
        .await
        .map_err(|e| Error::db(format!("reading {entity_type} {id} before update"), e))?;
    let pending = match before.row {
        Some(row) => Pending::Before {
            row: snapshot(&row),
            head: before.head,
            written,
        },
        None => Pending::Absent {
            written,
            logged_as_existing: false,
        },
    };
    claim.leave(pending)?;
    Ok(am)
}

/// Call from `ActiveModelBehavior::after_save`: logs the insert (all audited fields) or the
/// update (the fields it set that changed), on the same connection or transaction as the
/// write.
///
/// An update whose before-image read found no row (another writer inserted it between the
/// read and the write) is logged with an empty `old_value` and `"before_image": "absent"` in
/// its `data`: what it overwrote is unknown.
pub async fn after_save<M, C>(model: M, db: &C, insert: bool) -> Result<M, DbErr>
where
    M: Auditable,
    C: ConnectionTrait,
{
    strict::done(<M::Entity as Default>::default().table_name());
    let entity_type = M::entity_type();
    let id = model.audit_object_id();
    let returned = snapshot(&model);
    let returning = db.support_returning();
    let mut absent = false;
    let _release;
    let (action, old, new, head) = if insert {
        (Action::Create, Map::new(), returned, None)
    } else {
        let (pending, release) = take(&(Scope::current(), entity_type, id.clone())).unzip();
        _release = release;
        match pending {
            Some(Pending::Before { row, head, written }) => {
                let new = after_image(&row, written, &returned, returning);
                (Action::Update, row, new, head)
            }
            Some(Pending::Unchanged) if !M::LOG_UNCHANGED => return Ok(model),
            Some(Pending::Unchanged) => (Action::Update, returned.clone(), returned, None),
            Some(Pending::Absent { written, .. }) => {
                // SeaORM fails an update that matched no row: this one matched a row the
                // before-image did not see.
                absent = true;
                let new = after_image(&Map::new(), written, &returned, returning);
                (Action::Update, Map::new(), new, None)
            }
            Some(Pending::Reading | Pending::Logging) | None => {
                return Err(Error::MissingSnapshot {
                    action: "update",
                    entity_type: entity_type.to_owned(),
                    object_id: id,
                }
                .into());
            }
        }
    };
    if let Some(mut entry) = change_entry::<M>(action, id, &old, &new) {
        entry.known_head = head;
        if absent {
            entry.data.insert(BEFORE_IMAGE.into(), "absent".into());
        }
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
///
/// Fails with [`Error::WriteInFlight`] as [`before_save`] does.
pub async fn before_delete<A, C>(am: A, db: &C) -> Result<A, DbErr>
where
    A: ActiveModelTrait + Send,
    ModelOf<A>: Auditable,
    C: ConnectionTrait,
{
    strict::expect_one(A::Entity::default().table_name());
    let pk = pk_of(&am)?;
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    let id = object_id(pk.clone());
    check_limits(entity_type, Some(&id))?;
    let claim = Claim::acquire((Scope::current(), entity_type, id.clone())).await?;
    let context = |e| Error::db(format!("reading {entity_type} {id} before delete"), e);
    let mut before = fetch_before::<A::Entity, C>(db, pk.clone(), entity_type, &id)
        .await
        .map_err(context)?;
    let mut logged = false;
    if before.row.is_none() {
        // What the log says, read before the row is read again: a row inserted and logged
        // before the log read is found by the second read, so "absent" and the log agree
        // (`after_delete` relies on it).
        logged = logged_as_existing(db, entity_type, &id)
            .await
            .map_err(context)?;
        before = fetch_before::<A::Entity, C>(db, pk, entity_type, &id)
            .await
            .map_err(context)?;
    }
    let pending = match before.row {
        Some(row) => Pending::Before {
            row: snapshot(&row),
            head: before.head,
            written: Map::new(),
        },
        None => Pending::Absent {
            written: Map::new(),
            logged_as_existing: logged,
        },
    };
    claim.leave(pending)?;
    Ok(am)
}

/// Call from `ActiveModelBehavior::after_delete`: logs the deleted row (all audited fields as
/// `old_value`). A delete that matched no row logs nothing.
///
/// SeaORM does not say whether the DELETE matched. When the before-image read found no row,
/// the log and the table tell: if the log's newest entry about the object said "deleted" (or
/// there was none) before the DELETE, says "exists" after it, and the row is not there, another
/// writer inserted the row in between and this DELETE removed it. That is logged with an empty
/// `old_value` and `"before_image": "absent"` in its `data`.
pub async fn after_delete<A, C>(am: A, db: &C) -> Result<A, DbErr>
where
    A: ActiveModelTrait + Send,
    ModelOf<A>: Auditable,
    C: ConnectionTrait,
{
    strict::done(A::Entity::default().table_name());
    let pk = pk_of(&am)?;
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    let id = object_id(pk.clone());
    let (pending, _release) = take(&(Scope::current(), entity_type, id.clone())).unzip();
    let (old, head, absent) = match pending {
        Some(Pending::Before { row, head, .. }) => (row, head, false),
        Some(Pending::Absent {
            logged_as_existing: false,
            ..
        }) => {
            let context = |e| Error::db(format!("reading {entity_type} {id} after delete"), e);
            // Logged as existing now, yet gone: inserted after the before-image read and
            // removed by this DELETE. A row inserted after the DELETE is still there.
            let appeared = logged_as_existing(db, entity_type, &id)
                .await
                .map_err(context)?;
            if !appeared || exists::<A::Entity, C>(db, pk).await.map_err(context)? {
                return Ok(am);
            }
            (Map::new(), None, true)
        }
        Some(Pending::Absent { .. } | Pending::Unchanged) => return Ok(am),
        Some(Pending::Reading | Pending::Logging) | None => {
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
        if absent {
            entry.data.insert(BEFORE_IMAGE.into(), "absent".into());
        }
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
