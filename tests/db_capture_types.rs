//! Database-side capture of every column type the triggers encode: hook-mode and
//! database-mode twins written with the same values, awkward ones included, log the same
//! diffs on every backend; the types a backend cannot reproduce are refused by name, with
//! the reason.

#![allow(unreachable_pub)]

mod common;

use common::TestDb;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, IdenStatic, Iterable, ModelTrait,
};
use sea_orm_audit::capture_db;
use serde_json::Value as Json;

/// The same entity twice: logged by the hooks, and by the database.
macro_rules! twins {
    ($hooked:ident = $hooked_table:literal, $db:ident = $db_table:literal, { $($body:tt)* }) => {
        mod $hooked {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
            #[sea_orm(table_name = $hooked_table)]
            pub struct Model { $($body)* }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            sea_orm_audit::impl_audited_behavior!();
        }

        mod $db {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
            #[sea_orm(table_name = $db_table)]
            #[audit(capture = "database")]
            pub struct Model { $($body)* }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            sea_orm_audit::impl_audited_behavior!();
        }
    };
}

/// One database-mode entity, with the `#[audit]` given.
macro_rules! db_entity {
    ($(#[$doc:meta])* mod $db:ident = $table:literal, #[$audit:meta], { $($body:tt)* }) => {
        $(#[$doc])*
        mod $db {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
            #[sea_orm(table_name = $table)]
            #[$audit]
            pub struct Model { $($body)* }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            sea_orm_audit::impl_audited_behavior!();
        }
    };
}

twins!(hooked_types = "tw_types", db_types = "tw_db_types", {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub blob: Vec<u8>,
    pub maybe_blob: Option<Vec<u8>>,
    pub uid: Uuid,
    pub maybe_uid: Option<Uuid>,
    pub day: Date,
    pub clock: Time,
    pub naive: DateTime,
    pub utc: DateTimeUtc,
    pub stamp: DateTimeWithTimeZone,
    pub maybe_stamp: Option<DateTimeUtc>,
    pub tday: TimeDate,
    pub tclock: TimeTime,
    pub tnaive: TimeDateTime,
    pub tstamp: TimeDateTimeWithTimeZone,
});

twins!(hooked_era = "tw_era", db_era = "tw_db_era", {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub day: Date,
    pub naive: DateTime,
    pub utc: DateTimeUtc,
    pub tday: TimeDate,
    pub tnaive: TimeDateTime,
    pub tstamp: TimeDateTimeWithTimeZone,
});

twins!(hooked_money = "tw_money", db_money = "tw_db_money", {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(column_type = "Decimal(Some((38, 10)))")]
    pub amount: Decimal,
    #[sea_orm(column_type = "Decimal(Some((30, 4)))")]
    pub maybe: Option<Decimal>,
    /// SeaORM's `decimal`: MariaDB's DECIMAL(10,0), PostgreSQL's unconstrained `numeric`.
    pub plain: Decimal,
});

twins!(hooked_doc = "tw_docs", db_doc = "tw_db_docs", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub day: Date,
    pub name: String,
});

twins!(hooked_json = "tw_json", db_json = "tw_db_json", {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub doc: Json,
    pub maybe: Option<Json>,
});

twins!(hooked_rekey = "tw_rekey", db_rekey = "tw_db_rekey", {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub name: String,
});

twins!(hooked_pair = "tw_pairs", db_pair = "tw_db_pairs", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub uid: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    #[sea_orm(primary_key, auto_increment = false)]
    pub label: String,
    pub n: i32,
});

twins!(hooked_code = "tw_codes", db_code = "tw_db_codes", {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(column_type = "Char(Some(6))")]
    pub label: String,
    #[sea_orm(column_type = "Char(Some(6))", nullable)]
    pub maybe: Option<String>,
    #[sea_orm(column_type = "Binary(4)", nullable)]
    pub tag: Option<Vec<u8>>,
});

twins!(hooked_code_pair = "tw_code_pairs", db_code_pair = "tw_db_code_pairs", {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Char(Some(4))")]
    pub code: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub n: i32,
    pub label: String,
});

/// The same values in the other twin's active model (the columns are the same, in order).
fn twin<A, B>(am: &A) -> B
where
    A: ActiveModelTrait,
    B: ActiveModelTrait,
{
    let mut out = B::default();
    let to_columns: Vec<_> = <B::Entity as EntityTrait>::Column::iter().collect();
    for (from, to) in <A::Entity as EntityTrait>::Column::iter().zip(to_columns) {
        assert_eq!(from.as_str(), to.as_str());
        if let sea_orm::ActiveValue::Set(v) = am.get(from) {
            out.set(to, v);
        }
    }
    out
}

