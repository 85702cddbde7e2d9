//! `capture_db::carry_context`: database-side capture outside transactions carries the context
//! of the task that acquired the pooled connection, and never an earlier task's.

#![allow(unreachable_pub)]

mod common;

use std::collections::HashMap;

use common::{TestDb, next};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter, Statement, TransactionTrait,
};
use sea_orm_audit::capture_db;
use sea_orm_audit::{AuditContext, verify};
use serde_json::json;

/// An entity of `ctx_posts`' shape (id, title, views), with the `#[audit]` given.
macro_rules! ctx_shaped {
    ($(#[$doc:meta])* mod $name:ident, $table:literal, #[$audit:meta]) => {
        $(#[$doc])*
        mod $name {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
            #[sea_orm(table_name = $table)]
            #[$audit]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                pub title: String,
                pub views: i32,
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            sea_orm_audit::impl_audited_behavior!();
        }
    };
}

ctx_shaped!(
    /// Captured by the database.
    mod ctx_post,
    "ctx_posts",
    #[audit(capture = "database")]
);
ctx_shaped!(
    /// `ctx_post`'s shape with its seal deferred: every backend writes its entries unsealed.
    mod ctx_deferred_post,
    "ctx_deferred_posts",
    #[audit(capture = "database", seal = "deferred")]
);
ctx_shaped!(
    /// `ctx_post`'s shape in hook mode.
    mod hook_ctx_post,
    "hook_ctx_posts",
    #[audit(capture = "hooks")]
);

async fn setup() -> TestDb {
    let t = TestDb::new().await;
    common::create_table(&t.db, ctx_post::Entity).await;
    capture_db::install::<ctx_post::Model, _>(&t.db)
        .await
        .unwrap();
    t
}

/// Options of a pool of `size` connections to `url`, without sea-orm's ping (so that nothing
/// but our statements and callbacks runs on acquire).
fn pool_options(url: String, size: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(size)
        .test_before_acquire(false)
        .sqlx_logging(false);
    options
}

/// A pool of `size` connections that carries the context; no ping, so that nothing but our
/// callback runs on acquire.
async fn carrying_pool(t: &TestDb, size: u32) -> DatabaseConnection {
    let mut options = pool_options(t.url.clone(), size);
    capture_db::carry_context(&mut options);
    let db = Database::connect(options).await.unwrap();
    if t.backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA busy_timeout=10000;")
            .await
            .unwrap();
    }
    db
}

/// The server's id of the connection a statement runs on.
async fn connection_id(db: &DatabaseConnection) -> i64 {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => "SELECT pg_backend_pid()::bigint AS id",
        DbBackend::MySql => "SELECT CAST(CONNECTION_ID() AS SIGNED) AS id",
        _ => "SELECT 0 AS id",
    };
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "id")
        .unwrap()
}

/// `(object_id, action, actor, tool, data)` of every entry, oldest first.
async fn entries(db: &DatabaseConnection) -> Vec<sea_orm_audit::audit_log::Model> {
    capture_db::seal(db).await.unwrap();
    common::all_logs(db).await
}

#[tokio::test]
async fn every_write_path_outside_a_transaction_carries_the_acquiring_context() {
    let t = setup().await;
    let db = carrying_pool(&t, 4).await;
    let alice = AuditContext::new()
        .actor("alice")
        .tool("cms")
        .with("request_id", "r-1");
    alice
        .scope(async {
            let post = ctx_post::ActiveModel {
                title: Set("a".into()),
                views: Set(0),
                ..Default::default()
            }
            .insert(&db)
            .await?;
            let mut post: ctx_post::ActiveModel = post.into();
            post.views = Set(1);
            post.update(&db).await?;
            ctx_post::Entity::update_many()
                .col_expr(ctx_post::Column::Views, Expr::value(2))
                .filter(ctx_post::Column::Id.eq(1))
                .exec(&db)
                .await?;
            db.execute_unprepared("UPDATE ctx_posts SET views = 3 WHERE id = 1")
                .await?;
            ctx_post::Entity::delete_by_id(1).exec(&db).await?;
            Ok::<_, sea_orm::DbErr>(())
        })
        .await
        .unwrap();
    // Outside the scope, on the same pool: no actor.
    db.execute_unprepared("INSERT INTO ctx_posts (id, title, views) VALUES (2, 'b', 0)")
        .await
        .unwrap();

    let rows = entries(&db).await;
    let got: Vec<(&str, &str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.object_id.as_str(), r.action.as_str(), r.actor.as_deref()))
        .collect();
    let by_alice = Some("alice");
    assert_eq!(
        got,
        vec![
            ("1", "create", by_alice),
            ("1", "update", by_alice),
            ("1", "update", by_alice),
            ("1", "update", by_alice),
            ("1", "delete", by_alice),
            ("2", "create", None),
        ]
    );
    assert_eq!(rows[0].tool.as_deref(), Some("cms"));
    assert_eq!(rows[0].data, Some(json!({"request_id": "r-1"})));
    assert_eq!(
        (rows[5].tool.as_deref(), rows[5].data.as_ref()),
        (None, None)
    );
    assert!(verify(&db).await.unwrap().problems.is_empty());
    db.close().await.unwrap();
    t.finish().await;
}

#[tokio::test]
async fn a_reused_connection_never_carries_an_earlier_tasks_context() {
    let t = setup().await;
    // One connection: every statement below runs on it, as the ids prove.
    let db = carrying_pool(&t, 1).await;
    let write = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.execute_unprepared(sql).await.unwrap();
            connection_id(&db).await
        }
    };
    let first = AuditContext::new()
        .actor("alice")
        .scope(write(
            "INSERT INTO ctx_posts (id, title, views) VALUES (1, 'a', 0)",
        ))
        .await;
    // Another task, no context, the same connection right after alice's statement.
    let second = tokio::spawn(write("UPDATE ctx_posts SET views = 1 WHERE id = 1"))
        .await
        .unwrap();
    let third = tokio::spawn(
        AuditContext::new()
            .actor("bob")
            .scope(write("UPDATE ctx_posts SET views = 2 WHERE id = 1")),
    )
    .await
    .unwrap();
    // Alice's context is on the idle connection again; another client (its own connection,
    // not from this pool) writes meanwhile.
    AuditContext::new()
        .actor("alice")
        .scope(write("UPDATE ctx_posts SET title = 'x' WHERE id = 1"))
        .await;
    let other = Database::connect(t.url.clone()).await.unwrap();
    other
        .execute_unprepared("UPDATE ctx_posts SET views = 3 WHERE id = 1")
        .await
        .unwrap();
    other.close().await.unwrap();
    // A context too long for the log: the hooks refuse it; the pool records no actor.
    let long = "m".repeat(10_000);
    AuditContext::new()
        .actor(long)
        .scope(write("UPDATE ctx_posts SET views = 4 WHERE id = 1"))
        .await;
    // (SQLite has no connection id: its pool of one has one connection.)
    assert_eq!((first, first), (second, third), "one pooled connection");

    let rows = entries(&db).await;
    let actors: Vec<Option<&str>> = rows.iter().map(|r| r.actor.as_deref()).collect();
    let (alice, bob) = (Some("alice"), Some("bob"));
    assert_eq!(actors, vec![alice, None, bob, alice, None, None]);
    db.close().await.unwrap();
    t.finish().await;
}

/// Replaces `carry_context`'s `before_acquire` with one that does nothing, as a callback set
/// after it would.
fn replace_before_acquire(options: &mut ConnectOptions, backend: DbBackend) {
    match backend {
        DbBackend::Postgres => {
            options.map_sqlx_postgres_before_acquire(|_, _| Box::pin(async { Ok(true) }));
        }
        DbBackend::MySql => {
            options.map_sqlx_mysql_before_acquire(|_, _| Box::pin(async { Ok(true) }));
        }
        _ => {
            options.map_sqlx_sqlite_before_acquire(|_, _| Box::pin(async { Ok(true) }));
        }
    }
}

/// Replaces `carry_context`'s pool-options function (its `after_connect`), as one set after it
/// would.
fn replace_pool_options(options: &mut ConnectOptions, backend: DbBackend) {
    match backend {
        DbBackend::Postgres => {
            options.map_sqlx_postgres_pool_opts(|pool| pool);
        }
        DbBackend::MySql => {
            options.map_sqlx_mysql_pool_opts(|pool| pool);
        }
        _ => {
            options.map_sqlx_sqlite_pool_opts(|pool| pool);
        }
    }
}

/// `check_carried` passes on pools built with `carry_context` last, and fails on one whose
/// callbacks something set after `carry_context` replaced, and on one without it. The hazard
/// it reports is real: with `before_acquire` replaced, the connection keeps the context it was
/// opened in, alice's, and bob's write on it is recorded as hers.
#[tokio::test]
async fn check_carried_reports_a_pool_whose_callbacks_were_replaced() {
    let t = setup().await;
    let backend = t.backend();
    for size in [1, 4] {
        let db = carrying_pool(&t, size).await;
        capture_db::check_carried(&db).await.unwrap();
        // Twice: the probes' contexts left on idle connections are replaced at the next acquire.
        capture_db::check_carried(&db).await.unwrap();
        db.close().await.unwrap();
    }

    let mut options = pool_options(t.url.clone(), 1);
    capture_db::carry_context(&mut options);
    replace_before_acquire(&mut options, backend);
    // `Database::connect` opens the pool's connection (in alice's request, say).
    let replaced = AuditContext::new()
        .actor("alice")
        .scope(Database::connect(options))
        .await
        .unwrap();
    let write = |actor: &'static str, sql: &'static str| {
        AuditContext::new()
            .actor(actor)
            .scope(replaced.execute_unprepared(sql))
    };
    write(
        "alice",
        "INSERT INTO ctx_posts (id, title, views) VALUES (1, 'a', 0)",
    )
    .await
    .unwrap();
    write("bob", "UPDATE ctx_posts SET views = 1 WHERE id = 1")
        .await
        .unwrap();
    let actors: Vec<Option<String>> = entries(&t.db).await.into_iter().map(|e| e.actor).collect();
    assert_eq!(actors, vec![Some("alice".to_owned()); 2], "the hazard");
    let err = capture_db::check_carried(&replaced).await.unwrap_err();
    assert!(err.to_string().contains("call carry_context last"), "{err}");
    replaced.close().await.unwrap();

    // Without its `after_connect`, a connection the check opens (the pool opens none before)
    // gets no context.
    let mut options = pool_options(t.url.clone(), 1);
    capture_db::carry_context(&mut options);
    replace_pool_options(&mut options, backend);
    options.connect_lazy(true);
    let replaced = Database::connect(options).await.unwrap();
    let err = capture_db::check_carried(&replaced).await.unwrap_err();
    assert!(err.to_string().contains("did not run"), "{err}");
    replaced.close().await.unwrap();

    let plain = Database::connect(pool_options(t.url.clone(), 1))
        .await
        .unwrap();
    let err = capture_db::check_carried(&plain).await.unwrap_err();
    assert!(err.to_string().contains("did not run"), "{err}");
    plain.close().await.unwrap();
    t.finish().await;
}

