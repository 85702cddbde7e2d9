//! Sealing: the hashes of entries written by triggers of backends that cannot hash (SQLite,
//! MySQL), computed in id order from the rows as stored, exactly as `verify` recomputes them.
//! Each hash depends only on its entry and its predecessor, so sealers racing each other
//! compute the same values and need no lock. Per object, id order is write order: a trigger
//! writes an object's entry while its write holds the row (MySQL's row lock, SQLite's single
//! writer), so the next write of that object, and its entry, come after. A JSON value the
//! trigger deferred (`limits::DEFERRED`) is replaced by the value or its marker first, so the
//! sealed entry is the one the hooks write.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityName, EntityTrait, IdenStatic, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};

use crate::audit_log;
use crate::chain::{Content, UNSEALED, entry_hash};
use crate::limits;
use crate::sql::{Placeholders, quote};

/// Entries sealed per round trip.
const SEAL_BATCH: u64 = 500;

/// Replaces the trigger's [`limits::DEFERRED`] values of an entry's diff by what the hooks
/// record; whether there were any.
fn resolve_deferred(changes: &mut Option<serde_json::Value>) -> bool {
    let mut resolved = false;
    if let Some(changes) = changes.as_mut().and_then(serde_json::Value::as_object_mut) {
        for side in changes.values_mut() {
            if let Some(side) = side.as_object_mut() {
                for value in side.values_mut() {
                    resolved |= limits::resolve_deferred(value);
                }
            }
        }
    }
    resolved
}

/// Computes the hash of every unsealed entry, oldest first; returns how many it sealed.
pub(super) async fn seal<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    use audit_log::Column as L;
    let backend = db.get_database_backend();
    let q = |ident: &str| quote(backend, ident);
    let mut sealed = 0;
    // Onwards from the last entry seen: under MySQL's REPEATABLE READ the snapshot keeps
    // showing as unsealed an entry another sealer has sealed since (our UPDATE then matches
    // nothing), so "whatever is still unsealed" would never run out.
    let mut after = 0;
    // Hashes computed here, across batches: an entry this snapshot shows unsealed is the
    // predecessor of a later one only through this map, never through a lookup.
    let mut heads: HashMap<(String, String), Option<String>> = HashMap::new();
    loop {
        let rows = audit_log::Entity::find()
            .filter(L::Hash.eq(UNSEALED))
            .filter(L::Id.gt(after))
            .order_by_asc(L::Id)
            .limit(SEAL_BATCH)
            .all(db)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(sealed);
        };
        after = last.id;
        for mut row in rows {
            let resolved = resolve_deferred(&mut row.changes);
            let key = (row.entity_type.clone(), row.object_id.clone());
            let prev = if row.action == "create" {
                None
            } else if let Some(head) = heads.get(&key) {
                head.clone()
            } else {
                audit_log::Entity::find()
                    .select_only()
                    .column(L::Hash)
                    .filter(L::EntityType.eq(&row.entity_type))
                    .filter(L::ObjectId.eq(&row.object_id))
                    .filter(L::Id.lt(row.id))
                    .order_by_desc(L::Id)
                    .into_tuple::<Option<String>>()
                    .one(db)
                    .await?
                    .flatten()
            };
            let hash = entry_hash(&Content::of(&row), prev.as_deref());
            let mut p = Placeholders::new(backend);
            let mut set = format!(
                "{} = {}, {} = {}",
                q(L::PrevHash.as_str()),
                p.next(),
                q(L::Hash.as_str()),
                p.next()
            );
            let mut values: Vec<sea_orm::Value> = vec![prev.into(), hash.clone().into()];
            if resolved {
                set.push_str(&format!(", {} = {}", q(L::Changes.as_str()), p.next()));
                values.push(row.changes.clone().into());
            }
            values.extend([row.id.into(), UNSEALED.into()]);
            let done = db
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    format!(
                        "UPDATE {} SET {set} WHERE {} = {} AND {} = {}",
                        q(audit_log::Entity.table_name()),
                        q(L::Id.as_str()),
                        p.next(),
                        q(L::Hash.as_str()),
                        p.next(),
                    ),
                    values,
                ))
                .await?;
            heads.insert(key, Some(hash));
            // Another sealer may have been first, with the same hash.
            sealed += done.rows_affected();
        }
    }
}