/// Asserts that `verify` finds nothing wrong.
async fn assert_verified(db: &sea_orm::DatabaseConnection) {
    let report = sea_orm_audit::verify(db).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Creates the database-mode entity's table and installs its capture.
async fn installed<E>(t: &TestDb, entity: E)
where
    E: EntityTrait,
    E::Model: sea_orm_audit::Auditable,
{
    common::create_table(&t.db, entity).await;
    capture_db::install::<E::Model, _>(&t.db).await.unwrap();
}

/// `(object_id, action, changes)` of every entry of one entity type, oldest first.
async fn entries(t: &TestDb, entity_type: &str) -> Vec<(String, String, Json)> {
    capture_db::seal(&t.db).await.unwrap();
    common::all_logs(&t.db)
        .await
        .into_iter()
        .filter(|r| r.entity_type == entity_type)
        .map(|r| (r.object_id, r.action, r.changes.unwrap_or(Json::Null)))
        .collect()
}

/// Runs each statement in turn.
async fn run_all<C: ConnectionTrait>(db: &C, statements: &[&str]) {
    for sql in statements {
        db.execute_unprepared(sql).await.unwrap();
    }
}

/// The `changes` of every entry of one entity type, oldest first.
async fn changes(t: &TestDb, entity_type: &str) -> Vec<Json> {
    entries(t, entity_type)
        .await
        .into_iter()
        .map(|e| e.2)
        .collect()
}

/// Writes `count` states of one composite-key row (`n` counting up) through both twins.
async fn write_pairs(t: &TestDb, uid: uuid::Uuid, day: chrono::NaiveDate, label: &str, count: i32) {
    let states: Vec<hooked_pair::ActiveModel> = (0..count)
        .map(|n| hooked_pair::ActiveModel {
            uid: Set(uid),
            day: Set(day),
            label: Set(label.into()),
            n: Set(n),
        })
        .collect();
    write_both::<hooked_pair::ActiveModel, db_pair::ActiveModel>(
        t,
        &states,
        "tw_pairs",
        "tw_db_pairs",
    )
    .await;
}

/// The object ids of every entry of one entity type, oldest first.
async fn object_ids(t: &TestDb, entity_type: &str) -> Vec<String> {
    entries(t, entity_type)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect()
}

/// The value in column `v` of the one row `sql` selects.
async fn one<T: sea_orm::TryGetable>(db: &sea_orm::DatabaseConnection, sql: &str) -> T {
    let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
    let row = db.query_one_raw(statement).await.unwrap().unwrap();
    row.try_get::<T>("", "v").unwrap()
}

/// The marker of a value deeper than serde_json reads: the SHA-256 of its text.
fn text_digest_marker(text: &str) -> String {
    use sha2::Digest as _;
    let hex: String = sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("***TOO_DEEP*** sha256:{hex}")
}

/// Writes `states` through both twins (insert the first, update to each next, delete) and
/// asserts that both logged the same entries, one per write.
async fn write_both<HA, DA>(t: &TestDb, states: &[HA], hooked: &str, database: &str)
where
    HA: ActiveModelTrait + sea_orm::ActiveModelBehavior + Send + Clone,
    DA: ActiveModelTrait + sea_orm::ActiveModelBehavior + Send,
    <HA::Entity as EntityTrait>::Model: sea_orm::IntoActiveModel<HA>,
    <DA::Entity as EntityTrait>::Model: sea_orm::IntoActiveModel<DA>,
{
    let db = &t.db;
    let (h_before, d_before) = (
        entries(t, hooked).await.len(),
        entries(t, database).await.len(),
    );
    let key = <HA::Entity as EntityTrait>::PrimaryKey::iter()
        .next()
        .map(sea_orm::PrimaryKeyToColumn::into_column)
        .unwrap();
    let mut h = states[0].clone().insert(db).await.unwrap();
    let mut d = twin::<HA, DA>(&states[0]).insert(db).await.unwrap();
    for state in &states[1..] {
        let mut am = state.clone();
        am.set(key, h.get(key));
        h = am.clone().update(db).await.unwrap();
        d = twin::<HA, DA>(&am).update(db).await.unwrap();
    }
    h.delete(db).await.unwrap();
    d.delete(db).await.unwrap();
    let h = entries(t, hooked).await.split_off(h_before);
    let d = entries(t, database).await.split_off(d_before);
    assert_eq!(h.len(), states.len() + 1, "{h:#?}");
    for (i, (a, b)) in h.iter().zip(&d).enumerate() {
        assert_eq!(a, b, "entry {i}");
    }
    assert_eq!(h.len(), d.len());
    assert_verified(db).await;
}

/// On MariaDB, BLOBs (SeaORM's `varbinary(255)` is too short for the longest) and columns of
/// microsecond precision: SeaORM's `datetime`, `time` and `timestamp`
/// keep whole seconds, which the hooks' after-image (the value written) does not know. `stamp`
/// stays a DATETIME (UTC as sqlx writes it), `utc` and `tstamp` are TIMESTAMPs (read in the
/// session's zone).
async fn create_types_table<E: EntityTrait>(t: &TestDb, entity: E, table: &str) {
    common::create_table(&t.db, entity).await;
    if t.backend() == DbBackend::MySql {
        t.db.execute_unprepared(&format!(
            "ALTER TABLE {table} MODIFY `blob` BLOB NOT NULL, MODIFY maybe_blob BLOB NULL, MODIFY clock TIME(6) NOT NULL, MODIFY naive DATETIME(6) NOT NULL, \
             MODIFY utc TIMESTAMP(6) NOT NULL, MODIFY stamp DATETIME(6) NOT NULL, \
             MODIFY maybe_stamp TIMESTAMP(6) NULL, MODIFY tclock TIME(6) NOT NULL, \
             MODIFY tnaive DATETIME(6) NOT NULL, MODIFY tstamp TIMESTAMP(6) NOT NULL"
        ))
        .await
        .unwrap();
    }
}

fn ymd(y: i32, m: u32, d: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn hms_nano(h: u32, m: u32, s: u32, nano: u32) -> chrono::NaiveTime {
    chrono::NaiveTime::from_hms_nano_opt(h, m, s, nano).unwrap()
}

fn time_date(d: chrono::NaiveDate) -> time::Date {
    use chrono::Datelike;
    let month = time::Month::try_from(d.month() as u8).unwrap();
    time::Date::from_calendar_date(d.year(), month, d.day() as u8).unwrap()
}

fn time_time(t: chrono::NaiveTime) -> time::Time {
    use chrono::Timelike;
    time::Time::from_hms_nano(
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond(),
    )
    .unwrap()
}

/// One row's values: a date, a time of day, a UTC offset in seconds and bytes.
fn types_state(
    day: chrono::NaiveDate,
    clock: chrono::NaiveTime,
    offset: i32,
    blob: Vec<u8>,
    uid: uuid::Uuid,
    i: usize,
) -> hooked_types::ActiveModel {
    let naive = day.and_time(clock);
    let fixed = chrono::FixedOffset::east_opt(offset).unwrap();
    let stamp = naive.and_local_timezone(fixed).unwrap();
    let toff = time::UtcOffset::from_whole_seconds(offset).unwrap();
    let tnaive = time::PrimitiveDateTime::new(time_date(day), time_time(clock));
    hooked_types::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        maybe_blob: Set((!i.is_multiple_of(3)).then(|| blob.iter().rev().copied().collect())),
        blob: Set(blob),
        uid: Set(uid),
        maybe_uid: Set((i % 2 == 1).then_some(uid)),
        day: Set(day),
        clock: Set(clock),
        naive: Set(naive),
        utc: Set(stamp.with_timezone(&chrono::Utc)),
        stamp: Set(stamp),
        maybe_stamp: Set(i
            .is_multiple_of(2)
            .then(|| stamp.with_timezone(&chrono::Utc))),
        tday: Set(time_date(day)),
        tclock: Set(time_time(clock)),
        tnaive: Set(tnaive),
        tstamp: Set(tnaive.assume_offset(toff)),
    }
}

/// PostgreSQL's dates reach from 4713 BC to far past 9999: chrono and the `time` crate write
/// a year outside 0-9999 with a sign, and BC years as astronomical ones (1 BC is year 0).
/// `to_char`'s `YYYY` wrote 10000 without its `+` and 44 BC as `0044`; `infinity`, which
/// neither crate reads, gave NULL and was logged as null. SQLite stores sqlx's text, whose
/// date part is longer than 10 characters for such years: its trigger kept the space before
/// the time where the hooks write `T`. (MariaDB's dates end at 9999.)
#[tokio::test]
async fn dates_outside_years_1_to_9999_are_encoded_as_the_hooks_encode_them() {
    let t = TestDb::new().await;
    let backend = t.backend();
    if backend == DbBackend::MySql {
        t.finish().await;
        return;
    }
    common::create_table(&t.db, hooked_era::Entity).await;
    installed(&t, db_era::Entity).await;
    let clock = hms_nano(23, 59, 59, 999_999_000);
    let states: Vec<hooked_era::ActiveModel> = [
        ymd(2024, 2, 29),
        ymd(10000, 1, 1),
        ymd(262_142, 12, 31),
        ymd(0, 2, 29),
        ymd(-43, 3, 15),
        ymd(-4712, 1, 1),
        ymd(1, 1, 1),
        ymd(9999, 12, 31),
        ymd(-1, 12, 31),
    ]
    .into_iter()
    .map(|day| {
        use chrono::Datelike;
        // The `time` crate holds years -9999 to 9999.
        let tday = time_date(day.with_year(day.year().clamp(-9999, 9999)).unwrap());
        let tnaive = time::PrimitiveDateTime::new(tday, time_time(clock));
        hooked_era::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            day: Set(day),
            naive: Set(day.and_time(clock)),
            utc: Set(day.and_time(clock).and_utc()),
            tday: Set(tday),
            tnaive: Set(tnaive),
            // SeaORM does not update a `time` offset timestamp of a BC year on SQLite
            // (`RecordNotUpdated`, with or without the hooks).
            tstamp: Set(if backend == DbBackend::Sqlite {
                time_date(ymd(2000, 1, 1)).midnight().assume_utc()
            } else {
                tnaive.assume_utc()
            }),
        }
    })
    .collect();
    write_both::<hooked_era::ActiveModel, db_era::ActiveModel>(&t, &states, "tw_era", "tw_db_era")
        .await;
    let logged = serde_json::to_string(&entries(&t, "tw_db_era").await).unwrap();
    for text in [
        "\"+10000-01-01\"",
        "\"+262142-12-31T23:59:59.999999+00:00\"",
        "\"0000-02-29\"",
        "\"-0043-03-15T23:59:59.999999\"",
        "\"-4712-01-01\"",
    ] {
        assert!(logged.contains(text), "{text} not in {logged}");
    }
    // In a composite key: the object ids the hooks give.
    common::create_table(&t.db, hooked_pair::Entity).await;
    installed(&t, db_pair::Entity).await;
    for day in [ymd(-43, 3, 15), ymd(10000, 1, 1), ymd(0, 1, 1)] {
        write_pairs(&t, uuid::Uuid::nil(), day, "k", 2).await;
    }
    let ids = object_ids(&t, "tw_db_pairs").await;
    assert!(
        ids.contains(&r#"["00000000-0000-0000-0000-000000000000","-0043-03-15","k"]"#.to_owned()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&r#"["00000000-0000-0000-0000-000000000000","+10000-01-01","k"]"#.to_owned()),
        "{ids:?}"
    );
    if backend != DbBackend::Postgres {
        assert_verified(&t.db).await;
        return t.finish().await;
    }
    // Written by SQL: logged as PostgreSQL's text, not as null.
    t.db.execute_unprepared(
        "INSERT INTO tw_db_era (day, naive, utc, tday, tnaive, tstamp) VALUES \
         ('infinity', '-infinity', 'infinity', '-infinity', 'infinity', '-infinity')",
    )
    .await
    .unwrap();
    let (_, _, changes) = entries(&t, "tw_db_era").await.pop().unwrap();
    let new = &changes["new_value"];
    for (column, text) in [
        ("day", "infinity"),
        ("naive", "-infinity"),
        ("utc", "infinity"),
        ("tday", "-infinity"),
        ("tnaive", "infinity"),
        ("tstamp", "-infinity"),
    ] {
        assert_eq!(new[column], text, "{column}: {changes}");
    }
    // Dates past 294276 AD, where `to_char` fails (it casts a date to a timestamp): the write
    // failed with "date out of range for timestamp".
    t.db.execute_unprepared(
        "INSERT INTO tw_db_era (day, naive, utc, tday, tnaive, tstamp) VALUES \
         ('5874897-12-31', '2000-01-01', '2000-01-01', '294277-01-01', '2000-01-01', '2000-01-01')",
    )
    .await
    .unwrap();
    let (_, _, changes) = entries(&t, "tw_db_era").await.pop().unwrap();
    assert_eq!(changes["new_value"]["day"], "+5874897-12-31", "{changes}");
    assert_eq!(changes["new_value"]["tday"], "+294277-01-01", "{changes}");
    t.db.execute_unprepared(
        "INSERT INTO tw_db_pairs (uid, day, label, n) VALUES \
         ('00000000-0000-0000-0000-000000000000', '5874897-12-31', 'k', 1)",
    )
    .await
    .unwrap();
    let (id, _, _) = entries(&t, "tw_db_pairs").await.pop().unwrap();
    assert_eq!(
        id,
        r#"["00000000-0000-0000-0000-000000000000","+5874897-12-31","k"]"#
    );
    assert_verified(&t.db).await;
    t.finish().await;
}

#[tokio::test]
async fn bytes_uuids_dates_and_times_are_encoded_as_the_hooks_encode_them() {
    let t = TestDb::new().await;
    let mysql = t.backend() == DbBackend::MySql;
    create_types_table(&t, hooked_types::Entity, "tw_types").await;
    create_types_table(&t, db_types::Entity, "tw_db_types").await;
    capture_db::install::<db_types::Model, _>(&t.db)
        .await
        .unwrap();
    let every_byte: Vec<u8> = (0..=255).collect();
    let blobs: Vec<Vec<u8>> = vec![
        vec![],
        every_byte.clone(),                     // 256 = 1 mod 3
        every_byte[1..].to_vec(),               // 255 = 0 mod 3
        [every_byte.clone(), vec![0]].concat(), // 257 = 2 mod 3
        vec![0],
        vec![0xff, 0xfe],
        vec![0, 0, 0],
        vec![0xfb, 0xff, 0xbf, 0x3e],
        b"\n".repeat(60), // base64 longer than one 76-character line
    ];
    let uids = [
        uuid::Uuid::nil(),
        uuid::Uuid::max(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::parse_str("00000000-0000-0000-0000-0000000000ff").unwrap(),
    ];
    // (day, time, offset in seconds): leap days, midnight, the last microsecond of a day,
    // fractions with trailing zeros, negative and half-hour offsets. MariaDB's TIMESTAMP
    // holds 1970-2038.
    let mut moments = vec![
        (ymd(2024, 2, 29), hms_nano(0, 0, 0, 0), 0),
        (
            ymd(2000, 2, 29),
            hms_nano(23, 59, 59, 999_999_000),
            -8 * 3600,
        ),
        (
            ymd(1999, 12, 31),
            hms_nano(12, 0, 0, 500_000_000),
            5 * 3600 + 45 * 60,
        ),
        (
            ymd(2037, 1, 1),
            hms_nano(9, 5, 7, 120_000_000),
            -(3 * 3600 + 30 * 60),
        ),
        (ymd(1970, 1, 2), hms_nano(0, 0, 0, 1_000), 14 * 3600),
        (ymd(2024, 2, 29), hms_nano(10, 0, 0, 10_000), -12 * 3600),
        (ymd(2001, 1, 1), hms_nano(0, 0, 1, 100_000), 0),
    ];
    if !mysql {
        // Nanoseconds: MariaDB keeps microseconds, and the hooks' after-image there is the
        // value written (see README); PostgreSQL rounds to microseconds before either reads.
        moments.push((ymd(2010, 6, 15), hms_nano(13, 14, 15, 123_456_789), 3600));
        moments.push((ymd(2010, 6, 15), hms_nano(13, 14, 15, 100_000_001), -3600));
    }
    if !mysql {
        moments.push((ymd(1, 1, 1), hms_nano(0, 0, 0, 0), 0));
        moments.push((ymd(9999, 12, 31), hms_nano(23, 59, 59, 999_999_000), 0));
    }
    let states: Vec<hooked_types::ActiveModel> = moments
        .iter()
        .enumerate()
        .map(|(i, (day, clock, offset))| {
            types_state(
                *day,
                *clock,
                *offset,
                blobs[i % blobs.len()].clone(),
                uids[i % uids.len()],
                i,
            )
        })
        .chain((0..blobs.len()).map(|i| {
            // Every blob once more, with nothing else changed.
            let (day, clock, offset) = moments[moments.len() - 1];
            types_state(day, clock, offset, blobs[i].clone(), uids[0], 2)
        }))
        .collect();
    write_both::<hooked_types::ActiveModel, db_types::ActiveModel>(
        &t,
        &states,
        "tw_types",
        "tw_db_types",
    )
    .await;
    // The values compared are the awkward ones, in the hooks' encoding.
    let logged = serde_json::to_string(&entries(&t, "tw_db_types").await).unwrap();
    use base64::Engine as _;
    for text in [
        base64::engine::general_purpose::STANDARD.encode(&every_byte),
        "ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned(),
        "00000000-0000-0000-0000-000000000000".to_owned(),
        "\"0:00:00.0\"".to_owned(),
        "\"23:59:59.999999\"".to_owned(),
        "2024-02-29T00:00:00+00:00".to_owned(),
        "\"\"".to_owned(),
    ] {
        assert!(logged.contains(&text), "{text} not in {logged}");
    }
    if mysql {
        // MariaDB cuts nanoseconds before the trigger sees them; the hooks log the update's
        // value as sent.
        let h = states[0].clone().insert(&t.db).await.unwrap();
        let d = twin::<_, db_types::ActiveModel>(&states[0])
            .insert(&t.db)
            .await
            .unwrap();
        let clock = hms_nano(13, 14, 15, 123_456_789);
        let mut am: hooked_types::ActiveModel = sea_orm::IntoActiveModel::into_active_model(h);
        am.clock = Set(clock);
        am.update(&t.db).await.unwrap();
        let mut am: db_types::ActiveModel = sea_orm::IntoActiveModel::into_active_model(d);
        am.clock = Set(clock);
        let am = am.update(&t.db).await.unwrap();
        let last =
            |e: Vec<(String, String, Json)>| e.last().unwrap().2["new_value"]["clock"].clone();
        assert_eq!(last(entries(&t, "tw_types").await), "13:14:15.123456789");
        assert_eq!(last(entries(&t, "tw_db_types").await), "13:14:15.123456");
        // Another session's time zone: a TIMESTAMP is taken back to UTC, a DATETIME is the
        // UTC time as written.
        let id = am.id;
        let txn = sea_orm::TransactionTrait::begin(&t.db).await.unwrap();
        for sql in [
            "SET time_zone = '-03:00'".to_owned(),
            format!(
                "UPDATE tw_db_types SET utc = '2030-01-01 00:00:00', stamp = '2030-01-01 00:00:00' \
                 WHERE id = {id}"
            ),
            "SET time_zone = '+00:00'".to_owned(),
        ] {
            txn.execute_unprepared(&sql).await.unwrap();
        }
        txn.commit().await.unwrap();
        let new = entries(&t, "tw_db_types").await.pop().unwrap().2["new_value"].clone();
        assert_eq!(new["utc"], "2030-01-01T03:00:00+00:00");
        assert_eq!(new["stamp"], "2030-01-01T00:00:00+00:00");
    }
    if t.backend() == DbBackend::Sqlite {
        // Text another program wrote: sqlx's layout is turned into the hooks', other text is
        // logged as stored.
        let d = twin::<_, db_types::ActiveModel>(&states[0])
            .insert(&t.db)
            .await
            .unwrap();
        t.db.execute_unprepared(&format!(
            "UPDATE tw_db_types SET naive = '2030-01-01 00:00:00', day = '2030/01/01' WHERE id = {}",
            d.id
        ))
        .await
        .unwrap();
        let new = entries(&t, "tw_db_types").await.pop().unwrap().2["new_value"].clone();
        assert_eq!(new["naive"], "2030-01-01T00:00:00");
        assert_eq!(new["day"], "2030/01/01");
    }
    t.finish().await;
}

#[tokio::test]
async fn decimals_keep_every_digit_or_are_refused_with_the_reason() {
    let t = TestDb::new().await;
    common::create_table(&t.db, hooked_money::Entity).await;
    common::create_table(&t.db, db_money::Entity).await;
    let installed = capture_db::install::<db_money::Model, _>(&t.db).await;
    if t.backend() == DbBackend::Sqlite {
        let text = installed.unwrap_err().to_string();
        assert!(text.contains("tw_db_money.amount"), "{text}");
        assert!(text.contains("REAL"), "{text}");
        t.finish().await;
        return;
    }
    installed.unwrap();
    let dec = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    let amounts = [
        "123456789012345678.0123456789", // 28 digits
        "0",
        "-0.0000000001",
        "100000", // scale 0
        "1.5",
        "-999999999999999999.9999999999",
        "0.00000000005", // one digit more than the column keeps: rounded
        "-2.00000000005",
        "7.000",
    ];
    let states: Vec<hooked_money::ActiveModel> = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| hooked_money::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            amount: Set(dec(a)),
            maybe: Set(i.is_multiple_of(2).then(|| dec(a) / dec("3"))),
            plain: Set(rust_decimal::Decimal::new(
                i as i64 * 1_234_567 - 5_000_500,
                3,
            )),
        })
        .collect();
    write_both::<hooked_money::ActiveModel, db_money::ActiveModel>(
        &t,
        &states,
        "tw_money",
        "tw_db_money",
    )
    .await;
    t.finish().await;
}

