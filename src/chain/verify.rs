//! Walking every chain and reporting each break.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IdenStatic, QueryFilter, QueryOrder,
    QueryResult, QuerySelect, QueryTrait,
};
use serde_json::Value as Json;

use super::hash::{Content, UNSEALED, entry_hash};
use crate::audit_log;
use crate::error::Error;
use crate::prune_marker::{self, PRUNE_ACTION, PRUNE_ENTITY};

/// What is wrong with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The stored hash does not match the entry's content: the entry was edited.
    ContentChanged,
    /// The entry does not link to the previous entry of its object: entries were deleted,
    /// inserted or reordered before it, or it is a copy of an earlier entry of its object (a
    /// replay). (Two writers outside transactions forking the chain are a `Fork`.)
    BrokenLink {
        /// The hash of the previous remaining entry of the object (`None`: there is none).
        expected: Option<String>,
        /// The `prev_hash` the entry carries.
        found: Option<String>,
    },
    /// The entry has no hash at all: it was not written by sea-orm-audit.
    MissingHash,
    /// The entry cannot be read as a log entry (another program stored a value of the wrong
    /// kind in it: a time that is not one, a JSON number beyond what an `f64` holds, text that
    /// is not UTF-8 on SQLite), so its hash cannot be checked. sea-orm-audit leaves no sealed
    /// entry so: the entry was edited. Readers such as `logs_for` fail on it; the chain is
    /// still followed through its stored hashes, so the entries after it are checked as usual.
    Unreadable {
        /// What could not be read: the entry's id and the database driver's error.
        error: String,
    },
    /// The entry was written by a SQLite or MySQL capture trigger and not sealed yet (their
    /// triggers do not hash; [`capture_db::seal`](crate::capture_db::seal) does). Not a sign of
    /// tampering by itself: until it is sealed, the entry is not protected.
    Unsealed,
    /// The entry links to an entry that already has a successor: two writers appended to the
    /// object's chain concurrently outside a transaction. Not a sign of tampering by itself.
    Fork {
        /// The predecessor both entries link to; empty when both start the chain (two
        /// concurrent first entries of an object).
        shared: String,
    },
}

