//! Migrations for [`sea-orm-audit`](https://docs.rs/sea-orm-audit)'s `audit_log` table.
//!
//! Add them to your own `Migrator`, in this order, alongside your migrations:
//!
//! ```ignore
//! fn migrations() -> Vec<Box<dyn MigrationTrait>> {
//!     vec![
//!         Box::new(sea_orm_audit_migration::CreateAuditLog),
//!         Box::new(sea_orm_audit_migration::ByteExactKeys),
//!         Box::new(sea_orm_audit_migration::ChainHeads),
//!         // ... your own migrations
//!     ]
//! }
//! ```
//!
//! Or use [`migrations()`] to get all of them. They must run **before** any migration that
//! writes audited rows (a seed migration inserting through active models): put them first.
//!
//! Applications that build their schema without a `Migrator` (tests using
//! `Schema::create_table_from_entity` or `get_schema_builder()`) call [`create_schema`]
//! instead: the same table and indexes, idempotent.
//!
//! `down` never drops a log that holds entries: the history must not disappear through a
//! routine `migrate down` or `fresh`. Set the environment variable
//! `SEA_ORM_AUDIT_ALLOW_DROP=1` for that run, or call [`drop_audit_log`], to drop it anyway.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// Creates `audit_log` with its indexes and column settings, exactly as [`migrations()`] do,
/// without recording anything in `seaql_migrations`: for schemas built without a `Migrator`.
/// Idempotent.
///
/// ```
/// # use sea_orm_migration::sea_orm::{DatabaseConnection, DbErr};
/// # async fn setup(db: &DatabaseConnection) -> Result<(), DbErr> {
/// sea_orm_audit_migration::create_schema(db).await?;
/// sea_orm_audit_migration::create_schema(db).await?; // again: nothing changes
/// # Ok(()) }
/// ```
pub async fn create_schema<'c, C>(db: C) -> Result<(), DbErr>
where
    C: sea_orm_migration::sea_orm::IntoDatabaseExecutor<'c>,
{
    let manager = SchemaManager::new(db);
    for migration in migrations() {
        migration.up(&manager).await?;
    }
    Ok(())
}

/// Drops `audit_log` and its whole history, whatever it holds: the explicit call for what
/// `down` refuses to do on a non-empty log.
pub async fn drop_audit_log<'c, C>(db: C) -> Result<(), DbErr>
where
    C: sea_orm_migration::sea_orm::IntoDatabaseExecutor<'c>,
{
    let manager = SchemaManager::new(db);
    drop_chain_heads(&manager).await?;
    manager
        .drop_table(Table::drop().table(AuditLog::Table).if_exists().to_owned())
        .await
}

/// The environment variable that lets `down` drop a non-empty log.
pub const ALLOW_DROP_ENV: &str = "SEA_ORM_AUDIT_ALLOW_DROP";

/// Every migration of this crate, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateAuditLog),
        Box::new(ByteExactKeys),
        Box::new(ChainHeads),
    ]
}

/// Creates `audit_log` and its indexes. Its name, tracked in `seaql_migrations`, is stable:
/// `m20261122_000001_sea_orm_audit_create_audit_log`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateAuditLog;

