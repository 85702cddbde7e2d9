//! Shared test context: one suite, run per backend.
//!
//! The backend comes from `AUDIT_TEST_DATABASE_URL`:
//! - unset: SQLite, a file in a fresh temporary directory per test;
//! - `postgres://...`: a fresh database per test, created through that URL and dropped after;
//! - `mysql://...`: the same on MySQL/MariaDB.

#![allow(dead_code, unreachable_pub)]

pub mod entities;
pub mod proxy;
#[cfg(feature = "axum")]
pub mod web;

use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait, Schema,
};
use sea_orm_migration::MigratorTrait;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        sea_orm_audit_migration::migrations()
    }
}

/// One test's private database.
pub struct TestDb {
    pub db: DatabaseConnection,
    pub url: String,
    server: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    format!(
        "audit_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

pub fn backend_name() -> &'static str {
    match std::env::var("AUDIT_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => "postgres",
        Ok(url) if url.starts_with("mysql") || url.starts_with("mariadb") => "mysql",
        _ => "sqlite",
    }
}

fn options(url: &str) -> ConnectOptions {
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(8).sqlx_logging(false);
    opt
}

/// Says once per test binary which backend runs and which are skipped. Written straight to
/// stderr so that libtest's output capture does not hide it (CI greps for it).
fn announce_backend() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let name = backend_name();
        let line = if name == "sqlite" {
            "sea-orm-audit test backend: sqlite (postgres and mysql skipped: set \
             AUDIT_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres or \
             mysql://root@127.0.0.1:3306/test to run them)\n"
                .to_owned()
        } else {
            format!("sea-orm-audit test backend: {name}\n")
        };
        let _ = std::io::stderr().write_all(line.as_bytes());
    });
}

impl TestDb {
    /// A fresh database with the audit_log migration applied and the test tables created.
    pub async fn new() -> TestDb {
        announce_backend();
        let test_db = match std::env::var("AUDIT_TEST_DATABASE_URL") {
            Ok(server_url) if !server_url.starts_with("sqlite") => {
                let name = unique_name();
                let admin = Database::connect(options(&server_url))
                    .await
                    .expect("connect to server");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let (base, _) = server_url
                    .rsplit_once('/')
                    .expect("URL has a database path");
                let url = format!("{base}/{name}");
                let db = Database::connect(options(&url))
                    .await
                    .expect("connect to test db");
                TestDb {
                    db,
                    url,
                    server: Some((server_url, name)),
                    _dir: None,
                }
            }
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                let db = Database::connect(options(&url)).await.expect("open sqlite");
                db.execute_unprepared("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=10000;")
                    .await
                    .expect("pragmas");
                TestDb {
                    db,
                    url,
                    server: None,
                    _dir: Some(dir),
                }
            }
        };
        Migrator::up(&test_db.db, None).await.expect("migrate");
        entities::create_tables(&test_db.db).await;
        test_db
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Drops a server-side test database. Call at the end of each test.
    pub async fn finish(self) {
        let TestDb { db, server, .. } = self;
        db.close().await.ok();
        if let Some((server_url, name)) = server {
            drop_server_db(&server_url, &name).await;
        }
    }
}

/// Drops the test database `name` on the server of `server_url` (PostgreSQL: with the
/// connections still open to it).
pub async fn drop_server_db(server_url: &str, name: &str) {
    let admin = Database::connect(options(server_url))
        .await
        .expect("reconnect");
    let force = if server_url.starts_with("postgres") {
        " WITH (FORCE)"
    } else {
        ""
    };
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}{force}"))
        .await
        .expect("drop test database");
    admin.close().await.ok();
}

/// MySQL: a transaction whose session runs with an empty `sql_mode` (not strict: values the
/// column cannot hold are cut or stored as zero dates, with a warning), as another program's
/// session may. [`commit_strict_again`] puts the session's mode back and commits.
pub async fn begin_not_strict(db: &DatabaseConnection) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let tx = db.begin().await.unwrap();
    tx.execute_unprepared("SET @saved_mode = @@sql_mode, SESSION sql_mode = ''")
        .await
        .unwrap();
    tx
}

