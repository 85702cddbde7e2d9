//! Every column type: the logged diff is valid JSON and holds exactly the stored values.

mod common;

use common::TestDb;
use common::entities::kitchen::{self, Mood};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ActiveModelTrait, DbBackend, EntityTrait, IntoActiveModel, Iterable, ModelTrait};
use sea_orm_audit::{Auditable, logs_for, value::to_json};
use serde_json::json;

fn sample(text_len: usize) -> kitchen::ActiveModel {
    let stamp = chrono::DateTime::parse_from_rfc3339("2031-12-31T23:59:58.123456+05:30").unwrap();
    kitchen::ActiveModel {
        id: NotSet,
        long_text: Set("x".repeat(text_len)),
        unicode: Set("Zoë ✓ 漢字 🦀 \u{202e}rtl".into()),
        maybe_text: Set(None),
        blob: Set(vec![0, 0xff, 0xfe, 0x80, 0x7f]),
        ratio: Set(1.0 / 3.0),
        small: Set(0.1),
        maybe_ratio: Set(Some(-2.5e-300)),
        amount: Set("123456789012345678.0123456789".parse().unwrap()),
        doc: Set(json!({"k": [1, 2.5, "three", null, {"deep": true}], "ü": "é"})),
        mood: Set(Mood::Happy),
        maybe_mood: Set(None),
        day: Set(chrono::NaiveDate::from_ymd_opt(1969, 7, 20).unwrap()),
        clock: Set(chrono::NaiveTime::from_hms_opt(20, 17, 40).unwrap()),
        naive: Set(chrono::NaiveDate::from_ymd_opt(2099, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap()),
        stamp: Set(stamp),
        utc: Set(stamp.with_timezone(&chrono::Utc)),
        uid: Set(uuid::Uuid::new_v4()),
        big: Set(i64::MAX - 1),
        flag: Set(false),
    }
}

/// The row as stored, column by column, through the library's own conversion.
fn stored(model: &kitchen::Model) -> serde_json::Map<String, serde_json::Value> {
    use sea_orm::IdenStatic;
    kitchen::Column::iter()
        .map(|c| (c.as_str().to_owned(), to_json(&model.get(c))))
        .collect()
}

#[tokio::test]
async fn every_column_type_round_trips_through_the_log() {
    let t = TestDb::new().await;
    let created = sample(1024 * 1024).insert(&t.db).await.unwrap();

    let mut am = created.clone().into_active_model();
    am.long_text = Set("y".repeat(1024 * 1024));
    am.unicode = Set("Ω≈ç√ 🙂".into());
    am.maybe_text = Set(Some("now set".into()));
    am.blob = Set((0..=255).collect());
    am.ratio = Set(f64::MAX);
    am.small = Set(-0.0);
    am.maybe_ratio = Set(None);
    am.amount = Set("-0.0000000001".parse().unwrap());
    am.doc = Set(json!([]));
    am.mood = Set(Mood::Grumpy);
    am.maybe_mood = Set(Some(Mood::Happy));
    am.day = Set(chrono::NaiveDate::from_ymd_opt(2040, 2, 29).unwrap());
    am.clock = Set(chrono::NaiveTime::from_hms_opt(0, 0, 1).unwrap());
    am.naive = Set(chrono::NaiveDate::from_ymd_opt(2050, 6, 7)
        .unwrap()
        .and_hms_opt(8, 9, 10)
        .unwrap());
    am.stamp = Set(chrono::DateTime::parse_from_rfc3339("2045-01-01T00:00:00-08:00").unwrap());
    // sqlx binds DateTime<Utc> as a MySQL TIMESTAMP parameter: past 2038 it becomes NULL.
    let far = if t.backend() == DbBackend::MySql {
        "2037-12-31T00:00:00Z"
    } else {
        "2100-01-01T00:00:00Z"
    };
    am.utc = Set(chrono::DateTime::parse_from_rfc3339(far)
        .unwrap()
        .with_timezone(&chrono::Utc));
    am.big = Set(i64::MIN);
    am.flag = Set(true);
    let updated = am.update(&t.db).await.unwrap();

    let history = logs_for(&t.db, &updated).await.unwrap();
    assert_eq!(history.len(), 2);
    let create = history[1].changes.as_ref().unwrap();
    let update = history[0].changes.as_ref().unwrap();
    assert_eq!(
        create.new_value,
        stored(&created),
        "create holds the stored row"
    );
    let before = stored(&created);
    let after = stored(&updated);
    for column in update.fields() {
        assert_eq!(update.old_value[column], before[column], "old {column}");
        assert_eq!(update.new_value[column], after[column], "new {column}");
    }
    let expected_changed = before.keys().filter(|k| before[*k] != after[*k]).count();
    assert_eq!(update.fields().len(), expected_changed);
    assert!(update.fields().len() >= 17, "{:?}", update.fields());

    // Spot checks of the encoding itself.
    assert_eq!(
        create.new_value["long_text"].as_str().unwrap().len(),
        1024 * 1024
    );
    assert_eq!(
        create.new_value["unicode"],
        json!("Zoë ✓ 漢字 🦀 \u{202e}rtl")
    );
    assert_eq!(create.new_value["blob"], json!("AP/+gH8="));
    if t.backend() != DbBackend::Sqlite {
        // SQLite keeps decimals as REAL: what it stores (and the log holds) is already rounded.
        assert_eq!(
            create.new_value["amount"],
            json!("123456789012345678.0123456789")
        );
    }
    assert_eq!(create.new_value["mood"], json!("happy"));
    assert_eq!(create.new_value["maybe_mood"], json!(null));
    assert_eq!(create.new_value["day"], json!("1969-07-20"));
    assert_eq!(create.new_value["clock"], json!("20:17:40"));
    assert_eq!(create.new_value["naive"], json!("2099-01-02T03:04:05"));
    assert_eq!(create.new_value["big"], json!(i64::MAX - 1));
    assert_eq!(update.new_value["big"], json!(i64::MIN));
    let utc =
        chrono::DateTime::parse_from_rfc3339(create.new_value["utc"].as_str().unwrap()).unwrap();
    assert_eq!(utc, created.utc, "RFC 3339, same instant");
    let stamp =
        chrono::DateTime::parse_from_rfc3339(create.new_value["stamp"].as_str().unwrap()).unwrap();
    assert_eq!(
        stamp, created.stamp,
        "same instant whatever zone the backend hands back"
    );
    assert_eq!(update.new_value["utc"].as_str().unwrap()[..4], far[..4]);

    // The raw stored JSON parses on every backend.
    let raw = common::all_logs(&t.db).await;
    for row in raw {
        let text = row.changes.unwrap().to_string();
        let _: serde_json::Value = serde_json::from_str(&text).unwrap();
    }
    t.finish().await;
}

#[tokio::test]
async fn non_finite_floats_where_the_backend_stores_them() {
    let t = TestDb::new().await;
    // MySQL/MariaDB DOUBLE rejects NaN and infinities; SQLite stores NaN as NULL.
    let cases: &[(f64, &str)] = match t.backend() {
        DbBackend::Postgres => &[
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ],
        DbBackend::Sqlite => &[
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ],
        _ => &[],
    };
    for (value, text) in cases {
        let mut am = sample(10);
        am.ratio = Set(*value);
        let m = am.insert(&t.db).await.unwrap();
        let h = logs_for(&t.db, &m).await.unwrap();
        assert_eq!(
            h[0].changes.as_ref().unwrap().new_value["ratio"],
            json!(text)
        );
    }
    if t.backend() == DbBackend::MySql {
        let mut am = sample(10);
        am.ratio = Set(f64::NAN);
        assert!(
            am.insert(&t.db).await.is_err(),
            "MySQL rejects NaN: the write fails, nothing is logged"
        );
        assert!(common::all_logs(&t.db).await.is_empty());
    }
    assert_eq!(<kitchen::Model as Auditable>::entity_type(), "kitchen");
    let _ = kitchen::Entity::find();
    t.finish().await;
}

#[tokio::test]
async fn log_timestamps_have_no_2038_limit() {
    use sea_orm::ConnectionTrait;
    let t = TestDb::new().await;
    let m = sample(1).insert(&t.db).await.unwrap();
    let literal = match t.backend() {
        DbBackend::Postgres => "'2100-01-01 00:00:00+00'",
        DbBackend::MySql => "'2100-01-01 00:00:00'",
        _ => "'2100-01-01 00:00:00+00:00'",
    };
    t.db.execute_unprepared(&format!("UPDATE audit_log SET created_at = {literal}"))
        .await
        .unwrap();
    let h = logs_for(&t.db, &m).await.unwrap();
    assert_eq!(h[0].created_at.to_rfc3339(), "2100-01-01T00:00:00+00:00");
    // And the library writes UTC "now" that reads back as such.
    let m2 = sample(1).insert(&t.db).await.unwrap();
    let h = logs_for(&t.db, &m2).await.unwrap();
    let age = chrono::Utc::now() - h[0].created_at;
    assert!(
        age.num_seconds().abs() < 60,
        "created_at is UTC now: {}",
        h[0].created_at
    );
    t.finish().await;
}
