//! Tamper evidence: a hash chain per object, and [`verify`].
//!
//! Every entry stores a hash computed in two levels:
//!
//! ```text
//! digest = hex(SHA-256(canonical content))
//! hash   = hex(SHA-256(digest + "\n" + prev_hash))      (prev_hash "" when NULL)
//! ```
//!
//! `hex` is lowercase hexadecimal (64 characters); the canonical content is a JSON array of the
//! entry's fields (entity type, object id, action, actor, `created_at` as RFC 3339 UTC with
//! microseconds, changes, tool, message, status, data), with object keys sorted at every depth;
//! `prev_hash` is the hash of the previous entry about the same object (same entity type and
//! object id). Editing an entry breaks its hash; deleting, inserting or reordering entries breaks
//! the link of the entry after them. [`verify`] walks every chain and reports each break.
//!
//! **Why two levels.** The second level only hashes ASCII text (two hex digests and a
//! newline), so a database can compute it without knowing the canonicalization: on PostgreSQL
//! an update, delete or event that continues a chain is written by one `INSERT ... SELECT` that
//! reads the chain head and computes the hash with `sha256()` in SQL from the digest
//! computed here, instead of reading the head with a statement of its own first (see
//! `store::reads_head_in_insert` for why that is exact under concurrency). Everything else
//! (SQLite, MySQL, bulk writes, `verify`) computes the same two levels in Rust, through
//! `entry_hash`.
//!
//! **Why one chain per object.** A single global chain would make every audited write in the
//! application wait for every other one (each append must read the previous hash), and on
//! backends without row locks it would fork under concurrent writers. Writers of one object
//! are already serialized: inside a transaction the capture hooks lock the row (`FOR UPDATE` on
//! PostgreSQL and MySQL; SQLite admits one writer at a time) before the chain head is read. So
//! per-object chains are exact under concurrency and cost no statement of their own: the head
//! of an updated or deleted object is read by the log INSERT (PostgreSQL) or with the
//! before-image (SQLite, and MySQL in a locking subquery; see `capture`). A create reads
//! nothing: it starts a new segment of its object's chain (`prev_hash` NULL, valid only as the
//! object's first entry or right after its delete).
//!
//! **Limits.** Hashes are not keyed: someone who can rewrite the table and recompute every later
//! hash of a chain can forge it; copy hashes elsewhere (a SIEM, see listeners) to anchor them.
//! Deleting the newest entries of a chain leaves no trace in the chain itself. Writes outside a
//! transaction are not serialized: two concurrent writers of one object can fork its chain,
//! which `verify` reports as a [`ProblemKind::Fork`], distinct from tampering. Events lock no
//! row: concurrent events about one object can fork its chain on PostgreSQL even inside
//! transactions; on MySQL their head read is a `SELECT ... FOR UPDATE`, which serializes them
//! inside transactions, but InnoDB resolves two of them waiting on each other's gap lock with a
//! deadlock error (the transaction must be retried; see `tests/concurrency.rs`).

use chrono::{DateTime, Datelike, Timelike, Utc};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityName, EntityTrait, IdenStatic,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

use crate::audit_log;
use crate::sql::{Placeholders, quote};

/// The `hash` a SQLite or MySQL capture trigger writes: the entry waits for `capture_db::seal`.
pub(crate) const UNSEALED: &str = "unsealed";

/// Entity type and action of the marker rows written by retention pruning.
pub(crate) const PRUNE_ENTITY: &str = "audit_log";
pub(crate) const PRUNE_ACTION: &str = "prune";

/// The fields an entry's hash covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Content<'a> {
    pub(crate) entity_type: &'a str,
    pub(crate) object_id: &'a str,
    pub(crate) action: &'a str,
    pub(crate) actor: Option<&'a str>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) changes: Option<&'a Json>,
    pub(crate) tool: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    pub(crate) status: &'a str,
    pub(crate) data: Option<&'a Json>,
}

