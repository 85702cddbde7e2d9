//! PostgreSQL: a PL/pgSQL row trigger per table that builds the entry's canonical content as
//! text, hashes it with `sha256()` and appends the row to its object's chain.
//!
//! The trigger writes `changes` as the canonical text the library hashes (keys sorted by
//! bytes, compact, numbers as serde_json prints them), so the digest it computes is the one
//! `verify` recomputes from the stored row. Its chain head read runs after the row lock of the
//! write was granted, and PL/pgSQL takes a new snapshot per statement under READ COMMITTED:
//! the previous writer of the object has committed its entry, which the read sees.
//!
//! With [`Seal::Deferred`](crate::Seal::Deferred) the trigger neither reads the chain head nor
//! hashes: it writes the entry unsealed, and `seal` links and hashes it later, as on SQLite
//! and MySQL.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, IdenStatic, Statement};
use serde_json::Value as Json;

use super::{ColumnSpec, Drift, Encoding, KEY_REFUSAL, LOCAL_REFUSED, Role, Spec, fingerprint};
use crate::audit_log;
use crate::chain::{POSTGRES_LINK_HASH, UNSEALED};
use crate::diff::FILTERED;
use crate::error::Error;
use crate::limits::{MAX_JSON_DEPTH, MAX_KEY_CHARS, READABLE_JSON_DEPTH, TOO_DEEP};
use crate::sql::{literal, quote};

/// The transaction-local setting the triggers read the context from.
pub(super) const CONTEXT_SETTING: &str = "sea_orm_audit.ctx";
/// The trigger's name (trigger names are per table in PostgreSQL).
const TRIGGER: &str = "sea_orm_audit";
/// The statement trigger that logs a TRUNCATE (see `truncate_sql`).
const TRUNCATE_TRIGGER: &str = "sea_orm_audit_truncate";
/// PostgreSQL truncates longer identifiers, which could make two tables share a function.
const MAX_IDENT: usize = 63;

fn q(ident: &str) -> String {
    quote(DbBackend::Postgres, ident)
}

fn function_name(table: &str) -> Result<String, Error> {
    let name = format!("sea_orm_audit_capture_{table}");
    if name.len() > MAX_IDENT {
        return Err(Error::IdentifierTooLong {
            name,
            max_bytes: MAX_IDENT,
        });
    }
    Ok(name)
}

/// The schema a table lives in (as the connection's search path resolves it), if it exists.
async fn schema_of<C: ConnectionTrait>(db: &C, table: &str) -> Result<Option<String>, DbErr> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT n.nspname AS schema FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
         ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass($1)",
        [q(table).into()],
    );
    match db.query_one_raw(statement).await? {
        Some(row) => Ok(Some(row.try_get("", "schema")?)),
        None => Ok(None),
    }
}

async fn require_schema<C: ConnectionTrait>(db: &C, table: &str) -> Result<String, DbErr> {
    schema_of(db, table).await?.ok_or_else(|| {
        Error::NoSuchTable {
            table: table.to_owned(),
        }
        .into()
    })
}

