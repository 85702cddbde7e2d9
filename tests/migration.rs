//! The shipped migration: stable name, idempotent `up`, reversible `down`, on every backend.

mod common;

use common::{Migrator, TestDb};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_audit_migration::CreateAuditLog;
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};

/// The shipped migration creates six indexes.
const INDEXES: i64 = 6;

async fn has_table(t: &TestDb) -> bool {
    t.db.execute_unprepared("SELECT 1 FROM audit_log WHERE 1 = 0")
        .await
        .is_ok()
}

async fn index_count(t: &TestDb) -> i64 {
    let sql = match t.backend() {
        DbBackend::Postgres => {
            "SELECT COUNT(*) AS n FROM pg_indexes WHERE indexname LIKE 'idx_audit_log_%'"
        }
        DbBackend::MySql => {
            "SELECT COUNT(DISTINCT index_name) AS n FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND index_name LIKE 'idx_audit_log_%'"
        }
        _ => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_audit_log_%'"
        }
    };
    let row =
        t.db.query_one_raw(Statement::from_string(t.backend(), sql))
            .await
            .unwrap()
            .unwrap();
    row.try_get("", "n").unwrap()
}

#[tokio::test]
async fn up_is_idempotent_and_down_reverses_it() {
    let t = TestDb::new().await;
    assert_eq!(
        CreateAuditLog.name(),
        "m20261122_000001_sea_orm_audit_create_audit_log"
    );
    assert!(has_table(&t).await);
    assert_eq!(index_count(&t).await, INDEXES);

    // Running `up` again (a second Migrator listing it, a manual re-run) changes nothing.
    let manager = SchemaManager::new(&t.db);
    CreateAuditLog.up(&manager).await.unwrap();
    CreateAuditLog.up(&manager).await.unwrap();
    assert_eq!(index_count(&t).await, INDEXES);

    Migrator::down(&t.db, None).await.unwrap();
    assert!(!has_table(&t).await);
    Migrator::up(&t.db, None).await.unwrap();
    assert!(has_table(&t).await);
    assert_eq!(index_count(&t).await, INDEXES);
    t.finish().await;
}