impl<'a> Content<'a> {
    pub(crate) fn of(row: &'a audit_log::Model) -> Self {
        Content {
            entity_type: &row.entity_type,
            object_id: &row.object_id,
            action: &row.action,
            actor: row.actor.as_deref(),
            created_at: row.created_at,
            changes: row.changes.as_ref(),
            tool: row.tool.as_deref(),
            message: row.message.as_deref(),
            status: &row.status,
            data: row.data.as_ref(),
        }
    }
}

/// Timestamps are stored with microsecond precision on every backend; hash what is stored.
pub(crate) fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = at.timestamp_subsec_nanos();
    at - chrono::Duration::nanoseconds(i64::from(nanos % 1000))
}

/// The entry hash (see the module docs): [`link_hash`] of the content's [`content_digest`].
/// The one function every Rust path (writes, `verify`) hashes entries with.
pub(crate) fn entry_hash(c: &Content<'_>, prev: Option<&str>) -> String {
    link_hash(&content_digest(c), prev)
}

/// First level: hex SHA-256 of the canonical content text.
///
/// Runs once per entry written and per entry verified, so it writes the text straight into one
/// byte buffer (no intermediate `String`s per field, no `strftime` parsing): it was the larger
/// part of the library's own CPU time per audited insert.
pub(crate) fn content_digest(c: &Content<'_>) -> String {
    let mut text = Vec::with_capacity(512);
    text.push(b'[');
    for (i, s) in [
        Some(c.entity_type),
        Some(c.object_id),
        Some(c.action),
        c.actor,
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            text.push(b',');
        }
        opt_str(&mut text, *s);
    }
    text.push(b',');
    write_timestamp(&mut text, truncate_to_micros(c.created_at));
    text.push(b',');
    opt_json(&mut text, c.changes);
    for s in [c.tool, c.message, Some(c.status)] {
        text.push(b',');
        opt_str(&mut text, s);
    }
    text.push(b',');
    opt_json(&mut text, c.data);
    text.push(b']');
    sha256_hex(&text)
}

/// `created_at` as a JSON string, `"%Y-%m-%dT%H:%M:%S%.6fZ"` in chrono's terms.
fn write_timestamp(out: &mut Vec<u8>, at: DateTime<Utc>) {
    let year = at.year();
    let nanos = at.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Signed years and leap seconds: rare enough to leave to chrono's formatter.
        write_str(out, &at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        return;
    }
    out.push(b'"');
    push_digits(out, year.unsigned_abs(), 4);
    for (sep, value) in [(b'-', at.month()), (b'-', at.day()), (b'T', at.hour())] {
        out.push(sep);
        push_digits(out, value, 2);
    }
    for (sep, value) in [(b':', at.minute()), (b':', at.second())] {
        out.push(sep);
        push_digits(out, value, 2);
    }
    out.push(b'.');
    push_digits(out, nanos / 1000, 6);
    out.extend_from_slice(b"Z\"");
}

/// `value` in decimal, zero-padded to `width` digits (`value` has at most `width` digits).
fn push_digits(out: &mut Vec<u8>, value: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        // `value / div % 10` is a single decimal digit, so the cast cannot truncate.
        out.push(b'0' + (value / div % 10) as u8);
        div /= 10;
    }
}

/// The text the second level starts with: the digest and the separator. PostgreSQL's
/// [`POSTGRES_LINK_HASH`] takes it as one bound parameter, so no SQL string literal has to spell
/// a newline (escape syntax differs between databases and settings).
pub(crate) fn link_prefix(digest: &str) -> String {
    let mut text = String::with_capacity(digest.len() + 1 + 64);
    text.push_str(digest);
    text.push('\n');
    text
}

/// Second level: hex SHA-256 of `digest + "\n" + prev` (`prev` empty for the first entry of a
/// segment). [`POSTGRES_LINK_HASH`] computes the same in SQL.
pub(crate) fn link_hash(digest: &str, prev: Option<&str>) -> String {
    let mut text = link_prefix(digest);
    text.push_str(prev.unwrap_or(""));
    sha256_hex(text.as_bytes())
}