/// Helper functions shared by every table's trigger, in the audit log's schema.
fn helpers_sql(s: &str) -> Vec<String> {
    let (least_half, overflow) = f64_bounds();
    vec![
        // serde_json's text of an f64 (ryu's layout, `e+` for positive exponents) from PostgreSQL's shortest round-trip
        // digits (PostgreSQL 12+ prints floats with Ryu too; `extra_float_digits = 1` asks for
        // the shortest form whatever the session says), as `verify` will read it back from the
        // stored jsonb. PostgreSQL's Ryu excludes the rounding interval's bounds, so a few values
        // (4.33549e20) come out longer than serde_json's shortest form: the loop finds the
        // shortest rounding that reads back as the same double. jsonb writes an integral
        // value without a point, and serde_json reads
        // such a number back as an integer when it fits u64 (i64 if negative), so 1e16 and
        // more are hashed as that integer.
        format!(
            r#"CREATE OR REPLACE FUNCTION {s}.sea_orm_audit_f64(x float8) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET extra_float_digits = 1 AS $f$
DECLARE t text; neg boolean; e int := 0; ip text; fp text; digits text; k int; len int; kk int; r text; c text;
BEGIN
  IF x IS NULL THEN RETURN NULL; END IF;
  IF x = 'NaN'::float8 THEN RETURN '"NaN"'; END IF;
  IF x = 'Infinity'::float8 THEN RETURN '"Infinity"'; END IF;
  IF x = '-Infinity'::float8 THEN RETURN '"-Infinity"'; END IF;
  IF x = 0 THEN RETURN '0.0'; END IF;
  t := x::text;
  neg := left(t, 1) = '-';
  IF neg THEN t := substr(t, 2); END IF;
  IF position('e' in t) > 0 THEN e := split_part(t, 'e', 2)::int; t := split_part(t, 'e', 1); END IF;
  ip := split_part(t, '.', 1); fp := split_part(t, '.', 2);
  digits := ltrim(ip || fp, '0'); k := e - length(fp);
  WHILE right(digits, 1) = '0' LOOP digits := left(digits, -1); k := k + 1; END LOOP;
  len := length(digits);
  -- Far from the ends of the double range only, where a shorter candidate cannot overflow.
  FOR n IN 1 .. CASE WHEN abs(len + k) < 300 THEN len - 1 ELSE 0 END LOOP
    c := round(digits::numeric / (10::numeric ^ (len - n)))::text;
    IF (c || 'e' || (k + len - n))::float8 = abs(x) THEN
      k := k + len - n; digits := c;
      WHILE right(digits, 1) = '0' LOOP digits := left(digits, -1); k := k + 1; END LOOP;
      len := length(digits);
      EXIT;
    END IF;
  END LOOP;
  kk := len + k;
  IF kk > 16 AND k >= 0 AND (digits || repeat('0', k))::numeric
      <= (CASE WHEN neg THEN 9223372036854775808 ELSE 18446744073709551615 END) THEN
    r := digits || repeat('0', k);
  ELSIF k >= 0 AND kk <= 16 THEN r := digits || repeat('0', k) || '.0';
  ELSIF kk > 0 AND kk <= 16 THEN r := left(digits, kk) || '.' || substr(digits, kk + 1);
  ELSIF kk > -5 AND kk <= 0 THEN r := '0.' || repeat('0', -kk) || digits;
  ELSIF len = 1 THEN r := digits || 'e' || (CASE WHEN kk > 1 THEN '+' ELSE '' END) || (kk - 1)::text;
  ELSE r := left(digits, 1) || '.' || substr(digits, 2) || 'e' || (CASE WHEN kk > 1 THEN '+' ELSE '' END) || (kk - 1)::text;
  END IF;
  RETURN CASE WHEN neg THEN '-' || r ELSE r END;
END $f$"#
        ),
        // chrono's `%.f`: no digits, 3 or 6 (PostgreSQL keeps microseconds).
        format!(
            r#"CREATE OR REPLACE FUNCTION {s}.sea_orm_audit_frac(us bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$
SELECT CASE WHEN us = 0 THEN '' WHEN us % 1000 = 0 THEN '.' || lpad((us / 1000)::text, 3, '0')
ELSE '.' || lpad(us::text, 6, '0') END $f$"#
        ),
        // The canonical text of a JSON value as the library writes it (`chain::canonical` of
        // what serde_json reads back): keys sorted by bytes, compact, integers as they are,
        // other numbers through sea_orm_audit_f64. A container's members are joined once
        // (appending in a loop copied the text so far at each member: 29 s for an object of
        // 100,000 keys, 0.4 s now; `string_agg(.. ORDER BY ..)` was as fast on wide values
        // and slower on small ones); strings, booleans, null and short integers are their own
        // text, with no call.
        format!(
            r#"CREATE OR REPLACE FUNCTION {s}.sea_orm_audit_canon(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE t text;
BEGIN
  CASE jsonb_typeof(v)
  WHEN 'object' THEN
    RETURN '{{' || array_to_string(ARRAY(SELECT to_json(e.key)::text || ':' || {member}
      FROM jsonb_each(v) e ORDER BY e.key COLLATE "C"), ',') || '}}';
  WHEN 'array' THEN
    RETURN '[' || array_to_string(ARRAY(SELECT {member}
      FROM jsonb_array_elements(v) WITH ORDINALITY e(value, i) ORDER BY e.i), ',') || ']';
  WHEN 'number' THEN
    t := v::text;
    IF t ~ '^-?[0-9]+$' AND t::numeric BETWEEN -9223372036854775808 AND 18446744073709551615 THEN
      RETURN t;
    END IF;
    -- At most half the least f64 (psql can write 1e-400): serde_json reads 0.0, and the
    -- cast to float8 below would fail the write ("out of range").
    IF abs(t::numeric) <= {least_half} THEN RETURN '0.0'; END IF;
    -- What an f64 cannot hold (psql can write 1e400; serde_json cannot read it): the string
    -- of its text, as the seal reads such a number on the other backends.
    IF abs(t::numeric) >= {overflow} THEN
      RETURN to_json(t)::text;
    END IF;
    RETURN {s}.sea_orm_audit_f64(t::float8);
  ELSE
    RETURN v::text;
  END CASE;
END $f$"#,
            member = canon_member(s),
        ),
    ]
}

/// A member `e.value` of a container as `sea_orm_audit_canon` writes it: a string, boolean,
/// null or integer of up to 18 digits (within i64) is its own jsonb text; a container or
/// another number goes through the function. A container's text is never computed to be
/// looked at (it would print the whole subtree).
fn canon_member(s: &str) -> String {
    format!(
        "CASE jsonb_typeof(e.value) WHEN 'object' THEN {s}.sea_orm_audit_canon(e.value) \
         WHEN 'array' THEN {s}.sea_orm_audit_canon(e.value) \
         WHEN 'number' THEN CASE WHEN e.value::text ~ '^-?[0-9]{{1,18}}$' THEN e.value::text \
         ELSE {s}.sea_orm_audit_canon(e.value) END ELSE e.value::text END"
    )
}

/// The exact bounds of what an f64 reads as a finite number other than 0, as numeric
/// literals: 2^-1075 (half the least f64; it and anything nearer 0 round to 0) and
/// 2^1024 - 2^970 (it and anything larger round to infinity). A rounded constant
/// (2.4703282292062328e-324) lies past the first: a number between them is 5e-324 for
/// serde_json, and it was logged as 0.0.
fn f64_bounds() -> (String, String) {
    // The decimal digits of the product of `factors`.
    fn product(factors: impl Iterator<Item = u128>) -> String {
        let mut digits: Vec<u128> = vec![1];
        for f in factors {
            let mut carry = 0;
            for d in &mut digits {
                let v = *d * f + carry;
                *d = v % 10;
                carry = v / 10;
            }
            while carry > 0 {
                digits.push(carry % 10);
                carry /= 10;
            }
        }
        digits.iter().rev().map(|d| d.to_string()).collect()
    }
    let least_half = format!("{}e-1075", product(std::iter::repeat_n(5, 1075)));
    let overflow = product(std::iter::repeat_n(2, 970).chain([(1 << 54) - 1]));
    (least_half, overflow)
}

