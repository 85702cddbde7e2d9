//! Retention: bounded batches, correct counts, and verification still passes afterwards.

mod common;

use common::entities::{document, post};
use common::{TestDb, all_logs};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, IntoActiveModel};
use sea_orm_audit::{Action, History, Retention, logs_for, prune, verify};

async fn post_with_updates(t: &TestDb, title: &str, updates: i32) -> post::Model {
    let p = common::new_post(title).insert(&t.db).await.unwrap();
    for n in 1..=updates {
        let mut am = p.clone().into_active_model();
        am.views = Set(n);
        am.update(&t.db).await.unwrap();
    }
    p
}

#[tokio::test]
async fn older_than_removes_old_entries_in_batches_and_verify_still_passes() {
    let t = TestDb::new().await;
    let a = post_with_updates(&t, "a", 4).await; // 5 entries
    let b = post_with_updates(&t, "b", 2).await; // 3 entries
    let cutoff = common::moment_between().await;
    let mut am = a.clone().into_active_model();
    am.views = Set(100);
    am.update(&t.db).await.unwrap();

    let report = prune(&t.db, &Retention::new().older_than(cutoff).batch_size(3))
        .await
        .unwrap();
    assert_eq!(report.removed, 8);
    assert_eq!(report.batches, 3, "8 entries, 3 per batch");
    let remaining = logs_for(&t.db, &a).await.unwrap();
    assert_eq!(remaining.len(), 1);
    assert!(logs_for(&t.db, &b).await.unwrap().is_empty());
    // One marker per batch says what it removed; the truncated chain still verifies.
    let markers = History::new()
        .action(Action::Custom("prune".into()))
        .fetch(&t.db)
        .await
        .unwrap()
        .entries;
    assert_eq!(markers.len(), 3);
    let removed: u64 = markers
        .iter()
        .map(|m| m.data["removed"].as_u64().unwrap())
        .sum();
    assert_eq!(removed, 8);
    // The wholly pruned object is written again, by its hooks and by an event: its new
    // entries continue from the head the prune removed (MySQL keeps it in `audit_chain_head`)
    // or start a new chain (elsewhere the head read finds nothing); both verify.
    let mut am = b.clone().into_active_model();
    am.views = Set(200);
    am.update(&t.db).await.unwrap();
    sea_orm_audit::Event::new("note")
        .target(&b)
        .record(&t.db)
        .await
        .unwrap();
    assert_eq!(logs_for(&t.db, &b).await.unwrap().len(), 2);
    let v = verify(&t.db).await.unwrap();
    assert!(v.is_ok(), "{v:#?}");
    // Nothing left to prune; markers are never pruned.
    assert_eq!(
        prune(&t.db, &Retention::new().older_than(chrono::Utc::now()))
            .await
            .unwrap()
            .removed,
        3
    );
    assert_eq!(
        History::new()
            .action(Action::Custom("prune".into()))
            .count(&t.db)
            .await
            .unwrap(),
        4
    );
    t.finish().await;
}

/// A marker accepts exactly the truncation it records: after a legitimate prune, deleting the
/// oldest entries of a chain is still caught, whether the chain was written before or after it.
/// `older_than` removes below the first entry written at or after the cutoff, not every entry
/// stamped before it: an entry whose clock stepped back (stamped before the cutoff, written
/// after a newer one) stays, and the chain keeps no hole.
#[tokio::test]
async fn a_clock_stepping_back_does_not_punch_a_hole_in_a_chain() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use sea_orm_audit::audit_log;
    use sea_orm_audit::chain::ProblemKind;
    let t = TestDb::new().await;
    let p = post_with_updates(&t, "clock", 1).await; // 2 entries before the cutoff
    let cutoff = common::moment_between().await;
    for n in 2..=4 {
        let mut am = p.clone().into_active_model();
        am.views = Set(n);
        am.update(&t.db).await.unwrap();
    }
    let ids: Vec<i64> = all_logs(&t.db).await.iter().map(|e| e.id).collect();
    let first = all_logs(&t.db).await[0].created_at;
    // The fourth entry stamped as old as the first (the content edit verify will name).
    audit_log::Entity::update_many()
        .col_expr(audit_log::Column::CreatedAt, Expr::value(first))
        .filter(audit_log::Column::Id.eq(ids[3]))
        .exec(&t.db)
        .await
        .unwrap();
    let report = prune(&t.db, &Retention::new().older_than(cutoff))
        .await
        .unwrap();
    assert_eq!(report.removed, 2);
    let left: Vec<i64> = logs_for(&t.db, &p)
        .await
        .unwrap()
        .iter()
        .rev()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ids[2..5]);
    let v = verify(&t.db).await.unwrap();
    let problems: Vec<(i64, bool)> = v
        .problems
        .iter()
        .map(|q| (q.id, q.kind == ProblemKind::ContentChanged))
        .collect();
    assert_eq!(problems, [(ids[3], true)], "{v:#?}");
    t.finish().await;
}

