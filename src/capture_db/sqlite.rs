//! SQLite: three row triggers per table that write the entry with the hash left to
//! [`seal`](super::seal), since SQLite has no SHA-256 function (an application function
//! would make every other program's writes to the table fail).
//!
//! The triggers write `hash = 'unsealed'` and no `prev_hash`; `seal` fills both in id order,
//! from the row as stored, exactly as `verify` recomputes them. Each hash depends only on the
//! entry and its predecessor, so two sealers racing compute the same values and need no
//! transaction. The context comes from the one row of `sea_orm_audit_context`, which
//! [`transaction`](super::transaction) writes inside its transaction and deletes before
//! committing: SQLite admits one writer, so no other connection's write can run while the row
//! exists, and it is never committed. On a pool built with `carry_context`, an entry written
//! with no context row in effect gets the context the acquiring task left in the connection's
//! temporary table, from a temporary trigger of that connection (see `arm_sql`): the triggers
//! here cannot read a temporary table.

use std::sync::LazyLock;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityName, IdenStatic, Statement};
use serde_json::Value as Json;

use super::{ContextRow, Drift, Encoding, KEY_REFUSAL, LOCAL_REFUSED, Role, Spec};
use crate::audit_log;
use crate::chain::UNSEALED;
use crate::diff::FILTERED;
use crate::error::Error;
use crate::limits::{DEFERRED, MAX_JSON_DEPTH, MAX_KEY_CHARS};
use crate::sql::{literal, quote};

/// The context the triggers read (one row, `id = 1`, only inside `capture_db::transaction`).
const CONTEXT_TABLE: &str = "sea_orm_audit_context";
/// `carry_context`'s table of the acquiring task's context, in each connection's temporary
/// schema (one row, `id = 1`), with the token that tells the connection apart.
pub(super) const CARRY_TABLE: &str = "sea_orm_audit_carried";
/// `carry_context`'s temporary trigger on `audit_log`, one per connection.
#[cfg(feature = "sqlx-sqlite")]
const CARRY_TRIGGER: &str = "sea_orm_audit_carry";

fn q(ident: &str) -> String {
    quote(DbBackend::Sqlite, ident)
}

fn trigger_names(table: &str) -> [String; 3] {
    ["insert", "update", "delete"].map(|op| format!("sea_orm_audit_{table}_{op}"))
}

/// Why SQLite cannot encode `enc` as the hooks do, if it cannot.
fn refusal(enc: Encoding) -> Option<&'static str> {
    match enc {
        Encoding::Decimal => Some(
            "SQLite stores a Decimal as REAL (15 significant digits) and SeaORM reads it back \
             through f64, so the digits the hooks log are not in the database; store it as text \
             (a String field) or exclude it",
        ),
        Encoding::LocalDateTime => Some(LOCAL_REFUSED),
        _ => None,
    }
}

/// Whether JSON text `x` has more brackets than `MAX_JSON_DEPTH` levels, so may nest deeper:
/// SQLite cannot measure the depth in SQL, and its JSON functions fail on text nested deeper
/// than their own limit. Such a value is logged (see [`value_expr`]) and compared (see
/// [`json_differs`]) as its text.
fn may_nest_too_deep(x: &str) -> String {
    format!("length({x}) - length(replace(replace({x}, '[', ''), '{{', '')) > {MAX_JSON_DEPTH}")
}

