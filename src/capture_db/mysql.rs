//! MySQL/MariaDB: three row triggers per table that write the entry with the hash left to
//! [`seal`](super::seal): the database's JSON text (number and timestamp formats, `\u001F`)
//! is not the canonical text the library hashes, so the hash is computed from the stored row
//! afterwards, exactly as `verify` recomputes it (see `seal`).
//!
//! Strings compare byte for byte (`BINARY .. <=>`): plain `<=>` follows the collation and
//! misses 'a' -> 'A'. The context is a row of `sea_orm_audit_context` keyed by the
//! connection's id, which [`transaction`](super::transaction) writes inside its transaction and
//! deletes before committing: never committed, so no other transaction ever reads it, and the
//! trigger reads only its own connection's row. Where the connection has none, the trigger
//! reads the session variables `carry_context` sets on every acquire; a `transaction` on such a
//! pool, whose context they already hold, writes no row (see `pool::carry_context`).

use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityName, IdenStatic, Statement};
use serde_json::Value as Json;

use super::{ContextRow, Drift, Encoding, KEY_REFUSAL, LOCAL_REFUSED, Role, Spec};
use crate::audit_log;
use crate::chain::UNSEALED;
use crate::diff::FILTERED;
use crate::error::Error;
use crate::limits::{DEFERRED, MAX_JSON_DEPTH, MAX_KEY_CHARS};
use crate::sql::{mysql_literal, quote};

/// The context the triggers read, one row per connection inside `capture_db::transaction`.
pub(super) const CONTEXT_TABLE: &str = "sea_orm_audit_context";
/// The prefix of the session variables (`@sea_orm_audit_actor`, `_tool`, `_data`) that
/// `pool::carry_context` sets on each pooled connection when it is acquired.
pub(super) const SESSION_VARIABLE: &str = "sea_orm_audit";
/// The condition under which a context row is this session's: its connection, and the token
/// `pool::carry_context` set in the session when the row was written. A row left committed
/// (a closure's DDL committed it and its future was then dropped before the DELETE, or the
/// process died there) names an earlier acquire's token: on a pool that carries the context
/// every acquire sets a new one, so once the connection went back to the pool the row is never
/// read again, and the next row written for the connection replaces it. A row without a token
/// was written by a session without one (a pool without `carry_context`, whose connections
/// read it as before, or a process of an earlier version during a rolling upgrade, whose
/// transaction's context it is).
fn this_sessions_row() -> String {
    format!(
        "connection = CONNECTION_ID() AND (token IS NULL OR token = {})",
        token_variable()
    )
}

/// The session variable holding the token `pool::carry_context` set on its last acquire.
fn token_variable() -> String {
    format!("@{SESSION_VARIABLE}_token")
}

/// An error of a statement on the context table, made clear where the table was created by a
/// version before its `token` column: `install` adds it.
pub(super) fn installed_before(e: DbErr) -> DbErr {
    if e.to_string().contains("Unknown column 'token'") {
        DbErr::Custom(format!(
            "sea-orm-audit: {CONTEXT_TABLE} was created by an earlier version (it has no \
             `token` column): run capture_db::install again for each MySQL table in database \
             mode (capture_db::check reports them)"
        ))
    } else {
        e
    }
}

/// What `seal` looks up.
const HASH_INDEX: &str = "idx_audit_log_hash";

fn q(ident: &str) -> String {
    quote(DbBackend::MySql, ident)
}

/// MySQL's identifiers hold 64 characters.
const MAX_IDENT_CHARS: usize = 64;

fn trigger_names(table: &str) -> Result<[String; 3], Error> {
    let names = ["insert", "update", "delete"].map(|op| format!("sea_orm_audit_{table}_{op}"));
    match names.iter().find(|n| n.chars().count() > MAX_IDENT_CHARS) {
        Some(name) => Err(Error::IdentifierTooLong {
            name: name.clone(),
            max_bytes: MAX_IDENT_CHARS,
        }),
        None => Ok(names),
    }
}

/// Why MySQL cannot encode `enc` as the hooks do, if it cannot.
fn refusal(enc: Encoding) -> Option<&'static str> {
    match enc {
        Encoding::LocalDateTime => Some(LOCAL_REFUSED),
        _ => None,
    }
}

