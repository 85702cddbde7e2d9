//! Run with: `cargo run --example axum_blog --features axum`
//!
//! A JSON blog API on SQLite with the whole audit trail: the audit layer attributes every
//! change to the caller (a bearer token from `POST /login`), logins and failed logins are
//! events, every API request is an activity entry written in batches, and the history API
//! and viewer are nested at `/audit`. `README.md` ("axum") shows `curl` calls against it.
//!
//! Environment: `PORT` (default 3000; it listens on 127.0.0.1), `DATABASE_URL` (default an
//! in-memory SQLite database).

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr,
    EntityTrait, IntoActiveModel, QueryOrder, Schema,
};
use sea_orm_audit::events;
use sea_orm_audit::web::{
    ActivityLog, ActivityNote, ActivityWriter, Actor, AuditLayer, Batching, HistoryApi,
    RequestContext, Scope,
};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use serde::Deserialize;
use serde_json::json;

mod post {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, sea_orm_audit::Auditable,
    )]
    #[sea_orm(table_name = "posts")]
    #[audit(entity_type = "post")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub author: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        sea_orm_audit_migration::migrations()
    }
}

/// Demo users: name, password, admin.
const USERS: &[(&str, &str, bool)] = &[
    ("alice", "alice-password", true),
    ("bob", "bob-password", false),
];

type Tokens = Arc<Mutex<HashMap<String, String>>>;

#[derive(Clone)]
struct App {
    db: DatabaseConnection,
    tokens: Tokens,
}

/// Errors as JSON.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<DbErr> for ApiError {
    fn from(e: DbErr) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

fn actor(ctx: &RequestContext) -> Result<&Actor, ApiError> {
    ctx.actor.as_ref().ok_or(ApiError(
        StatusCode::UNAUTHORIZED,
        "log in first: POST /login".into(),
    ))
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(
    State(app): State<App>,
    ctx: RequestContext,
    Json(login): Json<Login>,
) -> Result<Response, ApiError> {
    let known = USERS
        .iter()
        .any(|(user, password, _)| *user == login.username && *password == login.password);
    if !known {
        // Records who tried, never the password.
        events::login_failed(&app.db, &login.username, ctx.ip, Some("bad credentials")).await?;
        return Err(ApiError(StatusCode::UNAUTHORIZED, "bad credentials".into()));
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    app.tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.clone(), login.username.clone());
    events::login(&app.db, &login.username, ctx.ip).await?;
    let note =
        ActivityNote::message(format!("{} logged in", login.username)).actor(&login.username);
    Ok((
        note,
        Json(json!({ "access": token, "user": login.username })),
    )
        .into_response())
}

async fn list(State(app): State<App>, ctx: RequestContext) -> Result<Response, ApiError> {
    actor(&ctx)?;
    let posts = post::Entity::find()
        .order_by_asc(post::Column::Id)
        .all(&app.db)
        .await?;
    Ok(Json(posts).into_response())
}

async fn find(db: &DatabaseConnection, id: i32) -> Result<post::Model, ApiError> {
    post::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ApiError(StatusCode::NOT_FOUND, format!("no post {id}")))
}

async fn show(
    State(app): State<App>,
    ctx: RequestContext,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    actor(&ctx)?;
    let post = find(&app.db, id).await?;
    Ok((ActivityNote::default().target(&post), Json(post)).into_response())
}

#[derive(Deserialize)]
struct NewPost {
    title: String,
    body: String,
}

async fn create(
    State(app): State<App>,
    ctx: RequestContext,
    Json(new): Json<NewPost>,
) -> Result<Response, ApiError> {
    let author = actor(&ctx)?.id.clone();
    // The audit layer's context is current here: the log row gets actor, IP and request id.
    let post = post::ActiveModel {
        title: Set(new.title),
        body: Set(new.body),
        author: Set(author),
        ..Default::default()
    }
    .insert(&app.db)
    .await?;
    let note = ActivityNote::default().target(&post);
    Ok((StatusCode::CREATED, note, Json(post)).into_response())
}

#[derive(Deserialize)]
struct Edit {
    title: Option<String>,
    body: Option<String>,
}

