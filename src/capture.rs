//! The hook helpers: capture the row before and after each write and log the diff.
//!
//! `after_save` receives only the new model, so `before_save` hands the old row over through
//! the in-memory table of `pending`, keyed by (current task, entity type, object id).

use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityName,
    EntityTrait, FromQueryResult, IdenStatic, Iterable, PrimaryKeyToColumn, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Value,
};
use serde_json::{Map, Value as Json};

use crate::Action;
use crate::audit_log;
use crate::auditable::{Auditable, object_id, snapshot};
use crate::capture_db;
use crate::chain;
use crate::context::AuditContext;
use crate::diff::diff_maps;
use crate::error::Error;
use crate::limits;
use crate::pending::{Claim, Pending, take};
use crate::scope::Scope;
use crate::store::{self, NewEntry};
use crate::strict;
use crate::value::to_json;

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;

/// The `data` key of an entry whose before-image read found no row although the write then
/// changed one (another writer inserted it in between): its `old_value` is unknown, not empty.
pub(crate) const BEFORE_IMAGE: &str = "before_image";

/// Column alias of the chain head read along with the before-image (SQLite; MySQL: its id).
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
/// - **MySQL/MariaDB**: the subquery reads the id of the object's chain head (a plain read
///   of `audit_chain_head`, made when the row is read). When there is one, a second statement
///   reads the head by locking that entry and the head row by their keys; when there is none
///   in the snapshot, the head row is claimed and read (see [`chain::mysql_current_head`]
///   and the functions it calls). Either way the head is read as
///   committed, not as the transaction's snapshot, after the row lock was granted (checked on
///   MariaDB 10.11: a second writer waits for the row, then reads the first writer's committed
///   entry): the previous writer of the object has committed its entry by then. Only those
///   rows are locked, so writers of other objects never wait for them. Outside a transaction
///   each statement commits on its own, as before: two concurrent writers of one object can
///   fork its chain (reported by `verify`), but cannot deadlock, since no statement both reads
///   the head and inserts after it. Reading the head in the log INSERT (as on PostgreSQL)
///   would deadlock exactly there: two such INSERTs both take shared locks on the head, then
///   each waits for the other's gap lock to insert after it (BENCHMARKS.md, "MySQL update and
///   delete", records the entries such deadlocks lost).
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
    let head = if backend == DbBackend::MySql {
        let Some(key) = E::PrimaryKey::iter().next() else {
            return Err(DbErr::Custom(format!("{entity_type}: no primary key")));
        };
        chain::mysql_head_id_subquery(entity_type, object_id, key.into_column().into_expr())
    } else {
        chain::head_subquery(backend, entity_type, object_id)
    };
    let query = query.column_as(head, HEAD_ALIAS);
    let Some(result) = db.query_one_raw(query.build(backend)).await? else {
        return Ok(BeforeImage {
            row: None,
            head: None,
        });
    };
    let row = E::Model::from_query_result(&result, "")?;
    let head: Option<String> = if backend == DbBackend::MySql {
        // The id of the head as the snapshot has it; the head is then read as committed.
        let snapshot_head_id = result.try_get::<Option<i64>>("", HEAD_ALIAS)?;
        chain::mysql_current_head(db, entity_type, object_id, snapshot_head_id).await?
    } else {
        result.try_get("", HEAD_ALIAS)?
    };
    Ok(BeforeImage {
        row: Some(row),
        head: Some(head),
    })
}