#[tokio::test]
async fn many_tasks_through_a_small_pool_are_each_given_their_own_actor() {
    const TASKS: i32 = 32;
    const WRITES: i32 = 20;
    const ROWS: i32 = 4;
    let t = setup().await;
    let db = carrying_pool(&t, 4).await;
    for id in 1..=ROWS {
        db.execute_unprepared(&format!(
            "INSERT INTO ctx_posts (id, title, views) VALUES ({id}, 't', 0)"
        ))
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let db = db.clone();
        // Every fourth task has no context: its writes must get no actor.
        let ctx = (task % 4 != 3).then(|| AuditContext::new().actor(format!("w{task}")));
        let work = async move {
            for seq in 0..WRITES {
                let id = (task + seq) % ROWS + 1;
                let views = task * 1000 + seq + 1;
                if seq % 2 == 0 {
                    ctx_post::Entity::update_many()
                        .col_expr(ctx_post::Column::Views, Expr::value(views))
                        .filter(ctx_post::Column::Id.eq(id))
                        .exec(&db)
                        .await
                        .unwrap();
                } else {
                    db.execute_unprepared(&format!(
                        "UPDATE ctx_posts SET views = {views} WHERE id = {id}"
                    ))
                    .await
                    .unwrap();
                }
                tokio::task::yield_now().await;
            }
        };
        tasks.push(tokio::spawn(async move {
            match ctx {
                Some(ctx) => ctx.scope(work).await,
                None => work.await,
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let rows = entries(&db).await;
    let updates: Vec<_> = rows.iter().filter(|r| r.action == "update").collect();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let (mut attributed, mut misattributed) = (0, 0);
    for row in &updates {
        let views = row.changes.as_ref().unwrap()["new_value"]["views"]
            .as_i64()
            .unwrap();
        *seen.entry(views).or_default() += 1;
        let task = views / 1000;
        let want = (task % 4 != 3).then(|| format!("w{task}"));
        if row.actor == want {
            attributed += usize::from(want.is_some());
        } else {
            misattributed += 1;
        }
    }
    assert_eq!(misattributed, 0, "entries with another task's actor");
    assert_eq!(
        updates.len(),
        (TASKS * WRITES) as usize,
        "one entry per write"
    );
    assert!(seen.values().all(|&n| n == 1), "no write logged twice");
    assert_eq!(attributed, (TASKS / 4 * 3 * WRITES) as usize);
    assert!(verify(&db).await.unwrap().problems.is_empty());
    db.close().await.unwrap();
    t.finish().await;
}

/// Connections cut under the writers, and answers to their UPDATEs swallowed after the write
/// committed: a write that failed or was replaced by a new connection never takes another
/// task's context. 8 tasks (one without context, one whose actor holds a NUL) write through a
/// proxy that cuts every connection or swallows an UPDATE's answer every 25 ms. Each task's
/// writes take turns: an autocommit UPDATE; a raw UPDATE in a `capture_db::transaction`,
/// which on this pool hands no context over (the session's is the task's); and an active-model
/// update in one, under a context of its own (`h<task>`), for which MySQL writes a context row
/// there and deletes it before the commit: none is left committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_connections_never_give_a_write_another_tasks_context() {
    use common::proxy::{FaultProxy, upstream_of};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const TASKS: i64 = 8;
    const WRITES: i64 = 60;
    let t = setup().await;
    if t.backend() == DbBackend::Sqlite {
        // No connection to cut: SQLite runs in the process.
        return t.finish().await;
    }
    for id in 1..=4 {
        t.db.execute_unprepared(&format!(
            "INSERT INTO ctx_posts (id, title, views) VALUES ({id}, 't', 0)"
        ))
        .await
        .unwrap();
    }
    let proxy = Arc::new(FaultProxy::start(upstream_of(&t.url)).await);
    let mut options = pool_options(proxy.url(&t.url), 3);
    options.acquire_timeout(std::time::Duration::from_secs(10));
    capture_db::carry_context(&mut options);
    let db = Database::connect(options).await.unwrap();
    // The actor a write's entry must carry (`views` names the task and the write): the hook's
    // own context's; else none for the task without context and for the one whose actor the
    // log cannot hold (its `capture_db::transaction`s are refused before they begin).
    let expected = |views: i64| {
        let (task, seq) = (views / 1000, views % 1000 - 1);
        match (task, seq % 3) {
            (_, 2) => Some(format!("h{task}")),
            (0 | 1, _) => None,
            _ => Some(format!("w{task}")),
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    let faults = {
        let (proxy, done) = (proxy.clone(), done.clone());
        tokio::spawn(async move {
            let mut round = 0u32;
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                round += 1;
                if round.is_multiple_of(2) {
                    proxy.cut_all();
                } else {
                    proxy.swallow_reply_to("UPDATE ctx_posts", 1);
                }
            }
        })
    };
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let db = db.clone();
        let work = async move {
            let mut outcome = Vec::new();
            for seq in 0..WRITES {
                let views = task * 1000 + seq + 1;
                let id = (task + seq) % 4 + 1;
                let sql = format!("UPDATE ctx_posts SET views = {views} WHERE id = {id}");
                let ok = match seq % 3 {
                    0 => db.execute_unprepared(&sql).await.is_ok(),
                    1 => capture_db::transaction(&db, |txn| {
                        Box::pin(async move { txn.execute_unprepared(&sql).await.map(drop) })
                    })
                    .await
                    .is_ok(),
                    _ => {
                        let hook = capture_db::transaction(&db, move |txn| {
                            Box::pin(async move {
                                let update = ctx_post::ActiveModel {
                                    id: Set(i32::try_from(id).unwrap()),
                                    views: Set(i32::try_from(views).unwrap()),
                                    ..Default::default()
                                }
                                .update(txn);
                                let own = AuditContext::new().actor(format!("h{task}"));
                                own.scope(update).await.map(drop)
                            })
                        });
                        hook.await.is_ok()
                    }
                };
                outcome.push((views, ok));
            }
            outcome
        };
        tasks.push(tokio::spawn(async move {
            match task {
                0 => work.await,
                1 => AuditContext::new().actor("ev\0il").scope(work).await,
                _ => {
                    AuditContext::new()
                        .actor(format!("w{task}"))
                        .scope(work)
                        .await
                }
            }
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    faults.await.unwrap();
    let failed = outcomes.iter().filter(|(_, ok)| !ok).count();
    let cuts = proxy.counters.cuts.load(Ordering::Relaxed);
    println!(
        "{} writes, {failed} failed; {cuts} cuts, {} answers swallowed",
        outcomes.len(),
        proxy.swallowed()
    );
    assert!(cuts > 0 && proxy.swallowed() > 0, "the faults fired");
    assert!(failed > 0, "some writes saw a fault");
    assert!(failed < outcomes.len(), "some writes went through");

    let rows = entries(&t.db).await;
    let mut logged: HashMap<i64, usize> = HashMap::new();
    let mut misattributed = Vec::new();
    for row in rows.iter().filter(|r| r.action == "update") {
        let views = row.changes.as_ref().unwrap()["new_value"]["views"]
            .as_i64()
            .unwrap();
        *logged.entry(views).or_default() += 1;
        if row.actor != expected(views) {
            misattributed.push((views, row.actor.clone()));
        }
    }
    assert!(misattributed.is_empty(), "{misattributed:?}");
    assert!(logged.values().all(|&n| n == 1), "no write logged twice");
    let by_path = |path: i64| {
        let ok = |&&(views, ok): &&(i64, bool)| ok && (views % 1000 - 1) % 3 == path;
        outcomes.iter().filter(ok).count()
    };
    println!(
        "succeeded: {} autocommit, {} raw in a transaction, {} hooks of their own context",
        by_path(0),
        by_path(1),
        by_path(2)
    );
    assert!(
        (0..3).all(|path| by_path(path) > 0),
        "every path went through"
    );
    if t.backend() == DbBackend::MySql {
        assert_eq!(committed_context_rows(&t).await, 0, "a context row left");
    }
    for (views, ok) in &outcomes {
        if *ok {
            assert_eq!(
                logged.get(views),
                Some(&1),
                "write {views} succeeded: logged once"
            );
        }
    }
    db.close().await.ok();
    t.finish().await;
}

/// MySQL: the seal a hook runs after an autocommit write, then the one
/// `capture_db::transaction` runs after its commit, lose their connection (their read's answer
/// swallowed). Each write committed, so it returns `Ok` with its entry logged, unsealed until
/// the next seal, which seals it; `verify` is then clean. (PostgreSQL hashes in the
/// trigger and SQLite has no TCP connection to cut: nothing to fail there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_seal_fails_after_it_committed_is_not_reported_as_failed() {
    use common::proxy::{FaultProxy, upstream_of};
    use sea_orm_audit::chain::ProblemKind;
    let t = setup().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let proxy = FaultProxy::start(upstream_of(&t.url)).await;
    let db = Database::connect(pool_options(proxy.url(&t.url), 2))
        .await
        .unwrap();
    // The seal's read of the unsealed entries (the only statement with this alias).
    proxy.swallow_reply_to("sea_orm_audit_prev_id", 1);
    let written = AuditContext::new()
        .actor("alice")
        .scope(
            ctx_post::ActiveModel {
                title: Set("kept".into()),
                views: Set(1),
                ..Default::default()
            }
            .insert(&db),
        )
        .await
        .expect("the write committed: its failed seal is not its failure");
    assert_eq!(proxy.swallowed(), 1, "the fault fired");
    let entries = sea_orm_audit::logs_for_id(&t.db, "ctx_posts", &written.id.to_string())
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let report = verify(&t.db).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Unsealed),
        "{:?}",
        report.problems
    );
    assert_eq!(report.problems.len(), 1, "the entry waits for a seal");
    capture_db::seal(&t.db).await.unwrap();
    let report = verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);

    // The same for the seal `capture_db::transaction` runs after its commit.
    proxy.swallow_reply_to("sea_orm_audit_prev_id", 1);
    let id = written.id;
    AuditContext::new()
        .actor("bob")
        .scope(capture_db::transaction(&db, |txn| {
            Box::pin(async move {
                ctx_post::ActiveModel {
                    id: Set(id),
                    views: Set(2),
                    ..Default::default()
                }
                .update(txn)
                .await
                .map(drop)
            })
        }))
        .await
        .expect("the transaction committed: its failed seal is not its failure");
    assert_eq!(proxy.swallowed(), 2, "the fault fired again");
    let entries = sea_orm_audit::logs_for_id(&t.db, "ctx_posts", &id.to_string())
        .await
        .unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.actor.as_deref() == Some("bob"))
            .count(),
        1
    );
    let report = verify(&t.db).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].kind, ProblemKind::Unsealed);
    capture_db::seal(&t.db).await.unwrap();
    let report = verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    db.close().await.ok();
    t.finish().await;
}

/// The deferred-seal table with its capture installed, and rows `ids` inserted by raw SQL (so
/// their entries wait for a seal).
async fn deferred_posts_with_raw_entries(t: &TestDb, ids: std::ops::Range<usize>) {
    common::create_table(&t.db, ctx_deferred_post::Entity).await;
    capture_db::install::<ctx_deferred_post::Model, _>(&t.db)
        .await
        .unwrap();
    raw_deferred_posts(t, ids).await;
}