/// Whether JSON column values `old` and `new` differ as the hooks compare them: as the values
/// serde_json reads (key order, white space, escapes in strings and `1.0`/`1.00` do not count;
/// `1` and `1.0` do, an integer and a float), SQL NULL the same as JSON `null`. Equal bytes are
/// equal in any collation; otherwise both sides' `json_tree` rows (path, type, value) are
/// compared as sets, in a `CASE` so that only a changed text is walked.
///
/// Where SQLite's reading of a number may not be serde_json's, two texts whose rows are equal
/// count as a change (an entry more, never one less): with 18 significant digits or more in
/// a number (SQLite's parser is not correctly rounded: 14 of 20,000 random 20-digit numbers
/// read as another double than Rust's parser gives, SQLite 3.51.1; beyond `i64` SQLite reads
/// an integer as a double, serde_json as a `u64` up to 2^64), `-0` (an integer 0 for SQLite,
/// the float -0.0 for serde_json), an exponent of -60 or less or of three digits (of the
/// shortest texts of 20,000 random doubles between 1e-98 and 1e-90, 4,289 read as another
/// double, none between 1e-30 and 1e60). So does a key repeated in one object
/// (serde_json keeps its last value; the sets hold both). Those are looked for only then,
/// after the walks. A value with more brackets than the depth limit is compared as text
/// without a walk: it is logged as its text (see [`value_expr`]; the seal may then give both
/// sides the same marker). Escapes in keys count as changes.
fn json_differs(old: &str, new: &str) -> String {
    let digits = "[0-9]".repeat(18);
    let read_otherwise = |x: &str| {
        let x = format!("coalesce({x}, 'null')");
        [
            format!("replace({x}, '.', '') GLOB '*{digits}*'"),
            format!("{x} GLOB '*-0[^0-9.eE]*'"),
            format!("{x} GLOB '*-0'"),
            format!("{x} GLOB '*[eE]-[6-9][0-9]*'"),
            format!("{x} GLOB '*[eE][0-9][0-9][0-9]*'"),
            format!("{x} GLOB '*[eE][-+][0-9][0-9][0-9]*'"),
            format!("(SELECT count(*) <> count(DISTINCT fullkey) FROM json_tree({x}))"),
        ]
        .join(" OR ")
    };
    let tree =
        |x: &str| format!("SELECT fullkey, type, atom FROM json_tree(coalesce({x}, 'null'))");
    format!(
        "(CASE WHEN {old} COLLATE BINARY IS {new} COLLATE BINARY THEN 0 WHEN {} OR {} THEN 1 \
         WHEN EXISTS ({} EXCEPT {}) OR EXISTS ({} EXCEPT {}) THEN 1 ELSE {} OR {} END)",
        may_nest_too_deep(old),
        may_nest_too_deep(new),
        tree(old),
        tree(new),
        tree(new),
        tree(old),
        read_otherwise(old),
        read_otherwise(new)
    )
}

/// `x`'s bytes in base64 (standard alphabet, padded). SQLite has no base64 function and a
/// trigger admits no CTE: the hex digits, padded to whole 3-byte groups, are read 3 at a
/// time (12 bits, two base64 digits) over the rows of `json_each` of an array of that many
/// zeros, then the padding digits are replaced by `=`. `group_concat(.. ORDER BY ..)` needs
/// SQLite 3.44 in every program that writes the table.
fn base64_expr(x: &str) -> String {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let n = format!("length(CAST({x} AS BLOB))");
    let pad = format!("((3 - {n} % 3) % 3)");
    let nibble =
        |i: usize| format!("(instr('0123456789ABCDEF', substr(b.h, 3 * j.key + {i}, 1)) - 1)");
    let digits = format!(
        "(SELECT group_concat(substr('{ALPHABET}', u.v / 64 + 1, 1) || substr('{ALPHABET}', u.v % 64 + 1, 1), '' ORDER BY u.k) \
         FROM (SELECT j.key AS k, {} * 256 + {} * 16 + {} AS v \
         FROM (SELECT hex({x}) || substr('0000', 1, 2 * {pad}) AS h) AS b, \
         json_each('[' || substr(replace(hex(zeroblob(length(b.h) / 3)), '00', ',0'), 2) || ']') AS j) AS u)",
        nibble(1),
        nibble(2),
        nibble(3),
    );
    format!(
        "CASE WHEN {x} IS NULL THEN NULL ELSE substr(coalesce({digits}, ''), 1, ({n} + {pad}) / 3 * 4 - {pad}) || substr('==', 1, {pad}) END"
    )
}