/// The log's newest entry about the object (its id, and whether it says the object exists,
/// i.e. is not a delete), and whether the row with this primary key exists, read in one
/// statement so that all come from one snapshot (under PostgreSQL's READ COMMITTED, two
/// statements could see a row inserted and deleted again in between).
async fn newest_and_present<E, C>(
    db: &C,
    entity_type: &str,
    object_id: &str,
    pk: impl IntoIterator<Item = Value>,
) -> Result<(Option<(i64, bool)>, bool), DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let mut row = E::find().select_only().expr(Expr::val(1));
    for (key, value) in E::PrimaryKey::iter().zip(pk) {
        row = row.filter(key.into_column().eq(value));
    }
    let newest = |column| {
        newest_of(entity_type, object_id, column)
            .limit(1)
            .into_query()
    };
    let query = Query::select()
        .expr_as(
            Expr::SubQuery(None, Box::new(newest(audit_log::Column::Id).into())),
            Alias::new("newest_id"),
        )
        .expr_as(
            Expr::SubQuery(None, Box::new(newest(audit_log::Column::Action).into())),
            Alias::new("newest_action"),
        )
        .expr_as(
            // Text, not a number: integer widths decode differently per backend.
            Expr::case(Expr::exists(row.into_query()), Expr::val("present")),
            Alias::new("present"),
        )
        .to_owned();
    let backend = db.get_database_backend();
    let Some(result) = db.query_one_raw(backend.build(&query)).await? else {
        return Ok((None, false));
    };
    let id: Option<i64> = result.try_get("", "newest_id")?;
    let action: Option<String> = result.try_get("", "newest_action")?;
    let present: Option<String> = result.try_get("", "present")?;
    let newest = id
        .zip(action)
        .map(|(id, action)| (id, action != Action::Delete.as_str()));
    Ok((newest, present.is_some()))
}

/// `column` of the log's entries about the object, newest first.
fn newest_of(
    entity_type: &str,
    object_id: &str,
    column: audit_log::Column,
) -> sea_orm::Select<audit_log::Entity> {
    audit_log::Entity::find()
        .select_only()
        .column(column)
        .filter(audit_log::Column::EntityType.eq(entity_type))
        .filter(audit_log::Column::ObjectId.eq(object_id))
        .order_by_desc(audit_log::Column::Id)
}