/// The SQL value `JSON_OBJECT` gets for column value `x` (NULL stays NULL), as
/// `value::to_json` encodes it. `stored_as` is the column's type: a `TIMESTAMP` reads in the
/// session's time zone, so the value is taken back to UTC through its epoch seconds (which do
/// not depend on the zone); a `DATETIME` holds the UTC time sqlx wrote. Hex and text
/// functions are converted to a character set: JSON refuses binary strings.
fn value_expr(enc: Encoding, x: &str, stored_as: Option<&str>) -> String {
    let micros = |v: &str| format!("MICROSECOND({v})");
    // chrono's `%.f`: no digits, 3 or 6 (MySQL keeps microseconds).
    let frac = |v: &str| {
        let us = micros(v);
        format!(
            "CASE WHEN {us} = 0 THEN '' WHEN {us} % 1000 = 0 THEN CONCAT('.', LPAD({us} DIV 1000, 3, '0')) \
             ELSE CONCAT('.', LPAD({us}, 6, '0')) END"
        )
    };
    // The `time` crate's fraction: its digits without trailing zeros ('' for none).
    let digits = |v: &str| format!("TRIM(TRAILING '0' FROM LPAD({}, 6, '0'))", micros(v));
    let utc = |v: &str| {
        if stored_as == Some("timestamp") {
            format!(
                "TIMESTAMPADD(MICROSECOND, UNIX_TIMESTAMP({v}) * 1000000, TIMESTAMP'1970-01-01 00:00:00')"
            )
        } else {
            v.to_owned()
        }
    };
    match enc {
        Encoding::Int | Encoding::Text => x.to_owned(),
        Encoding::Bool => format!(
            "IF({x} IS NULL, NULL, IF({x}, JSON_EXTRACT('true', '$'), JSON_EXTRACT('false', '$')))"
        ),
        // The double the application reads (a FLOAT column widened), in MariaDB's shortest
        // text, with a point where it has none, so that it reads back as a float.
        Encoding::Float => {
            let t = format!("CAST(CAST({x} AS DOUBLE) AS CHAR)");
            format!("JSON_EXTRACT(IF({t} REGEXP '^-?[0-9]+$', CONCAT({t}, '.0'), {t}), '$')")
        }
        // MariaDB's JSON_DEPTH counts a scalar as a level, so it tells "at most the limit"
        // but not "deeper": a value it puts over the limit is deferred to `seal` as text
        // (nested in the entry it could exceed what a JSON column accepts, 32 levels). Both
        // branches are JSON text: an IF of a string and a JSON value is a string.
        // So is a string that starts with the prefix, which the seal would otherwise take for a
        // deferred value: it reads it back as the same string.
        // Text JSON_VALID refuses (nested 32 levels or more, or not JSON at all: a `longtext`
        // can hold either) is deferred too, without asking JSON_DEPTH, which would fail the
        // write under strict mode (JSON_VALID only notes it); the seal reads what it can and
        // logs the marker of the text's digest otherwise.
        Encoding::Json => format!(
            "JSON_EXTRACT(IF(NOT JSON_VALID({x}) \
             OR JSON_DEPTH({x}) > {MAX_JSON_DEPTH} OR (LOCATE({prefix}, {x}) > 0 \
             AND JSON_TYPE({x}) = 'STRING'), JSON_QUOTE(CONCAT({prefix}, {x})), {x}), '$')",
            prefix = mysql_literal(DEFERRED)
        ),
        // The column's scale, as sqlx reads it back.
        Encoding::Decimal => format!("CAST({x} AS CHAR)"),
        // `TO_BASE64` breaks lines every 76 characters.
        Encoding::Bytes => {
            format!("REPLACE(CONVERT(TO_BASE64({x}) USING utf8mb4), CHAR(10 USING utf8mb4), '')")
        }
        // sqlx writes a UUID's 16 bytes (SeaORM's `binary(16)`).
        Encoding::Uuid => format!(
            "IF(LENGTH({x}) = 16, LOWER(CONVERT(CONCAT_WS('-', HEX(SUBSTR({x}, 1, 4)), \
             HEX(SUBSTR({x}, 5, 2)), HEX(SUBSTR({x}, 7, 2)), HEX(SUBSTR({x}, 9, 2)), \
             HEX(SUBSTR({x}, 11, 6))) USING utf8mb4)), CONVERT({x} USING utf8mb4))"
        ),
        Encoding::Date => format!("DATE_FORMAT({x}, '%Y-%m-%d')"),
        Encoding::Time => format!("CONCAT(TIME_FORMAT({x}, '%H:%i:%s'), {})", frac(x)),
        Encoding::NaiveDateTime => {
            format!("CONCAT(DATE_FORMAT({x}, '%Y-%m-%dT%H:%i:%s'), {})", frac(x))
        }
        Encoding::UtcDateTime => {
            let u = utc(x);
            format!(
                "CONCAT(DATE_FORMAT({u}, '%Y-%m-%dT%H:%i:%s'), {}, '+00:00')",
                frac(&u)
            )
        }
        Encoding::TimeTime => format!(
            "CONCAT(TIME_FORMAT({x}, '%k:%i:%s'), '.', IF({} = 0, '0', {}))",
            micros(x),
            digits(x)
        ),
        Encoding::TimeDateTime => format!(
            "CONCAT(DATE_FORMAT({x}, '%Y-%m-%dT%k:%i:%s'), '.', IF({} = 0, '0', {}))",
            micros(x),
            digits(x)
        ),
        Encoding::TimeOffsetDateTime => {
            let u = utc(x);
            format!(
                "CONCAT(DATE_FORMAT({u}, '%Y-%m-%dT%H:%i:%s'), IF({} = 0, '', CONCAT('.', {})), 'Z')",
                micros(&u),
                digits(&u)
            )
        }
        // Refused by `refusal` before any SQL is generated.
        Encoding::LocalDateTime => "NULL".to_owned(),
    }
}

