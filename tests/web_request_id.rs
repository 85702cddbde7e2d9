//! Request ids through tower-http's `MakeRequestId`: the audit layer and tower-http's
//! request-id layers (`SetRequestIdLayer`, `PropagateRequestIdLayer`) agree on one id, in
//! whichever order they are stacked, and any `MakeRequestId` plugs into the audit layer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use axum::routing::post;
use axum::{Json, Router};
use common::TestDb;
use common::web::{api_entries, layer, request, send};
use sea_orm::{ActiveModelTrait, DatabaseConnection};
use sea_orm_audit::logs_for_id;
use sea_orm_audit::web::{
    ActivityLog, ActivityWriter, Batching, MakeRequestId, RequestContext, RequestId,
};
use serde_json::{Value, json};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// Ids `prefix-1`, `prefix-2`, ..., counting how many it made.
#[derive(Clone)]
struct Counting {
    prefix: &'static str,
    made: Arc<AtomicUsize>,
}

impl Counting {
    fn new(prefix: &'static str) -> Self {
        Counting {
            prefix,
            made: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }
}

impl MakeRequestId for Counting {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.made.fetch_add(1, Ordering::SeqCst) + 1;
        let id = HeaderValue::from_str(&format!("{}-{n}", self.prefix)).ok()?;
        Some(RequestId::new(id))
    }
}

/// Creates a post (an audited change) and answers with the id as the handler sees it three
/// ways: tower-http's extension, the audit layer's context and the request header.
async fn create(
    State(db): State<DatabaseConnection>,
    Extension(id): Extension<RequestId>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Json<Value> {
    let title = format!("post of {}", ctx.request_id);
    let post = common::new_post(&title).insert(&db).await.expect("insert");
    Json(json!({
        "post": post.id,
        "extension": id.header_value().to_str().unwrap(),
        "context": ctx.request_id,
        "header": headers.get("x-request-id").map(|v| v.to_str().unwrap()),
    }))
}

fn routes(db: &DatabaseConnection) -> Router {
    Router::new()
        .route("/posts", post(create))
        .with_state(db.clone())
}

fn writer(db: &DatabaseConnection) -> ActivityWriter {
    ActivityWriter::spawn(
        db.clone(),
        Batching::new()
            .size(10_000)
            .interval(std::time::Duration::from_secs(3600)),
    )
}

/// Sends a POST and checks that one id is everywhere: the response header, the handler's three
/// views of it, the model change's context data and the API activity entry. Returns the id.
async fn one_id_everywhere(t: &TestDb, app: &Router, writer: &ActivityWriter) -> String {
    let before = api_entries(&t.db).await.len();
    let (status, headers, body) =
        send(app, request(Method::POST, "/posts", Some("alice"), None)).await;
    assert!(status.is_success(), "{status} {body}");
    let id = headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(body["extension"], id.as_str(), "{body}");
    assert_eq!(body["context"], id.as_str(), "{body}");
    assert_eq!(body["header"], id.as_str(), "{body}");
    let change = logs_for_id(&t.db, "posts", &body["post"].to_string())
        .await
        .unwrap();
    assert_eq!(change.len(), 1);
    assert_eq!(change[0].data["request_id"], id.as_str());
    writer.flush().await.unwrap();
    let entries = api_entries(&t.db).await;
    assert_eq!(entries.len(), before + 1);
    assert_eq!(entries[before].object_id, id);
    assert_eq!(entries[before].data["request_id"], id.as_str());
    id
}

#[tokio::test]
async fn an_outer_set_request_id_layer_decides_the_id() {
    let t = TestDb::new().await;
    let writer = writer(&t.db);
    // tower-http's layer outside ours, on x-request-id and on a header of its own.
    let outer = Counting::new("outer");
    let app = routes(&t.db)
        .layer(layer().activity(ActivityLog::new(&writer)))
        .layer(SetRequestIdLayer::x_request_id(outer.clone()));
    assert_eq!(one_id_everywhere(&t, &app, &writer).await, "outer-1");
    assert_eq!(one_id_everywhere(&t, &app, &writer).await, "outer-2");
    let traced = Counting::new("trace");
    let app = routes(&t.db)
        .layer(layer().activity(ActivityLog::new(&writer)))
        .layer(SetRequestIdLayer::new(
            HeaderName::from_static("x-trace-id"),
            traced.clone(),
        ));
    assert_eq!(one_id_everywhere(&t, &app, &writer).await, "trace-1");
    assert_eq!((outer.made(), traced.made()), (2, 1));
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn inner_tower_http_layers_keep_our_id() {
    let t = TestDb::new().await;
    let writer = writer(&t.db);
    let inner = Counting::new("inner");
    let app = routes(&t.db)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(inner.clone()))
        .layer(layer().activity(ActivityLog::new(&writer)));
    let id = one_id_everywhere(&t, &app, &writer).await;
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(inner.made(), 0, "the request reached it with our id");
    writer.shutdown().await;
    t.finish().await;
}

#[tokio::test]
async fn any_make_request_id_plugs_into_the_layer() {
    let t = TestDb::new().await;
    let writer = writer(&t.db);
    let mine = Counting::new("mine");
    let app = routes(&t.db).layer(
        layer()
            .request_id(mine.clone())
            .activity(ActivityLog::new(&writer)),
    );
    assert_eq!(one_id_everywhere(&t, &app, &writer).await, "mine-1");
    assert_eq!(one_id_everywhere(&t, &app, &writer).await, "mine-2");
    // An acceptable incoming id is kept; the maker is not asked.
    let mut req = request(Method::POST, "/posts", Some("alice"), None);
    req.headers_mut()
        .insert("x-request-id", HeaderValue::from_static("client-9"));
    let (_, headers, body) = send(&app, req).await;
    assert_eq!(headers["x-request-id"], "client-9");
    assert_eq!(body["context"], "client-9");
    assert_eq!(mine.made(), 2);
    writer.flush().await.unwrap();
    assert_eq!(api_entries(&t.db).await[2].object_id, "client-9");

    // tower-http's own UUID maker.
    let app = routes(&t.db).layer(
        layer()
            .request_id(MakeRequestUuid)
            .activity(ActivityLog::new(&writer)),
    );
    let id = one_id_everywhere(&t, &app, &writer).await;
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    writer.shutdown().await;
    t.finish().await;
}
