//! Values at and over the log's limits: a clear error naming the field before anything is
//! written, and JSON of any depth recorded without crashing and read back by every reader.

mod common;

use common::entities::{post, sample, tag};
use common::{TestDb, all_logs, new_post};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, PaginatorTrait, TransactionTrait};
use sea_orm_audit::{
    Action, AuditContext, Event, History, MAX_ACTION_CHARS, MAX_JSON_DEPTH, MAX_KEY_CHARS,
    TOO_DEEP, listen::Tail, logs_for_id, verify,
};
use serde_json::{Value as Json, json};

/// Asserts that `result` failed naming `field`, and that neither the table nor the log holds
/// anything new.
async fn assert_refused<T: std::fmt::Debug>(
    t: &TestDb,
    result: Result<T, sea_orm::DbErr>,
    field: &str,
    posts_before: u64,
    logs_before: usize,
) {
    let err = result.expect_err("over the limit").to_string();
    assert!(err.contains(&format!("`{field}`")), "{err}");
    assert_eq!(
        post::Entity::find().count(&t.db).await.unwrap(),
        posts_before
    );
    assert_eq!(all_logs(&t.db).await.len(), logs_before);
}

/// The title of post `id` as stored.
async fn stored_title(t: &TestDb, id: i32) -> String {
    let stored = post::Entity::find_by_id(id).one(&t.db).await.unwrap();
    stored.expect("the post is stored").title
}

#[tokio::test]
async fn actor_over_the_limit_fails_before_the_write() {
    let t = TestDb::new().await;
    let fits = "a".repeat(MAX_KEY_CHARS);
    let p = AuditContext::new()
        .actor(fits.clone())
        .scope(new_post("fits").insert(&t.db))
        .await
        .unwrap();
    assert_eq!(
        all_logs(&t.db).await[0].actor.as_deref(),
        Some(fits.as_str())
    );

    // Multi-byte characters count as characters, as the columns count them.
    let long = "é".repeat(MAX_KEY_CHARS + 1);
    let insert = AuditContext::new()
        .actor(long.clone())
        .scope(new_post("long").insert(&t.db))
        .await;
    assert_refused(&t, insert, "actor", 1, 1).await;

    // An update and a delete outside a transaction: the row stays as it was.
    let mut am = p.clone().into_active_model();
    am.title = Set("changed".into());
    let update = AuditContext::new()
        .actor(long.clone())
        .scope(am.update(&t.db))
        .await;
    assert_refused(&t, update, "actor", 1, 1).await;
    assert_eq!(stored_title(&t, p.id).await, "fits");
    let delete = AuditContext::new()
        .tool(long.clone())
        .scope(p.clone().into_active_model().delete(&t.db))
        .await;
    assert_refused(&t, delete, "tool", 1, 1).await;
    // Inside a transaction that goes on and commits: the refused update and insert leave
    // nothing, and the transaction's other write is logged.
    let txn = t.db.begin().await.unwrap();
    let mut am = p.clone().into_active_model();
    am.title = Set("changed in tx".into());
    let refused = AuditContext::new()
        .actor(long.clone())
        .scope(am.update(&txn))
        .await;
    assert!(refused.unwrap_err().to_string().contains("`actor`"));
    let refused = AuditContext::new()
        .actor(long)
        .scope(new_post("in tx").insert(&txn))
        .await;
    assert!(refused.unwrap_err().to_string().contains("`actor`"));
    new_post("kept").insert(&txn).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(post::Entity::find().count(&t.db).await.unwrap(), 2);
    assert_eq!(stored_title(&t, p.id).await, "fits");
    let logs = all_logs(&t.db).await;
    assert_eq!(logs.len(), 2, "{logs:#?}");
    assert_eq!(
        logs[1].changes.as_ref().unwrap()["new_value"]["title"],
        "kept"
    );
    t.finish().await;
}

#[tokio::test]
async fn nul_in_actor_fails_before_the_write_on_every_backend() {
    let t = TestDb::new().await;
    let insert = AuditContext::new()
        .actor("ali\0ce")
        .scope(new_post("nul").insert(&t.db))
        .await;
    assert_refused(&t, insert, "actor", 0, 0).await;
    t.finish().await;
}

#[tokio::test]
async fn object_id_over_the_limit_fails_before_the_write() {
    let t = TestDb::new().await;
    let long = "k".repeat(MAX_KEY_CHARS + 1);
    let err = tag::ActiveModel {
        slug: Set(long),
        label: Set("x".into()),
    }
    .insert(&t.db)
    .await
    .expect_err("object id over the limit")
    .to_string();
    assert!(err.contains("`object_id`"), "{err}");
    assert_eq!(tag::Entity::find().count(&t.db).await.unwrap(), 0);
    assert!(all_logs(&t.db).await.is_empty());
    t.finish().await;
}