async fn raw_deferred_posts(t: &TestDb, ids: std::ops::Range<usize>) {
    for i in ids {
        t.db.execute_unprepared(&format!(
            "INSERT INTO ctx_deferred_posts (title, views) VALUES ('raw {i}', {i})"
        ))
        .await
        .unwrap();
    }
}

/// `verify` names exactly `n` problems, each an unsealed entry.
async fn assert_unsealed(t: &TestDb, n: usize) {
    let report = verify(&t.db).await.unwrap();
    assert_eq!(report.problems.len(), n, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == sea_orm_audit::chain::ProblemKind::Unsealed)
    );
}

/// SQLite: carrying the context takes no lock of the database file. While another connection
/// holds the write lock, a carrying pool's connection (busy timeout 0: any wait fails at once)
/// is acquired, carries its task's context into its temporary table and arms its trigger; a
/// write to the database file on it is refused, which proves the lock was held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrying_takes_no_lock_of_the_sqlite_file() {
    let t = setup().await;
    if t.backend() != DbBackend::Sqlite {
        return t.finish().await;
    }
    let mut options = pool_options(t.url.clone(), 1);
    options.map_sqlx_sqlite_opts(|o| o.busy_timeout(std::time::Duration::ZERO));
    capture_db::carry_context(&mut options);
    let carrying = Database::connect(options).await.unwrap();

    let holder = t.db.begin().await.unwrap();
    holder
        .execute_unprepared("INSERT INTO ctx_posts (id, title, views) VALUES (1, 'held', 0)")
        .await
        .unwrap();
    let (carried, armed, refused) = AuditContext::new()
        .actor("alice")
        .scope(async {
            let carried: Option<String> = carrying
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT actor FROM temp.sea_orm_audit_carried",
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get("", "actor")
                .unwrap();
            let armed: i64 = carrying
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT count(*) AS n FROM temp.sqlite_master WHERE type = 'trigger' \
                     AND name = 'sea_orm_audit_carry'",
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get("", "n")
                .unwrap();
            let refused = carrying
                .execute_unprepared("INSERT INTO ctx_posts (id, title, views) VALUES (2, 'b', 0)")
                .await
                .err()
                .map(|e| e.to_string());
            (carried, armed, refused)
        })
        .await;
    holder.rollback().await.unwrap();
    assert_eq!(carried.as_deref(), Some("alice"));
    assert_eq!(
        armed, 1,
        "the connection's trigger was created under the lock"
    );
    let refused = refused.expect("a write to the file while the lock is held must fail");
    assert!(refused.contains("locked"), "{refused}");
    carrying.close().await.unwrap();
    t.finish().await;
}

/// A `capture_db::Sealer` whose seal loses its connection (the answer to its read of the
/// unsealed entries swallowed by the proxy) counts the failure, keeps its timer and seals the
/// entries at a later tick; `verify` is then clean. PostgreSQL and MySQL (SQLite has no TCP
/// connection to cut), with entries of an entity whose seal is deferred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealer_whose_seal_fails_counts_it_and_seals_at_a_later_tick() {
    use common::proxy::{FaultProxy, upstream_of};
    let t = TestDb::new().await;
    if t.backend() == DbBackend::Sqlite {
        return t.finish().await;
    }
    deferred_posts_with_raw_entries(&t, 0..3).await;
    assert_unsealed(&t, 3).await;

    let proxy = FaultProxy::start(upstream_of(&t.url)).await;
    let db = Database::connect(pool_options(proxy.url(&t.url), 2))
        .await
        .unwrap();
    // The seal's read of the unsealed entries (the only statement with this alias).
    proxy.swallow_reply_to("sea_orm_audit_prev_id", 1);
    let sealer = capture_db::Sealer::spawn(db.clone(), std::time::Duration::from_millis(20));
    let start = std::time::Instant::now();
    while sealer.sealed() < 3 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "sealed {} of 3 after {} failures",
            sealer.sealed(),
            sealer.failures()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.swallowed(), 1, "the fault fired");
    assert_eq!(sealer.failures(), 1, "the failed seal is counted");
    assert_eq!(sealer.stop().await.unwrap(), 0, "nothing left to seal");
    let report = verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    db.close().await.ok();
    t.finish().await;
}

/// A seal seals the entries there were when it began, not the ones written while it runs:
/// otherwise, with writers outpacing it, one call (and a `Sealer`'s `stop`) would never return.
/// The seal's UPDATE is held by the fault proxy while three more entries commit; the call
/// returns having sealed the first three, and the next call seals the others.
#[tokio::test]
async fn a_seal_does_not_chase_entries_written_while_it_runs() {
    use common::proxy::{FaultProxy, upstream_of};
    let t = TestDb::new().await;
    if t.backend() == DbBackend::Sqlite {
        return t.finish().await;
    }
    deferred_posts_with_raw_entries(&t, 0..3).await;
    let proxy = FaultProxy::start(upstream_of(&t.url)).await;
    let mut options = ConnectOptions::new(proxy.url(&t.url));
    options.max_connections(1).sqlx_logging(false);
    let db = Database::connect(options).await.unwrap();
    // The seal's batch UPDATE: PostgreSQL joins a VALUES list, MySQL forces the primary key.
    let update = if t.backend() == DbBackend::Postgres {
        "FROM (VALUES"
    } else {
        "FORCE INDEX (PRIMARY)"
    };
    proxy.delay(Some((update, std::time::Duration::from_millis(500))));
    let seal = tokio::spawn({
        let db = db.clone();
        async move { capture_db::seal(&db).await }
    });
    let start = std::time::Instant::now();
    while proxy.delayed() == 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    raw_deferred_posts(&t, 3..6).await;
    assert_eq!(
        seal.await.unwrap().unwrap(),
        3,
        "only the entries it began with"
    );
    assert_eq!(proxy.delayed(), 1, "the fault fired once");
    proxy.delay(None);
    assert_unsealed(&t, 3).await;
    assert_eq!(capture_db::seal(&db).await.unwrap(), 3);
    assert!(verify(&t.db).await.unwrap().is_ok());
    db.close().await.ok();
    t.finish().await;
}

/// The context as the triggers read it inside `capture_db::transaction` is the context as set,
/// at the log's limits and with hostile values: an actor and a tool of `MAX_KEY_CHARS`
/// characters of four bytes each, quotes and backslashes in large, nested data. On MySQL the
/// trigger reads them into variables of its own (a `SELECT ... INTO`), whose types must hold
/// all of it. Raw SQL through the transaction, so only the trigger writes. On a pool that
/// carries the context they travel in the session instead, and a hook of another hostile
/// context inside such a transaction writes them into its context row (MySQL, SQLite).
#[tokio::test]
async fn hostile_context_values_reach_trigger_entries_unchanged() {
    let t = setup().await;
    let (actor, tool, blob, nested) = hostile_values();
    let ctx = AuditContext::new()
        .actor(actor.clone())
        .tool(tool.clone())
        .with("blob", blob.clone())
        .with("nested", nested.clone());
    // Also through a pool that carries the context, where they travel in the session, and
    // where a hook of another hostile context (actor and tool swapped) hands its own over
    // inside the transaction (MySQL and SQLite: a context row written for it).
    let carrying = carrying_pool(&t, 1).await;
    for db in [&t.db, &carrying] {
        ctx.clone()
            .scope(capture_db::transaction(db, |txn| {
                Box::pin(async move {
                    txn.execute_unprepared(
                        "INSERT INTO ctx_posts (title, views) VALUES ('hostile', 1)",
                    )
                    .await
                    .map(drop)
                })
            }))
            .await
            .unwrap();
    }
    let swapped = AuditContext::new()
        .actor(tool.clone())
        .tool(actor.clone())
        .with("blob", blob.clone());
    {
        let swapped = swapped.clone();
        ctx.clone()
            .scope(capture_db::transaction(&carrying, move |txn| {
                Box::pin(async move {
                    let update = ctx_post::ActiveModel {
                        id: Set(1),
                        views: Set(2),
                        ..Default::default()
                    }
                    .update(txn);
                    swapped.scope(update).await.map(drop)
                })
            }))
            .await
            .unwrap();
    }
    let logged = entries(&t.db).await;
    let (creates, updates): (Vec<_>, Vec<_>) = logged.iter().partition(|e| e.action == "create");
    assert_eq!(creates.len(), 2);
    assert_eq!(updates.len(), 1);
    for entry in creates {
        assert_eq!(entry.actor.as_deref(), Some(actor.as_str()));
        assert_eq!(entry.tool.as_deref(), Some(tool.as_str()));
        let data = entry.data.as_ref().expect("the context's data");
        assert_eq!(data["blob"], json!(blob));
        assert_eq!(data["nested"], nested);
    }
    for entry in updates {
        assert_eq!(entry.actor.as_deref(), Some(tool.as_str()));
        assert_eq!(entry.tool.as_deref(), Some(actor.as_str()));
        let data = entry.data.as_ref().expect("the hook's context's data");
        assert_eq!(data["blob"], json!(blob));
        assert!(data.get("nested").is_none(), "{data}");
    }
    assert!(verify(&t.db).await.unwrap().is_ok());
    carrying.close().await.unwrap();
    t.finish().await;
}

/// Actor and tool of `MAX_KEY_CHARS` characters of four bytes or accented, with quotes and
/// backslashes; a 120 KB blob of the same; JSON nested 20 deep.
fn hostile_values() -> (String, String, String, serde_json::Value) {
    use sea_orm_audit::MAX_KEY_CHARS;
    let actor = "🙂".repeat(MAX_KEY_CHARS);
    let tool = format!("é'\"\\{}", "ß".repeat(MAX_KEY_CHARS - 4));
    let blob = "x'\"\\🙂".repeat(20_000);
    let nested = (0..20).fold(json!("leaf"), |inner, _| json!({"k": inner}));
    (actor, tool, blob, nested)
}

/// The context a nested `capture_db::transaction` gives back is the enclosing one's exactly,
/// hostile values included (PostgreSQL: the setting's text read back and set again; SQLite
/// and MySQL: the row read back and written again): a raw write after the nested one carries
/// them unchanged.
#[tokio::test]
async fn hostile_context_values_come_back_after_a_nested_transaction() {
    let t = setup().await;
    let (actor, tool, blob, nested) = hostile_values();
    let ctx = AuditContext::new()
        .actor(actor.clone())
        .tool(tool.clone())
        .with("blob", blob.clone())
        .with("nested", nested.clone());
    ctx.scope(capture_db::transaction(&t.db, |txn| {
        Box::pin(async move {
            AuditContext::new()
                .actor("bob")
                .scope(capture_db::transaction(txn, |inner| {
                    Box::pin(async move {
                        inner
                            .execute_unprepared(
                                "INSERT INTO ctx_posts (title, views) VALUES ('bob', 1)",
                            )
                            .await
                            .map(drop)
                    })
                }))
                .await?;
            txn.execute_unprepared("INSERT INTO ctx_posts (title, views) VALUES ('after', 1)")
                .await
                .map(drop)
        })
    }))
    .await
    .unwrap();
    let logged = entries(&t.db).await;
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0].actor.as_deref(), Some("bob"));
    assert_eq!(logged[0].data, None);
    let entry = &logged[1];
    assert_eq!(entry.actor.as_deref(), Some(actor.as_str()));
    assert_eq!(entry.tool.as_deref(), Some(tool.as_str()));
    let data = entry.data.as_ref().expect("the context's data");
    assert_eq!(data["blob"], json!(blob));
    assert_eq!(data["nested"], nested);
    assert!(verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}