#[tokio::test]
async fn uuid_keys_give_the_object_ids_the_hooks_give() {
    let t = TestDb::new().await;
    common::create_table(&t.db, hooked_doc::Entity).await;
    installed(&t, db_doc::Entity).await;
    for id in [uuid::Uuid::nil(), uuid::Uuid::new_v4()] {
        let states: Vec<hooked_doc::ActiveModel> = (0..3)
            .map(|i| hooked_doc::ActiveModel {
                id: Set(id),
                day: Set(ymd(2024, 2, 27 + i)),
                name: Set(format!("name {i}")),
            })
            .collect();
        write_both::<hooked_doc::ActiveModel, db_doc::ActiveModel>(
            &t,
            &states,
            "tw_docs",
            "tw_db_docs",
        )
        .await;
    }
    // Composite keys of a UUID, a date and text: JSON arrays, as the hooks write them.
    common::create_table(&t.db, hooked_pair::Entity).await;
    installed(&t, db_pair::Entity).await;
    write_pairs(&t, uuid::Uuid::max(), ymd(2000, 2, 29), "é \"q\" \\", 3).await;
    let pair_ids = object_ids(&t, "tw_db_pairs").await;
    assert_eq!(
        pair_ids[0],
        r#"["ffffffff-ffff-ffff-ffff-ffffffffffff","2000-02-29","é \"q\" \\"]"#
    );
    // Control characters MariaDB escapes in upper case (`\u001F`) get serde_json's
    // `\u001f`, and the text `\u001F` itself (an escaped backslash) stays as it is. Before,
    // MariaDB's object id differed from the hooks' for such a key.
    write_pairs(
        &t,
        uuid::Uuid::nil(),
        ymd(2000, 3, 1),
        "\u{b}\u{e}\u{f}\u{1a}\u{1f} \\u001F \\\u{1f}",
        3,
    )
    .await;
    let last = entries(&t, "tw_db_pairs").await.pop().unwrap();
    assert_eq!(
        last.0,
        r#"["00000000-0000-0000-0000-000000000000","2000-03-01","\u000b\u000e\u000f\u001a\u001f \\u001F \\\u001f"]"#
    );
    let ids = object_ids(&t, "tw_db_docs").await;
    assert_eq!(ids[0], "00000000-0000-0000-0000-000000000000");
    t.finish().await;
}

/// `char(n)` values and keys as sqlx reads them back: PostgreSQL pads them to the column's
/// width, and the triggers log the padding as the hooks do (a cast to text would drop it);
/// MariaDB and SQLite read them unpadded. (SeaORM cannot update or delete a model by a
/// padded `char(n)` key on PostgreSQL: it binds the key as `text`, which drops the padding
/// of the column's value before comparing. Keys are written here by SQL.)
#[tokio::test]
async fn fixed_width_text_is_logged_with_the_padding_it_reads_back_with() {
    let t = TestDb::new().await;
    let db = &t.db;
    common::create_table(db, hooked_code::Entity).await;
    installed(&t, db_code::Entity).await;
    let states: Vec<hooked_code::ActiveModel> = [
        ("x", None, None),
        ("xy z", Some("q"), Some(&[1u8, 2, 3, 4][..])),
        ("xy z", None, None),
        ("abcdef", Some(""), Some(&[9, 0, 0, 0][..])),
        // Trailing spaces written: MySQL reads them back (and its triggers see them) stripped.
        // Fewer bytes than BINARY(4) holds: MySQL pads them with zero bytes.
        ("x  ", Some("q "), Some(&[9][..])),
    ]
    .iter()
    .map(|(label, maybe, tag)| hooked_code::ActiveModel {
        label: Set((*label).into()),
        maybe: Set(maybe.map(str::to_owned)),
        tag: Set(tag.map(<[u8]>::to_vec)),
        ..Default::default()
    })
    .collect();
    write_both::<hooked_code::ActiveModel, db_code::ActiveModel>(
        &t,
        &states,
        "tw_codes",
        "tw_db_codes",
    )
    .await;
    let padded = t.backend() == DbBackend::Postgres;
    let logged = entries(&t, "tw_db_codes").await;
    assert_eq!(
        logged[0].2["new_value"]["label"],
        if padded { "x     " } else { "x" }
    );
    let spaced = &logged[4].2["new_value"];
    let expected = match t.backend() {
        DbBackend::Postgres => ["x     ", "q     "],
        DbBackend::MySql => ["x", "q"],
        _ => ["x  ", "q "],
    };
    assert_eq!([&spaced["label"], &spaced["maybe"]], expected);
    // [9] into BINARY(4): stored (and read) as [9, 0, 0, 0] on MySQL, whose previous value was
    // exactly that, so `tag` is not in the diff there; [9] elsewhere.
    if t.backend() == DbBackend::MySql {
        assert!(spaced.get("tag").is_none(), "{spaced}");
    } else {
        assert_eq!(spaced["tag"], "CQ==");
    }
    // Only spaces added: no change on MySQL and PostgreSQL (what they read back is the same),
    // logged on SQLite, alike in both modes.
    let y = hooked_code::ActiveModel {
        label: Set("y".into()),
        ..Default::default()
    };
    let h = y.clone().insert(db).await.unwrap();
    let d = twin::<_, db_code::ActiveModel>(&y)
        .insert(db)
        .await
        .unwrap();
    let mut am = sea_orm::IntoActiveModel::into_active_model(h);
    am.label = Set("y ".into());
    let h = am.update(db).await.unwrap();
    let mut am = sea_orm::IntoActiveModel::into_active_model(d);
    am.label = Set("y ".into());
    let d = am.update(db).await.unwrap();
    let updates =
        |rows: Vec<(String, String, Json)>| rows.iter().filter(|e| e.1 == "update").count();
    let (h_updates, d_updates) = (
        updates(entries(&t, "tw_codes").await),
        updates(entries(&t, "tw_db_codes").await),
    );
    let spaces_logged = usize::from(t.backend() == DbBackend::Sqlite);
    assert_eq!(h_updates, 4 + spaces_logged);
    assert_eq!(d_updates, 4 + spaces_logged);
    // MySQL outside a strict sql_mode cuts five bytes written into BINARY(4) to four (with a
    // warning): the hooks log what is stored, as the trigger does.
    if t.backend() == DbBackend::MySql {
        let tx = common::begin_not_strict(db).await;
        let mut am = sea_orm::IntoActiveModel::into_active_model(h);
        am.tag = Set(Some(vec![1, 2, 3, 4, 5]));
        am.update(&tx).await.unwrap();
        let mut am = sea_orm::IntoActiveModel::into_active_model(d);
        am.tag = Set(Some(vec![1, 2, 3, 4, 5]));
        am.update(&tx).await.unwrap();
        common::commit_strict_again(tx).await;
        let newest = |mut rows: Vec<(String, String, Json)>| rows.pop().unwrap().2;
        let hooked = newest(entries(&t, "tw_codes").await);
        assert_eq!(hooked["new_value"]["tag"], "AQIDBA==", "{hooked}");
        assert_eq!(hooked, newest(entries(&t, "tw_db_codes").await));
    }
    // A padded key in a composite key: the create the hooks log, then the database's update
    // and delete of the same object.
    common::create_table(db, hooked_code_pair::Entity).await;
    installed(&t, db_code_pair::Entity).await;
    let state = hooked_code_pair::ActiveModel {
        code: Set("c".into()),
        n: Set(7),
        label: Set("label".into()),
    };
    let hooked = state.clone().insert(db).await.unwrap();
    twin::<_, db_code_pair::ActiveModel>(&state)
        .insert(db)
        .await
        .unwrap();
    run_all(
        db,
        &[
            "UPDATE tw_db_code_pairs SET label = 'other' WHERE code = 'c'",
            "DELETE FROM tw_db_code_pairs WHERE code = 'c'",
        ],
    )
    .await;
    let id = if padded {
        r#"["c   ",7]"#
    } else {
        r#"["c",7]"#
    };
    assert_eq!(sea_orm_audit::Auditable::audit_object_id(&hooked), id);
    let hooked = entries(&t, "tw_code_pairs").await;
    let logged = entries(&t, "tw_db_code_pairs").await;
    assert_eq!(logged[0], hooked[0]);
    let ids: Vec<&str> = logged.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(ids, [id, id, id]);
    assert_eq!(
        logged[1].2["new_value"]["label"], "other",
        "{:?}",
        logged[1]
    );
    assert_verified(db).await;
    t.finish().await;
}

#[tokio::test]
async fn local_times_are_refused_with_the_reason_on_every_backend() {
    mod local {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
        #[sea_orm(table_name = "tw_db_local")]
        #[audit(capture = "database")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            pub at: DateTimeLocal,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        sea_orm_audit::impl_audited_behavior!();
    }
    let t = TestDb::new().await;
    common::create_table(&t.db, local::Entity).await;
    let text = capture_db::install::<local::Model, _>(&t.db)
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("tw_db_local.at"), "{text}");
    assert!(text.contains("local UTC offset"), "{text}");
    assert!(text.contains("DateTime<Utc>"), "{text}");
    t.finish().await;
}

/// `leaf` inside `levels` containers, arrays and objects in turn, with numbers, text and keys
/// out of byte order around it.
fn nest(levels: usize, leaf: Json) -> Json {
    (0..levels).fold(leaf, |inner, i| {
        if i % 2 == 0 {
            serde_json::json!([1.5, "\u{fc}", inner, -7])
        } else {
            serde_json::json!({"b": inner, "a": 1e20, "Z": u64::MAX, "é": null})
        }
    })
}