/// Why this backend cannot encode `enc` as the hooks do, if it cannot.
fn refusal(enc: Encoding) -> Option<&'static str> {
    match enc {
        Encoding::LocalDateTime => Some(LOCAL_REFUSED),
        _ => None,
    }
}

/// Helpers that record a JSON value nested deeper than `MAX_JSON_DEPTH` as the hooks do
/// (`limits::bounded`): the `TOO_DEEP` marker with the SHA-256 of the same token stream. No
/// helper recurses deeper than serde_json reads: the depth is measured by jsonpath (in C), and
/// a value deeper than serde_json reads (which the hooks cannot read back either) gets the
/// digest of its jsonb text, as the seal gives text it cannot read on the other backends. A
/// recursive PL/pgSQL walk failed the write at about 400 levels ("stack depth limit exceeded").
fn bounded_helpers_sql(s: &str) -> Vec<String> {
    let marker = literal(&format!("{TOO_DEEP} sha256:"));
    // Whether a container sits at nesting level `level` (the root is level 0): whether the
    // value nests more than `level` containers deep.
    let deeper = |level: usize| {
        format!(
            "jsonb_path_exists(v, 'strict $.**{{{level}}} ? (@.type() == \"array\" || @.type() == \"object\")')"
        )
    };
    vec![
        // `limits::too_deep_marker`'s token stream: tag, then u64 big-endian length and UTF-8
        // bytes for text; an object's keys (in reverse byte order, as its stack pushes them)
        // before its `:`-prefixed values (in byte order); numbers as serde_json prints them.
        // Each container's members are joined once, as in sea_orm_audit_canon.
        format!(
            r#"CREATE OR REPLACE FUNCTION {s}.sea_orm_audit_tokens(v jsonb) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE b bytea;
BEGIN
  CASE jsonb_typeof(v)
  WHEN 'null' THEN RETURN 'z'::bytea;
  WHEN 'boolean' THEN RETURN CASE WHEN v = 'true'::jsonb THEN 't'::bytea ELSE 'f'::bytea END;
  WHEN 'number' THEN
    b := convert_to({s}.sea_orm_audit_canon(v), 'UTF8');
    RETURN 'n'::bytea || int8send(length(b)::bigint) || b;
  WHEN 'string' THEN
    b := convert_to(v #>> '{{}}', 'UTF8');
    RETURN 's'::bytea || int8send(length(b)::bigint) || b;
  WHEN 'array' THEN
    RETURN '['::bytea || coalesce((SELECT string_agg({s}.sea_orm_audit_tokens(e.value), ''::bytea ORDER BY e.i)
      FROM jsonb_array_elements(v) WITH ORDINALITY e(value, i)), ''::bytea) || ']'::bytea;
  ELSE
    RETURN '{{'::bytea
      || coalesce((SELECT string_agg('k'::bytea || int8send(length(k.b)::bigint) || k.b, ''::bytea
           ORDER BY k.key COLLATE "C" DESC)
         FROM (SELECT e.key, convert_to(e.key, 'UTF8') AS b FROM jsonb_each(v) e) k), ''::bytea)
      || coalesce((SELECT string_agg(':'::bytea || {s}.sea_orm_audit_tokens(e.value), ''::bytea
           ORDER BY e.key COLLATE "C") FROM jsonb_each(v) e), ''::bytea)
      || '}}'::bytea;
  END CASE;
END $f$"#
        ),
        // The canonical text, or the marker. Nesting deeper than the limit needs more than
        // that many brackets: most values are let through on that count alone.
        format!(
            r#"CREATE OR REPLACE FUNCTION {s}.sea_orm_audit_bounded(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE t text;
BEGIN
  IF v IS NULL THEN RETURN NULL; END IF;
  t := v::text;
  IF length(t) - length(translate(t, '[{{', '')) > {depth} AND {too_deep} THEN
    IF {unreadable} THEN
      RETURN to_json({marker} || encode(sha256(convert_to(t, 'UTF8')), 'hex'))::text;
    END IF;
    RETURN to_json({marker} || encode(sha256({s}.sea_orm_audit_tokens(v)), 'hex'))::text;
  END IF;
  RETURN {s}.sea_orm_audit_canon(v);
END $f$"#,
            depth = MAX_JSON_DEPTH,
            too_deep = deeper(MAX_JSON_DEPTH),
            unreadable = deeper(READABLE_JSON_DEPTH),
        ),
        // The recursive depth walk of earlier versions, no longer called.
        format!("DROP FUNCTION IF EXISTS {s}.sea_orm_audit_depth(jsonb)"),
    ]
}

/// The function behind every table's `BEFORE TRUNCATE` trigger. TRUNCATE fires no row
/// trigger: this one deletes the rows first, so the row trigger logs each as a DELETE would
/// (the same entries), then TRUNCATE finds the table empty. Rows another table references
/// cannot be deleted first: the TRUNCATE fails with a clear error instead (with `CASCADE` it
/// would empty the referencing tables, whose rows no DELETE has logged). With the installer's rights, as
/// the row trigger, so a role allowed to TRUNCATE needs no DELETE right.
fn truncate_sql(s: &str) -> String {
    format!(
        r#"CREATE OR REPLACE FUNCTION {s}.sea_orm_audit_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  -- ONLY: `TRUNCATE ONLY` keeps the rows of tables that inherit from this one (a plain
  -- TRUNCATE fires their own triggers). A partitioned table holds no rows of its own: its
  -- TRUNCATE empties every partition, whose rows its (cloned) row trigger logs.
  IF (SELECT c.relkind FROM pg_class c WHERE c.oid = TG_RELID) = 'p' THEN
    EXECUTE format('DELETE FROM %I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
  ELSE
    EXECUTE format('DELETE FROM ONLY %I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
  END IF;
  RETURN NULL;
EXCEPTION WHEN foreign_key_violation THEN
  RAISE EXCEPTION 'sea-orm-audit: TRUNCATE of %.% cannot be logged row by row while rows of another table reference it (TRUNCATE ... CASCADE included): delete those first, or use DELETE', TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'foreign_key_violation';
END $f$"#
    )
}

/// The JSON text of column value `x` (NULL when the value is NULL), as `value::to_json`.
fn json_expr(enc: Encoding, x: &str, s: &str) -> String {
    let micros = |v: &str| format!("((extract(microseconds from {v}))::bigint % 1000000)");
    let frac = |v: &str| format!("{s}.sea_orm_audit_frac({})", micros(v));
    // The `time` crate's fraction: its digits without trailing zeros.
    let digits = |v: &str| format!("rtrim(lpad({}::text, 6, '0'), '0')", micros(v));
    match enc {
        Encoding::Bool => format!("CASE WHEN {x} THEN 'true' WHEN NOT {x} THEN 'false' END"),
        Encoding::Int => format!("({x})::text"),
        Encoding::Float => format!("{s}.sea_orm_audit_f64(({x})::float8)"),
        // Not `::text`: casting `char(n)` to text drops its padding, which sqlx reads back
        // (and the hooks log); `to_json` writes the type's own output, padding included.
        Encoding::Text => format!("to_json({x})::text"),
        Encoding::Uuid => format!("to_json(({x})::text)::text"),
        // sqlx reads a zero of any scale as `0`, others with the column's scale.
        Encoding::Decimal => {
            format!("CASE WHEN {x} = 0 THEN '\"0\"' ELSE to_json(({x})::text)::text END")
        }
        Encoding::Bytes => format!("'\"' || replace(encode({x}, 'base64'), chr(10), '') || '\"'"),
        Encoding::Json => format!("{s}.sea_orm_audit_bounded(({x})::jsonb)"),
        // `to_char` has no `date` form: it casts a date to `timestamp`, which ends at 294276
        // AD, and a later date (PostgreSQL's reach to 5874897 AD) failed the write. Outside
        // years 1-9999 a date's month and day are extracted instead.
        Encoding::Date => {
            let part = |field: &str| format!("lpad(extract({field} from {x})::text, 2, '0')");
            dated(
                x,
                "-MM-DD",
                "'\"'",
                &format!("'-' || {} || '-' || {} || '\"'", part("month"), part("day")),
            )
        }
        Encoding::Time => format!(
            "'\"' || to_char(date '2000-01-01' + {x}, 'HH24:MI:SS') || {} || '\"'",
            frac(x)
        ),
        Encoding::NaiveDateTime => {
            let tail = format!("{} || '\"'", frac(x));
            dated(
                x,
                DATE_TIME,
                &tail,
                &format!("to_char({x}, '{DATE_TIME}') || {tail}"),
            )
        }
        Encoding::UtcDateTime => {
            let utc = format!("({x} AT TIME ZONE 'UTC')");
            let tail = format!("{} || '+00:00\"'", frac(x));
            dated(
                &utc,
                DATE_TIME,
                &tail,
                &format!("to_char({utc}, '{DATE_TIME}') || {tail}"),
            )
        }
        // `FM` drops the hour's leading zero only (it applies to the next field).
        Encoding::TimeTime => format!(
            "'\"' || to_char(date '2000-01-01' + {x}, 'FMHH24:MI:SS') || '.' || coalesce(nullif({}, ''), '0') || '\"'",
            digits(x)
        ),
        Encoding::TimeDateTime => {
            let rest = "-MM-DD\"T\"FMHH24:MI:SS";
            let tail = format!("'.' || coalesce(nullif({}, ''), '0') || '\"'", digits(x));
            dated(x, rest, &tail, &format!("to_char({x}, '{rest}') || {tail}"))
        }
        // RFC 3339 holds years 0-9999: for a BC year before 1 BC (year 0) the hooks write the
        // `time` crate's Display, date, time and offset apart. No later year reaches them
        // (the crate ends at 9999).
        Encoding::TimeOffsetDateTime => {
            let utc = format!("({x} AT TIME ZONE 'UTC')");
            let d = digits(x);
            let tail = format!("coalesce('.' || nullif({d}, ''), '') || 'Z\"'");
            let display = format!(
                "to_char({utc}, '-MM-DD FMHH24:MI:SS') || '.' || coalesce(nullif({d}, ''), '0') \
                 || ' +00:00:00\"'"
            );
            dated(
                &utc,
                DATE_TIME,
                &tail,
                &format!(
                    "CASE WHEN extract(year from {utc}) < -1 THEN {display} \
                     ELSE to_char({utc}, '{DATE_TIME}') || {tail} END"
                ),
            )
        }
        // Refused by `refusal` before any SQL is generated.
        Encoding::LocalDateTime => "NULL".to_owned(),
    }
}

/// `to_char`'s pattern of a timestamp after its year, as chrono writes it.
const DATE_TIME: &str = "-MM-DD\"T\"HH24:MI:SS";

/// The JSON string of a date or timestamp `x`, its year as chrono and the `time` crate write
/// it. Years 1-9999 AD (nearly every value, tested first) are `to_char(x, 'YYYY' || rest)`
/// and `tail` (SQL text ending with the closing quote). Outside them the year is signed
/// (`+10000`; BC years astronomical: 1 BC is `0000`, 44 BC is `-0043`, where `to_char`
/// wrote `0044`, the year AD) and `beyond` (SQL text, closing quote included) follows it.
/// `infinity` and `-infinity` (which neither crate reads) are logged as their text;
/// `to_char` gave NULL, which was logged as null. Parenthesized: PL/pgSQL reads an `IF`
/// condition up to its first `THEN`, a `CASE`'s included.
fn dated(x: &str, rest: &str, tail: &str, beyond: &str) -> String {
    let y = format!("extract(year from {x})");
    format!(
        "(CASE WHEN {y} BETWEEN 1 AND 9999 THEN '\"' || to_char({x}, 'YYYY{rest}') || {tail} \
         WHEN NOT isfinite({x}) THEN to_json(({x})::text)::text \
         ELSE '\"' || CASE WHEN {y} > 9999 THEN '+' || ({y})::text WHEN {y} = -1 THEN '0000' \
         ELSE '-' || lpad((-1 - {y})::text, 4, '0') END || {beyond} END)"
    )
}

/// What the diff records for a column value: its JSON, `null`, or the mask.
fn logged_expr(col: &ColumnSpec, x: &str, s: &str) -> String {
    match col.role {
        // A JSON column's JSON null stays null, as the hooks keep it: nothing to hide.
        Role::Masked if col.encoding == Encoding::Json => format!(
            "CASE WHEN {x} IS NULL OR jsonb_typeof(({x})::jsonb) = 'null' THEN 'null' ELSE {} END",
            literal(&Json::from(FILTERED).to_string())
        ),
        Role::Masked => format!(
            "CASE WHEN {x} IS NULL THEN 'null' ELSE {} END",
            literal(&Json::from(FILTERED).to_string())
        ),
        _ => format!("coalesce({}, 'null')", json_expr(col.encoding, x, s)),
    }
}

/// The object id from a row (`NEW` or `OLD`), as `auditable::object_id`: a single key's plain
/// text, a composite key's compact JSON array.
fn key_expr(spec: &Spec, row: &str, s: &str) -> String {
    let value = |i: usize| {
        let col = &spec.columns[i];
        json_expr(col.encoding, &format!("{row}.{}", q(col.name)), s)
    };
    match spec.key.as_slice() {
        [only] => match spec.columns[*only].encoding {
            // `char(n)` keys keep their padding, as in `json_expr`.
            Encoding::Text => format!(
                "(to_json({row}.{}) #>> '{{}}')",
                q(spec.columns[*only].name)
            ),
            Encoding::Uuid => format!("({row}.{})::text", q(spec.columns[*only].name)),
            Encoding::Int => value(*only),
            // Other single keys are JSON strings (dates, bytes...): their unquoted text.
            _ => format!("(({})::json #>> '{{}}')", value(*only)),
        },
        keys => {
            let parts: Vec<String> = keys.iter().map(|i| value(*i)).collect();
            format!("'[' || {} || ']'", parts.join(" || ',' || "))
        }
    }
}

/// `,"name":value` appended to `side` for each logged column of `row`.
fn append_all(spec: &Spec, side: &str, row: &str, s: &str) -> String {
    spec.logged_sorted()
        .into_iter()
        .map(|c| {
            let x = format!("{row}.{}", q(c.name));
            format!(
                "  {side} := {side} || {} || {};\n",
                literal(&format!(",{}:", Json::from(c.name))),
                logged_expr(c, &x, s)
            )
        })
        .collect()
}

/// The trigger function's block for a JSON column `c`: appends its old and new values (with
/// `append(old, new)`) when they differ as serde_json's values compare, which the hooks diff.
/// Equal jsonb text (key order and white space already gone) is equal. Equal jsonb values
/// (numbers compared as decimals: 1.0 = 1.00, but also 1 = 1.0) differ only if the kinds of
/// their numbers do (serde_json tells a u64 from an f64), compared in jsonb's order.
/// Otherwise the canonical text the entry logs is computed once into v_jo/v_jn and compared
/// (two decimals may be one f64), and then the kinds (an integer and an integral float from
/// 1e16 up are both written as integers, `sea_orm_audit_f64`). SQL NULL is JSON null. A
/// masked column logs the mask, so it skips the canonical text: two decimals of one f64 are an
/// entry more there.
fn json_change(
    c: &ColumnSpec,
    old: &str,
    new: &str,
    s: &str,
    append: impl Fn(&str, &str) -> String,
) -> String {
    let text = |x: &str| format!("coalesce({x}::jsonb::text, 'null')");
    let value = |x: &str| format!("coalesce({x}::jsonb, 'null'::jsonb)");
    let kinds = |x: &str| {
        format!(
            "(SELECT string_agg(CASE WHEN n::text LIKE '%.%' THEN 'f' ELSE 'i' END, '') \
             FROM jsonb_path_query(({x})::jsonb, 'strict $.**') AS n \
             WHERE jsonb_typeof(n) = 'number')"
        )
    };
    let kinds_differ = format!("{} IS DISTINCT FROM {}", kinds(new), kinds(old));
    let (if_kinds_differ, otherwise) = if c.role == Role::Masked {
        let logged = append(&logged_expr(c, old, s), &logged_expr(c, new, s));
        (logged.clone(), logged)
    } else {
        let canonical = |x: &str| format!("coalesce({}, 'null')", json_expr(c.encoding, x, s));
        let compute = format!("v_jo := {}; v_jn := {};", canonical(old), canonical(new));
        let logged = append("v_jo", "v_jn");
        (
            format!("{compute} {logged}"),
            // (In parentheses: PL/pgSQL ends an IF's condition at the first THEN outside them.)
            format!(
                "{compute}\n        IF (CASE WHEN v_jn IS DISTINCT FROM v_jo THEN true \
                 ELSE {kinds_differ} END) THEN {logged} END IF;"
            ),
        )
    };
    format!(
        "    IF {} IS DISTINCT FROM {} THEN\n      IF {} = {} THEN\n        \
         IF {kinds_differ} THEN {if_kinds_differ} END IF;\n      ELSE\n        \
         {otherwise}\n      END IF;\n    END IF;\n",
        text(new),
        text(old),
        value(new),
        value(old),
    )
}

/// The trigger function (`CREATE OR REPLACE FUNCTION ...`) for `spec`.
fn function_sql(spec: &Spec, table_schema: &str, audit_schema: &str) -> Result<String, Error> {
    spec.require(refusal)?;
    let s = q(audit_schema);
    let function = format!("{}.{}", q(table_schema), q(&function_name(spec.table)?));
    let mut changed = String::new();
    for c in spec.logged_sorted() {
        let (old, new) = (format!("OLD.{}", q(c.name)), format!("NEW.{}", q(c.name)));
        let key = literal(&format!(",{}:", Json::from(c.name)));
        let append =
            |o: &str, n: &str| format!("v_o := v_o || {key} || {o}; v_n := v_n || {key} || {n};");
        if c.encoding == Encoding::Json {
            changed.push_str(&json_change(c, &old, &new, &s, append));
            continue;
        }
        let (cmp_old, cmp_new) = match c.encoding {
            // Byte for byte, as the hooks compare strings: a column's collation may hold
            // 'bob' and 'BOB' equal (a nondeterministic ICU collation), citext always does.
            Encoding::Text => (
                format!("{old}::text COLLATE \"C\""),
                format!("{new}::text COLLATE \"C\""),
            ),
            // As logged, every digit: 1.5 and 1.50 are equal numbers but not equal entries
            // (a zero of any scale is logged as "0", as sqlx reads it back).
            // (In parentheses: PL/pgSQL ends an IF's condition at the first THEN outside them.)
            Encoding::Decimal => (
                format!("({})", json_expr(c.encoding, &old, &s)),
                format!("({})", json_expr(c.encoding, &new, &s)),
            ),
            _ => (old.clone(), new.clone()),
        };
        changed.push_str(&format!(
            "    IF {cmp_new} IS DISTINCT FROM {cmp_old} THEN\n      {}\n    END IF;\n",
            append(&logged_expr(c, &old, &s), &logged_expr(c, &new, &s)),
        ));
    }
    let skip_unchanged = if spec.log_unchanged {
        ""
    } else {
        "    IF v_o = '' AND v_n = '' THEN RETURN NULL; END IF;\n"
    };
    use audit_log::Column as L;
    let log_table = format!(
        "{s}.{}",
        q(sea_orm::EntityName::table_name(&audit_log::Entity))
    );
    let columns: Vec<String> = super::log_columns(DbBackend::Postgres);
    let entity_type = literal(spec.entity_type);
    let entity_type_json = literal(&Json::from(spec.entity_type).to_string());
    // The entry's place in its object's chain and its hash; with a deferred seal, neither:
    // the entry is written unsealed, and `seal` links and hashes it later.
    let (chain, link) = if spec.seal_deferred {
        (String::new(), literal(UNSEALED))
    } else {
        let chain = format!(
            r#"  IF v_act <> 'create' THEN
    SELECT a.{hash} INTO v_prev FROM {log_table} a WHERE a.{et} = {entity_type} AND a.{oidc} = v_oid
      ORDER BY a.{id} DESC LIMIT 1;
  END IF;
  v_digest := encode(sha256(convert_to('[' || {entity_type_json} || ',' || to_json(v_oid)::text || ','
    || to_json(v_act)::text || ',' || coalesce(to_json(v_actor)::text, 'null') || ',"'
    || to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || 'Z",' || v_changes || ','
    || coalesce(to_json(v_tool)::text, 'null') || ',null,"success",'
    || CASE WHEN v_data IS NULL THEN 'null' ELSE {s}.sea_orm_audit_canon(v_data) END || ']', 'UTF8')), 'hex');
  -- A head that waits for a seal (written while the entity's seal was deferred): this entry
  -- waits too, and the seal links it.
  IF v_prev = {unsealed} THEN v_prev := NULL; v_digest := NULL; END IF;
"#,
            unsealed = literal(UNSEALED),
            hash = q(L::Hash.as_str()),
            et = q(L::EntityType.as_str()),
            oidc = q(L::ObjectId.as_str()),
            id = q(L::Id.as_str()),
        );
        let link = format!(
            "coalesce({}, {})",
            POSTGRES_LINK_HASH
                .replace("{prefix}", "(v_digest || chr(10))")
                .replace("{prev}", "v_prev"),
            literal(UNSEALED)
        );
        (chain, link)
    };
    let body = format!(
        r#"
DECLARE
  v_o text := ''; v_n text := ''; v_oid text; v_act text; v_rekey boolean := false; v_ctx jsonb; v_actor text; v_tool text;
  v_data jsonb; v_changes text; v_prev text; v_at timestamptz := clock_timestamp(); v_digest text;
  v_jo text; v_jn text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    v_act := 'create'; v_oid := {new_key};
{insert_all}  ELSIF TG_OP = 'UPDATE' THEN
    v_oid := {new_key};
    IF v_oid IS DISTINCT FROM {old_key} THEN
      -- A new key is a new object: the old one's delete, then the new one's create.
      v_act := 'delete'; v_oid := {old_key}; v_rekey := true;
{rekey_old}    ELSE
      v_act := 'update';
{changed}{skip_unchanged}    END IF;
  ELSE
    v_act := 'delete'; v_oid := {old_key};
{delete_all}  END IF;
  LOOP
{check_key}  v_changes := '{{"new_value":{{' || substr(v_n, 2) || '}},"old_value":{{' || substr(v_o, 2) || '}}}}';
  v_ctx := nullif(current_setting({setting}, true), '')::jsonb;
  v_actor := v_ctx ->> 'actor'; v_tool := v_ctx ->> 'tool'; v_data := v_ctx -> 'data';
  IF jsonb_typeof(v_data) IS DISTINCT FROM 'object' OR v_data = '{{}}'::jsonb THEN v_data := NULL; END IF;
{chain}  INSERT INTO {log_table} ({columns}) VALUES ({entity_type}, v_oid, v_act, v_actor, v_at,
    v_changes::jsonb, v_tool, NULL, 'success', v_data, v_prev, {link});
  EXIT WHEN NOT v_rekey;
  v_rekey := false; v_act := 'create'; v_oid := {new_key}; v_prev := NULL; v_o := ''; v_n := '';
{rekey_new}  END LOOP;
  RETURN NULL;
END "#,
        new_key = key_expr(spec, "NEW", &s),
        old_key = key_expr(spec, "OLD", &s),
        // An object id the log cannot hold fails the write with its own error, as the hooks
        // refuse it (PostgreSQL's text holds no NUL).
        check_key = if spec.key_needs_check() {
            format!(
                "  IF char_length(v_oid) > {MAX_KEY_CHARS} THEN\n    RAISE EXCEPTION '%', {} USING ERRCODE = 'string_data_right_truncation';\n  END IF;\n",
                literal(KEY_REFUSAL)
            )
        } else {
            String::new()
        },
        insert_all = append_all(spec, "v_n", "NEW", &s),
        delete_all = append_all(spec, "v_o", "OLD", &s),
        rekey_old = append_all(spec, "v_o", "OLD", &s),
        rekey_new = append_all(spec, "v_n", "NEW", &s),
        setting = literal(CONTEXT_SETTING),
        columns = columns.join(", "),
    );
    // The body's literals are written for standard strings (a backslash is itself), which a
    // session may have turned off: the setting is pinned for the function, whose body
    // PL/pgSQL parses when it first runs in a session, under the function's settings.
    let tag = dollar_tag(&body);
    Ok(format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger\n\
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp \
         SET standard_conforming_strings = on AS {tag}{body}{tag}"
    ))
}

/// A dollar-quote tag that does not occur in `body` (a column or entity name may hold
/// `$sea_orm_audit$`).
fn dollar_tag(body: &str) -> String {
    let mut tag = "$sea_orm_audit$".to_owned();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$sea_orm_audit_{n}$");
    }
    tag
}

/// What the function's comment records: the definition it was generated from, and the
/// table's columns it knows (captured or excluded).
fn registry(spec: &Spec, function_sql: &str) -> Json {
    super::registry(spec, fingerprint(function_sql))
}

async fn run<C: ConnectionTrait>(db: &C, sql: &str) -> Result<(), DbErr> {
    db.execute_unprepared(sql).await.map(|_| ())
}

pub(super) async fn install<C: ConnectionTrait>(db: &C, spec: &Spec) -> Result<(), DbErr> {
    let audit_table = sea_orm::EntityName::table_name(&audit_log::Entity);
    let audit_schema = require_schema(db, audit_table).await?;
    let table_schema = require_schema(db, spec.table).await?;
    let s = q(&audit_schema);
    for helper in helpers_sql(&s).into_iter().chain(bounded_helpers_sql(&s)) {
        run(db, &helper).await?;
    }
    let function_sql = function_sql(spec, &table_schema, &audit_schema)?;
    run(db, &function_sql).await?;
    // What `seal` looks for, without scanning the log (empty unless a seal is deferred).
    run(
        db,
        &format!(
            "CREATE INDEX IF NOT EXISTS idx_audit_log_unsealed ON {s}.{} ({}) WHERE {} = {}",
            q(audit_table),
            q(audit_log::Column::Id.as_str()),
            q(audit_log::Column::Hash.as_str()),
            literal(UNSEALED)
        ),
    )
    .await?;
    let function = format!("{}.{}", q(&table_schema), q(&function_name(spec.table)?));
    let table = format!("{}.{}", q(&table_schema), q(spec.table));
    let comment = registry(spec, &function_sql).to_string();
    run(
        db,
        &format!("COMMENT ON FUNCTION {function}() IS {}", literal(&comment)),
    )
    .await?;
    run(db, &format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {table}")).await?;
    run(
        db,
        &format!(
            "CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW \
             EXECUTE FUNCTION {function}()"
        ),
    )
    .await?;
    install_truncate(db, &q(&audit_schema), &table).await
}

async fn install_truncate<C: ConnectionTrait>(db: &C, s: &str, table: &str) -> Result<(), DbErr> {
    run(db, &truncate_sql(s)).await?;
    // A partition's own TRUNCATE fires only its own statement triggers, which PostgreSQL does
    // not clone from the partitioned table as it clones row triggers: each gets one. A
    // partition attached later has none until `install` runs again (`check` reports it).
    for relation in std::iter::once(table.to_owned()).chain(partitions(db, table).await?) {
        run(
            db,
            &format!("DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {relation}"),
        )
        .await?;
        run(
            db,
            &format!(
                "CREATE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {relation} FOR EACH STATEMENT \
                 EXECUTE FUNCTION {s}.sea_orm_audit_truncate()"
            ),
        )
        .await?;
    }
    Ok(())
}

/// The partitions of `table` (quoted, schema-qualified), at every level; none for a table
/// that is not partitioned.
async fn partitions<C: ConnectionTrait>(db: &C, table: &str) -> Result<Vec<String>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT n.nspname::text AS schema, c.relname::text AS name \
             FROM pg_catalog.pg_partition_tree(pg_catalog.to_regclass($1)) p \
             JOIN pg_catalog.pg_class c ON c.oid = p.relid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE p.level > 0 ORDER BY p.level, c.relname",
            [table.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(format!(
                "{}.{}",
                q(&row.try_get::<String>("", "schema")?),
                q(&row.try_get::<String>("", "name")?)
            ))
        })
        .collect()
}