/// A NUL character in the context's data (a value or a key, however deep) is refused with
/// `Error::Nul` before anything is written, on every backend and in both capture modes.
/// PostgreSQL cannot store it: before, both writes there failed with the database's
/// "unsupported Unicode escape sequence", found only when the entry was written; SQLite and
/// MySQL stored it.
#[tokio::test]
async fn a_nul_in_the_context_data_is_refused_before_the_write() {
    let t = setup().await;
    let hostile = [
        AuditContext::new().with("blob", "a\u{0}b"),
        AuditContext::new().with("deep", json!({"k": [1, {"x\u{0}": true}]})),
    ];
    for ctx in hostile {
        let refused = ctx
            .clone()
            .scope(capture_db::transaction(&t.db, |txn| {
                Box::pin(async move {
                    txn.execute_unprepared("INSERT INTO ctx_posts (title, views) VALUES ('nul', 1)")
                        .await
                        .map(drop)
                })
            }))
            .await
            .unwrap_err();
        let named = |e: &dyn std::fmt::Display| {
            let e = e.to_string();
            assert!(e.contains("NUL") && e.contains("`data`"), "{e}");
        };
        named(&refused);
        let refused = ctx
            .scope(common::new_post("nul").insert(&t.db))
            .await
            .unwrap_err();
        named(&refused);
    }
    assert!(entries(&t.db).await.is_empty(), "nothing logged");
    let rows =
        t.db.query_one_raw(Statement::from_string(
            t.backend(),
            "SELECT (SELECT COUNT(*) FROM ctx_posts) + (SELECT COUNT(*) FROM posts) AS n",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(rows, 0, "nothing written");
    t.finish().await;
}

/// MySQL: how many context rows this connection has, committed or its transaction's own.
async fn context_rows(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::MySql,
            "SELECT COUNT(*) AS n FROM sea_orm_audit_context WHERE connection = CONNECTION_ID()",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// `(object_id, actor)` of every entry, oldest first (sealed first).
async fn actors_by_object(db: &DatabaseConnection) -> Vec<(String, Option<String>)> {
    let entries = entries(db).await.into_iter();
    entries.map(|e| (e.object_id, e.actor)).collect()
}

/// An expected `(object_id, actor)`.
fn who(id: &str, actor: Option<&str>) -> (String, Option<String>) {
    (id.to_owned(), actor.map(str::to_owned))
}

async fn drop_tables(db: &DatabaseConnection, tables: &[&str]) {
    for table in tables {
        db.execute_unprepared(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }
}

/// A closure for `capture_db::transaction`: a raw insert titled `title`, a `CREATE TABLE`
/// (MySQL commits implicitly before and after it), then `Ok` or an error.
fn insert_then_ddl<'c>(
    txn: &'c DatabaseTransaction,
    title: &'static str,
    table: &'static str,
    ok: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), DbErr>> + Send + 'c>> {
    Box::pin(async move {
        raw_insert(txn, title).await?;
        txn.execute_unprepared(&format!("CREATE TABLE {table} (id INT)"))
            .await?;
        if ok {
            Ok(())
        } else {
            Err(DbErr::Custom("given up after the DDL".into()))
        }
    })
}

/// MySQL commits implicitly before and after DDL: a `capture_db::transaction` whose closure
/// creates a table has its context row committed with it, and a rollback cannot take it back.
/// Whether the closure then succeeds or fails, top-level or nested in a plain transaction, the
/// row must not outlive it: later transactions on that connection (here a plain `begin()`
/// writing raw SQL) carry no actor, never alice or bob.
#[tokio::test]
async fn a_context_row_committed_by_ddl_is_not_read_by_later_transactions() {
    let t = setup().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    // One connection: every later transaction runs where the context row was written.
    let db = Database::connect(pool_options(t.url.clone(), 1))
        .await
        .unwrap();
    // Top level, failing after the DDL.
    let failed = AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(&db, |txn| {
            insert_then_ddl(txn, "a", "ctx_ddl_a", false)
        }))
        .await;
    assert!(failed.is_err());
    assert_eq!(context_rows(&db).await, 0, "left by a failed one");
    // Top level, succeeding after the DDL.
    AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(&db, |txn| {
            insert_then_ddl(txn, "b", "ctx_ddl_b", true)
        }))
        .await
        .unwrap();
    assert_eq!(context_rows(&db).await, 0, "left by a committed one");
    // Nested in a plain transaction (its savepoint ended by the DDL), failing.
    let outer = db.begin().await.unwrap();
    let failed = AuditContext::new()
        .actor("bob")
        .scope(capture_db::transaction(&outer, |txn| {
            insert_then_ddl(txn, "c", "ctx_ddl_c", false)
        }))
        .await;
    assert!(failed.is_err());
    // sqlx still counts the savepoint the DDL ended: its commit (a RELEASE) fails with 1305.
    let _ = outer.commit().await;
    assert_eq!(context_rows(&db).await, 0, "left by a failed nested one");
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("INSERT INTO ctx_posts (title, views) VALUES ('d', 0)")
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let actors = actors_by_object(&t.db).await;
    // 'a', 'b' and 'c' committed with the DDL's implicit commit, each under its actor.
    assert_eq!(
        actors,
        vec![
            who("1", Some("alice")),
            who("2", Some("alice")),
            who("3", Some("bob")),
            who("4", None)
        ]
    );
    drop_tables(&db, &["ctx_ddl_a", "ctx_ddl_b", "ctx_ddl_c"]).await;
    db.close().await.unwrap();
    t.finish().await;
}

/// A `capture_db::transaction` nested in another one replaces the outer one's context row
/// with its own; when its closure's DDL commits that row (and the outer transaction with it)
/// and then fails, it puts back the outer one's context, and the outer one deletes its row at
/// its end: the connection's row holds alice's actor again after bob's failed, and none is
/// left afterwards.
#[tokio::test]
async fn a_nested_context_committed_by_ddl_is_put_back_then_deleted() {
    let t = setup().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let db = Database::connect(pool_options(t.url.clone(), 1))
        .await
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = seen.clone();
    // The outer one's own end may fail: sqlx still counts the savepoint the DDL ended.
    let outcome = AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(&db, |outer| {
            Box::pin(async move {
                assert_eq!(row_actor(outer).await?.as_deref(), Some("alice"));
                let inner = AuditContext::new()
                    .actor("bob")
                    .scope(capture_db::transaction(outer, |inner| {
                        Box::pin(async move {
                            assert_eq!(row_actor(inner).await?.as_deref(), Some("bob"));
                            insert_then_ddl(inner, "e", "ctx_ddl_e", false).await
                        })
                    }))
                    .await;
                // sqlx still counts the savepoint the DDL ended: the outer transaction's next
                // statement is its rollback, which fails (1305); the one after runs.
                let after = match row_actor(outer).await {
                    Err(e) if e.to_string().contains("1305") => row_actor(outer).await?,
                    read => read?,
                };
                *slot.lock().unwrap() = Some((inner, after));
                Ok::<_, DbErr>(())
            })
        }))
        .await;
    let (inner, after) = seen
        .lock()
        .unwrap()
        .take()
        .unwrap_or_else(|| panic!("the outer closure failed: {outcome:?}"));
    assert!(inner.is_err(), "the nested closure failed after its DDL");
    assert_eq!(
        after.as_deref(),
        Some("alice"),
        "bob's context was not put back"
    );
    assert_eq!(context_rows(&db).await, 0, "left by the outer one");
    drop_tables(&db, &["ctx_ddl_e"]).await;
    db.close().await.unwrap();
    t.finish().await;
}

/// The actor of this connection's context row, if it has one.
async fn row_actor(c: &DatabaseTransaction) -> Result<Option<String>, DbErr> {
    let sql = "SELECT actor FROM sea_orm_audit_context WHERE connection = CONNECTION_ID()";
    let row = c
        .query_one_raw(Statement::from_string(DbBackend::MySql, sql))
        .await?;
    Ok(row
        .map(|row| row.try_get::<Option<String>>("", "actor"))
        .transpose()?
        .flatten())
}

/// The other half of the case above: a `capture_db::transaction` nested in a plain
/// transaction whose closure ends its savepoint with DDL and then succeeds leaves no row
/// either (its commit, a RELEASE of that savepoint, fails in sqlx), and a top-level one's
/// writes after its DDL autocommit, outside the transaction: on a pool without
/// `carry_context` they carry no actor, never the closure's (MariaDB's trigger reads the row
/// only inside explicit transactions).
#[tokio::test]
async fn writes_after_ddl_in_capture_transactions_carry_no_stale_actor() {
    let t = setup().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let db = Database::connect(pool_options(t.url.clone(), 1))
        .await
        .unwrap();
    let outer = db.begin().await.unwrap();
    let _ = AuditContext::new()
        .actor("erin")
        .scope(capture_db::transaction(&outer, |txn| {
            insert_then_ddl(txn, "e", "ctx_ddl_e", true)
        }))
        .await;
    let _ = outer.commit().await;
    assert_eq!(
        context_rows(&db).await,
        0,
        "left by a nested one that succeeded"
    );
    AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(&db, |txn| {
            Box::pin(async move {
                insert_then_ddl(txn, "g", "ctx_ddl_g", true).await?;
                txn.execute_unprepared("INSERT INTO ctx_posts (title, views) VALUES ('h', 0)")
                    .await
                    .map(drop)
            })
        }))
        .await
        .unwrap();
    assert_eq!(context_rows(&db).await, 0, "left by a top-level one");
    let actors = actors_by_object(&t.db).await;
    assert_eq!(
        actors,
        vec![
            who("1", Some("erin")),
            who("2", Some("alice")),
            who("3", None)
        ]
    );
    drop_tables(&db, &["ctx_ddl_e", "ctx_ddl_g"]).await;
    db.close().await.unwrap();
    t.finish().await;
}

/// MySQL: the test database and a pool of one connection that carries the context; `None`
/// (the database given back) on the other backends.
async fn mysql_with_a_carrying_connection() -> Option<(TestDb, DatabaseConnection)> {
    let t = setup().await;
    if t.backend() != DbBackend::MySql {
        t.finish().await;
        return None;
    }
    let db = carrying_pool(&t, 1).await;
    Some((t, db))
}

/// A raw insert titled `title` in a plain transaction begun under `actor`.
async fn raw_insert_in_a_plain_transaction(db: &DatabaseConnection, actor: &str, title: &str) {
    let txn = AuditContext::new()
        .actor(actor)
        .scope(db.begin())
        .await
        .unwrap();
    raw_insert(&txn, title).await.unwrap();
    txn.commit().await.unwrap();
}