#[tokio::test]
async fn json_nested_too_deep_is_recorded_as_the_hooks_marker() {
    let t = TestDb::new().await;
    common::create_table(&t.db, hooked_json::Entity).await;
    installed(&t, db_json::Entity).await;
    let limit = sea_orm_audit::MAX_JSON_DEPTH;
    // Around the limit: a scalar leaf adds no level, an empty container adds one. MariaDB's
    // JSON columns hold 32 levels counting the scalar, so the deepest values are for the others.
    let mut docs = vec![
        nest(limit, Json::from(true)),
        nest(limit, serde_json::json!([])),
        nest(limit - 1, serde_json::json!({})),
        nest(limit + 1, Json::from("x")),
        nest(limit - 1, serde_json::json!([[]])),
        nest(2, Json::from(1)),
        nest(limit + 2, Json::Null),
    ];
    if t.backend() != DbBackend::MySql {
        docs.push(nest(40, Json::from(2.5)));
        docs.push(nest(100, serde_json::json!({"k": [1, 2]})));
        // As deep as serde_json reads (the hooks read it back).
        docs.push(nest(127, Json::from(0.1)));
    }
    // Wide: every kind of member, many times (PostgreSQL builds a container's text in one
    // aggregate, with integers of up to 18 digits as their own text).
    docs.push(Json::Object(
        (0..3000)
            .rev()
            .map(|i: i64| {
                let v = match i % 8 {
                    0 => Json::from(i * 1_000_000_000_000_000),
                    1 => Json::from(i as f64 + 0.5),
                    2 => Json::from(format!("s\"{i}\u{1f}é")),
                    3 => Json::Null,
                    4 => serde_json::json!([
                        i,
                        1e20,
                        -0.0,
                        i64::MIN,
                        u64::MAX,
                        123456789012345678i64
                    ]),
                    5 => Json::from(i % 3 == 0),
                    6 => serde_json::json!({"z": i, "a": [], "": {}}),
                    _ => Json::from(-1e-7 * i as f64),
                };
                (format!("k{i}"), v)
            })
            .collect(),
    ));
    let states: Vec<hooked_json::ActiveModel> = docs
        .iter()
        .enumerate()
        .map(|(i, doc)| hooked_json::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            doc: Set(doc.clone()),
            maybe: Set((i % 2 == 1).then(|| docs[(i + 3) % docs.len()].clone())),
        })
        .collect();
    write_both::<hooked_json::ActiveModel, db_json::ActiveModel>(
        &t,
        &states,
        "tw_json",
        "tw_db_json",
    )
    .await;
    let logged = serde_json::to_string(&entries(&t, "tw_db_json").await).unwrap();
    assert!(logged.contains("***TOO_DEEP*** sha256:"), "{logged}");
    assert!(!logged.contains("unsealed"), "{logged}");
    if t.backend() != DbBackend::Postgres {
        // Until the seal, the entry holds the value's text, deferred.
        let deep = nest(limit + 1, Json::Null).to_string();
        t.db.execute_unprepared(&format!(
            "INSERT INTO tw_db_json (doc) VALUES ('{}')",
            deep.replace('\'', "''")
        ))
        .await
        .unwrap();
        let doc = |row: &sea_orm_audit::audit_log::Model| {
            row.changes.as_ref().unwrap()["new_value"]["doc"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let last = common::all_logs(&t.db).await.pop().unwrap();
        assert_eq!(doc(&last), format!("***TOO_DEEP*** unsealed:{deep}"));
        assert_eq!(capture_db::seal(&t.db).await.unwrap(), 1);
        let last = common::all_logs(&t.db).await.pop().unwrap();
        assert!(doc(&last).starts_with("***TOO_DEEP*** sha256:"), "{last:?}");
        assert_verified(&t.db).await;
    }
    if t.backend() == DbBackend::Postgres {
        // Deeper than serde_json reads (128 levels), to far deeper than a recursive PL/pgSQL
        // walk could go (it failed the write at about 400): the digest of the jsonb text.
        let keyed = |n: usize| format!("{}1{}", "{\"k\": [0, ".repeat(n), "]}".repeat(n));
        let texts = [
            format!("{}{}", "[".repeat(128), "]".repeat(128)),
            keyed(500),
            format!("{}1{}", "[1, ".repeat(5000), "]".repeat(5000)),
        ];
        for text in texts {
            t.db.execute_unprepared(&format!("INSERT INTO tw_db_json (doc) VALUES ('{text}')"))
                .await
                .unwrap();
            let stored: String = one(
                &t.db,
                "SELECT doc::text AS v FROM tw_db_json ORDER BY id DESC LIMIT 1",
            )
            .await;
            let last = common::all_logs(&t.db).await.pop().unwrap();
            assert_eq!(
                last.changes.as_ref().unwrap()["new_value"]["doc"],
                text_digest_marker(&stored)
            );
        }
        assert_verified(&t.db).await;
    }
    if t.backend() == DbBackend::Sqlite {
        // Deeper than serde_json reads (128 levels): the digest of the text.
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        t.db.execute_unprepared(&format!("INSERT INTO tw_db_json (doc) VALUES ('{text}')"))
            .await
            .unwrap();
        assert_eq!(capture_db::seal(&t.db).await.unwrap(), 1);
        let last = common::all_logs(&t.db).await.pop().unwrap();
        assert_eq!(
            last.changes.as_ref().unwrap()["new_value"]["doc"],
            text_digest_marker(&text)
        );
        assert_verified(&t.db).await;
    }
    t.finish().await;
}

#[tokio::test]
async fn a_key_change_is_the_old_objects_delete_and_the_new_ones_create() {
    use sea_orm::sea_query::{Expr, ExprTrait};
    use sea_orm::{ColumnTrait, QueryFilter};
    use sea_orm_audit::ExecAudited;
    let t = TestDb::new().await;
    let db = &t.db;
    common::create_table(db, hooked_rekey::Entity).await;
    common::create_table(db, db_rekey::Entity).await;
    common::create_table(db, db_doc::Entity).await;
    capture_db::install::<db_rekey::Model, _>(db).await.unwrap();
    capture_db::install::<db_doc::Model, _>(db).await.unwrap();
    for id in [3, 4] {
        let name = format!("n{id}");
        hooked_rekey::ActiveModel {
            id: Set(id),
            name: Set(name.clone()),
        }
        .insert(db)
        .await
        .unwrap();
        db_rekey::ActiveModel {
            id: Set(id),
            name: Set(name),
        }
        .insert(db)
        .await
        .unwrap();
    }
    // Raw SQL outside a transaction, and SeaORM's update_many inside one.
    db.execute_unprepared("UPDATE tw_db_rekey SET id = 7, name = 'seven' WHERE id = 3")
        .await
        .unwrap();
    db_rekey::Entity::update_many()
        .col_expr(
            db_rekey::Column::Id,
            Expr::col(db_rekey::Column::Id).add(10),
        )
        .filter(db_rekey::Column::Id.eq(4))
        .exec(db)
        .await
        .unwrap();
    db.execute_unprepared("UPDATE tw_db_rekey SET name = 'fourteen' WHERE id = 14")
        .await
        .unwrap();
    let (old_uid, new_uid) = (uuid::Uuid::new_v4(), uuid::Uuid::nil());
    db_doc::ActiveModel {
        id: Set(old_uid),
        day: Set(ymd(2024, 2, 29)),
        name: Set("d".into()),
    }
    .insert(db)
    .await
    .unwrap();
    db_doc::Entity::update_many()
        .col_expr(db_doc::Column::Id, Expr::value(new_uid))
        .exec(db)
        .await
        .unwrap();

    let by_object = |entries: &[(String, String, Json)], id: &str| -> Vec<(String, Json)> {
        entries
            .iter()
            .filter(|e| e.0 == id)
            .map(|e| (e.1.clone(), e.2.clone()))
            .collect()
    };
    let logged = entries(&t, "tw_db_rekey").await;
    let row = |id: i32, name: &str| serde_json::json!({"id": id, "name": name});
    let none = serde_json::json!({});
    let entry = |old: &Json, new: &Json| serde_json::json!({"old_value": old, "new_value": new});
    assert_eq!(
        by_object(&logged, "3"),
        [
            ("create".to_owned(), entry(&none, &row(3, "n3"))),
            ("delete".to_owned(), entry(&row(3, "n3"), &none)),
        ]
    );
    assert_eq!(
        by_object(&logged, "7"),
        [("create".to_owned(), entry(&none, &row(7, "seven")))]
    );
    assert_eq!(
        by_object(&logged, "14"),
        [
            ("create".to_owned(), entry(&none, &row(14, "n4"))),
            (
                "update".to_owned(),
                serde_json::json!({"old_value": {"name": "n4"}, "new_value": {"name": "fourteen"}})
            ),
        ]
    );
    assert_eq!(logged.len(), 7);
    let docs = entries(&t, "tw_db_docs").await;
    let actions: Vec<(&str, &str)> = docs.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    let (old_id, new_id) = (old_uid.to_string(), new_uid.to_string());
    assert_eq!(
        actions,
        [
            (old_id.as_str(), "create"),
            (old_id.as_str(), "delete"),
            (new_id.as_str(), "create"),
        ]
    );
    assert_verified(db).await;

    // Hook mode pairs rows by key: it refuses the write and rolls it back.
    let err = sea_orm_audit::bulk::update_many::<hooked_rekey::Entity, _>(
        db,
        sea_orm::Condition::all().add(hooked_rekey::Column::Id.eq(3)),
        hooked_rekey::ActiveModel {
            id: Set(7),
            ..Default::default()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("changes a primary key"), "{err}");
    let err = hooked_rekey::Entity::update_many()
        .col_expr(hooked_rekey::Column::Id, Expr::value(8))
        .filter(hooked_rekey::Column::Id.eq(4))
        .exec_audited(db)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("changes a primary key"), "{err}");
    let mut ids: Vec<i32> = hooked_rekey::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [3, 4]);
    assert_eq!(entries(&t, "tw_rekey").await.len(), 2);
    t.finish().await;
}

#[tokio::test]
async fn truncate_is_logged_as_a_delete_of_every_row_where_the_database_can() {
    use sea_orm::sea_query::Table;
    use sea_orm_audit::AuditContext;
    let t = TestDb::new().await;
    let db = &t.db;
    common::create_table(db, db_rekey::Entity).await;
    capture_db::install::<db_rekey::Model, _>(db).await.unwrap();
    let insert = |ids: std::ops::Range<i32>| async move {
        for id in ids {
            db_rekey::ActiveModel {
                id: Set(id),
                name: Set(format!("n{id}")),
            }
            .insert(db)
            .await
            .unwrap();
        }
    };
    insert(1..4).await;
    let deletes = |logged: &[(String, String, Json)]| -> Vec<(String, Json)> {
        logged
            .iter()
            .filter(|e| e.1 == "delete")
            .map(|e| (e.0.clone(), e.2["old_value"].clone()))
            .collect()
    };
    let rows = |ids: std::ops::Range<i32>| -> Vec<(String, Json)> {
        ids.map(|id| {
            (
                id.to_string(),
                serde_json::json!({"id": id, "name": format!("n{id}")}),
            )
        })
        .collect()
    };
    match t.backend() {
        DbBackend::Postgres => {
            // The statement sea-query builds (what SchemaManager::truncate_table runs).
            db.execute(&Table::truncate().table(db_rekey::Entity).to_owned())
                .await
                .unwrap();
            assert_eq!(deletes(&entries(&t, "tw_db_rekey").await), rows(1..4));
            // Raw TRUNCATE, attributed like any write in capture_db::transaction.
            insert(4..6).await;
            AuditContext::new()
                .actor("alice")
                .scope(capture_db::transaction(db, |txn| {
                    Box::pin(async move {
                        txn.execute_unprepared("TRUNCATE tw_db_rekey").await?;
                        Ok::<_, sea_orm::DbErr>(())
                    })
                }))
                .await
                .unwrap();
            assert_eq!(deletes(&entries(&t, "tw_db_rekey").await), rows(1..6));
            let last = common::all_logs(db).await.pop().unwrap();
            assert_eq!(last.actor.as_deref(), Some("alice"));
            assert!(
                capture_db::check::<db_rekey::Model, _>(db)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // TRUNCATE ONLY keeps an inheriting table's rows (the DELETE is ONLY too), and a
            // TRUNCATE .. CASCADE while rows of another table reference the rows fails, naming
            // why (the rows of the tables it cascades to would go unlogged). Before, the first
            // deleted the inheriting table's rows unlogged, the second failed with a bare
            // foreign-key violation.
            insert(6..8).await;
            db.execute_unprepared(
                "CREATE TABLE tw_rekey_child () INHERITS (tw_db_rekey); \
                 INSERT INTO tw_rekey_child (id, name) VALUES (99, 'child')",
            )
            .await
            .unwrap();
            db.execute_unprepared("TRUNCATE ONLY tw_db_rekey")
                .await
                .unwrap();
            let left: Vec<i32> = db_rekey::Entity::find()
                .all(db)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(left, [99], "the child's row, seen through the parent");
            assert_eq!(deletes(&entries(&t, "tw_db_rekey").await), rows(1..8));
            db.execute_unprepared(
                "DROP TABLE tw_rekey_child; \
                 CREATE TABLE tw_rekey_ref (id int PRIMARY KEY REFERENCES tw_db_rekey (id))",
            )
            .await
            .unwrap();
            insert(8..9).await;
            db.execute_unprepared("INSERT INTO tw_rekey_ref VALUES (8)")
                .await
                .unwrap();
            // (Without CASCADE, PostgreSQL refuses it before any trigger runs.)
            let err = db
                .execute_unprepared("TRUNCATE tw_db_rekey CASCADE")
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("cannot be logged row by row"),
                "{err}"
            );
            assert_eq!(db_rekey::Entity::find().all(db).await.unwrap().len(), 1);
            db.execute_unprepared("DROP TABLE tw_rekey_ref")
                .await
                .unwrap();
            db.execute_unprepared("DROP TRIGGER sea_orm_audit_truncate ON tw_db_rekey")
                .await
                .unwrap();
            assert_eq!(
                capture_db::check::<db_rekey::Model, _>(db).await.unwrap(),
                [capture_db::Drift::EntityChanged]
            );
        }
        DbBackend::Sqlite => {
            // No TRUNCATE (sea-query refuses to build one); a DELETE without WHERE skips
            // SQLite's truncate optimization on a table with triggers: every row is logged.
            db.execute_unprepared("DELETE FROM tw_db_rekey")
                .await
                .unwrap();
            assert_eq!(deletes(&entries(&t, "tw_db_rekey").await), rows(1..4));
        }
        _ => {
            // MariaDB fires no trigger on TRUNCATE: the rows go, nothing is logged (README).
            db.execute(&Table::truncate().table(db_rekey::Entity).to_owned())
                .await
                .unwrap();
            assert!(db_rekey::Entity::find().all(db).await.unwrap().is_empty());
            assert!(deletes(&entries(&t, "tw_db_rekey").await).is_empty());
        }
    }
    assert_verified(db).await;
    t.finish().await;
}