/// Object ids that differ only in case or accents are different objects on every backend:
/// MySQL/MariaDB's default collations would merge them (`ByteExactKeys` makes the identity
/// columns byte-exact there).
#[tokio::test]
async fn ids_differing_in_case_or_accents_have_histories_of_their_own() {
    use sea_orm_audit::{Event, History, logs_for_id, verify};
    let t = TestDb::new().await;
    let ids = ["key", "Key", "KEY", "cafe", "café", "CAFÉ"];
    for id in ids {
        for action in ["first", "second"] {
            Event::new(action)
                .target_id("doc", id)
                .actor(id)
                .record(&t.db)
                .await
                .unwrap();
        }
    }
    for id in ids {
        let log = logs_for_id(&t.db, "doc", id).await.unwrap();
        assert_eq!(log.len(), 2, "{id}: {log:?}");
        assert!(log.iter().all(|e| e.object_id == id), "{id}: {log:?}");
        let by_actor = History::new().actor(id).fetch(&t.db).await.unwrap();
        assert_eq!(by_actor.entries.len(), 2, "actor {id}");
    }
    let report = verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{report:?}");

    if t.backend() == DbBackend::MySql {
        let row =
            t.db.query_one_raw(Statement::from_string(
                DbBackend::MySql,
                "SELECT COUNT(*) AS n FROM information_schema.columns WHERE table_schema = \
                 DATABASE() AND table_name = 'audit_log' AND collation_name = 'utf8mb4_bin' \
                 AND column_name IN ('entity_type', 'object_id', 'action', 'actor', 'tool', \
                 'status')",
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        assert_eq!(n, 6, "entity_type, object_id, action, actor, tool, status");
    }
    t.finish().await;
}

/// A log created before `ByteExactKeys` existed keeps its rows when the migration runs.
#[tokio::test]
async fn byte_exact_keys_migrates_an_existing_log() {
    use sea_orm_audit::{Event, logs_for_id};
    use sea_orm_audit_migration::ByteExactKeys;
    let t = TestDb::new().await;
    let manager = SchemaManager::new(&t.db);
    ByteExactKeys.down(&manager).await.unwrap();
    for id in ["key", "KEY"] {
        Event::new("old")
            .target_id("doc", id)
            .record(&t.db)
            .await
            .unwrap();
    }
    if t.backend() == DbBackend::MySql {
        // The fault the migration removes: a case-insensitive collation merges the two.
        assert_eq!(logs_for_id(&t.db, "doc", "key").await.unwrap().len(), 2);
    }
    ByteExactKeys.up(&manager).await.unwrap();
    assert_eq!(
        ByteExactKeys.name(),
        "m20261130_000001_sea_orm_audit_byte_exact_keys"
    );
    assert_eq!(logs_for_id(&t.db, "doc", "key").await.unwrap().len(), 1);
    assert_eq!(logs_for_id(&t.db, "doc", "KEY").await.unwrap().len(), 1);
    t.finish().await;
}

/// `down` refuses to drop a log that holds entries; the explicit call drops it. Rolling back
/// every migration stops before undoing anything: on MySQL the later migrations' `down`
/// (chain heads, byte-exact keys) refuse first, where they used to run and leave a log that
/// refused every hook-mode write (its chain heads gone) under keys compared
/// case-insensitively again; the log is then written and verifies as before.
#[tokio::test]
async fn down_keeps_a_non_empty_history() {
    use sea_orm_audit::{Event, logs_for_id, verify};
    use sea_orm_audit_migration::ByteExactKeys;
    let t = TestDb::new().await;
    Event::new("kept")
        .target_id("doc", "1")
        .record(&t.db)
        .await
        .unwrap();
    if std::env::var(sea_orm_audit_migration::ALLOW_DROP_ENV).is_err() {
        let mysql = t.backend() == DbBackend::MySql;
        let err = Migrator::down(&t.db, None).await.unwrap_err().to_string();
        let refusal = if mysql {
            "refusing to undo m20261201_000001_sea_orm_audit_chain_heads"
        } else {
            "refusing to drop the audit history"
        };
        assert!(err.contains(refusal), "{err}");
        assert!(
            err.contains(sea_orm_audit_migration::ALLOW_DROP_ENV),
            "{err}"
        );
        assert!(has_table(&t).await);
        if mysql {
            let manager = SchemaManager::new(&t.db);
            let err = ByteExactKeys.down(&manager).await.unwrap_err().to_string();
            assert!(
                err.contains("refusing to undo m20261130_000001_sea_orm_audit_byte_exact_keys"),
                "{err}"
            );
        }
        for id in ["1", "D", "d"] {
            Event::new("after")
                .target_id("doc", id)
                .record(&t.db)
                .await
                .unwrap();
        }
        assert_eq!(logs_for_id(&t.db, "doc", "1").await.unwrap().len(), 2);
        assert_eq!(logs_for_id(&t.db, "doc", "d").await.unwrap().len(), 1);
        let report = verify(&t.db).await.unwrap();
        assert!(report.is_ok(), "{report:?}");
    }
    sea_orm_audit_migration::drop_audit_log(&t.db)
        .await
        .unwrap();
    assert!(!has_table(&t).await);
    t.finish().await;
}

/// With `SEA_ORM_AUDIT_ALLOW_DROP=1`, `down` drops a non-empty log (run in a child process: the
/// environment is process-wide).
#[tokio::test]
async fn down_drops_a_non_empty_history_when_allowed() {
    if std::env::var(sea_orm_audit_migration::ALLOW_DROP_ENV).is_ok() {
        return; // the child run below
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "allowed_down_in_child",
            "--include-ignored",
            "--nocapture",
        ])
        .env(sea_orm_audit_migration::ALLOW_DROP_ENV, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[tokio::test]
#[ignore = "run by down_drops_a_non_empty_history_when_allowed with the variable set"]
async fn allowed_down_in_child() {
    use sea_orm_audit::Event;
    assert_eq!(
        std::env::var(sea_orm_audit_migration::ALLOW_DROP_ENV).as_deref(),
        Ok("1")
    );
    let t = TestDb::new().await;
    Event::new("dropped")
        .target_id("doc", "1")
        .record(&t.db)
        .await
        .unwrap();
    Migrator::down(&t.db, None).await.unwrap();
    assert!(!has_table(&t).await);
    t.finish().await;
}

/// Schemas built without a Migrator get the same table and indexes from one call.
#[tokio::test]
async fn create_schema_builds_the_log_without_a_migrator() {
    let t = TestDb::new().await;
    sea_orm_audit_migration::drop_audit_log(&t.db)
        .await
        .unwrap();
    assert!(!has_table(&t).await);
    sea_orm_audit_migration::create_schema(&t.db).await.unwrap();
    sea_orm_audit_migration::create_schema(&t.db).await.unwrap();
    assert!(has_table(&t).await);
    assert_eq!(index_count(&t).await, INDEXES);
    sea_orm_audit::Event::new("works")
        .target_id("doc", "1")
        .record(&t.db)
        .await
        .unwrap();
    t.finish().await;
}

/// The migration creates exactly the columns of the `audit_log` entity (its one definition).
#[tokio::test]
async fn the_migrated_table_has_the_entity_columns() {
    use sea_orm::{IdenStatic, Iterable};
    let t = TestDb::new().await;
    let sql = match t.backend() {
        DbBackend::Sqlite => "SELECT name AS n FROM pragma_table_info('audit_log') ORDER BY cid",
        DbBackend::Postgres => {
            "SELECT column_name::text AS n FROM information_schema.columns WHERE table_name = \
             'audit_log' AND table_schema = current_schema() ORDER BY ordinal_position"
        }
        _ => {
            "SELECT column_name AS n FROM information_schema.columns WHERE table_name = \
             'audit_log' AND table_schema = DATABASE() ORDER BY ordinal_position"
        }
    };
    let rows =
        t.db.query_all_raw(Statement::from_string(t.backend(), sql))
            .await
            .unwrap();
    let found: Vec<String> = rows.iter().map(|r| r.try_get("", "n").unwrap()).collect();
    let expected: Vec<&str> = sea_orm_audit::audit_log::Column::iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(found, expected);
    t.finish().await;
}

/// MySQL/MariaDB: `ChainHeads` fills `audit_chain_head` from an existing log (the newest entry
/// of each object), then its trigger moves an object's head with every entry inserted, by the
/// library or by raw SQL; `up` again changes nothing; without the table an audited write fails
/// with `MissingLogTable`. Elsewhere it creates nothing.
#[tokio::test]
async fn chain_heads_follow_every_entry_of_an_existing_log() {
    use sea_orm::ActiveValue::Set;
    use sea_orm::{
        ActiveModelTrait, EntityTrait, IdenStatic, IntoActiveModel, Iterable, QueryOrder,
    };
    use sea_orm_audit::{Event, audit_chain_head, audit_log};
    use sea_orm_audit_migration::ChainHeads;
    let t = TestDb::new().await;
    let manager = SchemaManager::new(&t.db);
    assert_eq!(
        ChainHeads.name(),
        "m20261201_000001_sea_orm_audit_chain_heads"
    );
    let heads_table =
        t.db.execute_unprepared("SELECT 1 FROM audit_chain_head WHERE 1 = 0")
            .await;
    if t.backend() != DbBackend::MySql {
        assert!(heads_table.is_err(), "{:?}", t.backend());
        return t.finish().await;
    }
    let note = |id: &'static str, message: &'static str| {
        let db = t.db.clone();
        async move {
            Event::new("note")
                .target_id("doc", id)
                .message(message)
                .record(&db)
                .await
        }
    };
    let raw = |id: &str, hash: &str| {
        format!(
            "INSERT INTO audit_log (entity_type, object_id, action, created_at, status, hash) \
             VALUES ('doc', '{id}', 'raw', NOW(6), 'success', '{hash}')"
        )
    };
    ChainHeads.down(&manager).await.unwrap();
    // A log written before the migration (by raw SQL here: the library needs the table).
    for (id, hash) in [("a", "a1"), ("b", "b1"), ("a", "a2")] {
        t.db.execute_unprepared(&raw(id, hash)).await.unwrap();
    }
    // Without the table, a write that reads a head says what to run, and writes nothing: an
    // event, and a hook's update, which fails before its UPDATE runs (the README's upgrading
    // note). A create reads no head, and is logged.
    let is_missing = |r: &Result<(), sea_orm::DbErr>| matches!(r, Err(sea_orm::DbErr::Custom(e)) if e.contains("audit_chain_head) does not exist: run"));
    let missing = note("a", "3").await;
    assert!(is_missing(&missing), "{missing:?}");
    let post = common::new_post("before the migration")
        .insert(&t.db)
        .await
        .unwrap();
    let mut edit = post.clone().into_active_model();
    edit.body = Set("edited".into());
    let missing = edit.update(&t.db).await.map(drop);
    assert!(is_missing(&missing), "{missing:?}");
    let stored = common::entities::post::Entity::find_by_id(post.id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.body, post.body, "the UPDATE never ran");
    ChainHeads.up(&manager).await.unwrap();
    ChainHeads.up(&manager).await.unwrap();
    let sql = "SELECT column_name AS n FROM information_schema.columns WHERE table_name = \
               'audit_chain_head' AND table_schema = DATABASE() ORDER BY ordinal_position";
    let rows =
        t.db.query_all_raw(Statement::from_string(t.backend(), sql))
            .await
            .unwrap();
    let found: Vec<String> = rows.iter().map(|r| r.try_get("", "n").unwrap()).collect();
    let expected: Vec<&str> = audit_chain_head::Column::iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(found, expected);
    let triggers = "SELECT COUNT(*) AS n FROM information_schema.triggers WHERE \
                    trigger_schema = DATABASE() AND event_object_table = 'audit_log'";
    let row =
        t.db.query_one_raw(Statement::from_string(t.backend(), triggers))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        row.try_get::<i64>("", "n").unwrap(),
        1,
        "one trigger after two ups"
    );
    note("a", "3").await.unwrap();
    note("c", "1").await.unwrap();
    // Another process's entry, written by raw SQL: its object's head moves too.
    t.db.execute_unprepared(&raw("b", "b2")).await.unwrap();
    // Every head is its object's newest entry.
    let entries = audit_log::Entity::find()
        .order_by_asc(audit_log::Column::Id)
        .all(&t.db)
        .await
        .unwrap();
    // The library's entry about `a` links to the head the backfill found.
    let linked = entries.iter().rfind(|e| e.object_id == "a").unwrap();
    assert_eq!(linked.prev_hash.as_deref(), Some("a2"));
    let mut newest = std::collections::BTreeMap::new();
    for e in entries {
        newest.insert((e.entity_type, e.object_id), (e.id, e.hash));
    }
    let heads: std::collections::BTreeMap<_, _> = audit_chain_head::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|h| ((h.entity_type, h.object_id), (h.head_id, h.hash)))
        .collect();
    assert_eq!(heads, newest);
    assert_eq!(heads.len(), 4, "a, b, c and the post");
    t.finish().await;
}
