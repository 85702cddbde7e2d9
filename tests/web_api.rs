//! The history API and its viewer behind the axum layer, against the real database of the
//! selected backend: lists, filters, pages, permissions, and reads recorded in the log.

mod common;

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::routing::post;
use common::TestDb;
use common::web::{AppState, api_entries, app, create_post, layer, quick, request, send};
use http_body_util::BodyExt;
use sea_orm_audit::Action;
use sea_orm_audit::web::{API_ENTITY, ActivityLog, ActivityWriter, HistoryApi};
use serde_json::{Value, json};
use tower::ServiceExt;

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
