//! Writing one batch of API activity entries so that no entry holds up the others and none
//! is written twice.
//!
//! A batch is one transaction. A batch the database refuses is split in halves until the
//! refused entry is alone; that entry is stored in its reduced form ([`limits::reduced`]) and
//! every other entry as it was. A COMMIT whose answer was lost may have gone through: before
//! such a batch is retried, the entries already stored are looked up and left out.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use super::limits;
use crate::audit_log;
use crate::chain::truncate_to_micros;
use crate::error::Error;
use crate::store::{self, NewEntry};

/// An entry ready for the database: every field within its column, its size known.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) entry: NewEntry,
    /// An upper bound of the entry's size in an INSERT statement.
    pub(crate) bytes: usize,
    /// Whether it is stored in a reduced form (`data.reduced` says why).
    pub(crate) reduced: bool,
}

/// Writes `entries`, each group in one transaction. A group the database refuses is split
/// in halves until the refused entry is alone; that entry is then stored in its reduced
/// form, and every other entry as it was. When the reduced form is refused too, the
/// database itself is failing (a missing table, a lost connection): the entries not yet
/// written are handed back to be retried.
pub(crate) async fn write_isolating(
    db: &DatabaseConnection,
    entries: Vec<Prepared>,
    tally: &Tally,
) -> Result<(), Failure> {
    // Groups to write, the next one last.
    let mut todo = vec![entries];
    while let Some(mut group) = todo.pop() {
        if group.is_empty() {
            continue;
        }
        let failure = match write_batch(db, &group).await {
            Ok(()) => {
                tally.count(&group);
                continue;
            }
            Err(failure) => failure,
        };
        let error = match failure {
            BatchError::Insert(_) if group.len() > 1 => {
                let second = group.split_off(group.len() / 2);
                todo.push(second);
                todo.push(group);
                continue;
            }
            BatchError::Insert(error) => error,
            BatchError::Begin(error) => return Err(Failure::of(error, group, todo, false)),
            BatchError::Commit(error) => return Err(Failure::of(error, group, todo, true)),
        };
        let reason = limits::ascii_reason(&format!("refused by the database: {error}"));
        let reduced = Prepared {
            entry: limits::reduced(&group[0].entry, &reason),
            bytes: group[0].bytes,
            reduced: true,
        };
        match write_batch(db, std::slice::from_ref(&reduced)).await {
            Ok(()) => {
                tally.count(std::slice::from_ref(&reduced));
                tracing::warn!(
                    request_id = %reduced.entry.object_id,
                    %reason,
                    "sea-orm-audit: the database refused an API activity entry; \
                     stored its reduced form"
                );
            }
            Err(BatchError::Commit(_)) => {
                return Err(Failure::of(error, group, todo, true));
            }
            Err(_) => return Err(Failure::of(error, group, todo, false)),
        }
    }
    Ok(())
}

/// Removes from `entries` those already stored (same object id, that is request id, and
/// time), counting them as written: an attempt whose COMMIT went unanswered may have written them.
pub(crate) async fn leave_out_stored(
    db: &DatabaseConnection,
    entries: &mut Vec<Prepared>,
    tally: &Tally,
) -> crate::error::Result<()> {
    let mut stored = HashSet::new();
    for chunk in entries.chunks(500) {
        let ids: Vec<&str> = chunk.iter().map(|p| p.entry.object_id.as_str()).collect();
        let types: HashSet<&str> = chunk.iter().map(|p| p.entry.entity_type.as_str()).collect();
        let rows: Vec<(String, String, DateTime<Utc>)> = audit_log::Entity::find()
            .select_only()
            .column(audit_log::Column::EntityType)
            .column(audit_log::Column::ObjectId)
            .column(audit_log::Column::CreatedAt)
            .filter(audit_log::Column::EntityType.is_in(types))
            .filter(audit_log::Column::ObjectId.is_in(ids))
            .into_tuple()
            .all(db)
            .await
            .map_err(|e| Error::db("looking up API activity entries already written", e))?;
        stored.extend(rows);
    }
    let before = entries.len();
    let stored_now: Vec<Prepared>;
    (stored_now, *entries) = std::mem::take(entries).into_iter().partition(|p| {
        let at = p.entry.created_at.map(truncate_to_micros);
        at.is_some_and(|at| {
            let key = (p.entry.entity_type.clone(), p.entry.object_id.clone(), at);
            stored.contains(&key)
        })
    });
    tally.count(&stored_now);
    if !stored_now.is_empty() {
        tracing::info!(
            already_written = stored_now.len(),
            of = before,
            "sea-orm-audit: an unanswered COMMIT of API activity had gone through; \
             those entries are not written again"
        );
    }
    Ok(())
}

/// Entries stored: rows inserted, each counted once.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) written: AtomicU64,
    /// Of them, stored in a reduced form.
    pub(crate) reduced: AtomicU64,
}

impl Tally {
    fn count(&self, entries: &[Prepared]) {
        let reduced = entries.iter().filter(|p| p.reduced).count() as u64;
        self.written
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        if reduced > 0 {
            self.reduced.fetch_add(reduced, Ordering::Relaxed);
        }
    }
}

/// Entries not written, handed back to be retried.
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) remaining: Vec<Prepared>,
    /// Whether some of them may be stored all the same (an unanswered COMMIT).
    pub(crate) ambiguous: bool,
}

impl Failure {
    /// `group` failed; `todo` (next last) was not tried.
    fn of(error: Error, group: Vec<Prepared>, todo: Vec<Vec<Prepared>>, ambiguous: bool) -> Self {
        let mut remaining = group;
        remaining.extend(todo.into_iter().rev().flatten());
        Failure {
            error,
            remaining,
            ambiguous,
        }
    }
}

/// Which step of a batch failed: only a failed COMMIT leaves unknown what was stored, and only
/// a failed INSERT can be the entries' fault.
enum BatchError {
    Begin(Error),
    Insert(Error),
    Commit(Error),
}

/// One batch in one transaction, in statements of at most [`limits::STATEMENT_BYTES`].
async fn write_batch(
    db: &DatabaseConnection,
    entries: &[Prepared],
) -> std::result::Result<(), BatchError> {
    let txn = db
        .begin()
        .await
        .map_err(|e| BatchError::Begin(Error::db("beginning an API activity batch", e)))?;
    let inserted = async {
        let mut rest = entries;
        while !rest.is_empty() {
            let mut bytes = 0;
            let take = rest
                .iter()
                .position(|p| {
                    bytes += p.bytes;
                    bytes > limits::STATEMENT_BYTES
                })
                .unwrap_or(rest.len())
                .max(1);
            let (group, next) = rest.split_at(take);
            rest = next;
            let group: Vec<NewEntry> = group.iter().map(|p| p.entry.clone()).collect();
            store::write_many(&txn, group).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = inserted {
        // Rolled back before returning, not left to the pool (see `sql::finish`).
        txn.rollback().await.ok();
        return Err(BatchError::Insert(e));
    }
    txn.commit()
        .await
        .map_err(|e| BatchError::Commit(Error::db("committing an API activity batch", e)))
}