/// `'name', value` pairs of every logged column of `row`, sorted by name.
fn object_args(spec: &Spec, row: &str) -> String {
    let mut args = Vec::new();
    for c in spec.logged_sorted() {
        let x = format!("{row}.{}", q(c.name));
        let value = match c.role {
            // A JSON column's JSON null stays null, as the hooks keep it: nothing to hide.
            Role::Masked if c.encoding == Encoding::Json => format!(
                "IF({x} IS NULL OR (JSON_VALID({x}) AND JSON_TYPE({x}) = 'NULL'), NULL, {})",
                mysql_literal(FILTERED)
            ),
            Role::Masked => format!("IF({x} IS NULL, NULL, {})", mysql_literal(FILTERED)),
            // Text that starts with the deferred prefix (compared in the column's collation:
            // a case-insensitive match is deferred too, and read back the same), as a deferred
            // JSON string, which the seal turns back into the same string; otherwise it would
            // read the text after the prefix as a deferred JSON value and log that instead.
            // `ASCII` first: one byte, no collation, false for nearly every value.
            _ if c.encoding == Encoding::Text => format!(
                "IF(ASCII({x}) = {} AND LEFT({x}, {}) = {prefix}, CONCAT({prefix}, JSON_QUOTE({x})), {x})",
                DEFERRED.as_bytes()[0],
                DEFERRED.chars().count(),
                prefix = mysql_literal(DEFERRED)
            ),
            _ => value_expr(c.encoding, &x, c.stored_as.as_deref()),
        };
        args.push(format!("{}, {value}", mysql_literal(c.name)));
    }
    args.join(", ")
}