/// Every committed context row, whichever connection wrote it (MySQL, SQLite).
async fn committed_context_rows(t: &TestDb) -> i64 {
    let row =
        t.db.query_one_raw(Statement::from_string(
            t.backend(),
            "SELECT COUNT(*) AS n FROM sea_orm_audit_context",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Whether `sql` hands a context over: MySQL's context row, PostgreSQL's setting.
fn hands_over_context(sql: &str) -> bool {
    sql.contains("sea_orm_audit_context") || sql.contains("set_config")
}

/// A raw insert of a post titled `title` through `c`, seen by SeaORM's metric callback.
async fn raw_insert<C: ConnectionTrait>(c: &C, title: &str) -> Result<(), DbErr> {
    let sql = match c.get_database_backend() {
        DbBackend::Postgres => "INSERT INTO ctx_posts (title, views) VALUES ($1, 0)",
        _ => "INSERT INTO ctx_posts (title, views) VALUES (?, 0)",
    };
    c.execute_raw(Statement::from_sql_and_values(
        c.get_database_backend(),
        sql,
        [title.into()],
    ))
    .await
    .map(drop)
}

/// On a pool that carries the context, a top-level `capture_db::transaction` finds the task's
/// context already in the session of the connection it was given, in the same task: it writes
/// no context row (MySQL, SQLite) and sets no setting (PostgreSQL), and its writes still carry the
/// actor. On a pool that does not, the same transaction hands its context over (the check is
/// not vacuous). A hook of another context through it, or through a savepoint of it, writes a
/// row after all, which applies to the rest of the transaction and is gone once it commits;
/// through a transaction of another connection begun inside it, the hook writes no row there
/// (nothing would delete it, and that connection's later transactions would read it).
#[tokio::test]
async fn a_transaction_on_a_carrying_pool_hands_over_no_context_of_its_own() {
    let t = setup().await;
    // MySQL and SQLite hand a hook's context over in a context row, PostgreSQL in a setting.
    let rows = t.backend() != DbBackend::Postgres;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let take =
        |s: &std::sync::Arc<std::sync::Mutex<Vec<String>>>| std::mem::take(&mut *s.lock().unwrap());
    let mut plain = Database::connect(pool_options(t.url.clone(), 1))
        .await
        .unwrap();
    let mut db = carrying_pool(&t, 2).await;
    for pool in [&mut plain, &mut db] {
        let sink = seen.clone();
        pool.set_metric_callback(move |info| sink.lock().unwrap().push(info.statement.sql.clone()));
    }
    let alice = || AuditContext::new().actor("alice");

    // 1 on the plain pool: the context is handed over.
    alice()
        .scope(capture_db::transaction_unsealed(&plain, |txn| {
            Box::pin(raw_insert(txn, "p"))
        }))
        .await
        .unwrap();
    let statements = take(&seen);
    assert!(
        statements.iter().any(|s| hands_over_context(s)),
        "{statements:?}"
    );
    // 2 on the carrying pool: nothing but the write (on SQLite after the write that changes
    // nothing and takes the write lock).
    alice()
        .scope(capture_db::transaction_unsealed(&db, |txn| {
            Box::pin(raw_insert(txn, "c"))
        }))
        .await
        .unwrap();
    let statements = take(&seen);
    let lock = "UPDATE \"sea_orm_audit_context\" SET id = id WHERE 0";
    match t.backend() {
        DbBackend::Sqlite => assert_eq!(statements[..1], [lock], "{statements:?}"),
        _ => assert_eq!(statements.len(), 1, "{statements:?}"),
    }
    let write = statements.last().unwrap();
    assert!(write.starts_with("INSERT INTO ctx_posts"), "{statements:?}");

    // 3: a hook under bob through the transaction, then a raw write: bob's; a savepoint whose
    // hook runs under carol, then a raw write after it: carol's.
    alice()
        .scope(capture_db::transaction(&db, |txn| {
            Box::pin(async move {
                let bob = Mode::Database.update(txn, 2, "by bob");
                AuditContext::new().actor("bob").scope(bob).await?;
                raw_insert(txn, "after bob").await?;
                let savepoint = txn.begin().await?;
                let carol = Mode::Database.update(&savepoint, 2, "by carol");
                AuditContext::new().actor("carol").scope(carol).await?;
                savepoint.commit().await?;
                raw_insert(txn, "after carol").await
            })
        }))
        .await
        .unwrap();
    if rows {
        assert_eq!(
            committed_context_rows(&t).await,
            0,
            "a hook's row outlived it"
        );
    }
    // 4: a hook under dave through a transaction of the pool's other connection, begun inside
    // one of alice's; then a raw write through alice's. Not on SQLite: alice's transaction
    // holds the database's write lock from its beginning, and the other connection's write
    // would wait for it until its busy timeout (as it does on a plain pool).
    let sqlite = t.backend() == DbBackend::Sqlite;
    if !sqlite {
        alice()
            .scope(capture_db::transaction(&db, |txn| {
                let pool = db.clone();
                Box::pin(async move {
                    let other = pool.begin().await?;
                    let dave = Mode::Database.update(&other, 1, "by dave");
                    AuditContext::new().actor("dave").scope(dave).await?;
                    other.commit().await?;
                    raw_insert(txn, "beside dave").await
                })
            }))
            .await
            .unwrap();
        if rows {
            assert_eq!(
                committed_context_rows(&t).await,
                0,
                "a row left on another connection"
            );
        }
    }
    let entries = entries(&t.db).await;
    let got: Vec<(String, String, Option<String>)> = entries
        .into_iter()
        .map(|e| {
            let changes = e.changes.unwrap_or_default();
            let title = changes["new_value"]["title"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (e.object_id, title, e.actor)
        })
        .collect();
    let expected = |id: &str, title: &str, actor: &str| {
        (id.to_owned(), title.to_owned(), Some(actor.to_owned()))
    };
    let mut want = vec![
        expected("1", "p", "alice"),
        expected("2", "c", "alice"),
        expected("2", "by bob", "bob"),
        expected("3", "after bob", "bob"),
        expected("2", "by carol", "carol"),
        expected("4", "after carol", "carol"),
    ];
    if !sqlite {
        want.extend([
            // The other connection's transaction carries the context of the task that began
            // it (alice's), as every transaction on a carrying pool does; on PostgreSQL a
            // database-mode hook sets its own for its write there (a setting local to that
            // transaction), on MySQL and SQLite only where the connection has a context row.
            expected("1", "by dave", if rows { "alice" } else { "dave" }),
            expected("5", "beside dave", "alice"),
        ]);
    }
    assert_eq!(got, want);
    assert!(verify(&t.db).await.unwrap().problems.is_empty());
    plain.close().await.unwrap();
    db.close().await.unwrap();
    t.finish().await;
}

/// MySQL, on a pool that carries the context: a hook of another context writes a context row
/// in a `capture_db::transaction` that wrote none, and then the closure creates a table (an
/// implicit commit, which commits the row too). Whether the closure then fails or succeeds, the
/// row is deleted: none is left committed, and a later plain transaction on that connection
/// carries its own task's context, not erin's.
#[tokio::test]
async fn a_hooks_row_committed_by_ddl_in_a_carried_transaction_is_deleted() {
    let Some((t, db)) = mysql_with_a_carrying_connection().await else {
        return;
    };
    raw_insert(&db, "first").await.unwrap();
    for (ok, title, table) in [(false, "a", "ctx_ddl_ha"), (true, "b", "ctx_ddl_hb")] {
        let result = AuditContext::new()
            .actor("alice")
            .scope(capture_db::transaction(&db, move |txn| {
                Box::pin(async move {
                    let erin = Mode::Database.update(txn, 1, title);
                    AuditContext::new().actor("erin").scope(erin).await?;
                    insert_then_ddl(txn, title, table, ok).await
                })
            }))
            .await;
        assert_eq!(result.is_ok(), ok, "{result:?}");
        assert_eq!(committed_context_rows(&t).await, 0, "left after {title}");
    }
    raw_insert_in_a_plain_transaction(&db, "bob", "later").await;
    let actors = actors_by_object(&t.db).await;
    assert_eq!(
        actors,
        vec![
            who("1", None),
            who("1", Some("erin")),
            who("2", Some("erin")),
            who("1", Some("erin")),
            who("3", Some("erin")),
            who("4", Some("bob")),
        ]
    );
    drop_tables(&db, &["ctx_ddl_ha", "ctx_ddl_hb"]).await;
    db.close().await.unwrap();
    t.finish().await;
}

/// MySQL, on a pool that carries the context: a context row left committed for a connection
/// is never read again. Here the fault is made as it happens: in a `capture_db::transaction`
/// a hook under erin writes the row, the closure's DDL commits it, and the transaction's
/// future is then dropped (a timeout) before it deletes the row (counted: the row is there
/// afterwards). Every acquire sets a new token and the row names an earlier one, so the
/// connection's later writes carry their own task's actor, never erin's: a
/// `capture_db::transaction` (which writes no row of its own on such a pool), a plain
/// transaction and an autocommit write (before tokens, MariaDB's trigger read the row inside
/// both transactions).
#[tokio::test]
async fn a_context_row_left_committed_is_never_read_on_a_carrying_pool() {
    let Some((t, db)) = mysql_with_a_carrying_connection().await else {
        return;
    };
    raw_insert(&db, "first").await.unwrap();
    let (_never_tx, never) = tokio::sync::oneshot::channel::<()>();
    let cancelled = AuditContext::new()
        .actor("alice")
        .scope(tokio::time::timeout(
            std::time::Duration::from_millis(300),
            capture_db::transaction(&db, move |txn| {
                Box::pin(async move {
                    let erin = Mode::Database.update(txn, 1, "by erin");
                    AuditContext::new().actor("erin").scope(erin).await?;
                    insert_then_ddl(txn, "after ddl", "ctx_ddl_left", true).await?;
                    let _ = never.await;
                    Ok::<_, DbErr>(())
                })
            }),
        ));
    assert!(cancelled.await.is_err(), "the timeout dropped it");
    assert_eq!(committed_context_rows(&t).await, 1, "the row was left");
    let alice = AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(&db, |txn| {
            Box::pin(raw_insert(txn, "alice's"))
        }));
    alice.await.unwrap();
    raw_insert_in_a_plain_transaction(&db, "carol", "carol's").await;
    AuditContext::new()
        .actor("bob")
        .scope(raw_insert(&db, "bob's"))
        .await
        .unwrap();
    let actors = actors_by_object(&t.db).await;
    assert_eq!(
        actors,
        vec![
            who("1", None),
            who("1", Some("erin")),
            who("2", Some("erin")),
            who("3", Some("alice")),
            who("4", Some("carol")),
            who("5", Some("bob")),
        ]
    );
    drop_tables(&db, &["ctx_ddl_left"]).await;
    db.close().await.unwrap();
    t.finish().await;
}

/// MySQL, on a pool that carries the context: which context row a transaction reads. One
/// without a token, as a process of an earlier version writes it during a rolling upgrade (or
/// a pool without `carry_context`), is its transaction's context and is read; one under
/// another token (left by an earlier acquire) is not: the session's context applies.
#[tokio::test]
async fn a_row_without_a_token_is_read_and_one_under_another_token_is_not() {
    let Some((t, db)) = mysql_with_a_carrying_connection().await else {
        return;
    };
    for (title, token) in [
        ("old version's", "NULL"),
        ("another token's", "@sea_orm_audit_token + 1"),
    ] {
        let txn = AuditContext::new()
            .actor("alice")
            .scope(db.begin())
            .await
            .unwrap();
        txn.execute_unprepared(&format!(
            "INSERT INTO sea_orm_audit_context (connection, actor, token) \
             VALUES (CONNECTION_ID(), 'row', {token})"
        ))
        .await
        .unwrap();
        raw_insert(&txn, title).await.unwrap();
        txn.execute_unprepared(
            "DELETE FROM sea_orm_audit_context WHERE connection = CONNECTION_ID()",
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }
    assert_eq!(
        actors_by_object(&t.db).await,
        vec![who("1", Some("row")), who("2", Some("alice"))]
    );
    db.close().await.unwrap();
    t.finish().await;
}

/// MySQL: a new connection of a pool that carries the context deletes a context row left
/// committed under its id by an earlier connection (ids start again at 1 when the server
/// restarts; a row without a token would be read by its transactions). Rows are left for the
/// next 2,000 ids the server gives, and the pool's connection must find none under its own.
#[tokio::test]
async fn a_new_carrying_connection_deletes_a_row_left_under_its_id() {
    let t = setup().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let next = connection_id(&t.db).await;
    let rows: Vec<String> = (1..=2000)
        .map(|k| format!("({}, 'left')", next + k))
        .collect();
    t.db.execute_unprepared(&format!(
        "INSERT INTO sea_orm_audit_context (connection, actor) VALUES {}",
        rows.join(", ")
    ))
    .await
    .unwrap();
    let db = carrying_pool(&t, 1).await;
    let id = connection_id(&db).await;
    assert!(id > next && id <= next + 2000, "{id} after {next}");
    assert_eq!(context_rows(&db).await, 0, "the row left under {id}");
    raw_insert_in_a_plain_transaction(&db, "alice", "a").await;
    assert_eq!(actors_by_object(&t.db).await, vec![who("1", Some("alice"))]);
    t.db.execute_unprepared("DELETE FROM sea_orm_audit_context WHERE actor = 'left'")
        .await
        .unwrap();
    db.close().await.unwrap();
    t.finish().await;
}

/// MySQL: a context table created by a version before its `token` column makes
/// `capture_db::transaction` fail with an error that says what to run, and nothing is written;
/// `install` adds the column, after which it works.
#[tokio::test]
async fn a_context_table_from_an_earlier_version_asks_for_install() {
    let t = setup().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    t.db.execute_unprepared("ALTER TABLE sea_orm_audit_context DROP COLUMN token")
        .await
        .unwrap();
    let write = || {
        AuditContext::new()
            .actor("alice")
            .scope(capture_db::transaction(&t.db, |txn| {
                Box::pin(raw_insert(txn, "a"))
            }))
    };
    let err = write().await.unwrap_err().to_string();
    assert!(err.contains("run capture_db::install again"), "{err}");
    assert!(entries(&t.db).await.is_empty(), "nothing written");
    capture_db::install::<ctx_post::Model, _>(&t.db)
        .await
        .unwrap();
    write().await.unwrap();
    assert_eq!(actors_by_object(&t.db).await, vec![who("1", Some("alice"))]);
    t.finish().await;
}

/// A `capture_db::transaction` nested in a plain transaction on a pool that carries the
/// context gives back what was there, the pool's (the session's) context, not its own: a raw
/// write of the enclosing transaction after it carries the task's actor (none on SQLite, which
/// carries no context outside `capture_db::transaction`).
#[tokio::test]
async fn a_transaction_nested_in_a_plain_one_gives_back_the_pools_context() {
    let t = setup().await;
    let db = carrying_pool(&t, 1).await;
    AuditContext::new()
        .actor("alice")
        .scope(async {
            let outer = db.begin().await.unwrap();
            AuditContext::new()
                .actor("carol")
                .scope(capture_db::transaction(&outer, |inner| {
                    Box::pin(async move {
                        inner
                            .execute_unprepared(
                                "INSERT INTO ctx_posts (title, views) VALUES ('a', 0)",
                            )
                            .await?;
                        Ok::<_, DbErr>(())
                    })
                }))
                .await
                .unwrap();
            outer
                .execute_unprepared("INSERT INTO ctx_posts (title, views) VALUES ('b', 0)")
                .await
                .unwrap();
            outer.commit().await.unwrap();
        })
        .await;
    let actors: Vec<Option<String>> = entries(&t.db).await.into_iter().map(|e| e.actor).collect();
    let after = Some("alice".to_owned());
    assert_eq!(actors, vec![Some("carol".to_owned()), after]);
    db.close().await.unwrap();
    t.finish().await;
}

/// A pool opened before the capture was installed (an application that connects, then runs
/// its migrations on that pool) carries the context once it is: on SQLite, the connection gets
/// its temporary trigger at its next acquire, once the tables the trigger reads exist. A
/// temporary trigger naming a missing table would fail every insert into the log, so none is
/// created before: the write before `install`, which no trigger logs, succeeds.
#[tokio::test]
async fn a_pool_opened_before_install_carries_once_installed() {
    let t = TestDb::new().await;
    common::create_table(&t.db, ctx_post::Entity).await;
    let db = carrying_pool(&t, 1).await;
    let alice = || AuditContext::new().actor("alice");
    alice()
        .scope(raw_insert(&db, "before install"))
        .await
        .unwrap();
    capture_db::install::<ctx_post::Model, _>(&db)
        .await
        .unwrap();
    alice()
        .scope(raw_insert(&db, "after install"))
        .await
        .unwrap();
    raw_insert(&db, "no context").await.unwrap();
    let got: Vec<(String, Option<String>)> = entries(&db)
        .await
        .into_iter()
        .map(|e| (e.object_id, e.actor))
        .collect();
    assert_eq!(
        got,
        vec![
            ("2".to_owned(), Some("alice".to_owned())),
            ("3".to_owned(), None)
        ]
    );
    db.close().await.unwrap();
    t.finish().await;
}

/// PostgreSQL, an application in a schema of its own, named in the URL as the README says
/// (`carry_context` replaces sea-orm's `set_schema_search_path`): its log, its capture and its
/// context all live there, and the `public` schema's log gets nothing.
#[tokio::test]
async fn a_carrying_pool_with_the_search_path_in_its_url_captures_in_that_schema() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::Postgres {
        return t.finish().await;
    }
    t.db.execute_unprepared("CREATE SCHEMA app").await.unwrap();
    let url = format!("{}?options=-csearch_path%3Dapp", t.url);
    let mut options = pool_options(url, 2);
    capture_db::carry_context(&mut options);
    let db = Database::connect(options).await.unwrap();
    sea_orm_audit_migration::create_schema(&db).await.unwrap();
    common::create_table(&db, ctx_post::Entity).await;
    capture_db::install::<ctx_post::Model, _>(&db)
        .await
        .unwrap();
    capture_db::check_carried(&db).await.unwrap();
    AuditContext::new()
        .actor("alice")
        .scope(raw_insert(&db, "in app"))
        .await
        .unwrap();
    let count = |table: &'static str| {
        let db = t.db.clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!("SELECT COUNT(*) AS n FROM {table}"),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap()
        }
    };
    assert_eq!(count("app.ctx_posts").await, 1);
    assert_eq!(count("app.audit_log").await, 1);
    assert_eq!(count("public.audit_log").await, 0);
    let logged = common::all_logs(&db).await;
    assert_eq!(logged[0].actor.as_deref(), Some("alice"), "{logged:#?}");
    assert!(verify(&db).await.unwrap().is_ok());
    db.close().await.unwrap();
    t.finish().await;
}

/// The log dropped and created again while a carrying pool stays open (a test suite's reset,
/// `drop_audit_log` then `create_schema`), and the capture installed again: the pool's
/// connections carry the context again (SQLite: each creates its temporary trigger on the
/// new `audit_log` at its next acquire).
#[tokio::test]
async fn a_carrying_pool_carries_again_after_the_log_is_created_again() {
    let t = TestDb::new().await;
    common::create_table(&t.db, ctx_post::Entity).await;
    capture_db::install::<ctx_post::Model, _>(&t.db)
        .await
        .unwrap();
    let db = carrying_pool(&t, 2).await;
    let alice = || AuditContext::new().actor("alice");
    alice().scope(raw_insert(&db, "first")).await.unwrap();
    let actors = |entries: Vec<sea_orm_audit::audit_log::Model>| {
        entries
            .into_iter()
            .map(|e| (e.object_id, e.actor))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        actors(entries(&db).await),
        [("1".to_owned(), Some("alice".to_owned()))]
    );
    sea_orm_audit_migration::drop_audit_log(&t.db)
        .await
        .unwrap();
    sea_orm_audit_migration::create_schema(&t.db).await.unwrap();
    capture_db::install::<ctx_post::Model, _>(&t.db)
        .await
        .unwrap();
    for title in ["second", "third"] {
        alice().scope(raw_insert(&db, title)).await.unwrap();
    }
    raw_insert(&db, "nobody's").await.unwrap();
    let alice_ = || Some("alice".to_owned());
    assert_eq!(
        actors(entries(&db).await),
        [
            ("2".to_owned(), alice_()),
            ("3".to_owned(), alice_()),
            ("4".to_owned(), None)
        ]
    );
    assert!(verify(&db).await.unwrap().is_ok());
    db.close().await.unwrap();
    t.finish().await;
}

/// A hook-mode write on a connection that carries another context keeps its own: through a
/// `capture_db::transaction` of alice's on a carrying pool, a hook-mode update under an empty
/// context names nobody, one under bob names bob; the database-mode raw write beside them is
/// alice's. (SQLite: the connection's temporary trigger fills in only entries the capture
/// triggers wrote; the hooks' are sealed when written.)
#[tokio::test]
async fn hook_mode_entries_keep_their_own_context_on_a_carrying_connection() {
    let t = setup().await;
    common::create_table(&t.db, hook_ctx_post::Entity).await;
    t.db.execute_unprepared("INSERT INTO hook_ctx_posts (id, title, views) VALUES (1, 't', 0)")
        .await
        .unwrap();
    let db = carrying_pool(&t, 1).await;
    AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(&db, |txn| {
            Box::pin(async move {
                let nobody = Mode::Hooks.update(txn, 1, "by nobody");
                AuditContext::new().scope(nobody).await?;
                let bob = Mode::Hooks.update(txn, 1, "by bob");
                AuditContext::new().actor("bob").scope(bob).await?;
                raw_insert(txn, "raw").await
            })
        }))
        .await
        .unwrap();
    let got: Vec<(String, Option<String>)> = entries(&db)
        .await
        .into_iter()
        .map(|e| (e.entity_type, e.actor))
        .collect();
    let entry = |table: &str, actor: Option<&str>| (table.to_owned(), actor.map(str::to_owned));
    assert_eq!(
        got,
        vec![
            entry("hook_ctx_posts", None),
            entry("hook_ctx_posts", Some("bob")),
            entry("ctx_posts", Some("alice")),
        ]
    );
    assert!(verify(&db).await.unwrap().problems.is_empty());
    db.close().await.unwrap();
    t.finish().await;
}