/// [`link_hash`] in PostgreSQL 11+ SQL, over `{prefix}` (a parameter bound to [`link_prefix`])
/// and `{prev}` (the previous hash, NULL for none). The text hashed is ASCII (hex digits and a
/// newline), so the encoding cannot change its bytes; `encode(.., 'hex')` is lowercase, like
/// [`sha256_hex`]. SQLite has no SHA-256 function, and MySQL reads the head with the
/// before-image (see `capture`), so neither needs one.
pub(crate) const POSTGRES_LINK_HASH: &str =
    "encode(sha256(convert_to({prefix} || coalesce({prev}, ''), 'UTF8')), 'hex')";

fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_json(out: &mut Vec<u8>, v: Option<&Json>) {
    match v {
        Some(v) => canonical(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string, escaped as serde_json escapes it (the same input always gives the same text).
fn write_str(out: &mut Vec<u8>, s: &str) {
    write_json(out, &s);
}

/// Appends serde_json's compact text of `value`: what `Json`'s `Display` prints.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Cannot fail: strings, numbers, booleans and null always serialize, and writing to a `Vec`
    // never errs (`Json`'s `Display`, used here before, relies on the same).
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Canonical JSON: object keys sorted at every depth, numbers as serde_json prints the parsed
/// value, negative zero as zero (PostgreSQL's jsonb has no negative zero).
fn canonical(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                canonical(out, v);
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(out, item);
            }
            out.push(b']');
        }
        Json::Number(n) if n.as_f64() == Some(0.0) && !n.is_i64() && !n.is_u64() => {
            out.extend_from_slice(b"0.0")
        }
        other => write_json(out, other),
    }
}

/// The newest hash of one object's chain (served by `idx_audit_log_object`); the entity type
/// and the object id are bound to the next two placeholders of `p`. Written out rather than built: it runs once
/// per audited update, delete and event, and SeaORM's query builder cost more CPU than the
/// rest of the log write. The literal `LIMIT 1` also keeps SQLite from re-preparing the
/// statement on every execution (it does for a bound LIMIT it planned with).
///
/// With `FOR UPDATE` on MySQL, whose REPEATABLE READ snapshot could otherwise predate the row
/// lock just taken: a locking read reads the newest committed row and waits for uncommitted
/// ones.
pub(crate) fn head_sql(backend: DbBackend, p: &mut Placeholders) -> String {
    use audit_log::Column as Col;
    let lock = if backend == DbBackend::MySql {
        " FOR UPDATE"
    } else {
        ""
    };
    let q = |name: &str| quote(backend, name);
    format!(
        "SELECT {hash} FROM {table} WHERE {entity_type} = {a} AND {object_id} = {b} ORDER BY \
         {id} DESC LIMIT 1{lock}",
        hash = q(Col::Hash.as_str()),
        table = q(audit_log::Entity.table_name()),
        entity_type = q(Col::EntityType.as_str()),
        a = p.next(),
        object_id = q(Col::ObjectId.as_str()),
        b = p.next(),
        id = q(Col::Id.as_str()),
    )
}

/// [`head_sql`] as a scalar subquery, for the before-image (see `capture`).
pub(crate) fn head_subquery(backend: DbBackend, entity_type: &str, object_id: &str) -> SimpleExpr {
    let sql = head_sql(backend, &mut Placeholders::new(backend));
    Expr::cust_with_values(format!("({sql})"), [entity_type, object_id])
}

/// The newest hash of one object's chain, read so that it is current (see [`head_sql`]).
pub(crate) async fn head<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Option<String>, DbErr> {
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        head_sql(backend, &mut Placeholders::new(backend)),
        [entity_type.into(), object_id.into()],
    );
    match db.query_one_raw(statement).await? {
        Some(row) => row.try_get("", "hash"),
        None => Ok(None),
    }
}

