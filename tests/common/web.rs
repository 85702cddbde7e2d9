//! Fixtures of the axum tests: a stand-in auth layer, requests sent in process through a real
//! router, and the API activity entries read back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, request::Parts};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, IntoActiveModel};
use sea_orm_audit::web::{
    API_ENTITY, ActivityNote, Actor, AuditLayer, Batching, HistoryApi, RequestContext, Scope,
};
use sea_orm_audit::{History, LogEntry};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

use super::entities::post;

/// The socket address requests come from unless a test says otherwise.
pub const PEER: &str = "198.51.100.7:40000";

/// Actor from `x-user` (the test's stand-in for an auth layer); `admin` is the admin.
pub fn resolver(parts: &Parts) -> Option<Actor> {
    let user = parts.headers.get("x-user")?.to_str().ok()?;
    Some(
        Actor::new(user)
            .claim("tenant", "acme")
            .claim("admin", user == "admin"),
    )
}

pub fn layer() -> AuditLayer<fn(&Parts) -> Option<Actor>> {
    AuditLayer::new(resolver as fn(&Parts) -> Option<Actor>)
}

pub fn request(
    method: Method,
    uri: &str,
    user: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(user) = user {
        builder = builder.header("x-user", user);
    }
    let body = match body {
        Some(json) => {
            builder = builder.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let mut req = builder.body(body).expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(PEER.parse::<SocketAddr>().expect("peer")));
    req
}

/// Sends a request and reads the whole response (the activity entry is queued when the
/// response body ends).
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (parts.status, parts.headers, json)
}

/// Every API activity entry, oldest first.
pub async fn api_entries(db: &DatabaseConnection) -> Vec<LogEntry> {
    let mut entries = History::new()
        .entity_type(API_ENTITY)
        .limit(1000)
        .fetch(db)
        .await
        .expect("history")
        .entries;
    entries.reverse();
    entries
}

/// Waits (up to 10 s) until `n` API entries are stored.
pub async fn wait_for(db: &DatabaseConnection, n: usize) {
    for _ in 0..200 {
        if api_entries(db).await.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} API entries were not written in time");
}

/// Waits (polling, up to 10 s) until `condition` holds; panics if it never does.
#[track_caller]
pub fn eventually(condition: impl Fn() -> bool) -> impl std::future::Future<Output = ()> {
    let caller = std::panic::Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the condition at {caller} did not hold within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    /// `/hold` waits for a permit here: keeps a request in flight.
    pub gate: Arc<Semaphore>,
    /// `/hold` signals here once its request is in flight.
    pub held: Arc<Notify>,
}

impl AppState {
    pub fn new(db: &DatabaseConnection) -> Self {
        AppState {
            db: db.clone(),
            gate: Arc::new(Semaphore::new(0)),
            held: Arc::new(Notify::new()),
        }
    }
}

pub async fn create_post(State(s): State<AppState>, Json(body): Json<Value>) -> impl IntoResponse {
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

pub async fn edit_post(
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

/// The blog app of the axum tests, behind `layer`, with a history API where admins see all and
/// `editor` sees posts.
pub fn app(db: &DatabaseConnection, layer: AuditLayer<fn(&Parts) -> Option<Actor>>) -> Router {
    app_with(AppState::new(db), layer)
}

/// [`app`] with a state of the test's own (to hold requests in flight).
pub fn app_with(state: AppState, layer: AuditLayer<fn(&Parts) -> Option<Actor>>) -> Router {
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

/// Large batches and a long interval: entries are written only when a test flushes.
pub fn quick() -> Batching {
    Batching::new()
        .size(10_000)
        .interval(Duration::from_secs(3600))
}