/// An event recorded with no context through a transaction another context began names
/// nobody, on a connection that carries that context. On SQLite the event's entry follows an
/// unsealed one (the capture trigger's, in the same transaction), so it is written unsealed
/// too, in the shape of a trigger's entry; the connection's temporary trigger once filled
/// alice in there (both events here named her before `prev_hash` was marked). The entry the
/// capture trigger wrote is hers.
#[tokio::test]
async fn an_event_without_a_context_names_nobody_on_a_carrying_connection() {
    use sea_orm_audit::{Action, Event};
    let t = setup().await;
    let db = carrying_pool(&t, 1).await;
    let txn = AuditContext::new()
        .actor("alice")
        .scope(async {
            let txn = db.begin().await?;
            raw_insert(&txn, "by alice").await?;
            Ok::<_, DbErr>(txn)
        })
        .await
        .unwrap();
    Event::new(Action::Update)
        .target_id("ctx_posts", "1")
        .record(&txn)
        .await
        .unwrap();
    AuditContext::new()
        .actor("alice")
        .scope(async {
            let event = Event::new(Action::Delete).target_id("ctx_posts", "1");
            AuditContext::new().scope(event.record(&txn)).await
        })
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let got: Vec<(String, Option<String>)> = entries(&db)
        .await
        .into_iter()
        .map(|e| (e.action, e.actor))
        .collect();
    let entry = |action: &str, actor: Option<&str>| (action.to_owned(), actor.map(str::to_owned));
    assert_eq!(
        got,
        vec![
            entry("create", Some("alice")),
            entry("update", None),
            entry("delete", None),
        ]
    );
    assert!(verify(&db).await.unwrap().problems.is_empty());
    db.close().await.unwrap();
    t.finish().await;
}