/// The id of the log's newest entry about the object, if it has one.
async fn newest_entry<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Option<i64>, DbErr> {
    newest_of(entity_type, object_id, audit_log::Column::Id)
        .into_tuple()
        .one(db)
        .await
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

/// Refuses, before the write, a JSON value the write sets that SeaORM could not read back:
/// its read of the row after an insert or update would fail after the write, before the
/// entry (outside a transaction the row stayed with no entry).
/// Only JSON columns' values are read (`get` clones a value).
fn check_readable_json<A: ActiveModelTrait>(am: &A) -> Result<(), Error> {
    use sea_orm::sea_query::ColumnType;
    for col in <A::Entity as EntityTrait>::Column::iter() {
        if !matches!(
            col.def().get_column_type(),
            ColumnType::Json | ColumnType::JsonBinary
        ) {
            continue;
        }
        if let ActiveValue::Set(Value::Json(Some(value))) = am.get(col) {
            limits::check_readable(col.as_str(), &value)?;
        }
    }
    Ok(())
}

/// The columns an update sets (`Set`), with the values the application gave them, as
/// `backend` stores them where that is known for every value of the type: MySQL keeps no UTC
/// offset (a timestamp reads back in UTC), and a decimal reads back with its column's scale.
fn written_values<A: ActiveModelTrait>(am: &A, backend: DbBackend) -> Map<String, Json> {
    <A::Entity as EntityTrait>::Column::iter()
        .filter_map(|col| match am.get(col) {
            ActiveValue::Set(value) => {
                let ty = col.def().get_column_type().clone();
                Some((col.as_str().to_owned(), stored(value, &ty, backend)))
            }
            _ => None,
        })
        .collect()
}

fn stored(value: Value, ty: &sea_orm::sea_query::ColumnType, backend: DbBackend) -> Json {
    use sea_orm::sea_query::ColumnType;
    if backend != DbBackend::MySql {
        return to_json(&value);
    }
    let value = match value {
        // MySQL's DECIMAL has a fixed scale (0 unless declared, as SeaORM's `decimal`) and
        // rounds half away from zero to it, as `rescale` does (tests/db_capture_types.rs).
        Value::Decimal(Some(mut v)) => {
            match ty {
                ColumnType::Decimal(Some((_, s))) | ColumnType::Money(Some((_, s))) => {
                    v.rescale(*s);
                }
                ColumnType::Decimal(None) | ColumnType::Money(None) => v.rescale(0),
                // A custom column type: its scale is not known here.
                _ => {}
            }
            // MySQL has no negative zero.
            if v.is_zero() {
                v.set_sign_positive(true);
            }
            Value::Decimal(Some(v))
        }
        Value::ChronoDateTimeWithTimeZone(Some(v)) => {
            Value::ChronoDateTimeWithTimeZone(Some(v.with_timezone(&chrono::Utc).fixed_offset()))
        }
        Value::TimeDateTimeWithTimeZone(Some(v)) => {
            Value::TimeDateTimeWithTimeZone(Some(v.to_offset(time::UtcOffset::UTC)))
        }
        // MySQL reads a CHAR value back without its trailing spaces (unless the server runs
        // with PAD_CHAR_TO_FULL_LENGTH, deprecated), and its triggers see it so.
        Value::String(Some(mut text)) if matches!(ty, ColumnType::Char(_)) => {
            text.truncate(text.trim_end_matches(' ').len());
            Value::String(Some(text))
        }
        // BINARY(n) stores exactly n bytes: a shorter value padded with zero bytes, a longer
        // one (refused in a strict sql_mode) cut; it reads back and shows its triggers that.
        Value::Bytes(Some(mut bytes)) if let ColumnType::Binary(width) = ty => {
            bytes.resize(*width as usize, 0);
            Value::Bytes(Some(bytes))
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
/// the same object runs in the same task and does not finish within [`IN_FLIGHT_WAIT`](crate::IN_FLIGHT_WAIT).
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
    check_readable_json(&am)?;
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
            newest_logged: None,
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
    if capture_db::in_database::<M>() {
        capture_db::after_write::<M, _>(db).await?;
        return Ok(model);
    }
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
///
/// Fails with [`Error::WriteInFlight`] as [`before_save`] does.
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
    let id = object_id(pk.clone());
    check_limits(entity_type, Some(&id))?;
    let claim = Claim::acquire((Scope::current(), entity_type, id.clone())).await?;
    let context = |e| Error::db(format!("reading {entity_type} {id} before delete"), e);
    let mut before = fetch_before::<A::Entity, C>(db, pk.clone(), entity_type, &id)
        .await
        .map_err(context)?;
    let mut newest_logged = None;
    if before.row.is_none() {
        // The log's newest entry, read before the row is read again: any entry of a row
        // inserted after the second read is newer (`after_delete` relies on it).
        newest_logged = newest_entry(db, entity_type, &id).await.map_err(context)?;
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
            newest_logged,
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
    if capture_db::in_database::<ModelOf<A>>() {
        capture_db::after_write::<ModelOf<A>, _>(db).await?;
        return Ok(am);
    }
    let pk = pk_of(&am)?;
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    let id = object_id(pk.clone());
    let (pending, _release) = take(&(Scope::current(), entity_type, id.clone())).unzip();
    let (old, head, absent) = match pending {
        Some(Pending::Before { row, head, .. }) => (row, head, false),
        Some(Pending::Absent { newest_logged, .. }) => {
            let context = |e| Error::db(format!("reading {entity_type} {id} after delete"), e);
            // Logged as existing by an entry newer than the one read before, yet gone:
            // inserted after the before-image read and removed by this DELETE. A row inserted
            // after the DELETE is still there; one deleted by another writer has its delete
            // entry, newer still. (Comparing ids, not only "exists": between the log read
            // and the second row read another writer may delete the row, and a third insert
            // it again before this DELETE. CI saw 2 of 58 deletes unlogged that way.)
            let (newest, present) = newest_and_present::<A::Entity, C>(db, entity_type, &id, pk)
                .await
                .map_err(context)?;
            let inserted_since =
                matches!(newest, Some((entry, true)) if Some(entry) > newest_logged);
            if !inserted_since || present {
                return Ok(am);
            }
            (Map::new(), None, true)
        }
        Some(Pending::Unchanged) => return Ok(am),
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
