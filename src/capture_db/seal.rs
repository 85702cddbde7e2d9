//! Sealing: the hashes of entries written by triggers of backends that cannot hash (SQLite,
//! MySQL), computed in id order from the rows as stored, exactly as `verify` recomputes them.
//! Each hash depends only on its entry and its predecessor, so sealers racing each other
//! compute the same values and need no lock. Per object, id order is write order: a trigger
//! writes an object's entry while its write holds the row (MySQL's row lock, SQLite's single
//! writer), so the next write of that object, and its entry, come after.

use std::collections::HashMap;

use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityName, FromQueryResult, IdenStatic, Iterable, Statement,
};

use crate::audit_log;
use crate::chain::{Content, UNSEALED, entry_hash};
use crate::sql::{Placeholders, quote};

/// Entries sealed per round trip.
const SEAL_BATCH: u64 = 500;

/// Computes the hash of every unsealed entry, oldest first; returns how many it sealed.
/// Two statements per batch of [`SEAL_BATCH`] entries: the entries with the heads of their
/// chains, one `UPDATE` of all of them.
pub(super) async fn seal<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let mut sealed = 0;
    // Onwards from the last entry seen: under MySQL's REPEATABLE READ the snapshot keeps
    // showing as unsealed an entry another sealer has sealed since (our UPDATE then matches
    // nothing), so "whatever is still unsealed" would never run out.
    let mut after = 0;
    // Hashes computed here, across batches: an entry this snapshot shows unsealed is the
    // predecessor of a later one only through this map, never through a lookup.
    let mut heads: HashMap<(String, String), Option<String>> = HashMap::new();
    loop {
        let (rows, prevs) = unsealed_after(db, after).await?;
        let Some(last) = rows.last() else {
            return Ok(sealed);
        };
        after = last.id;
        let full = rows.len() as u64 == SEAL_BATCH;
        let mut sealed_rows = Vec::with_capacity(rows.len());
        for row in &rows {
            let key = (row.entity_type.clone(), row.object_id.clone());
            let prev = if row.action == "create" {
                None
            } else if let Some(head) = heads.get(&key) {
                head.clone()
            } else {
                prevs.get(&row.id).cloned().flatten()
            };
            let hash = entry_hash(&Content::of(row), prev.as_deref());
            heads.insert(key, Some(hash.clone()));
            sealed_rows.push((row.id, prev, hash));
        }
        let (sql, values) = update_sql(backend, sealed_rows);
        // Another sealer may have been first, with the same hashes.
        sealed += db
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
            .rows_affected();
        if !full {
            // Entries written after this call began are left to the next one.
            return Ok(sealed);
        }
    }
}

/// One `UPDATE` setting `prev_hash` and `hash` of each `(id, prev_hash, hash)` still unsealed.
/// SQLite joins the rows to the values by primary key (a `CASE` per column compares each row
/// with every value, quadratic in the batch: 150 against 52 ms for 10,000 entries). MySQL
/// keeps the `CASE`: its multi-table `UPDATE ... JOIN` deadlocked concurrent sealers.
fn update_sql(
    backend: DbBackend,
    sealed: Vec<(i64, Option<String>, String)>,
) -> (String, Vec<sea_orm::Value>) {
    use audit_log::Column as L;
    let q = |ident: &str| quote(backend, ident);
    let (log, id, prev, hash) = (
        q(audit_log::Entity.table_name()),
        q(L::Id.as_str()),
        q(L::PrevHash.as_str()),
        q(L::Hash.as_str()),
    );
    let mut p = Placeholders::new(backend);
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(4 * sealed.len() + 1);
    let sql = if backend == DbBackend::MySql {
        let mut prev_cases = Vec::with_capacity(sealed.len());
        let mut hash_cases = Vec::with_capacity(sealed.len());
        let mut hashes = Vec::with_capacity(2 * sealed.len());
        for (entry, prev_hash, entry_hash) in &sealed {
            prev_cases.push(format!("WHEN {} THEN {}", p.next(), p.next()));
            values.push((*entry).into());
            values.push(prev_hash.clone().into());
            hashes.push(sea_orm::Value::from(*entry));
            hashes.push(entry_hash.clone().into());
        }
        for _ in &sealed {
            hash_cases.push(format!("WHEN {} THEN {}", p.next(), p.next()));
        }
        values.extend(hashes);
        let keys: Vec<String> = sealed
            .iter()
            .map(|(entry, _, _)| {
                values.push((*entry).into());
                p.next()
            })
            .collect();
        // By primary key: through the hash index, its next-key locks on 'unsealed' would make
        // every trigger's new entry wait for this transaction (and deadlock concurrent
        // sealers); by primary key it locks only the entries it seals.
        format!(
            "UPDATE {log} FORCE INDEX (PRIMARY) SET {prev} = CASE {id} {} END, \
             {hash} = CASE {id} {} END WHERE {id} IN ({}) AND {hash} = {}",
            prev_cases.join(" "),
            hash_cases.join(" "),
            keys.join(", "),
            p.next()
        )
    } else {
        let mut rows = Vec::with_capacity(sealed.len());
        for (entry, prev_hash, entry_hash) in sealed {
            rows.push(format!("({}, {}, {})", p.next(), p.next(), p.next()));
            values.push(entry.into());
            values.push(prev_hash.into());
            values.push(entry_hash.into());
        }
        format!(
            "UPDATE {log} SET {prev} = v.column2, {hash} = v.column3 FROM (VALUES {}) AS v \
             WHERE {log}.{id} = v.column1 AND {log}.{hash} = {}",
            rows.join(", "),
            p.next()
        )
    };
    values.push(UNSEALED.into());
    (sql, values)
}

/// The next [`SEAL_BATCH`] unsealed entries after id `after`, oldest first, each with the hash
/// of its object's newest earlier entry (read in the same statement, through
/// `idx_audit_log_object`).
async fn unsealed_after<C: ConnectionTrait>(
    db: &C,
    after: i64,
) -> Result<(Vec<audit_log::Model>, HashMap<i64, Option<String>>), DbErr> {
    use audit_log::Column as L;
    let backend = db.get_database_backend();
    let q = |ident: &str| quote(backend, ident);
    let (log, id, hash) = (
        q(audit_log::Entity.table_name()),
        q(L::Id.as_str()),
        q(L::Hash.as_str()),
    );
    let (et, oid) = (q(L::EntityType.as_str()), q(L::ObjectId.as_str()));
    let columns: Vec<String> = L::iter().map(|c| format!("a.{}", q(c.as_str()))).collect();
    let mut p = Placeholders::new(backend);
    let sql = format!(
        "SELECT {}, (SELECT b.{hash} FROM {log} b WHERE b.{et} = a.{et} AND b.{oid} = a.{oid} \
         AND b.{id} < a.{id} ORDER BY b.{id} DESC LIMIT 1) AS sea_orm_audit_prev \
         FROM {log} a WHERE a.{hash} = {} AND a.{id} > {} ORDER BY a.{id} LIMIT {SEAL_BATCH}",
        columns.join(", "),
        p.next(),
        p.next(),
    );
    let mut rows = Vec::new();
    let mut prevs = HashMap::new();
    for row in db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [UNSEALED.into(), after.into()],
        ))
        .await?
    {
        let model = audit_log::Model::from_query_result(&row, "")?;
        prevs.insert(model.id, row.try_get("", "sea_orm_audit_prev")?);
        rows.push(model);
    }
    Ok((rows, prevs))
}
