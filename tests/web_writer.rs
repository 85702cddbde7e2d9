//! The activity log's batch writer behind the axum layer, against the real database of the
//! selected backend: batching by size and interval, shutdown with requests in flight, a failing
//! database, a full queue.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::TestDb;
use common::web::{
    AppState, api_entries, app, app_with, eventually, layer, quick, request, send, wait_for,
};
use sea_orm::ConnectionTrait;
use sea_orm_audit::web::{ActivityLog, ActivityWriter, Batching, Overflow};

#[tokio::test]
async fn batches_flush_on_size_and_interval() {
    let t = TestDb::new().await;
    // By size: 5 entries with a batch size of 5 are written without a flush or a timer.
    let writer = ActivityWriter::spawn(
        t.db.clone(),
        Batching::new().size(5).interval(Duration::from_secs(3600)),
    );
    let first = app(&t.db, layer().activity(ActivityLog::new(&writer)));
    for _ in 0..4 {
        send(&first, request(Method::GET, "/context", Some("a"), None)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api_entries(&t.db).await.len(), 0, "a partial batch waits");
    send(&first, request(Method::GET, "/context", Some("a"), None)).await;
    wait_for(&t.db, 5).await;
    // The rows are visible before the writer has the COMMIT's answer and counts them.
    eventually(|| writer.stats().written == 5).await;
    assert_eq!(writer.stats().written, 5);
    writer.shutdown().await;

    // By interval: one entry, a batch size of 1,000, written after 200 ms.
    let writer = ActivityWriter::spawn(
        t.db.clone(),
        Batching::new()
            .size(1000)
            .interval(Duration::from_millis(200)),
    );
    let second = app(&t.db, layer().activity(ActivityLog::new(&writer)));
    send(&second, request(Method::GET, "/context", Some("a"), None)).await;
    wait_for(&t.db, 6).await;
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn shutdown_flushes_everything_including_requests_in_flight() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let state = AppState::new(&t.db);
    let app = app_with(state.clone(), layer().activity(ActivityLog::new(&writer)));
    for _ in 0..250 {
        send(&app, request(Method::GET, "/context", Some("a"), None)).await;
    }
    // One request still running when shutdown starts.
    let in_flight = tokio::spawn({
        let app = app.clone();
        async move { send(&app, request(Method::GET, "/hold", Some("a"), None)).await }
    });
    state.held.notified().await;
    assert_eq!(writer.stats().queued, 251);
    let shutdown = tokio::spawn({
        let writer = writer.clone();
        async move { writer.shutdown().await }
    });
    // Shutdown has begun once it wrote the queued entries (nothing else writes them: no flush,
    // no timer); it then waits for the request in flight.
    eventually(|| writer.stats().written == 250).await;
    assert!(!shutdown.is_finished());
    state.gate.add_permits(1);
    let (status, _, _) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let stats = shutdown.await.unwrap();
    assert_eq!(stats.written, 251);
    assert_eq!((stats.dropped, stats.lost, stats.queued), (0, 0, 0));
    assert_eq!(api_entries(&t.db).await.len(), 251);
    // After shutdown requests are still served, but counted as dropped.
    let (status, _, _) = send(&app, request(Method::GET, "/context", Some("a"), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(writer.stats().dropped, 1);
    assert!(writer.flush().await.is_err());
    t.finish().await;
}

#[tokio::test]
async fn a_failing_database_is_retried_and_nothing_is_lost() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(
        t.db.clone(),
        quick().max_backoff(Duration::from_millis(200)),
    );
    let app = app(&t.db, layer().activity(ActivityLog::new(&writer)));
    for _ in 0..3 {
        send(&app, request(Method::GET, "/context", Some("a"), None)).await;
    }
    // Break the log table, then ask for a flush: it keeps retrying until the table is back.
    t.db.execute_unprepared("ALTER TABLE audit_log RENAME TO audit_log_away")
        .await
        .unwrap();
    let flush = tokio::spawn({
        let writer = writer.clone();
        async move { writer.flush().await }
    });
    eventually(|| writer.stats().failed_attempts >= 2).await;
    assert!(writer.stats().failed_attempts >= 2, "{:?}", writer.stats());
    assert!(!flush.is_finished());
    t.db.execute_unprepared("ALTER TABLE audit_log_away RENAME TO audit_log")
        .await
        .unwrap();
    flush.await.unwrap().unwrap();
    let stats = writer.shutdown().await;
    assert_eq!((stats.written, stats.lost), (3, 0));
    // Each batch is one transaction: no entry was written twice by the retries.
    assert_eq!(api_entries(&t.db).await.len(), 3);
    t.finish().await;
}

#[tokio::test]
async fn a_full_queue_drops_or_rejects_as_configured() {
    for policy in [Overflow::Drop, Overflow::Reject] {
        let t = TestDb::new().await;
        let writer = ActivityWriter::spawn(t.db.clone(), quick().capacity(1));
        let state = AppState::new(&t.db);
        let app = app_with(
            state.clone(),
            layer().activity(ActivityLog::new(&writer).on_full(policy)),
        );
        // The one slot is held by a request in flight.
        let held = tokio::spawn({
            let app = app.clone();
            async move { send(&app, request(Method::GET, "/hold", Some("a"), None)).await }
        });
        state.held.notified().await;
        let (status, headers, body) =
            send(&app, request(Method::GET, "/context", Some("a"), None)).await;
        match policy {
            Overflow::Drop => assert_eq!(status, StatusCode::OK),
            _ => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(headers["retry-after"], "1");
                assert!(headers.contains_key("x-request-id"));
                assert!(body["error"].as_str().unwrap().contains("audit log"));
            }
        }
        assert_eq!(writer.stats().dropped, 1);
        state.gate.add_permits(1);
        held.await.unwrap();
        let stats = writer.shutdown().await;
        assert_eq!(stats.written, 1, "{policy:?}");
        t.finish().await;
    }
}
