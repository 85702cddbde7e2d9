//! The axum integration, in process (`tower::ServiceExt::oneshot`) against the real database of
//! the selected backend: the context layer, the API activity log, the batch writer and the
//! history API.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Method, Request, StatusCode, request::Parts};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::TestDb;
use common::entities::post;
use common::web::{api_entries, eventually, layer, request, send, wait_for};
use http_body_util::BodyExt;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
};
use sea_orm_audit::web::{
    API_ENTITY, ActivityLog, ActivityNote, ActivityWriter, Actor, AuditLayer, Batching, HistoryApi,
    Overflow, PathStyle, RequestContext, Scope,
};
use sea_orm_audit::{Action, Status, logs_for_id};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

#[derive(Clone)]
struct AppState {
    db: DatabaseConnection,
    /// `/hold` waits for a permit here: keeps a request in flight.
    gate: Arc<Semaphore>,
    /// `/hold` signals here once its request is in flight.
    held: Arc<Notify>,
}

impl AppState {
    fn new(db: &DatabaseConnection) -> Self {
        AppState {
            db: db.clone(),
            gate: Arc::new(Semaphore::new(0)),
            held: Arc::new(Notify::new()),
        }
    }
}

async fn create_post(State(s): State<AppState>, Json(body): Json<Value>) -> impl IntoResponse {
    let post = post::ActiveModel {
        title: Set(body["title"].as_str().unwrap_or("untitled").to_owned()),
        body: Set(body["body"].as_str().unwrap_or("").to_owned()),
        views: Set(0),
        ..Default::default()
    }
    .insert(&s.db)
    .await
    .expect("insert");
    (
        StatusCode::CREATED,
        ActivityNote::message(format!("created post {}", post.id)).target(&post),
        Json(json!({"id": post.id, "title": post.title})),
    )
}

async fn edit_post(
    State(s): State<AppState>,
    Path(id): Path<i32>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut am = post::Entity::find_by_id(id)
        .one(&s.db)
        .await
        .expect("find")
        .expect("exists")
        .into_active_model();
    am.title = Set(body["title"].as_str().unwrap_or("").to_owned());
    let post = am.update(&s.db).await.expect("update");
    Json(json!({"id": post.id, "title": post.title}))
}

fn app(db: &DatabaseConnection, layer: AuditLayer<fn(&Parts) -> Option<Actor>>) -> Router {
    app_with(AppState::new(db), layer)
}

