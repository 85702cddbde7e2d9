//! The before-images that failed writes leave behind are bounded in bytes
//! ([`SNAPSHOT_BYTES`]), oldest dropped first. A binary of its own: the bound is process-wide,
//! and no other test's write may have its snapshot dropped while it runs.

#![allow(unreachable_pub)]

mod common;

use common::entities::post;
use common::{TestDb, post_with_body};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend};
use sea_orm_audit::__private::{evicted_snapshots, pending_snapshot_bytes, pending_snapshots};
use sea_orm_audit::{Action, IN_FLIGHT_WAIT, SNAPSHOT_BYTES, logs_for_id};
use std::time::{Duration, Instant};

/// Updates of a row with a 256 KiB body, each in a task of its own (as each request of a
/// server is) and each failing on a unique title: each leaves the row's before-image behind
/// (its `after_save` never runs). Two waves of 300 (75 MiB each), then one more write, each a
/// second after the last: what is less than a second old is kept (the first wave whole, when it
/// took less than a second), and the older snapshots are dropped, oldest first, so that once
/// the last second has passed those waiting hold no more than `SNAPSHOT_BYTES` (64 MiB) of the
/// 150 MiB left; the drops are counted. A write of that row afterwards is logged as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_left_by_failing_writes_stay_under_the_byte_bound() {
    const WAVE: usize = 300;
    let t = TestDb::new().await;
    if t.backend() == DbBackend::MySql {
        // The entity's `String` is a VARCHAR(255) there.
        t.db.execute_unprepared("ALTER TABLE posts MODIFY body LONGTEXT NOT NULL")
            .await
            .unwrap();
    }
    let body = "x".repeat(256 << 10);
    let big = post_with_body("big", &body).insert(&t.db).await.unwrap();
    post_with_body("taken", "b").insert(&t.db).await.unwrap();
    let (snapshots, bytes, evicted) = (
        pending_snapshots(),
        pending_snapshot_bytes(),
        evicted_snapshots(),
    );
    let fail_one = || {
        let db = t.db.clone();
        async move {
            let failed = tokio::spawn(async move {
                post::ActiveModel {
                    id: Set(big.id),
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
    };
    let started = Instant::now();
    for _ in 0..WAVE {
        fail_one().await;
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
    for round in 0..2 {
        tokio::time::sleep(IN_FLIGHT_WAIT + Duration::from_millis(100)).await;
        for _ in 0..if round == 0 { WAVE } else { 1 } {
            fail_one().await;
            most = most.max(pending_snapshot_bytes() - bytes);
        }
    }
    let (left, waiting) = (
        pending_snapshots() - snapshots,
        pending_snapshot_bytes() - bytes,
    );
    let dropped = evicted_snapshots() - evicted;
    eprintln!(
        "{} failed writes of a 256 KiB row: {first_wave} bytes waiting after the first {WAVE}, \
         at most {most} after; in the end {left} snapshots ({waiting} bytes), {dropped} dropped",
        2 * WAVE + 1
    );
    assert!(waiting <= SNAPSHOT_BYTES, "{waiting} bytes waiting");
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