db_entity!(
/// A database-mode entity with text and JSON, for values other programs can write that the
/// application cannot read.
mod db_hostile = "tw_db_hostile",
#[audit(capture = "database")],
{
    #[sea_orm(primary_key)]
    pub id: i32,
    pub name: String,
    pub doc: Json,
});

/// Values a trigger can log but serde_json or sqlx cannot read (a JSON number beyond f64 on
/// every backend; on SQLite a lone surrogate and text that is not UTF-8) are logged, sealed
/// as their lenient reading (the number as the string of its text, U+FFFD for the rest), and
/// never stop the seal of other entries or, on SQLite, `capture_db::transaction` (which seals
/// before it commits). Before, the first seal to read such an entry failed, and every later one.
#[tokio::test]
async fn values_serde_json_refuses_are_logged_and_never_stop_the_seal() {
    let t = TestDb::new().await;
    let backend = t.backend();
    installed(&t, db_hostile::Entity).await;
    let run = |sql: String| {
        let db = t.db.clone();
        async move { db.execute_unprepared(&sql).await.unwrap() }
    };
    for id in [1, 2] {
        run(format!(
            "INSERT INTO tw_db_hostile (id, name, doc) VALUES ({id}, 'a', '{{}}')"
        ))
        .await;
    }
    run("UPDATE tw_db_hostile SET doc = '{\"a\":1e400,\"b\":[2.5]}' WHERE id = 1".to_owned()).await;
    let mut expected = vec![serde_json::json!({"a": "1e400", "b": [2.5]})];
    if backend == DbBackend::Postgres {
        // jsonb keeps the number as numeric, and prints every digit.
        expected[0]["a"] = Json::from(format!("1{}", "0".repeat(400)));
    }
    if backend == DbBackend::Sqlite {
        run(r#"UPDATE tw_db_hostile SET doc = '["x\ud800"]' WHERE id = 1"#.to_owned()).await;
        expected.push(serde_json::json!(["x\u{fffd}"]));
        run("UPDATE tw_db_hostile SET name = CAST(X'66FF6F' AS TEXT) WHERE id = 1".to_owned())
            .await;
    }
    // Another object's entry after them is sealed.
    run("UPDATE tw_db_hostile SET name = 'b' WHERE id = 2".to_owned()).await;
    // (Counted: until the seal, readers cannot read them either.)
    let written = sea_orm::PaginatorTrait::count(sea_orm_audit::audit_log::Entity::find(), &t.db)
        .await
        .unwrap();
    // PostgreSQL's trigger seals its own entries.
    let unsealed = if backend == DbBackend::Postgres {
        0
    } else {
        written as u64
    };
    assert_eq!(capture_db::seal(&t.db).await.unwrap(), unsealed);
    assert_verified(&t.db).await;
    let logged = sea_orm_audit::logs_for_id(&t.db, "tw_db_hostile", "1")
        .await
        .unwrap();
    let docs: Vec<Json> = logged
        .iter()
        .rev()
        .skip(1)
        .filter_map(|e| e.changes.as_ref().unwrap().new_value.get("doc").cloned())
        .collect();
    assert_eq!(docs, expected);
    if backend == DbBackend::Sqlite {
        let name = &logged[0].changes.as_ref().unwrap().new_value["name"];
        assert_eq!(name, "f\u{fffd}o");
        // `capture_db::transaction` seals before it commits: it still commits.
        capture_db::transaction(&t.db, |txn| {
            Box::pin(async move {
                txn.execute_unprepared("UPDATE tw_db_hostile SET name = 'c' WHERE id = 2")
                    .await?;
                Ok::<_, sea_orm::DbErr>(())
            })
        })
        .await
        .unwrap();
        assert_verified(&t.db).await;
    }
    t.finish().await;
}

/// Text and JSON strings that start as the triggers' deferred values do (`***TOO_DEEP***
/// unsealed:`) are logged as they are: the seal turns only the triggers' own deferred values
/// into what they hold. Before, a title of `***TOO_DEEP*** unsealed:{"is":"an object"}` was
/// sealed as the object, on SQLite and MariaDB.
#[tokio::test]
async fn values_that_look_deferred_are_logged_as_they_are() {
    let t = TestDb::new().await;
    installed(&t, db_hostile::Entity).await;
    let looks = [
        r#"***TOO_DEEP*** unsealed:{"is":"an object"}"#,
        "***TOO_DEEP*** unsealed:not json",
        "***too_deep*** UNSEALED:[1]",
        "***TOO_DEEP*** unsealed:",
    ];
    for (i, text) in looks.iter().enumerate() {
        let id = i32::try_from(i).unwrap() + 1;
        // The application's path, and raw SQL.
        db_hostile::ActiveModel {
            id: Set(id),
            name: Set((*text).to_owned()),
            doc: Set(Json::from(*text)),
        }
        .insert(&t.db)
        .await
        .unwrap();
        let quoted = text.replace('\'', "''");
        let mut doc = serde_json::to_string(&Json::from(format!("{text}!"))).unwrap();
        if t.backend() == DbBackend::MySql {
            doc = doc.replace('\\', "\\\\"); // MySQL's literals read backslash escapes
        }
        t.db.execute_unprepared(&format!(
            "UPDATE tw_db_hostile SET name = '{quoted}!', doc = '{}' WHERE id = {id}",
            doc.replace('\'', "''")
        ))
        .await
        .unwrap();
    }
    capture_db::seal(&t.db).await.unwrap();
    assert_verified(&t.db).await;
    for (i, text) in looks.iter().enumerate() {
        let logged = sea_orm_audit::logs_for_id(&t.db, "tw_db_hostile", &(i + 1).to_string())
            .await
            .unwrap();
        let values: Vec<(Json, Json)> = logged
            .iter()
            .rev()
            .map(|e| {
                let new = &e.changes.as_ref().unwrap().new_value;
                (new["name"].clone(), new["doc"].clone())
            })
            .collect();
        let bang = format!("{text}!");
        assert_eq!(
            values,
            vec![
                (Json::from(*text), Json::from(*text)),
                (Json::from(bang.clone()), Json::from(bang))
            ]
        );
    }
    t.finish().await;
}

db_entity!(
/// Names with backslashes and quotes, as an application may choose them.
mod db_odd_names = "tw_db_odd",
#[audit(capture = "database", entity_type = "App\\Models\\Odd")],
{
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(column_name = "dir\\name")]
    pub dir: String,
    #[sea_orm(column_name = "say\"hi")]
    pub say: String,
    pub other: i32,
});

/// An entity type with backslashes and column names with a backslash or a double quote are
/// logged under those names, and an update logs only the columns it changed. Before, MariaDB's
/// triggers logged the entity type without its backslashes (so `logs_for` found none of its
/// entries) and failed every update of the table with the quote in a column name.
#[tokio::test]
async fn names_with_backslashes_and_quotes_are_logged_as_they_are() {
    let t = TestDb::new().await;
    installed(&t, db_odd_names::Entity).await;
    let row = db_odd_names::ActiveModel {
        id: Set(1),
        dir: Set("a\\b".to_owned()),
        say: Set("\"hi\"".to_owned()),
        other: Set(0),
    }
    .insert(&t.db)
    .await
    .unwrap();
    let mut am: db_odd_names::ActiveModel = row.into();
    am.other = Set(1);
    let row = am.update(&t.db).await.unwrap();
    let mut am: db_odd_names::ActiveModel = row.into();
    am.dir = Set("c".to_owned());
    am.say = Set("bye".to_owned());
    am.update(&t.db).await.unwrap();
    capture_db::seal(&t.db).await.unwrap();
    assert_verified(&t.db).await;
    let logged = sea_orm_audit::logs_for_id(&t.db, "App\\Models\\Odd", "1")
        .await
        .unwrap();
    let changes: Vec<Json> = logged
        .iter()
        .rev()
        .map(|e| serde_json::to_value(e.changes.as_ref().unwrap()).unwrap())
        .collect();
    assert_eq!(
        changes,
        vec![
            serde_json::json!({"old_value": {}, "new_value": {"dir\\name": "a\\b", "id": 1, "other": 0, "say\"hi": "\"hi\""}}),
            serde_json::json!({"old_value": {"other": 0}, "new_value": {"other": 1}}),
            serde_json::json!({"old_value": {"dir\\name": "a\\b", "say\"hi": "\"hi\""}, "new_value": {"dir\\name": "c", "say\"hi": "bye"}}),
        ]
    );
    if t.backend() == DbBackend::Postgres {
        // A session that turned standard strings off (a backslash escapes in '...') and
        // calls the trigger for the first time, which is when PL/pgSQL parses its body: the
        // function pins the setting, so its literals keep their backslashes.
        let other = sea_orm::Database::connect(&t.url).await.unwrap();
        other
            .execute_unprepared(
                "SET standard_conforming_strings = off; \
                 INSERT INTO tw_db_odd (id, \"dir\\name\", \"say\"\"hi\", other) VALUES (2, 'd', 's', 0)",
            )
            .await
            .unwrap();
        other.close().await.unwrap();
        let logged = sea_orm_audit::logs_for_id(&t.db, "App\\Models\\Odd", "2")
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(logged[0].changes.as_ref().unwrap()).unwrap(),
            serde_json::json!({"old_value": {}, "new_value": {"dir\\name": "d", "id": 2, "other": 0, "say\"hi": "s"}})
        );
        assert_verified(&t.db).await;
    }
    t.finish().await;
}

/// Foreign-key cascades: PostgreSQL and SQLite fire the referencing table's triggers, so a
/// cascaded key change and delete are logged as any other; InnoDB fires none, so on MariaDB
/// they go unlogged (the README says so).
#[tokio::test]
async fn foreign_key_cascades_are_logged_where_the_database_fires_triggers() {
    let t = TestDb::new().await;
    let db = &t.db;
    let text = if t.backend() == DbBackend::MySql {
        "varchar(64)"
    } else {
        "text"
    };
    db.execute_unprepared("CREATE TABLE tw_parent (id int PRIMARY KEY)")
        .await
        .unwrap();
    db.execute_unprepared(&format!(
        "CREATE TABLE tw_db_rekey (id int PRIMARY KEY, name {text} NOT NULL, \
         FOREIGN KEY (id) REFERENCES tw_parent (id) ON DELETE CASCADE ON UPDATE CASCADE)"
    ))
    .await
    .unwrap();
    capture_db::install::<db_rekey::Model, _>(db).await.unwrap();
    run_all(
        db,
        &[
            "INSERT INTO tw_parent (id) VALUES (1), (2)",
            "INSERT INTO tw_db_rekey (id, name) VALUES (1, 'a'), (2, 'b')",
            "UPDATE tw_parent SET id = 3 WHERE id = 1",
            "DELETE FROM tw_parent WHERE id = 2",
        ],
    )
    .await;
    let ids: Vec<i32> = db_rekey::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [3], "the cascades ran");
    let logged: Vec<(String, String)> = entries(&t, "tw_db_rekey")
        .await
        .into_iter()
        .map(|(object, action, _)| (object, action))
        .collect();
    let e = |o: &str, a: &str| (o.to_owned(), a.to_owned());
    let expected = if t.backend() == DbBackend::MySql {
        vec![e("1", "create"), e("2", "create")]
    } else {
        vec![
            e("1", "create"),
            e("2", "create"),
            e("1", "delete"),
            e("3", "create"),
            e("2", "delete"),
        ]
    };
    assert_eq!(logged, expected);
    t.finish().await;
}