/// The object id, as `auditable::object_id`.
fn key_expr(spec: &Spec, server: Server, row: &str) -> Result<String, Error> {
    let value = |i: usize| {
        let c = &spec.columns[i];
        value_expr(
            c.encoding,
            &format!("{row}.{}", q(c.name)),
            c.stored_as.as_deref(),
        )
    };
    for i in &spec.key {
        let c = &spec.columns[*i];
        if matches!(
            c.encoding,
            Encoding::Bool | Encoding::Float | Encoding::Json | Encoding::LocalDateTime
        ) {
            return Err(spec.unsupported(
                c.name,
                "a key of this type has no object id the triggers write",
            ));
        }
    }
    Ok(match spec.key.as_slice() {
        [only] if spec.columns[*only].encoding == Encoding::Int => {
            format!("CAST({} AS CHAR)", value(*only))
        }
        [only] => value(*only),
        keys => {
            let array = format!(
                "JSON_COMPACT(JSON_ARRAY({}))",
                keys.iter()
                    .map(|i| value(*i))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match server {
                Server::MariaDb => lowercase_escapes(&array),
                Server::MySql => array,
            }
        }
    })
}

/// MariaDB's JSON text of a composite key with serde_json's escapes: MariaDB writes the
/// control characters 0x0B, 0x0E, 0x0F and 0x1A-0x1F as `\u001F`, serde_json as `\u001f`,
/// and the object id is compared as text (`logs_for` found no entry the trigger wrote for
/// such a key). An escaped backslash (`\\`) is skipped whole, so the text `\u001F` in a value
/// (escaped `\\u001F`) stays as it is. Only text holding `\u00` goes through the replacements.
fn lowercase_escapes(json: &str) -> String {
    // In utf8mb4_bin: a key column's collation (utf8mb4_unicode_ci, say) and the pattern's
    // would be an illegal mix.
    let subject = format!("CONVERT({json} USING utf8mb4) COLLATE utf8mb4_bin");
    let replaced = ["0B", "0E", "0F", "1A", "1B", "1C", "1D", "1E", "1F"]
        .iter()
        .fold(subject.clone(), |text, code| {
            format!(
                "REGEXP_REPLACE({text}, {}, {})",
                mysql_literal(&format!(r"\\\\(*SKIP)(*FAIL)|\\u00{code}")),
                mysql_literal(&format!(r"\\u00{}", code.to_lowercase()))
            )
        });
    format!(
        "IF(LOCATE({}, {subject}) > 0, {replaced}, {subject})",
        mysql_literal(r"\u00")
    )
}

/// The longest JSON text (bytes) MariaDB's trigger compares as a value; a longer one is
/// compared as text. MariaDB's REGEXP_REPLACE takes time growing with the square of the text
/// past a few KiB (the integer pattern over an array of numbers: under 1 / 3 / 11 / 40 ms for
/// 2 / 8 / 16 / 32 KiB, MariaDB 10.11), and the comparison runs it on both sides of each row.
const JSON_REGEX_BYTES: usize = 2048;

/// Whether a logged column differs between `OLD` and `NEW`.
fn differs(enc: Encoding, server: Server, old: &str, new: &str) -> String {
    match (enc, server) {
        (Encoding::Text, _) => format!("NOT (BINARY {new} <=> BINARY {old})"),
        // MariaDB keeps JSON as the text written. As serde_json's values compare, which the
        // hooks diff: equal bytes are equal (BINARY: a `_ci` collation would hold
        // {"n":"bob"} and {"n":"BOB"} equal); otherwise JSON_EQUALS, which ignores key order,
        // white space and a number's form, SQL NULL as JSON null; values it holds equal are
        // compared again with every integer made a string ("i1"), since serde_json tells an
        // integer from a float (1 and 1.0) and JSON_EQUALS does not. Any change of the text
        // counts (an entry more, never one less) where that cannot be done: a value
        // JSON_VALID refuses (nested 32 levels or more: JSON_EQUALS would fail the write
        // under strict mode, JSON_VALID only notes it) or longer than `JSON_REGEX_BYTES`
        // (MariaDB's REGEXP_REPLACE takes time growing with the square of the text).
        // Escapes in strings (\u0041 for A) count as changes. Lost: a change of which value
        // a key repeated in one object has last (serde_json keeps the last one, JSON_EQUALS
        // holds {"a":1,"a":2} and {"a":2,"a":1} equal); no cheap test for it was found.
        (Encoding::Json, Server::MariaDb) => {
            let json = |x: &str| format!("COALESCE({x}, 'null')");
            // Strings are skipped whole; an integer is digits not part of a float's. In
            // utf8mb4_bin: the column's own collation (utf8mb4_unicode_ci, say) and the
            // pattern's would be an illegal mix, failing every update of the table.
            let integers = |x: &str| {
                format!(
                    "REGEXP_REPLACE(CONVERT({} USING utf8mb4) COLLATE utf8mb4_bin, {}, {})",
                    json(x),
                    mysql_literal(
                        r#""(?:[^"\\]|\\.)*"(*SKIP)(*FAIL)|(?<![0-9.eE+-])(-?[0-9]+)(?![0-9.eE])"#
                    ),
                    mysql_literal(r#""i\1""#)
                )
            };
            let readable = |x: &str| {
                format!(
                    "LENGTH({}) <= {JSON_REGEX_BYTES} AND JSON_VALID({})",
                    json(x),
                    json(x)
                )
            };
            format!(
                "NOT COALESCE(CASE WHEN BINARY {new} <=> BINARY {old} THEN TRUE \
                 WHEN NOT ({} AND {}) THEN FALSE \
                 WHEN JSON_EQUALS({}, {}) THEN JSON_EQUALS({}, {}) END, FALSE)",
                readable(new),
                readable(old),
                json(new),
                json(old),
                integers(new),
                integers(old)
            )
        }
        // MySQL stores JSON normalized (keys sorted, numbers parsed): its text compares.
        (Encoding::Json, Server::MySql) => {
            format!("NOT (BINARY JSON_EXTRACT({new}, '$') <=> BINARY JSON_EXTRACT({old}, '$'))")
        }
        _ => format!("NOT ({new} <=> {old})"),
    }
}

/// The three `CREATE TRIGGER` statements (insert, update, delete).
fn triggers_sql(spec: &Spec, server: Server) -> Result<[String; 3], Error> {
    let columns: Vec<String> = super::log_columns(DbBackend::MySql);
    let insert_into = format!(
        "INSERT INTO {} ({})",
        q(audit_log::Entity.table_name()),
        columns.join(", ")
    );
    let table = q(spec.table);
    let entity_type = mysql_literal(spec.entity_type);
    // The connection's context row, read into the trigger's own variables by a statement of
    // its own: a consistent read, which locks nothing. Read inside the INSERT (`INSERT ...
    // SELECT ... LEFT JOIN` the context table), it took shared next-key locks there under
    // REPEATABLE READ, and until the writing transaction ended every other connection's
    // `capture_db::transaction` waited to write its context row (1205 after the lock wait
    // timeout; `tests/db_capture_locks.rs` `database_mode_writers_of_other_objects_never_wait`,
    // its "plain" round).
    // `COUNT(*)` and `MAX`: one row whether the context row exists or not.
    let var = |field: &str| format!("sea_orm_audit_v_{field}");
    let found = var("found");
    let read = format!(
        "SELECT COUNT(*), MAX(actor), MAX(tool), MAX(data) INTO {found}, {}, {}, {} \
         FROM {} WHERE {};",
        var("actor"),
        var("tool"),
        var("data"),
        q(CONTEXT_TABLE),
        this_sessions_row()
    );
    // MariaDB: read only inside an explicit transaction. A context row exists only between
    // `capture_db::transaction`'s BEGIN and its COMMIT, never committed, so a statement
    // outside an explicit transaction (autocommit: `@@in_transaction` is 0 in its triggers)
    // cannot see one, and each of its rows saves the read: a 10,000-row `update_many` took
    // ~0.62 s with it and ~0.49 s without, in MariaDB's client (BENCHMARKS.md). MySQL has
    // no such variable.
    let read = match server {
        Server::MariaDb => format!("IF @@in_transaction THEN\n{read}\nEND IF;"),
        Server::MySql => read,
    };
    let prologue = format!(
        "DECLARE {found} INT DEFAULT 0;\n\
         DECLARE {} VARCHAR(191) CHARACTER SET utf8mb4;\n\
         DECLARE {} VARCHAR(191) CHARACTER SET utf8mb4;\n\
         DECLARE {} LONGTEXT CHARACTER SET utf8mb4;\n\
         {read}\n",
        var("actor"),
        var("tool"),
        var("data"),
    );
    // Inside `capture_db::transaction` the connection's context row; otherwise the session
    // variables `pool::carry_context` sets on every acquire (NULL on a connection it never
    // touched, such as another program's).
    let from_context = |field: &str| {
        format!(
            "IF({found} > 0, {}, @{SESSION_VARIABLE}_{field})",
            var(field)
        )
    };
    let (actor, tool, data) = (
        from_context("actor"),
        from_context("tool"),
        from_context("data"),
    );
    // An object id the log cannot hold fails the write, as the hooks refuse it (whatever
    // `sql_mode` the trigger was created under: outside strict mode MariaDB would truncate it).
    let check_key = spec.key_needs_check();
    let row = |action: &str, key: &str, changes: &str| {
        let check = if check_key {
            format!(
                "IF CHAR_LENGTH({key}) > {MAX_KEY_CHARS} OR INSTR({key}, CHAR(0 USING utf8mb4)) > 0 \
                 THEN SIGNAL SQLSTATE '22001' SET MESSAGE_TEXT = {}; END IF;\n",
                mysql_literal(KEY_REFUSAL)
            )
        } else {
            String::new()
        };
        format!(
            "{check}{insert_into} VALUES ({entity_type}, {key}, '{action}', {actor}, UTC_TIMESTAMP(6), \
             {changes}, {tool}, NULL, 'success', {data}, NULL, {});",
            mysql_literal(UNSEALED)
        )
    };
    let with_prologue = |sql: String| {
        sql.replacen(
            " FOR EACH ROW BEGIN\n",
            &format!(" FOR EACH ROW BEGIN\n{prologue}"),
            1,
        )
    };
    let [insert_name, update_name, delete_name] = trigger_names(spec.table)?;
    spec.require(refusal)?;
    let (new_all, old_all) = (object_args(spec, "NEW"), object_args(spec, "OLD"));
    let (insert, delete) = super::insert_and_delete_triggers(
        [&q(&insert_name), &q(&delete_name)],
        &table,
        "JSON_OBJECT",
        [
            &key_expr(spec, server, "NEW")?,
            &key_expr(spec, server, "OLD")?,
        ],
        [&new_all, &old_all],
        row,
    );
    let mut changed = Vec::new();
    let mut unchanged_paths = Vec::new();
    // A JSON column's comparison (JSON_EQUALS reads both documents) is made once, into a
    // variable of its own, rather than once in the condition and once per side's removals.
    let mut compared_once = Vec::new();
    for (i, c) in spec.logged_sorted().into_iter().enumerate() {
        let d = differs(
            c.encoding,
            server,
            &format!("OLD.{}", q(c.name)),
            &format!("NEW.{}", q(c.name)),
        );
        let d = if c.encoding == Encoding::Json {
            let v = var(&format!("differs_{i}"));
            compared_once.push((v.clone(), d));
            v
        } else {
            d
        };
        let path = mysql_literal(&format!("$.{}", Json::from(c.name)));
        unchanged_paths.push(format!("IF({d}, '$.\"sea_orm_audit: none\"', {path})"));
        changed.push(d);
    }
    let remove = |all: &str| {
        if unchanged_paths.is_empty() {
            format!("JSON_OBJECT({all})")
        } else {
            format!(
                "JSON_REMOVE(JSON_OBJECT({all}), {})",
                unchanged_paths.join(", ")
            )
        }
    };
    let body = row(
        "update",
        &key_expr(spec, server, "NEW")?,
        &format!(
            "JSON_OBJECT('new_value', {}, 'old_value', {})",
            remove(&new_all),
            remove(&old_all)
        ),
    );
    // With no column logged (every one excluded), nothing: the hooks log no empty diff.
    let body = if spec.log_unchanged {
        body
    } else if changed.is_empty() {
        "DO 0;".to_owned()
    } else {
        format!("IF {} THEN\n{body}\nEND IF;", changed.join(" OR "))
    };
    let body = if compared_once.is_empty() {
        body
    } else {
        let (declare, set): (Vec<String>, Vec<String>) = compared_once
            .iter()
            .map(|(v, d)| (format!("DECLARE {v} BOOLEAN;"), format!("SET {v} = {d};")))
            .unzip();
        format!(
            "BEGIN\n{}\n{}\n{body}\nEND;",
            declare.join("\n"),
            set.join("\n")
        )
    };
    // A new key is a new object: the old one's delete, then the new one's create (each
    // object's chain stays its own), as on every backend.
    let (new_key, old_key) = (
        key_expr(spec, server, "NEW")?,
        key_expr(spec, server, "OLD")?,
    );
    let body = format!(
        "IF NOT (BINARY ({new_key}) <=> BINARY ({old_key})) THEN\n{}\n{}\nELSE\n{body}\nEND IF;",
        row(
            "delete",
            &old_key,
            &format!(
                "JSON_OBJECT('new_value', JSON_OBJECT(), 'old_value', JSON_OBJECT({old_all}))"
            ),
        ),
        row(
            "create",
            &new_key,
            &format!(
                "JSON_OBJECT('new_value', JSON_OBJECT({new_all}), 'old_value', JSON_OBJECT())"
            ),
        ),
    );
    let update = format!(
        "CREATE TRIGGER {} AFTER UPDATE ON {table} FOR EACH ROW BEGIN\n{body}\nEND",
        q(&update_name),
    );
    Ok([insert, update, delete].map(with_prologue))
}

fn fingerprint(triggers: &[String; 3]) -> String {
    super::fingerprint(&triggers.join("\n"))
}

async fn run<C: ConnectionTrait>(db: &C, sql: &str) -> Result<(), DbErr> {
    db.execute_unprepared(sql).await.map(|_| ())
}

async fn exists<C: ConnectionTrait>(db: &C, sql: &str, values: Vec<String>) -> Result<bool, DbErr> {
    let values: Vec<sea_orm::Value> = values.into_iter().map(Into::into).collect();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            sql,
            values,
        ))
        .await?;
    Ok(row.is_some())
}