/// One broken entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The entry's id.
    pub id: i64,
    /// Its entity type.
    pub entity_type: String,
    /// Its object id.
    pub object_id: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// The result of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Entries checked.
    pub checked: u64,
    /// Broken entries, in id order.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when every chain is intact.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first (oldest) broken entry.
    pub fn first_broken(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

#[derive(Debug, Default)]
struct ChainState {
    /// The previous entry's hash (what the next entry is expected to link to).
    hash: Option<String>,
    action: String,
    /// Hashes no entry links to yet: the ends of the chain's branches.
    tips: HashSet<String>,
    /// 64-bit prefixes of every hash seen, to tell a fork (link to an earlier entry) from a
    /// link to an entry that does not exist.
    seen: HashSet<u64>,
    /// The current segment began with an entry without a predecessor (not a pruned chain).
    rooted: bool,
}

fn prefix(hash: &str) -> u64 {
    u64::from_str_radix(hash.get(..16).unwrap_or(hash), 16).unwrap_or(0)
}

/// Walks every chain in the log and reports each broken entry (oldest first).
///
/// Reads the log in pages of 1,000 entries, keeping one hash per object in memory. A chain
/// whose oldest remaining entry links to a missing predecessor is accepted only when a prune
/// marker records that predecessor as the newest entry pruning removed from that chain (see
/// [`crate::prune`]): any other missing prefix is a `BrokenLink`.
pub async fn verify<C: ConnectionTrait>(db: &C) -> Result<Report, Error> {
    verify_filtered(db, None).await
}

/// [`verify`] for one object's chain.
pub async fn verify_object<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Report, Error> {
    verify_filtered(db, Some((entity_type, object_id))).await
}

async fn verify_filtered<C: ConnectionTrait>(
    db: &C,
    only: Option<(&str, &str)>,
) -> Result<Report, Error> {
    let pruned = pruned_chains(db).await?;
    let mut chains: HashMap<(String, String), ChainState> = HashMap::new();
    let mut report = Report::default();
    let mut after = 0i64;
    loop {
        let mut query = audit_log::Entity::find()
            .filter(audit_log::Column::Id.gt(after))
            .order_by_asc(audit_log::Column::Id)
            .limit(1000);
        if let Some((entity_type, object_id)) = only {
            query = query
                .filter(audit_log::Column::EntityType.eq(entity_type))
                .filter(audit_log::Column::ObjectId.eq(object_id));
        }
        let rows = db
            .query_all_raw(query.build(db.get_database_backend()))
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("", audit_log::Column::Id.as_str())?;
        for row in rows {
            report.checked += 1;
            let (row, unreadable) = match audit_log::read_row(&row) {
                Ok(model) => (model, None),
                Err(e) => (readable_part(&row)?, Some(e.to_string())),
            };
            if let Some(kind) = check(&row, unreadable, &mut chains, &pruned) {
                report.problems.push(Problem {
                    id: row.id,
                    entity_type: row.entity_type.clone(),
                    object_id: row.object_id.clone(),
                    kind,
                });
            }
        }
    }
    Ok(report)
}

/// Per chain, the hash of the newest entry pruning removed from it: what the chain's oldest
/// remaining entry must link to. Read from the prune markers' `chains` lists.
type Pruned = HashMap<(String, String), (i64, String)>;

async fn pruned_chains<C: ConnectionTrait>(db: &C) -> Result<Pruned, DbErr> {
    let markers: Vec<Option<Json>> = audit_log::Entity::find()
        .select_only()
        .column(audit_log::Column::Data)
        .filter(audit_log::Column::EntityType.eq(PRUNE_ENTITY))
        .filter(audit_log::Column::Action.eq(PRUNE_ACTION))
        .into_tuple()
        .all(db)
        .await?;
    let mut pruned = Pruned::new();
    for chain in markers.iter().flatten().flat_map(prune_marker::decode) {
        let key = (chain.entity_type, chain.object_id);
        // Pruned more than once: the newest removal is the one the chain now starts after.
        if pruned.get(&key).is_none_or(|(seen, _)| *seen < chain.id) {
            pruned.insert(key, (chain.id, chain.hash));
        }
    }
    Ok(pruned)
}

/// What can be read of an entry that cannot be read whole: its id (or the error), its place
/// in a chain (object and hashes; text that is not UTF-8 read with U+FFFD) and its action.
/// Everything else is left empty: it is not hashed.
fn readable_part(row: &QueryResult) -> Result<audit_log::Model, DbErr> {
    use audit_log::Column as L;
    let text = |c: L| {
        row.try_get::<String>("", c.as_str())
            .or_else(|_| {
                row.try_get::<Vec<u8>>("", c.as_str())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .unwrap_or_default()
    };
    let hash = |c: L| row.try_get::<Option<String>>("", c.as_str()).ok().flatten();
    Ok(audit_log::Model {
        id: row.try_get("", L::Id.as_str())?,
        entity_type: text(L::EntityType),
        object_id: text(L::ObjectId),
        action: text(L::Action),
        actor: None,
        created_at: chrono::DateTime::UNIX_EPOCH,
        changes: None,
        tool: None,
        message: None,
        status: String::new(),
        data: None,
        prev_hash: hash(L::PrevHash),
        hash: hash(L::Hash),
    })
}

fn key_of(row: &audit_log::Model) -> (String, String) {
    (row.entity_type.clone(), row.object_id.clone())
}

/// The problem with one entry, if any. `unreadable`: why the entry could not be read whole
/// (then `row` holds only what [`readable_part`] read).
fn check(
    row: &audit_log::Model,
    unreadable: Option<String>,
    chains: &mut HashMap<(String, String), ChainState>,
    pruned: &Pruned,
) -> Option<ProblemKind> {
    if row.hash.as_deref() == Some(UNSEALED) {
        // Nothing links to it yet (seal goes in id order), so the chain state stays as it is.
        return Some(ProblemKind::Unsealed);
    }
    let key = (row.entity_type.clone(), row.object_id.clone());
    let first = !chains.contains_key(&key);
    let state = chains.entry(key).or_default();
    let link = match (&row.prev_hash, first) {
        (None, true) => {
            state.rooted = true;
            Ok(())
        }
        // The oldest remaining entry of a pruned chain: it must link to exactly the newest
        // entry the prune removed, and come after it.
        (Some(prev), true) => match pruned.get(&key_of(row)) {
            Some((removed_id, removed_hash)) if prev == removed_hash && row.id > *removed_id => {
                Ok(())
            }
            _ => Err(None),
        },
        (None, false) if row.action == "create" && state.action == "delete" => {
            // A new segment after a delete.
            state.tips.clear();
            state.rooted = true;
            Ok(())
        }
        // Two writers both found the chain empty (concurrent first entries outside a
        // transaction): a fork at the start, not a missing predecessor. Not for a create,
        // which only follows a delete: one without it means the delete entry is gone.
        (None, false) if state.rooted && row.action != "create" => Err(Some(String::new())),
        (None, false) => Err(None),
        (Some(prev), false) if state.tips.remove(prev) => Ok(()),
        (Some(prev), false) if state.seen.contains(&prefix(prev)) => Err(Some(prev.clone())),
        (Some(_), false) => Err(None),
    };
    let problem = match (&row.hash, unreadable) {
        (None, _) => Some(ProblemKind::MissingHash),
        (Some(_), Some(error)) => Some(ProblemKind::Unreadable { error }),
        (Some(stored), None)
            if *stored != entry_hash(&Content::of(row), row.prev_hash.as_deref()) =>
        {
            Some(ProblemKind::ContentChanged)
        }
        // The same hash as an earlier entry of the object: a copy of it (same content, same
        // predecessor), which no writer makes; concurrent writers fork with different entries.
        (Some(stored), None) if state.seen.contains(&prefix(stored)) => {
            Some(ProblemKind::BrokenLink {
                expected: state.hash.clone(),
                found: row.prev_hash.clone(),
            })
        }
        (Some(_), None) => match link {
            Ok(()) => None,
            Err(Some(shared)) => Some(ProblemKind::Fork { shared }),
            Err(None) => Some(ProblemKind::BrokenLink {
                expected: state.hash.clone(),
                found: row.prev_hash.clone(),
            }),
        },
    };
    if let Some(hash) = &row.hash {
        state.tips.insert(hash.clone());
        state.seen.insert(prefix(hash));
    }
    state.hash.clone_from(&row.hash);
    state.action.clone_from(&row.action);
    problem
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn entry(id: i64, action: &str, prev: Option<&str>) -> audit_log::Model {
        let mut row = audit_log::Model {
            id,
            entity_type: "t".into(),
            object_id: "1".into(),
            action: action.into(),
            actor: None,
            created_at: Utc::now(),
            changes: None,
            tool: None,
            message: Some(format!("entry {id}")),
            status: "success".into(),
            data: None,
            prev_hash: prev.map(str::to_owned),
            hash: None,
        };
        row.hash = Some(entry_hash(&Content::of(&row), prev));
        row
    }

    fn run(rows: &[audit_log::Model]) -> Vec<(i64, ProblemKind)> {
        let mut chains = HashMap::new();
        let pruned = Pruned::new();
        rows.iter()
            .filter_map(|r| check(r, None, &mut chains, &pruned).map(|k| (r.id, k)))
            .collect()
    }

    #[test]
    fn linear_chains_segments_forks_and_breaks() {
        let a = entry(1, "create", None);
        let b = entry(2, "update", a.hash.as_deref());
        let c = entry(3, "update", b.hash.as_deref());
        assert!(run(&[a.clone(), b.clone(), c.clone()]).is_empty());
        // A delete, then a create starting a new segment.
        let d = entry(4, "delete", c.hash.as_deref());
        let e = entry(5, "create", None);
        assert!(run(&[a.clone(), b.clone(), c.clone(), d, e]).is_empty());
        // A create without a delete before it is a break.
        let e2 = entry(4, "create", None);
        assert!(matches!(
            run(&[a.clone(), b.clone(), e2])[0],
            (4, ProblemKind::BrokenLink { .. })
        ));
        // Two entries linking to `a`: the second is a fork; the chain goes on from either tip.
        let c2 = entry(3, "update", a.hash.as_deref());
        let d2 = entry(4, "update", c2.hash.as_deref());
        let found = run(&[a.clone(), b.clone(), c2, d2]);
        assert_eq!(found.len(), 1);
        assert!(matches!(found[0], (3, ProblemKind::Fork { .. })));
        // Two first entries (both found the chain empty): a fork at the start.
        let root2 = entry(2, "login", None);
        let found = run(&[a.clone(), root2]);
        assert_eq!(found.len(), 1);
        assert!(matches!(&found[0], (2, ProblemKind::Fork { shared }) if shared.is_empty()));
        // A link to an entry that is not there.
        let ghost = entry(9, "update", Some("00ff"));
        assert!(matches!(
            run(&[a, b, ghost])[0],
            (9, ProblemKind::BrokenLink { .. })
        ));
    }

    #[test]
    fn an_unreadable_entry_is_reported_and_its_chain_followed() {
        let a = entry(1, "create", None);
        let b = entry(2, "update", a.hash.as_deref());
        let c = entry(3, "update", b.hash.as_deref());
        let mut chains = HashMap::new();
        let pruned = Pruned::new();
        assert_eq!(check(&a, None, &mut chains, &pruned), None);
        // What `readable_part` keeps of `b`: its place in the chain, nothing of its content.
        let mut part = b.clone();
        part.message = None;
        part.created_at = chrono::DateTime::UNIX_EPOCH;
        let error = Some("bad time".to_owned());
        assert_eq!(
            check(&part, error, &mut chains, &pruned),
            Some(ProblemKind::Unreadable {
                error: "bad time".into()
            })
        );
        // The next entry links to the stored hash of the unreadable one.
        assert_eq!(check(&c, None, &mut chains, &pruned), None);
        // An unsealed one stays unsealed, read or not.
        let mut d = entry(4, "update", None);
        d.hash = Some(UNSEALED.into());
        let error = Some("bad time".to_owned());
        assert_eq!(
            check(&d, error, &mut chains, &pruned),
            Some(ProblemKind::Unsealed)
        );
    }
}