impl MigrationName for CreateAuditLog {
    fn name(&self) -> &str {
        "m20261122_000001_sea_orm_audit_create_audit_log"
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditLog {
    Table,
    Id,
    EntityType,
    ObjectId,
    Action,
    Actor,
    CreatedAt,
    Changes,
    Tool,
    Message,
    Status,
    Data,
    PrevHash,
    Hash,
}

/// Index names, shared by `up` and `down`.
/// Every filter of the history query is served by one of these (newest first within each).
const INDEXES: &[(&str, &[AuditLog])] = &[
    (
        "idx_audit_log_object",
        &[AuditLog::EntityType, AuditLog::ObjectId, AuditLog::Id],
    ),
    ("idx_audit_log_actor", &[AuditLog::Actor, AuditLog::Id]),
    ("idx_audit_log_tool", &[AuditLog::Tool, AuditLog::Id]),
    ("idx_audit_log_action", &[AuditLog::Action, AuditLog::Id]),
    ("idx_audit_log_status", &[AuditLog::Status, AuditLog::Id]),
    ("idx_audit_log_created_at", &[AuditLog::CreatedAt]),
];

#[async_trait::async_trait]
impl MigrationTrait for CreateAuditLog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let json = |col: AuditLog| {
            let mut def = ColumnDef::new(col);
            match backend {
                DbBackend::Postgres => def.json_binary(),
                _ => def.json(),
            };
            def.null();
            def
        };
        let (changes, data) = (json(AuditLog::Changes), json(AuditLog::Data));
        let mut created_at = ColumnDef::new(AuditLog::CreatedAt);
        match backend {
            // TIMESTAMP stops in 2038; DATETIME(6) holds UTC written by the library.
            DbBackend::MySql => created_at.custom(Alias::new("DATETIME(6)")),
            _ => created_at.timestamp_with_time_zone(),
        };
        created_at.not_null();
        let mut id = ColumnDef::new(AuditLog::Id);
        id.big_integer().not_null().auto_increment().primary_key();
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .if_not_exists()
                    .col(id)
                    .col(
                        ColumnDef::new(AuditLog::EntityType)
                            .string_len(191)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditLog::ObjectId)
                            .string_len(191)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditLog::Action).string_len(64).not_null())
                    .col(ColumnDef::new(AuditLog::Actor).string_len(191).null())
                    .col(created_at)
                    .col(changes)
                    .col(ColumnDef::new(AuditLog::Tool).string_len(191).null())
                    .col(ColumnDef::new(AuditLog::Message).text().null())
                    .col(
                        ColumnDef::new(AuditLog::Status)
                            .string_len(16)
                            .not_null()
                            .default("success"),
                    )
                    .col(data)
                    .col(ColumnDef::new(AuditLog::PrevHash).string_len(64).null())
                    .col(ColumnDef::new(AuditLog::Hash).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        for (name, cols) in INDEXES {
            // MySQL has no CREATE INDEX IF NOT EXISTS: ask first, so `up` is idempotent.
            if backend == DbBackend::MySql && mysql_has_index(manager, name).await? {
                continue;
            }
            let mut index = Index::create();
            index.name(*name).table(AuditLog::Table).if_not_exists();
            for col in *cols {
                index.col(*col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    /// Drops the table only when it holds no entry, or when `SEA_ORM_AUDIT_ALLOW_DROP=1`.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !drop_allowed() && holds_entries(manager).await? {
            return Err(DbErr::Migration(format!(
                "sea-orm-audit: audit_log holds entries; refusing to drop the audit history. \
                 Set {ALLOW_DROP_ENV}=1 for this run, or call \
                 sea_orm_audit_migration::drop_audit_log, to drop it anyway"
            )));
        }
        manager
            .drop_table(Table::drop().table(AuditLog::Table).if_exists().to_owned())
            .await
    }
}

/// Whether `SEA_ORM_AUDIT_ALLOW_DROP=1` is set for this run.
fn drop_allowed() -> bool {
    std::env::var(ALLOW_DROP_ENV).is_ok_and(|v| v == "1")
}

/// The `down` of a later migration on MySQL, under a log that holds entries: refused, unless
/// `SEA_ORM_AUDIT_ALLOW_DROP=1`. Rolling back every migration runs the later ones' `down`
/// first, and `CreateAuditLog`'s then refuses to drop the history: without this the log was
/// left in place with its keys compared case-insensitively again (history of `Key` and `key`
/// merged) and, without its chain heads, refusing every hook-mode write.
async fn refuse_under_entries(
    manager: &SchemaManager<'_>,
    migration: &str,
    why: &str,
) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::MySql
        || drop_allowed()
        || !holds_entries(manager).await?
    {
        return Ok(());
    }
    Err(DbErr::Migration(format!(
        "sea-orm-audit: audit_log holds entries; refusing to undo {migration}: {why}. \
         Set {ALLOW_DROP_ENV}=1 for this run to undo it anyway (going back to a version \
         of sea-orm-audit without it), or call sea_orm_audit_migration::drop_audit_log to \
         drop the log"
    )))
}

