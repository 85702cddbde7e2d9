//! Database-side capture (`#[audit(capture = "database")]`, `capture_db`): every write path
//! logged exactly once by the trigger, with the rows the hooks would write, on every backend.

#![allow(unreachable_pub)]

mod common;

use std::collections::HashSet;

use common::TestDb;
use common::entities::kitchen::{self, Mood};
use common::entities::post;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DbBackend, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter,
};
use sea_orm::{ColumnTrait, ExprTrait, ModelTrait, QueryOrder};
use sea_orm_audit::capture_db::{self, Drift};
use sea_orm_audit::chain::ProblemKind;
use sea_orm_audit::{AuditContext, audit_log, logs_for, verify};
use serde_json::{Value as Json, json};

use common::entities::post_shaped;

post_shaped!(
    /// `post`'s shape, captured by the database.
    mod db_post,
    "db_posts",
    #[audit(capture = "database", exclude(updated_at))]
);

post_shaped!(
    /// `db_post`'s shape and policy with a deferred seal: its own table.
    mod db_deferred_post,
    "db_deferred_posts",
    #[audit(capture = "database", seal = "deferred", exclude(updated_at))]
);

post_shaped!(
    /// `db_deferred_post`'s table sealed on write, then in hook mode: an entity switched
    /// between modes while entries of its objects wait for a seal.
    mod db_deferred_post_on_write,
    "db_deferred_posts",
    #[audit(capture = "database", exclude(updated_at))]
);

post_shaped!(
    /// The same table in hook mode.
    mod db_deferred_post_hooks,
    "db_deferred_posts",
    #[audit(exclude(updated_at))]
);

/// The same table with another audit policy: a changed entity definition.
mod db_post_v2 {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "db_posts")]
    #[audit(capture = "database", exclude(updated_at), mask(secret, body))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        pub body: String,
        pub views: i32,
        pub secret: Option<String>,
        pub updated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// `kitchen`'s every column type, captured by the database.
mod db_kitchen {
    use super::Mood;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "db_kitchen")]
    #[audit(capture = "database")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(column_type = "Text")]
        pub long_text: String,
        pub unicode: String,
        pub maybe_text: Option<String>,
        pub blob: Vec<u8>,
        pub ratio: f64,
        pub small: f32,
        pub maybe_ratio: Option<f64>,
        #[sea_orm(column_type = "Decimal(Some((30, 10)))")]
        pub amount: Decimal,
        pub doc: Json,
        pub mood: Mood,
        pub maybe_mood: Option<Mood>,
        pub day: Date,
        pub clock: Time,
        pub naive: DateTime,
        pub stamp: DateTimeWithTimeZone,
        pub utc: DateTimeUtc,
        pub uid: Uuid,
        pub big: i64,
        pub flag: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// Scalar columns every backend's capture encodes, logged by the hooks.
mod measure {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "measures")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub ratio: f64,
        pub small: f32,
        pub maybe: Option<f64>,
        pub flag: bool,
        pub doc: Json,
        pub note: Option<String>,
        pub count: i16,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// `measure`, captured by the database.
mod db_measure {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "db_measures")]
    #[audit(capture = "database")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub ratio: f64,
        pub small: f32,
        pub maybe: Option<f64>,
        pub flag: bool,
        pub doc: Json,
        pub note: Option<String>,
        pub count: i16,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// Composite key, captured by the database.
mod db_translation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "db_translations")]
    #[audit(capture = "database", mask(text_body))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub post_id: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub lang: String,
        pub text_body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// A test database with the database-mode tables created and their capture installed.
async fn setup() -> TestDb {
    let t = TestDb::new().await;
    common::create_table(&t.db, db_post::Entity).await;
    common::create_table(&t.db, db_kitchen::Entity).await;
    common::create_table(&t.db, db_translation::Entity).await;
    common::create_table(&t.db, measure::Entity).await;
    common::create_table(&t.db, db_measure::Entity).await;
    capture_db::install::<db_post::Model, _>(&t.db)
        .await
        .unwrap();
    capture_db::install::<db_translation::Model, _>(&t.db)
        .await
        .unwrap();
    capture_db::install::<db_measure::Model, _>(&t.db)
        .await
        .unwrap();
    let kitchen = capture_db::install::<db_kitchen::Model, _>(&t.db).await;
    if t.backend() == DbBackend::Sqlite {
        // SQLite stores decimals as REAL: refused by name rather than logged differently
        // from the hooks (tests/db_capture_types.rs has every other type).
        let err = kitchen.unwrap_err().to_string();
        assert!(err.contains("db_kitchen.amount"), "{err}");
    } else {
        kitchen.unwrap();
    }
    t
}

/// `(object_id, action, changes)` of every entry of one entity type, oldest first.
async fn entries(t: &TestDb, entity_type: &str) -> Vec<(String, String, Json)> {
    common::all_logs(&t.db)
        .await
        .into_iter()
        .filter(|r| r.entity_type == entity_type)
        .map(|r| (r.object_id, r.action, r.changes.unwrap_or(Json::Null)))
        .collect()
}

async fn assert_verified(t: &TestDb) {
    capture_db::seal(&t.db).await.unwrap();
    let report = verify(&t.db).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.checked > 0);
}

fn draft(title: &str) -> db_post::ActiveModel {
    db_post::ActiveModel {
        title: Set(title.into()),
        body: Set("body".into()),
        views: Set(0),
        secret: Set(Some("hunter2".into())),
        ..Default::default()
    }
}

