//! Listeners: committed entries exactly once, never rolled-back ones, late commits included.

mod common;

use std::time::Duration;

use common::TestDb;
use common::entities::post;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, DbBackend, TransactionTrait};
use sea_orm_audit::listen::{JsonLinesSink, Tail};

fn new_post(title: &str) -> post::ActiveModel {
    post::ActiveModel {
        title: Set(title.into()),
        body: Set("b".into()),
        views: Set(0),
        ..Default::default()
    }
}

fn titles(entries: &[sea_orm_audit::LogEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e.changes.as_ref().unwrap().new_value["title"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn committed_entries_once_in_order_and_never_rolled_back_ones() {
    let t = TestDb::new().await;
    new_post("before").insert(&t.db).await.unwrap();
    let mut from_now = Tail::new(t.db.clone()).gap_timeout(Duration::from_millis(50));
    let mut from_start = Tail::new(t.db.clone()).from_start();
    assert!(
        from_now.poll().await.unwrap().is_empty(),
        "starts after the newest entry"
    );

    new_post("one").insert(&t.db).await.unwrap();
    let txn = t.db.begin().await.unwrap();
    new_post("rolled back").insert(&txn).await.unwrap();
    txn.rollback().await.unwrap();
    new_post("two").insert(&t.db).await.unwrap();

    assert_eq!(titles(&from_now.poll().await.unwrap()), ["one", "two"]);
    assert!(from_now.poll().await.unwrap().is_empty(), "exactly once");
    assert_eq!(
        titles(&from_start.poll().await.unwrap()),
        ["before", "one", "two"]
    );
    // The rolled-back insert left a hole (SQLite reuses the id instead): given up after the
    // timeout, and counted.
    tokio::time::sleep(Duration::from_millis(80)).await;
    from_now.poll().await.unwrap();
    let expected = if t.backend() == DbBackend::Sqlite {
        0
    } else {
        1
    };
    assert_eq!(from_now.missed_holes(), expected);
    assert_eq!(from_now.open_holes(), 0);
    t.finish().await;
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_still_delivered() {
    let t = TestDb::new().await;
    if t.backend() == DbBackend::Sqlite {
        // SQLite admits one writer: an open write transaction blocks the later insert, so ids
        // always commit in order there.
        t.finish().await;
        return;
    }
    let mut tail = Tail::new(t.db.clone()).from_start();
    let txn = t.db.begin().await.unwrap();
    new_post("early id, late commit")
        .insert(&txn)
        .await
        .unwrap();
    new_post("later id, committed first")
        .insert(&t.db)
        .await
        .unwrap();
    assert_eq!(
        titles(&tail.poll().await.unwrap()),
        ["later id, committed first"]
    );
    assert_eq!(tail.open_holes(), 1);
    txn.commit().await.unwrap();
    assert_eq!(
        titles(&tail.poll().await.unwrap()),
        ["early id, late commit"]
    );
    assert_eq!((tail.open_holes(), tail.missed_holes()), (0, 0));
    t.finish().await;
}

#[tokio::test]
async fn spawned_tail_forwards_json_lines_and_flushes_on_shutdown() {
    let t = TestDb::new().await;
    let sink = JsonLinesSink::new(Vec::<u8>::new());
    let writer = sink.clone();
    let handle = Tail::new(t.db.clone())
        .from_start()
        .entity_type("posts")
        .poll_interval(Duration::from_millis(20))
        .batch(2) // shutdown must still drain everything
        .spawn(move |entry| {
            let writer = writer.clone();
            async move { writer.write(&entry).unwrap() }
        });
    for i in 0..5 {
        new_post(&format!("p{i}")).insert(&t.db).await.unwrap();
    }
    sea_orm_audit::events::login(&t.db, "eve", None)
        .await
        .unwrap(); // another entity type
    let tail = handle.shutdown().await.unwrap();
    let lines = sink.with(|buf| String::from_utf8(buf.clone()).unwrap());
    let ids: Vec<i64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 5, "{lines}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        tail.last_id(),
        ids[4] + 1,
        "read past the login it did not deliver"
    );
    t.finish().await;
}