/// The SQL value `json_object` gets for column value `x` (NULL stays NULL), as
/// `value::to_json` encodes it, from the text sqlx stores: dates and times as text in
/// chrono's or `time`'s own formats (turned into the hooks' where they differ: the `T`, the
/// `time` crate's unpadded hour), UUIDs as 16-byte blobs. Text another program wrote in
/// another format is logged as stored.
fn value_expr(enc: Encoding, x: &str) -> String {
    let unpadded_hour =
        |t: &str| format!("CASE WHEN substr({t}, 1, 1) = '0' THEN substr({t}, 2) ELSE {t} END");
    // sqlx's text of a timestamp with the hooks' `T` for the space after its date part (10
    // characters, up to 13 for a year outside 0-9999: `+262142-12-31`, `-0043-03-15`), and its
    // time part as `time` gives it.
    let with_t = |x: &str, time: fn(&str) -> String| {
        let space = format!("instr({x}, ' ')");
        format!(
            "CASE WHEN {space} BETWEEN 11 AND 14 THEN substr({x}, 1, {space} - 1) || 'T' || {} \
             ELSE {x} END",
            time(&format!("substr({x}, {space} + 1)"))
        )
    };
    match enc {
        Encoding::Int
        | Encoding::Text
        | Encoding::Date
        | Encoding::Time
        | Encoding::UtcDateTime
        | Encoding::TimeOffsetDateTime => x.to_owned(),
        Encoding::Bool => {
            format!(
                "CASE WHEN {x} IS NULL THEN NULL WHEN {x} THEN json('true') ELSE json('false') END"
            )
        }
        // 17 significant digits read back as the same double; a point keeps it a float.
        Encoding::Float => format!(
            "CASE WHEN {x} IS NULL THEN NULL WHEN {x} > 1.7976931348623157e308 THEN 'Infinity' \
             WHEN {x} < -1.7976931348623157e308 THEN '-Infinity' \
             ELSE json(printf('%!.17g', {x})) END"
        ),
        // A value that may nest deeper than the limit (more brackets than levels allowed):
        // its text, deferred to `seal` (SQLite cannot hash, nor measure the depth in SQL). So
        // is a string that starts with the prefix, which the seal would otherwise take for a
        // deferred value: it reads it back as the same string.
        Encoding::Json => format!(
            "CASE WHEN {} OR (instr({x}, {prefix}) > 0 AND json_type({x}) = 'text') \
             THEN {prefix} || {x} ELSE json({x}) END",
            may_nest_too_deep(x),
            prefix = literal(DEFERRED)
        ),
        Encoding::Bytes => base64_expr(x),
        Encoding::Uuid => format!(
            "CASE WHEN typeof({x}) = 'blob' AND length({x}) = 16 THEN lower(substr(hex({x}), 1, 8) \
             || '-' || substr(hex({x}), 9, 4) || '-' || substr(hex({x}), 13, 4) || '-' \
             || substr(hex({x}), 17, 4) || '-' || substr(hex({x}), 21)) ELSE {x} END"
        ),
        Encoding::NaiveDateTime => with_t(x, |time| time.to_owned()),
        Encoding::TimeTime => unpadded_hour(x),
        Encoding::TimeDateTime => with_t(x, unpadded_hour),
        // Refused by `refusal` before any SQL is generated.
        Encoding::Decimal | Encoding::LocalDateTime => "NULL".to_owned(),
    }
}

/// `value`, the diff's value of column value `x`, unless `x` is text that starts with
/// [`DEFERRED`] (any SQLite column can hold text): then that text, deferred as a JSON string,
/// which the seal turns back into the same string. Otherwise the seal would read the text after
/// the prefix as a deferred JSON value and log that instead. The encodings left out write no
/// such text (JSON columns are handled in [`value_expr`]). Every other encoding passes text
/// that starts so through unchanged, so the string is the one `value` would have logged.
fn unforgeable(enc: Encoding, x: &str, value: String) -> String {
    if matches!(
        enc,
        Encoding::Json | Encoding::Bool | Encoding::Float | Encoding::Bytes
    ) {
        return value;
    }
    let prefix = literal(DEFERRED);
    format!(
        "CASE WHEN substr({x}, 1, {}) = {prefix} THEN {prefix} || json_quote({x}) ELSE {value} END",
        DEFERRED.chars().count()
    )
}

/// `'name', value` pairs of every logged column of `row`, sorted by name.
fn object_args(spec: &Spec, row: &str) -> String {
    let mut args = Vec::new();
    for c in spec.logged_sorted() {
        let x = format!("{row}.{}", q(c.name));
        let value = match c.role {
            // A JSON column's JSON null (stored as the text `null`) stays null, as the hooks
            // keep it: nothing to hide.
            Role::Masked if c.encoding == Encoding::Json => format!(
                "CASE WHEN {x} IS NULL OR trim({x}) = 'null' THEN NULL ELSE {} END",
                literal(FILTERED)
            ),
            Role::Masked => format!(
                "CASE WHEN {x} IS NULL THEN NULL ELSE {} END",
                literal(FILTERED)
            ),
            _ => unforgeable(c.encoding, &x, value_expr(c.encoding, &x)),
        };
        args.push(format!("{}, {value}", literal(c.name)));
    }
    args.join(", ")
}