async fn table_exists<C: ConnectionTrait>(db: &C, table: &str) -> Result<bool, DbErr> {
    exists(
        db,
        "SELECT 1 AS found FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = ?",
        vec![table.to_owned()],
    )
    .await
}

/// Which server the triggers are written for: they differ in what they can ask it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    MariaDb,
    MySql,
}

/// `spec` with each column's type as the table declares it (see `value_expr`), and the
/// server: what `install` and `check` both generate the triggers from.
async fn as_stored<C: ConnectionTrait>(db: &C, spec: &Spec) -> Result<(Spec, Server), DbErr> {
    let version = db
        .query_one_raw(Statement::from_string(
            DbBackend::MySql,
            "SELECT CAST(VERSION() AS CHAR) AS version",
        ))
        .await?
        .map(|row| row.try_get::<String>("", "version"))
        .transpose()?
        .unwrap_or_default();
    let server = if version.contains("MariaDB") {
        Server::MariaDb
    } else {
        Server::MySql
    };
    Ok((with_stored_types(db, spec).await?, server))
}

/// `spec` with each column's type as the table declares it (see `value_expr`).
async fn with_stored_types<C: ConnectionTrait>(db: &C, spec: &Spec) -> Result<Spec, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            "SELECT CAST(COLUMN_NAME AS CHAR) AS name, CAST(DATA_TYPE AS CHAR) AS ty \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            [spec.table.into()],
        ))
        .await?;
    let mut spec = spec.clone();
    for row in rows {
        let (name, ty): (String, String) = (row.try_get("", "name")?, row.try_get("", "ty")?);
        // MySQL's column names ignore case; an entity may spell one differently.
        let name = name.to_lowercase();
        if let Some(c) = spec
            .columns
            .iter_mut()
            .find(|c| c.name.to_lowercase() == name)
        {
            c.stored_as = Some(ty.to_lowercase());
        }
    }
    Ok(spec)
}

