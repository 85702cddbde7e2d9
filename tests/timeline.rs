//! Point in time: states at a time and after an entry, deleted objects, restore and revert.

mod common;

use common::entities::{document, kitchen, post, translation};
use common::{TestDb, new_post};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, ModelTrait};
use sea_orm_audit::timeline::{
    self, deleted, restore, restore_with, revert, state_after, state_at,
};
use sea_orm_audit::{Action, AuditContext, logs_for, logs_for_id, verify};
use serde_json::json;

async fn set_views(t: &TestDb, p: &post::Model, views: i32) -> post::Model {
    let mut am = p.clone().into_active_model();
    am.views = Set(views);
    am.update(&t.db).await.unwrap()
}

#[tokio::test]
async fn state_at_a_time_and_after_an_entry() {
    let t = TestDb::new().await;
    let p = new_post("timeline").insert(&t.db).await.unwrap();
    set_views(&t, &p, 1).await;
    let between = common::moment_between().await;
    set_views(&t, &p, 2).await;
    let id = p.id.to_string();

    let then = state_at(&t.db, "posts", &id, between)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(then["views"], json!(1));
    assert_eq!(then["title"], json!("timeline"));
    let now = state_at(&t.db, "posts", &id, chrono::Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now["views"], json!(2));
    let before_anything = state_at(&t.db, "posts", &id, between - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(before_anything, None);

    let history = logs_for(&t.db, &p).await.unwrap();
    let create = history.last().unwrap().id;
    assert_eq!(
        state_after(&t.db, "posts", &id, create)
            .await
            .unwrap()
            .unwrap()["views"],
        json!(0)
    );
    assert!(
        state_after(&t.db, "posts", "999", create).await.is_err(),
        "entry of another object"
    );
    t.finish().await;
}

#[tokio::test]
async fn deleted_objects_and_restore() {
    let t = TestDb::new().await;
    let keep = new_post("kept").insert(&t.db).await.unwrap();
    let gone = set_views(&t, &new_post("gone").insert(&t.db).await.unwrap(), 5).await;
    let back = new_post("back again").insert(&t.db).await.unwrap();
    AuditContext::new()
        .actor("dora")
        .scope(gone.clone().delete(&t.db))
        .await
        .unwrap();
    back.clone().delete(&t.db).await.unwrap();
    post::ActiveModel {
        id: Set(back.id),
        ..new_post("back again")
    }
    .insert(&t.db)
    .await
    .unwrap();

    let list = deleted::<post::Model, _>(&t.db).await.unwrap();
    assert_eq!(
        list.len(),
        1,
        "re-created objects are not deleted: {list:?}"
    );
    assert_eq!(list[0].object_id, gone.id.to_string());
    assert_eq!(list[0].deleted_by.as_deref(), Some("dora"));
    assert_eq!(list[0].last_state["views"], json!(5));

    let restored = restore::<post::ActiveModel, _>(&t.db, &gone.id.to_string())
        .await
        .unwrap();
    assert_eq!(restored.id, gone.id);
    assert_eq!(
        (
            restored.title.as_str(),
            restored.body.as_str(),
            restored.views
        ),
        ("gone", "body", 5)
    );
    let history = logs_for(&t.db, &restored).await.unwrap();
    assert_eq!(history[0].action, Action::Create, "the restore is logged");
    assert!(deleted::<post::Model, _>(&t.db).await.unwrap().is_empty());
    // The crate's own conditions are variants a caller can match.
    assert!(matches!(
        restore::<post::ActiveModel, _>(&t.db, &keep.id.to_string()).await,
        Err(sea_orm_audit::Error::NotDeleted { .. })
    ));
    assert!(matches!(
        restore::<post::ActiveModel, _>(&t.db, "424242").await,
        Err(sea_orm_audit::Error::NoHistory { .. })
    ));
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

#[tokio::test]
async fn a_delete_entry_that_cannot_be_read_is_named_and_nothing_is_written() {
    let t = TestDb::new().await;
    let p = new_post("gone").insert(&t.db).await.unwrap();
    let id = p.id.to_string();
    p.clone().delete(&t.db).await.unwrap();
    let delete = logs_for_id(&t.db, "posts", &id).await.unwrap()[0].id;
    common::store_unreadable_changes(&t, delete).await;
    let named = format!("audit_log row {delete}: cannot be read");
    let error = deleted::<post::Model, _>(&t.db).await.unwrap_err();
    assert!(error.to_string().contains(&named), "{error}");
    let error = restore::<post::ActiveModel, _>(&t.db, &id)
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&named), "{error}");
    let error = revert::<post::ActiveModel, _>(&t.db, delete)
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&named), "{error}");
    assert!(
        post::Entity::find_by_id(p.id)
            .one(&t.db)
            .await
            .unwrap()
            .is_none(),
        "nothing restored from an entry that could not be read"
    );
    let error = logs_for_id(&t.db, "posts", &id).await.unwrap_err();
    assert!(error.to_string().contains(&named), "{error}");
    t.finish().await;
}