/// Newest hashes of many objects of one entity type (for bulk writes), `object_id -> hash`.
pub(crate) async fn heads<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_ids: &[String],
) -> Result<HashMap<String, String>, DbErr> {
    let mut out = HashMap::with_capacity(object_ids.len());
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        for chunk in object_ids.chunks(crate::sql::KEYS_PER_STATEMENT) {
            out.extend(postgres_heads(db, entity_type, chunk).await?);
        }
        return Ok(out);
    }
    for chunk in object_ids.chunks(crate::sql::KEYS_PER_STATEMENT) {
        let newest = audit_log::Entity::find()
            .select_only()
            .column_as(audit_log::Column::Id.max(), "id")
            .filter(audit_log::Column::EntityType.eq(entity_type))
            .filter(audit_log::Column::ObjectId.is_in(chunk.iter().map(String::as_str)))
            .group_by(audit_log::Column::ObjectId);
        let ids: Vec<i64> = newest.into_tuple().all(db).await?;
        if ids.is_empty() {
            continue;
        }
        let mut query = audit_log::Entity::find()
            .select_only()
            .column(audit_log::Column::ObjectId)
            .column(audit_log::Column::Hash)
            .filter(audit_log::Column::Id.is_in(ids));
        if db.get_database_backend() == sea_orm::DbBackend::MySql {
            query = query.lock_exclusive();
        }
        let rows: Vec<(String, Option<String>)> = query.into_tuple().all(db).await?;
        out.extend(rows.into_iter().filter_map(|(id, hash)| Some((id, hash?))));
    }
    Ok(out)
}

/// PostgreSQL: one index lookup per object, whatever the table's statistics. The
/// `MAX(id) ... IN (...) GROUP BY` form used elsewhere was planned as a filter over the whole
/// type on a freshly grown table (6 s per 1,000 objects at 50,000 rows, found by the benchmark).
async fn postgres_heads<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_ids: &[String],
) -> Result<Vec<(String, String)>, DbErr> {
    let mut p = Placeholders::new(DbBackend::Postgres);
    let mut sql = p.fill(
        "SELECT v.object_id, (SELECT a.hash FROM audit_log a WHERE a.entity_type = {p} AND \
         a.object_id = v.object_id ORDER BY a.id DESC LIMIT 1) AS hash FROM (VALUES ",
    );
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(object_ids.len() + 1);
    values.push(entity_type.into());
    for (i, id) in object_ids.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&p.fill("({p}::text)"));
        values.push(id.as_str().into());
    }
    sql.push_str(") AS v(object_id)");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let object_id: String = row.try_get("", "object_id")?;
        let hash: Option<String> = row.try_get("", "hash")?;
        if let Some(hash) = hash {
            out.push((object_id, hash));
        }
    }
    Ok(out)
}

/// What is wrong with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The stored hash does not match the entry's content: the entry was edited.
    ContentChanged,
    /// The entry does not link to the previous entry of its object: entries were deleted,
    /// inserted or reordered before it (or, outside transactions, two writers forked the chain).
    BrokenLink {
        /// The hash of the previous remaining entry of the object (`None`: there is none).
        expected: Option<String>,
        /// The `prev_hash` the entry carries.
        found: Option<String>,
    },
    /// The entry has no hash at all: it was not written by sea-orm-audit.
    MissingHash,
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
pub async fn verify<C: ConnectionTrait>(db: &C) -> Result<Report, DbErr> {
    verify_filtered(db, None).await
}

/// [`verify`] for one object's chain.
pub async fn verify_object<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    object_id: &str,
) -> Result<Report, DbErr> {
    verify_filtered(db, Some((entity_type, object_id))).await
}