pub(super) async fn install<C: ConnectionTrait>(db: &C, spec: &Spec) -> Result<(), DbErr> {
    if !table_exists(db, spec.table).await? {
        return Err(Error::NoSuchTable {
            table: spec.table.to_owned(),
        }
        .into());
    }
    let (stored, server) = as_stored(db, spec).await?;
    let triggers = triggers_sql(&stored, server)?;
    let registry = super::registry(spec, fingerprint(&triggers));
    run(
        db,
        &format!(
            "CREATE TABLE IF NOT EXISTS {} (connection BIGINT UNSIGNED PRIMARY KEY, \
             actor VARCHAR(191), tool VARCHAR(191), data LONGTEXT, token BIGINT)",
            q(CONTEXT_TABLE)
        ),
    )
    .await?;
    // A table created by an earlier version has no token column (MySQL has no `ADD COLUMN
    // IF NOT EXISTS`).
    let has_token = exists(
        db,
        "SELECT 1 AS found FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = ? AND COLUMN_NAME = 'token'",
        vec![CONTEXT_TABLE.to_owned()],
    )
    .await?;
    if !has_token {
        run(
            db,
            &format!("ALTER TABLE {} ADD COLUMN token BIGINT", q(CONTEXT_TABLE)),
        )
        .await?;
    }
    let log = audit_log::Entity.table_name();
    let indexed = exists(
        db,
        "SELECT 1 AS found FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = ? AND INDEX_NAME = ?",
        vec![log.to_owned(), HASH_INDEX.to_owned()],
    )
    .await?;
    if !indexed {
        run(
            db,
            &format!(
                "CREATE INDEX {} ON {} ({})",
                q(HASH_INDEX),
                q(log),
                q(audit_log::Column::Hash.as_str())
            ),
        )
        .await?;
    }
    uninstall(db, spec.table).await?;
    let [insert, update, delete] = triggers;
    let insert = super::with_registry(&insert, &registry);
    for sql in [insert, update, delete] {
        run(db, &sql).await?;
    }
    Ok(())
}

