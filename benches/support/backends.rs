//! The databases the benchmark runs on, one connection each, and their schema.

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Schema};
use sea_orm_migration::MigratorTrait;

use super::entities::{audited, captured, deferred, plain};
use super::settings::Settings;

pub(crate) struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        sea_orm_audit_migration::migrations()
    }
}

pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) db: DatabaseConnection,
    /// The database's URL, for a second pool (section `pool`, variant "db carried"); none
    /// for SQLite in memory, which a second pool cannot open.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-mysql",
            feature = "sqlx-sqlite"
        )),
        allow(dead_code)
    )]
    pub(crate) url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) fn options(url: &str) -> ConnectOptions {
    let mut opt = ConnectOptions::new(url);
    // One connection for every variant; no ping before each acquire (see BENCHMARKS.md,
    // "Facts these numbers rest on").
    opt.max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .sqlx_logging(false);
    // A SQLite file: WAL, `synchronous = NORMAL`, on every connection of every pool.
    if url.starts_with("sqlite://") {
        use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
        opt.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        });
    }
    opt
}

/// The database created (and dropped first) on a server: `AUDIT_BENCH_DB_NAME`, so that two
/// runs on one server do not drop each other's tables, or `sea_orm_audit_bench`.
fn server_db_name() -> String {
    std::env::var("AUDIT_BENCH_DB_NAME").unwrap_or_else(|_| "sea_orm_audit_bench".into())
}

/// A database created afresh on the server, and its URL.
pub(crate) async fn fresh_server_db(
    server_url: &str,
    name: &str,
) -> Result<(DatabaseConnection, String), DbErr> {
    let admin = Database::connect(options(server_url)).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    admin.close().await?;
    let (base, _) = server_url
        .rsplit_once('/')
        .ok_or_else(|| DbErr::Custom(format!("{server_url}: no database path")))?;
    let url = format!("{base}/{name}");
    Ok((Database::connect(options(&url)).await?, url))
}

pub(crate) async fn targets(settings: &Settings) -> Result<Vec<Target>, DbErr> {
    let mut out = Vec::new();
    if settings.wants("sqlite-file") {
        let dir = tempfile::tempdir().map_err(|e| DbErr::Custom(e.to_string()))?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        let db = Database::connect(options(&url)).await?;
        out.push(Target {
            name: "sqlite-file",
            db,
            url: Some(url),
            _dir: Some(dir),
        });
    }
    if settings.wants("sqlite-mem") {
        let db = Database::connect(options("sqlite::memory:")).await?;
        out.push(Target {
            name: "sqlite-mem",
            db,
            url: None,
            _dir: None,
        });
    }
    if settings.wants("postgres") {
        match std::env::var("AUDIT_BENCH_POSTGRES_URL") {
            Ok(url) => {
                let (db, url) = fresh_server_db(&url, &server_db_name()).await?;
                out.push(Target {
                    name: "postgres",
                    db,
                    url: Some(url),
                    _dir: None,
                });
            }
            Err(_) => eprintln!("postgres skipped: set AUDIT_BENCH_POSTGRES_URL"),
        }
    }
    if settings.wants("mysql") {
        match std::env::var("AUDIT_BENCH_MYSQL_URL") {
            Ok(url) => {
                let (db, url) = fresh_server_db(&url, &server_db_name()).await?;
                out.push(Target {
                    name: "mysql",
                    db,
                    url: Some(url),
                    _dir: None,
                });
            }
            Err(_) => eprintln!("mysql skipped: set AUDIT_BENCH_MYSQL_URL"),
        }
    }
    Ok(out)
}

pub(crate) async fn create_schema(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await?;
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(plain::Entity))
        .await?;
    db.execute(&schema.create_table_from_entity(audited::Entity))
        .await?;
    db.execute(&schema.create_table_from_entity(captured::Entity))
        .await?;
    sea_orm_audit::capture_db::install::<captured::Model, _>(db).await?;
    db.execute(&schema.create_table_from_entity(deferred::Entity))
        .await?;
    sea_orm_audit::capture_db::install::<deferred::Model, _>(db).await?;
    Ok(())
}
