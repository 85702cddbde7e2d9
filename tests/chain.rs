//! Tamper evidence: every kind of direct SQL tampering is caught by `verify`.

mod common;

use common::entities::{kitchen, post, translation};
use common::{TestDb, all_logs, new_post};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, Condition, ConnectionTrait, IntoActiveModel, ModelTrait};
use sea_orm_audit::chain::ProblemKind;
use sea_orm_audit::{Event, bulk, events, verify, verify_object};

/// Returns once the writer outside the transaction has read the chain head: on PostgreSQL it
/// does not wait for the transaction and finishes; on MySQL its locking read waits for the
/// transaction's lock, which `information_schema` shows. SQLite shows no sign of a writer
/// waiting for its lock, so there it is given time instead.
async fn writer_two_has_read_the_head<T>(t: &TestDb, other: &tokio::task::JoinHandle<T>) {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(10);
    // Writer 2's locking read of the chain head, running (waiting) on its own connection.
    let waiting = "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST \
                   WHERE DB = DATABASE() AND ID <> CONNECTION_ID() \
                   AND INFO LIKE '%audit_chain_head%FOR UPDATE%'";
    loop {
        let done = match t.backend() {
            DbBackend::Postgres => other.is_finished(),
            DbBackend::MySql => {
                let row =
                    t.db.query_one_raw(Statement::from_string(DbBackend::MySql, waiting))
                        .await
                        .unwrap()
                        .unwrap();
                row.try_get::<i64>("", "n").unwrap() > 0
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                true
            }
        };
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "writer 2 never read the head");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Creates a history: two posts with several updates, a delete and a re-create, bulk writes,
/// events continuing a post's chain and a login chain. On PostgreSQL each update, delete and
/// continuing event has its hash computed in SQL (see `store`), so `verify`, which recomputes
/// every hash in Rust, checks that both agree.
async fn history(t: &TestDb) -> post::Model {
    let p = new_post("chained").insert(&t.db).await.unwrap();
    for n in 1..=4 {
        let mut am = p.clone().into_active_model();
        am.views = Set(n);
        am.update(&t.db).await.unwrap();
    }
    let other = new_post("other").insert(&t.db).await.unwrap();
    let id = other.id;
    other.delete(&t.db).await.unwrap();
    post::ActiveModel {
        id: Set(id),
        ..new_post("other again")
    }
    .insert(&t.db)
    .await
    .unwrap();
    bulk::insert_many(&t.db, (0..5).map(|i| new_post(&format!("bulk {i}"))))
        .await
        .unwrap();
    bulk::update_many::<post::Entity, _>(
        &t.db,
        Condition::all(),
        post::ActiveModel {
            body: Set("all".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    translation::ActiveModel {
        post_id: Set(1),
        lang: Set("en".into()),
        body: Set("x".into()),
    }
    .insert(&t.db)
    .await
    .unwrap();
    // Text the digest must canonicalize (escapes, non-ASCII, a newline) before SQL hashes it.
    Event::new("note")
        .target(&p)
        .actor("zoë")
        .message("🦀 \"quoted\" \\ back\nslash")
        .data("nested", serde_json::json!({"b": [1.5, -0.0], "a": null}))
        .record(&t.db)
        .await
        .unwrap();
    for _ in 0..2 {
        events::login(&t.db, "alice", None).await.unwrap();
    }
    p
}

/// The id of the n-th entry (oldest first) of post `p`.
async fn nth_entry(t: &TestDb, p: &post::Model, n: usize) -> i64 {
    let mut ids: Vec<i64> = sea_orm_audit::logs_for(&t.db, p)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    ids.reverse();
    ids[n]
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let t = TestDb::new().await;
    let p = history(&t).await;
    // Every column type hashes to what the backend stores (jsonb renumbering, -0.0, 1e300...).
    let mut am = kitchen::ActiveModel {
        id: sea_orm::NotSet,
        ..Default::default()
    };
    am.long_text = Set("t".into());
    am.unicode = Set("🦀 \"quoted\" \\ back\nslash".into());
    am.maybe_text = Set(None);
    am.blob = Set(vec![0, 255]);
    am.ratio = Set(1e300);
    am.small = Set(-0.0);
    am.maybe_ratio = Set(Some(0.1 + 0.2));
    am.amount = Set("1.50".parse().unwrap());
    am.doc = Set(serde_json::json!({"b": [1.0, -0.0, 2.5e-8], "a": {"z": null, "y": "é"}}));
    am.mood = Set(kitchen::Mood::Happy);
    am.maybe_mood = Set(None);
    am.day = Set(chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap());
    am.clock = Set(chrono::NaiveTime::from_hms_opt(1, 2, 3).unwrap());
    am.naive = Set(chrono::NaiveDate::from_ymd_opt(2020, 1, 1)
        .unwrap()
        .and_hms_opt(1, 2, 3)
        .unwrap());
    am.stamp = Set(chrono::Utc::now().fixed_offset());
    am.utc = Set(chrono::Utc::now());
    am.uid = Set(uuid::Uuid::new_v4());
    am.big = Set(-1);
    am.flag = Set(true);
    let k = am.insert(&t.db).await.unwrap();
    let mut am = k.into_active_model();
    am.ratio = Set(-1e-300);
    am.update(&t.db).await.unwrap();

    let report = verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.checked, all_logs(&t.db).await.len() as u64);
    let rows = all_logs(&t.db).await;
    assert!(
        rows.iter()
            .all(|r| r.hash.as_ref().is_some_and(|h| h.len() == 64))
    );
    // A create starts a chain; an update links to the entry before it.
    assert!(rows[0].prev_hash.is_none());
    assert_eq!(rows[1].prev_hash, rows[0].hash);
    // The event about the first post links to the post's newest entry, the second login to
    // the first: each chain continues wherever its head was read.
    let of = |entity: &str, object: &str| -> Vec<&sea_orm_audit::audit_log::Model> {
        rows.iter()
            .filter(|r| r.entity_type == entity && r.object_id == object)
            .collect()
    };
    let post_chain = of("posts", &p.id.to_string());
    let [.., before_note, note] = post_chain.as_slice() else {
        panic!("post 1 has a history")
    };
    assert_eq!(note.action, "note");
    assert_eq!(note.prev_hash, before_note.hash);
    let logins = of(events::AUTH_ENTITY, "alice");
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[1].prev_hash, logins[0].hash);
    t.finish().await;
}

#[tokio::test]
async fn editing_an_entry_is_caught() {
    let t = TestDb::new().await;
    let p = history(&t).await;
    let target = nth_entry(&t, &p, 2).await;
    let json = if t.backend() == sea_orm::DbBackend::Postgres {
        "'{\"old_value\":{\"views\":1},\"new_value\":{\"views\":99}}'::jsonb"
    } else {
        "'{\"old_value\":{\"views\":1},\"new_value\":{\"views\":99}}'"
    };
    t.db.execute_unprepared(&format!(
        "UPDATE audit_log SET changes = {json} WHERE id = {target}"
    ))
    .await
    .unwrap();
    let report = verify(&t.db).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{report:#?}");
    let first = report.first_broken().unwrap();
    assert_eq!(first.id, target);
    assert_eq!(first.kind, ProblemKind::ContentChanged);
    // Changing who did it is caught too.
    let actor_target = nth_entry(&t, &p, 3).await;
    t.db.execute_unprepared(&format!(
        "UPDATE audit_log SET actor = 'mallory' WHERE id = {actor_target}"
    ))
    .await
    .unwrap();
    let report = verify_object(&t.db, "posts", &p.id.to_string())
        .await
        .unwrap();
    assert_eq!(
        report.problems.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![target, actor_target]
    );
    t.finish().await;
}

#[tokio::test]
async fn deleting_an_entry_is_caught() {
    let t = TestDb::new().await;
    let p = history(&t).await;
    let gone = nth_entry(&t, &p, 2).await;
    let next = nth_entry(&t, &p, 3).await;
    t.db.execute_unprepared(&format!("DELETE FROM audit_log WHERE id = {gone}"))
        .await
        .unwrap();
    let report = verify(&t.db).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{report:#?}");
    assert_eq!(report.first_broken().unwrap().id, next);
    assert!(matches!(
        report.first_broken().unwrap().kind,
        ProblemKind::BrokenLink { .. }
    ));

    // Deleting the oldest entry (without pruning) is caught at the new oldest.
    let t2 = TestDb::new().await;
    let p2 = history(&t2).await;
    let first = nth_entry(&t2, &p2, 0).await;
    let second = nth_entry(&t2, &p2, 1).await;
    t2.db
        .execute_unprepared(&format!("DELETE FROM audit_log WHERE id = {first}"))
        .await
        .unwrap();
    let report = verify(&t2.db).await.unwrap();
    assert_eq!(
        report.first_broken().map(|p| p.id),
        Some(second),
        "{report:#?}"
    );
    t.finish().await;
    t2.finish().await;
}

#[tokio::test]
async fn reordering_entries_is_caught() {
    let t = TestDb::new().await;
    let p = history(&t).await;
    let a = nth_entry(&t, &p, 1).await;
    let b = nth_entry(&t, &p, 3).await;
    // Swap the two entries' ids (through a spare id), keeping each row's own hash intact.
    let spare = 1_000_000;
    for sql in [
        format!("UPDATE audit_log SET id = {spare} WHERE id = {a}"),
        format!("UPDATE audit_log SET id = {a} WHERE id = {b}"),
        format!("UPDATE audit_log SET id = {b} WHERE id = {spare}"),
    ] {
        t.db.execute_unprepared(&sql).await.unwrap();
    }
    let report = verify(&t.db).await.unwrap();
    assert!(!report.is_ok());
    let first = report.first_broken().unwrap();
    assert_eq!(first.id, a, "{report:#?}");
    assert!(
        matches!(first.kind, ProblemKind::BrokenLink { .. }),
        "{report:#?}"
    );
    t.finish().await;
}

/// An entry inserted with a valid hash of its own: a genuine entry of the object replayed at
/// the end of the log (its content, `prev_hash` and hash copied). Its content verifies, so
/// only its link gives it away.
#[tokio::test]
async fn a_replayed_entry_with_a_valid_hash_breaks_the_link() {
    let t = TestDb::new().await;
    let p = history(&t).await;
    let genuine = nth_entry(&t, &p, 2).await;
    let replay = 1_000_000;
    t.db.execute_unprepared(&format!(
        "INSERT INTO audit_log (id, entity_type, object_id, action, actor, created_at, changes, \
         tool, message, status, data, prev_hash, hash) \
         SELECT {replay}, entity_type, object_id, action, actor, created_at, changes, tool, \
         message, status, data, prev_hash, hash FROM audit_log WHERE id = {genuine}"
    ))
    .await
    .unwrap();
    let report = verify(&t.db).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{report:#?}");
    let problem = report.first_broken().unwrap();
    assert_eq!(problem.id, replay, "{report:#?}");
    assert!(
        matches!(problem.kind, ProblemKind::BrokenLink { .. }),
        "{report:#?}"
    );
    t.finish().await;
}

#[tokio::test]
async fn forged_entries_are_caught() {
    let t = TestDb::new().await;
    let p = history(&t).await;
    let at = if t.backend() == sea_orm::DbBackend::MySql {
        "'2030-01-01 00:00:00'"
    } else {
        "'2030-01-01 00:00:00+00:00'"
    };
    t.db.execute_unprepared(&format!(
        "INSERT INTO audit_log (entity_type, object_id, action, actor, created_at, status) \
         VALUES ('posts', '{}', 'update', 'mallory', {at}, 'success')",
        p.id
    ))
    .await
    .unwrap();
    let report = verify(&t.db).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{report:#?}");
    assert_eq!(
        report.first_broken().unwrap().kind,
        ProblemKind::MissingHash
    );
    t.finish().await;
}

/// An entry another program stored a value in that cannot be read back (a JSON number beyond
/// an `f64` on every backend; a time that is not one on SQLite, MySQL's zero date) is reported
/// as unreadable, and every other entry is checked: the chain is followed through the stored
/// hashes. Before, `verify` failed on the whole log with the driver's decode error.
#[tokio::test]
async fn an_entry_that_cannot_be_read_is_reported_and_the_rest_verified() {
    use sea_orm::{DbBackend, EntityTrait, PaginatorTrait};
    let t = TestDb::new().await;
    let backend = t.backend();
    let p = history(&t).await;
    let entries = sea_orm_audit::audit_log::Entity::find()
        .count(&t.db)
        .await
        .unwrap();
    let post_id = p.id.to_string();
    let (huge, bad_time) = (nth_entry(&t, &p, 1).await, nth_entry(&t, &p, 3).await);
    common::store_unreadable_changes(&t, huge).await;
    let mut unreadable = vec![huge];
    match backend {
        DbBackend::Sqlite => {
            t.db.execute_unprepared(&format!(
                "UPDATE audit_log SET created_at = 'not a time' WHERE id = {bad_time}"
            ))
            .await
            .unwrap();
            unreadable.push(bad_time);
        }
        DbBackend::MySql => {
            // A zero date, which MySQL stores outside a strict sql_mode.
            let tx = common::begin_not_strict(&t.db).await;
            tx.execute_unprepared(&format!(
                "UPDATE audit_log SET created_at = '0000-00-00 00:00:00' WHERE id = {bad_time}"
            ))
            .await
            .unwrap();
            common::commit_strict_again(tx).await;
            unreadable.push(bad_time);
        }
        // timestamptz refuses every value that is not a time.
        _ => {
            let refused =
                t.db.execute_unprepared(&format!(
                    "UPDATE audit_log SET created_at = 'not a time' WHERE id = {bad_time}"
                ))
                .await;
            assert!(refused.is_err());
        }
    }
    // Readers fail on such an entry, naming it (the newest such entry: they read newest first).
    let newest = format!(
        "audit_log row {}: cannot be read",
        unreadable.last().unwrap()
    );
    let error = sea_orm_audit::logs_for(&t.db, &p).await.unwrap_err();
    assert!(error.to_string().contains(&newest), "{error}");
    let error = sea_orm_audit::History::new()
        .fetch(&t.db)
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&newest), "{error}");
    // A Tail delivers every other entry, skips these and counts them, each naming its row.
    let mut tail = sea_orm_audit::listen::Tail::new(t.db.clone()).from_start();
    let delivered = tail.poll().await.unwrap();
    assert_eq!(
        delivered.len() as u64 + tail.undecodable_rows(),
        entries,
        "{delivered:#?}"
    );
    assert!(delivered.iter().all(|e| !unreadable.contains(&e.id)));
    assert_eq!(tail.undecodable_rows(), unreadable.len() as u64);
    for (error, id) in tail.undecodable().iter().zip(&unreadable) {
        let error = error.to_string();
        assert!(
            error.contains(&format!("audit_log row {id}: cannot be read")),
            "{error}"
        );
    }
    let report = verify(&t.db).await.unwrap();
    assert_eq!(report.checked, entries);
    let found: Vec<i64> = report.problems.iter().map(|p| p.id).collect();
    assert_eq!(found, unreadable, "{report:#?}");
    assert!(
        report
            .problems
            .iter()
            .all(|q| matches!(q.kind, ProblemKind::Unreadable { .. })
                && q.entity_type == "posts"
                && q.object_id == post_id),
        "{report:#?}"
    );
    let report = verify_object(&t.db, "posts", &post_id).await.unwrap();
    assert_eq!(
        report.problems.iter().map(|q| q.id).collect::<Vec<_>>(),
        unreadable
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_outside_a_transaction_fork_and_verify_says_so() {
    use sea_orm::TransactionTrait;
    use sea_orm_audit::Event;
    let t = TestDb::new().await;
    Event::new("note")
        .target_id("ticket", "7")
        .message("first")
        .record(&t.db)
        .await
        .unwrap();
    // Writer 1 appends inside a transaction it keeps open.
    let txn = t.db.begin().await.unwrap();
    Event::new("note")
        .target_id("ticket", "7")
        .message("in tx")
        .record(&txn)
        .await
        .unwrap();
    // Writer 2 appends to the same chain outside any transaction, concurrently.
    let db = t.db.clone();
    let other = tokio::spawn(async move {
        Event::new("note")
            .target_id("ticket", "7")
            .message("outside")
            .record(&db)
            .await
    });
    writer_two_has_read_the_head(&t, &other).await;
    txn.commit().await.unwrap();
    other.await.unwrap().unwrap();

    let report = verify(&t.db).await.unwrap();
    if t.backend() != sea_orm::DbBackend::MySql {
        // Writer 2 read the chain head before writer 1 committed (PostgreSQL's READ COMMITTED;
        // SQLite's separate implicit transactions for the read and the insert) and linked to the
        // same predecessor. Reported as a fork, not as tampering.
        assert_eq!(report.problems.len(), 1, "{report:#?}");
        assert!(
            matches!(report.problems[0].kind, ProblemKind::Fork { .. }),
            "{report:#?}"
        );
    } else {
        // MySQL's locking read of the chain head makes writer 2 wait for writer 1's commit.
        assert!(report.is_ok(), "{report:#?}");
    }
    t.finish().await;
}
