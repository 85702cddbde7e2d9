//! Fixtures of the axum tests: a stand-in auth layer, requests sent in process through a real
//! router, and the API activity entries read back.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, request::Parts};
use http_body_util::BodyExt;
use sea_orm::DatabaseConnection;
use sea_orm_audit::web::{API_ENTITY, Actor, AuditLayer};
use sea_orm_audit::{History, LogEntry};
use serde_json::Value;
use tower::ServiceExt;

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
