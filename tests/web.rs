//! The axum integration, in process (`tower::ServiceExt::oneshot`) against the real database of
//! the selected backend: the context layer and the API activity entries. The batch writer is
//! in web_writer.rs, the history API in web_api.rs.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use common::TestDb;
use common::web::{api_entries, app, layer, quick, request, send};
use sea_orm_audit::web::{ActivityLog, ActivityWriter, PathStyle};
use sea_orm_audit::{Action, Status, logs_for_id};
use serde_json::{Value, json};

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
    assert_nothing_leaked(&entry.data, &["p1", "p2", "\"a\"", "\"r\"", "4111"]);
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn sensitive_keys_replace_the_defaults_and_credential_headers_stay_masked() {
    use axum::http::HeaderName;
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(t.db.clone(), quick());
    let headers = [
        "cookie",
        "authorization",
        "proxy-authorization",
        "x-pin",
        "x-token",
    ]
    .map(HeaderName::from_static);
    let app = app(
        &t.db,
        layer().activity(
            ActivityLog::new(&writer)
                .headers(headers)
                .sensitive_keys(["pin"]),
        ),
    );
    let body = json!({"pin": "1111", "card": {"pin": "2222", "label": "x"}, "password": "p1"});
    let mut req = request(
        Method::POST,
        "/echo?pin=3333&token=t1",
        Some("alice"),
        Some(body),
    );
    for (name, value) in [
        ("cookie", "sid=c0ffee"),
        ("authorization", "Bearer b3arer"),
        ("proxy-authorization", "Basic pr0xy"),
        ("x-pin", "4444"),
        ("x-token", "t2"),
    ] {
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    send(&app, req).await;
    writer.flush().await.unwrap();
    let d = &api_entries(&t.db).await[0].data;
    // The keys given replace the defaults: `pin` is masked at any depth, in the query string
    // and in a header name; `password` and `token` are not (the application said so).
    assert_eq!(
        d["request_body"],
        json!({"pin": "***FILTERED***", "card": {"pin": "***FILTERED***", "label": "x"}, "password": "p1"})
    );
    assert_eq!(d["path"], "/echo?pin=***FILTERED***&token=t1");
    // Credential headers are masked whatever the keys.
    assert_eq!(
        d["headers"],
        json!({
            "cookie": "***FILTERED***",
            "authorization": "***FILTERED***",
            "proxy-authorization": "***FILTERED***",
            "x-pin": "***FILTERED***",
            "x-token": "t2",
        })
    );
    assert_nothing_leaked(
        d,
        &["1111", "2222", "3333", "4444", "c0ffee", "b3arer", "pr0xy"],
    );
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

/// Fails if any secret appears anywhere in the stored entry's data. The two values the layer
/// generates are left out: the request id is a random UUID and `duration_ms` a measured time,
/// and their digits spelled `4111` and `2222` in CI runs with nothing leaked.
fn assert_nothing_leaked(data: &serde_json::Map<String, Value>, secrets: &[&str]) {
    let mut data = data.clone();
    data.remove("request_id");
    data.remove("duration_ms");
    let stored = serde_json::to_string(&data).unwrap();
    for secret in secrets {
        assert!(!stored.contains(secret), "{secret} leaked: {stored}");
    }
}