/// Whether a key of this encoding has a plain text as its object id (or, in a composite
/// key, a JSON scalar `json_array` writes as the hooks do).
fn key_encodable(enc: Encoding) -> bool {
    !matches!(
        enc,
        Encoding::Bool
            | Encoding::Float
            | Encoding::Json
            | Encoding::Decimal
            | Encoding::LocalDateTime
    )
}

/// The object id, as `auditable::object_id`.
fn key_expr(spec: &Spec, row: &str) -> Result<String, Error> {
    let value = |i: usize| {
        let c = &spec.columns[i];
        value_expr(c.encoding, &format!("{row}.{}", q(c.name)))
    };
    for i in &spec.key {
        let c = &spec.columns[*i];
        if !key_encodable(c.encoding) {
            return Err(spec.unsupported(
                c.name,
                "a key of this type has no object id the triggers write",
            ));
        }
    }
    Ok(match spec.key.as_slice() {
        [only] if spec.columns[*only].encoding == Encoding::Int => {
            format!("CAST({} AS TEXT)", value(*only))
        }
        [only] => value(*only),
        keys => format!(
            "json_array({})",
            keys.iter()
                .map(|i| value(*i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// The three `CREATE TRIGGER` statements (insert, update, delete).
fn triggers_sql(spec: &Spec) -> Result<[String; 3], Error> {
    let columns: Vec<String> = super::log_columns(DbBackend::Sqlite);
    let insert_into = format!(
        "INSERT INTO {} ({})",
        q(audit_log::Entity.table_name()),
        columns.join(", ")
    );
    let table = q(spec.table);
    let entity_type = literal(spec.entity_type);
    // sqlx writes `DateTime<Utc>` as RFC 3339 with `+00:00`; SQLite's clock has milliseconds.
    let now = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')";
    let context = format!(
        "FROM (SELECT 1) LEFT JOIN {} c ON c.id = 1",
        q(CONTEXT_TABLE)
    );
    // An object id the log cannot hold fails the write, as the hooks refuse it.
    let check_key = spec.key_needs_check();
    let row = |action: &str, key: &str, changes: &str| {
        let key = if check_key {
            format!(
                "CASE WHEN length({key}) > {MAX_KEY_CHARS} OR instr({key}, char(0)) > 0 \
                 THEN RAISE(ABORT, {}) ELSE {key} END",
                literal(KEY_REFUSAL)
            )
        } else {
            key.to_owned()
        };
        format!(
            "{insert_into} SELECT {entity_type}, {key}, '{action}', c.actor, {now}, {changes}, \
             c.tool, NULL, 'success', c.data, NULL, {} {context};",
            literal(UNSEALED)
        )
    };
    let [insert_name, update_name, delete_name] = trigger_names(spec.table);
    spec.require(refusal)?;
    let (new_all, old_all) = (object_args(spec, "NEW"), object_args(spec, "OLD"));
    let (insert, delete) = super::insert_and_delete_triggers(
        [&q(&insert_name), &q(&delete_name)],
        &table,
        "json_object",
        [&key_expr(spec, "NEW")?, &key_expr(spec, "OLD")?],
        [&new_all, &old_all],
        row,
    );
    // An update lists every column, then removes the unchanged ones from both sides.
    let mut changed = Vec::new();
    let mut unchanged_paths = Vec::new();
    for c in spec.logged_sorted() {
        let (old, new) = (format!("OLD.{}", q(c.name)), format!("NEW.{}", q(c.name)));
        // Byte for byte, as the hooks compare: a column declared `COLLATE NOCASE` (or
        // `RTRIM`) holds 'bob' and 'BOB' equal, and its change would go unlogged.
        let differs = if c.encoding == Encoding::Json {
            json_differs(&old, &new)
        } else {
            format!("{old} COLLATE BINARY IS NOT {new} COLLATE BINARY")
        };
        let path = literal(&format!("$.{}", Json::from(c.name)));
        unchanged_paths.push(format!(
            "CASE WHEN {differs} THEN '$.\"sea_orm_audit: none\"' ELSE {path} END"
        ));
        changed.push(differs);
    }
    let (new_key, old_key) = (key_expr(spec, "NEW")?, key_expr(spec, "OLD")?);
    let rekeyed = format!("({new_key}) COLLATE BINARY IS NOT ({old_key}) COLLATE BINARY");
    // With no column logged (every one excluded), only a new key is logged, as the hooks log
    // no empty diff.
    let when = if spec.log_unchanged {
        String::new()
    } else {
        let any = changed.iter().chain([&rekeyed]).cloned();
        format!(" WHEN {}", any.collect::<Vec<_>>().join(" OR "))
    };
    let remove = |all: &str| {
        if unchanged_paths.is_empty() {
            format!("json_object({all})")
        } else {
            format!(
                "json_remove(json_object({all}), {})",
                unchanged_paths.join(", ")
            )
        }
    };
    // A new key is a new object: the old one's delete, then the new one's create (each
    // object's chain stays its own), as on every backend.
    let only_if = |statement: String, condition: &str| {
        format!("{} WHERE {condition};", statement.trim_end_matches(';'))
    };
    let update = format!(
        "CREATE TRIGGER {} AFTER UPDATE ON {table} FOR EACH ROW{when} BEGIN\n{}\n{}\n{}\nEND",
        q(&update_name),
        only_if(
            row(
                "update",
                &new_key,
                &format!(
                    "json_object('new_value', {}, 'old_value', {})",
                    remove(&new_all),
                    remove(&old_all)
                ),
            ),
            &format!("NOT {rekeyed}")
        ),
        only_if(
            row(
                "delete",
                &old_key,
                &format!(
                    "json_object('new_value', json_object(), 'old_value', json_object({old_all}))"
                ),
            ),
            &rekeyed
        ),
        only_if(
            row(
                "create",
                &new_key,
                &format!(
                    "json_object('new_value', json_object({new_all}), 'old_value', json_object())"
                ),
            ),
            &rekeyed
        ),
    );
    Ok([insert, update, delete])
}

fn fingerprint(triggers: &[String; 3]) -> String {
    super::fingerprint(&triggers.join("\n"))
}

async fn run<C: ConnectionTrait>(db: &C, sql: &str) -> Result<(), DbErr> {
    db.execute_unprepared(sql).await.map(|_| ())
}

async fn table_exists<C: ConnectionTrait>(db: &C, table: &str) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = ?",
            [table.into()],
        ))
        .await?;
    Ok(row.is_some())
}

pub(super) async fn install<C: ConnectionTrait>(db: &C, spec: &Spec) -> Result<(), DbErr> {
    if !table_exists(db, spec.table).await? {
        return Err(Error::NoSuchTable {
            table: spec.table.to_owned(),
        }
        .into());
    }
    let triggers = triggers_sql(spec)?;
    let registry = super::registry(spec, fingerprint(&triggers));
    run(
        db,
        &format!(
            "CREATE TABLE IF NOT EXISTS {} (id INTEGER PRIMARY KEY CHECK (id = 1), actor TEXT, \
             tool TEXT, data TEXT)",
            q(CONTEXT_TABLE)
        ),
    )
    .await?;
    // What `seal` looks for, without scanning the log.
    run(
        db,
        &format!(
            "CREATE INDEX IF NOT EXISTS idx_audit_log_unsealed ON {} ({}) WHERE {} = {}",
            q(audit_log::Entity.table_name()),
            q(audit_log::Column::Id.as_str()),
            q(audit_log::Column::Hash.as_str()),
            literal(UNSEALED)
        ),
    )
    .await?;
    let [insert, update, delete] = triggers;
    // The registry rides in the insert trigger's text, which SQLite keeps as written.
    let insert = super::with_registry(&insert, &registry);
    // The old triggers dropped and the new ones created in one call, so on one connection:
    // SQLite keeps the schema per connection and checks it against the file only when a
    // statement runs, but a `CREATE TRIGGER` is refused while it is prepared, from that copy.
    // Through a pool, a connection that had run nothing since another one dropped the old
    // trigger refused the new one ("already exists"). Here each `DROP` runs (and brings the
    // connection's copy up to date) before the next statement is prepared.
    let mut script = drops(spec.table);
    for sql in [insert, update, delete] {
        script.push_str(&sql);
        script.push_str(";\n");
    }
    run(db, &script).await
}

/// `DROP TRIGGER IF EXISTS` of `table`'s triggers, one script.
fn drops(table: &str) -> String {
    trigger_names(table)
        .iter()
        .map(|name| format!("DROP TRIGGER IF EXISTS {};\n", q(name)))
        .collect()
}

pub(super) async fn uninstall<C: ConnectionTrait>(db: &C, table: &str) -> Result<(), DbErr> {
    run(db, &drops(table)).await
}

pub(super) async fn check<C: ConnectionTrait>(db: &C, spec: &Spec) -> Result<Vec<Drift>, DbErr> {
    if !table_exists(db, spec.table).await? {
        return Err(Error::NoSuchTable {
            table: spec.table.to_owned(),
        }
        .into());
    }
    let mut texts = Vec::new();
    for name in trigger_names(spec.table) {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ? AND tbl_name = ?",
                [name.into(), spec.table.into()],
            ))
            .await?;
        match row {
            Some(row) => texts.push(row.try_get::<String>("", "sql")?),
            None => return Ok(vec![Drift::NotInstalled]),
        }
    }
    let recorded = super::embedded_registry(&texts[0]);
    let expected = fingerprint(&triggers_sql(spec)?);
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT name FROM pragma_table_info(?) ORDER BY cid",
            [spec.table.into()],
        ))
        .await?;
    let columns = rows
        .iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect::<Result<_, _>>()?;
    Ok(super::drift(&recorded, &expected, false, columns))
}