#[tokio::test]
async fn events_over_the_limit_are_refused_naming_the_field() {
    let t = TestDb::new().await;
    let err = Event::new("login")
        .target_id("user", "x".repeat(MAX_KEY_CHARS + 1))
        .record(&t.db)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`object_id`"), "{err}");
    let err = Event::new("login")
        .target_id("u".repeat(MAX_KEY_CHARS + 1), "1")
        .record(&t.db)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`entity_type`"), "{err}");
    // A custom action longer than the log's `action` column (MySQL outside a strict sql_mode
    // would cut it, SQLite keep it whole), or holding NUL.
    let fits = "x".repeat(MAX_ACTION_CHARS);
    for action in ["é".repeat(MAX_ACTION_CHARS + 1), "ex\0port".to_owned()] {
        let err = Event::new(Action::Custom(action))
            .target_id("user", "1")
            .record(&t.db)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`action`"), "{err}");
    }
    if t.backend() == sea_orm::DbBackend::Postgres {
        let err = Event::new("login")
            .target_id("user", "1")
            .message("a\0b")
            .record(&t.db)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`message`"), "{err}");
        for data in [json!("a\u{0}b"), json!({"k\u{0}ey": 1}), json!([["\u{0}"]])] {
            let err = Event::new("login")
                .target_id("user", "1")
                .data("ip", data)
                .record(&t.db)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("`data`"), "{err}");
        }
    }
    assert!(all_logs(&t.db).await.is_empty());
    Event::new(Action::Custom(fits.clone()))
        .target_id("user", "1")
        .record(&t.db)
        .await
        .unwrap();
    assert_eq!(all_logs(&t.db).await[0].action.as_str(), fits);
    t.finish().await;
}

fn nested(depth: usize) -> Json {
    let mut v = json!("leaf");
    for _ in 0..depth {
        // Not `json!({"a": v})`: that copies `v` recursively.
        v = Json::Object([("a".to_owned(), v)].into_iter().collect());
    }
    v
}

fn new_sample(doc: Json) -> sample::ActiveModel {
    sample::ActiveModel {
        price: Set("1.5".parse().unwrap()),
        blob: Set(vec![1]),
        doc: Set(doc),
        note: Set(None),
        ratio: Set(0.5),
        day: Set(chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()),
        at: Set(chrono::Utc::now()),
        local: Set(chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()),
        flag: Set(true),
        ..Default::default()
    }
}

