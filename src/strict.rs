//! Strict mode: catch writes to audited tables that bypass the audited paths.
//!
//! Opt-in, for tests (and staging): [`Strict::install`] puts a statement observer on a
//! connection. Every INSERT, UPDATE or DELETE on a watched table must come from an audited
//! path (an active-model hook or [`crate::bulk`]); anything else, such as SeaORM's
//! `insert_many`, `update_many`, `delete_by_id`, `Entity::insert(..).exec` or raw SQL, is
//! recorded as a [`Violation`]. It sees every statement SeaORM reports to its metric callback:
//! everything run through `execute`, `query_*` and raw [`sea_orm::Statement`]s, but not
//! `execute_unprepared`. A write announced by a hook whose statement then fails stays announced
//! until that task's next audited write of the same table.
//!
//! ```
//! # use sea_orm::{ConnectionTrait, Database, DbErr};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), DbErr> {
//! let mut db = Database::connect("sqlite::memory:").await?;
//! let strict = sea_orm_audit::Strict::new().watch_table("posts");
//! strict.install(&mut db);
//! db.execute_unprepared("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT)").await?;
//! db.execute_raw(sea_orm::Statement::from_string(
//!     db.get_database_backend(),
//!     "INSERT INTO posts (title) VALUES ('sneaky')",
//! ))
//! .await?;
//! let violations = strict.violations();
//! assert_eq!(violations.len(), 1);
//! assert_eq!(violations[0].table, "posts");
//! assert!(strict.check().is_err());
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use sea_orm::{DatabaseConnection, EntityTrait};

use crate::auditable::Auditable;
use crate::error::Error;
use crate::pending::Scope;

/// How many strict observers are installed; zero keeps the audited paths free of bookkeeping.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// One statement (a hook-driven write).
    One,
    /// Any number, until the guard drops (a bulk call).
    Many,
}

type Key = (Scope, &'static str);

static EXPECTED: LazyLock<Mutex<HashMap<Key, Expect>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn expected() -> std::sync::MutexGuard<'static, HashMap<Key, Expect>> {
    EXPECTED.lock().unwrap_or_else(|e| e.into_inner())
}

fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed) > 0
}

/// An audited hook is about to write one statement to `table`.
pub(crate) fn expect_one(table: &'static str) {
    if active() {
        expected().insert((Scope::current(), table), Expect::One);
    }
}

/// The audited hook finished (or its write failed): forget what it announced.
pub(crate) fn done(table: &'static str) {
    if active() {
        expected().remove(&(Scope::current(), table));
    }
}

/// Allows writes to `table` from the current task until the guard drops (bulk calls).
pub(crate) fn expect_many(table: &'static str) -> ManyGuard {
    if active() {
        expected().insert((Scope::current(), table), Expect::Many);
    }
    ManyGuard {
        table,
        scope: Scope::current(),
    }
}

pub(crate) struct ManyGuard {
    table: &'static str,
    scope: Scope,
}

impl Drop for ManyGuard {
    fn drop(&mut self) {
        if active() {
            expected().remove(&(self.scope, self.table));
        }
    }
}

/// A write to a watched table that did not go through an audited path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// The table written.
    pub table: String,
    /// The statement, as SeaORM sent it.
    pub sql: String,
}

#[derive(Debug, Default)]
struct Inner {
    tables: HashSet<String>,
    violations: Mutex<Vec<Violation>>,
}

/// The strict-mode observer. Cheap to clone; clones share their violations.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Strict {
    inner: Arc<Inner>,
}

impl Strict {
    /// An observer that watches no table yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches the table of an audited entity.
    pub fn watch<E>(self) -> Self
    where
        E: EntityTrait,
        E::Model: Auditable,
    {
        self.watch_table(E::default().table_name())
    }

    /// Watches a table by name.
    pub fn watch_table(self, table: &str) -> Self {
        let mut tables = self.inner.tables.clone();
        tables.insert(table.to_owned());
        Strict {
            inner: Arc::new(Inner {
                tables,
                violations: Mutex::new(self.violations()),
            }),
        }
    }

    /// Observes every statement run through `db` and the transactions begun from it (install it
    /// before cloning the connection). Replaces any metric callback already set on `db`.
    pub fn install(&self, db: &mut DatabaseConnection) {
        let inner = self.inner.clone();
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        db.set_metric_callback(move |info| {
            if info.failed {
                return;
            }
            let sql = info.statement.sql.as_str();
            let Some(table) = written_table(sql) else {
                return;
            };
            if !inner.tables.contains(table) {
                return;
            }
            let scope = Scope::current();
            let allowed = {
                let mut map = expected();
                let found = map
                    .iter()
                    .find(|((s, t), _)| *s == scope && *t == table)
                    .map(|(k, v)| (*k, *v));
                match found {
                    Some((key, Expect::One)) => {
                        map.remove(&key);
                        true
                    }
                    Some((_, Expect::Many)) => true,
                    None => false,
                }
            };
            if !allowed {
                inner
                    .violations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Violation {
                        table: table.to_owned(),
                        sql: sql.to_owned(),
                    });
            }
        });
    }

    /// Every unaudited write seen so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.inner
            .violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `Ok` when no unaudited write was seen; otherwise an error listing them.
    pub fn check(&self) -> Result<(), Error> {
        let violations = self.violations();
        if violations.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = violations
            .iter()
            .map(|v| format!("{}: {}", v.table, v.sql))
            .collect();
        Err(Error::Invalid {
            what: "write path",
            reason: format!("{} unaudited write(s): {}", list.len(), list.join("; ")),
        })
    }
}

/// The table an INSERT, REPLACE, UPDATE or DELETE statement writes, if it is one.
fn written_table(sql: &str) -> Option<&str> {
    let mut words = sql.split_whitespace();
    let first = words.next()?;
    let name = if first.eq_ignore_ascii_case("INSERT") || first.eq_ignore_ascii_case("REPLACE") {
        words
            .find(|w| w.eq_ignore_ascii_case("INTO"))
            .and_then(|_| words.next())
    } else if first.eq_ignore_ascii_case("DELETE") {
        words
            .find(|w| w.eq_ignore_ascii_case("FROM"))
            .and_then(|_| words.next())
    } else if first.eq_ignore_ascii_case("UPDATE") {
        words.find(|w| !w.eq_ignore_ascii_case("LOW_PRIORITY") && !w.eq_ignore_ascii_case("IGNORE"))
    } else {
        None
    }?;
    let name = name.split('(').next()?;
    let name = name.rsplit('.').next()?;
    Some(name.trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']'))
}

#[cfg(test)]
mod tests {
    use super::written_table;

    #[test]
    fn finds_the_written_table() {
        assert_eq!(
            written_table(r#"INSERT INTO "posts" ("title") VALUES ($1)"#),
            Some("posts")
        );
        assert_eq!(
            written_table("insert ignore into `posts`(`title`) values (?)"),
            Some("posts")
        );
        assert_eq!(
            written_table(r#"UPDATE "public"."posts" SET "views" = $1"#),
            Some("posts")
        );
        assert_eq!(
            written_table("DELETE FROM posts WHERE id = 1"),
            Some("posts")
        );
        assert_eq!(written_table(r#"SELECT * FROM "posts""#), None);
    }
}