pub(super) async fn uninstall<C: ConnectionTrait>(db: &C, table: &str) -> Result<(), DbErr> {
    for name in trigger_names(table)? {
        run(db, &format!("DROP TRIGGER IF EXISTS {}", q(&name))).await?;
    }
    Ok(())
}

pub(super) async fn check<C: ConnectionTrait>(db: &C, spec: &Spec) -> Result<Vec<Drift>, DbErr> {
    if !table_exists(db, spec.table).await? {
        return Err(Error::NoSuchTable {
            table: spec.table.to_owned(),
        }
        .into());
    }
    let mut texts = Vec::new();
    for name in trigger_names(spec.table)? {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::MySql,
                "SELECT CAST(ACTION_STATEMENT AS CHAR) AS body FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME = ? \
                 AND EVENT_OBJECT_TABLE = ?",
                [name.into(), spec.table.into()],
            ))
            .await?;
        match row {
            Some(row) => texts.push(row.try_get::<String>("", "body")?),
            None => return Ok(vec![Drift::NotInstalled]),
        }
    }
    let recorded = super::embedded_registry(&texts[0]);
    let (stored, server) = as_stored(db, spec).await?;
    let expected = fingerprint(&triggers_sql(&stored, server)?);
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            "SELECT CAST(COLUMN_NAME AS CHAR) AS name FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            [spec.table.into()],
        ))
        .await?;
    let columns = rows
        .iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect::<Result<_, _>>()?;
    Ok(super::drift(&recorded, &expected, false, columns))
}

