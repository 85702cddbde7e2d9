//! Point in time: an object's state at a time or after an entry, deleted objects, restore and
//! revert.
//!
//! States are rebuilt from the diffs, so they hold what the log holds: every audited column,
//! masked ones as `"***FILTERED***"`, excluded ones not at all. Restore and revert write
//! through the audited path (the entity's hooks), so they are logged like any other write.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IdenStatic, IntoActiveModel, Iterable, PrimaryKeyToColumn, QueryFilter, QuerySelect,
    TransactionTrait,
};
use serde_json::{Map, Value as Json};

use crate::auditable::Auditable;
use crate::diff::FILTERED;
use crate::entry::{Action, LogEntry, entries};
use crate::error::Error;
use crate::query::logs_for_id;
use crate::sql::finish;
use crate::{audit_log, value};

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;

/// An object's state: column name to value, as [`crate::value::to_json`] encodes them.
pub type State = Map<String, Json>;

/// Folds entries (oldest first) into the object's state; `None` if it does not exist after
/// them. Entries that record no change of the row (events) are skipped.
pub fn replay<'a>(entries: impl IntoIterator<Item = &'a LogEntry>) -> Option<State> {
    let mut state: Option<State> = None;
    for entry in entries {
        let Some(changes) = &entry.changes else {
            continue;
        };
        match entry.action {
            Action::Create => state = Some(changes.new_value.clone()),
            Action::Update => {
                // After pruning, history may start with an update: build from what it knows.
                let s = state.get_or_insert_with(Map::new);
                for (k, v) in &changes.new_value {
                    s.insert(k.clone(), v.clone());
                }
            }
            Action::Delete => state = None,
            _ => {}
        }
    }
    state
}

/// The object's state as of `at` (entries written at or before it).
pub async fn state_at<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
    at: DateTime<Utc>,
) -> Result<Option<State>, Error> {
    let mut entries = logs_for_id(db, entity_type, object_id).await?;
    entries.retain(|e| e.created_at <= at);
    entries.reverse();
    Ok(replay(&entries))
}

/// The object's state right after entry `entry_id` (which must be about this object).
pub async fn state_after<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
    entry_id: i64,
) -> Result<Option<State>, Error> {
    let mut entries = logs_for_id(db, entity_type, object_id).await?;
    if !entries.iter().any(|e| e.id == entry_id) {
        return Err(Error::EntryNotAbout {
            entry_id,
            expected: format!("{entity_type} {object_id}"),
            found: None,
        });
    }
    entries.retain(|e| e.id <= entry_id);
    entries.reverse();
    Ok(replay(&entries))
}

/// A deleted object, as [`deleted`] lists it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Deleted {
    /// Its canonical id.
    pub object_id: String,
    /// The delete entry.
    pub entry_id: i64,
    /// When it was deleted.
    pub deleted_at: DateTime<Utc>,
    /// Who deleted it.
    pub deleted_by: Option<String>,
    /// Its state when deleted.
    pub last_state: State,
}

/// The objects of `M`'s entity type whose latest change is a delete, newest deletion first.
///
/// Two queries per 1,000 deleted objects: the delete entries, and the newest change entry of
/// each of their objects (an object deleted and then re-created is not listed).
pub async fn deleted<M: Auditable, C: ConnectionTrait>(db: &C) -> Result<Vec<Deleted>, Error> {
    use audit_log::Column as Col;
    let entity_type = M::entity_type();
    // Read as the other readers read, so that a row that cannot be read is named.
    let deletes = entries(
        db,
        audit_log::Entity::find()
            .filter(Col::EntityType.eq(entity_type))
            .filter(Col::Action.eq(Action::Delete.as_str())),
    )
    .await?;
    let mut out = Vec::new();
    for chunk in deletes.chunks(crate::sql::KEYS_PER_STATEMENT) {
        let ids: Vec<&str> = chunk.iter().map(|r| r.object_id.as_str()).collect();
        let newest: Vec<(String, i64)> = audit_log::Entity::find()
            .select_only()
            .column(Col::ObjectId)
            .column_as(Col::Id.max(), "id")
            .filter(Col::EntityType.eq(entity_type))
            .filter(Col::ObjectId.is_in(ids))
            .filter(Col::Action.is_in(["create", "update", "delete"]))
            .group_by(Col::ObjectId)
            .into_tuple()
            .all(db)
            .await?;
        for row in chunk {
            if newest
                .iter()
                .any(|(o, id)| *o == row.object_id && *id == row.id)
            {
                out.push(Deleted {
                    object_id: row.object_id.clone(),
                    entry_id: row.id,
                    deleted_at: row.created_at,
                    deleted_by: row.actor.clone(),
                    last_state: row
                        .changes
                        .as_ref()
                        .map(|c| c.old_value.clone())
                        .unwrap_or_default(),
                });
            }
        }
    }
    out.sort_by_key(|d| std::cmp::Reverse(d.entry_id));
    Ok(out)
}