/// Whether `audit_log` exists and holds at least one row.
async fn holds_entries(manager: &SchemaManager<'_>) -> Result<bool, DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};
    let backend = manager.get_database_backend();
    let row = manager
        .get_connection()
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT 1 AS present FROM audit_log LIMIT 1",
        ))
        .await;
    match row {
        Ok(row) => Ok(row.is_some()),
        // No table, no history (`SchemaManager::has_table` needs schema discovery, which this
        // crate does not turn on).
        Err(e) if missing_table(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// SQLite: `no such table`; PostgreSQL: `does not exist`; MySQL: `doesn't exist`.
fn missing_table(err: &DbErr) -> bool {
    let text = err.to_string();
    text.contains("no such table")
        || text.contains("does not exist")
        || text.contains("doesn't exist")
}

/// `SchemaManager::has_index` needs sea-orm-migration's schema-discovery feature on MySQL;
/// information_schema answers the same question without it.
async fn mysql_has_index(manager: &SchemaManager<'_>, name: &str) -> Result<bool, DbErr> {
    let sql = "SELECT COUNT(*) AS n FROM information_schema.statistics \
               WHERE table_schema = DATABASE() AND table_name = 'audit_log' AND index_name = ?";
    mysql_counts_some(manager, sql, name).await
}

/// Whether the trigger exists in the current database (MySQL has no `CREATE TRIGGER IF NOT
/// EXISTS` before 8.0.29).
async fn mysql_has_trigger(manager: &SchemaManager<'_>, name: &str) -> Result<bool, DbErr> {
    let sql = "SELECT COUNT(*) AS n FROM information_schema.triggers \
               WHERE trigger_schema = DATABASE() AND trigger_name = ?";
    mysql_counts_some(manager, sql, name).await
}

/// Whether `sql`, a `COUNT(*) AS n` with one placeholder bound to `name`, counts any row.
async fn mysql_counts_some(
    manager: &SchemaManager<'_>,
    sql: &str,
    name: &str,
) -> Result<bool, DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};
    let stmt = Statement::from_sql_and_values(DbBackend::MySql, sql, [name.into()]);
    let row = manager.get_connection().query_one_raw(stmt).await?;
    let n: i64 = match row {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(n > 0)
}

/// Makes the columns that identify an entry compare byte for byte on MySQL/MariaDB, whose
/// default collations are case- and accent-insensitive: with them `object_id = 'key'` also
/// matched `Key` and `KEY`, and `'cafe'` matched `'café'`, so objects shared one history and
/// chain. The columns get `utf8mb4_bin`; their indexes are rebuilt by the `ALTER` and still
/// serve every lookup. A no-op on PostgreSQL and SQLite, which compare bytes already. Its
/// `down` is refused while the log holds entries unless `SEA_ORM_AUDIT_ALLOW_DROP=1`. Name:
/// `m20261130_000001_sea_orm_audit_byte_exact_keys`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteExactKeys;

impl MigrationName for ByteExactKeys {
    fn name(&self) -> &str {
        "m20261130_000001_sea_orm_audit_byte_exact_keys"
    }
}

/// The identity columns with their MySQL definitions (without the collation).
const IDENTITY_COLUMNS: &[(&str, &str)] = &[
    ("entity_type", "VARCHAR(191) NOT NULL"),
    ("object_id", "VARCHAR(191) NOT NULL"),
    ("action", "VARCHAR(64) NOT NULL"),
    ("actor", "VARCHAR(191) NULL"),
    ("tool", "VARCHAR(191) NULL"),
    ("status", "VARCHAR(16) NOT NULL DEFAULT 'success'"),
];

impl ByteExactKeys {
    async fn modify(manager: &SchemaManager<'_>, collate: &str) -> Result<(), DbErr> {
        use sea_orm_migration::sea_orm::ConnectionTrait;
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        let columns: Vec<String> = IDENTITY_COLUMNS
            .iter()
            .map(|(name, def)| {
                let (ty, rest) = def.split_once(' ').unwrap_or((def, ""));
                format!("MODIFY `{name}` {ty} CHARACTER SET utf8mb4{collate} {rest}")
            })
            .collect();
        manager
            .get_connection()
            .execute_unprepared(&format!("ALTER TABLE `audit_log` {}", columns.join(", ")))
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ByteExactKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        Self::modify(manager, " COLLATE utf8mb4_bin").await
    }

    /// Refused under a log that holds entries (see `refuse_under_entries`).
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        refuse_under_entries(
            manager,
            self.name(),
            "its keys would compare case- and accent-insensitively again, merging the \
             histories of objects such as `key` and `Key`",
        )
        .await?;
        // Back to the character set's default collation, as `CreateAuditLog` left them.
        Self::modify(manager, "").await
    }
}

