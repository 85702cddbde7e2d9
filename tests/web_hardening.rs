//! The API activity log and the history API against hostile input and faults, on the selected
//! backend: requests whose fields a database would refuse, an entry the database refuses all
//! the same, the queue's byte budget, a COMMIT whose answer is lost, bad parameters, and
//! settings out of range.

mod common;

use std::time::Duration;

use axum::extract::Query;
use axum::http::{Method, StatusCode};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use common::TestDb;
use common::proxy::{FaultProxy, upstream_of};
use common::web::{api_entries, layer, quick, request, send};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_audit::web::{
    ActivityLog, ActivityNote, ActivityWriter, Actor, Batching, HistoryApi, Overflow, Scope,
};
use serde_json::{Value, json};

fn app(db: &DatabaseConnection, activity: ActivityLog) -> Router {
    let history = HistoryApi::new(db.clone())
        .permission(|actor: &Actor, _: &Scope<'_>| actor.claims.get("admin") == Some(&json!(true)));
    Router::new()
        .route("/login", any(|| async { "welcome" }))
        .route("/echo", post(|Json(v): Json<Value>| async move { Json(v) }))
        .route("/context", get(|| async { "ok" }))
        .route(
            "/note",
            get(|Query(q): Query<Vec<(String, String)>>| async move {
                let message = q.into_iter().map(|(_, v)| v).collect::<String>();
                (ActivityNote::message(message), "noted")
            }),
        )
        .nest("/audit", history.into_router())
        .layer(layer().activity(activity.allow_anonymous("/login")))
}

/// Flushes, failing the test if that takes longer than `secs` (a stuck writer).
async fn flush_within(writer: &ActivityWriter, secs: u64) {
    tokio::time::timeout(Duration::from_secs(secs), writer.flush())
        .await
        .expect("the writer flushed in time")
        .expect("flush");
}

fn data_str<'a>(entry: &'a sea_orm_audit::LogEntry, key: &str) -> &'a str {
    entry.data[key].as_str().unwrap_or_default()
}

#[tokio::test]
async fn hostile_requests_are_normalised_and_never_stop_the_log() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let app = app(&t.db, ActivityLog::new(&writer));

    // An anonymous request with a 70-character method.
    let long_method = Method::from_bytes("X".repeat(70).as_bytes()).unwrap();
    let (status, _, _) = send(&app, request(long_method, "/login", None, None)).await;
    assert_eq!(status, StatusCode::OK);
    // NUL in a JSON body, in a value and in a key (PostgreSQL's jsonb refuses \u0000).
    let nul = json!({"name": "a\u{0}b", "k\u{0}ey": 1});
    send(&app, request(Method::POST, "/echo", Some("a"), Some(nul))).await;
    // JSON nested deeper than MariaDB (32 levels) and MySQL (100) store.
    let mut deep = json!(1);
    for _ in 0..110 {
        deep = json!([deep]);
    }
    send(&app, request(Method::POST, "/echo", Some("a"), Some(deep))).await;
    // A NUL in the handler's message (a text column).
    send(&app, request(Method::GET, "/note?m=x%00y", Some("a"), None)).await;
    // A burst of 300 KB User-Agent headers (MySQL's max_allowed_packet).
    for _ in 0..60 {
        let mut req = request(Method::GET, "/context", Some("a"), None);
        req.headers_mut()
            .insert("user-agent", "U".repeat(300_000).parse().unwrap());
        send(&app, req).await;
    }
    // And the 200 ordinary requests after them.
    for _ in 0..200 {
        send(&app, request(Method::GET, "/context", Some("a"), None)).await;
    }
    flush_within(&writer, 4).await;
    let stats = writer.stats();
    assert_eq!(stats.written, 264, "{stats:?}");
    assert_eq!(stats.failed_attempts, 0, "nothing is refused: {stats:?}");
    let entries = api_entries(&t.db).await;
    let reduced: Vec<_> = entries
        .iter()
        .filter(|e| e.data.contains_key("reduced"))
        .collect();
    assert_eq!(stats.reduced, 0, "{reduced:#?}");
    assert_eq!(entries.len(), 264);
    let method = &entries[0];
    assert_eq!(data_str(method, "method").chars().count(), 32);
    assert!(data_str(method, "method").ends_with('…'));
    assert!(method.action.as_str().chars().count() <= 32);
    assert!(method.actor.is_none());

    let nul = &entries[1];
    let text = serde_json::to_string(&nul.data).unwrap();
    assert!(!text.contains("\\u0000"), "{text}");
    assert_eq!(nul.data["request_body"]["name"], "a\u{2400}b");
    assert_eq!(nul.data["request_body"]["k\u{2400}ey"], 1);
    assert_eq!(nul.data["response_body"]["name"], "a\u{2400}b");

    let deep = serde_json::to_string(&entries[2].data["request_body"]).unwrap();
    assert!(deep.contains(sea_orm_audit::TOO_DEEP));
    let levels = deep.bytes().take_while(|b| *b == b'[').count();
    assert_eq!(
        levels,
        sea_orm_audit::MAX_JSON_DEPTH,
        "the body keeps its upper levels"
    );
    assert_eq!(entries[3].message.as_deref(), Some("x\u{2400}y"));

    let agent = entries[4].data["headers"]["user-agent"].as_str().unwrap();
    assert!(agent.len() < 1100, "{} bytes", agent.len());
    assert!(agent.ends_with("…[300000 bytes]"));
    writer.shutdown().await;
    t.finish().await;
}

