//! Every column type: the logged diff is valid JSON and holds exactly the stored values.

mod common;

use common::entities::kitchen::{self, Mood};
use common::{TestDb, kitchen_sample};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, Iterable,
    ModelTrait,
};
use sea_orm_audit::{Auditable, logs_for, value::to_json};
use serde_json::json;

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
    let created = kitchen_sample(1024 * 1024).insert(&t.db).await.unwrap();

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

    // The stored JSON, read as the database's own text, parses on every backend to what the
    // library decoded.
    let as_text = match t.backend() {
        DbBackend::Postgres => "changes::text",
        DbBackend::MySql => "CAST(changes AS CHAR)",
        _ => "CAST(changes AS TEXT)",
    };
    let sql = format!("SELECT {as_text} AS t FROM audit_log ORDER BY id");
    let raw =
        t.db.query_all_raw(sea_orm::Statement::from_string(t.backend(), sql))
            .await
            .unwrap();
    let decoded = common::all_logs(&t.db).await;
    assert_eq!(raw.len(), decoded.len());
    for (row, decoded) in raw.iter().zip(decoded) {
        let text: String = row.try_get("", "t").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(Some(parsed), decoded.changes);
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
        let mut am = kitchen_sample(10);
        am.ratio = Set(*value);
        let m = am.insert(&t.db).await.unwrap();
        let h = logs_for(&t.db, &m).await.unwrap();
        assert_eq!(
            h[0].changes.as_ref().unwrap().new_value["ratio"],
            json!(text)
        );
    }
    if t.backend() == DbBackend::MySql {
        let mut am = kitchen_sample(10);
        am.ratio = Set(f64::NAN);
        assert!(
            am.insert(&t.db).await.is_err(),
            "MySQL rejects NaN: the write fails, nothing is logged"
        );
        assert!(common::all_logs(&t.db).await.is_empty());
    }
    assert_eq!(<kitchen::Model as Auditable>::entity_type(), "kitchen");
    // The derive leaves a working SeaORM entity: it reads back every row written.
    let rows = kitchen::Entity::find().all(&t.db).await.unwrap();
    assert_eq!(rows.len(), cases.len());
    t.finish().await;
}

#[tokio::test]
async fn log_timestamps_have_no_2038_limit() {
    use sea_orm::ConnectionTrait;
    let t = TestDb::new().await;
    let m = kitchen_sample(1).insert(&t.db).await.unwrap();
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
    let m2 = kitchen_sample(1).insert(&t.db).await.unwrap();
    let h = logs_for(&t.db, &m2).await.unwrap();
    let age = chrono::Utc::now() - h[0].created_at;
    assert!(
        age.num_seconds().abs() < 60,
        "created_at is UTC now: {}",
        h[0].created_at
    );
    t.finish().await;
}