/// A replacing insert (`REPLACE INTO`, SQLite's `INSERT OR REPLACE`) deletes the row it
/// replaces: MariaDB fires the delete trigger, and so does SQLite with `PRAGMA
/// recursive_triggers = ON`, so the replaced row's `delete` precedes the new `create`. Without
/// the pragma SQLite deletes it silently: only the `create` is logged, and `verify` reports the
/// chain broken there (the README says so). PostgreSQL has no replacing insert.
#[tokio::test]
async fn a_replacing_insert_logs_the_replaced_row_where_delete_triggers_fire() {
    let t = TestDb::new().await;
    let backend = t.backend();
    if backend == DbBackend::Postgres {
        t.finish().await;
        return;
    }
    installed(&t, db_rekey::Entity).await;
    // One connection: a pragma is the connection's.
    let mut options = sea_orm::ConnectOptions::new(t.url.clone());
    options.max_connections(1).sqlx_logging(false);
    let db = sea_orm::Database::connect(options).await.unwrap();
    let replace = if backend == DbBackend::MySql {
        "REPLACE INTO"
    } else {
        "INSERT OR REPLACE INTO"
    };
    db.execute_unprepared("INSERT INTO tw_db_rekey (id, name) VALUES (1, 'a')")
        .await
        .unwrap();
    if backend == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA recursive_triggers = ON")
            .await
            .unwrap();
    }
    db.execute_unprepared(&format!("{replace} tw_db_rekey (id, name) VALUES (1, 'b')"))
        .await
        .unwrap();
    let logged: Vec<(String, Json)> = entries(&t, "tw_db_rekey")
        .await
        .into_iter()
        .map(|(_, action, changes)| (action, changes))
        .collect();
    let row = |name: &str| serde_json::json!({"id": 1, "name": name});
    assert_eq!(
        logged,
        vec![
            (
                "create".to_owned(),
                serde_json::json!({"old_value": {}, "new_value": row("a")})
            ),
            (
                "delete".to_owned(),
                serde_json::json!({"old_value": row("a"), "new_value": {}})
            ),
            (
                "create".to_owned(),
                serde_json::json!({"old_value": {}, "new_value": row("b")})
            ),
        ]
    );
    assert_verified(&t.db).await;
    if backend == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA recursive_triggers = OFF")
            .await
            .unwrap();
        db.execute_unprepared(&format!("{replace} tw_db_rekey (id, name) VALUES (1, 'c')"))
            .await
            .unwrap();
        let actions: Vec<String> = entries(&t, "tw_db_rekey")
            .await
            .into_iter()
            .map(|(_, action, _)| action)
            .collect();
        assert_eq!(actions, ["create", "delete", "create", "create"]);
        assert!(
            !sea_orm_audit::verify(&t.db)
                .await
                .unwrap()
                .problems
                .is_empty()
        );
    }
    db.close().await.unwrap();
    t.finish().await;
}

db_entity!(
/// Every column excluded, the key included.
mod db_all_excluded = "tw_db_all_excluded",
#[audit(capture = "database", exclude(id, name))],
{
    #[sea_orm(primary_key)]
    pub id: i32,
    pub name: String,
});

/// With every column excluded an update has no diff and is not logged, as with the hooks and on
/// PostgreSQL; a new key still is (the old object's delete, the new one's create). Before,
/// SQLite's and MariaDB's triggers logged every such update with an empty diff.
#[tokio::test]
async fn an_update_with_every_column_excluded_is_not_logged() {
    let t = TestDb::new().await;
    installed(&t, db_all_excluded::Entity).await;
    run_all(
        &t.db,
        &[
            "INSERT INTO tw_db_all_excluded (id, name) VALUES (1, 'a')",
            "UPDATE tw_db_all_excluded SET name = 'b' WHERE id = 1",
            "UPDATE tw_db_all_excluded SET id = 2 WHERE id = 1",
        ],
    )
    .await;
    let logged: Vec<(String, String)> = entries(&t, "tw_db_all_excluded")
        .await
        .into_iter()
        .map(|(object, action, _)| (object, action))
        .collect();
    let e = |o: &str, a: &str| (o.to_owned(), a.to_owned());
    assert_eq!(
        logged,
        [e("1", "create"), e("1", "delete"), e("2", "create")]
    );
    t.finish().await;
}

/// SQLite: an object id that is not UTF-8 (raw SQL wrote such text into a text key, and the
/// trigger copied it) is stored by the seal read with U+FFFD, as values are, so that every
/// reader, `verify` included, reads the entry and its object's chain holds; `verify` failed
/// on the whole log before, and the seal left such entries unsealed.
#[tokio::test]
async fn an_object_id_that_is_not_utf8_is_sealed_read_with_replacement_characters() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::Sqlite {
        t.finish().await;
        return;
    }
    installed(&t, db_doc::Entity).await;
    installed(&t, db_hostile::Entity).await;
    run_all(&t.db, &[
        "INSERT INTO tw_db_hostile (id, name, doc) VALUES (1, 'a', '{}')",
        "INSERT INTO tw_db_docs (id, day, name) VALUES (CAST(X'66FF' AS TEXT), '2026-01-01', 'x')",
        "UPDATE tw_db_hostile SET name = 'b' WHERE id = 1",
        "UPDATE tw_db_docs SET name = 'y'",
    ])
    .await;
    // Before the seal, readers fail on it (README: until `seal` stores it read); `verify`
    // reports every entry unsealed (before, it failed on the whole log).
    assert!(
        sea_orm_audit::audit_log::Entity::find()
            .all(&t.db)
            .await
            .is_err()
    );
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert_eq!(report.checked, 4);
    let kinds: Vec<_> = report.problems.iter().map(|p| p.kind.clone()).collect();
    assert_eq!(kinds, vec![sea_orm_audit::chain::ProblemKind::Unsealed; 4]);
    assert_eq!(report.problems[1].object_id, "f\u{FFFD}");
    assert_eq!(capture_db::seal(&t.db).await.unwrap(), 4);
    // Later entries of the same object chain from the repaired ones.
    capture_db::transaction(&t.db, |txn| {
        Box::pin(async move {
            txn.execute_unprepared("DELETE FROM tw_db_docs").await?;
            txn.execute_unprepared("UPDATE tw_db_hostile SET name = 'c' WHERE id = 1")
                .await?;
            Ok::<_, sea_orm::DbErr>(())
        })
    })
    .await
    .unwrap();
    let docs = sea_orm_audit::logs_for_id(&t.db, "tw_db_docs", "f\u{FFFD}")
        .await
        .unwrap();
    let actions: Vec<&str> = docs.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["delete", "update", "create"]);
    assert_eq!(docs[1].changes.as_ref().unwrap().new_value["name"], "y");
    let hostile = sea_orm_audit::logs_for_id(&t.db, "tw_db_hostile", "1")
        .await
        .unwrap();
    assert_eq!(hostile.len(), 3);
    assert_verified(&t.db).await;
    t.finish().await;
}

/// SQLite: an entry the seal cannot read at all (another program wrote it into the log with
/// a time that is not one) is left unsealed, and the entries around it are sealed; a
/// `capture_db::transaction` (which seals before it commits) still commits.
#[tokio::test]
async fn an_entry_the_seal_cannot_read_is_left_and_the_others_are_sealed() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::Sqlite {
        t.finish().await;
        return;
    }
    installed(&t, db_hostile::Entity).await;
    run_all(
        &t.db,
        &[
            "INSERT INTO tw_db_hostile (id, name, doc) VALUES (1, 'a', '{}')",
            "INSERT INTO audit_log (entity_type, object_id, action, created_at, status, hash) \
         VALUES ('tw_db_hostile', '2', 'create', 'not a time', 'success', 'unsealed')",
            "UPDATE tw_db_hostile SET name = 'b' WHERE id = 1",
        ],
    )
    .await;
    assert_eq!(capture_db::seal(&t.db).await.unwrap(), 2);
    let unsealed = |db: sea_orm::DatabaseConnection| async move {
        one::<i64>(
            &db,
            "SELECT count(*) AS v FROM audit_log WHERE hash = 'unsealed'",
        )
        .await
    };
    assert_eq!(unsealed(t.db.clone()).await, 1);
    capture_db::transaction(&t.db, |txn| {
        Box::pin(async move {
            txn.execute_unprepared("UPDATE tw_db_hostile SET name = 'c' WHERE id = 1")
                .await?;
            Ok::<_, sea_orm::DbErr>(())
        })
    })
    .await
    .unwrap();
    assert_eq!(unsealed(t.db.clone()).await, 1);
    let logged = sea_orm_audit::logs_for_id(&t.db, "tw_db_hostile", "1")
        .await
        .unwrap();
    assert_eq!(logged.len(), 3);
    // `verify` reports that one entry, unsealed, and checks the others.
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert_eq!(report.checked, 4);
    let found: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.object_id.as_str(), p.kind.clone()))
        .collect();
    assert_eq!(found, [("2", sea_orm_audit::chain::ProblemKind::Unsealed)]);
    t.finish().await;
}

db_entity!(
    /// A text key longer than the log's `object_id` holds.
    mod long_key = "db_long_keys", #[audit(capture = "database")], {
    #[sea_orm(primary_key, auto_increment = false, column_type = "String(StringLen::N(400))")]
    pub code: String,
    pub n: i32,
});

db_entity!(
    /// Two text keys whose JSON array may be longer than the log's `object_id` holds.
    mod long_pair = "db_long_pairs", #[audit(capture = "database")], {
    #[sea_orm(primary_key, auto_increment = false, column_type = "String(StringLen::N(150))")]
    pub a: String,
    #[sea_orm(primary_key, auto_increment = false, column_type = "String(StringLen::N(150))")]
    pub b: String,
    pub n: i32,
});