/// A value recorded as the too-deep marker was never stored: `revert` and `restore` refuse to
/// write the marker back and name the column, and `restore_with` fills it.
#[tokio::test]
async fn a_too_deep_value_must_be_filled_to_restore_or_revert() {
    use sea_orm::ModelTrait;
    use sea_orm_audit::Error;
    use sea_orm_audit::timeline::{restore, restore_with, revert};
    let t = TestDb::new().await;
    let deep = new_sample(nested(MAX_JSON_DEPTH + 1))
        .insert(&t.db)
        .await
        .unwrap();
    let id = deep.id.to_string();
    let mut am = deep.clone().into_active_model();
    am.doc = Set(json!({"shallow": true}));
    let shallow = am.update(&t.db).await.unwrap();
    let update = logs_for_id(&t.db, "samples", &id).await.unwrap()[0].id;
    let not_recorded = |result: Result<_, Error>| match result {
        Err(Error::NotRecorded { columns, .. }) => assert_eq!(columns, ["doc"]),
        other => panic!("expected NotRecorded: {other:?}"),
    };
    not_recorded(
        revert::<sample::ActiveModel, _>(&t.db, update)
            .await
            .map(|_| ()),
    );
    let stored = sample::Entity::find_by_id(deep.id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.doc, json!({"shallow": true}), "nothing written back");

    // Deleted while its value was too deep: restore needs it filled in.
    let mut am = shallow.into_active_model();
    am.doc = Set(nested(MAX_JSON_DEPTH + 1));
    am.update(&t.db).await.unwrap().delete(&t.db).await.unwrap();
    not_recorded(
        restore::<sample::ActiveModel, _>(&t.db, &id)
            .await
            .map(|_| ()),
    );
    assert!(
        sample::Entity::find_by_id(deep.id)
            .one(&t.db)
            .await
            .unwrap()
            .is_none()
    );
    let back = restore_with::<sample::ActiveModel, _, _>(&t.db, &id, |am| {
        am.doc = Set(json!({"filled": 1}));
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(back.doc, json!({"filled": 1}));
    assert_eq!(back.ratio, deep.ratio);
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

/// A JSON column nested 126 deep (31 on MariaDB, the most its JSON columns hold), which
/// SeaORM stores and reads, is recorded as the marker, and the log stays readable by every
/// read path.
#[tokio::test]
async fn deep_json_is_marked_and_every_reader_still_reads() {
    let t = TestDb::new().await;
    let deepest = if t.backend() == sea_orm::DbBackend::MySql {
        31
    } else {
        126
    };
    let fits = new_sample(nested(MAX_JSON_DEPTH))
        .insert(&t.db)
        .await
        .unwrap();
    let deep = new_sample(nested(deepest)).insert(&t.db).await.unwrap();
    let mut am = deep.clone().into_active_model();
    am.doc = Set(nested(deepest - 1));
    am.update(&t.db).await.unwrap();
    Event::new("import")
        .target_id("samples", deep.id.to_string())
        .data("payload", nested(126))
        .record(&t.db)
        .await
        .unwrap();

    let fits_log = logs_for_id(&t.db, "samples", &fits.id.to_string())
        .await
        .unwrap();
    assert_eq!(
        fits_log[0].changes.as_ref().unwrap().new_value["doc"],
        nested(MAX_JSON_DEPTH)
    );
    let deep_log = logs_for_id(&t.db, "samples", &deep.id.to_string())
        .await
        .unwrap();
    assert_eq!(deep_log.len(), 3);
    let marker = |v: &Json| v.as_str().is_some_and(|s| s.starts_with(TOO_DEEP));
    let create = &deep_log[2];
    assert!(marker(&create.changes.as_ref().unwrap().new_value["doc"]));
    // A change between two values too deep to record is still a change.
    let update = deep_log[1].changes.as_ref().unwrap();
    assert!(marker(&update.old_value["doc"]) && marker(&update.new_value["doc"]));
    assert_ne!(update.old_value["doc"], update.new_value["doc"]);
    assert!(marker(&deep_log[0].data["payload"]));
    assert_eq!(History::new().fetch(&t.db).await.unwrap().entries.len(), 4);
    assert!(verify(&t.db).await.unwrap().is_ok());
    let mut tail = Tail::new(t.db.clone()).from_start();
    assert_eq!(tail.poll().await.unwrap().len(), 4);
    t.finish().await;
}

/// 10,000 levels through the capture's own steps, on a tokio worker's 2 MiB stack: nothing of
/// ours recurses. SeaORM's INSERT builder copies a JSON value recursively and overflows such a
/// stack on 10,000 levels by itself (seen in a debugger), so this drives our functions directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_levels_do_not_crash_the_capture() {
    tokio::spawn(async move {
        let deep = sea_orm::Value::Json(Some(Box::new(nested(10_000))));
        let recorded = sea_orm_audit::value::to_json(&deep);
        assert!(
            recorded.as_str().unwrap().starts_with(TOO_DEEP),
            "{recorded}"
        );
        let old: serde_json::Map<String, Json> =
            [("doc".to_owned(), nested(10_000))].into_iter().collect();
        let new: serde_json::Map<String, Json> =
            [("doc".to_owned(), nested(10_001))].into_iter().collect();
        let changes = sea_orm_audit::diff_maps(&old, &new, &[]);
        assert_ne!(changes.old_value["doc"], changes.new_value["doc"]);
        let same = sea_orm_audit::diff_maps(&old, &old, &[]);
        assert!(same.is_empty());
        for value in [old, new]
            .into_iter()
            .flat_map(|m| m.into_iter().map(|(_, v)| v))
        {
            dispose(value);
        }
        if let sea_orm::Value::Json(Some(v)) = deep {
            dispose(*v);
        }
    })
    .await
    .expect("no panic, no stack overflow");
}

/// Drops a JSON value level by level (a recursive drop of 10,000 levels overflows).
fn dispose(value: Json) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Json::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            Json::Array(items) => stack.extend(items),
            _ => {}
        }
    }
}

/// JSON nested deeper than serde_json reads (`READABLE_JSON_DEPTH`) fails an audited insert
/// or update before the write, naming the column. Before, outside a transaction, the row
/// landed and SeaORM's read of it back failed ("recursion limit exceeded") before the entry:
/// a committed write with no entry (SQLite and PostgreSQL; MariaDB's JSON column refuses it).
#[tokio::test]
async fn json_too_deep_to_read_back_is_refused_before_the_write() {
    let t = TestDb::new().await;
    let kept = new_sample(nested(3)).insert(&t.db).await.unwrap();
    let logs_before = all_logs(&t.db).await.len();
    let too_deep = nested(sea_orm_audit::READABLE_JSON_DEPTH + 1);
    let err = new_sample(too_deep.clone())
        .insert(&t.db)
        .await
        .expect_err("too deep to read back")
        .to_string();
    assert!(err.contains("`doc`"), "{err}");
    let mut am = kept.clone().into_active_model();
    am.doc = Set(too_deep);
    let err = am.update(&t.db).await.expect_err("too deep").to_string();
    assert!(err.contains("`doc`"), "{err}");
    assert_eq!(sample::Entity::find().count(&t.db).await.unwrap(), 1);
    let stored = sample::Entity::find_by_id(kept.id)
        .one(&t.db)
        .await
        .unwrap();
    assert_eq!(stored.unwrap().doc, nested(3));
    assert_eq!(all_logs(&t.db).await.len(), logs_before);
    // As deep as serde_json reads: written and logged.
    new_sample(nested(sea_orm_audit::READABLE_JSON_DEPTH))
        .insert(&t.db)
        .await
        .map(|_| ())
        .or_else(|e| {
            // MariaDB's JSON columns hold 32 levels.
            if t.backend() == sea_orm::DbBackend::MySql {
                Ok(())
            } else {
                Err(e)
            }
        })
        .unwrap();
    t.finish().await;
}
