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
