//! Form-based and loco-style apps in the API activity log: actions per route, per handler,
//! masked form bodies, anonymous writes.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::post;
use common::TestDb;
use common::web::{PEER, api_entries, layer, request, send};
use sea_orm_audit::Action;
use sea_orm_audit::web::{ActivityLog, ActivityNote, ActivityWriter, Batching};
use serde_json::json;

/// Form handlers read their body (the log records what the handler reads: bodies are teed,
/// never buffered ahead of it).
fn app(activity: ActivityLog) -> Router {
    Router::new()
        .route("/posts/{id}", post(|_: String| async { "edited" }))
        .route("/posts/delete/{id}", post(|_: String| async { "deleted" }))
        .route("/login", post(|_: String| async { "welcome" }))
        .route(
            "/session",
            post(|| async {
                (
                    ActivityNote::message("logged out").action(Action::Logout),
                    "bye",
                )
            }),
        )
        .route(
            "/comments",
            post(|_: String| async { "thanks" }).get(|| async { "[]" }),
        )
        .layer(layer().activity(activity))
}

fn form(uri: &str, user: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(user) = user {
        builder = builder.header("x-user", user);
    }
    let mut req = builder.body(Body::from(body.to_owned())).unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        PEER.parse::<std::net::SocketAddr>().unwrap(),
    ));
    req
}

#[tokio::test]
async fn form_posts_get_their_route_actions_and_masked_bodies() {
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(
        t.db.clone(),
        Batching::new().interval(Duration::from_secs(3600)),
    );
    let activity = ActivityLog::new(&writer)
        .action("POST /posts/{id}", Action::Update)
        .action("/posts/delete/{id}", Action::Delete)
        .action("/login", Action::Login)
        .allow_anonymous("/login")
        .record_anonymous_writes();
    let app = app(activity);

    let edit = form("/posts/7", Some("ann"), "title=Hello+world&tag=a&tag=b");
    assert_eq!(send(&app, edit).await.0, StatusCode::OK);
    send(&app, form("/posts/delete/7", Some("ann"), "confirm=yes")).await;
    send(&app, form("/login", None, "username=ann&password=hunter2")).await;
    send(&app, request(Method::POST, "/session", Some("ann"), None)).await;
    // Anonymous writes are recorded (record_anonymous_writes); anonymous reads are not.
    send(&app, form("/comments", None, "text=first%21")).await;
    send(&app, request(Method::GET, "/comments", None, None)).await;
    writer.flush().await.unwrap();

    let entries = api_entries(&t.db).await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["update", "delete", "login", "logout", "create"]);
    assert_eq!(
        entries[0].data["request_body"],
        json!({"title": "Hello world", "tag": ["a", "b"]})
    );
    let login = &entries[2].data["request_body"];
    assert_eq!(login["username"], "ann");
    assert_eq!(
        login["password"], "***FILTERED***",
        "form bodies are masked like JSON"
    );
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(entries[3].message.as_deref(), Some("logged out"));
    assert_eq!(entries[4].actor, None);
    assert_eq!(entries[4].data["request_body"], json!({"text": "first!"}));
    writer.shutdown().await;
    t.finish().await;
}

/// A handler that panics leaves an entry: failed, status 500. The panic goes on to the
/// application (here: the task running the request).
#[tokio::test]
async fn a_panicking_handler_is_recorded_as_failed_with_500() {
    use tower::ServiceExt;
    let t = TestDb::new().await;
    let writer = ActivityWriter::spawn(
        t.db.clone(),
        Batching::new().interval(Duration::from_secs(3600)),
    );
    let app = Router::new()
        .route(
            "/boom",
            post(|_: String| async {
                panic!("handler bug");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .layer(layer().activity(ActivityLog::new(&writer)));
    let req = form("/boom", Some("ann"), "a=1&password=hunter2");
    let outcome = tokio::spawn(app.oneshot(req)).await;
    assert!(
        outcome.unwrap_err().is_panic(),
        "the panic is not swallowed"
    );
    writer.flush().await.unwrap();
    let entries = api_entries(&t.db).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.status, sea_orm_audit::Status::Failed);
    assert_eq!(entry.data["status_code"], 500);
    assert_eq!(entry.actor.as_deref(), Some("ann"));
    assert_eq!(entry.data["request_body"]["password"], "***FILTERED***");
    writer.shutdown().await;
    t.finish().await;
}
