//! The application's context for writes outside [`transaction`](super::transaction): set on
//! each pooled connection by the task that acquires it.
//!
//! SeaORM runs every statement outside a transaction on a connection it acquires from its pool
//! in the task that runs the statement, and a transaction on the connection acquired by the
//! task that began it. sqlx calls the pool's `before_acquire` callback (on an idle connection)
//! or `after_connect` (on a new one) in that task, before the connection is handed out, so the
//! current [`AuditContext`](crate::AuditContext) there is the context of whoever uses the connection until it goes
//! back to the pool. The callbacks write it into the connection's session (PostgreSQL: the
//! setting the triggers read, not transaction-local; MySQL: user variables), every time, an
//! empty context included: a connection never carries an earlier task's context into a later
//! use. Other programs' connections never get one, so their writes have no actor.

#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
use sea_orm::ConnectOptions;

/// Actor, tool and data of the acquiring task, or `None`: without a context, and with one the
/// log cannot hold (an over-long actor or tool), which the hooks refuse with an error but a
/// pool callback cannot report — the write is then recorded with no actor, never a cut one.
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
fn acquiring_context() -> super::Context {
    super::current_context().ok().flatten()
}

/// Where to note what the callback set, if `capture_db::transaction` is beginning a
/// transaction in this task (which then need not hand the same context over again), with what
/// an earlier connection got forgotten.
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
fn mark() -> Option<super::Carried> {
    super::CARRIED
        .try_with(|carried| {
            carried.reset();
            carried.clone()
        })
        .ok()
}

/// How many tokens this process gave: each acquire gets a new one, so that no two of its
/// connections hold the same at once (MySQL: a session variable; SQLite: a column of the
/// connection's temporary context table). A token tells, in SQL, the connection a
/// [`transaction`](super::transaction) was given from any other.
#[cfg(any(feature = "sqlx-mysql", feature = "sqlx-sqlite"))]
static TOKENS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
/// Where this process's tokens start: random (std's hasher keys come from the operating
/// system's randomness), so that another process's do not repeat them (a context row left
/// by one process under a connection id the server later gives another must not match that
/// one's token).
#[cfg(any(feature = "sqlx-mysql", feature = "sqlx-sqlite"))]
static FIRST: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

