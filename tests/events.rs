//! Events: logins, failed logins, custom actions with templated messages.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::TestDb;
use sea_orm::ActiveModelTrait;
use sea_orm_audit::{
    Action, AuditContext, Event, History, Status, Template, events, logs_for, verify,
};
use serde_json::json;

#[tokio::test]
async fn login_logout_and_failed_login() {
    let t = TestDb::new().await;
    let ip = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));
    events::login(&t.db, "alice", ip).await.unwrap();
    events::login_failed(&t.db, "alice@example.com", ip, Some("bad password"))
        .await
        .unwrap();
    events::logout(&t.db, "alice", None).await.unwrap();

    let all = History::new()
        .entity_type(events::AUTH_ENTITY)
        .fetch(&t.db)
        .await
        .unwrap()
        .entries;
    assert_eq!(all.len(), 3);
    let (logout, failed, login) = (&all[0], &all[1], &all[2]);
    assert_eq!(login.action, Action::Login);
    assert_eq!(login.actor.as_deref(), Some("alice"));
    assert_eq!(login.data["ip"], json!("203.0.113.7"));
    assert_eq!(login.object_id, "alice");
    assert_eq!(failed.action, Action::LoginFailed);
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.actor, None, "nobody was authenticated");
    assert_eq!(failed.data["identifier"], json!("alice@example.com"));
    assert_eq!(failed.data["reason"], json!("bad password"));
    assert_eq!(logout.action, Action::Logout);
    assert!(!logout.data.contains_key("ip"));
    assert_eq!(
        History::new()
            .status(Status::Failed)
            .count(&t.db)
            .await
            .unwrap(),
        1
    );
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

#[tokio::test]
async fn templated_custom_events_about_a_model() {
    let t = TestDb::new().await;
    let p = common::new_post("Lamp").insert(&t.db).await.unwrap();
    AuditContext::new()
        .actor("bob")
        .tool("example_feature")
        .scope(
            Event::new(Action::Custom("publish".into()))
                .target(&p)
                .template(
                    Template::new("Item {item} was published by {user}.")
                        .object("item", &p)
                        .value("user", "Bob"),
                )
                .data("channel", "web")
                .record(&t.db),
        )
        .await
        .unwrap();
    let history = logs_for(&t.db, &p).await.unwrap();
    assert_eq!(history.len(), 2, "the event shows in the object's history");
    let e = &history[0];
    assert_eq!(e.action, Action::Custom("publish".into()));
    assert_eq!(
        e.message.as_deref(),
        Some("Item \"Lamp\" was published by Bob.")
    );
    assert_eq!(e.actor.as_deref(), Some("bob"));
    assert_eq!(e.tool.as_deref(), Some("example_feature"));
    assert_eq!(
        e.data["template"],
        json!("Item {item} was published by {user}.")
    );
    assert_eq!(
        e.data["values"]["item"],
        json!({"entity_type": "posts", "object_id": p.id.to_string(), "text": "\"Lamp\""})
    );
    assert_eq!(e.data["values"]["user"], json!("Bob"));
    assert_eq!(e.data["channel"], json!("web"));
    assert_eq!(
        History::new()
            .tool("example_feature")
            .count(&t.db)
            .await
            .unwrap(),
        1
    );
    assert!(
        verify(&t.db).await.unwrap().is_ok(),
        "events join the object's chain"
    );
    t.finish().await;
}

#[tokio::test]
async fn a_template_with_a_missing_value_is_an_error_and_writes_nothing() {
    let t = TestDb::new().await;
    let err = Event::new("export")
        .template(Template::new("{user} exported {count} rows").value("user", "alice"))
        .record(&t.db)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no value for placeholder {count}"), "{err}");
    assert_eq!(common::all_logs(&t.db).await.len(), 0);
    // An untargeted event is keyed by its actor.
    Event::new("export")
        .actor("carol")
        .message("exported")
        .record(&t.db)
        .await
        .unwrap();
    let e = &History::new()
        .actor("carol")
        .fetch(&t.db)
        .await
        .unwrap()
        .entries[0];
    assert_eq!(
        (e.entity_type.as_str(), e.object_id.as_str()),
        (events::EVENT_ENTITY, "carol")
    );
    assert_eq!(e.action, Action::Custom("export".into()));
    t.finish().await;
}