/// Reads this connection's context row, if it has one (see `super::context_row`). An UPDATE
/// that changes nothing, not a SELECT: it takes the write lock first, as the write after it
/// needs. A read first would start a snapshot, and the write after it would fail at once
/// ("database is locked", without waiting) once another connection had committed since.
pub(super) fn context_row_sql() -> String {
    format!(
        "UPDATE {} SET id = id WHERE id = 1 RETURNING actor, tool, data",
        q(CONTEXT_TABLE)
    )
}

/// Takes the write lock of the transaction `db` is in: an UPDATE that matches no row begins a
/// write transaction all the same (waiting for the lock, as any write does), and changes
/// nothing. See `context_row_sql` for why a read first would not do.
/// Prepared once per connection (sqlx caches it), not parsed on every transaction.
pub(super) async fn take_write_lock<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("UPDATE {} SET id = id WHERE 0", q(CONTEXT_TABLE)));
    db.execute_raw(Statement::from_string(DbBackend::Sqlite, SQL.as_str()))
        .await
        .map(drop)
}

pub(super) async fn set_context<C: ConnectionTrait>(db: &C, row: ContextRow) -> Result<(), DbErr> {
    let table = q(CONTEXT_TABLE);
    let statement = match row {
        ContextRow::Begin(actor, tool, data) => Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("INSERT OR REPLACE INTO {table} (id, actor, tool, data) VALUES (1, ?, ?, ?)"),
            [actor.into(), tool.into(), data.into()],
        ),
        ContextRow::Replace(actor, tool, data) => Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("UPDATE {table} SET actor = ?, tool = ?, data = ? WHERE id = 1"),
            [actor.into(), tool.into(), data.into()],
        ),
        ContextRow::End => {
            Statement::from_string(DbBackend::Sqlite, format!("DELETE FROM {table}"))
        }
    };
    db.execute_raw(statement).await.map(|_| ())
}

