//! Sealing: the hashes of entries written by triggers of backends that cannot hash (SQLite,
//! MySQL), computed in id order from the rows as stored, exactly as `verify` recomputes them.
//! Each hash depends only on its entry and its predecessor, so sealers racing each other
//! compute the same values and need no lock. Per object, id order is write order: a trigger
//! writes an object's entry while its write holds the row (MySQL's row lock, SQLite's single
//! writer), so the next write of that object, and its entry, come after. A JSON value the
//! trigger deferred (`limits::DEFERRED`) is replaced by the value or its marker first, so the
//! sealed entry is the one the hooks write.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityName, EntityTrait, IdenStatic,
    QueryFilter, QuerySelect, QueryTrait, Statement,
};

use crate::audit_log;
use crate::chain::{Content, UNSEALED, entry_hash};
use crate::limits;
use crate::sql::{Placeholders, literal, quote};

/// Entries sealed per round trip.
const SEAL_BATCH: u64 = 500;

/// Set once a MySQL server refused `SET STATEMENT` (MariaDB's): its statements are then sent
/// as they are, and may wait.
static NO_SET_STATEMENT: AtomicBool = AtomicBool::new(false);

/// Runs a statement of the seal (`run` sends the text it is given) so that it waits for no
/// lock on MariaDB; `None` when a lock it needed was held. A writer's transaction locks the
/// newest entry of each object an event of it is about (`chain::mysql_locked_head`), in the
/// order of its events, and a seal locks the entries it seals in id order: had the seal waited
/// for one of them while holding another that the writer asks for next, InnoDB would have
/// broken the deadlock by rolling back the lighter transaction, the writer's (seen in the
/// seeded context model; `tests/db_capture.rs`,
/// `a_seal_never_deadlocks_a_writer_that_locked_entries_out_of_order`, made it happen every
/// time before). Sent as `SET STATEMENT innodb_lock_wait_timeout = 0 FOR ...`, a held lock
/// fails the statement at once (1205, the statement alone rolled back) and the seal is never
/// part of such a cycle: the caller leaves what it could not lock to the next seal. Other
/// backends, and MySQL, which has no `SET STATEMENT`, send the statement as it is.
async fn no_wait<T, F, Fut>(backend: DbBackend, sql: &str, run: F) -> Result<Option<T>, DbErr>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, DbErr>>,
{
    let result = if backend != DbBackend::MySql || NO_SET_STATEMENT.load(Ordering::Relaxed) {
        run(sql.to_owned()).await
    } else {
        match run(format!(
            "SET STATEMENT innodb_lock_wait_timeout = 0 FOR {sql}"
        ))
        .await
        {
            Err(e) if e.to_string().contains("error in your SQL syntax") => {
                NO_SET_STATEMENT.store(true, Ordering::Relaxed);
                run(sql.to_owned()).await
            }
            other => other,
        }
    };
    match result {
        Err(e) if e.to_string().contains("Lock wait timeout exceeded") => Ok(None),
        other => other.map(Some),
    }
}

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
///
/// Sealers run at once (every hook of a database-mode entity seals after its write), so each
/// entry's predecessor is looked up by id (with the entries, one statement per batch), never
/// assumed to be the
/// last entry of its object this call sealed: between this sealer's
/// read of the unsealed entries and its UPDATEs, others seal entries and commit new ones,
/// and on MySQL the read is a snapshot in which ids need not follow commit order across
/// objects. A hash is linked only to the predecessor's hash as stored (or as this call stored
/// it); when the predecessor is still unsealed and was not sealed here, the entry is left for
/// a later seal rather than linked to a guess.
pub(super) async fn seal<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let mut sealed = 0;
    // Onwards from the last entry seen: under MySQL's REPEATABLE READ the snapshot keeps
    // showing as unsealed an entry another sealer has sealed since (our UPDATE then matches
    // nothing), so "whatever is still unsealed" would never run out.
    let mut after = 0;
    // The last entry there was when this call began (read with its first batch): entries
    // written since are left to the next call. Chasing them, one call never returned while
    // writers kept ahead of it (`tests/db_capture_context.rs`
    // `a_seal_does_not_chase_entries_written_while_it_runs`), nor did a `Sealer`'s `stop`.
    let mut upto = None;
    // Per object, the id and stored hash of the last entry this call sealed or read back.
    let mut heads: HashMap<(String, String), (i64, String)> = HashMap::new();
    // The batch whose object ids were last repaired (once per batch: an id the repair did not
    // make readable is left, below, rather than repaired forever).
    let mut repaired_after = None;
    loop {
        let ((rows, last_read, unreadable_ids), last_entry) =
            unsealed_after(db, after, upto).await?;
        upto = upto.or(last_entry);
        // Object ids that are not UTF-8 (SQLite keeps what raw SQL wrote into a text key, and
        // the trigger copies it): stored read with U+FFFD, as values are, and the batch read
        // again so that each entry finds its predecessor by the id it now has. Every reader
        // failed on such an entry, `verify` included, and the seal left it unsealed.
        if !unreadable_ids.is_empty() && repaired_after != Some(after) {
            repaired_after = Some(after);
            for (id, object_id) in unreadable_ids {
                repair_object_id(db, backend, id, &object_id).await?;
            }
            continue;
        }
        let Some(last) = last_read else {
            return Ok(sealed);
        };
        after = last;
        // Entries whose diff is unchanged are stored with one statement per batch.
        let mut batch = Vec::with_capacity(rows.len());
        for (mut row, repaired, predecessor) in rows {
            // Only the SQLite and MySQL triggers defer values, and only their entries are
            // written with no `prev_hash` (the hooks' unsealed ones say `unsealed`): a string
            // that starts with the prefix elsewhere is the value itself.
            let deferring = backend != DbBackend::Postgres && row.prev_hash.is_none();
            let resolved = (deferring && resolve_deferred(&mut row.changes)) || repaired;
            let key = (row.entity_type.clone(), row.object_id.clone());
            let prev = if row.action == "create" {
                None
            } else {
                match predecessor {
                    None => None,
                    Some((id, hash)) => {
                        let known = match heads.get(&key) {
                            Some((head, hash)) if *head == id => Some(hash.clone()),
                            _ if hash.as_deref() != Some(UNSEALED) => hash,
                            // The snapshot may be older than its seal: read it as stored.
                            _ => stored_hash(db, id).await?,
                        };
                        match known {
                            Some(hash) if hash == UNSEALED => continue,
                            known => known,
                        }
                    }
                }
            };
            let hash = entry_hash(&Content::of(&row), prev.as_deref());
            if !resolved {
                heads.insert(key.clone(), (row.id, hash.clone()));
                batch.push((key, (row.id, prev, hash)));
                continue;
            }
            // Held (`None`): the stored hash read below says it is still unsealed.
            let done = set_hash(db, backend, row.id, prev, &hash, Some(&row.changes))
                .await?
                .unwrap_or(0);
            sealed += done;
            // Another sealer may have been first: link the next entry to what it stored.
            let stored = if done == 1 {
                Some(hash)
            } else {
                stored_hash(db, row.id).await?
            };
            match stored {
                Some(stored) if stored != UNSEALED => {
                    heads.insert(key, (row.id, stored));
                }
                _ => {
                    heads.remove(&key);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let expected = batch.len() as u64;
        let mut done = 0;
        // PostgreSQL: statements of at most `rows_per_insert` rows, below the size at which
        // sqlx stalls on each (one seal of 10,000 entries took 3.3 s in batches of 500, 0.3 s
        // when the server's statement logging changed the timing).
        let per = crate::sql::rows_per_insert(backend);
        let mut batch = batch.into_iter().peekable();
        let mut skipped = false;
        while batch.peek().is_some() {
            let chunk: Vec<_> = batch.by_ref().take(per).collect();
            let (sql, values) = update_sql(
                backend,
                chunk.iter().map(|(_, sealed)| sealed.clone()).collect(),
            );
            let updated = no_wait(backend, &sql, |sql| {
                db.execute_raw(Statement::from_sql_and_values(backend, sql, values.clone()))
            })
            .await?;
            if let Some(updated) = updated {
                done += updated.rows_affected();
                continue;
            }
            // An entry of the chunk is held by another transaction (MariaDB, see `no_wait`):
            // the chunk entry by entry, leaving the held ones, and what follows them in their
            // objects, to the next seal.
            skipped = true;
            let mut held = HashSet::new();
            for (key, (id, prev, hash)) in chunk {
                if held.contains(&key) {
                    continue;
                }
                match set_hash(db, backend, id, prev, &hash, None).await? {
                    Some(n) => done += n,
                    None => {
                        held.insert(key);
                    }
                }
            }
        }
        sealed += done;
        if skipped {
            heads.clear();
        }
        if done < expected {
            // Another sealer stored some of them first. It computes the same hashes from the
            // same stored predecessors, but later entries are linked to what is stored, read
            // again, rather than to this call's values.
            heads.clear();
        }
    }
}

/// An unsealed entry, whether its diff was read leniently into another value than stored,
/// and its predecessor's id and hash (see [`unsealed_after`]).
type Unsealed = (audit_log::Model, bool, Option<(i64, Option<String>)>);

/// Unsealed entries (those that could be read), the id of the last one read, and the entries
/// whose object id is not UTF-8, each with the id read with U+FFFD (left out of the first).
type Batch = (Vec<Unsealed>, Option<i64>, Vec<(i64, String)>);

/// The unsealed entries after id `after` (and up to id `upto`, if given), oldest first, at most
/// [`SEAL_BATCH`], each with its predecessor in its object's chain (the entry of the same
/// object with the next lower id): that entry's id and its hash as this read shows it; and,
/// without `upto`, the log's highest id as the same read shows it (`None` when it found no
/// unsealed entry). One statement per batch.
///
/// Ids per object follow write order (the trigger writes the entry while the write holds the
/// row), and an entry this read shows committed after its predecessor did: the predecessor is
/// right even in a snapshot, as long as the snapshot holds no entry of its own transaction,
/// which is why MySQL seals only outside transactions (`capture_db::is_transaction`).
async fn unsealed_after<C: ConnectionTrait>(
    db: &C,
    after: i64,
    upto: Option<i64>,
) -> Result<(Batch, Option<i64>), DbErr> {
    use audit_log::Column as L;
    let backend = db.get_database_backend();
    let q = |ident: &str| quote(backend, ident);
    let (table, id, hash) = (
        q(audit_log::Entity.table_name()),
        q(L::Id.as_str()),
        q(L::Hash.as_str()),
    );
    let (entity_type, object_id) = (q(L::EntityType.as_str()), q(L::ObjectId.as_str()));
    let mut p = Placeholders::new(backend);
    // The aliases cannot collide with a log column: the log's are SeaORM's, without a prefix.
    // 'unsealed' is written as a literal: the partial index of unsealed entries (SQLite,
    // PostgreSQL) serves only a predicate the planner can match to its own, and a prepared
    // statement's generic plan cannot match a parameter (PostgreSQL then scanned the whole
    // log). The lower bound from MIN: PostgreSQL reads that index in a bitmap scan, which
    // visits every entry the index still holds, sealed ones included until a vacuum; MIN
    // walks it in order (marking the dead ones for later walks), so the scan starts at the
    // first unsealed entry.
    let unsealed = literal(UNSEALED);
    let mut values: Vec<sea_orm::Value> = vec![after.into()];
    let after_1 = p.next();
    let (bound, last_entry) = match upto {
        Some(upto) => {
            values.push(upto.into());
            (format!(" AND {id} <= {}", p.next()), String::new())
        }
        None => (
            String::new(),
            format!(", (SELECT MAX(z.{id}) FROM {table} z) AS sea_orm_audit_last_entry"),
        ),
    };
    values.push(after.into());
    let after_2 = p.next();
    // The diff as bytes, read by `limits::lenient_json`: one a trigger wrote that serde_json
    // or sqlx refuses (not UTF-8, a number beyond f64) must not stop every later seal.
    let changes = q(L::Changes.as_str());
    let raw = match backend {
        DbBackend::Postgres => format!("convert_to(r.{changes}::text, 'UTF8')"),
        DbBackend::MySql => format!("CAST(r.{changes} AS BINARY)"),
        _ => format!("CAST(r.{changes} AS BLOB)"),
    };
    let mut columns: Vec<String> = <audit_log::Column as sea_orm::Iterable>::iter()
        .filter(|c| !matches!(c, L::Changes))
        .map(|c| format!("r.{}", q(c.as_str())))
        .collect();
    // SQLite's text may not be UTF-8 (PostgreSQL and MariaDB refuse such text on write).
    if backend == DbBackend::Sqlite {
        columns.push(format!("CAST(r.{object_id} AS BLOB) AS {RAW_OBJECT_ID}"));
    }
    let columns = columns.join(", ");
    let sql = format!(
        "SELECT {columns}, {raw} AS sea_orm_audit_changes, p.{id} AS sea_orm_audit_prev_id, \
         p.{hash} AS sea_orm_audit_prev_hash{last_entry} \
         FROM (SELECT * FROM {table} WHERE {hash} = {unsealed} AND {id} > {after_1}{bound} \
         AND {id} >= (SELECT MIN(m.{id}) FROM {table} m WHERE m.{hash} = {unsealed} \
         AND m.{id} > {after_2}) ORDER BY {id} LIMIT {SEAL_BATCH}) r \
         LEFT JOIN {table} p ON p.{id} = (SELECT MAX(x.{id}) FROM {table} x WHERE \
         x.{entity_type} = r.{entity_type} AND x.{object_id} = r.{object_id} AND x.{id} < r.{id}) \
         ORDER BY r.{id}",
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let last_entry = match (upto, rows.first()) {
        (None, Some(row)) => row.try_get("", "sea_orm_audit_last_entry")?,
        _ => None,
    };
    let last_read = rows
        .last()
        .map(|row| row.try_get::<i64>("", L::Id.as_str()))
        .transpose()?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut unreadable_ids = Vec::new();
    for row in rows {
        if backend == DbBackend::Sqlite && row.try_get::<String>("", L::ObjectId.as_str()).is_err()
        {
            let raw: Option<Vec<u8>> = row.try_get("", RAW_OBJECT_ID).ok().flatten();
            let id: Option<i64> = row.try_get("", L::Id.as_str()).ok();
            if let (Some(raw), Some(id)) = (raw, id)
                && std::str::from_utf8(&raw).is_err()
            {
                unreadable_ids.push((id, String::from_utf8_lossy(&raw).into_owned()));
                continue;
            }
        }
        match unsealed_entry(&row) {
            Ok(entry) => entries.push(entry),
            // Left unsealed (a field other than the diff that sqlx cannot read, such as an
            // object id that is not UTF-8 on SQLite), and the entries after it in its object
            // with it; the others are sealed.
            Err(e) => {
                let id = row.try_get::<i64>("", L::Id.as_str()).ok();
                tracing::warn!(target: "sea_orm_audit", ?id, error = %e, "capture_db::seal: an entry that cannot be read is left unsealed");
            }
        }
    }
    Ok(((entries, last_read, unreadable_ids), last_entry))
}

/// The alias of an entry's object id read as bytes (SQLite).
const RAW_OBJECT_ID: &str = "sea_orm_audit_object_id";

/// Stores an unsealed entry's object id read with U+FFFD (see [`seal`]).
async fn repair_object_id<C: ConnectionTrait>(
    db: &C,
    backend: DbBackend,
    id: i64,
    object_id: &str,
) -> Result<(), DbErr> {
    use audit_log::Column as L;
    let q = |ident: &str| quote(backend, ident);
    let mut p = Placeholders::new(backend);
    let sql = format!(
        "UPDATE {} SET {} = {} WHERE {} = {} AND {} = {}",
        q(audit_log::Entity.table_name()),
        q(L::ObjectId.as_str()),
        p.next(),
        q(L::Id.as_str()),
        p.next(),
        q(L::Hash.as_str()),
        p.next(),
    );
    let values: Vec<sea_orm::Value> = vec![object_id.into(), id.into(), UNSEALED.into()];
    db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// One row of [`unsealed_after`]: the entry, its diff read leniently (and whether that changed
/// it), and its predecessor.
fn unsealed_entry(row: &sea_orm::QueryResult) -> Result<Unsealed, DbErr> {
    use audit_log::Column as L;
    let get_str = |c: L| row.try_get::<String>("", c.as_str());
    let get_opt = |c: L| row.try_get::<Option<String>>("", c.as_str());
    let get_json = |c: L| row.try_get::<Option<serde_json::Value>>("", c.as_str());
    let raw: Option<Vec<u8>> = row.try_get("", "sea_orm_audit_changes")?;
    let (changes, repaired) = match raw {
        Some(bytes) => {
            let (value, repaired) = limits::lenient_json(&bytes);
            (Some(value), repaired)
        }
        None => (None, false),
    };
    let entry = audit_log::Model {
        id: row.try_get("", L::Id.as_str())?,
        entity_type: get_str(L::EntityType)?,
        object_id: get_str(L::ObjectId)?,
        action: get_str(L::Action)?,
        actor: get_opt(L::Actor)?,
        created_at: row.try_get("", L::CreatedAt.as_str())?,
        changes,
        tool: get_opt(L::Tool)?,
        message: get_opt(L::Message)?,
        status: get_str(L::Status)?,
        data: get_json(L::Data)?,
        prev_hash: get_opt(L::PrevHash)?,
        hash: get_opt(L::Hash)?,
    };
    let prev_id: Option<i64> = row.try_get("", "sea_orm_audit_prev_id")?;
    let prev_hash: Option<String> = row.try_get("", "sea_orm_audit_prev_hash")?;
    Ok((entry, repaired, prev_id.map(|id| (id, prev_hash))))
}

/// An entry's hash as stored now: a locking read on MySQL, which sees past the transaction's
/// snapshot, on the primary key only. An entry another transaction holds (a sealer that has
/// not committed yet, a writer about to chain from it) reads as [`UNSEALED`] on MariaDB: it
/// and what follows it are left to the next seal (see [`no_wait`]).
async fn stored_hash<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<String>, DbErr> {
    use audit_log::Column as L;
    let backend = db.get_database_backend();
    let statement = audit_log::Entity::find()
        .select_only()
        .column(L::Hash)
        .filter(L::Id.eq(id))
        .lock_shared()
        .build(backend);
    let read = no_wait(backend, &statement.sql, |sql| {
        db.query_one_raw(Statement {
            sql,
            values: statement.values.clone(),
            db_backend: backend,
        })
    })
    .await?;
    let Some(row) = read else {
        return Ok(Some(UNSEALED.to_owned()));
    };
    Ok(row
        .map(|row| row.try_get::<Option<String>>("", L::Hash.as_str()))
        .transpose()?
        .flatten())
}

/// Stores an entry's `prev_hash` and `hash` (and its diff, where a deferred value was
/// resolved) if it is still unsealed; returns 1 if it was, `None` if another transaction holds
/// it (see [`no_wait`]).
async fn set_hash<C: ConnectionTrait>(
    db: &C,
    backend: sea_orm::DbBackend,
    id: i64,
    prev: Option<String>,
    hash: &str,
    changes: Option<&Option<serde_json::Value>>,
) -> Result<Option<u64>, DbErr> {
    use audit_log::Column as L;
    let q = |ident: &str| quote(backend, ident);
    let mut p = Placeholders::new(backend);
    let mut set = format!(
        "{} = {}, {} = {}",
        q(L::PrevHash.as_str()),
        p.next(),
        q(L::Hash.as_str()),
        p.next()
    );
    let mut values: Vec<sea_orm::Value> = vec![prev.into(), hash.into()];
    if let Some(changes) = changes {
        set.push_str(&format!(", {} = {}", q(L::Changes.as_str()), p.next()));
        values.push(changes.clone().into());
    }
    values.extend([id.into(), UNSEALED.into()]);
    let sql = format!(
        "UPDATE {} SET {set} WHERE {} = {} AND {} = {}",
        q(audit_log::Entity.table_name()),
        q(L::Id.as_str()),
        p.next(),
        q(L::Hash.as_str()),
        p.next(),
    );
    let done = no_wait(backend, &sql, |sql| {
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values.clone()))
    })
    .await?;
    Ok(done.map(|done| done.rows_affected()))
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