#[cfg(any(feature = "sqlx-mysql", feature = "sqlx-sqlite"))]
fn next_token() -> i64 {
    let first = *FIRST.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        // Below 2^62: room for the count after it.
        i64::try_from(random >> 2).unwrap_or(0)
    });
    first.wrapping_add(TOKENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Makes the pool built from `options` hand the current [`AuditContext`](crate::AuditContext) to the capture
/// triggers on every connection it gives out, so that writes of database-mode entities made
/// outside [`transaction`](super::transaction) (autocommit active-model writes,
/// `Entity::update_many(..).exec(&db)`, raw SQL on the `DatabaseConnection`) carry the actor,
/// tool and data of the task that made them. PostgreSQL, MySQL/MariaDB and SQLite (feature
/// `sqlx-sqlite`; there the capture triggers, in the database file, cannot read a
/// connection's temporary tables, so each connection gets a temporary trigger of its own on
/// `audit_log` that fills in the context of an entry they wrote without one, see below).
///
/// ```ignore
/// let mut options = ConnectOptions::new(url);
/// options.test_before_acquire(false); // the context statement already checks the connection
/// capture_db::carry_context(&mut options);
/// let db = Database::connect(options).await?;
/// ```
///
/// It costs one statement per acquire (a round trip, like sea-orm's default ping). It sets the
/// pool's `before_acquire` callback (keeping sea-orm's idle ping) and, through
/// `map_sqlx_*_pool_opts`, its `after_connect`: it replaces a pool-options function set before
/// it, and sea-orm's `set_schema_search_path` (put the search path in the URL instead:
/// `?options=-csearch_path%3Dmy_schema`). Call it last: a `before_acquire` or pool-options
/// function set after it replaces its own, and a reused connection then keeps the context it
/// was given when it opened; [`check_carried`] reports that.
///
/// A transaction carries the context of the task that began it, wherever it is used later;
/// on PostgreSQL the hooks of a database-mode entity replace it with their own task's, for
/// their write and the rest of that transaction (the setting is the transaction's). A
/// top-level [`transaction`](super::transaction) begun on such a pool finds its
/// context already set by the callback that gave it its connection, in its task, and hands
/// none over itself: no context row to write and delete on MySQL (two statements), no setting
/// on PostgreSQL (one). Should a hook of another context write through it, or through a
/// savepoint of it, a context row is written after all (on MySQL only on a connection holding
/// the token the callback set with the context, `@sea_orm_audit_token`; on SQLite likewise,
/// with the token in the temporary table), and deleted before the commit.
///
/// SQLite: the callback writes the context into the connection's temporary table
/// `sea_orm_audit_carried` (one row, which no other connection can see), and gives the
/// connection, once `audit_log` and the capture's context table exist (after the migrations
/// and a first `install`), the temporary trigger `sea_orm_audit_carry`: after an entry is
/// inserted that the capture triggers wrote with no context (`hash` `'unsealed'` and no
/// `prev_hash`, an action `create`, `update` or `delete`, no actor, tool, data or message, and
/// no context row of a [`transaction`](super::transaction) in effect), it sets that entry's
/// actor, tool and data to the carried ones. Until the connection's next acquire after the
/// first `install`, and on other programs' connections, entries have no actor. The library's
/// own entries (hooks, events) are never given it: they are sealed when written, or, after an
/// unsealed predecessor, written with `prev_hash` `'unsealed'`.
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
pub fn carry_context(options: &mut ConnectOptions) -> &mut ConnectOptions {
    #[cfg(feature = "sqlx-postgres")]
    postgres::attach(options);
    #[cfg(feature = "sqlx-sqlite")]
    sqlite::attach(options);
    #[cfg(feature = "sqlx-mysql")]
    mysql::attach(options);
    options
}

/// Checks that the pool behind `db` hands every connection it gives out the acquiring task's
/// context, as [`carry_context`] makes it: call it once after `Database::connect`, at startup
/// or in a test. A `map_sqlx_*_before_acquire` or `map_sqlx_*_pool_opts` set after
/// `carry_context` replaces its callbacks without a word, and a reused connection then keeps
/// the context of the task that used it before; this check fails instead, with
/// [`Error::ContextNotCarried`](crate::Error::ContextNotCarried).
///
/// It acquires a connection four times, 10 ms apart so that the later acquires find the
/// earlier one idle (sqlx hands idle connections out first), each time in a probe context of
/// its own (actor `sea-orm-audit carry check ...`, no tool, no data): the callback must have
/// run in this task for that acquire, and the connection's session must hold that context (on
/// MySQL and SQLite, with the token the callback noted). It writes nothing; the idle
/// connection it used keeps the last probe's context until its next acquire sets the next
/// task's. It sees the connections the pool gives it: a reused one always (where a replaced
/// `before_acquire` leaves the previous task's context, the misattribution this guards
/// against), a new one only if the pool opens one for it (with `connect_lazy(true)`, the
/// first); a replaced `after_connect` leaves a new connection with no context, so its writes
/// get no actor, and is reported only then.
///
/// ```ignore
/// let mut options = ConnectOptions::new(url);
/// capture_db::carry_context(&mut options);
/// let db = Database::connect(options).await?;
/// capture_db::check_carried(&db).await?;
/// ```
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
pub async fn check_carried(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::AuditContext;
    use crate::error::Error;

    static CHECKS: AtomicU64 = AtomicU64::new(0);
    let check = CHECKS.fetch_add(1, Ordering::Relaxed);
    let not_carried = |reason: String| sea_orm::DbErr::from(Error::ContextNotCarried { reason });
    for round in 0..4 {
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let actor = format!(
            "sea-orm-audit carry check {}.{check}.{round}",
            std::process::id()
        );
        let expected: super::Context = Some((Some(actor.clone()), None, None));
        let given = super::Carried::default();
        let seen = super::CARRIED
            .scope(
                given.clone(),
                AuditContext::new()
                    .actor(actor.clone())
                    .scope(session_context(db)),
            )
            .await;
        let Some((noted, token)) = given.take() else {
            return Err(not_carried(
                "carry_context's callback did not run when the pool gave out a connection: a \
                 map_sqlx_*_before_acquire or map_sqlx_*_pool_opts set after carry_context \
                 replaces it; call carry_context last"
                    .to_owned(),
            ));
        };
        let seen = seen.map_err(|e| {
            not_carried(format!(
                "the connection's context could not be read back ({e})"
            ))
        })?;
        let wanted = match token {
            None => (Some(super::postgres_context(expected.clone())), None),
            Some(token) => (Some(actor), Some(token)),
        };
        if noted != expected || seen != wanted {
            return Err(not_carried(format!(
                "the connection given out holds another context than its acquiring task's: \
                 {seen:?}, where {wanted:?} was set"
            )));
        }
    }
    Ok(())
}

/// The context in the session of the connection the pool gives out for this statement, as the
/// triggers read it: PostgreSQL's setting (no token), MySQL's user variables and SQLite's
/// temporary table (the actor and the token).
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
async fn session_context(
    db: &sea_orm::DatabaseConnection,
) -> Result<(Option<String>, Option<i64>), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT pg_catalog.current_setting('{}', true) AS v, CAST(NULL AS bigint) AS t",
            super::postgres::CONTEXT_SETTING
        ),
        DbBackend::MySql => {
            let v = super::mysql::SESSION_VARIABLE;
            format!("SELECT CAST(@{v}_actor AS CHAR) AS v, CAST(@{v}_token AS SIGNED) AS t")
        }
        _ => format!(
            "SELECT actor AS v, token AS t FROM temp.{}",
            super::sqlite::CARRY_TABLE
        ),
    };
    let row = db
        .query_one_raw(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound("no context in the session".to_owned()))?;
    Ok((row.try_get("", "v")?, row.try_get("", "t")?))
}