pub(super) async fn uninstall<C: ConnectionTrait>(db: &C, table: &str) -> Result<(), DbErr> {
    let Some(schema) = schema_of(db, table).await? else {
        return Ok(());
    };
    let function = format!("{}.{}", q(&schema), q(&function_name(table)?));
    let relation = format!("{}.{}", q(&schema), q(table));
    for trigger in [TRIGGER, TRUNCATE_TRIGGER] {
        run(
            db,
            &format!("DROP TRIGGER IF EXISTS {trigger} ON {relation}"),
        )
        .await?;
    }
    for partition in partitions(db, &relation).await? {
        run(
            db,
            &format!("DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {partition}"),
        )
        .await?;
    }
    run(db, &format!("DROP FUNCTION IF EXISTS {function}()")).await
}

pub(super) async fn check<C: ConnectionTrait>(db: &C, spec: &Spec) -> Result<Vec<Drift>, DbErr> {
    let audit_table = sea_orm::EntityName::table_name(&audit_log::Entity);
    let audit_schema = require_schema(db, audit_table).await?;
    let table_schema = require_schema(db, spec.table).await?;
    let regclass = format!("{}.{}", q(&table_schema), q(spec.table));
    let installed = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_catalog.obj_description(t.tgfoid, 'pg_proc') AS registry \
             FROM pg_catalog.pg_trigger t WHERE t.tgrelid = pg_catalog.to_regclass($1) \
             AND t.tgname = $2 AND t.tgenabled <> 'D'",
            [regclass.clone().into(), TRIGGER.into()],
        ))
        .await?;
    let Some(installed) = installed else {
        return Ok(vec![Drift::NotInstalled]);
    };
    let recorded: Option<String> = installed.try_get("", "registry")?;
    let recorded: Json = recorded
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or(Json::Null);
    let expected = fingerprint(&function_sql(spec, &table_schema, &audit_schema)?);
    // The table and each of its partitions (a partition's own TRUNCATE fires its trigger only).
    let truncate_logged = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 AS missing FROM (SELECT pg_catalog.to_regclass($1) AS relid \
             UNION ALL SELECT p.relid FROM pg_catalog.pg_partition_tree(pg_catalog.to_regclass($1)) p \
             WHERE p.level > 0) r WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t \
             WHERE t.tgrelid = r.relid AND t.tgname = $2 AND t.tgenabled <> 'D')",
            [regclass.clone().into(), TRUNCATE_TRIGGER.into()],
        ))
        .await?
        .is_none();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT a.attname::text AS name FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY a.attnum",
            [regclass.into()],
        ))
        .await?;
    let columns = rows
        .iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect::<Result<_, _>>()?;
    Ok(super::drift(
        &recorded,
        &expected,
        !truncate_logged,
        columns,
    ))
}