#[tokio::test]
async fn active_model_writes_log_what_the_hooks_log() {
    let t = setup().await;
    // The same writes through a hook-mode entity (`post`) and a database-mode one.
    let hooked = post::ActiveModel {
        title: Set("Hello".into()),
        body: Set("body".into()),
        views: Set(0),
        secret: Set(Some("hunter2".into())),
        ..Default::default()
    }
    .insert(&t.db)
    .await
    .unwrap();
    let captured = draft("Hello").insert(&t.db).await.unwrap();

    let mut am = hooked.clone().into_active_model();
    am.title = Set("Hello, audit".into());
    am.views = Set(3);
    am.secret = Set(None);
    let hooked = am.update(&t.db).await.unwrap();
    let mut am = captured.clone().into_active_model();
    am.title = Set("Hello, audit".into());
    am.views = Set(3);
    am.secret = Set(None);
    am.updated_at = Set(Some(chrono::Utc::now()));
    let captured = am.update(&t.db).await.unwrap();

    // Changes nothing audited: no entry (post's own hook sets the excluded updated_at).
    let mut am = hooked.clone().into_active_model();
    am.views = Set(3);
    am.reset(post::Column::Views);
    am.update(&t.db).await.unwrap();
    let mut am = captured.clone().into_active_model();
    am.reset(db_post::Column::Views);
    am.updated_at = Set(Some(chrono::Utc::now()));
    am.update(&t.db).await.unwrap();

    hooked.delete(&t.db).await.unwrap();
    captured.delete(&t.db).await.unwrap();

    let hooks = entries(&t, "posts").await;
    let database = entries(&t, "db_posts").await;
    assert_eq!(database.len(), 3, "{database:?}");
    assert_eq!(hooks, database);
    assert_eq!(database[1].2["new_value"]["secret"], Json::Null);
    assert_eq!(
        database[1].2["old_value"]["secret"],
        json!("***FILTERED***")
    );

    // The readers of history work on the trigger's rows: History, state_at, restore.
    let db = &t.db;
    let count = sea_orm_audit::History::new()
        .entity_type("db_posts")
        .count(db)
        .await
        .unwrap();
    assert_eq!(count, 3);
    let now = sea_orm_audit::timeline::state_at(db, "db_posts", "1", chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(now, None, "deleted by now");
    let restored =
        sea_orm_audit::timeline::restore_with::<db_post::ActiveModel, _, _>(db, "1", |am| {
            am.secret = Set(None);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(restored.title, "Hello, audit");
    assert_eq!(restored.views, 3);
    let database = entries(&t, "db_posts").await;
    assert_eq!(
        database.len(),
        4,
        "the restore is logged once, by the trigger"
    );
    assert_eq!(database[3].1, "create");
    assert_verified(&t).await;
    t.finish().await;
}

#[tokio::test]
async fn every_write_path_is_logged_exactly_once() {
    let t = setup().await;
    let db = &t.db;
    let one = draft("one").insert(db).await.unwrap(); // 1: active model
    db_post::Entity::insert(draft("two"))
        .exec(db)
        .await
        .unwrap(); // 2: Entity::insert
    db_post::Entity::insert_many([draft("three"), draft("four")])
        .exec(db)
        .await
        .unwrap(); // 3, 4
    db_post::Entity::update_many()
        .col_expr(
            db_post::Column::Views,
            Expr::col(db_post::Column::Views).add(1),
        )
        .filter(db_post::Column::Id.is_in([2, 3]))
        .exec(db)
        .await
        .unwrap(); // update 2, 3
    // Sets values equal to the stored ones: no entry.
    db_post::Entity::update_many()
        .col_expr(db_post::Column::Body, Expr::value("body"))
        .filter(db_post::Column::Id.is_in([1, 4]))
        .exec(db)
        .await
        .unwrap();
    db.execute_unprepared("UPDATE db_posts SET body = 'raw' WHERE id = 4")
        .await
        .unwrap(); // update 4
    db_post::Entity::delete_by_id(3).exec(db).await.unwrap(); // delete 3
    db_post::Entity::delete_many()
        .filter(db_post::Column::Id.eq(4))
        .exec(db)
        .await
        .unwrap(); // delete 4
    // Another program: a connection of its own, no SeaORM, no context.
    let other = Database::connect(&t.url).await.unwrap();
    other
        .execute_unprepared("UPDATE db_posts SET title = 'psql' WHERE id = 1")
        .await
        .unwrap(); // update 1
    other.close().await.unwrap();
    // Entries of paths the library did not see: sealed in the trigger on PostgreSQL; waiting
    // for `seal` on SQLite and MySQL, which verify says distinctly.
    let report = verify(db).await.unwrap();
    if t.backend() != DbBackend::Postgres {
        assert_eq!(report.problems.len(), 9, "{:?}", report.problems);
        assert!(
            report
                .problems
                .iter()
                .all(|p| p.kind == ProblemKind::Unsealed),
            "{:?}",
            report.problems
        );
    } else {
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
    let mut am = one.into_active_model();
    am.views = Set(9);
    am.update(db).await.unwrap(); // update 1 (its hook seals everything before it, too)
    assert!(verify(db).await.unwrap().problems.is_empty());

    let got: Vec<(String, String)> = entries(&t, "db_posts")
        .await
        .into_iter()
        .map(|(id, action, _)| (id, action))
        .collect();
    let want: Vec<(String, String)> = [
        ("1", "create"),
        ("2", "create"),
        ("3", "create"),
        ("4", "create"),
        ("2", "update"),
        ("3", "update"),
        ("4", "update"),
        ("3", "delete"),
        ("4", "delete"),
        ("1", "update"),
        ("1", "update"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    // update_many touches 2 and 3 in an order the database picks.
    let (mut got_sorted, mut want_sorted) = (got.clone(), want.clone());
    got_sorted[4..6].sort();
    want_sorted[4..6].sort();
    assert_eq!(got_sorted, want_sorted, "{got:?}");

    let all = entries(&t, "db_posts").await;
    assert_eq!(
        all[1].2,
        json!({"old_value": {}, "new_value": {"id": 2, "title": "two", "body": "body",
            "views": 0, "secret": "***FILTERED***"}})
    );
    assert_eq!(
        all[6].2,
        json!({"old_value": {"body": "body"}, "new_value": {"body": "raw"}})
    );
    assert_eq!(
        all[8].2,
        json!({"old_value": {"id": 4, "title": "four", "body": "raw", "views": 0,
            "secret": "***FILTERED***"}, "new_value": {}})
    );
    assert_eq!(
        all[9].2,
        json!({"old_value": {"title": "one"}, "new_value": {"title": "psql"}})
    );
    // The masked value is in no row, in any column.
    for row in common::all_logs(db).await {
        assert!(!format!("{row:?}").contains("hunter2"), "{row:?}");
    }
    // History readers work on the trigger's rows.
    let one = db_post::Entity::find_by_id(1)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let history = logs_for(db, &one).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].changes.as_ref().unwrap().new_value["views"], 9);
    assert_verified(&t).await;
    t.finish().await;
}

/// The same writes, each path, to an entity sealed on write and to one sealed later.
macro_rules! same_writes {
    ($db:expr, $entity:ident, $table:literal) => {{
        let db = $db;
        let draft = |title: &str| $entity::ActiveModel {
            title: Set(title.into()),
            body: Set("body".into()),
            views: Set(0),
            secret: Set(Some("hunter2".into())),
            ..Default::default()
        };
        let one = draft("one").insert(db).await.unwrap();
        $entity::Entity::insert_many([draft("two"), draft("three")])
            .exec(db)
            .await
            .unwrap();
        let mut am = one.into_active_model();
        am.views = Set(5);
        am.update(db).await.unwrap();
        AuditContext::new()
            .actor("alice")
            .scope(capture_db::transaction_unsealed(db, |txn| {
                Box::pin(async move {
                    $entity::Entity::update_many()
                        .col_expr($entity::Column::Views, Expr::value(7))
                        .filter($entity::Column::Id.eq(2))
                        .exec(txn)
                        .await?;
                    $entity::ActiveModel {
                        id: Set(3),
                        secret: Set(Some("swordfish".into())),
                        ..Default::default()
                    }
                    .update(txn)
                    .await?;
                    Ok::<_, DbErr>(())
                })
            }))
            .await
            .unwrap();
        db.execute_unprepared(concat!("UPDATE ", $table, " SET body = 'raw' WHERE id = 2"))
            .await
            .unwrap();
        $entity::Entity::delete_by_id(1).exec(db).await.unwrap();
    }};
}

/// `seal = "deferred"`: the same entries as a capture sealed on write, with the same actors and
/// no masked value, left unsealed by every write path (PostgreSQL's trigger included) until a
/// seal, after which `verify` is clean; a `Sealer` seals them on its own.
#[tokio::test]
async fn a_deferred_seal_writes_the_same_entries_and_leaves_them_to_the_seal() {
    let t = setup().await;
    let db = &t.db;
    common::create_table(db, db_deferred_post::Entity).await;
    capture_db::install::<db_deferred_post::Model, _>(db)
        .await
        .unwrap();
    assert_eq!(
        capture_db::check::<db_deferred_post::Model, _>(db)
            .await
            .unwrap(),
        vec![]
    );
    capture_db::seal(db).await.unwrap();

    same_writes!(db, db_post, "db_posts");
    capture_db::seal(db).await.unwrap();
    assert!(verify(db).await.unwrap().problems.is_empty());
    same_writes!(db, db_deferred_post, "db_deferred_posts");

    let on_write = common::all_logs(db)
        .await
        .into_iter()
        .filter(|r| r.entity_type == "db_posts")
        .map(|r| (r.object_id, r.action, r.actor, r.changes))
        .collect::<Vec<_>>();
    let deferred = common::all_logs(db)
        .await
        .into_iter()
        .filter(|r| r.entity_type == "db_deferred_posts")
        .collect::<Vec<_>>();
    assert_eq!(deferred.len(), 8, "{deferred:?}");
    assert_eq!(
        deferred
            .iter()
            .map(|r| (
                r.object_id.clone(),
                r.action.clone(),
                r.actor.clone(),
                r.changes.clone()
            ))
            .collect::<Vec<_>>(),
        on_write
    );
    assert!(deferred.iter().any(|r| r.actor.as_deref() == Some("alice")));
    for row in &deferred {
        assert_eq!(row.hash.as_deref(), Some("unsealed"), "{row:?}");
        let text = format!("{row:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("swordfish"),
            "{text}"
        );
    }
    // Until the seal, verify names each of them, and only them.
    let report = verify(db).await.unwrap();
    assert_eq!(report.problems.len(), 8, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Unsealed && p.entity_type == "db_deferred_posts"),
        "{:?}",
        report.problems
    );

    // Switched to a seal on write, then to hook mode, while those entries wait: an entry whose
    // predecessor waits for the seal waits too (it cannot link to a hash not computed yet),
    // and the seal links both.
    capture_db::install::<db_deferred_post_on_write::Model, _>(db)
        .await
        .unwrap();
    db.execute_unprepared("UPDATE db_deferred_posts SET title = 'on write' WHERE id = 2")
        .await
        .unwrap();
    capture_db::uninstall::<db_deferred_post_on_write::Model, _>(db)
        .await
        .unwrap();
    db_deferred_post_hooks::ActiveModel {
        id: Set(3),
        views: Set(11),
        ..Default::default()
    }
    .update(db)
    .await
    .unwrap();
    let report = verify(db).await.unwrap();
    assert_eq!(report.problems.len(), 10, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Unsealed),
        "{:?}",
        report.problems
    );
    assert_eq!(capture_db::seal(db).await.unwrap(), 10);
    assert!(verify(db).await.unwrap().problems.is_empty());
    capture_db::install::<db_deferred_post::Model, _>(db)
        .await
        .unwrap();

    // A Sealer does it on a timer.
    let sealer = capture_db::Sealer::spawn(db.clone(), std::time::Duration::from_millis(5));
    db.execute_unprepared("UPDATE db_deferred_posts SET views = views + 1")
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while sealer.sealed() < 2 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the sealer sealed {} of 2 entries",
            sealer.sealed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(sealer.failures(), 0);
    assert_eq!(sealer.stop().await.unwrap(), 0, "nothing left to seal");
    assert!(verify(db).await.unwrap().problems.is_empty());

    // `stop` seals what is left: a Sealer whose first tick sealed two entries, and whose next
    // is an hour away, is stopped with two more waiting.
    db.execute_unprepared("UPDATE db_deferred_posts SET views = views + 1")
        .await
        .unwrap();
    let sealer = capture_db::Sealer::spawn(db.clone(), std::time::Duration::from_secs(3600));
    let start = std::time::Instant::now();
    while sealer.sealed() < 2 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    db.execute_unprepared("UPDATE db_deferred_posts SET views = views + 1")
        .await
        .unwrap();
    assert_eq!(sealer.sealed(), 2);
    assert_eq!(sealer.stop().await.unwrap(), 2, "stop seals what is left");
    assert!(verify(db).await.unwrap().problems.is_empty());

    // Inside a transaction MySQL's seal refuses (its snapshot could hide an entry's
    // predecessor); the others seal there, with the transaction.
    db.execute_unprepared("UPDATE db_deferred_posts SET views = views + 1")
        .await
        .unwrap();
    let txn = sea_orm::TransactionTrait::begin(db).await.unwrap();
    let inside = capture_db::seal(&txn).await;
    txn.commit().await.unwrap();
    if t.backend() == sea_orm::DbBackend::MySql {
        let error = inside.expect_err("MySQL's seal ran inside a transaction");
        assert!(
            error.to_string().contains("outside a transaction"),
            "{error}"
        );
        assert_eq!(capture_db::seal(db).await.unwrap(), 2);
    } else {
        assert_eq!(inside.unwrap(), 2);
    }
    assert!(verify(db).await.unwrap().problems.is_empty());
    t.finish().await;
}

/// The shared every-type sample with the fields whose awkward values this file checks: every
/// escape the trigger's JSON text must match, every byte, fractions of seconds, and floats
/// whose text differs between serde_json and the databases.
fn kitchen_sample() -> kitchen::ActiveModel {
    let mut am = common::kitchen_sample(5000);
    am.unicode = Set("Zoë ✓ 漢字 🦀 \u{202e}rtl \"q\" \\ \u{1f} \u{7f} \u{2028}".into());
    am.blob = Set((0..=255).collect());
    am.doc = Set(
        json!({"k": [1, 2.5, "three", null, {"deep": true, "b": 1e-7}], "ü": "é",
        "B": 1e20, "a": 0.30000000000000004, "z": -0.0, "big": u64::MAX}),
    );
    am.clock = Set(chrono::NaiveTime::from_hms_micro_opt(20, 17, 40, 500_000).unwrap());
    am.naive = Set(chrono::NaiveDate::from_ymd_opt(2099, 1, 2)
        .unwrap()
        .and_hms_micro_opt(3, 4, 5, 123_456)
        .unwrap());
    am
}

/// The same kitchen values into the database-mode twin.
fn twin(am: &kitchen::ActiveModel) -> db_kitchen::ActiveModel {
    use sea_orm::{IdenStatic, Iterable};
    let mut out = <db_kitchen::ActiveModel as ActiveModelTrait>::default();
    for (from, to) in kitchen::Column::iter().zip(db_kitchen::Column::iter()) {
        assert_eq!(from.as_str(), to.as_str());
        if let sea_orm::ActiveValue::Set(v) = am.get(from) {
            out.set(to, v);
        }
    }
    out
}

#[tokio::test]
async fn every_column_type_is_encoded_as_the_hooks_encode_it() {
    let t = setup().await;
    if t.backend() != DbBackend::Postgres {
        t.finish().await; // refused on SQLite (see `setup`)
        return;
    }
    let db = &t.db;
    let sample = kitchen_sample();
    let hooked = sample.clone().insert(db).await.unwrap();
    twin(&sample).insert(db).await.unwrap();
    let floats = [
        1.0,
        1e20,
        1e-7,
        0.1 + 0.2,
        123.456,
        1e15,
        1e16,
        -2.5,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        1.5e300,
        -0.0,
        0.00001,
        123_456_789_012_345_680.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        2.0,
    ];
    let mut am = hooked.into_active_model();
    for (i, f) in floats.iter().enumerate() {
        am.ratio = Set(*f);
        #[allow(clippy::cast_possible_truncation)]
        let small = (*f as f32) / 3.0;
        am.small = Set(small);
        am.maybe_ratio = Set((i % 2 == 0).then_some(f / 7.0));
        am.doc = Set(json!({"f": f.is_finite().then_some(*f), "n": i, "s": format!("{f}")}));
        am.flag = Set(i % 2 == 0);
        am.clock = Set(chrono::NaiveTime::from_hms_micro_opt(1, 2, 3, (i as u32) * 1000).unwrap());
        am.amount = Set(rust_decimal::Decimal::new(i as i64 * 1001 - 5, 3));
        am.mood = Set(if i % 2 == 0 {
            Mood::Grumpy
        } else {
            Mood::Happy
        });
        am.maybe_mood = Set((i % 3 == 0).then_some(Mood::Happy));
        am.blob = Set(vec![i as u8; i]);
        let stamp = chrono::DateTime::parse_from_rfc3339("2045-01-01T00:00:00.25-08:00").unwrap()
            + chrono::Duration::microseconds(i as i64 * 7);
        am.stamp = Set(stamp);
        am.utc = Set(stamp.with_timezone(&chrono::Utc));
        am.naive = Set(stamp.naive_utc());
        am.maybe_text = Set((i % 2 == 1).then(|| format!("text {i}")));
        let saved = am.clone().update(db).await.unwrap();
        let mut twin_am = twin(&am);
        twin_am.id = Set(saved.id);
        twin_am.update(db).await.unwrap();
        am = saved.into_active_model();
    }
    am.delete(db).await.unwrap();
    db_kitchen::Entity::delete_by_id(1).exec(db).await.unwrap();
    let hooks = entries(&t, "kitchen").await;
    let database = entries(&t, "db_kitchen").await;
    assert_eq!(hooks.len(), floats.len() + 2);
    for (h, d) in hooks.iter().zip(&database) {
        assert_eq!(h, d);
    }
    assert_eq!(hooks.len(), database.len());
    // The hashes hold for every value, the trigger's and the hooks' (whole floats of 1e16 and
    // more come back from jsonb as integers: the canonical text writes them so).
    for entity_type in ["db_kitchen", "kitchen"] {
        let report = sea_orm_audit::verify_object(db, entity_type, "1")
            .await
            .unwrap();
        assert!(
            report.problems.is_empty(),
            "{entity_type}: {:?}",
            report.problems
        );
        assert_eq!(report.checked as usize, floats.len() + 2);
    }
    t.finish().await;
}

#[tokio::test]
async fn composite_keys_are_json_arrays() {
    let t = setup().await;
    db_translation::ActiveModel {
        post_id: Set(7),
        lang: Set("en\"x".into()),
        text_body: Set("secret text".into()),
    }
    .insert(&t.db)
    .await
    .unwrap();
    t.db.execute_unprepared("DELETE FROM db_translations")
        .await
        .unwrap();
    let got = entries(&t, "db_translations").await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, r#"[7,"en\"x"]"#);
    assert_eq!(
        got[0].0,
        sea_orm_audit::object_id([7.into(), "en\"x".into()])
    );
    assert_eq!(got[1].2["old_value"]["text_body"], "***FILTERED***");
    assert_verified(&t).await;
    t.finish().await;
}

#[tokio::test]
async fn the_context_reaches_only_writes_it_belongs_to() {
    let t = setup().await;
    let db = &t.db;
    let alice = AuditContext::new()
        .actor("alice")
        .tool("cms")
        .with("request_id", "r-1");
    // 1: any write path inside `capture_db::transaction` carries the context.
    alice
        .clone()
        .scope(capture_db::transaction(db, |txn| {
            Box::pin(async move {
                draft("a").insert(txn).await?;
                txn.execute_unprepared("UPDATE db_posts SET views = 1")
                    .await?;
                Ok::<_, DbErr>(())
            })
        }))
        .await
        .unwrap();
    // 2: an active-model write in the caller's own transaction (the hook sets the context).
    alice
        .clone()
        .scope(async {
            let txn = sea_orm::TransactionTrait::begin(db).await?;
            draft("b").insert(&txn).await?;
            txn.commit().await
        })
        .await
        .unwrap();
    // 3: inside the scope but outside any transaction: no actor (nothing can show the
    // statement belongs to the context), not a stale one.
    alice
        .clone()
        .scope(async { draft("c").insert(db).await })
        .await
        .unwrap();
    // 4: the same pool afterwards, outside any scope: every pooled connection was used above.
    for _ in 0..8 {
        db.execute_unprepared("UPDATE db_posts SET views = views + 1 WHERE id = 1")
            .await
            .unwrap();
    }
    // 5: a transaction holding alice's context, committed after her scope ended;
    // 6: another connection writing while that transaction is open: no actor.
    let txn = alice
        .clone()
        .scope(async {
            let txn = sea_orm::TransactionTrait::begin(db).await.unwrap();
            draft("d").insert(&txn).await.unwrap();
            txn
        })
        .await;
    let other = Database::connect(&t.url).await.unwrap();
    let sqlite = t.backend() == DbBackend::Sqlite;
    let context_row = t.backend() != DbBackend::Postgres;
    let open = if sqlite {
        // SQLite admits one writer: the other connection writes once the transaction is done.
        txn.commit().await.unwrap();
        None
    } else {
        Some(txn)
    };
    other
        .execute_unprepared("UPDATE db_posts SET views = 100 WHERE id = 2")
        .await
        .unwrap();
    if let Some(txn) = open {
        txn.commit().await.unwrap();
    }
    other.close().await.unwrap();
    // 7: a nested scope overrides inside `capture_db::transaction` for active-model writes.
    alice
        .clone()
        .scope(capture_db::transaction(db, |txn| {
            Box::pin(async move {
                AuditContext::new()
                    .actor("bob")
                    .scope(draft("e").insert(txn))
                    .await?;
                Ok::<_, DbErr>(())
            })
        }))
        .await
        .unwrap();

    let rows: Vec<audit_log::Model> = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq("db_posts"))
        .order_by_asc(audit_log::Column::Id)
        .all(db)
        .await
        .unwrap();
    let who: Vec<(String, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.object_id.clone(), r.action.clone(), r.actor.clone()))
        .collect();
    let alice_s = Some("alice".to_owned());
    // In the caller's own transaction, the hook hands the context over on PostgreSQL only:
    // the context row of SQLite and MySQL exists only inside `capture_db::transaction`.
    let own_txn = if context_row { None } else { alice_s.clone() };
    let mut want = vec![
        ("1".to_owned(), "create".to_owned(), alice_s.clone()),
        ("1".to_owned(), "update".to_owned(), alice_s.clone()),
        ("2".to_owned(), "create".to_owned(), own_txn.clone()),
        ("3".to_owned(), "create".to_owned(), None),
    ];
    want.extend((0..8).map(|_| ("1".to_owned(), "update".to_owned(), None)));
    want.push(("4".to_owned(), "create".to_owned(), own_txn));
    want.push(("2".to_owned(), "update".to_owned(), None));
    want.push(("5".to_owned(), "create".to_owned(), Some("bob".to_owned())));
    // Entry 4's create and other's update may commit in either order; ids follow INSERT order.
    let (mut a, mut b) = (who.clone(), want.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b, "{who:?}");
    assert_eq!(rows[0].tool.as_deref(), Some("cms"));
    assert_eq!(rows[0].data, Some(json!({"request_id": "r-1"})));
    assert_eq!(rows[3].tool, None);
    assert_eq!(rows[3].data, None);
    if context_row {
        let left = db
            .query_one_raw(sea_orm::Statement::from_string(
                t.backend(),
                "SELECT count(*) AS n FROM sea_orm_audit_context",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(left.try_get::<i64>("", "n").unwrap(), 0, "never committed");
    }
    assert_verified(&t).await;
    t.finish().await;
}

#[tokio::test]
async fn check_reports_drift() {
    let t = setup().await;
    let db = &t.db;
    assert_eq!(
        capture_db::check::<db_post::Model, _>(db).await.unwrap(),
        vec![]
    );
    assert_eq!(
        capture_db::check::<db_post_v2::Model, _>(db).await.unwrap(),
        vec![Drift::EntityChanged]
    );
    db.execute_unprepared("ALTER TABLE db_posts ADD COLUMN extra text")
        .await
        .unwrap();
    assert_eq!(
        capture_db::check::<db_post::Model, _>(db).await.unwrap(),
        vec![Drift::UncapturedColumns(vec!["extra".into()])]
    );
    capture_db::uninstall::<db_post::Model, _>(db)
        .await
        .unwrap();
    assert_eq!(
        capture_db::check::<db_post::Model, _>(db).await.unwrap(),
        vec![Drift::NotInstalled]
    );
    draft("unlogged").insert(db).await.unwrap();
    assert!(entries(&t, "db_posts").await.is_empty());
    // Installing again (the new policy) captures again, with the new mask.
    capture_db::install::<db_post_v2::Model, _>(db)
        .await
        .unwrap();
    assert_eq!(
        capture_db::check::<db_post_v2::Model, _>(db).await.unwrap(),
        vec![Drift::UncapturedColumns(vec!["extra".into()])]
    );
    db.execute_unprepared("UPDATE db_posts SET body = 'new'")
        .await
        .unwrap();
    let got = entries(&t, "db_posts").await;
    assert_eq!(
        got[0].2,
        json!({"old_value": {"body": "***FILTERED***"}, "new_value": {"body": "***FILTERED***"}})
    );
    // A table left with only some of its triggers (a CREATE that failed halfway) is reported.
    let partial = match t.backend() {
        DbBackend::Postgres => "DROP TRIGGER sea_orm_audit_truncate ON db_posts",
        _ => "DROP TRIGGER sea_orm_audit_db_posts_update",
    };
    db.execute_unprepared(partial).await.unwrap();
    assert!(
        !capture_db::check::<db_post_v2::Model, _>(db)
            .await
            .unwrap()
            .is_empty()
    );
    t.finish().await;
}

#[tokio::test]
async fn concurrent_writers_keep_every_chain_linear() {
    let t = setup().await;
    let db = &t.db;
    for i in 0..4 {
        draft(&format!("p{i}")).insert(db).await.unwrap();
    }
    let mut tasks = Vec::new();
    for task in 0..16 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..25 {
                let id = (task + n) % 4 + 1;
                let sql = format!("UPDATE db_posts SET views = views + 1 WHERE id = {id}");
                if n % 2 == 0 {
                    db.execute_unprepared(&sql).await.unwrap();
                } else {
                    let actor = format!("t{task}");
                    AuditContext::new()
                        .actor(actor)
                        .scope(capture_db::transaction(&db, |txn| {
                            Box::pin(async move {
                                txn.execute_unprepared(&sql).await?;
                                Ok::<_, DbErr>(())
                            })
                        }))
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let all = entries(&t, "db_posts").await;
    assert_eq!(all.len(), 4 + 16 * 25);
    let total: i32 = db_post::Entity::find()
        .all(db)
        .await
        .unwrap()
        .iter()
        .map(|p| p.views)
        .sum();
    assert_eq!(total, 16 * 25);
    // Each entry's old views is the previous entry's new views: no lost or forked update.
    for id in 1..=4 {
        let views: Vec<(i64, i64)> = all
            .iter()
            .filter(|(o, a, _)| o == &id.to_string() && a == "update")
            .map(|(_, _, c)| {
                (
                    c["old_value"]["views"].as_i64().unwrap(),
                    c["new_value"]["views"].as_i64().unwrap(),
                )
            })
            .collect();
        let seen: HashSet<i64> = views.iter().map(|v| v.0).collect();
        assert_eq!(seen.len(), views.len());
        for pair in views.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
        }
    }
    assert_verified(&t).await;
    t.finish().await;
}

#[tokio::test]
async fn unsupported_column_types_are_refused_by_name() {
    mod local {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
        #[sea_orm(table_name = "db_local")]
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
    let err = capture_db::install::<local::Model, _>(&t.db)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("db_local.at"), "{text}");
    t.finish().await;
}

/// The trigger's float text is what `verify` reads back: the stored jsonb, parsed by
/// serde_json and printed again, gives the same text, and it round-trips to the same f64.
#[tokio::test]
async fn float_text_matches_serde_json_after_the_round_trip() {
    let t = setup().await;
    if t.backend() != DbBackend::Postgres {
        t.finish().await; // SQLite's floats: `scalar_columns_...`
        return;
    }
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut values = vec![
        1.0,
        1e15,
        1e16,
        1e17,
        1.8446744073709552e19,
        -9.223372036854776e18,
    ];
    values.extend((0..3000).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Random bit patterns cover every exponent; scaled ones the common magnitudes.
        let f = f64::from_bits(state);
        if state.is_multiple_of(2) {
            f
        } else {
            (state % 1_000_000) as f64 / 1000.0 * f64::powi(10.0, (state % 41) as i32 - 20)
        }
    }));
    values.retain(|f| f.is_finite() && *f != 0.0);
    let list: Vec<String> = values.iter().map(|f| format!("{f:e}")).collect();
    let rows =
        t.db.query_all_raw(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT x::text AS input, public.sea_orm_audit_f64(x) AS text, \
                 (public.sea_orm_audit_f64(x))::jsonb::text AS stored \
                 FROM unnest('{{{}}}'::float8[]) AS x",
                list.join(",")
            ),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), values.len());
    for (row, f) in rows.iter().zip(&values) {
        let text: String = row.try_get("", "text").unwrap();
        let stored: String = row.try_get("", "stored").unwrap();
        let read_back: Json = serde_json::from_str(&stored).unwrap();
        assert_eq!(read_back.to_string(), text, "{f:e}");
        assert_eq!(text.parse::<f64>().unwrap(), *f, "{f:e}: {text}");
    }
    t.finish().await;
}