#[cfg(feature = "sqlx-postgres")]
mod postgres {
    use sea_orm::ConnectOptions;
    use sea_orm::sqlx::{self, PgConnection};

    use super::super::postgres::CONTEXT_SETTING;
    use super::super::{Carried, Context, postgres_context};
    use super::{acquiring_context, mark};

    async fn set(conn: &mut PgConnection, text: String) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_catalog.set_config($1, $2, false)")
            .bind(CONTEXT_SETTING)
            .bind(text)
            .execute(conn)
            .await
            .map(|_| ())
    }

    /// Sets `context` (the acquiring task's) on `conn`, and notes it where `mark` says.
    async fn carry(
        conn: &mut PgConnection,
        (context, mark): (Context, Option<Carried>),
    ) -> Result<(), sqlx::Error> {
        set(conn, postgres_context(context.clone())).await?;
        if let Some(mark) = mark {
            mark.note(context, None);
        }
        Ok(())
    }

    pub(super) fn attach(options: &mut ConnectOptions) {
        options.map_sqlx_postgres_before_acquire(|conn, _| {
            let given = (acquiring_context(), mark());
            Box::pin(async move { carry(conn, given).await.map(|()| true) })
        });
        options.map_sqlx_postgres_pool_opts(|pool| {
            pool.after_connect(|conn, _| {
                let given = (acquiring_context(), mark());
                Box::pin(carry(conn, given))
            })
        });
    }
}

#[cfg(feature = "sqlx-mysql")]
mod mysql {
    use sea_orm::ConnectOptions;
    use sea_orm::sqlx::{self, MySqlConnection};

    use super::super::mysql::SESSION_VARIABLE;
    use super::super::{Carried, Context};
    use super::{acquiring_context, mark, next_token};

    /// On a new connection, deletes a context row an earlier connection with the same id left
    /// committed (ids start again at 1 when the server restarts): one without a token would be
    /// read by this one's transactions. Errors are ignored: a database without database-mode
    /// capture has no such table, and the statement changes nothing the connection needs.
    async fn forget_left_row(conn: &mut MySqlConnection) {
        let sql = format!(
            "DELETE FROM {} WHERE connection = CONNECTION_ID()",
            super::super::mysql::CONTEXT_TABLE
        );
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(conn).await;
    }