/// Makes the database refuse entries whose message holds `XBADX`: a check constraint, or a
/// trigger on SQLite (which cannot add a constraint to a table).
async fn refuse_marked_messages(db: &DatabaseConnection) {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "CREATE TRIGGER refuse_marked BEFORE INSERT ON audit_log \
             WHEN NEW.message LIKE '%XBADX%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        }
        _ => {
            "ALTER TABLE audit_log ADD CONSTRAINT refuse_marked \
             CHECK (message IS NULL OR message NOT LIKE '%XBADX%')"
        }
    };
    db.execute_unprepared(sql).await.expect("constraint");
}

#[tokio::test]
async fn an_entry_the_database_refuses_is_isolated_and_stored_reduced() {
    let t = TestDb::new().await;
    refuse_marked_messages(&t.db).await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let app = app(&t.db, ActivityLog::new(&writer));
    for i in 0..40 {
        let uri = if i == 17 || i == 30 {
            "/note?m=XBADX"
        } else {
            "/note?m=fine"
        };
        send(&app, request(Method::GET, uri, Some("a"), None)).await;
    }
    flush_within(&writer, 10).await;
    let stats = writer.stats();
    assert_eq!((stats.written, stats.reduced), (40, 2), "{stats:?}");
    assert_eq!(stats.failed_attempts, 0, "{stats:?}");
    let entries = api_entries(&t.db).await;
    assert_eq!(entries.len(), 40);
    for (i, entry) in entries.iter().enumerate() {
        if i == 17 || i == 30 {
            assert!(
                data_str(entry, "reduced").starts_with("refused by the database"),
                "{:?}",
                entry.data
            );
            assert_eq!(entry.actor.as_deref(), Some("a"));
            assert_eq!(entry.data["status_code"], 200);
            assert!(
                entry
                    .message
                    .as_deref()
                    .unwrap()
                    .starts_with("entry reduced")
            );
        } else {
            assert_eq!(entry.message.as_deref(), Some("fine"));
            assert!(entry.data.get("reduced").is_none());
        }
    }
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn the_queue_is_bounded_in_bytes() {
    let t = TestDb::new().await;
    // Headers are capped before they are queued: 500 requests with a 100 KB User-Agent hold
    // about 1 MB, not 50.
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let router = app(&t.db, ActivityLog::new(&writer));
    for _ in 0..500 {
        let mut req = request(Method::GET, "/context", Some("a"), None);
        req.headers_mut()
            .insert("user-agent", "U".repeat(100_000).parse().unwrap());
        send(&router, req).await;
    }
    let stats = writer.stats();
    assert_eq!(stats.queued, 500);
    assert!(stats.queued_bytes < 1_500_000, "{stats:?}");
    flush_within(&writer, 10).await;
    assert_eq!(writer.stats().queued_bytes, 0);
    writer.shutdown().await;

    // Bodies count against the budget: past it, new requests meet the overflow policy, and an
    // entry admitted earlier that no longer fits keeps only its bodies' sizes.
    for policy in [Overflow::Drop, Overflow::Reject] {
        let t = TestDb::new().await;
        let budget = 256 * 1024;
        let writer = ActivityWriter::spawn(t.db.clone(), quick().max_bytes(budget));
        let app = app(&t.db, ActivityLog::new(&writer).on_full(policy));
        let body = json!({"text": "b".repeat(15_000)});
        let mut refused = 0;
        for _ in 0..80 {
            let req = request(Method::POST, "/echo", Some("a"), Some(body.clone()));
            let (status, _, _) = send(&app, req).await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                refused += 1;
            }
        }
        let stats = writer.stats();
        assert!(stats.queued_bytes <= budget + 4096, "{stats:?}");
        assert!(stats.dropped >= 1, "{stats:?}");
        match policy {
            Overflow::Drop => assert_eq!(refused, 0),
            _ => assert_eq!(refused, stats.dropped),
        }
        let admitted = stats.queued as u64;
        assert_eq!(admitted + stats.dropped, 80);
        flush_within(&writer, 10).await;
        let entries = api_entries(&t.db).await;
        assert_eq!(entries.len() as u64, admitted);
        let full = entries
            .iter()
            .filter(|e| e.data["request_body"]["text"].is_string())
            .count();
        assert!(
            full >= 7,
            "the budget holds at least 7 such entries: {full}"
        );
        let reduced: Vec<_> = entries
            .iter()
            .filter(|e| e.data.contains_key("reduced"))
            .collect();
        assert_eq!(full + reduced.len(), entries.len());
        assert!(!reduced.is_empty());
        assert_eq!(writer.stats().reduced, reduced.len() as u64);
        for entry in reduced {
            assert_eq!(entry.data["request_body"]["bytes"], 15_011);
            assert!(data_str(entry, "reduced").contains("byte budget"));
        }
        writer.shutdown().await;
        t.finish().await;
    }
    t.finish().await;
}