/// Reads this connection's context row, if it has one (see `super::context_row`).
pub(super) fn context_row_sql() -> String {
    format!(
        "SELECT actor, tool, data FROM {} WHERE {}",
        q(CONTEXT_TABLE),
        this_sessions_row()
    )
}

/// Whether this connection has a context row, read without a lock (the row is only ever its
/// own transaction's), and whether its `carry_context` token is one of `tokens`.
pub(super) async fn context_row_state<C: ConnectionTrait>(
    db: &C,
    tokens: &[i64],
) -> Result<(bool, bool), DbErr> {
    let ours = if tokens.is_empty() {
        "FALSE".to_owned()
    } else {
        format!(
            "{} IN ({})",
            token_variable(),
            vec!["?"; tokens.len()].join(", ")
        )
    };
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE {}) AS has_row, \
         COALESCE({ours}, FALSE) AS ours",
        q(CONTEXT_TABLE),
        this_sessions_row()
    );
    let values = tokens.iter().map(|&t| sea_orm::Value::from(t));
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            sql,
            values,
        ))
        .await
        .map_err(installed_before)?;
    let flag = |column: &str| -> Result<bool, DbErr> {
        match &row {
            Some(r) => Ok(r.try_get::<i64>("", column)? != 0),
            None => Ok(false),
        }
    };
    Ok((flag("has_row")?, flag("ours")?))
}

/// A hook's context inside a `transaction` that left its in the session: written, or
/// replaced, as the connection's row, only on a connection whose `carry_context` token is one
/// of `tokens` (the upsert selects nothing elsewhere).
pub(super) async fn claim_context<C: ConnectionTrait>(
    db: &C,
    (actor, tool, data): (Option<String>, Option<String>, Option<String>),
    tokens: &[i64],
) -> Result<(), DbErr> {
    let token = token_variable();
    let marks = vec!["?"; tokens.len()].join(", ");
    let mut values: Vec<sea_orm::Value> = vec![actor.into(), tool.into(), data.into()];
    values.extend(tokens.iter().map(|&t| sea_orm::Value::from(t)));
    let statement = Statement::from_sql_and_values(
        DbBackend::MySql,
        format!(
            "INSERT INTO {} (connection, actor, tool, data, token) \
             SELECT CONNECTION_ID(), ?, ?, ?, {token} FROM DUAL WHERE {token} IN ({marks}) \
             ON DUPLICATE KEY UPDATE actor = VALUES(actor), tool = VALUES(tool), \
             data = VALUES(data), token = VALUES(token)",
            q(CONTEXT_TABLE)
        ),
        values,
    );
    db.execute_raw(statement)
        .await
        .map(|_| ())
        .map_err(installed_before)
}

/// Writes, replaces or deletes this connection's context row. A row written carries the
/// session's token (see `this_sessions_row`); a replacement touches only such a row; the
/// DELETE takes any row of the connection, a left one included.
pub(super) async fn set_context<C: ConnectionTrait>(db: &C, row: ContextRow) -> Result<(), DbErr> {
    let table = q(CONTEXT_TABLE);
    let token = token_variable();
    let statement = match row {
        ContextRow::Begin(actor, tool, data) => Statement::from_sql_and_values(
            DbBackend::MySql,
            format!(
                "REPLACE INTO {table} (connection, actor, tool, data, token) \
                 VALUES (CONNECTION_ID(), ?, ?, ?, {token})"
            ),
            [actor.into(), tool.into(), data.into()],
        ),
        ContextRow::Replace(actor, tool, data) => Statement::from_sql_and_values(
            DbBackend::MySql,
            format!(
                "UPDATE {table} SET actor = ?, tool = ?, data = ? WHERE {}",
                this_sessions_row()
            ),
            [actor.into(), tool.into(), data.into()],
        ),
        ContextRow::End => Statement::from_string(
            DbBackend::MySql,
            format!("DELETE FROM {table} WHERE connection = CONNECTION_ID()"),
        ),
    };
    db.execute_raw(statement)
        .await
        .map(|_| ())
        .map_err(installed_before)
}