/// Creates the connection's temporary table of `carry_context`.
pub(super) static CARRY_TABLE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS {} (id INTEGER PRIMARY KEY CHECK (id = 1), actor TEXT, \
         tool TEXT, data TEXT, token INTEGER)",
        q(CARRY_TABLE)
    )
});

/// `carry_context`'s statement on each acquire: the context (`?` actor, tool, data as JSON
/// text, token) into the temporary table, returning whether the connection has its trigger.
/// Temporary tables belong to the connection: the write takes no lock of the database file.
#[cfg(feature = "sqlx-sqlite")]
pub(super) static CARRY_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT OR REPLACE INTO temp.{} (id, actor, tool, data, token) VALUES (1, ?, ?, ?, ?) \
         RETURNING EXISTS (SELECT 1 FROM temp.sqlite_master WHERE type = 'trigger' AND name = {}) \
         AS armed",
        q(CARRY_TABLE),
        literal(CARRY_TRIGGER)
    )
});

/// Whether the tables the temporary trigger reads exist (a trigger whose body names a missing
/// table would fail every insert into `audit_log`).
#[cfg(feature = "sqlx-sqlite")]
pub(super) fn ready_sql() -> String {
    format!(
        "SELECT (SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name IN ({}, {})) = 2 \
         AS ready",
        literal(audit_log::Entity.table_name()),
        literal(CONTEXT_TABLE)
    )
}

