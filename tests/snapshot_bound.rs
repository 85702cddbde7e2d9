//! The before-images that failed writes leave behind are bounded in bytes
//! ([`SNAPSHOT_BYTES`]), oldest dropped first. A binary of its own: the bound is process-wide,
//! and no other test's write may have its snapshot dropped while it runs.

#![allow(unreachable_pub)]

mod common;

use common::entities::post;
use common::{TestDb, post_with_body};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait};
use sea_orm_audit::__private::{evicted_snapshots, pending_snapshot_bytes, pending_snapshots};
use sea_orm_audit::{Action, IN_FLIGHT_WAIT, SNAPSHOT_BYTES, logs_for_id};
use std::time::{Duration, Instant};

/// A post with a 256 KiB body, and one titled "taken", which the failing updates collide with.
async fn big_row(t: &TestDb) -> post::Model {
    if t.backend() == DbBackend::MySql {
        // The entity's `String` is a VARCHAR(255) there.
        t.db.execute_unprepared("ALTER TABLE posts MODIFY body LONGTEXT NOT NULL")
            .await
            .unwrap();
    }
    let big = post_with_body("big", &"x".repeat(256 << 10))
        .insert(&t.db)
        .await
        .unwrap();
    post_with_body("taken", "b").insert(&t.db).await.unwrap();
    big
}

/// An update of `id`'s title to "taken" in a task of its own: it fails, leaving its snapshot.
async fn fail_one(db: &sea_orm::DatabaseConnection, id: i32) {
    let db = db.clone();
    let failed = tokio::spawn(async move {
        post::ActiveModel {
            id: Set(id),
            title: Set("taken".into()),
            ..Default::default()
        }
        .update(&db)
        .await
    })
    .await
    .unwrap();
    assert!(failed.is_err(), "the unique title refuses the update");
}

/// The bound is process-wide, and what one scenario leaves in the table the next one finds: the
/// two run one after the other, in one test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn before_images_are_bounded_in_bytes() {
    snapshots_left_by_failing_writes_stay_under_the_byte_bound().await;
    a_write_held_past_a_second_while_others_fill_the_table_lands_with_no_entry().await;
}

/// Updates of a row with a 256 KiB body, each in a task of its own (as each request of a
/// server is) and each failing on a unique title: each leaves the row's before-image behind
/// (its `after_save` never runs). Two waves of 300 (75 MiB each), then one more write, each a
/// second after the last: what is less than a second old is kept (the first wave whole, when it
/// took less than a second), and the older snapshots are dropped, oldest first, so that once
/// the last second has passed those waiting hold no more than `SNAPSHOT_BYTES` (64 MiB) of the
/// 150 MiB left; the drops are counted. A write of that row afterwards is logged as usual.
async fn snapshots_left_by_failing_writes_stay_under_the_byte_bound() {
    const WAVE: usize = 300;
    let t = TestDb::new().await;
    let big = big_row(&t).await;
    let (snapshots, bytes, evicted) = (
        pending_snapshots(),
        pending_snapshot_bytes(),
        evicted_snapshots(),
    );
    let started = Instant::now();
    let mut one = 0;
    for i in 0..WAVE {
        fail_one(&t.db, big.id).await;
        if i == 0 {
            one = pending_snapshot_bytes() - bytes;
        }
    }
    let first_wave = pending_snapshot_bytes() - bytes;
    if started.elapsed() < IN_FLIGHT_WAIT {
        assert!(
            first_wave > SNAPSHOT_BYTES,
            "{first_wave} bytes: none dropped"
        );
        assert_eq!(evicted_snapshots(), evicted);
    }
    let mut most = 0;
    let mut second_wave_quick = false;
    for round in 0..2 {
        tokio::time::sleep(IN_FLIGHT_WAIT + Duration::from_millis(100)).await;
        let wave = Instant::now();
        for _ in 0..if round == 0 { WAVE } else { 1 } {
            fail_one(&t.db, big.id).await;
            most = most.max(pending_snapshot_bytes() - bytes);
        }
        if round == 0 {
            second_wave_quick = wave.elapsed() < IN_FLIGHT_WAIT;
        }
    }
    let (left, waiting) = (
        pending_snapshots() - snapshots,
        pending_snapshot_bytes() - bytes,
    );
    let dropped = evicted_snapshots() - evicted;
    eprintln!(
        "{} failed writes of a 256 KiB row: {first_wave} bytes waiting after the first {WAVE}, \
         at most {most} after; in the end {left} snapshots ({waiting} bytes), {dropped} dropped; \
         second wave under a second: {second_wave_quick}",
        2 * WAVE + 1
    );
    assert!(waiting <= SNAPSHOT_BYTES, "{waiting} bytes waiting");
    if second_wave_quick {
        // The second wave was all under a second old while it ran, so it was kept whole (75
        // MiB) and the last write found more than the bound: the older ones were dropped
        // until all held half of it, the last write's own snapshot aside.
        assert!(
            waiting <= SNAPSHOT_BYTES / 2 + one,
            "{waiting} bytes waiting, more than half the bound"
        );
    }
    assert!(
        dropped > 0 && left < 2 * WAVE,
        "{left} kept, {dropped} dropped"
    );
    post::ActiveModel {
        id: Set(big.id),
        views: Set(7),
        ..Default::default()
    }
    .update(&t.db)
    .await
    .unwrap();
    let history = logs_for_id(&t.db, "posts", &big.id.to_string())
        .await
        .unwrap();
    assert_eq!(history[0].action, Action::Update);
    let changes = history[0].changes.as_ref().unwrap();
    assert_eq!(changes.new_value["views"], 7);
    assert_eq!(changes.old_value["views"], 0);
    t.finish().await;
}