/// The context setting in effect now (the transaction's, else the session's from
/// `carry_context`), empty when there is none.
pub(super) async fn context_in_effect<C: ConnectionTrait>(db: &C) -> Result<String, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_catalog.current_setting($1, true) AS ctx",
            [CONTEXT_SETTING.into()],
        ))
        .await?;
    let text = row
        .map(|r| r.try_get::<Option<String>>("", "ctx"))
        .transpose()?;
    Ok(text.flatten().unwrap_or_default())
}

pub(super) async fn set_context<C: ConnectionTrait>(db: &C, context: String) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_catalog.set_config($1, $2, true)",
        [CONTEXT_SETTING.into(), context.into()],
    ))
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::f64_bounds;

    /// One unit less in the last digit is a finite f64 other than 0; the bound itself is not.
    #[test]
    fn f64_bounds_are_where_an_f64_rounds_to_zero_and_to_infinity() {
        let (least_half, overflow) = f64_bounds();
        let (digits, exponent) = least_half.split_once('e').unwrap();
        assert!(digits.starts_with("24703282292062327208828439643"));
        assert_eq!(least_half.parse::<f64>().unwrap(), 0.0);
        let above = format!("{}{}e{exponent}", &digits[..digits.len() - 1], {
            let last = digits.as_bytes()[digits.len() - 1] - b'0';
            last + 1
        });
        assert_eq!(above.parse::<f64>().unwrap(), 5e-324);
        assert!(overflow.starts_with("17976931348623158079"));
        assert_eq!(overflow.parse::<f64>().unwrap(), f64::INFINITY);
        let last = overflow.as_bytes()[overflow.len() - 1] - b'0';
        let below = format!("{}{}", &overflow[..overflow.len() - 1], last - 1);
        assert_eq!(below.parse::<f64>().unwrap(), f64::MAX);
    }
}