/// Upserts and `update_without_returning`, which no hook sees, and `bulk::*`, which would log
/// a hook-mode entity themselves: each write logged once, by the trigger.
#[tokio::test]
async fn upserts_and_bulk_helpers_are_logged_once() {
    use sea_orm::sea_query::OnConflict;
    let t = setup().await;
    let db = &t.db;
    let one = draft("one").insert(db).await.unwrap(); // create 1
    let mut conflicting = draft("one");
    conflicting.body = Set("upserted".into());
    db_post::Entity::insert(conflicting)
        .on_conflict(
            OnConflict::column(db_post::Column::Title)
                .update_column(db_post::Column::Body)
                .to_owned(),
        )
        .exec(db)
        .await
        .unwrap(); // update 1
    let mut am = one.into_active_model();
    am.views = Set(5);
    am.update_without_returning(db).await.unwrap(); // update 1
    // PostgreSQL's upsert used up id 2 of the sequence on its conflict.
    let two = sea_orm_audit::bulk::insert_many(db, vec![draft("two")])
        .await
        .unwrap()[0]
        .id; // create
    sea_orm_audit::bulk::update_many::<db_post::Entity, _>(
        db,
        sea_orm::Condition::all().add(db_post::Column::Id.eq(two)),
        db_post::ActiveModel {
            views: Set(7),
            ..Default::default()
        },
    )
    .await
    .unwrap(); // update 3
    sea_orm_audit::bulk::delete_by_id::<db_post::Entity, _>(db, two)
        .await
        .unwrap(); // delete 3
    let got = entries(&t, "db_posts").await;
    let two = two.to_string();
    let shape: Vec<(&str, &str)> = got
        .iter()
        .map(|(o, a, _)| (o.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            ("1", "create"),
            ("1", "update"),
            ("1", "update"),
            (two.as_str(), "create"),
            (two.as_str(), "update"),
            (two.as_str(), "delete"),
        ]
    );
    assert_eq!(
        got[1].2,
        json!({"old_value": {"body": "body"}, "new_value": {"body": "upserted"}})
    );
    assert_eq!(
        got[2].2,
        json!({"old_value": {"views": 0}, "new_value": {"views": 5}})
    );
    assert_verified(&t).await;
    t.finish().await;
}

