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
use sea_orm_audit::{Action, SNAPSHOT_BYTES, logs_for_id};

/// 600 updates of a row with a 256 KiB body, each in a task of its own (as each request of a
/// server is) and each failing on a unique title: each leaves the row's before-image behind
/// (its `after_save` never runs), 150 MiB in all. The snapshots waiting never hold more than
/// `SNAPSHOT_BYTES` (64 MiB); the oldest were dropped, and counted. A write of that row
/// afterwards is logged as usual, with the body it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_left_by_failing_writes_stay_under_the_byte_bound() {
    const WRITES: usize = 600;
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
    let (snapshots, evicted) = (pending_snapshots(), evicted_snapshots());
    let mut most = 0;
    for _ in 0..WRITES {
        let db = t.db.clone();
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
        most = most.max(pending_snapshot_bytes());
    }
    let left = pending_snapshots() - snapshots;
    eprintln!(
        "{WRITES} failed writes of a 256 KiB row: {left} snapshots left ({} bytes), {} dropped, \
         at most {most} bytes waiting",
        pending_snapshot_bytes(),
        evicted_snapshots() - evicted
    );
    assert!(most <= SNAPSHOT_BYTES, "{most} bytes waiting");
    assert!(evicted_snapshots() - evicted > 0, "the bound was reached");
    assert!(left < WRITES, "{left} of {WRITES} snapshots kept");
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