/// A `capture_db::transaction` on a carrying pool that reads before it writes, while another
/// connection writes in between, commits on every backend. On SQLite it takes the write lock
/// when it begins (as its context row's write does on a plain pool), so the other writer waits
/// for its commit; before, its snapshot made its first write fail at once with "database is
/// locked". Both writes are logged, each under its own actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_reads_first_commits_while_another_connection_writes() {
    let t = setup().await;
    let db = carrying_pool(&t, 2).await;
    raw_insert(&db, "first").await.unwrap();
    raw_insert(&db, "second").await.unwrap();
    let (read_tx, read_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(&db, |txn| {
            Box::pin(async move {
                let title = ctx_post::Entity::find_by_id(1)
                    .one(txn)
                    .await?
                    .map(|p| p.title)
                    .unwrap_or_default();
                read_tx.send(()).unwrap();
                // Long enough for the other connection's write to run (or wait).
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                ctx_post::ActiveModel {
                    id: Set(1),
                    title: Set(format!("{title} by alice")),
                    ..Default::default()
                }
                .update(txn)
                .await?;
                Ok::<_, DbErr>(std::time::Instant::now())
            })
        }));
    let other = db.clone();
    let writer = tokio::spawn(AuditContext::new().actor("bob").scope(async move {
        read_rx.await.unwrap();
        other
            .execute_unprepared("UPDATE ctx_posts SET title = 'second by bob' WHERE id = 2")
            .await?;
        Ok::<_, DbErr>(std::time::Instant::now())
    }));
    let alice_done = reader.await.unwrap();
    let bob_done = writer.await.unwrap().unwrap();
    if t.backend() == DbBackend::Sqlite {
        assert!(
            bob_done > alice_done,
            "the other writer waited for the lock"
        );
    }
    let got: Vec<(String, Option<String>)> = entries(&db)
        .await
        .into_iter()
        .filter(|e| e.action == "update")
        .map(|e| {
            let title = e.changes.unwrap()["new_value"]["title"].clone();
            (title.as_str().unwrap().to_owned(), e.actor)
        })
        .collect();
    let mut got = got;
    got.sort();
    assert_eq!(
        got,
        [
            ("first by alice".to_owned(), Some("alice".to_owned())),
            ("second by bob".to_owned(), Some("bob".to_owned())),
        ]
    );
    assert!(verify(&db).await.unwrap().problems.is_empty());
    db.close().await.unwrap();
    t.finish().await;
}

/// Which capture a seeded program's table uses (see
/// `nested_contexts_attribute_every_write_as_a_model_says`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// `ctx_posts`: its triggers log every write, raw ones included, with the context in effect.
    Database,
    /// `hook_ctx_posts`: its hooks log active-model writes, with the task's current context.
    Hooks,
}

impl Mode {
    fn table(self) -> &'static str {
        match self {
            Mode::Database => "ctx_posts",
            Mode::Hooks => "hook_ctx_posts",
        }
    }

    /// A raw UPDATE of `row`'s title.
    fn raw(self, backend: DbBackend, row: i32, title: &str) -> Statement {
        let sql = match backend {
            DbBackend::Postgres => format!("UPDATE {} SET title = $1 WHERE id = $2", self.table()),
            _ => format!("UPDATE {} SET title = ? WHERE id = ?", self.table()),
        };
        Statement::from_sql_and_values(backend, sql, [title.into(), row.into()])
    }

    /// An event about `row` whose diff names `title` (so that the check finds it by its title).
    fn event(self, row: i32, title: &str) -> sea_orm_audit::Event {
        sea_orm_audit::Event::new(sea_orm_audit::Action::Update)
            .target_id(self.table(), row.to_string())
            .changes(sea_orm_audit::Changes {
                old_value: Default::default(),
                new_value: [("title".to_owned(), title.into())].into_iter().collect(),
            })
    }

    /// An active-model update of `row`'s title through `c`.
    async fn update<C: ConnectionTrait>(self, c: &C, row: i32, title: &str) -> Result<(), DbErr> {
        match self {
            Mode::Database => ctx_post::ActiveModel {
                id: Set(row),
                title: Set(title.to_owned()),
                ..Default::default()
            }
            .update(c)
            .await
            .map(drop),
            Mode::Hooks => hook_ctx_post::ActiveModel {
                id: Set(row),
                title: Set(title.to_owned()),
                ..Default::default()
            }
            .update(c)
            .await
            .map(drop),
        }
    }
}

/// One step of a seeded program run inside a `capture_db::transaction` (see
/// `nested_contexts_attribute_every_write_as_a_model_says`). Each write stores a title no
/// other write stores, which names its entry.
#[derive(Clone, Debug)]
enum Step {
    /// A raw UPDATE through the current handle: no hook, so the context in effect.
    Raw { row: i32, title: String },
    /// An active-model update; `actor: Some` under a context of its own, else the enclosing one.
    Hook {
        row: i32,
        title: String,
        actor: Option<String>,
    },
    /// A savepoint (`begin` on the current handle), committed or rolled back.
    Savepoint { steps: Vec<Step>, commit: bool },
    /// An event about `row` recorded through the current handle, its diff naming `title`; the
    /// library writes its entry, with the actor of the context it is recorded under (`Given`),
    /// never one the connection carries.
    Event {
        row: i32,
        title: String,
        context: Given,
    },
    /// A nested `capture_db::transaction` under `actor`; `ok: false` ends its closure with an
    /// error, which rolls it back to its savepoint.
    Nested {
        actor: String,
        steps: Vec<Step>,
        ok: bool,
    },
}

/// The context an event is recorded under.
#[derive(Clone, Debug)]
enum Given {
    /// The task's current one.
    Current,
    /// An empty one (a job with no actor): the entry names nobody.
    Empty,
    /// One of its own.
    Own(String),
}

/// How a top-level `capture_db::transaction` of a program ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Commit,
    /// Its closure returns an error.
    Fail,
    /// Its future is dropped after its steps ran (a cancelled request), before the commit.
    Cancel,
    /// Its steps are dropped after this many microseconds wherever they are then (in a
    /// statement or between two), and then its future, unless they ended before: then it
    /// commits. Not in its BEGIN or COMMIT: sqlx 0.9.0 leaves a pooled connection inside a
    /// transaction when a BEGIN is cancelled (launchbadge/sqlx issues 4385 and 4393). Not on
    /// MySQL, where a statement dropped mid-flight can leave its connection never returned to
    /// the pool (launchbadge/sqlx issue 563): there the program is cancelled between
    /// statements instead.
    Timeout(u64),
}

/// `depth` levels of random steps of task `task` (its rows `rows`, actors `t<task>-a<i>`).
fn random_steps(
    state: &mut u64,
    task: usize,
    rows: &[i32],
    depth: u32,
    writes: &mut usize,
) -> Vec<Step> {
    let n = 1 + next(state) % 4;
    let mut steps = Vec::new();
    for _ in 0..n {
        let mut title = || {
            *writes += 1;
            format!("t{task}-w{writes}")
        };
        let row = rows[(next(state) % rows.len() as u64) as usize];
        let actor = |state: &mut u64| format!("t{task}-a{}", next(state) % 3);
        let choice = if depth == 0 {
            next(state) % 3
        } else {
            next(state) % 5
        };
        steps.push(match choice {
            0 => Step::Raw {
                row,
                title: title(),
            },
            1 => Step::Hook {
                row,
                title: title(),
                actor: next(state).is_multiple_of(2).then(|| actor(state)),
            },
            2 => Step::Event {
                row,
                title: title(),
                context: match next(state) % 3 {
                    0 => Given::Current,
                    1 => Given::Empty,
                    _ => Given::Own(actor(state)),
                },
            },
            3 => Step::Savepoint {
                steps: random_steps(state, task, rows, depth - 1, writes),
                commit: !next(state).is_multiple_of(3),
            },
            _ => Step::Nested {
                actor: actor(state),
                steps: random_steps(state, task, rows, depth - 1, writes),
                ok: !next(state).is_multiple_of(3),
            },
        });
    }
    steps
}

/// The model: the actor each committed write's entry must name, given the context in effect in
/// the transaction (`in_effect`) and the task's current one (`current`). A hook sets its
/// context for the rest of the transaction ("the context set last applies"); a nested
/// `capture_db::transaction` sets its own and gives back what it found when it ends; a rollback
/// to a savepoint undoes both the writes and the context set since.
fn expected(
    mode: Mode,
    steps: &[Step],
    in_effect: &mut Option<String>,
    current: &str,
    out: &mut Vec<(String, Option<String>)>,
) {
    for step in steps {
        match step {
            // In hook mode a raw write has no entry: its title must never be logged.
            Step::Raw { .. } if mode == Mode::Hooks => {}
            Step::Raw { title, .. } => out.push((title.clone(), in_effect.clone())),
            Step::Hook { title, actor, .. } => {
                let actor = actor.clone().unwrap_or_else(|| current.to_owned());
                out.push((title.clone(), Some(actor.clone())));
                *in_effect = Some(actor);
            }
            // The library's own entry: it neither takes nor sets the connection's context.
            Step::Event { title, context, .. } => out.push((
                title.clone(),
                match context {
                    Given::Current => Some(current.to_owned()),
                    Given::Empty => None,
                    Given::Own(actor) => Some(actor.clone()),
                },
            )),
            Step::Savepoint { steps, commit } => {
                let before = in_effect.clone();
                let mut inner = Vec::new();
                expected(mode, steps, in_effect, current, &mut inner);
                if *commit {
                    out.extend(inner);
                } else {
                    *in_effect = before;
                }
            }
            Step::Nested { actor, steps, ok } => {
                let before = in_effect.replace(actor.clone());
                let mut inner = Vec::new();
                expected(mode, steps, in_effect, actor, &mut inner);
                if *ok {
                    out.extend(inner);
                }
                *in_effect = before;
            }
        }
    }
}