/// Sets one column from its logged JSON value.
fn set_json<A: ActiveModelTrait>(
    am: &mut A,
    col: <A::Entity as EntityTrait>::Column,
    json: &Json,
) -> Result<(), Error> {
    for candidate in value::candidates(json) {
        if am.try_set(col, candidate).is_ok() {
            return Ok(());
        }
    }
    Err(Error::ValueDoesNotFit {
        column: col.as_str(),
        value: json.to_string(),
    })
}

/// Builds an active model from a state; returns the columns it could not fill (masked, or
/// recorded as too deep).
fn from_state<A>(state: &State) -> Result<(A, Vec<&'static str>), Error>
where
    A: ActiveModelTrait,
    ModelOf<A>: Auditable,
{
    let mut am = A::default();
    let mut masked = Vec::new();
    for col in <A::Entity as EntityTrait>::Column::iter() {
        let name = col.as_str();
        match state.get(name) {
            None => {}
            Some(Json::String(s))
                if s == FILTERED && <ModelOf<A> as Auditable>::masked().contains(&name) =>
            {
                masked.push(name);
            }
            // Recorded as a marker (nested too deep): the value itself was never stored.
            Some(v) if crate::limits::is_too_deep(v) => masked.push(name),
            Some(v) => set_json(&mut am, col, v)?,
        }
    }
    Ok((am, masked))
}

/// Sets the primary key columns from a canonical object id.
fn set_key<A>(am: &mut A, object_id: &str) -> Result<(), Error>
where
    A: ActiveModelTrait,
    ModelOf<A>: Auditable,
{
    let cols: Vec<_> = <A::Entity as EntityTrait>::PrimaryKey::iter()
        .map(|k| k.into_column())
        .collect();
    let parts: Vec<Json> = if cols.len() == 1 {
        // Integers are stored in decimal; anything else is the text itself.
        match object_id.parse::<i64>() {
            Ok(n) => vec![Json::from(n), Json::String(object_id.to_owned())],
            Err(_) => vec![Json::String(object_id.to_owned())],
        }
    } else {
        serde_json::from_str::<Vec<Json>>(object_id).map_err(|e| Error::BadObjectId {
            object_id: object_id.to_owned(),
            reason: format!("not a composite key: {e}"),
        })?
    };
    if cols.len() == 1 {
        // Try the integer reading, then the text.
        let mut last = None;
        for part in &parts {
            match set_json(am, cols[0], part) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        return Err(last.unwrap_or(Error::BadObjectId {
            object_id: object_id.to_owned(),
            reason: "empty".into(),
        }));
    }
    if parts.len() != cols.len() {
        return Err(Error::BadObjectId {
            object_id: object_id.to_owned(),
            reason: format!("{} parts, the key has {}", parts.len(), cols.len()),
        });
    }
    for (col, part) in cols.into_iter().zip(&parts) {
        set_json(am, col, part)?;
    }
    Ok(())
}

fn masked_error(entity_type: &str, object_id: &str, masked: &[&'static str]) -> Error {
    Error::NotRecorded {
        entity_type: entity_type.to_owned(),
        object_id: object_id.to_owned(),
        columns: masked.to_vec(),
    }
}

/// The newest entry that changed the object's row.
async fn last_change<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Option<LogEntry>, DbErr> {
    let entries = logs_for_id(db, entity_type, object_id).await?;
    Ok(entries.into_iter().find(|e| {
        e.changes.is_some() && matches!(e.action, Action::Create | Action::Update | Action::Delete)
    }))
}

/// Re-inserts a deleted object from its last state, through the audited path (so the restore
/// is logged as a `create`), in a transaction of its own.
///
/// Excluded columns are left to their database defaults. Masked columns were never stored, so
/// an object with any is refused: use [`restore_with`] to fill them.
pub async fn restore<A, C>(db: &C, object_id: &str) -> Result<ModelOf<A>, Error>
where
    A: ActiveModelBehavior + Send + 'static,
    ModelOf<A>: Auditable + IntoActiveModel<A>,
    C: ConnectionTrait + TransactionTrait,
{
    restore_with::<A, C, _>(db, object_id, |_| Ok(())).await
}

/// [`restore`], letting `fill` set columns the log cannot give back (masked, excluded) before
/// the insert.
pub async fn restore_with<A, C, F>(db: &C, object_id: &str, fill: F) -> Result<ModelOf<A>, Error>
where
    A: ActiveModelBehavior + Send + 'static,
    ModelOf<A>: Auditable + IntoActiveModel<A>,
    C: ConnectionTrait + TransactionTrait,
    F: FnOnce(&mut A) -> Result<(), DbErr> + Send,
{
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    let last = last_change(db, entity_type, object_id).await?;
    let state = match last {
        Some(entry) if entry.action == Action::Delete => {
            entry.changes.map(|c| c.old_value).unwrap_or_default()
        }
        Some(_) => {
            return Err(Error::NotDeleted {
                entity_type: entity_type.to_owned(),
                object_id: object_id.to_owned(),
            });
        }
        None => {
            return Err(Error::NoHistory {
                entity_type: entity_type.to_owned(),
                object_id: object_id.to_owned(),
            });
        }
    };
    let (mut am, masked) = from_state::<A>(&state)?;
    fill(&mut am)?;
    let unfilled: Vec<&str> = masked
        .into_iter()
        .filter(|name| {
            <A::Entity as EntityTrait>::Column::iter()
                .find(|c| c.as_str() == *name)
                .is_some_and(|c| !am.get(c).is_set())
        })
        .collect();
    if !unfilled.is_empty() {
        return Err(masked_error(entity_type, object_id, &unfilled));
    }
    let txn = db.begin().await?;
    let result = am.insert(&txn).await;
    Ok(finish(txn, result).await?)
}

/// Undoes one entry through the audited path, in a transaction of its own: an update is undone
/// by writing back the `old_value` of its columns (later changes to other columns stay), a
/// create by deleting the object, a delete by [`restore`]. Returns the row afterwards (`None`
/// when the undo deleted it).
pub async fn revert<A, C>(db: &C, entry_id: i64) -> Result<Option<ModelOf<A>>, Error>
where
    A: ActiveModelBehavior + Send + 'static,
    ModelOf<A>: Auditable + IntoActiveModel<A>,
    C: ConnectionTrait + TransactionTrait,
{
    let entity_type = <ModelOf<A> as Auditable>::entity_type();
    let entry = entries(
        db,
        audit_log::Entity::find().filter(audit_log::Column::Id.eq(entry_id)),
    )
    .await?
    .into_iter()
    .next()
    .ok_or(Error::NoSuchEntry { entry_id })?;
    if entry.entity_type != entity_type {
        return Err(Error::EntryNotAbout {
            entry_id,
            expected: entity_type.to_owned(),
            found: Some(entry.entity_type),
        });
    }
    let changes = entry.changes.clone().unwrap_or_default();
    match entry.action {
        Action::Update => {
            let (mut am, masked) = from_state::<A>(&changes.old_value)?;
            if !masked.is_empty() {
                return Err(masked_error(entity_type, &entry.object_id, &masked));
            }
            set_key(&mut am, &entry.object_id)?;
            let txn = db.begin().await?;
            let result = am.update(&txn).await;
            Ok(Some(finish(txn, result).await?))
        }
        Action::Create => {
            let mut am = A::default();
            set_key(&mut am, &entry.object_id)?;
            let txn = db.begin().await?;
            let result = am.delete(&txn).await;
            finish(txn, result).await?;
            Ok(None)
        }
        Action::Delete => restore::<A, C>(db, &entry.object_id).await.map(Some),
        _ => Err(Error::NothingToUndo {
            entry_id,
            action: entry.action.to_string(),
        }),
    }
}