#[tokio::test]
async fn an_unanswered_commit_does_not_write_entries_twice() {
    let t = TestDb::new().await;
    if t.backend() == DbBackend::Sqlite {
        eprintln!("an_unanswered_commit_does_not_write_entries_twice: no TCP on SQLite, skipped");
        return t.finish().await;
    }
    let proxy = FaultProxy::start(upstream_of(&t.url)).await;
    let mut options = ConnectOptions::new(proxy.url(&t.url));
    options.max_connections(2).sqlx_logging(false);
    let through_proxy = Database::connect(options).await.expect("connect via proxy");
    let writer = ActivityWriter::spawn(
        through_proxy,
        quick().max_backoff(Duration::from_millis(200)),
    );
    let app = app(&t.db, ActivityLog::new(&writer));
    for _ in 0..100 {
        send(&app, request(Method::GET, "/context", Some("a"), None)).await;
    }
    // The server commits the batch; the answer, and the connection, are lost.
    proxy.swallow_reply_to("COMMIT", 1);
    flush_within(&writer, 20).await;
    assert_eq!(proxy.swallowed(), 1, "the fault fired");
    let stats = writer.stats();
    assert!(stats.failed_attempts >= 1, "{stats:?}");
    let entries = api_entries(&t.db).await;
    let mut ids: Vec<&str> = entries.iter().map(|e| e.object_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((entries.len(), ids.len()), (100, 100));
    assert_eq!(stats.written, 100, "{stats:?}");
    writer.shutdown().await;
    drop(proxy);
    t.finish().await;
}

#[tokio::test]
async fn bad_history_parameters_are_400_naming_the_parameter() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let app = app(&t.db, ActivityLog::new(&writer));
    let cases = [
        ("/audit/entries?offset=18446744073709551615", "offset"),
        ("/audit/entries?offset=9223372036854775808", "offset"),
        ("/audit/entries?actor=a%00b", "actor"),
        ("/audit/entries?entity_type=post%00", "entity_type"),
        ("/audit/entries?action=%00", "action"),
        (
            "/audit/entries?created_after=2026-01-01T00:00:00Z%00",
            "created_after",
        ),
        ("/audit/me?tool=x%00", "tool"),
        ("/audit/post/1%002/log", "object_id"),
        ("/audit/po%00st/1/log", "entity_type"),
    ];
    for (uri, parameter) in cases {
        let (status, _, body) = send(&app, request(Method::GET, uri, Some("admin"), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["parameter"], parameter, "{uri}");
    }
    // The largest offset that is accepted is answered, not failed.
    let uri = "/audit/entries?offset=9223372036854775807";
    let (status, _, body) = send(&app, request(Method::GET, uri, Some("admin"), None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"], json!([]));
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn batching_out_of_range_is_clamped() {
    let t = TestDb::new().await;
    let mut batching = Batching::new();
    batching.size = 0;
    batching.capacity = 0;
    batching.interval = Duration::ZERO;
    batching.max_bytes = 0;
    batching.max_backoff = Duration::ZERO;
    let writer = ActivityWriter::spawn(t.db.clone(), batching);
    let app = app(&t.db, ActivityLog::new(&writer));
    for _ in 0..5 {
        send(&app, request(Method::GET, "/context", Some("a"), None)).await;
        flush_within(&writer, 5).await;
    }
    let stats = writer.shutdown().await;
    assert_eq!((stats.written, stats.dropped), (5, 0), "{stats:?}");
    assert_eq!(api_entries(&t.db).await.len(), 5);
    t.finish().await;
}