async fn verify_filtered<C: ConnectionTrait>(
    db: &C,
    only: Option<(&str, &str)>,
) -> Result<Report, DbErr> {
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
        let rows = query.all(db).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in rows {
            report.checked += 1;
            if let Some(kind) = check(&row, &mut chains, &pruned) {
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
    for chains in markers
        .iter()
        .flatten()
        .filter_map(|d| d.get("chains")?.as_array())
    {
        for chain in chains {
            let (Some(entity_type), Some(object_id), Some(id), Some(hash)) = (
                chain.get(0).and_then(Json::as_str),
                chain.get(1).and_then(Json::as_str),
                chain.get(2).and_then(Json::as_i64),
                chain.get(3).and_then(Json::as_str),
            ) else {
                continue;
            };
            let key = (entity_type.to_owned(), object_id.to_owned());
            // Pruned more than once: the newest removal is the one the chain now starts after.
            if pruned.get(&key).is_none_or(|(seen, _)| *seen < id) {
                pruned.insert(key, (id, hash.to_owned()));
            }
        }
    }
    Ok(pruned)
}

fn key_of(row: &audit_log::Model) -> (String, String) {
    (row.entity_type.clone(), row.object_id.clone())
}

fn check(
    row: &audit_log::Model,
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
    let problem = match &row.hash {
        None => Some(ProblemKind::MissingHash),
        Some(stored) if *stored != entry_hash(&Content::of(row), row.prev_hash.as_deref()) => {
            Some(ProblemKind::ContentChanged)
        }
        Some(_) => match link {
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
            .filter_map(|r| check(r, &mut chains, &pruned).map(|k| (r.id, k)))
            .collect()
    }

    /// Pins the chain format (see the module docs) to values computed outside this crate
    /// (Python's hashlib), so a change to the canonical text or the second level shows here.
    #[test]
    fn the_hash_format_is_stable() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05.123456789Z".parse().unwrap();
        let changes = serde_json::json!({"b": 1, "a": [-0.0]});
        let content = Content {
            entity_type: "post",
            object_id: "7",
            action: "update",
            actor: Some("alice"),
            created_at: at,
            changes: Some(&changes),
            tool: None,
            message: Some("hi \"x\"\n"),
            status: "success",
            data: None,
        };
        // sha256 of ["post","7","update","alice","2026-01-02T03:04:05.123456Z",
        // {"a":[0.0],"b":1},null,"hi \"x\"\n","success",null]
        let digest = "97de1ad42b7d70be2ec51b7560a7b422b621a2b37a5edec6d7c9c9a78b59cae3";
        assert_eq!(content_digest(&content), digest);
        let prev = "ab".repeat(32);
        // sha256 of digest + "\n" (+ prev)
        assert_eq!(
            entry_hash(&content, None),
            "b13854dd73407726606dff23be1e6206d322afcbbac451fcac15fe9fb3caeebe"
        );
        assert_eq!(
            entry_hash(&content, Some(&prev)),
            "7d44321a7fe92c286f34d3b6f88b07697bfe4271f2b642b9f12bd6327326ed17"
        );
        assert_eq!(
            entry_hash(&content, Some(&prev)),
            link_hash(digest, Some(&prev))
        );

        // Escapes, non-ASCII text, nested keys, floats, big integers, data.
        let changes = serde_json::json!({
            "b": 1,
            "c": {"z": [2.5e-8, 1e300, -12, u64::MAX], "y": "é🦀"},
            "a": [-0.0],
        });
        let data = serde_json::json!({"n": null, "k": true});
        let content = Content {
            changes: Some(&changes),
            message: Some("hi \"x\"\n\u{1f}\\"),
            data: Some(&data),
            ..content
        };
        // sha256 of ["post","7","update","alice","2026-01-02T03:04:05.123456Z",{"a":[0.0],"b":1,
        // "c":{"y":"é🦀","z":[2.5e-8,1e+300,-12,18446744073709551615]}},null,
        // "hi \"x\"\n\u001f\\","success",{"k":true,"n":null}]
        assert_eq!(
            content_digest(&content),
            "9a9f3e30644201cc67c74755b1a264eab3e7f8fd98d05c268399026eb8c69616"
        );
    }

    #[test]
    fn timestamps_are_written_as_chrono_formats_them() {
        let cases = [
            "2026-01-02T03:04:05.123456Z",
            "2026-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "0000-01-01T00:00:00.000001Z",
            "0999-07-08T09:10:11.5Z",
            "9999-12-31T23:59:59.999999Z",
            "+10000-01-01T00:00:00Z",
            "-0001-01-01T00:00:00Z",
        ];
        for case in cases {
            let at: DateTime<Utc> = case.parse().unwrap();
            let mut fast = Vec::new();
            write_timestamp(&mut fast, at);
            let mut chrono = Vec::new();
            write_str(
                &mut chrono,
                &at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            );
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(chrono).unwrap()
            );
        }
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
}