#[tokio::test]
async fn masked_columns_must_be_filled_to_restore() {
    let t = TestDb::new().await;
    let mut am = new_post("secretive");
    am.secret = Set(Some("hunter2".into()));
    let p = am.insert(&t.db).await.unwrap();
    p.clone().delete(&t.db).await.unwrap();
    let err = restore::<post::ActiveModel, _>(&t.db, &p.id.to_string())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("masked column(s) secret"), "{err}");
    let restored = restore_with::<post::ActiveModel, _, _>(&t.db, &p.id.to_string(), |am| {
        am.secret = Set(Some("reset-me".into()));
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(restored.secret.as_deref(), Some("reset-me"));
    assert_eq!(restored.title, "secretive");
    t.finish().await;
}

#[tokio::test]
async fn revert_update_create_and_delete() {
    let t = TestDb::new().await;
    let p = new_post("revertible").insert(&t.db).await.unwrap();
    let p = set_views(&t, &p, 7).await;
    let mut am = p.clone().into_active_model();
    am.body = Set("later edit".into());
    am.update(&t.db).await.unwrap();
    let history = logs_for(&t.db, &p).await.unwrap();
    let views_change = history[1].id;

    let reverted = revert::<post::ActiveModel, _>(&t.db, views_change)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reverted.views, 0, "the change is undone");
    assert_eq!(
        reverted.body, "later edit",
        "later changes to other columns stay"
    );
    assert_eq!(
        logs_for(&t.db, &p).await.unwrap()[0].action,
        Action::Update,
        "the revert is logged"
    );

    let create = logs_for(&t.db, &p).await.unwrap().last().unwrap().id;
    assert_eq!(
        revert::<post::ActiveModel, _>(&t.db, create).await.unwrap(),
        None
    );
    assert!(
        post::Entity::find_by_id(p.id)
            .one(&t.db)
            .await
            .unwrap()
            .is_none()
    );
    let delete = logs_for(&t.db, &p).await.unwrap()[0].id;
    let back = revert::<post::ActiveModel, _>(&t.db, delete)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.body, "later edit");

    let doc_entry = {
        let d = document::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            name: Set("d".into()),
        }
        .insert(&t.db)
        .await
        .unwrap();
        logs_for(&t.db, &d).await.unwrap()[0].id
    };
    let err = revert::<post::ActiveModel, _>(&t.db, doc_entry)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is about document"), "{err}");
    assert!(
        revert::<post::ActiveModel, _>(&t.db, 987_654)
            .await
            .is_err()
    );
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

#[tokio::test]
async fn restore_every_key_shape_and_column_type() {
    let t = TestDb::new().await;
    // Composite key.
    let tr = translation::ActiveModel {
        post_id: Set(3),
        lang: Set("fr".into()),
        body: Set("salut".into()),
    }
    .insert(&t.db)
    .await
    .unwrap();
    tr.clone().delete(&t.db).await.unwrap();
    // text_body is masked on this entity.
    let back = restore_with::<translation::ActiveModel, _, _>(&t.db, r#"[3,"fr"]"#, |am| {
        am.body = Set("salut".into());
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(back, tr);
    // UUID key, and revert of its update through the key.
    let d = document::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        name: Set("v1".into()),
    }
    .insert(&t.db)
    .await
    .unwrap();
    let mut am = d.clone().into_active_model();
    am.name = Set("v2".into());
    am.update(&t.db).await.unwrap();
    let change = logs_for(&t.db, &d).await.unwrap()[0].id;
    let reverted = revert::<document::ActiveModel, _>(&t.db, change)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reverted, d);
    d.clone().delete(&t.db).await.unwrap();
    assert_eq!(
        restore::<document::ActiveModel, _>(&t.db, &d.id.to_string())
            .await
            .unwrap(),
        d
    );

    // Every column type comes back as it was stored.
    let k = kitchen::ActiveModel {
        mood: Set(kitchen::Mood::Grumpy),
        maybe_mood: Set(Some(kitchen::Mood::Happy)),
        big: Set(i64::MIN),
        flag: Set(true),
        ..common::kitchen_sample(70_000)
    }
    .insert(&t.db)
    .await
    .unwrap();
    k.clone().delete(&t.db).await.unwrap();
    let back = restore::<kitchen::ActiveModel, _>(&t.db, &k.id.to_string())
        .await
        .unwrap();
    assert_eq!(back, k, "every column restored as stored");
    let entries = logs_for_id(&t.db, "kitchen", &k.id.to_string())
        .await
        .unwrap();
    assert_eq!(
        timeline::replay(entries.iter().rev()).unwrap()["big"],
        json!(i64::MIN)
    );
    t.finish().await;
}