/// Ends a [`begin_not_strict`] transaction: the session's own `sql_mode` again, then commit.
pub async fn commit_strict_again(tx: sea_orm::DatabaseTransaction) {
    tx.execute_unprepared("SET SESSION sql_mode = @saved_mode")
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

pub async fn create_table<E: EntityTrait>(db: &DatabaseConnection, entity: E) {
    let schema = Schema::new(db.get_database_backend());
    let stmt = schema.create_table_from_entity(entity);
    db.execute(&stmt).await.expect("create test table");
}

/// A post to insert: `title`, body `"body"`, no views, no secret.
pub fn new_post(title: &str) -> entities::post::ActiveModel {
    post_with_body(title, "body")
}

/// A post to insert with this body (no views, no secret).
pub fn post_with_body(title: &str, body: &str) -> entities::post::ActiveModel {
    use sea_orm::ActiveValue::Set;
    entities::post::ActiveModel {
        title: Set(title.into()),
        body: Set(body.into()),
        views: Set(0),
        secret: Set(None),
        ..Default::default()
    }
}

/// A kitchen row of every column type, with values that stress their encoding; `long_text` is
/// `text_len` bytes.
pub fn kitchen_sample(text_len: usize) -> entities::kitchen::ActiveModel {
    use entities::kitchen::{self, Mood};
    use sea_orm::ActiveValue::{NotSet, Set};
    use serde_json::json;
    let stamp = chrono::DateTime::parse_from_rfc3339("2031-12-31T23:59:58.123456+05:30").unwrap();
    kitchen::ActiveModel {
        id: NotSet,
        long_text: Set("x".repeat(text_len)),
        unicode: Set("Zoë ✓ 漢字 🦀 \u{202e}rtl".into()),
        maybe_text: Set(None),
        blob: Set(vec![0, 0xff, 0xfe, 0x80, 0x7f]),
        ratio: Set(1.0 / 3.0),
        small: Set(0.1),
        maybe_ratio: Set(Some(-2.5e-300)),
        amount: Set("123456789012345678.0123456789".parse().unwrap()),
        doc: Set(json!({"k": [1, 2.5, "three", null, {"deep": true}], "ü": "é"})),
        mood: Set(Mood::Happy),
        maybe_mood: Set(None),
        day: Set(chrono::NaiveDate::from_ymd_opt(1969, 7, 20).unwrap()),
        clock: Set(chrono::NaiveTime::from_hms_opt(20, 17, 40).unwrap()),
        naive: Set(chrono::NaiveDate::from_ymd_opt(2099, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap()),
        stamp: Set(stamp),
        utc: Set(stamp.with_timezone(&chrono::Utc)),
        uid: Set(uuid::Uuid::new_v4()),
        big: Set(i64::MAX - 1),
        flag: Set(false),
    }
}

/// A moment strictly after every log entry written before the call and strictly before every
/// entry written after it returns, at the microsecond precision the log stores: the clock is
/// polled until it has moved on, instead of sleeping and hoping that it has.
pub async fn moment_between() -> chrono::DateTime<chrono::Utc> {
    let moment = clock_past(chrono::Utc::now()).await;
    clock_past(moment).await;
    moment
}

/// The first reading of the clock at a later microsecond than `t`.
async fn clock_past(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let now = chrono::Utc::now();
        if now.timestamp_micros() > t.timestamp_micros() {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stands still"
        );
        tokio::task::yield_now().await;
    }
}

/// Installs an application trigger on `table` (a post-shaped table) that adds 1,000 to `views`
/// on every update: a column the database changes itself. PostgreSQL and MySQL change NEW in a
/// BEFORE trigger; SQLite's BEFORE triggers cannot, so an AFTER trigger updates the row again
/// (recursive triggers are off: that UPDATE does not fire it once more).
pub async fn bump_views_on_update(db: &DatabaseConnection, table: &str) {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => vec![
            format!(
                "CREATE FUNCTION app_bump_{table}() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN NEW.views := OLD.views + 1000; RETURN NEW; END $$"
            ),
            format!(
                "CREATE TRIGGER app_bump BEFORE UPDATE ON {table} FOR EACH ROW \
                 EXECUTE FUNCTION app_bump_{table}()"
            ),
        ],
        DbBackend::MySql => vec![format!(
            "CREATE TRIGGER app_bump_{table} BEFORE UPDATE ON {table} FOR EACH ROW \
             SET NEW.views = OLD.views + 1000"
        )],
        _ => vec![format!(
            "CREATE TRIGGER app_bump_{table} AFTER UPDATE OF body ON {table} BEGIN \
             UPDATE {table} SET views = views + 1000 WHERE id = NEW.id; END"
        )],
    };
    for sql in sql {
        db.execute_unprepared(&sql)
            .await
            .expect("create the application's trigger");
    }
}

/// Stores in entry `id`'s `changes` a JSON number beyond what an `f64` holds, which another
/// program can write and serde_json cannot read: an entry the readers cannot read.
pub async fn store_unreadable_changes(t: &TestDb, id: i64) {
    let cast = if t.backend() == DbBackend::Postgres {
        "::jsonb"
    } else {
        ""
    };
    t.db.execute_unprepared(&format!(
        "UPDATE audit_log SET changes = '{{\"old_value\":{{\"views\":1e400}},\
         \"new_value\":{{\"views\":1}}}}'{cast} WHERE id = {id}"
    ))
    .await
    .expect("store an unreadable entry");
}

/// Every audit_log row, oldest first.
pub async fn all_logs(db: &DatabaseConnection) -> Vec<sea_orm_audit::audit_log::Model> {
    use sea_orm::QueryOrder;
    sea_orm_audit::audit_log::Entity::find()
        .order_by_asc(sea_orm_audit::audit_log::Column::Id)
        .all(db)
        .await
        .expect("read audit_log")
}

/// The seed of a seeded test: `var`'s value, to replay a run, else the clock's; printed either
/// way, so that a failing run can be replayed.
pub fn seed(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
                | 1
        });
    eprintln!("{var}={seed}");
    seed
}

/// The generator state of writer `writer` of a run seeded with `seed` (see [`next`]).
pub fn seeded(seed: u64, writer: usize) -> u64 {
    seed ^ (writer as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A small deterministic generator (xorshift): each writer's choices replay from the seed its
/// test prints; the interleaving of the writers does not.
pub fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