#[tokio::test]
async fn a_prune_marker_accepts_only_what_it_removed() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    use sea_orm_audit::audit_log;
    let t = TestDb::new().await;
    let tampered_before = post_with_updates(&t, "tampered before", 1).await;
    // A prefix deletion (SQL, no marker) that verify flags...
    let first = audit_log::Entity::find()
        .filter(audit_log::Column::ObjectId.eq(tampered_before.id.to_string()))
        .order_by_asc(audit_log::Column::Id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    audit_log::Entity::delete_by_id(first.id)
        .exec(&t.db)
        .await
        .unwrap();
    assert!(!verify(&t.db).await.unwrap().is_ok());
    // ...then one legitimate prune of another object's oldest entry.
    let pruned = post_with_updates(&t, "pruned", 2).await;
    let report = prune(&t.db, &Retention::new().keep_latest(2).entity_type("posts"))
        .await
        .unwrap();
    assert_eq!(report.removed, 1, "the pruned post had 3 entries");
    assert_eq!(logs_for(&t.db, &pruned).await.unwrap().len(), 2);
    // The earlier deletion is still flagged: the marker says nothing about that chain.
    let v = verify(&t.db).await.unwrap();
    assert_eq!(v.problems.len(), 1, "{v:#?}");
    assert_eq!(v.problems[0].object_id, tampered_before.id.to_string());

    // A chain written after the prune, its first three entries deleted in SQL: flagged.
    let later = post_with_updates(&t, "later", 4).await;
    let ids: Vec<i64> = audit_log::Entity::find()
        .select_only()
        .column(audit_log::Column::Id)
        .filter(audit_log::Column::ObjectId.eq(later.id.to_string()))
        .order_by_asc(audit_log::Column::Id)
        .limit(3)
        .into_tuple()
        .all(&t.db)
        .await
        .unwrap();
    audit_log::Entity::delete_many()
        .filter(audit_log::Column::Id.is_in(ids))
        .exec(&t.db)
        .await
        .unwrap();
    let v = verify(&t.db).await.unwrap();
    let flagged: Vec<&str> = v.problems.iter().map(|p| p.object_id.as_str()).collect();
    assert!(flagged.contains(&later.id.to_string().as_str()), "{v:#?}");
    // Deleting one more entry of the legitimately pruned chain is flagged too.
    let oldest_left = audit_log::Entity::find()
        .filter(audit_log::Column::ObjectId.eq(pruned.id.to_string()))
        .order_by_asc(audit_log::Column::Id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    audit_log::Entity::delete_by_id(oldest_left.id)
        .exec(&t.db)
        .await
        .unwrap();
    let v = verify(&t.db).await.unwrap();
    let flagged: Vec<&str> = v.problems.iter().map(|p| p.object_id.as_str()).collect();
    assert!(flagged.contains(&pruned.id.to_string().as_str()), "{v:#?}");
    t.finish().await;
}

#[tokio::test]
async fn keep_latest_per_object_and_per_entity_type() {
    let t = TestDb::new().await;
    let a = post_with_updates(&t, "a", 5).await; // 6 entries
    let b = post_with_updates(&t, "b", 1).await; // 2 entries
    let d = document::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        name: Set("x".into()),
    }
    .insert(&t.db)
    .await
    .unwrap();
    for n in 0..4 {
        let mut am = d.clone().into_active_model();
        am.name = Set(format!("x{n}"));
        am.update(&t.db).await.unwrap();
    }
    let report = prune(
        &t.db,
        &Retention::new()
            .keep_latest(2)
            .entity_type("posts")
            .batch_size(2),
    )
    .await
    .unwrap();
    assert_eq!(report.removed, 4, "a keeps 2 of 6, b keeps its 2");
    let kept = logs_for(&t.db, &a).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(
        kept[0].changes.as_ref().unwrap().new_value["views"],
        serde_json::json!(5),
        "the newest are kept"
    );
    assert_eq!(logs_for(&t.db, &b).await.unwrap().len(), 2);
    assert_eq!(
        logs_for(&t.db, &d).await.unwrap().len(),
        5,
        "other entity types untouched"
    );
    assert!(verify(&t.db).await.unwrap().is_ok());

    // Both limits: keep 1 per object, and only what is older than now.
    let report = prune(
        &t.db,
        &Retention::new()
            .keep_latest(1)
            .older_than(chrono::Utc::now()),
    )
    .await
    .unwrap();
    assert_eq!(report.removed, 1 + 1 + 4);
    assert!(verify(&t.db).await.unwrap().is_ok());
    assert!(
        matches!(
            prune(&t.db, &Retention::new()).await,
            Err(sea_orm_audit::Error::EmptyRetentionPolicy)
        ),
        "a policy must say what to prune"
    );
    assert!(all_logs(&t.db).await.len() >= 3);
    t.finish().await;
}