fn app_with(state: AppState, layer: AuditLayer<fn(&Parts) -> Option<Actor>>) -> Router {
    let history =
        HistoryApi::new(state.db.clone()).permission(|actor: &Actor, scope: &Scope<'_>| {
            actor.claims.get("admin") == Some(&json!(true))
                || matches!(
                    scope,
                    Scope::Object {
                        entity_type: "posts",
                        ..
                    }
                ) && actor.id == "editor"
        });
    Router::new()
        .route("/posts", post(create_post))
        .route("/posts/{id}", get(|| async { "post" }).patch(edit_post))
        .route("/echo", post(|Json(v): Json<Value>| async move { Json(v) }))
        .route(
            "/count",
            post(|body: Body| async move {
                let bytes = body.collect().await.expect("body").to_bytes();
                Json(json!({"received": bytes.len()}))
            }),
        )
        .route(
            "/text",
            post(|body: String| async move { format!("{} bytes", body.len()) }),
        )
        .route("/health", get(|| async { "ok" }))
        .route("/static/app.js", get(|| async { "js" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/context",
            get(|ctx: RequestContext| async move {
                Json(json!({
                    "actor": ctx.actor.map(|a| a.id),
                    "request_id": ctx.request_id,
                    "ip": ctx.ip.map(|ip| ip.to_string()),
                    "route": ctx.route,
                }))
            }),
        )
        .route(
            "/hold",
            get(|State(s): State<AppState>| async move {
                s.held.notify_one();
                let _permit = s.gate.acquire().await.expect("gate");
                "released"
            }),
        )
        .with_state(state)
        .nest("/audit", history.into_router())
        .layer(layer)
}

fn quick() -> Batching {
    // Large batches and a long interval: entries are written only when a test flushes.
    Batching::new()
        .size(10_000)
        .interval(Duration::from_secs(3600))
}

#[tokio::test]
async fn context_reaches_model_changes() {
    let t = TestDb::new().await;
    let app = app(
        &t.db,
        layer()
            .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
            .copy_claims(["tenant"]),
    );

    let mut req = request(
        Method::POST,
        "/posts",
        Some("alice"),
        Some(json!({"title": "Hello"})),
    );
    req.headers_mut()
        .insert("x-request-id", "req-123.abc".parse().unwrap());
    let (status, headers, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["x-request-id"], "req-123.abc");
    let id = body["id"].as_i64().unwrap().to_string();

    let history = logs_for_id(&t.db, "posts", &id).await.unwrap();
    assert_eq!(history.len(), 1);
    let entry = &history[0];
    assert_eq!(entry.actor.as_deref(), Some("alice"));
    assert_eq!(entry.data["request_id"], "req-123.abc");
    assert_eq!(entry.data["ip"], "198.51.100.7");
    assert_eq!(entry.data["method"], "POST");
    assert_eq!(entry.data["route"], "/posts");
    assert_eq!(entry.data["tenant"], "acme");
    assert!(
        !entry.data.contains_key("admin"),
        "only chosen claims are copied"
    );

    // An id with characters outside the accepted set is replaced, and echoed.
    let mut req = request(Method::GET, "/context", Some("bob"), None);
    req.headers_mut()
        .insert("x-request-id", "evil id\"<script>".parse().unwrap());
    let (_, headers, body) = send(&app, req).await;
    let generated = headers["x-request-id"].to_str().unwrap();
    assert_ne!(generated, "evil id\"<script>");
    assert_eq!(
        uuid::Uuid::parse_str(generated).unwrap().get_version_num(),
        4
    );
    assert_eq!(body["request_id"], generated);
    assert_eq!(body["actor"], "bob");
    assert_eq!(body["route"], "/context");
    // Without an incoming id one is generated; two requests never share one.
    let (_, h1, _) = send(&app, request(Method::GET, "/health", None, None)).await;
    let (_, h2, _) = send(&app, request(Method::GET, "/health", None, None)).await;
    assert_ne!(h1["x-request-id"], h2["x-request-id"]);
    t.finish().await;
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let t = TestDb::new().await;
    let app = app(
        &t.db,
        layer().trusted_proxies(["10.0.0.0/8".parse().unwrap()]),
    );
    let ip_of = |peer: &str, xff: Option<&str>, forwarded: Option<&str>| {
        let mut req = request(Method::GET, "/context", Some("u"), None);
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        if let Some(xff) = xff {
            req.headers_mut()
                .insert("x-forwarded-for", xff.parse().unwrap());
        }
        if let Some(f) = forwarded {
            req.headers_mut().insert("forwarded", f.parse().unwrap());
        }
        let app = app.clone();
        async move { send(&app, req).await.2["ip"].clone() }
    };
    // A client spoofing X-Forwarded-For directly: ignored.
    assert_eq!(
        ip_of("203.0.113.50:1234", Some("1.2.3.4"), None).await,
        "203.0.113.50"
    );
    assert_eq!(
        ip_of("203.0.113.50:1234", None, Some("for=1.2.3.4")).await,
        "203.0.113.50"
    );
    // Through the trusted proxy: the address the proxy saw, not what the client prepended.
    assert_eq!(
        ip_of("10.0.0.2:1234", Some("1.2.3.4, 203.0.113.50"), None).await,
        "203.0.113.50"
    );
    assert_eq!(
        ip_of(
            "10.0.0.2:1234",
            None,
            Some("for=1.2.3.4, for=\"[2001:db8::7]:99\"")
        )
        .await,
        "2001:db8::7"
    );
    // The same request recorded in a model change.
    let mut req = request(
        Method::POST,
        "/posts",
        Some("u"),
        Some(json!({"title": "t"})),
    );
    req.extensions_mut()
        .insert(ConnectInfo("203.0.113.50:1".parse::<SocketAddr>().unwrap()));
    req.headers_mut()
        .insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
    let (_, _, body) = send(&app, req).await;
    let history = logs_for_id(&t.db, "posts", &body["id"].to_string())
        .await
        .unwrap();
    assert_eq!(history[0].data["ip"], "203.0.113.50");
    t.finish().await;
}

#[tokio::test]
async fn activity_entries_record_requests() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let activity = ActivityLog::new(&writer)
        .event_name("POST /posts", "Create post")
        .event_name("/posts/{id}", "A post")
        .headers([
            axum::http::header::USER_AGENT,
            axum::http::header::AUTHORIZATION,
            "x-api-key".parse().unwrap(),
        ])
        .tool("api");
    let app = app(&t.db, layer().copy_claims(["tenant"]).activity(activity));

    let mut req = request(
        Method::POST,
        "/posts?draft=1&access_token=abc",
        Some("alice"),
        Some(json!({"title": "Hi", "password": "hunter2"})),
    );
    req.headers_mut()
        .insert("user-agent", "test/1".parse().unwrap());
    req.headers_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    req.headers_mut()
        .insert("x-api-key", "k3y".parse().unwrap());
    let (_, headers, created) = send(&app, req).await;
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    send(
        &app,
        request(
            Method::PATCH,
            &format!("/posts/{}", created["id"]),
            Some("alice"),
            Some(json!({"title": "Hi there"})),
        ),
    )
    .await;
    send(&app, request(Method::GET, "/posts/1", Some("alice"), None)).await;
    send(&app, request(Method::GET, "/fail", Some("alice"), None)).await;
    send(
        &app,
        Request::builder()
            .method(Method::DELETE)
            .uri("/nowhere")
            .header("x-user", "alice")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    writer.flush().await.unwrap();

    let entries = api_entries(&t.db).await;
    assert_eq!(entries.len(), 5, "{entries:#?}");
    let create = &entries[0];
    assert_eq!(create.object_id, request_id);
    assert_eq!(create.action, Action::Create);
    assert_eq!(create.actor.as_deref(), Some("alice"));
    assert_eq!(create.status, Status::Success);
    assert_eq!(create.tool.as_deref(), Some("api"));
    assert_eq!(
        create.message.as_deref(),
        Some(format!("created post {}", created["id"]).as_str())
    );
    let d = &create.data;
    assert_eq!(d["method"], "POST");
    assert_eq!(d["path"], "/posts?draft=1&access_token=***FILTERED***");
    assert_eq!(d["route"], "/posts");
    assert_eq!(d["event"], "Create post");
    assert_eq!(d["status_code"], 201);
    assert!(d["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(d["ip"], "198.51.100.7");
    assert_eq!(d["request_id"], request_id.as_str());
    assert_eq!(d["tenant"], "acme");
    assert_eq!(
        d["headers"],
        json!({"user-agent": "test/1", "authorization": "***FILTERED***", "x-api-key": "***FILTERED***"})
    );
    assert_eq!(
        d["request_body"],
        json!({"title": "Hi", "password": "***FILTERED***"})
    );
    assert_eq!(d["response_body"]["title"], "Hi");
    assert_eq!(
        d["target"],
        json!({"entity_type": "posts", "object_id": created["id"].to_string()})
    );
    // created_at is when the request came in, not when the batch was written.
    assert!(create.created_at <= entries[1].created_at);

    assert_eq!(entries[1].action, Action::Update);
    assert_eq!(entries[1].data["event"], "A post");
    assert_eq!(entries[2].action, Action::Read);
    assert_eq!(entries[2].data["event"], "A post");
    assert_eq!(entries[3].status, Status::Failed);
    assert_eq!(entries[3].data["status_code"], 500);
    assert_eq!(entries[3].message.as_deref(), Some("GET /fail → 500"));
    // No route matched: recorded with a null route and event.
    assert_eq!(entries[4].action, Action::Delete);
    assert_eq!(entries[4].data["status_code"], 404);
    assert_eq!(entries[4].data["route"], Value::Null);
    assert_eq!(entries[4].data["ip"], Value::Null, "no ConnectInfo, no IP");

    // The model change and the API entry share the request id.
    let change = &logs_for_id(&t.db, "posts", &created["id"].to_string())
        .await
        .unwrap()[1];
    assert_eq!(change.data["request_id"], request_id.as_str());
    // Entries chain like any other.
    assert!(sea_orm_audit::verify(&t.db).await.unwrap().is_ok());
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn nested_sensitive_keys_are_masked_in_bodies() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let app = app(
        &t.db,
        layer().activity(ActivityLog::new(&writer).mask_key("card_number")),
    );
    let body = json!({
        "user": {"name": "alice", "password": "p1", "newPassword": "p2",
                 "sessions": [{"access": "a", "refresh": "r", "device": "phone"}]},
        "payment": {"card_number": "4111", "cardholder": "A"},
        "token": null,
        "accessibility": "high"
    });
    let (_, _, echoed) = send(
        &app,
        request(Method::POST, "/echo", Some("alice"), Some(body.clone())),
    )
    .await;
    assert_eq!(echoed, body, "the handler sees the real body");
    writer.flush().await.unwrap();
    let entry = &api_entries(&t.db).await[0];
    let masked = json!({
        "user": {"name": "alice", "password": "***FILTERED***", "newPassword": "***FILTERED***",
                 "sessions": [{"access": "***FILTERED***", "refresh": "***FILTERED***", "device": "phone"}]},
        "payment": {"card_number": "***FILTERED***", "cardholder": "A"},
        "token": null,
        "accessibility": "high"
    });
    assert_eq!(entry.data["request_body"], masked);
    assert_eq!(entry.data["response_body"], masked);
    let stored = serde_json::to_string(&entry.data).unwrap();
    for secret in ["p1", "p2", "\"a\"", "\"r\"", "4111"] {
        assert!(!stored.contains(secret), "{secret} leaked: {stored}");
    }
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn large_bodies_are_truncated_not_buffered() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let app = app(
        &t.db,
        layer().activity(ActivityLog::new(&writer).body_limit(64)),
    );
    // 100 KB of JSON with a secret past the cap and one inside it.
    let big = json!({"password": "hunter2", "items": vec!["x".repeat(100); 1000], "token": "late"});
    let text = big.to_string();
    let (_, _, answer) = send(
        &app,
        request(Method::POST, "/count", Some("alice"), Some(big)),
    )
    .await;
    assert_eq!(answer["received"], text.len(), "the handler got every byte");
    // A body that is not JSON is only measured.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/text")
        .header("x-user", "alice")
        .header("content-type", "text/plain")
        .body(Body::from("password=hunter2"))
        .unwrap();
    send(&app, req).await;
    writer.flush().await.unwrap();
    let entries = api_entries(&t.db).await;
    let body = &entries[0].data["request_body"];
    assert_eq!(body["truncated"], true);
    assert_eq!(body["bytes"], text.len());
    let kept = body["text"].as_str().unwrap();
    assert!(
        kept.starts_with("{\"items\"") || kept.starts_with("{\"password\":\"***FILTERED***\""),
        "{kept}"
    );
    assert!(!kept.contains("hunter2"));
    assert!(kept.len() < 100, "only the prefix is kept: {}", kept.len());
    assert_eq!(
        entries[1].data["request_body"],
        json!({"content_type": "text/plain", "bytes": 16})
    );
    assert_eq!(entries[1].data["response_body"]["bytes"], 8);
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn skip_lists_methods_and_anonymous_requests() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let activity = ActivityLog::new(&writer)
        .skip_route("/health")
        .skip_prefix("/static/")
        .allow_anonymous("/echo")
        .methods([Method::GET, Method::POST]);
    let app = app(&t.db, layer().activity(activity));
    let user = Some("alice");
    send(&app, request(Method::GET, "/health", user, None)).await; // skipped route
    send(&app, request(Method::GET, "/static/app.js", user, None)).await; // skipped prefix
    send(&app, request(Method::PATCH, "/context", user, None)).await; // method filter
    send(&app, request(Method::GET, "/context", None, None)).await; // anonymous
    send(
        &app,
        request(Method::POST, "/echo", None, Some(json!({"a": 1}))),
    )
    .await; // allow-listed
    send(&app, request(Method::GET, "/context", user, None)).await; // recorded
    writer.flush().await.unwrap();
    let entries = api_entries(&t.db).await;
    let recorded: Vec<(Option<&str>, &Value)> = entries
        .iter()
        .map(|e| (e.actor.as_deref(), &e.data["path"]))
        .collect();
    assert_eq!(
        recorded,
        vec![(None, &json!("/echo")), (Some("alice"), &json!("/context"))]
    );
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn absolute_paths_trust_forwarded_proto_only_from_proxies() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let app = app(
        &t.db,
        layer()
            .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
            .activity(ActivityLog::new(&writer).path_style(PathStyle::Absolute)),
    );
    for peer in ["10.0.0.2:1", "203.0.113.5:1"] {
        let mut req = request(Method::GET, "/context?page=2", Some("alice"), None);
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        req.headers_mut()
            .insert("host", "blog.example".parse().unwrap());
        req.headers_mut()
            .insert("x-forwarded-proto", "https".parse().unwrap());
        send(&app, req).await;
    }
    writer.flush().await.unwrap();
    let entries = api_entries(&t.db).await;
    assert_eq!(
        entries[0].data["path"],
        "https://blog.example/context?page=2"
    );
    assert_eq!(
        entries[1].data["path"],
        "http://blog.example/context?page=2"
    );
    writer.shutdown().await;
    t.finish().await;
}

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

async fn seed_history(t: &TestDb, app: &Router) {
    for (user, title) in [("alice", "a1"), ("alice", "a2"), ("bob", "b1")] {
        send(
            app,
            request(
                Method::POST,
                "/posts",
                Some(user),
                Some(json!({"title": title})),
            ),
        )
        .await;
    }
    send(
        app,
        request(
            Method::PATCH,
            "/posts/1",
            Some("bob"),
            Some(json!({"title": "a1!"})),
        ),
    )
    .await;
    sea_orm_audit::events::login_failed(&t.db, "mallory", None, Some("bad password"))
        .await
        .unwrap();
}

#[tokio::test]
async fn history_api_lists_filters_and_pages() {
    let t = TestDb::new().await;
    let app = app(&t.db, layer());
    seed_history(&t, &app).await;
    let get_json = |uri: String, user: &'static str| {
        let app = app.clone();
        async move { send(&app, request(Method::GET, &uri, Some(user), None)).await }
    };

    let (status, _, all) = get_json("/audit/entries".into(), "admin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["count"], 5);
    assert_eq!(all["results"].as_array().unwrap().len(), 5);
    assert_eq!(all["next"], Value::Null);
    assert_eq!(all["results"][0]["action"], "login_failed");

    let (_, _, posts) = get_json(
        "/audit/entries?entity_type=posts&action=create".into(),
        "admin",
    )
    .await;
    assert_eq!(posts["count"], 3);
    let (_, _, bob) = get_json("/audit/entries?actor=bob".into(), "admin").await;
    assert_eq!(bob["count"], 2);
    let (_, _, failed) = get_json("/audit/entries?status=failed".into(), "admin").await;
    assert_eq!(failed["count"], 1);
    let (_, _, one) = get_json(
        "/audit/entries?entity_type=posts&object_id=1".into(),
        "admin",
    )
    .await;
    assert_eq!(one["count"], 2);
    let (_, _, none) = get_json(
        "/audit/entries?created_after=2999-01-01T00:00:00Z".into(),
        "admin",
    )
    .await;
    assert_eq!(none["count"], 0);
    let (_, _, earlier) = get_json(
        "/audit/entries?created_before=2999-01-01T00:00:00%2B02:00".into(),
        "admin",
    )
    .await;
    assert_eq!(earlier["count"], 5);

    // Cursor pages: 2 + 2 + 1, `next` keeps the filters.
    let mut uri = "/audit/entries?limit=2".to_owned();
    let mut seen = Vec::new();
    loop {
        let (status, _, page) = get_json(uri.clone(), "admin").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["count"], 5);
        seen.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with("/audit/entries?limit=2&cursor="), "{next}");
                uri = next.to_owned();
            }
            None => break,
        }
    }
    let ids: Vec<Value> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(seen, ids);
    // Offset pages.
    let (_, _, offset) = get_json("/audit/entries?limit=2&offset=4".into(), "admin").await;
    assert_eq!(offset["results"][0]["id"], ids[4]);
    // Limits are clamped.
    let (status, _, clamped) = get_json("/audit/entries?limit=100000".into(), "admin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(clamped["results"].as_array().unwrap().len(), 5);

    // One object's history, as {"count", "results"}, changes included.
    let (status, _, log) = get_json("/audit/posts/1/log".into(), "admin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log["count"], 2);
    assert_eq!(log["results"][0]["changes"]["old_value"]["title"], "a1");
    assert_eq!(log["results"][0]["changes"]["new_value"]["title"], "a1!");
    assert_eq!(log["results"][0]["actor"], "bob");
    // Object ids are percent-decoded path segments.
    let (_, _, mallory) = get_json("/audit/auth/mallory/log".into(), "admin").await;
    assert_eq!(mallory["count"], 1);
    t.finish().await;
}

#[tokio::test]
async fn history_api_guards_and_rejects() {
    let t = TestDb::new().await;
    let app = app(&t.db, layer());
    seed_history(&t, &app).await;
    let call = |uri: &str, user: Option<&'static str>| {
        let app = app.clone();
        let req = request(Method::GET, uri, user, None);
        async move { send(&app, req).await }
    };

    // My history: only the caller's own entries, whatever they ask for.
    let (status, _, mine) = call("/audit/me", Some("bob")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["count"], 2);
    assert!(
        mine["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "bob")
    );
    let (status, _, e) = call("/audit/me?actor=alice", Some("bob")).await;
    assert_eq!(
        (status, e["parameter"].clone()),
        (StatusCode::BAD_REQUEST, json!("actor"))
    );
    let (_, _, mine) = call("/audit/me?entity_type=posts&action=update", Some("bob")).await;
    assert_eq!(mine["count"], 1);

    // 401 without an actor, on every route.
    for uri in ["/audit/entries", "/audit/me", "/audit/posts/1/log"] {
        let (status, _, body) = call(uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(body["error"].is_string());
    }
    // 403 without the permission; the permission sees the scope.
    let (status, _, body) = call("/audit/entries", Some("bob")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].is_string());
    assert_eq!(
        call("/audit/posts/1/log", Some("bob")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call("/audit/posts/1/log", Some("editor")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call("/audit/auth/mallory/log", Some("editor")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call("/audit/entries", Some("editor")).await.0,
        StatusCode::FORBIDDEN
    );

    // 400 naming the parameter.
    for (query, parameter) in [
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("cursor=abc", "cursor"),
        ("status=maybe", "status"),
        ("created_after=2026-13-01", "created_after"),
        ("created_before=tomorrow", "created_before"),
        ("colour=red", "colour"),
        ("actor=a&actor=b", "actor"),
        ("object_id=1", "object_id"),
    ] {
        let (status, _, body) = call(&format!("/audit/entries?{query}"), Some("admin")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(parameter),
            "{body}"
        );
    }
    let (status, _, body) = call("/audit/posts/1/log?entity_type=x", Some("admin")).await;
    assert_eq!(
        (status, body["parameter"].clone()),
        (StatusCode::BAD_REQUEST, json!("entity_type"))
    );

    // Values only ever reach SQL bound: an injection attempt is just an unknown actor.
    let (status, _, body) = call(
        "/audit/entries?actor=%27%20OR%201%3D1%20--&entity_type=posts%27%3B%20DROP%20TABLE%20audit_log%3B%20--",
        Some("admin"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 0);
    assert_eq!(call("/audit/entries", Some("admin")).await.2["count"], 5);
    t.finish().await;
}

#[tokio::test]
async fn viewer_page_is_self_contained() {
    let t = TestDb::new().await;
    let app = app(&t.db, layer());
    let response = app
        .clone()
        .oneshot(request(Method::GET, "/audit/viewer", None, None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let html = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains("<html"));
    for outside in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "@import",
        "//cdn",
    ] {
        assert!(!html.contains(outside), "the page loads {outside}");
    }
    t.finish().await;
}

#[tokio::test]
async fn history_reads_are_recorded_without_copying_the_log() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let app = app(&t.db, layer().activity(ActivityLog::new(&writer)));
    send(
        &app,
        request(
            Method::POST,
            "/posts",
            Some("a"),
            Some(json!({"title": "x"})),
        ),
    )
    .await;
    let (status, _, body) = send(
        &app,
        request(
            Method::GET,
            "/audit/entries?entity_type=posts",
            Some("admin"),
            None,
        ),
    )
    .await;
    assert_eq!((status, body["count"].clone()), (StatusCode::OK, json!(1)));
    writer.flush().await.unwrap();
    let entries = api_entries(&t.db).await;
    let read = &entries[1];
    assert_eq!(read.actor.as_deref(), Some("admin"));
    assert_eq!(read.action, Action::Read);
    assert_eq!(read.data["path"], "/audit/entries?entity_type=posts");
    assert_eq!(read.data["route"], "/audit/entries");
    let response = &read.data["response_body"];
    assert_eq!(response["content_type"], "application/json");
    assert!(response["bytes"].as_u64().unwrap() > 0);
    assert!(response.get("count").is_none(), "{response}");
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn my_history_can_hide_entity_types_and_entries_can_be_enriched() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let activity = ActivityLog::new(&writer).enrich(|data| {
        let country = match data["ip"].as_str() {
            Some(ip) if ip.starts_with("198.51.100.") => "XX",
            _ => "unknown",
        };
        data.insert("country".into(), country.into());
    });
    let state = AppState::new(&t.db);
    let history = HistoryApi::new(t.db.clone()).hide_from_me([API_ENTITY]);
    let app = Router::new()
        .route("/posts", post(create_post))
        .with_state(state)
        .nest("/audit", history.into_router())
        .layer(layer().activity(activity));
    send(
        &app,
        request(
            Method::POST,
            "/posts",
            Some("bob"),
            Some(json!({"title": "b"})),
        ),
    )
    .await;
    writer.flush().await.unwrap();
    let entries = api_entries(&t.db).await;
    assert_eq!(entries[0].data["country"], "XX");
    // /me shows bob's change, not his API requests (which the admin listing has).
    let (status, _, mine) = send(&app, request(Method::GET, "/audit/me", Some("bob"), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["count"], 1, "{mine}");
    assert_eq!(mine["results"][0]["entity_type"], "posts");
    writer.shutdown().await;
    t.finish().await;
}