/// The columns SQLite's capture supports (and PostgreSQL's), written through a hook-mode and a
/// database-mode twin: the same diffs, floats included.
#[tokio::test]
async fn scalar_columns_are_encoded_as_the_hooks_encode_them() {
    let t = setup().await;
    let db = &t.db;
    let floats = [
        1.0,
        1e20,
        1e-7,
        0.1 + 0.2,
        1e16,
        -2.5,
        5e-324,
        f64::MAX,
        1.0 / 3.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        123_456_789.125,
    ];
    // MySQL stores no infinities (the write itself fails), in FLOAT columns neither.
    #[allow(clippy::cast_possible_truncation)]
    let floats: Vec<f64> = floats
        .into_iter()
        .filter(|f| t.backend() != DbBackend::MySql || (*f as f32).is_finite())
        .collect();
    for (i, f) in floats.iter().enumerate() {
        #[allow(clippy::cast_possible_truncation)]
        let small = (*f as f32) / 3.0;
        let doc = json!({"f": f.is_finite().then_some(*f), "i": i, "s": format!("{f}")});
        let maybe = (i % 2 == 0).then_some(f / 7.0);
        let note = (i % 3 == 0).then(|| format!("note \"{i}\" \u{1f}"));
        let flag = i % 2 == 1;
        let count = i16::try_from(i).unwrap() - 3;
        if i == 0 {
            measure::ActiveModel {
                id: NotSet,
                ratio: Set(*f),
                small: Set(small),
                maybe: Set(maybe),
                flag: Set(flag),
                doc: Set(doc.clone()),
                note: Set(note.clone()),
                count: Set(count),
            }
            .insert(db)
            .await
            .unwrap();
            db_measure::ActiveModel {
                id: NotSet,
                ratio: Set(*f),
                small: Set(small),
                maybe: Set(maybe),
                flag: Set(flag),
                doc: Set(doc),
                note: Set(note),
                count: Set(count),
            }
            .insert(db)
            .await
            .unwrap();
        } else {
            measure::ActiveModel {
                id: Set(1),
                ratio: Set(*f),
                small: Set(small),
                maybe: Set(maybe),
                flag: Set(flag),
                doc: Set(doc.clone()),
                note: Set(note.clone()),
                count: Set(count),
            }
            .update(db)
            .await
            .unwrap();
            // The database-mode twin through raw SQL's path: update_many.
            db_measure::Entity::update_many()
                .set(db_measure::ActiveModel {
                    ratio: Set(*f),
                    small: Set(small),
                    maybe: Set(maybe),
                    flag: Set(flag),
                    doc: Set(doc),
                    note: Set(note),
                    count: Set(count),
                    ..Default::default()
                })
                .filter(db_measure::Column::Id.eq(1))
                .exec(db)
                .await
                .unwrap();
        }
    }
    measure::Entity::find_by_id(1)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .delete(db)
        .await
        .unwrap();
    db_measure::Entity::delete_by_id(1).exec(db).await.unwrap();
    let hooks = entries(&t, "measures").await;
    let database = entries(&t, "db_measures").await;
    assert_eq!(hooks.len(), floats.len() + 1);
    for (h, d) in hooks.iter().zip(&database) {
        assert_eq!(h, d);
    }
    assert_eq!(hooks.len(), database.len());
    capture_db::seal(db).await.unwrap();
    let report = sea_orm_audit::verify_object(db, "db_measures", "1")
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    t.finish().await;
}