/// An object id the log cannot hold (over `MAX_KEY_CHARS` characters, or with a NUL) fails
/// the write in database mode too, naming `object_id`, and leaves the table and the log as
/// they were: never truncated (MariaDB outside strict mode, which the trigger is created
/// under here) nor kept whole beyond the limit (SQLite).
#[tokio::test]
async fn object_ids_the_log_cannot_hold_fail_the_write_in_database_mode() {
    use sea_orm_audit::MAX_KEY_CHARS;
    let t = TestDb::new().await;
    let db = &t.db;
    common::create_table(db, long_key::Entity).await;
    common::create_table(db, long_pair::Entity).await;
    if t.backend() == DbBackend::MySql {
        // Triggers run under the `sql_mode` they were created under.
        let tx = common::begin_not_strict(db).await;
        capture_db::install::<long_key::Model, _>(&tx)
            .await
            .unwrap();
        capture_db::install::<long_pair::Model, _>(&tx)
            .await
            .unwrap();
        common::commit_strict_again(tx).await;
        let modes = db
            .query_all_raw(sea_orm::Statement::from_string(
                DbBackend::MySql,
                "SELECT SQL_MODE AS m FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'db_long_keys'",
            ))
            .await
            .unwrap();
        assert_eq!(modes.len(), 3);
        for m in modes {
            let mode: String = m.try_get("", "m").unwrap();
            assert!(!mode.contains("STRICT"), "{mode}");
        }
    } else {
        capture_db::install::<long_key::Model, _>(db).await.unwrap();
        capture_db::install::<long_pair::Model, _>(db)
            .await
            .unwrap();
    }
    let refused = |e: sea_orm::DbErr| {
        let text = e.to_string();
        assert!(
            text.contains("`object_id` is over 191 characters or holds NUL"),
            "{text}"
        );
    };
    let at_limit = "é".repeat(MAX_KEY_CHARS);
    let key = |code: &str, n| long_key::ActiveModel {
        code: Set(code.to_owned()),
        n: Set(n),
    };
    let kept = key(&at_limit, 1).insert(db).await.unwrap();
    refused(
        key(&"é".repeat(MAX_KEY_CHARS + 1), 2)
            .insert(db)
            .await
            .unwrap_err(),
    );
    refused(
        long_key::Entity::insert(key(&format!("{at_limit}k"), 3))
            .exec(db)
            .await
            .unwrap_err(),
    );
    // A new key is the old object's delete and the new one's create: refused whole.
    refused(
        long_key::Entity::update_many()
            .col_expr(
                long_key::Column::Code,
                sea_orm::sea_query::Expr::value(format!("{at_limit}k")),
            )
            .exec(db)
            .await
            .unwrap_err(),
    );
    if t.backend() != DbBackend::Postgres {
        // PostgreSQL's text cannot hold a NUL at all.
        refused(key("a\0b", 4).insert(db).await.unwrap_err());
    }
    let pair = |a: usize, b: usize| long_pair::ActiveModel {
        a: Set("x".repeat(a)),
        b: Set("y".repeat(b)),
        n: Set(1),
    };
    // `["x…","y…"]`: the quotes, comma and brackets count.
    pair(92, 92).insert(db).await.unwrap();
    refused(pair(93, 92).insert(db).await.unwrap_err());
    kept.clone().delete(db).await.unwrap();
    let rows = long_key::Entity::find().all(db).await.unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    assert_eq!(long_pair::Entity::find().all(db).await.unwrap().len(), 1);
    let logged: Vec<(String, String)> = entries(&t, "db_long_keys")
        .await
        .into_iter()
        .map(|(id, action, _)| (id, action))
        .collect();
    assert_eq!(
        logged,
        [
            (at_limit.clone(), "create".to_owned()),
            (at_limit.clone(), "delete".to_owned())
        ]
    );
    let pairs = entries(&t, "db_long_pairs").await;
    assert_eq!(pairs.len(), 1);
    assert_eq!(
        pairs[0].0,
        format!(r#"["{}","{}"]"#, "x".repeat(92), "y".repeat(92))
    );
    assert_eq!(pairs[0].0.chars().count(), MAX_KEY_CHARS);
    assert_verified(db).await;
    t.finish().await;
}

db_entity!(
/// Text columns whose declared collation holds different text equal.
mod db_collated = "tw_db_collated",
#[audit(capture = "database")],
{
    #[sea_orm(primary_key, auto_increment = false)]
    pub username: String,
    pub nick: String,
    pub code: String,
});

/// A column's collation may hold 'bob' and 'BOB' (SQLite `NOCASE`, a nondeterministic ICU
/// collation on PostgreSQL, a `_ci` collation on MariaDB) or 'x' and 'x  ' (SQLite `RTRIM`)
/// equal; the triggers compare byte for byte, as the hooks do, so each such change is logged,
/// and a key changed only in case is the old object's delete and the new one's create. Before,
/// SQLite logged neither change and not the key's either, and PostgreSQL missed the case
/// change.
#[tokio::test]
async fn changes_a_collation_holds_equal_are_logged() {
    let t = TestDb::new().await;
    let ddl: &[&str] = match t.backend() {
        DbBackend::Sqlite => &[
            "CREATE TABLE tw_db_collated (username TEXT NOT NULL PRIMARY KEY COLLATE NOCASE, \
             nick TEXT NOT NULL COLLATE NOCASE, code TEXT NOT NULL COLLATE RTRIM)",
        ],
        DbBackend::Postgres => &[
            "CREATE COLLATION IF NOT EXISTS sea_orm_audit_test_ci (provider = icu, \
             locale = 'und-u-ks-level2', deterministic = false)",
            "CREATE TABLE tw_db_collated (username text PRIMARY KEY, \
             nick text COLLATE sea_orm_audit_test_ci NOT NULL, code text NOT NULL)",
        ],
        _ => &[
            "CREATE TABLE tw_db_collated (username varchar(64) COLLATE utf8mb4_general_ci \
             PRIMARY KEY, nick varchar(64) COLLATE utf8mb4_general_ci NOT NULL, \
             code varchar(64) COLLATE utf8mb4_general_ci NOT NULL)",
        ],
    };
    run_all(&t.db, ddl).await;
    capture_db::install::<db_collated::Model, _>(&t.db)
        .await
        .unwrap();
    run_all(
        &t.db,
        &[
            "INSERT INTO tw_db_collated (username, nick, code) VALUES ('alice', 'bob', 'x')",
            "UPDATE tw_db_collated SET nick = 'BOB'",
            "UPDATE tw_db_collated SET code = 'x  '",
            "UPDATE tw_db_collated SET username = 'Alice'",
        ],
    )
    .await;
    let logged: Vec<(String, String, Json)> = entries(&t, "tw_db_collated").await;
    let shape: Vec<(&str, &str)> = logged
        .iter()
        .map(|(id, action, _)| (id.as_str(), action.as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            ("alice", "create"),
            ("alice", "update"),
            ("alice", "update"),
            ("alice", "delete"),
            ("Alice", "create")
        ],
        "{logged:#?}"
    );
    assert_eq!(
        logged[1].2,
        serde_json::json!({"old_value": {"nick": "bob"}, "new_value": {"nick": "BOB"}})
    );
    assert_eq!(
        logged[2].2,
        serde_json::json!({"old_value": {"code": "x"}, "new_value": {"code": "x  "}})
    );
    assert_verified(&t.db).await;
    t.finish().await;
}

db_entity!(
/// A decimal column of no fixed scale (PostgreSQL's `numeric`).
mod db_scaled = "tw_db_scaled",
#[audit(capture = "database")],
{
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub amount: Decimal,
});

/// PostgreSQL: a `numeric` keeps the scale written, which the hooks log with every digit;
/// 1.5 and 1.50 are equal numbers but a change of what is stored, logged as such. A zero of
/// any scale reads back as "0": no entry.
#[tokio::test]
async fn a_change_of_scale_alone_is_logged_on_postgres() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::Postgres {
        return t.finish().await;
    }
    t.db.execute_unprepared(
        "CREATE TABLE tw_db_scaled (id int PRIMARY KEY, amount numeric NOT NULL)",
    )
    .await
    .unwrap();
    capture_db::install::<db_scaled::Model, _>(&t.db)
        .await
        .unwrap();
    run_all(
        &t.db,
        &[
            "INSERT INTO tw_db_scaled VALUES (1, 1.5)",
            "UPDATE tw_db_scaled SET amount = 1.50",
            "UPDATE tw_db_scaled SET amount = 0",
            "UPDATE tw_db_scaled SET amount = 0.00",
        ],
    )
    .await;
    let changes = changes(&t, "tw_db_scaled").await;
    assert_eq!(
        changes,
        [
            serde_json::json!({"old_value": {}, "new_value": {"id": 1, "amount": "1.5"}}),
            serde_json::json!({"old_value": {"amount": "1.5"}, "new_value": {"amount": "1.50"}}),
            serde_json::json!({"old_value": {"amount": "1.50"}, "new_value": {"amount": "0"}}),
        ]
    );
    t.finish().await;
}

db_entity!(
/// A partitioned table (PostgreSQL).
mod db_parted = "tw_db_parted",
#[audit(capture = "database")],
{
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub name: String,
});

/// PostgreSQL: TRUNCATE of a partitioned table empties every partition; each row is logged
/// as a delete, like any table's. Before, `DELETE FROM ONLY` on the parent deleted nothing
/// and the TRUNCATE went unlogged.
#[tokio::test]
async fn truncate_of_a_partitioned_table_is_logged_on_postgres() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::Postgres {
        return t.finish().await;
    }
    run_all(&t.db, &[
        "CREATE TABLE tw_db_parted (id int PRIMARY KEY, name text NOT NULL) PARTITION BY RANGE (id)",
        "CREATE TABLE tw_db_parted_1 PARTITION OF tw_db_parted FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE tw_db_parted_2 PARTITION OF tw_db_parted FOR VALUES FROM (100) TO (200)",
    ])
    .await;
    capture_db::install::<db_parted::Model, _>(&t.db)
        .await
        .unwrap();
    t.db.execute_unprepared("INSERT INTO tw_db_parted VALUES (1, 'a'), (150, 'b')")
        .await
        .unwrap();
    t.db.execute_unprepared("TRUNCATE tw_db_parted")
        .await
        .unwrap();
    let shape: Vec<(String, String)> = entries(&t, "tw_db_parted")
        .await
        .into_iter()
        .map(|e| (e.0, e.1))
        .collect();
    let e = |id: &str, action: &str| (id.to_owned(), action.to_owned());
    let mut deletes = shape[2..].to_vec();
    deletes.sort();
    assert_eq!(shape[..2], [e("1", "create"), e("150", "create")]);
    assert_eq!(deletes, [e("1", "delete"), e("150", "delete")]);
    // A TRUNCATE naming one partition: its rows only, each logged (before, none was).
    t.db.execute_unprepared("INSERT INTO tw_db_parted VALUES (2, 'c'), (3, 'd'), (151, 'e')")
        .await
        .unwrap();
    t.db.execute_unprepared("TRUNCATE tw_db_parted_1")
        .await
        .unwrap();
    let shape: Vec<(String, String)> = entries(&t, "tw_db_parted")
        .await
        .into_iter()
        .skip(4)
        .map(|e| (e.0, e.1))
        .collect();
    let mut deletes = shape[3..].to_vec();
    deletes.sort();
    assert_eq!(shape.len(), 5, "{shape:?}");
    assert_eq!(deletes, [e("2", "delete"), e("3", "delete")]);
    let left: i64 = one(&t.db, "SELECT count(*) AS v FROM tw_db_parted").await;
    assert_eq!(left, 1);
    // A partition attached after the install has no TRUNCATE trigger: `check` says so until
    // `install` runs again.
    let check = || capture_db::check::<db_parted::Model, _>(&t.db);
    assert_eq!(check().await.unwrap(), vec![]);
    t.db.execute_unprepared(
        "CREATE TABLE tw_db_parted_3 PARTITION OF tw_db_parted FOR VALUES FROM (200) TO (300)",
    )
    .await
    .unwrap();
    assert_eq!(
        check().await.unwrap(),
        vec![capture_db::Drift::EntityChanged]
    );
    capture_db::install::<db_parted::Model, _>(&t.db)
        .await
        .unwrap();
    assert_eq!(check().await.unwrap(), vec![]);
    t.db.execute_unprepared("INSERT INTO tw_db_parted VALUES (250, 'f')")
        .await
        .unwrap();
    t.db.execute_unprepared("TRUNCATE tw_db_parted_3")
        .await
        .unwrap();
    let last = entries(&t, "tw_db_parted").await.pop().unwrap();
    assert_eq!((last.0.as_str(), last.1.as_str()), ("250", "delete"));
    assert_verified(&t.db).await;
    // Uninstalled: no trigger of ours is left on any partition.
    capture_db::uninstall::<db_parted::Model, _>(&t.db)
        .await
        .unwrap();
    let ours: i64 = one(
        &t.db,
        "SELECT count(*) AS v FROM pg_trigger WHERE tgname LIKE 'sea_orm_audit%'",
    )
    .await;
    assert_eq!(ours, 0);
    t.finish().await;
}

db_entity!(
/// Column names that close a comment or a dollar quote.
mod db_closing_names = "tw_db_closing",
#[audit(capture = "database")],
{
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(column_name = "a*/b")]
    pub comment_end: i32,
    #[sea_orm(column_name = "x$sea_orm_audit$y")]
    pub dollar: i32,
});

/// A column named `a*/b` (the end of the comment the SQLite and MySQL triggers carry their
/// registry in) or `x$sea_orm_audit$y` (PostgreSQL's dollar quote of the function body) is
/// installed, checked and logged like any other. Before, install failed with a syntax error.
#[tokio::test]
async fn names_that_close_a_comment_or_a_quote_are_installed_and_logged() {
    let t = TestDb::new().await;
    installed(&t, db_closing_names::Entity).await;
    assert_eq!(
        capture_db::check::<db_closing_names::Model, _>(&t.db)
            .await
            .unwrap(),
        vec![]
    );
    let row = db_closing_names::ActiveModel {
        id: Set(1),
        comment_end: Set(1),
        dollar: Set(2),
    }
    .insert(&t.db)
    .await
    .unwrap();
    let mut am: db_closing_names::ActiveModel = row.into();
    am.comment_end = Set(3);
    am.update(&t.db).await.unwrap();
    let changes = changes(&t, "tw_db_closing").await;
    assert_eq!(
        changes,
        [
            serde_json::json!({"old_value": {}, "new_value": {"id": 1, "a*/b": 1, "x$sea_orm_audit$y": 2}}),
            serde_json::json!({"old_value": {"a*/b": 1}, "new_value": {"a*/b": 3}}),
        ]
    );
    assert_verified(&t.db).await;
    t.finish().await;
}

db_entity!(
/// A table name whose trigger or function names would be too long for MySQL or PostgreSQL.
mod db_long_table = "tw_a_table_whose_name_is_long_enough_to_overflow",
#[audit(capture = "database")],
{
    #[sea_orm(primary_key)]
    pub id: i32,
});

/// MySQL's trigger names and PostgreSQL's function name hold 64 characters and 63 bytes: a
/// table whose names would be longer is refused by `install` with the name, before anything
/// is created (MySQL failed with its own error 1059, and `uninstall` too). SQLite has no
/// such limit.
#[tokio::test]
async fn a_table_name_too_long_for_the_triggers_is_refused_by_name() {
    let t = TestDb::new().await;
    common::create_table(&t.db, db_long_table::Entity).await;
    let installed = capture_db::install::<db_long_table::Model, _>(&t.db).await;
    if t.backend() == DbBackend::Sqlite {
        installed.unwrap();
    } else {
        let err = installed.unwrap_err().to_string();
        assert!(
            err.contains("tw_a_table_whose_name_is_long_enough_to_overflow")
                && err.contains("is longer than"),
            "{err}"
        );
        capture_db::uninstall::<db_long_table::Model, _>(&t.db)
            .await
            .unwrap_err();
    }
    t.finish().await;
}

twins!(hooked_masked_json = "tw_masked_json", db_masked_json = "tw_db_masked_json", {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[audit(mask)]
    pub secret: Option<Json>,
});

/// A masked JSON column holding JSON `null` is logged as null, as the hooks log it (there is
/// nothing to hide), and every other value as the mask. Before, the triggers logged the mask
/// for a JSON null.
#[tokio::test]
async fn a_masked_json_null_is_logged_as_the_hooks_log_it() {
    let t = TestDb::new().await;
    common::create_table(&t.db, hooked_masked_json::Entity).await;
    installed(&t, db_masked_json::Entity).await;
    let state = |secret: Json| hooked_masked_json::ActiveModel {
        id: Set(1),
        secret: Set(Some(secret)),
    };
    let states = [
        state(Json::Null),
        state(serde_json::json!("hunter2")),
        state(Json::Null),
    ];
    write_both::<hooked_masked_json::ActiveModel, db_masked_json::ActiveModel>(
        &t,
        &states,
        "tw_masked_json",
        "tw_db_masked_json",
    )
    .await;
    let logged = entries(&t, "tw_db_masked_json").await;
    assert_eq!(
        logged[1].2,
        serde_json::json!({"old_value": {"secret": null}, "new_value": {"secret": "***FILTERED***"}})
    );
    assert!(!format!("{logged:?}").contains("hunter2"));
    t.finish().await;
}

