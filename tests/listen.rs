//! Listeners: committed entries exactly once, never rolled-back ones, late commits included.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{FaultProxy, upstream_of};
use common::{TestDb, new_post};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    TransactionTrait,
};
use sea_orm_audit::listen::{JsonLinesSink, Tail};

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
    // timeout, and counted. Polled until no hole is open.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        from_now.poll().await.unwrap();
        if from_now.open_holes() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the hole was never given up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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

/// Every id in audit_log, read directly.
async fn logged_ids(db: &DatabaseConnection) -> BTreeSet<i64> {
    common::all_logs(db).await.iter().map(|r| r.id).collect()
}

/// Delivered ids as a set, after checking that none came twice.
fn once(delivered: &[i64]) -> BTreeSet<i64> {
    let set: BTreeSet<i64> = delivered.iter().copied().collect();
    assert_eq!(set.len(), delivered.len(), "an entry was delivered twice");
    set
}

/// Six writers, a third of their writes in transactions held open for a while, so that ids
/// commit out of order (SQLite serializes them: there they only run concurrently). Some of
/// those transactions make their first entry undecodable before committing it, so the tail
/// meets bad rows among good ones, inside holes too.
async fn write_concurrently(db: &DatabaseConnection) {
    let mut writers = Vec::new();
    for w in 0..6u64 {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let mut seed = w * 7919 + 17;
            let mut next = move |n: u64| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) % n
            };
            for i in 0..60 {
                if next(3) == 0 {
                    let txn = db.begin().await.unwrap();
                    for k in 0..=next(3) {
                        let post = new_post(&format!("w{w}-{i}-{k}"))
                            .insert(&txn)
                            .await
                            .unwrap();
                        if k == 0 && next(4) == 0 {
                            let sql = format!(
                                "UPDATE audit_log SET status = 'bogus' WHERE \
                                 entity_type = 'posts' AND object_id = '{}'",
                                post.id
                            );
                            txn.execute_unprepared(&sql).await.unwrap();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5 + next(40))).await;
                    txn.commit().await.unwrap();
                } else {
                    new_post(&format!("w{w}-{i}")).insert(&db).await.unwrap();
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
}

#[tokio::test]
async fn every_committed_entry_once_across_cut_connections_and_failed_polls() {
    let t = TestDb::new().await;
    let sqlite = t.backend() == DbBackend::Sqlite;
    // The tail's own pool. PostgreSQL and MariaDB: through the proxy, which keeps cutting its
    // connections. SQLite has no TCP: the tail gets one connection, which the test keeps
    // taking away, so its polls fail acquiring it (at whichever statement of a poll).
    let proxy = if sqlite {
        None
    } else {
        Some(Arc::new(FaultProxy::start(upstream_of(&t.url)).await))
    };
    let mut opt = ConnectOptions::new(proxy.as_ref().map_or(t.url.clone(), |p| p.url(&t.url)));
    opt.sqlx_logging(false)
        .max_connections(if sqlite { 1 } else { 2 })
        .acquire_timeout(Duration::from_millis(if sqlite { 30 } else { 2000 }));
    let tail_db = Database::connect(opt).await.unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let faults = tokio::spawn({
        let (done, proxy, tail_db) = (done.clone(), proxy.clone(), tail_db.clone());
        async move {
            let mut fired = 0u32;
            while !done.load(Ordering::Relaxed) {
                if let Some(proxy) = &proxy {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    proxy.cut_all();
                    fired += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    if let Ok(txn) = tail_db.begin().await {
                        fired += 1;
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        txn.rollback().await.ok();
                    }
                }
            }
            fired
        }
    });
    let tailing = tokio::spawn({
        let done = done.clone();
        let mut tail = Tail::new(tail_db).from_start();
        async move {
            let (mut delivered, mut failed) = (Vec::new(), 0u32);
            while !done.load(Ordering::Relaxed) {
                match tail.poll().await {
                    Ok(entries) => delivered.extend(entries.iter().map(|e| e.id)),
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (tail, delivered, failed)
        }
    });
    write_concurrently(&t.db).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    done.store(true, Ordering::Relaxed);
    let fired = faults.await.unwrap();
    let (mut tail, mut delivered, failed) = tailing.await.unwrap();

    // No more faults: the tail catches up with everything that committed.
    let logged = common::all_logs(&t.db).await;
    let (bad, good): (Vec<_>, Vec<_>) = logged.iter().partition(|r| r.status == "bogus");
    let bad: Vec<i64> = bad.iter().map(|r| r.id).collect();
    let expected: BTreeSet<i64> = good.iter().map(|r| r.id).collect();
    assert!(expected.len() > 300, "{} entries written", expected.len());
    assert!(!bad.is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    while once(&delivered) != expected {
        assert!(
            Instant::now() < deadline,
            "missing {:?}, open holes {}, missed {}",
            expected.difference(&once(&delivered)).collect::<Vec<_>>(),
            tail.open_holes(),
            tail.missed_holes()
        );
        // A connection cut at the very end may still fail one poll.
        if let Ok(entries) = tail.poll().await {
            delivered.extend(entries.iter().map(|e| e.id));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(tail.poll().await.unwrap().is_empty(), "exactly once");
    assert!(fired > 0 && failed > 0, "the faults made polls fail");
    if let Some(proxy) = &proxy {
        assert_eq!(
            proxy.counters.cuts.load(Ordering::Relaxed),
            u64::from(fired)
        );
        assert!(
            proxy.counters.connections.load(Ordering::Relaxed) > 1,
            "reconnected"
        );
    }
    assert_eq!((tail.open_holes(), tail.missed_holes()), (0, 0));
    assert_eq!(tail.undecodable_rows(), bad.len() as u64);
    let mut reported = corrupt_ids(tail.undecodable());
    reported.sort_unstable();
    assert_eq!(reported, bad, "each bad row reported once");
    let fault = if sqlite { "connection taken" } else { "cuts" };
    eprintln!(
        "{} entries ({} undecodable), {failed} failed polls, {fired} {fault}",
        logged.len(),
        bad.len()
    );
    t.finish().await;
}

/// Makes rows undecodable behind the library's back: a status it does not know, `data` that
/// is not an object, and on SQLite (which stores JSON as text) `changes` that is not JSON.
async fn corrupt(t: &TestDb, ids: &[i64]) {
    let sql = [
        "UPDATE audit_log SET status = 'bogus' WHERE id = ",
        "UPDATE audit_log SET data = '[1]' WHERE id = ",
        "UPDATE audit_log SET changes = 'not json' WHERE id = ",
    ];
    for (sql, id) in sql.iter().zip(ids) {
        t.db.execute_unprepared(&format!("{sql}{id}"))
            .await
            .unwrap();
    }
}

fn corrupt_ids(errors: &[sea_orm_audit::Error]) -> Vec<i64> {
    errors
        .iter()
        .map(|e| match e {
            sea_orm_audit::Error::Corrupt { id, .. } => *id,
            other => panic!("not a Corrupt report: {other}"),
        })
        .collect()
}

#[tokio::test]
async fn an_undecodable_row_is_reported_and_the_rows_around_it_delivered_once() {
    let t = TestDb::new().await;
    for i in 0..8 {
        new_post(&format!("p{i}")).insert(&t.db).await.unwrap();
    }
    let all: Vec<i64> = logged_ids(&t.db).await.into_iter().collect();
    let bad: Vec<i64> = if t.backend() == DbBackend::Sqlite {
        vec![all[1], all[4], all[5]]
    } else {
        vec![all[1], all[4]] // a JSON column there rejects text that is not JSON
    };
    corrupt(&t, &bad).await;
    let good: BTreeSet<i64> = all.iter().copied().filter(|id| !bad.contains(id)).collect();

    // Through poll(), in small batches so that bad rows sit inside and at the edge of one.
    let mut tail = Tail::new(t.db.clone()).from_start().batch(3);
    let mut delivered = Vec::new();
    for _ in 0..5 {
        let entries = tail.poll().await.unwrap();
        delivered.extend(entries.iter().map(|e| e.id));
    }
    assert_eq!(once(&delivered), good);
    assert_eq!(tail.undecodable_rows(), bad.len() as u64);
    assert_eq!(
        corrupt_ids(tail.undecodable()),
        bad,
        "reported once each, in order"
    );
    new_post("after").insert(&t.db).await.unwrap();
    let after = tail.poll().await.unwrap();
    assert_eq!(titles(&after), ["after"]);
    assert_eq!(
        tail.undecodable_rows(),
        bad.len() as u64,
        "not counted again"
    );

    // Through the spawned tail.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handle = Tail::new(t.db.clone())
        .from_start()
        .batch(3)
        .poll_interval(Duration::from_millis(10))
        .spawn({
            let seen = seen.clone();
            move |entry| {
                seen.lock().unwrap().push(entry.id);
                async {}
            }
        });
    // Counted while it runs, not only once it is shut down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.undecodable_rows() < bad.len() as u64 {
        assert!(Instant::now() < deadline, "{}", handle.undecodable_rows());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let spawned = handle.shutdown().await.unwrap();
    let mut good = good;
    good.insert(after[0].id);
    assert_eq!(once(&seen.lock().unwrap()), good);
    assert_eq!(spawned.undecodable_rows(), bad.len() as u64);
    assert_eq!(corrupt_ids(spawned.undecodable()), bad);
    t.finish().await;
}

#[tokio::test]
async fn from_now_still_delivers_a_transaction_open_at_the_start() {
    let t = TestDb::new().await;
    let sqlite = t.backend() == DbBackend::Sqlite;
    new_post("history").insert(&t.db).await.unwrap();
    let txn = t.db.begin().await.unwrap();
    new_post("open at the start").insert(&txn).await.unwrap();
    if !sqlite {
        // A higher id, committed before the tail starts. (SQLite: the open transaction holds
        // the write lock, so its id is above everything committed; nothing to overtake it.)
        new_post("committed first").insert(&t.db).await.unwrap();
    }
    let mut tail = Tail::new(t.db.clone());
    assert!(
        tail.poll().await.unwrap().is_empty(),
        "starts after the newest"
    );
    assert_eq!(tail.open_holes(), usize::from(!sqlite));
    txn.commit().await.unwrap();
    new_post("later").insert(&t.db).await.unwrap();
    assert_eq!(
        titles(&tail.poll().await.unwrap()),
        ["open at the start", "later"]
    );
    assert!(tail.poll().await.unwrap().is_empty(), "exactly once");
    assert_eq!((tail.open_holes(), tail.missed_holes()), (0, 0));
    t.finish().await;
}