/// Inside `capture_db::transaction` the hooks skip handing the context over while the
/// transaction still holds the one it set; a context set in between (a write under another
/// actor in a savepoint, a nested `capture_db::transaction`) stays in effect after the
/// savepoint is released, so the next write must not take it for the transaction's own; a
/// nested `capture_db::transaction` gives the enclosing one its context back when it ends.
#[tokio::test]
async fn a_context_set_in_a_savepoint_is_not_left_to_later_writes() {
    let t = setup().await;
    let db = &t.db;
    AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(db, |txn| {
            Box::pin(async move {
                draft("a").insert(txn).await?;
                let savepoint = sea_orm::TransactionTrait::begin(txn).await?;
                AuditContext::new()
                    .actor("bob")
                    .scope(draft("b").insert(&savepoint))
                    .await?;
                savepoint.commit().await?;
                draft("c").insert(txn).await?;
                AuditContext::new()
                    .actor("carol")
                    .scope(capture_db::transaction(txn, |inner| {
                        Box::pin(async move {
                            draft("d").insert(inner).await?;
                            Ok::<_, DbErr>(())
                        })
                    }))
                    .await?;
                // One that fails rolls back to its savepoint, its context with it.
                let failed = AuditContext::new()
                    .actor("dave")
                    .scope(capture_db::transaction(txn, |inner| {
                        Box::pin(async move {
                            draft("f").insert(inner).await?;
                            Err::<(), _>(DbErr::Custom("given up".into()))
                        })
                    }))
                    .await;
                assert!(failed.is_err());
                // One begun on a savepoint opened here, not through `txn` itself.
                let savepoint = sea_orm::TransactionTrait::begin(txn).await?;
                AuditContext::new()
                    .actor("erin")
                    .scope(capture_db::transaction(&savepoint, |inner| {
                        Box::pin(async move {
                            draft("g").insert(inner).await?;
                            Ok::<_, DbErr>(())
                        })
                    }))
                    .await?;
                savepoint
                    .execute_unprepared("UPDATE db_posts SET body = 'raw' WHERE title = 'c'")
                    .await?;
                savepoint.commit().await?;
                // The nested `transaction`s gave the enclosing one its context back: a raw
                // write (no hook sets anything) carries alice's, never carol's, dave's or
                // erin's.
                txn.execute_unprepared("UPDATE db_posts SET body = 'raw' WHERE title = 'a'")
                    .await?;
                draft("e").insert(txn).await?;
                Ok::<_, DbErr>(())
            })
        }))
        .await
        .unwrap();
    let actors: Vec<Option<String>> = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq("db_posts"))
        .order_by_asc(audit_log::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.actor)
        .collect();
    let who = |a: &str| Some(a.to_owned());
    assert_eq!(
        actors,
        vec![
            who("alice"),
            who("bob"),
            who("alice"),
            who("carol"),
            who("erin"),
            who("alice"),
            who("alice"),
            who("alice")
        ]
    );
    assert_verified(&t).await;
    t.finish().await;
}