/// The price the README states: a write still running more than a second after its hook left
/// its snapshot, while others fill the table past `SNAPSHOT_BYTES`, has it dropped, and fails
/// in its `after_save` with `MissingSnapshot`, its write landed (autocommit) with no entry.
/// The proxy holds its UPDATE (the statement carrying its value) 4 s. Meanwhile 300 failing
/// updates of the 256 KiB row run at once, each in a task of its own (75 MiB), and so do 20
/// successful updates of another row: their snapshots are younger than a second, so each of
/// those is logged. PostgreSQL and MariaDB (SQLite runs in process, with no proxy).
async fn a_write_held_past_a_second_while_others_fill_the_table_lands_with_no_entry() {
    use common::proxy::{FaultProxy, upstream_of};
    let t = TestDb::new().await;
    if t.backend() == DbBackend::Sqlite {
        return t.finish().await;
    }
    let big = big_row(&t).await;
    let held = post_with_body("held", "b").insert(&t.db).await.unwrap();
    let other = post_with_body("other", "b").insert(&t.db).await.unwrap();
    let proxy = FaultProxy::start(upstream_of(&t.url)).await;
    let mut options = sea_orm::ConnectOptions::new(proxy.url(&t.url));
    options.max_connections(1).sqlx_logging(false);
    let via_proxy = sea_orm::Database::connect(options).await.unwrap();
    proxy.delay(Some(("held-value", Duration::from_secs(4))));
    let evicted = evicted_snapshots();
    let writing = tokio::spawn(async move {
        post::ActiveModel {
            id: Set(held.id),
            body: Set("held-value".into()),
            ..Default::default()
        }
        .update(&via_proxy)
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.delayed() == 0 {
        assert!(Instant::now() < deadline, "the held UPDATE never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(IN_FLIGHT_WAIT + Duration::from_millis(100)).await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let db = t.db.clone();
        tasks.push(tokio::spawn(async move { fail_one(&db, big.id).await }));
        if i % 15 == 0 {
            let db = t.db.clone();
            tasks.push(tokio::spawn(async move {
                post::ActiveModel {
                    id: Set(other.id),
                    // Never the 0 it holds: an update that changes nothing has no entry.
                    views: Set(i + 1),
                    ..Default::default()
                }
                .update(&db)
                .await
                .map(drop)
                .unwrap();
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let dropped = evicted_snapshots() - evicted;
    let result = writing.await.unwrap();
    eprintln!("dropped {dropped} snapshots; the held write: {result:?}");
    assert!(dropped >= 1, "the bound was reached");
    let err = result.expect_err("its snapshot was dropped");
    assert!(err.to_string().contains("no before-snapshot"), "{err}");
    let stored = post::Entity::find_by_id(held.id).one(&t.db).await.unwrap();
    assert_eq!(stored.unwrap().body, "held-value", "the write landed");
    let held_entries = logs_for_id(&t.db, "posts", &held.id.to_string())
        .await
        .unwrap();
    assert!(
        held_entries.iter().all(|e| e.action != Action::Update),
        "no entry for it"
    );
    let other_updates = logs_for_id(&t.db, "posts", &other.id.to_string())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::Update)
        .count();
    assert_eq!(other_updates, 20, "every successful write logged");
    t.finish().await;
}
