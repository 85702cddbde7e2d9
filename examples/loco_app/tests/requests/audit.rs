//! sea-orm-audit in this app: changes carry the token's user and name, logins and failed
//! logins are events, requests are in the API activity log, and the history is served.
use loco_app::app::App;
use loco_rs::{
    app::{AppContext, Hooks},
    testing::prelude::*,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use sea_orm_audit::{audit_log, web::ActivityWriter};
use serial_test::serial;

use super::prepare_data;

async fn entries(ctx: &AppContext, entity_type: &str) -> Vec<audit_log::Model> {
    audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq(entity_type))
        .order_by_asc(audit_log::Column::Id)
        .all(&ctx.db)
        .await
        .unwrap()
}

#[tokio::test]
#[serial]
async fn changes_logins_and_requests_are_audited() {
    request::<App, _, _>(|request, ctx| async move {
        let logged_in = prepare_data::init_user_login(&request, &ctx).await;
        let pid = logged_in.user.pid.to_string();
        let (auth, bearer) = prepare_data::auth_header(&logged_in.token);

        let bad = request
            .post("/api/auth/login")
            .json(&serde_json::json!({"email": "test@loco.com", "password": "guess"}))
            .await;
        assert_eq!(bad.status_code(), 401);
        let created = request
            .post("/api/notes")
            .add_header(auth.clone(), bearer.clone())
            .json(&serde_json::json!({"title": "hello", "content": "first"}))
            .await;
        assert_eq!(created.status_code(), 201);
        let id = created.json::<serde_json::Value>()["id"].as_i64().unwrap();
        request
            .put(&format!("/api/notes/{id}"))
            .add_header(auth.clone(), bearer.clone())
            .json(&serde_json::json!({"title": "hello, audit", "content": "first"}))
            .await
            .assert_status_ok();
        // A forged token: loco refuses the request, nothing is written.
        let forged = request
            .post("/api/notes")
            .add_header(
                auth.clone(),
                "Bearer eyJhbGciOiJIUzUxMiJ9.eyJwaWQiOiJ4In0.c2ln",
            )
            .json(&serde_json::json!({"title": "forged", "content": "x"}))
            .await;
        assert_eq!(forged.status_code(), 401);

        // The user's own rows: created anonymously (registration), then verified.
        let users = entries(&ctx, "users").await;
        assert_eq!(users[0].action, "create");
        assert_eq!(users[0].actor, None);
        let new = &users[0].changes.as_ref().unwrap()["new_value"];
        assert_eq!(new["password"], sea_orm_audit::FILTERED);
        assert_eq!(new["api_key"], sea_orm_audit::FILTERED);

        let notes = entries(&ctx, "notes").await;
        assert_eq!(
            notes.len(),
            2,
            "create and update; the forged request wrote nothing"
        );
        for n in &notes {
            assert_eq!(n.actor.as_deref(), Some(pid.as_str()));
            assert_eq!(n.data.as_ref().unwrap()["name"], "loco");
        }
        assert_eq!(
            notes[1].changes.as_ref().unwrap()["new_value"]["title"],
            "hello, audit"
        );

        let auth_events = entries(&ctx, "auth").await;
        let events: Vec<(&str, Option<&str>)> = auth_events
            .iter()
            .map(|e| (e.action.as_str(), e.actor.as_deref()))
            .collect();
        assert_eq!(
            events,
            [("login", Some(pid.as_str())), ("login_failed", None)]
        );
        assert!(!auth_events[1]
            .changes
            .iter()
            .any(|c| c.to_string().contains("guess")));

        // The app's on_shutdown hook (loco runs it when the shutdown signal arrives) writes what
        // the activity writer still holds.
        App::on_shutdown(&ctx).await;
        let writer = ctx.shared_store.get::<ActivityWriter>().unwrap();
        assert!(writer.stats().written >= 6, "{:?}", writer.stats());
        let api = entries(&ctx, "api").await;
        let logins: Vec<&str> = api
            .iter()
            .filter(|e| e.data.as_ref().unwrap()["route"] == "/api/auth/login")
            .map(|e| e.status.as_str())
            .collect();
        assert_eq!(logins, ["success", "failed"]);
        assert!(api
            .iter()
            .all(|e| !e.data.as_ref().unwrap().to_string().contains("guess")));

        let history = request
            .get(&format!("/api/audit/notes/{id}/log"))
            .add_header(auth.clone(), bearer.clone())
            .await;
        history.assert_status_ok();
        assert_eq!(history.json::<serde_json::Value>()["count"], 2);
        let everything = request
            .get("/api/audit/entries")
            .add_header(auth, bearer)
            .await;
        assert_eq!(everything.status_code(), 403);
    })
    .await;
}