/// A masked value never reaches the SQLite file, in either mode: written, changed and deleted,
/// with `secure_delete` so that the deleted rows of the tables themselves leave no bytes, the
/// WAL checkpointed, the file (and what is left of its WAL) holds none of the secrets, while a
/// logged value written the same way is there (the scan can find what it looks for).
#[tokio::test]
async fn masked_values_never_reach_the_sqlite_file() {
    let t = setup().await;
    if t.backend() != DbBackend::Sqlite {
        return t.finish().await;
    }
    let path = t
        .url
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
        .unwrap()
        .to_owned();
    // One connection, so that its `secure_delete` covers every write below.
    let mut options = sea_orm::ConnectOptions::new(t.url.clone());
    options.max_connections(1).sqlx_logging(false);
    let db = Database::connect(options).await.unwrap();
    db.execute_unprepared("PRAGMA secure_delete = ON; PRAGMA busy_timeout = 10000;")
        .await
        .unwrap();
    let secrets = ["Sekrit-a-7d1f", "Sekrit-b-93c2", "Sekrit-c-e04b"];
    let visible = "Visible-title-5b8e";
    for (i, mode) in ["hooks", "database"].into_iter().enumerate() {
        let id = match mode {
            "hooks" => {
                post::ActiveModel {
                    title: Set(format!("{visible}-{i}")),
                    body: Set("b".into()),
                    views: Set(0),
                    secret: Set(Some(secrets[0].into())),
                    ..Default::default()
                }
                .insert(&db)
                .await
                .unwrap()
                .id
            }
            _ => {
                let mut am = draft(&format!("{visible}-{i}"));
                am.secret = Set(Some(secrets[0].into()));
                am.insert(&db).await.unwrap().id
            }
        };
        let table = if mode == "hooks" { "posts" } else { "db_posts" };
        for secret in &secrets[1..] {
            if mode == "hooks" {
                post::ActiveModel {
                    id: Set(id),
                    secret: Set(Some((*secret).into())),
                    ..Default::default()
                }
                .update(&db)
                .await
                .unwrap();
            } else {
                db.execute_unprepared(&format!(
                    "UPDATE {table} SET secret = '{secret}' WHERE id = {id}"
                ))
                .await
                .unwrap();
            }
        }
        if mode == "hooks" {
            post::Entity::find_by_id(id)
                .one(&db)
                .await
                .unwrap()
                .unwrap()
                .delete(&db)
                .await
                .unwrap();
        } else {
            db.execute_unprepared(&format!("DELETE FROM {table} WHERE id = {id}"))
                .await
                .unwrap();
        }
    }
    capture_db::seal(&db).await.unwrap();
    let logged = common::all_logs(&db).await;
    let filtered = logged
        .iter()
        .filter(|r| format!("{:?}", r.changes).contains("***FILTERED***"))
        .count();
    assert!(
        filtered >= 8,
        "both modes logged the masked column: {filtered}"
    );
    db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE);")
        .await
        .unwrap();
    db.close().await.unwrap();
    t.db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE);")
        .await
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
        bytes.extend(wal);
    }
    let holds = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(holds(visible), "the scan finds a logged value");
    for secret in secrets {
        assert!(!holds(secret), "{secret} is in the SQLite file");
    }
    t.finish().await;
}