/// MySQL/MariaDB: the table `audit_chain_head`, one row per object with entries holding the id
/// and hash of its newest entry, filled from the log and then kept by the trigger
/// `audit_log_chain_head` on every row inserted into `audit_log`. Hook mode locks an object's
/// row here by its primary key to read its chain head as committed: the locking read of the
/// newest log entry it replaces also locked the gap before that entry, where the next entry of
/// the object sorting just before goes, so that object's writers waited for the transaction,
/// or deadlocked with it. A no-op on PostgreSQL and SQLite. Idempotent. Its `down` drops the
/// table and the trigger (they hold nothing the log does not), and is refused while the log
/// holds entries unless `SEA_ORM_AUDIT_ALLOW_DROP=1`. Name:
/// `m20261201_000001_sea_orm_audit_chain_heads`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainHeads;

impl MigrationName for ChainHeads {
    fn name(&self) -> &str {
        "m20261201_000001_sea_orm_audit_chain_heads"
    }
}

/// The head table's name and its trigger's.
const CHAIN_HEAD_TABLE: &str = "audit_chain_head";
const CHAIN_HEAD_TRIGGER: &str = "audit_log_chain_head";

/// The new head of an object, `v` its values: an entry with a larger id than the stored head
/// (concurrent writers outside a transaction can insert in another order than their ids).
/// `VALUES()` is what MariaDB understands (run here on 10.11); MySQL documents it as
/// deprecated since 8.0.20, still accepted (not run here). The duplicate is on the primary
/// key, so InnoDB locks that record alone: no gap.
const CHAIN_HEAD_UPSERT: &str = "INSERT INTO `audit_chain_head` (`entity_type`, `object_id`, \
     `head_id`, `hash`) {v} ON DUPLICATE KEY UPDATE \
     `hash` = IF(VALUES(`head_id`) > `audit_chain_head`.`head_id`, VALUES(`hash`), \
     `audit_chain_head`.`hash`), \
     `head_id` = GREATEST(`audit_chain_head`.`head_id`, VALUES(`head_id`))";

#[async_trait::async_trait]
impl MigrationTrait for ChainHeads {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::sea_orm::ConnectionTrait;
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        // Keys compared byte for byte, as the log's (see `ByteExactKeys`).
        db.execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS `{CHAIN_HEAD_TABLE}` (\
             `entity_type` VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, \
             `object_id` VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, \
             `head_id` BIGINT NOT NULL, `hash` VARCHAR(64) NULL, \
             PRIMARY KEY (`entity_type`, `object_id`)) ENGINE = InnoDB"
        ))
        .await?;
        // The trigger first, then the backfill: an entry written in between is in both, and
        // the upsert keeps the newer id.
        if !mysql_has_trigger(manager, CHAIN_HEAD_TRIGGER).await? {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER `{CHAIN_HEAD_TRIGGER}` AFTER INSERT ON `audit_log` FOR EACH ROW {}",
                CHAIN_HEAD_UPSERT.replace(
                    "{v}",
                    "VALUES (NEW.`entity_type`, NEW.`object_id`, NEW.`id`, NEW.`hash`)"
                )
            ))
            .await?;
        }
        db.execute_unprepared(&CHAIN_HEAD_UPSERT.replace(
            "{v}",
            "SELECT a.`entity_type`, a.`object_id`, a.`id`, a.`hash` FROM `audit_log` a \
             JOIN (SELECT MAX(`id`) AS `id` FROM `audit_log` GROUP BY `entity_type`, \
             `object_id`) n ON n.`id` = a.`id`",
        ))
        .await?;
        Ok(())
    }

    /// Refused under a log that holds entries (see `refuse_under_entries`).
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        refuse_under_entries(
            manager,
            self.name(),
            "this version of sea-orm-audit writes entries on MySQL only with the chain heads \
             it keeps",
        )
        .await?;
        drop_chain_heads(manager).await
    }
}

/// MySQL: drops the head table and its trigger (nothing elsewhere).
async fn drop_chain_heads(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::ConnectionTrait;
    if manager.get_database_backend() != DbBackend::MySql {
        return Ok(());
    }
    let db = manager.get_connection();
    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS `{CHAIN_HEAD_TRIGGER}`"))
        .await?;
    db.execute_unprepared(&format!("DROP TABLE IF EXISTS `{CHAIN_HEAD_TABLE}`"))
        .await?;
    Ok(())
}