/// The connection's temporary trigger: an entry the capture triggers wrote with no context
/// (no context row of `transaction` was in effect) gets the context in the temporary table.
/// Only a temporary trigger can read a temporary table; it goes when `audit_log` is dropped,
/// and the next acquire creates it again. The library's own entries (hooks, events) carry the
/// context they were written in, or none on purpose: they are sealed when written, or, after
/// an unsealed predecessor, have `prev_hash = 'unsealed'` (`store::write_many`), where the
/// capture triggers leave it NULL. An entry of `transaction`'s context row has its context
/// already.
#[cfg(feature = "sqlx-sqlite")]
pub(super) fn arm_sql() -> String {
    let log = q(audit_log::Entity.table_name());
    let col = |c: audit_log::Column| q(c.as_str());
    let (actor, tool, data) = (
        col(audit_log::Column::Actor),
        col(audit_log::Column::Tool),
        col(audit_log::Column::Data),
    );
    let carried = format!("temp.{}", q(CARRY_TABLE));
    format!(
        "CREATE TEMP TRIGGER IF NOT EXISTS {trigger} AFTER INSERT ON main.{log} FOR EACH ROW \
         WHEN NEW.{hash} = {unsealed} AND NEW.{prev} IS NULL \
         AND NEW.{action} IN ('create', 'update', 'delete') \
         AND NEW.{actor} IS NULL AND NEW.{tool} IS NULL AND NEW.{data} IS NULL \
         AND NEW.{message} IS NULL AND NOT EXISTS (SELECT 1 FROM main.{context}) BEGIN \
         UPDATE {log} SET ({actor}, {tool}, {data}) = (SELECT actor, tool, data FROM {carried} \
         WHERE id = 1) WHERE {id} = NEW.{id} AND EXISTS (SELECT 1 FROM {carried} WHERE id = 1 \
         AND (actor IS NOT NULL OR tool IS NOT NULL OR data IS NOT NULL)); END",
        trigger = q(CARRY_TRIGGER),
        hash = col(audit_log::Column::Hash),
        prev = col(audit_log::Column::PrevHash),
        unsealed = literal(UNSEALED),
        action = col(audit_log::Column::Action),
        message = col(audit_log::Column::Message),
        context = q(CONTEXT_TABLE),
        id = col(audit_log::Column::Id),
    )
}

/// A hook's context inside a `transaction` that left its own in the connection's temporary
/// table: written as the context row (replacing one there is) where the row exists or the
/// connection's `carry_context` token is one of `tokens`, and nowhere else (a row on another
/// connection would commit with its transaction). One write, so that it takes the write lock
/// first (see `context_row_sql`). A connection of a pool without `carry_context` gets an
/// empty temporary table first, which it reads.
pub(super) async fn claim_context<C: ConnectionTrait>(
    db: &C,
    (actor, tool, data): (Option<String>, Option<String>, Option<String>),
    tokens: &[i64],
) -> Result<(), DbErr> {
    db.execute_unprepared(&CARRY_TABLE_SQL).await?;
    let marks = vec!["?"; tokens.len()].join(", ");
    let mut values: Vec<sea_orm::Value> = vec![actor.into(), tool.into(), data.into()];
    values.extend(tokens.iter().map(|&t| sea_orm::Value::from(t)));
    let context = q(CONTEXT_TABLE);
    let statement = Statement::from_sql_and_values(
        DbBackend::Sqlite,
        format!(
            "INSERT OR REPLACE INTO {context} (id, actor, tool, data) SELECT 1, ?, ?, ? \
             WHERE EXISTS (SELECT 1 FROM {context}) \
             OR EXISTS (SELECT 1 FROM temp.{} WHERE token IN ({marks}))",
            q(CARRY_TABLE)
        ),
        values,
    );
    db.execute_raw(statement).await.map(|_| ())
}