    /// Sets `context` (the acquiring task's) and a new token in `conn`'s session, and notes
    /// both where `mark` says.
    async fn carry(
        conn: &mut MySqlConnection,
        (context, mark): (Context, Option<Carried>),
    ) -> Result<(), sqlx::Error> {
        let token = next_token();
        let (actor, tool, data) = context.clone().unwrap_or_default();
        let v = SESSION_VARIABLE;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET @{v}_actor = ?, @{v}_tool = ?, @{v}_data = ?, @{v}_token = ?"
        )))
        .bind(actor)
        .bind(tool)
        .bind(data.map(|d| d.to_string()))
        .bind(token)
        .execute(conn)
        .await?;
        if let Some(mark) = mark {
            mark.note(context, Some(token));
        }
        Ok(())
    }

    pub(super) fn attach(options: &mut ConnectOptions) {
        options.map_sqlx_mysql_before_acquire(|conn, _| {
            let given = (acquiring_context(), mark());
            Box::pin(async move { carry(conn, given).await.map(|()| true) })
        });
        options.map_sqlx_mysql_pool_opts(|pool| {
            pool.after_connect(|conn, _| {
                let given = (acquiring_context(), mark());
                Box::pin(async move {
                    forget_left_row(conn).await;
                    carry(conn, given).await
                })
            })
        });
    }
}

#[cfg(feature = "sqlx-sqlite")]
mod sqlite {
    use sea_orm::ConnectOptions;
    use sea_orm::sqlx::{self, SqliteConnection};

    use super::super::sqlite::{CARRY_SQL, CARRY_TABLE_SQL, arm_sql, ready_sql};
    use super::super::{Carried, Context};
    use super::{acquiring_context, mark, next_token};

    /// Gives the connection its temporary trigger, once the tables it reads exist. A failure
    /// leaves the connection without it (its entries get no actor) and is tried again at the
    /// next acquire.
    async fn arm(conn: &mut SqliteConnection) {
        let ready: Result<bool, sqlx::Error> = sqlx::query_scalar(sqlx::AssertSqlSafe(ready_sql()))
            .fetch_one(&mut *conn)
            .await;
        if let Ok(true) = ready
            && let Err(e) = sqlx::query(sqlx::AssertSqlSafe(arm_sql()))
                .execute(&mut *conn)
                .await
        {
            tracing::warn!(error = %e, "capture_db::carry_context: the connection's trigger was not created; its entries get no actor until a later acquire creates it");
        }
    }

    /// Writes `context` (the acquiring task's) and a new token into the connection's
    /// temporary table, arms the connection if it is not, and notes both where `mark` says.
    /// An error discards the connection: its table may still hold an earlier task's context.
    async fn carry(
        conn: &mut SqliteConnection,
        (context, mark): (Context, Option<Carried>),
    ) -> Result<(), sqlx::Error> {
        let token = next_token();
        let (actor, tool, data) = context.clone().unwrap_or_default();
        let armed: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(CARRY_SQL.as_str()))
            .bind(actor)
            .bind(tool)
            .bind(data.map(|d| d.to_string()))
            .bind(token)
            .fetch_one(&mut *conn)
            .await?;
        if !armed {
            arm(conn).await;
        }
        if let Some(mark) = mark {
            mark.note(context, Some(token));
        }
        Ok(())
    }

    pub(super) fn attach(options: &mut ConnectOptions) {
        options.map_sqlx_sqlite_before_acquire(|conn, _| {
            let given = (acquiring_context(), mark());
            Box::pin(async move { carry(conn, given).await.map(|()| true) })
        });
        options.map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_connect(|conn, _| {
                let given = (acquiring_context(), mark());
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(CARRY_TABLE_SQL.as_str()))
                        .execute(&mut *conn)
                        .await?;
                    carry(conn, given).await
                })
            })
        });
    }
}