/// Replacing a table's triggers through a pool whose connections each hold the schema as it
/// was before (SQLite caches it per connection and checks it only when a statement runs: a
/// `CREATE TRIGGER` prepared on a connection that has not run anything since another
/// connection's `DROP` saw the old trigger, "already exists"). Every round first has every
/// pooled connection run a statement, then installs, uninstalls and installs again.
#[tokio::test]
async fn installing_again_through_a_pool_works_whatever_connection_runs_it() {
    let t = setup().await;
    let db = &t.db;
    let backend = t.backend();
    for round in 0..25 {
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let db = db.clone();
            reads.spawn(async move {
                db.query_one_raw(sea_orm::Statement::from_string(
                    backend,
                    "SELECT COUNT(*) AS n FROM db_posts",
                ))
                .await
                .map(drop)
            });
        }
        while let Some(read) = reads.join_next().await {
            read.unwrap().unwrap();
        }
        capture_db::install::<db_post_v2::Model, _>(db)
            .await
            .unwrap_or_else(|e| panic!("round {round}, install: {e}"));
        capture_db::uninstall::<db_post_v2::Model, _>(db)
            .await
            .unwrap_or_else(|e| panic!("round {round}, uninstall: {e}"));
        capture_db::install::<db_post::Model, _>(db)
            .await
            .unwrap_or_else(|e| panic!("round {round}, install again: {e}"));
    }
    assert_eq!(
        capture_db::check::<db_post::Model, _>(db).await.unwrap(),
        vec![]
    );
    db.execute_unprepared("INSERT INTO db_posts (title, body, views) VALUES ('a', 'b', 1)")
        .await
        .unwrap();
    assert_eq!(entries(&t, "db_posts").await.len(), 1);
    assert_verified(&t).await;
    t.finish().await;
}

/// The application's role needs no right on `audit_log`: the trigger writes the entry with
/// the rights of the role that installed it (PostgreSQL: `SECURITY DEFINER`; MySQL: a
/// trigger runs as its definer). A role allowed to write `db_posts` only has its update and
/// delete logged, and is refused when it writes `audit_log` itself. SQLite has no roles.
#[tokio::test]
async fn a_role_without_rights_on_the_log_is_still_logged() {
    let t = setup().await;
    let backend = t.backend();
    if backend == DbBackend::Sqlite {
        return t.finish().await;
    }
    let db = &t.db;
    db.execute_unprepared(
        "INSERT INTO db_posts (id, title, body, views) VALUES (1, 'by admin', 'b', 0)",
    )
    .await
    .unwrap();
    let role = format!("audit_app_{}", std::process::id());
    let database = t.url.rsplit_once('/').unwrap().1.to_owned();
    let (create, grant) = match backend {
        DbBackend::Postgres => (
            format!("CREATE ROLE {role} LOGIN"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON db_posts TO {role}"),
        ),
        _ => (
            format!("CREATE USER '{role}'@'%' IDENTIFIED BY ''"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {database}.db_posts TO '{role}'@'%'"),
        ),
    };
    db.execute_unprepared(&create).await.unwrap();
    db.execute_unprepared(&grant).await.unwrap();
    let (scheme, rest) = t.url.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    let app = Database::connect(format!("{scheme}://{role}@{host}"))
        .await
        .unwrap();
    let refused = app
        .execute_unprepared(
            "INSERT INTO audit_log (entity_type, object_id, action, created_at, status) \
             VALUES ('db_posts', '1', 'update', '2030-01-01 00:00:00', 'success')",
        )
        .await;
    let written = async {
        app.execute_unprepared("UPDATE db_posts SET views = 7 WHERE id = 1")
            .await?;
        app.execute_unprepared("DELETE FROM db_posts WHERE id = 1")
            .await
    }
    .await;
    app.close().await.ok();
    let drop_role = match backend {
        DbBackend::Postgres => format!("DROP OWNED BY {role}; DROP ROLE {role}"),
        _ => format!("DROP USER '{role}'@'%'"),
    };
    db.execute_unprepared(&drop_role).await.unwrap();
    let error = refused.expect_err("the role wrote audit_log itself");
    assert!(
        error.to_string().to_lowercase().contains("denied"),
        "{error}"
    );
    written.unwrap();
    let logged: Vec<_> = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq("db_posts"))
        .filter(audit_log::Column::ObjectId.eq("1"))
        .order_by_asc(audit_log::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.changes))
        .collect();
    let actions: Vec<&str> = logged.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["create", "update", "delete"], "{logged:?}");
    assert_eq!(
        logged[1].1,
        Some(json!({"old_value": {"views": 0}, "new_value": {"views": 7}}))
    );
    capture_db::seal(db).await.unwrap();
    assert!(verify(db).await.unwrap().is_ok());
    t.finish().await;
}

