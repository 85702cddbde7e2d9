//! The axum integration's costs (feature `axum`): the latency the audit layer adds to a
//! response, and the activity writer's throughput against raw multi-row INSERTs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, request::Parts};
use axum::routing::post;
use http_body_util::BodyExt;
use sea_orm::{
    ActiveValue::NotSet, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    IntoActiveModel, QueryOrder, QuerySelect, TransactionTrait,
};
use sea_orm_audit::audit_log;
use sea_orm_audit::web::{ActivityLog, ActivityWriter, Actor, AuditLayer, Batching};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::stats::{Report, Samples, ratio, us};

fn resolver(parts: &Parts) -> Option<Actor> {
    let user = parts.headers.get("x-user")?.to_str().ok()?;
    Some(Actor::new(user))
}

/// A handler of the usual shape: parse JSON, one database round trip, answer JSON.
async fn handler(
    State(db): State<DatabaseConnection>,
    body: axum::Json<Value>,
) -> axum::Json<Value> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT 1",
        ))
        .await
        .ok()
        .flatten()
        .is_some();
    axum::Json(json!({"ok": row, "title": body["title"], "id": 42}))
}

fn router(db: &DatabaseConnection) -> Router {
    Router::new()
        .route("/posts", post(handler))
        .with_state(db.clone())
}

fn request(i: usize) -> Request<Body> {
    let body = json!({"title": format!("post {i}"), "body": "Lorem ipsum dolor sit amet", "password": "hunter2"});
    let mut req = Request::builder()
        .method("POST")
        .uri("/posts?draft=1")
        .header("content-type", "application/json")
        .header("user-agent", "bench/1")
        .header("x-user", "alice")
        .body(Body::from(body.to_string()))
        .expect("request");
    req.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:50000".parse::<SocketAddr>().expect("addr"),
    ));
    req
}

async fn call(app: &Router, i: usize) -> Duration {
    let start = Instant::now();
    let response = app.clone().oneshot(request(i)).await.expect("infallible");
    let _ = response.into_body().collect().await.expect("body");
    start.elapsed()
}

/// Requests through a bare router, the layer (context only), and the layer with the activity
/// log, interleaved; the writer flushes in the background as it would in production.
pub(super) async fn layer_latency(
    name: &str,
    db: &DatabaseConnection,
    requests: usize,
    report: &mut Report,
) -> Result<(), DbErr> {
    let writer = ActivityWriter::spawn(db.clone(), Batching::new());
    let bare = router(db);
    let context = router(db).layer(AuditLayer::new(resolver as fn(&Parts) -> Option<Actor>));
    let activity = router(db).layer(
        AuditLayer::new(resolver as fn(&Parts) -> Option<Actor>)
            .activity(ActivityLog::new(&writer)),
    );
    let apps = [&bare, &context, &activity];
    let mut samples: [Samples; 3] = Default::default();
    for i in 0..requests + requests / 10 {
        for k in 0..3 {
            let which = (i + k) % 3;
            let d = call(apps[which], i).await;
            if i >= requests / 10 {
                samples[which].push(d); // the first tenth warms up
            }
        }
    }
    let stats = writer.shutdown().await;
    assert_eq!(stats.lost + stats.dropped, 0, "{stats:?}");
    let [bare, context, activity] = &samples;
    report.line(format!(
        "| {name} | {} / {} | {} / {} | {} / {} | {} | {} |",
        us(bare.median()),
        us(bare.p99()),
        us(context.median()),
        us(context.p99()),
        us(activity.median()),
        us(activity.p99()),
        ratio(context.median(), bare.median()),
        ratio(activity.median(), bare.median()),
    ));
    Ok(())
}

/// Rows per multi-row INSERT, as the library uses them.
fn rows_per_insert(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Postgres => 100,
        _ => 500,
    }
}

/// `entries` activity entries written by the writer (queued first, then one flush: one
/// transaction of multi-row INSERTs) against the same rows inserted raw the same way.
pub(super) async fn writer_throughput(
    name: &str,
    db: &DatabaseConnection,
    entries: usize,
    rounds: usize,
    report: &mut Report,
) -> Result<(), DbErr> {
    let mut lib = Samples::default();
    let mut raw = Samples::default();
    for round in 0..rounds * 2 {
        let raw_first = round % 2 == 1;
        if raw_first == (round % 4 < 2) {
            lib.push(writer_round(db, entries).await?);
            raw.push(raw_round(db, entries).await?);
        } else {
            raw.push(raw_round(db, entries).await?);
            lib.push(writer_round(db, entries).await?);
        }
    }
    let per_sec = |d: Duration| format!("{:.0}", entries as f64 / d.as_secs_f64());
    report.line(format!(
        "| {name} | {entries} | {} | {} | {} |",
        per_sec(lib.median()),
        per_sec(raw.median()),
        ratio(lib.median(), raw.median()),
    ));
    Ok(())
}

async fn writer_round(db: &DatabaseConnection, entries: usize) -> Result<Duration, DbErr> {
    let writer = ActivityWriter::spawn(
        db.clone(),
        Batching::new()
            .size(entries)
            .capacity(entries)
            .interval(Duration::from_secs(3600)),
    );
    let app = router(db).layer(
        AuditLayer::new(resolver as fn(&Parts) -> Option<Actor>)
            .activity(ActivityLog::new(&writer)),
    );
    for i in 0..entries {
        call(&app, i).await;
    }
    let start = Instant::now();
    writer.flush().await.map_err(DbErr::from)?;
    let took = start.elapsed();
    let stats = writer.shutdown().await;
    assert_eq!(stats.written as usize, entries, "{stats:?}");
    Ok(took)
}

async fn raw_round(db: &DatabaseConnection, entries: usize) -> Result<Duration, DbErr> {
    // The newest activity rows, as the writer stored them, inserted again.
    let rows: Vec<audit_log::ActiveModel> = audit_log::Entity::find()
        .order_by_desc(audit_log::Column::Id)
        .limit(entries as u64)
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            let mut am = row.into_active_model();
            am.id = NotSet;
            am
        })
        .collect();
    let per = rows_per_insert(db.get_database_backend());
    let start = Instant::now();
    let txn = db.begin().await?;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(per).collect();
        audit_log::Entity::insert_many(chunk).exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(start.elapsed())
}