/// Runs `steps` through `h`, on `mode`'s table.
fn run_steps<'a>(
    mode: Mode,
    h: &'a DatabaseTransaction,
    steps: &'a [Step],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), DbErr>> + Send + 'a>> {
    Box::pin(async move {
        for step in steps {
            match step {
                Step::Raw { row, title } => {
                    h.execute_raw(mode.raw(h.get_database_backend(), *row, title))
                        .await?;
                }
                Step::Hook { row, title, actor } => {
                    let write = mode.update(h, *row, title);
                    match actor {
                        Some(actor) => AuditContext::new().actor(actor).scope(write).await?,
                        None => write.await?,
                    };
                }
                Step::Event {
                    row,
                    title,
                    context,
                } => {
                    let event = mode.event(*row, title);
                    match context {
                        Given::Current => event.record(h).await?,
                        Given::Empty => AuditContext::new().scope(event.record(h)).await?,
                        Given::Own(actor) => {
                            AuditContext::new()
                                .actor(actor)
                                .scope(event.record(h))
                                .await?
                        }
                    }
                }
                Step::Savepoint { steps, commit } => {
                    let savepoint = TransactionTrait::begin(h).await?;
                    run_steps(mode, &savepoint, steps).await?;
                    if *commit {
                        savepoint.commit().await?;
                    } else {
                        savepoint.rollback().await?;
                    }
                }
                Step::Nested { actor, steps, ok } => {
                    let (ok, steps) = (*ok, steps.clone());
                    let nested = capture_db::transaction(h, move |inner| {
                        Box::pin(async move {
                            run_steps(mode, inner, &steps).await?;
                            if ok {
                                Ok(())
                            } else {
                                Err(DbErr::Custom("given up".into()))
                            }
                        })
                    });
                    match (AuditContext::new().actor(actor).scope(nested).await, ok) {
                        (Ok(()), true) => {}
                        (Err(DbErr::Custom(e)), false) if e == "given up" => {}
                        // Any other error ends the whole program.
                        (Err(e), _) => return Err(e),
                        (Ok(()), false) => panic!("a failing closure committed"),
                    }
                }
            }
        }
        Ok(())
    })
}

/// Seeded programs of nested `capture_db::transaction`s, savepoints committed and rolled back,
/// hooks under contexts of their own, raw writes, and events (the library's own entries) under
/// the current context, an empty one or their own, each ending in a commit, an error, a
/// cancellation between two statements or a timeout wherever it strikes (see `End`), run by 8
/// tasks at once through a pool of 3 connections, each task with its
/// own rows and actors: every committed write has exactly one entry, naming the actor the
/// model says (an event names the actor it was recorded under, or nobody, never one its
/// connection carries); no rolled-back or cancelled write has one; a raw autocommit write made after
/// each program on the pool (a `carry_context` pool) names nobody, or,
/// under a context of its own, that context's actor where the pool carries it: no context
/// outlives its transaction on a reused connection; `verify` clean. Seed in
/// `AUDIT_CONTEXT_SEED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nested_contexts_attribute_every_write_as_a_model_says() {
    run_model(Mode::Database).await;
}

/// The same programs on a table in hook mode: every committed active-model write has exactly
/// one entry, under the context current in its task; a raw write, a rolled-back or a cancelled
/// one has none (a timeout can strike between a hook and its write, and leave a before-image
/// behind, which the task's next write of the row replaces); an active-model write in
/// autocommit after each program names its own context's actor, or nobody, on every backend;
/// `verify` clean. No program deadlocks with another task's, which writes only rows of its own
/// (on MariaDB, before the chain heads had a table of their own, 6 of 2,400 programs of 25 runs
/// did).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hooks_attribute_every_write_as_the_same_model_says() {
    run_model(Mode::Hooks).await;
}

async fn run_model(mode: Mode) {
    const TASKS: usize = 8;
    const PROGRAMS: usize = 12;
    let seed = common::seed("AUDIT_CONTEXT_SEED");
    let t = setup().await;
    if mode == Mode::Hooks {
        common::create_table(&t.db, hook_ctx_post::Entity).await;
    }
    // Database mode: a pool that carries the context, whose autocommit
    // writes then name the task's actor; otherwise a plain pool.
    let carry = mode == Mode::Database;
    let pool = if carry {
        carrying_pool(&t, 3).await
    } else {
        Database::connect(pool_options(t.url.clone(), 3))
            .await
            .unwrap()
    };
    for task in 0..TASKS {
        for r in 0..3 {
            let id = (task * 3 + r + 1) as i32;
            pool.execute_unprepared(&format!(
                "INSERT INTO {} (id, title, views) VALUES ({id}, 'seed', 0)",
                mode.table()
            ))
            .await
            .unwrap();
        }
    }
    let mysql = t.backend() == DbBackend::MySql;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut state = common::seeded(seed, task);
            let rows: Vec<i32> = (0..3).map(|r| (task * 3 + r + 1) as i32).collect();
            let mut writes = 0;
            let mut timeouts = 0;
            let (mut committed, mut discarded) = (Vec::new(), Vec::new());
            let mut ends = Vec::new();
            for program in 0..PROGRAMS {
                let actor = format!("t{task}-a{}", next(&mut state) % 3);
                let steps = random_steps(&mut state, task, &rows, 2, &mut writes);
                let end = match next(&mut state) % 6 {
                    0 => End::Fail,
                    1 => End::Cancel,
                    // The first one of a task at once, so that some always do.
                    2 if !mysql => {
                        let micros = if timeouts == 0 {
                            0
                        } else {
                            next(&mut state) % 3000
                        };
                        timeouts += 1;
                        End::Timeout(micros)
                    }
                    2 => End::Cancel,
                    _ => End::Commit,
                };
                let mut out = Vec::new();
                expected(mode, &steps, &mut Some(actor.clone()), &actor, &mut out);
                let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
                let mut cancel_tx = Some(cancel_tx);
                let body = steps.clone();
                let transaction = capture_db::transaction(&pool, |txn| {
                    Box::pin(async move {
                        let finished = match end {
                            End::Timeout(micros) => {
                                let limit = std::time::Duration::from_micros(micros);
                                tokio::select! {
                                    biased;
                                    r = run_steps(mode, txn, &body) => r.map(|()| true)?,
                                    () = tokio::time::sleep(limit) => false,
                                }
                            }
                            _ => run_steps(mode, txn, &body).await.map(|()| true)?,
                        };
                        match end {
                            End::Commit | End::Timeout(_) if finished => Ok(()),
                            End::Fail => Err(DbErr::Custom("given up".into())),
                            _ => {
                                cancel_tx.take().unwrap().send(()).unwrap();
                                std::future::pending().await
                            }
                        }
                    })
                });
                let scoped = AuditContext::new().actor(&actor).scope(transaction);
                let result = tokio::select! {
                    biased;
                    r = scoped => Some(r),
                    Ok(()) = cancel_rx => None,
                };
                let ended = match (end, result) {
                    (End::Commit, Some(Ok(()))) => {
                        committed.extend(out);
                        "commit"
                    }
                    (End::Timeout(_), Some(Ok(()))) => {
                        committed.extend(out);
                        "commit before its timeout"
                    }
                    (End::Fail, Some(Err(_))) | (End::Cancel | End::Timeout(_), None) => {
                        discarded.extend(out.into_iter().map(|(title, _)| title));
                        match end {
                            End::Fail => "error",
                            End::Cancel => "cancel",
                            _ => "timeout",
                        }
                    }
                    (end, result) => {
                        panic!("program {program} of task {task}: {end:?} gave {result:?}")
                    }
                };
                ends.push(ended);
                // An autocommit write on the pool after each program, every other one under
                // a context of its own: only that one names an actor. Database mode, a raw
                // write, only where the pool carries the context; hook mode, an active model.
                let title = format!("t{task}-after{program}");
                let backend = pool.get_database_backend();
                let write = async {
                    match mode {
                        Mode::Database => pool
                            .execute_raw(mode.raw(backend, rows[0], &title))
                            .await
                            .map(drop),
                        Mode::Hooks => mode.update(&pool, rows[0], &title).await,
                    }
                };
                let after = format!("t{task}-after");
                if program % 2 == 0 {
                    write.await.unwrap();
                    committed.push((title, None));
                } else {
                    AuditContext::new()
                        .actor(&after)
                        .scope(write)
                        .await
                        .unwrap();
                    let named = carry || mode == Mode::Hooks;
                    committed.push((title, named.then_some(after)));
                }
                // Then an event with no context on the pool, on the connection that may have
                // just carried one: it names nobody.
                let title = format!("t{task}-event{program}");
                mode.event(rows[0], &title).record(&pool).await.unwrap();
                committed.push((title, None));
            }
            (committed, discarded, ends)
        }));
    }
    let (mut committed, mut discarded) = (Vec::new(), Vec::new());
    let mut ends = HashMap::new();
    for handle in handles {
        let (c, d, e) = handle.await.unwrap();
        committed.extend(c);
        discarded.extend(d);
        for end in e {
            *ends.entry(end).or_insert(0) += 1;
        }
    }
    let mut found: HashMap<String, Vec<Option<String>>> = HashMap::new();
    for entry in entries(&t.db).await {
        let title = entry
            .changes
            .as_ref()
            .and_then(|c| c["new_value"]["title"].as_str().map(str::to_owned));
        if let Some(title) = title.filter(|t| t != "seed") {
            found.entry(title).or_default().push(entry.actor);
        }
    }
    let mut wrong = Vec::new();
    for (title, actor) in &committed {
        match found.get(title) {
            Some(actors) if actors == &vec![actor.clone()] => {}
            other => wrong.push(format!("{title}: expected [{actor:?}], logged {other:?}")),
        }
    }
    for title in &discarded {
        if let Some(actors) = found.get(title) {
            wrong.push(format!(
                "{title}: rolled back or cancelled, logged {actors:?}"
            ));
        }
    }
    let known: std::collections::HashSet<&String> = committed
        .iter()
        .map(|(t, _)| t)
        .chain(discarded.iter())
        .collect();
    for title in found.keys().filter(|t| !known.contains(t)) {
        wrong.push(format!("{title}: logged, never written"));
    }
    eprintln!(
        "{} committed writes, {} rolled back or cancelled, programs ended {ends:?}",
        committed.len(),
        discarded.len()
    );
    assert!(wrong.is_empty(), "seed {seed}:\n{}", wrong.join("\n"));
    // Every kind of end ran, and both kinds of write were checked.
    let kinds: &[&str] = if mysql {
        &["commit", "error", "cancel"]
    } else {
        &["commit", "error", "cancel", "timeout"]
    };
    for end in kinds {
        assert!(
            ends.contains_key(end),
            "no program ended by {end}: {ends:?}"
        );
    }
    assert!(!discarded.is_empty());
    let report = verify(&t.db).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    pool.close().await.ok();
    t.finish().await;
}