/// In database mode a column the database changes itself is logged, as the row stores it: the
/// same application trigger as `tests/hook_exact.rs`'s (1,000 added to `views` on every
/// update). PostgreSQL and MySQL change NEW before the capture trigger reads it, so each update
/// has one entry with both columns; SQLite's application trigger updates the row again after
/// the write, and that UPDATE has an entry of its own, under the same actor. Either way the
/// entries replay to the row as stored, each `old_value` the value before, and the chain
/// verifies.
#[tokio::test]
async fn a_column_the_database_changes_itself_is_logged_in_database_mode() {
    let t = setup().await;
    let post = draft("touched").insert(&t.db).await.unwrap();
    common::bump_views_on_update(&t.db, "db_posts").await;
    for n in 1..=2 {
        AuditContext::new()
            .actor(format!("editor{n}"))
            .scope(capture_db::transaction(&t.db, move |txn| {
                Box::pin(async move {
                    db_post::ActiveModel {
                        id: Set(post.id),
                        body: Set(format!("edit {n}")),
                        ..Default::default()
                    }
                    .update(txn)
                    .await?;
                    Ok::<_, DbErr>(())
                })
            }))
            .await
            .unwrap();
    }
    let row = db_post::Entity::find_by_id(post.id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.body.as_str(), row.views), ("edit 2", 2000));
    capture_db::seal(&t.db).await.unwrap();
    let logs: Vec<_> = common::all_logs(&t.db)
        .await
        .into_iter()
        .filter(|e| e.entity_type == "db_posts")
        .collect();
    let mut state = json!({"body": "body", "views": 0});
    let mut actors = Vec::new();
    for entry in &logs[1..] {
        let changes = entry.changes.as_ref().unwrap();
        for (field, old) in changes["old_value"].as_object().unwrap() {
            assert_eq!(
                &state[field], old,
                "{changes}: old_value is the value before"
            );
        }
        for (field, new) in changes["new_value"].as_object().unwrap() {
            state[field] = new.clone();
        }
        actors.push(entry.actor.clone().unwrap());
    }
    assert_eq!(state, json!({"body": "edit 2", "views": 2000}));
    let per_update = if t.backend() == DbBackend::Sqlite {
        2
    } else {
        1
    };
    assert_eq!(logs.len(), 1 + 2 * per_update, "{logs:?}");
    let expected: Vec<String> = ["editor1", "editor2"]
        .iter()
        .flat_map(|a| std::iter::repeat_n(a.to_string(), per_update))
        .collect();
    assert_eq!(actors, expected);
    assert_verified(&t).await;
    t.finish().await;
}

/// MySQL: a table whose triggers an earlier version of the library installed (its generated
/// SQL, and so the fingerprint its registry records, differ from this version's) is reported
/// as `EntityChanged` until `install` runs again, which replaces the triggers: one entry per
/// write afterwards, and `check` clean. The earlier install is made by rewriting the recorded
/// fingerprint in the installed insert trigger, which is what another generated text gives.
#[tokio::test]
async fn an_install_by_an_earlier_version_is_reported_until_installed_again() {
    let t = setup().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let db = &t.db;
    let trigger = "sea_orm_audit_db_posts_insert";
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::MySql,
            format!("SHOW CREATE TRIGGER {trigger}"),
        ))
        .await
        .unwrap()
        .unwrap();
    let sql: String = row.try_get("", "SQL Original Statement").unwrap();
    let (head, rest) = sql.split_once("\"fingerprint\":\"").unwrap();
    let (fingerprint, tail) = rest.split_once('"').unwrap();
    assert_eq!(fingerprint.len(), 64, "{sql}");
    let earlier = format!("{head}\"fingerprint\":\"{}\"{tail}", "0".repeat(64));
    db.execute_unprepared(&format!("DROP TRIGGER {trigger}"))
        .await
        .unwrap();
    db.execute_unprepared(&earlier).await.unwrap();
    assert_eq!(
        capture_db::check::<db_post::Model, _>(db).await.unwrap(),
        [Drift::EntityChanged]
    );
    capture_db::install::<db_post::Model, _>(db).await.unwrap();
    assert_eq!(
        capture_db::check::<db_post::Model, _>(db).await.unwrap(),
        []
    );
    let post = draft("after the upgrade").insert(db).await.unwrap();
    db.execute_unprepared(&format!(
        "UPDATE db_posts SET body = 'edited' WHERE id = {}",
        post.id
    ))
    .await
    .unwrap();
    let actions: Vec<String> = entries(&t, "db_posts")
        .await
        .into_iter()
        .map(|(_, action, _)| action)
        .collect();
    assert_eq!(actions, ["create", "update"]);
    assert_verified(&t).await;
    t.finish().await;
}

/// MariaDB: a seal never makes a writer's transaction the victim of a deadlock. The writer's
/// events lock the newest entry of each object they are about, in their order; the seal locks
/// the entries it seals in id order. Here the writer holds the newest entry of object x (the
/// log's last entry) while a seal of 62 unsealed entries begins, then asks for that of object y
/// (the first). A seal that waited for x's entry, holding y's and 60 others, made InnoDB roll
/// back the lighter transaction, the writer's (1213, every run); it now leaves what it cannot
/// lock at once to the next seal, and the writer commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_never_deadlocks_a_writer_that_locked_entries_out_of_order() {
    use sea_orm::TransactionTrait;
    use sea_orm_audit::Event;
    let t = setup().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let db = &t.db;
    // Raw inserts: unsealed entries (ids 1..=62) until a seal; y's is the first, x's the last.
    let titles = std::iter::once("y".to_owned())
        .chain((0..60).map(|n| format!("filler {n}")))
        .chain(["x".to_owned()]);
    for title in titles {
        db.execute_unprepared(&format!(
            "INSERT INTO db_posts (title, body, views) VALUES ('{title}', 'b', 0)"
        ))
        .await
        .unwrap();
    }
    let id = |title: &str| {
        let title = title.to_owned();
        async move {
            db_post::Entity::find()
                .filter(db_post::Column::Title.eq(title))
                .one(db)
                .await
                .unwrap()
                .unwrap()
                .id
                .to_string()
        }
    };
    let (x, y) = (id("x").await, id("y").await);
    let writer = db.begin().await.unwrap();
    Event::new("note")
        .target_id("db_posts", &x)
        .record(&writer)
        .await
        .unwrap();
    let sealer = {
        let db = db.clone();
        tokio::spawn(async move { capture_db::seal(&db).await })
    };
    // Long enough for the seal to reach x's entry (and wait there, as it did).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    Event::new("note")
        .target_id("db_posts", &y)
        .record(&writer)
        .await
        .unwrap();
    writer.commit().await.unwrap();
    let first = sealer.await.unwrap().unwrap();
    assert!(
        first < 62,
        "x's entry was held: left to the next seal ({first} sealed)"
    );
    assert_verified(&t).await;
    t.finish().await;
}