async fn edit(app: &App, ctx: &RequestContext, id: i32, edit: Edit) -> Result<Response, ApiError> {
    actor(ctx)?;
    let mut post = find(&app.db, id).await?.into_active_model();
    if let Some(title) = edit.title {
        post.title = Set(title);
    }
    if let Some(body) = edit.body {
        post.body = Set(body);
    }
    let post = post.update(&app.db).await?;
    Ok((ActivityNote::default().target(&post), Json(post)).into_response())
}

async fn patch(
    State(app): State<App>,
    ctx: RequestContext,
    Path(id): Path<i32>,
    Json(changes): Json<Edit>,
) -> Result<Response, ApiError> {
    edit(&app, &ctx, id, changes).await
}

async fn put(
    State(app): State<App>,
    ctx: RequestContext,
    Path(id): Path<i32>,
    Json(post): Json<NewPost>,
) -> Result<Response, ApiError> {
    let whole = Edit {
        title: Some(post.title),
        body: Some(post.body),
    };
    edit(&app, &ctx, id, whole).await
}

async fn remove(
    State(app): State<App>,
    ctx: RequestContext,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    actor(&ctx)?;
    let post = find(&app.db, id).await?;
    let note = ActivityNote::default().target(&post);
    post.into_active_model().delete(&app.db).await?;
    Ok((StatusCode::NO_CONTENT, note, ()).into_response())
}

async fn connect() -> Result<DatabaseConnection, DbErr> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite::memory:".into());
    let mut options = ConnectOptions::new(url.clone());
    if url.starts_with("sqlite") {
        // One connection: an in-memory database exists once per connection.
        options.max_connections(1);
    }
    options.sqlx_logging(false);
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    let schema = Schema::new(db.get_database_backend());
    let mut table = schema.create_table_from_entity(post::Entity);
    db.execute(table.if_not_exists()).await?;
    Ok(db)
}

fn router(app: App, writer: &ActivityWriter) -> Router {
    let tokens = app.tokens.clone();
    // A bearer token from `POST /login`; alice is the admin.
    let resolver = move |parts: &axum::http::request::Parts| {
        let header = parts.headers.get("authorization")?.to_str().ok()?;
        let token = header.strip_prefix("Bearer ")?.trim();
        let user = tokens.lock().ok()?.get(token).cloned()?;
        let admin = USERS.iter().any(|(name, _, admin)| *name == user && *admin);
        Some(Actor::new(user).claim("admin", admin))
    };
    let history = HistoryApi::new(app.db.clone())
        .permission(|actor: &Actor, _: &Scope<'_>| actor.claims.get("admin") == Some(&json!(true)));
    let activity = ActivityLog::new(writer)
        .skip_route("/health")
        .skip_route("/audit/viewer")
        .allow_anonymous("/login")
        .event_name("POST /login", "Log in")
        .event_name("GET /posts", "List posts")
        .event_name("POST /posts", "Create post")
        .event_name("GET /posts/{id}", "Show post")
        .event_name("PUT /posts/{id}", "Replace post")
        .event_name("PATCH /posts/{id}", "Edit post")
        .event_name("DELETE /posts/{id}", "Delete post");
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/login", post(login))
        .route("/posts", get(list).post(create))
        .route(
            "/posts/{id}",
            get(show).put(put).patch(patch).delete(remove),
        )
        .with_state(app)
        .nest("/audit", history.into_router())
        .layer(AuditLayer::new(resolver).activity(activity))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = connect().await?;
    let writer =
        ActivityWriter::spawn(db.clone(), Batching::new().interval(Duration::from_secs(1)));
    let app = App {
        db: db.clone(),
        tokens: Tokens::default(),
    };
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!("axum_blog listening on http://{addr}");
    println!("  viewer:  http://{addr}/audit/viewer  (paste the token from POST /login)");
    println!(
        "  try:     curl -s -X POST http://{addr}/login -H 'content-type: application/json' \
         -d '{{\"username\":\"alice\",\"password\":\"alice-password\"}}'"
    );
    axum::serve(
        listener,
        router(app, &writer).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    // The server waited for requests in flight; now write every queued activity entry.
    let stats = writer.shutdown().await;
    println!(
        "stopped: {} activity entries written, {} dropped, {} lost",
        stats.written, stats.dropped, stats.lost
    );
    Ok(())
}