db_entity!(
/// A JSON field on a text column of a case-insensitive collation (MariaDB).
mod db_ci_json = "tw_db_ci_json",
#[audit(capture = "database")],
{
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub doc: Json,
});

/// MariaDB: JSON kept in a `longtext` of a `_ci` collation compares {"n":"bob"} and
/// {"n":"BOB"} equal; the trigger compares the JSON's bytes, so the change is logged.
#[tokio::test]
async fn a_json_change_of_case_is_logged_on_a_case_insensitive_column() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    t.db.execute_unprepared(
        "CREATE TABLE tw_db_ci_json (id int PRIMARY KEY, \
         doc longtext COLLATE utf8mb4_general_ci NOT NULL CHECK (json_valid(doc)))",
    )
    .await
    .unwrap();
    capture_db::install::<db_ci_json::Model, _>(&t.db)
        .await
        .unwrap();
    run_all(
        &t.db,
        &[
            r#"INSERT INTO tw_db_ci_json VALUES (1, '{"n":"bob"}')"#,
            r#"UPDATE tw_db_ci_json SET doc = '{"n":"BOB"}'"#,
        ],
    )
    .await;
    let changes = changes(&t, "tw_db_ci_json").await;
    assert_eq!(
        changes.get(1),
        Some(
            &serde_json::json!({"old_value": {"doc": {"n": "bob"}}, "new_value": {"doc": {"n": "BOB"}}})
        ),
        "{changes:#?}"
    );
    t.finish().await;
}

db_entity!(
/// JSON written in different forms by another program (raw SQL).
mod db_json_forms = "tw_db_json_forms",
#[audit(capture = "database")],
{
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub doc: Json,
    pub maybe: Option<Json>,
});

/// The triggers compare JSON as the hooks do, as the values serde_json reads: a new text of
/// the same value (key order, white space, `1.0` for `1.00`) and SQL NULL for JSON `null` log
/// nothing; an integer becoming a float (`1` to `1.0`) is a change, as for serde_json. Before,
/// SQLite and MariaDB logged each text change as an entry with equal sides, PostgreSQL the
/// `1.00`, and every backend `null` to `null`.
#[tokio::test]
async fn json_written_in_another_form_is_logged_only_when_its_value_changes() {
    let t = TestDb::new().await;
    installed(&t, db_json_forms::Entity).await;
    let doc = |text: &str| format!("UPDATE tw_db_json_forms SET doc = '{text}' WHERE id = 1");
    let unchanged = [
        doc(r#"{"b":[1.00,"x"],"a":1}"#),
        "UPDATE tw_db_json_forms SET maybe = 'null' WHERE id = 1".to_owned(),
        "UPDATE tw_db_json_forms SET maybe = NULL WHERE id = 1".to_owned(),
    ];
    let statements = [
        vec![
            r#"INSERT INTO tw_db_json_forms VALUES (1, '{"a": 1, "b": [1.0, "x"]}', NULL)"#
                .to_owned(),
        ],
        unchanged.to_vec(),
        vec![doc(r#"{"a":1.0,"b":[1.0,"x"]}"#)],
        vec![doc(r#"{"a":1.0,"b":[1.0,"X"]}"#)],
        // Digits inside strings are not numbers.
        vec![doc(r#"{"a":1.0,"b":[1.0,"X"],"s":"n 1, 2.5 [3]"}"#)],
        vec![doc(
            r#"{ "s" : "n 1, 2.5 [3]", "b" : [1e0, "X"], "a" : 1.00 }"#,
        )],
        vec![doc(r#"{"s":"n 1, 2.5 [3]","b":[1,"X"],"a":1.0}"#)],
    ]
    .concat();
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    run_all(&t.db, &statements).await;
    let updates: Vec<Json> = entries(&t, "tw_db_json_forms")
        .await
        .into_iter()
        .filter(|e| e.1 == "update")
        .map(|e| e.2)
        .collect();
    let change = |old: Json, new: Json| serde_json::json!({"old_value": {"doc": old}, "new_value": {"doc": new}});
    use serde_json::json;
    assert_eq!(
        updates,
        [
            change(
                json!({"a": 1, "b": [1.0, "x"]}),
                json!({"a": 1.0, "b": [1.0, "x"]})
            ),
            change(
                json!({"a": 1.0, "b": [1.0, "x"]}),
                json!({"a": 1.0, "b": [1.0, "X"]})
            ),
            change(
                json!({"a": 1.0, "b": [1.0, "X"]}),
                json!({"a": 1.0, "b": [1.0, "X"], "s": "n 1, 2.5 [3]"})
            ),
            change(
                json!({"a": 1.0, "b": [1.0, "X"], "s": "n 1, 2.5 [3]"}),
                json!({"a": 1.0, "b": [1, "X"], "s": "n 1, 2.5 [3]"})
            ),
        ],
        "{updates:#?}"
    );
    // Inside a transaction, raw SQL and SeaORM (which writes serde_json's text of the value,
    // keys sorted) writing the same value again log nothing either.
    let tx = sea_orm::TransactionTrait::begin(&t.db).await.unwrap();
    run_all(
        &tx,
        &[&doc(r#"{"a":1.0, "b":[1,"X"], "s":"n 1, 2.5 [3]"}"#)],
    )
    .await;
    db_json_forms::ActiveModel {
        id: Set(1),
        doc: Set(json!({"s": "n 1, 2.5 [3]", "b": [1, "X"], "a": 1.0})),
        maybe: Set(Some(Json::Null)),
    }
    .update(&tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let after = entries(&t, "tw_db_json_forms").await;
    assert_eq!(
        after.iter().filter(|e| e.1 == "update").count(),
        4,
        "{after:#?}"
    );
    assert_verified(&t.db).await;
    t.finish().await;
}

/// Numbers a database reads otherwise than serde_json: an integer becoming an integral float
/// from 1e16 up (PostgreSQL's canonical text writes both as the integer), integers beyond
/// `i64` (SQLite reads them as doubles), a number nearer 0 than any `f64` (PostgreSQL's cast
/// to float8 failed the write; serde_json reads 0.0), one just above half the least `f64`
/// (PostgreSQL's rounded bound logged 0.0), adjacent tiny `f64`s SQLite's parser reads as one.
/// Each change is logged, no write fails.
#[tokio::test]
async fn json_numbers_a_database_reads_otherwise_are_logged() {
    let t = TestDb::new().await;
    installed(&t, db_json_forms::Entity).await;
    let doc = |n: &str| format!(r#"UPDATE tw_db_json_forms SET doc = '{{"n": {n}}}' WHERE id = 1"#);
    let statements = [
        r#"INSERT INTO tw_db_json_forms VALUES (1, '{"n": 10000000000000000}', NULL)"#.to_owned(),
        doc("10000000000000000.0"),
        doc("9223372036854775808"),
        doc("9223372036854775809"),
        doc("1e-400"),
        // Just above half the least f64: serde_json reads 5e-324.
        doc("2.4703282292062328e-324"),
        // Adjacent f64s that SQLite's parser reads as one.
        doc("4.06553337384986e-98"),
        doc("4.0655333738498595e-98"),
    ];
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    run_all(&t.db, &statements).await;
    let updates: Vec<Json> = entries(&t, "tw_db_json_forms")
        .await
        .into_iter()
        .filter(|e| e.1 == "update")
        .map(|e| e.2)
        .collect();
    assert_eq!(updates.len(), 7, "{updates:#?}");
    assert_eq!(
        updates[2]["new_value"]["doc"]["n"],
        serde_json::json!(9223372036854775809u64)
    );
    assert_eq!(updates[3]["new_value"]["doc"]["n"], serde_json::json!(0.0));
    assert_eq!(
        updates[4]["new_value"]["doc"]["n"],
        serde_json::json!(5e-324)
    );
    assert_eq!(
        updates[6]["new_value"]["doc"]["n"],
        serde_json::json!(4.0655333738498595e-98)
    );
    assert_verified(&t.db).await;
    t.finish().await;
}

db_entity!(
/// MariaDB: a composite key and a JSON field on text columns of a collation other than the
/// server's default for utf8mb4.
mod db_uca_json = "tw_db_uca_json",
#[audit(capture = "database")],
{
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub label: String,
    pub doc: Json,
});

/// MariaDB: the trigger's regular expressions run in `utf8mb4_bin`, so tables whose text
/// columns have another collation (`utf8mb4_unicode_ci`) can be written (before, every update
/// of such a table failed with "Illegal mix of collations"); JSON nested deeper than MariaDB's
/// JSON functions read (32 levels, possible in a `longtext`) and JSON longer than the
/// comparison's bound are compared as text, never failing the write.
#[tokio::test]
async fn mariadb_json_it_cannot_compare_as_a_value_is_compared_as_text() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    t.db.execute_unprepared(
        "CREATE TABLE tw_db_uca_json (id int, label varchar(64) COLLATE utf8mb4_unicode_ci, \
         doc longtext COLLATE utf8mb4_unicode_ci NOT NULL, PRIMARY KEY (id, label))",
    )
    .await
    .unwrap();
    capture_db::install::<db_uca_json::Model, _>(&t.db)
        .await
        .unwrap();
    let deep = |pad: &str| format!("{}1{}", format!("[{pad}").repeat(40), "]".repeat(40));
    let long = |pad: &str| {
        let items: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
        format!("[{}]", items.join(&format!(",{pad}")))
    };
    let doc = |text: &str| format!("UPDATE tw_db_uca_json SET doc = '{text}'");
    let statements = [
        r#"INSERT INTO tw_db_uca_json VALUES (1, CONCAT('k', CHAR(31)), '{"a":1}')"#.to_owned(),
        doc(r#"{ "a" : 1 }"#),
        doc(&deep("")),
        doc(&deep(" ")),
        doc(&long("")),
        doc(&long(" ")),
        // Not JSON at all (a `longtext` holds it): logged, not refused (it failed with 4038).
        doc("not json"),
    ];
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    run_all(&t.db, &statements).await;
    let logged = entries(&t, "tw_db_uca_json").await;
    let actions: Vec<&str> = logged.iter().map(|e| e.1.as_str()).collect();
    // The first update changes only white space; the others change the text of values the
    // trigger compares as text.
    assert_eq!(
        actions,
        ["create", "update", "update", "update", "update", "update"]
    );
    for entry in &logged {
        assert_eq!(entry.0, r#"[1,"k\u001f"]"#);
    }
    t.finish().await;
}

/// A masked JSON column and repeated keys: a masked value written in another form logs
/// nothing, an integer becoming a float logs the mask on both sides; on SQLite and
/// PostgreSQL a change of a repeated key's last value is logged (serde_json keeps the last
/// one). MariaDB's `JSON_EQUALS` holds those equal: that change is not logged there (README).
#[tokio::test]
async fn masked_json_and_repeated_keys_are_compared_as_values() {
    let t = TestDb::new().await;
    installed(&t, db_masked_json::Entity).await;
    run_all(
        &t.db,
        &[
            r#"INSERT INTO tw_db_masked_json VALUES (1, '{"a": 1.0}')"#,
            r#"UPDATE tw_db_masked_json SET secret = '{"a":1.00}'"#,
            r#"UPDATE tw_db_masked_json SET secret = '{"a":1}'"#,
        ],
    )
    .await;
    let masked: Vec<Json> = changes(&t, "tw_db_masked_json").await;
    let filtered = serde_json::json!("***FILTERED***");
    assert_eq!(masked.len(), 2, "{masked:#?}");
    assert_eq!(
        masked[1],
        serde_json::json!({"old_value": {"secret": filtered}, "new_value": {"secret": filtered}})
    );
    installed(&t, db_json_forms::Entity).await;
    run_all(
        &t.db,
        &[
            r#"INSERT INTO tw_db_json_forms VALUES (1, '{"a":1,"a":2}', NULL)"#,
            r#"UPDATE tw_db_json_forms SET doc = '{"a":2,"a":1}'"#,
        ],
    )
    .await;
    let repeated = changes(&t, "tw_db_json_forms").await;
    let expected = if t.backend() == DbBackend::MySql {
        1
    } else {
        2
    };
    assert_eq!(repeated.len(), expected, "{repeated:#?}");
    if expected == 2 {
        assert_eq!(
            repeated[1],
            serde_json::json!({"old_value": {"doc": {"a": 2}}, "new_value": {"doc": {"a": 1}}})
        );
    }
    t.finish().await;
}
