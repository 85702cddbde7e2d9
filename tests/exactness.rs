//! Exactness under concurrency, per mode (database capture, hooks), on every backend: many
//! writers updating a few rows at once, in and outside transactions, from one process and from
//! two; the log compared with what each writer knows it committed. And a context that never
//! reaches a write it does not belong to: a pooled connection reused by another task, another
//! process. The README's "Guarantees" cite these tests.

mod common;
#[path = "common/workload.rs"]
mod workload;

use std::time::Duration;

use common::next;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Statement, TransactionTrait,
};
use sea_orm_audit::{AuditContext, audit_log, capture_db};
use serde_json::json;
use workload::{Mode, Outcome, WorkDb, db_row};

/// Writers and updates per writer of the one-process runs: 768 writes, half in transactions.
const WRITERS: usize = 32;
const UPDATES: usize = 24;
/// Writers per process and updates per writer of the two-process runs.
const PROCESS_WRITERS: usize = 16;
const PROCESS_UPDATES: usize = 24;

/// The ignored test that child processes run.
const CHILD: &str = "child_process";

/// Deferred seal: two `Sealer`s racing each other and the writers, every 2 ms.
fn start_sealers(
    db: &DatabaseConnection,
    mode: Mode,
) -> Vec<capture_db::Sealer<DatabaseConnection>> {
    if mode != Mode::Deferred {
        return Vec::new();
    }
    (0..2)
        .map(|_| capture_db::Sealer::spawn(db.clone(), Duration::from_millis(2)))
        .collect()
}

/// Stops the sealers (each seals once more); asserts that they sealed while the writers ran
/// (so that the race was there: an entry sealed by then) and that none of their seals failed.
async fn stop_sealers(
    db: &DatabaseConnection,
    sealers: Vec<capture_db::Sealer<DatabaseConnection>>,
) {
    if sealers.is_empty() {
        return;
    }
    let while_writing = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq(Mode::Deferred.table()))
        .filter(audit_log::Column::Hash.ne("unsealed"))
        .count(db)
        .await
        .unwrap();
    let failures: u64 = sealers.iter().map(|s| s.failures()).sum();
    for sealer in sealers {
        sealer.stop().await.expect("final seal");
    }
    assert_eq!(failures, 0, "a sealer's seal failed (the warning says why)");
    assert!(
        while_writing > 0,
        "the sealers sealed nothing while the writers ran"
    );
    eprintln!("deferred seal: {while_writing} entries sealed when the writers ended");
}

async fn one_process(mode: Mode) {
    let w = WorkDb::new().await;
    let sealers = start_sealers(&w.db, mode);
    let out = workload::run(&w.db, mode, 0..WRITERS, UPDATES).await;
    stop_sealers(&w.db, sealers).await;
    let tally = workload::check(&w.db, mode, &out.committed).await;
    let verified = workload::verify(&w.db).await;
    let label = format!(
        "{:?}, 1 process, {WRITERS} tasks x {UPDATES} updates of {} rows",
        w.backend(),
        mode.rows().len()
    );
    workload::assert_exact(&label, mode, &out, &tally, &verified);
    w.finish().await;
}

/// Database mode: every committed write has exactly one entry, with the value it stored on
/// the row it wrote, each `old_value` the previous entry's `new_value`, `verify` clean after
/// the seal; `capture_db::transaction` writes carry exactly their writer's actor, autocommit
/// writes their writer's or none, never another writer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_mode_logs_each_write_once_under_concurrency() {
    one_process(Mode::Database).await;
}

/// Database mode with a deferred seal: the same exact history, every entry written unsealed
/// and sealed by two `Sealer`s running while the writers write, `verify` clean afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deferred_seal_logs_each_write_once_under_concurrency() {
    one_process(Mode::Deferred).await;
}

/// Hook mode: in transactions, the same exact history as database mode; outside them what the
/// README promises there: each write's entry holds exactly the value it stored, under its
/// writer's actor, once (`old_value` and forks counted, not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hook_mode_logs_each_write_once_under_concurrency() {
    one_process(Mode::Hooks).await;
}

async fn two_processes(mode: Mode) {
    let w = WorkDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let orders = (0..2)
        .map(|p| {
            json!({
                "kind": "workload",
                "url": w.url,
                "mode": mode.name(),
                "writers": [p * PROCESS_WRITERS, (p + 1) * PROCESS_WRITERS],
                "updates": PROCESS_UPDATES,
            })
        })
        .collect();
    let sealers = start_sealers(&w.db, mode);
    let answers = workload::spawn_children(CHILD, orders, dir.path())
        .wait()
        .await;
    stop_sealers(&w.db, sealers).await;
    let outs: Vec<Outcome> = answers.iter().map(Outcome::from_json).collect();
    assert!(
        outs[0].started_ms < outs[1].ended_ms && outs[1].started_ms < outs[0].ended_ms,
        "the two processes wrote at the same time: {}..{} and {}..{}",
        outs[0].started_ms,
        outs[0].ended_ms,
        outs[1].started_ms,
        outs[1].ended_ms
    );
    let out = outs
        .into_iter()
        .reduce(Outcome::merge)
        .expect("two answers");
    let tally = workload::check(&w.db, mode, &out.committed).await;
    let verified = workload::verify(&w.db).await;
    let label = format!(
        "{:?}, 2 processes, 2 x {PROCESS_WRITERS} tasks x {PROCESS_UPDATES} updates of {} rows",
        w.backend(),
        mode.rows().len()
    );
    workload::assert_exact(&label, mode, &out, &tally, &verified);
    w.finish().await;
}

/// The same workload from two OS processes against one database at once: the union of what
/// both committed, compared with the log as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_mode_logs_each_write_once_from_two_processes() {
    two_processes(Mode::Database).await;
}

/// The same with a deferred seal, sealed from the parent process while both children write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_seal_logs_each_write_once_from_two_processes() {
    two_processes(Mode::Deferred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_mode_logs_each_write_once_from_two_processes() {
    two_processes(Mode::Hooks).await;
}

/// What the two-process tests and the context-theft test run in a child process: the orders
/// come in `workload::CHILD_ENV`. Run alone (no orders), it has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a child process of the two-process tests, started by them"]
async fn child_process() {
    let Some(order) = workload::child_order() else {
        eprintln!("child_process runs only as a child of the two-process tests");
        return;
    };
    let url = order["url"].as_str().unwrap();
    // "sql" orders: one connection, whose id the answer gives.
    let connections = if order["kind"] == "sql" { 1 } else { 8 };
    let db = Database::connect(workload::options(url, connections))
        .await
        .unwrap();
    match order["kind"].as_str().unwrap() {
        "workload" => {
            let mode = Mode::parse(order["mode"].as_str().unwrap());
            let range = order["writers"].as_array().unwrap();
            let writers = range[0].as_u64().unwrap() as usize..range[1].as_u64().unwrap() as usize;
            let updates = order["updates"].as_u64().unwrap() as usize;
            let out = workload::run(&db, mode, writers, updates).await;
            workload::answer(&order, &out.to_json());
        }
        "sql" => {
            for sql in order["sql"].as_array().unwrap() {
                db.execute_unprepared(sql.as_str().unwrap()).await.unwrap();
            }
            workload::answer(&order, &json!({"connection": connection_id(&db).await}));
        }
        other => panic!("unknown order {other}"),
    }
    db.close().await.ok();
}

/// Which server connection (or, on SQLite, which connection of this process) runs the
/// statement: PostgreSQL's backend pid, MySQL's connection id, or a random mark kept in a
/// SQLite connection's own temporary table.
async fn connection_id<C: ConnectionTrait>(db: &C) -> String {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT CAST(pg_backend_pid() AS TEXT) AS id",
        DbBackend::MySql => "SELECT CAST(CONNECTION_ID() AS CHAR) AS id",
        _ => {
            // Two calls: a pool of one connection runs both on it.
            db.execute_unprepared("CREATE TEMP TABLE IF NOT EXISTS conc_connection_mark (id TEXT)")
                .await
                .unwrap();
            db.execute_unprepared(
                "INSERT INTO temp.conc_connection_mark SELECT lower(hex(randomblob(8))) \
                 WHERE NOT EXISTS (SELECT 1 FROM temp.conc_connection_mark)",
            )
            .await
            .unwrap();
            "SELECT id FROM temp.conc_connection_mark"
        }
    };
    db.query_one_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "id")
        .unwrap()
}

fn set_val(id: i32, val: &str) -> String {
    format!("UPDATE conc_db_rows SET val = '{val}' WHERE id = {id}")
}

/// Context theft, database mode: alice's context is set on the one connection of a pool
/// without `carry_context` (by `capture_db::transaction`, by a hook in her own transaction);
/// while her scope is still running, another task writes on that same connection (shown by
/// its connection id) through raw SQL, an active model and `update_many`; and a second
/// process writes while her context is set in an open transaction. None of their entries
/// carries an actor, a tool or data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_context_never_reaches_another_tasks_or_processes_writes() {
    context_stays_with_its_writer(workload::plain_options).await;
}

/// The same on a pool that carries the context (with the crate features on; otherwise the
/// same plain pool again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_context_never_reaches_another_tasks_or_processes_writes_on_a_carrying_pool() {
    context_stays_with_its_writer(workload::options).await;
}

async fn context_stays_with_its_writer(options: fn(&str, u32) -> sea_orm::ConnectOptions) {
    let w = WorkDb::new().await;
    let backend = w.backend();
    let pool = Database::connect(options(&w.url, 1)).await.unwrap();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (done, done_rx) = tokio::sync::oneshot::channel::<String>();

    let alice_pool = pool.clone();
    let alice = tokio::spawn(
        AuditContext::new()
            .actor("alice")
            .tool("cms")
            .with("request_id", "r-alice")
            .scope(async move {
                let db = &alice_pool;
                let in_txn = capture_db::transaction(db, |txn| {
                    Box::pin(async move {
                        txn.execute_unprepared(&set_val(1, "alice-1")).await?;
                        Ok::<_, DbErr>(connection_id(txn).await)
                    })
                })
                .await
                .unwrap();
                db_row::ActiveModel {
                    id: Set(2),
                    val: Set("alice-2".into()),
                }
                .update(db)
                .await
                .unwrap();
                let own = db.begin().await.unwrap();
                db_row::ActiveModel {
                    id: Set(3),
                    val: Set("alice-3".into()),
                }
                .update(&own)
                .await
                .unwrap();
                own.commit().await.unwrap();
                let after = connection_id(db).await;
                // Her scope is still running while the other task writes.
                go.send(()).unwrap();
                let thief = done_rx.await.unwrap();
                (in_txn, after, thief)
            }),
    );
    let thief_pool = pool.clone();
    let thief = tokio::spawn(async move {
        let db = &thief_pool;
        go_rx.await.unwrap();
        db.execute_unprepared(&set_val(1, "thief-1")).await.unwrap();
        db_row::ActiveModel {
            id: Set(2),
            val: Set("thief-2".into()),
        }
        .update(db)
        .await
        .unwrap();
        db_row::Entity::update_many()
            .col_expr(db_row::Column::Val, Expr::value("thief-3"))
            .filter(db_row::Column::Id.eq(3))
            .exec(db)
            .await
            .unwrap();
        done.send(connection_id(db).await).unwrap();
    });
    thief.await.unwrap();
    let (in_txn, after, thief_conn) = alice.await.unwrap();
    assert_eq!(
        in_txn, after,
        "alice's writes ran on the pool's one connection"
    );
    assert_eq!(
        thief_conn, in_txn,
        "the other task wrote on the connection alice's context was set on"
    );

    // A second process writes while alice's context is set in an open transaction (SQLite:
    // its write waits for our commit, SQLite having one writer).
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_owned();
    let watcher = w.db.clone();
    let (url, sqlite) = (w.url.clone(), backend == DbBackend::Sqlite);
    let child_conn = AuditContext::new()
        .actor("alice")
        .scope(capture_db::transaction(&pool, |txn| {
            Box::pin(async move {
                txn.execute_unprepared(&set_val(1, "alice-open")).await?;
                let order =
                    json!({"kind": "sql", "url": url, "sql": [set_val(4, "other-process")]});
                let child = workload::spawn_children(CHILD, vec![order], &dir_path);
                if !sqlite {
                    wait_for_value(&watcher, 4, "other-process").await;
                }
                Ok::<_, DbErr>(child)
            })
        }))
        .await
        .unwrap()
        .wait()
        .await;
    assert_ne!(child_conn[0]["connection"], json!(in_txn));

    let entries = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq("conc_db_rows"))
        .filter(audit_log::Column::Action.eq("update"))
        .order_by_asc(audit_log::Column::Id)
        .all(&w.db)
        .await
        .unwrap();
    let by_value = |val: &str| {
        let found: Vec<_> = entries
            .iter()
            .filter(|e| e.changes.as_ref().unwrap()["new_value"]["val"] == json!(val))
            .collect();
        assert_eq!(found.len(), 1, "one entry stores {val}: {entries:?}");
        found[0].clone()
    };
    assert_eq!(entries.len(), 8, "{entries:?}");
    for val in ["alice-1", "alice-open"] {
        let e = by_value(val);
        assert_eq!(e.actor.as_deref(), Some("alice"), "{val}");
    }
    let first = by_value("alice-1");
    assert_eq!(first.tool.as_deref(), Some("cms"));
    assert_eq!(first.data, Some(json!({"request_id": "r-alice"})));
    // Alice's own writes outside `capture_db::transaction`: hers or none, never another's.
    for val in ["alice-2", "alice-3"] {
        let e = by_value(val);
        assert!(
            e.actor.is_none() || e.actor.as_deref() == Some("alice"),
            "{val}: {e:?}"
        );
    }
    for val in ["thief-1", "thief-2", "thief-3", "other-process"] {
        let e = by_value(val);
        assert_eq!(
            (e.actor.as_deref(), e.tool.as_deref(), e.data.as_ref()),
            (None, None, None),
            "{val} was written by no one with a context: {e:?}"
        );
    }
    capture_db::seal(&w.db).await.unwrap();
    assert!(sea_orm_audit::verify(&w.db).await.unwrap().is_ok());
    pool.close().await.ok();
    w.finish().await;
}

/// Waits (up to 10 s) until another connection's committed write shows.
async fn wait_for_value(db: &DatabaseConnection, id: i32, val: &str) {
    for _ in 0..200 {
        let row = db_row::Entity::find_by_id(id)
            .one(db)
            .await
            .unwrap()
            .unwrap();
        if row.val == val {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("row {id} never held {val}");
}

/// The state concurrent sealers leave for each other, made on purpose: an object's entry shown
/// unsealed to a sealer while the next one is already sealed (another sealer got there first,
/// which a MySQL snapshot shows this way), then a third entry. The third must link to the
/// second as stored, not to the hash the sealer just computed for the first.
#[tokio::test]
async fn a_seal_links_each_entry_to_its_stored_predecessor() {
    let w = WorkDb::new().await;
    let db = &w.db;
    if w.backend() == DbBackend::Postgres {
        // The trigger hashes: there is nothing to seal.
        return w.finish().await;
    }
    let mut ids = Vec::new();
    for val in ["a", "b", "c"] {
        db.execute_unprepared(&set_val(1, val)).await.unwrap();
        if val != "c" {
            capture_db::seal(db).await.unwrap();
        }
        let newest = audit_log::Entity::find()
            .filter(audit_log::Column::EntityType.eq("conc_db_rows"))
            .order_by_desc(audit_log::Column::Id)
            .one(db)
            .await
            .unwrap()
            .unwrap();
        ids.push(newest.id);
    }
    db.execute_raw(Statement::from_sql_and_values(
        w.backend(),
        "UPDATE audit_log SET hash = 'unsealed', prev_hash = NULL WHERE id = ?",
        [ids[0].into()],
    ))
    .await
    .unwrap();
    assert_eq!(
        capture_db::seal(db).await.unwrap(),
        2,
        "the first and the third"
    );
    let report = sea_orm_audit::verify(db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    w.finish().await;
}

/// A transaction whose snapshot is older than the entry before its own: it read (as
/// applications do before they write), then another writer changed the row and committed,
/// then it wrote. MySQL's sealer, run in that transaction, would see its own entry but not the
/// one before it, link the entry to the one before that and fork the chain. Through
/// `capture_db::transaction` and through the caller's own transaction (on MySQL its hook
/// leaves the entry unsealed, and the next hook outside a transaction seals it).
#[tokio::test]
async fn an_entry_whose_transaction_read_before_the_previous_write_links_to_it() {
    let w = WorkDb::new().await;
    if w.backend() == DbBackend::Sqlite {
        // One writer at a time: a transaction that read before another one committed a write
        // cannot write after it (SQLITE_BUSY_SNAPSHOT).
        return w.finish().await;
    }
    let db = &w.db;
    let newest = || async {
        audit_log::Entity::find()
            .filter(audit_log::Column::EntityType.eq("conc_db_rows"))
            .filter(audit_log::Column::ObjectId.eq("1"))
            .order_by_desc(audit_log::Column::Id)
            .one(db)
            .await
            .unwrap()
            .unwrap()
    };
    let update = |val: &str| db_row::ActiveModel {
        id: Set(1),
        val: Set(val.to_owned()),
    };
    for round in 0..2 {
        let other = db.clone();
        let (before, after) = (format!("other-{round}"), format!("late-{round}"));
        if round == 0 {
            let (before, after) = (before.clone(), after.clone());
            capture_db::transaction(db, |txn| {
                Box::pin(async move {
                    db_row::Entity::find().all(txn).await?;
                    update(&before).update(&other).await?;
                    update(&after).update(txn).await.map(|_| ())
                })
            })
            .await
            .unwrap();
        } else {
            let txn = db.begin().await.unwrap();
            db_row::Entity::find().all(&txn).await.unwrap();
            update(&before).update(&other).await.unwrap();
            update(&after).update(&txn).await.unwrap();
            txn.commit().await.unwrap();
            if w.backend() == DbBackend::MySql {
                // MySQL: the hook left its entry to the next seal, which the next hook outside
                // a transaction runs.
                assert_eq!(newest().await.hash.as_deref(), Some("unsealed"));
                db_row::ActiveModel {
                    id: Set(2),
                    val: Set("sealer".into()),
                }
                .update(db)
                .await
                .unwrap();
                assert_ne!(newest().await.hash.as_deref(), Some("unsealed"));
            }
        }
        capture_db::seal(db).await.unwrap();
        let last = newest().await;
        let changes = last.changes.clone().unwrap();
        assert_eq!(changes["old_value"]["val"], json!(before), "round {round}");
        assert_eq!(changes["new_value"]["val"], json!(after), "round {round}");
        let previous = audit_log::Entity::find()
            .filter(audit_log::Column::EntityType.eq("conc_db_rows"))
            .filter(audit_log::Column::ObjectId.eq("1"))
            .filter(audit_log::Column::Id.lt(last.id))
            .order_by_desc(audit_log::Column::Id)
            .one(db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            last.prev_hash, previous.hash,
            "round {round}: linked to its predecessor"
        );
    }
    let report = sea_orm_audit::verify(db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    w.finish().await;
}

/// Keys of the lifecycle test: 1-4 exist at the start, 5-6 do not.
const LIFECYCLE_KEYS: i32 = 6;

/// One operation of the lifecycle test that committed and changed a row.
#[derive(Debug, Clone)]
struct Op {
    writer: usize,
    row: i32,
    /// "create", "update" or "delete".
    action: &'static str,
    /// The value stored (create, update); a delete's is empty.
    value: String,
    in_txn: bool,
}

/// Whether an insert failed because the key exists (nothing committed: not an error here).
fn duplicate_key(err: &DbErr) -> bool {
    let text = err.to_string();
    ["UNIQUE constraint", "Duplicate entry", "duplicate key"]
        .iter()
        .any(|s| text.contains(s))
}

/// One random operation on `row` through `c`: what it committed, if anything. Creates, updates
/// and deletes through active models, `Entity::insert`, `update_many`, `delete_many` and
/// `delete_by_id`; a create of a key that exists and an update or delete of one that does not
/// commit nothing.
async fn lifecycle_op<C: ConnectionTrait>(
    c: &C,
    choice: u64,
    row: i32,
    value: &str,
) -> Result<Option<&'static str>, DbErr> {
    let model = || db_row::ActiveModel {
        id: Set(row),
        val: Set(value.to_owned()),
    };
    let changed = |n: u64| if n == 1 { Some(()) } else { None };
    Ok(match choice % 7 {
        0 => match model().insert(c).await {
            Ok(_) => Some("create"),
            Err(e) if duplicate_key(&e) => None,
            // MySQL: the insert committed, SeaORM's re-read found the row deleted (below).
            Err(DbErr::RecordNotFound(_)) => Some("create"),
            Err(e) => return Err(e),
        },
        1 => match db_row::Entity::insert(model()).exec(c).await {
            Ok(_) => Some("create"),
            Err(e) if duplicate_key(&e) => None,
            Err(e) => return Err(e),
        },
        2 => match model().update(c).await {
            Ok(_) => Some("update"),
            Err(DbErr::RecordNotUpdated) => None,
            // MySQL has no RETURNING: SeaORM re-reads the row after its UPDATE matched it, and
            // outside a transaction another writer can delete it in between. The update
            // committed (and is logged); only the re-read failed.
            Err(DbErr::RecordNotFound(_)) => Some("update"),
            Err(e) => return Err(e),
        },
        3 | 4 => changed(
            db_row::Entity::update_many()
                .col_expr(db_row::Column::Val, Expr::value(value))
                .filter(db_row::Column::Id.eq(row))
                .exec(c)
                .await?
                .rows_affected,
        )
        .map(|()| "update"),
        5 => changed(
            db_row::Entity::delete_many()
                .filter(db_row::Column::Id.eq(row))
                .exec(c)
                .await?
                .rows_affected,
        )
        .map(|()| "delete"),
        _ => changed(
            db_row::Entity::delete_by_id(row)
                .exec(c)
                .await?
                .rows_affected,
        )
        .map(|()| "delete"),
    })
}

/// Database mode, every write path at once: 32 writers x 24 random creates, updates and deletes
/// of 6 keys (half in `capture_db::transaction`, half in autocommit; creates of existing keys
/// and changes of absent ones commit nothing), seeded. Each key's entries, in id order, must
/// replay as a valid life (create only when absent, update and delete only when present, each
/// `old_value` the value before) ending in the row as stored; every committed operation has
/// exactly one entry and every entry one committed operation, under its writer's actor (or
/// none, for autocommit where the pool cannot carry it); `verify` clean after the seal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_mode_logs_creates_updates_and_deletes_under_concurrency() {
    let seed = common::seed("AUDIT_LIFECYCLE_SEED");
    let w = WorkDb::new().await;
    let backend = w.backend();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let db = w.db.clone();
        tasks.push(tokio::spawn(
            AuditContext::new()
                .actor(workload::actor(writer))
                .scope(async move {
                    let mut state = common::seeded(seed, writer);
                    let (mut ops, mut attempts) = (Vec::new(), 0usize);
                    for seq in 0..UPDATES {
                        let choice = next(&mut state);
                        let row =
                            i32::try_from(next(&mut state) % LIFECYCLE_KEYS as u64).unwrap() + 1;
                        let in_txn = seq % 2 == 1;
                        for attempt in 0.. {
                            attempts += 1;
                            let value = format!("w{writer}-s{seq}-a{attempt}");
                            let v = value.clone();
                            let result = if in_txn {
                                capture_db::transaction(&db, |txn| {
                                    Box::pin(
                                        async move { lifecycle_op(txn, choice, row, &v).await },
                                    )
                                })
                                .await
                            } else {
                                lifecycle_op(&db, choice, row, &v).await
                            };
                            match result {
                                Ok(done) => {
                                    if let Some(action) = done {
                                        let value = if action == "delete" {
                                            String::new()
                                        } else {
                                            value
                                        };
                                        ops.push(Op {
                                            writer,
                                            row,
                                            action,
                                            value,
                                            in_txn,
                                        });
                                    }
                                    break;
                                }
                                Err(e) if workload::retryable(&e) && attempt < 1000 => {
                                    tokio::time::sleep(Duration::from_millis(
                                        1 + (attempt.min(20) as u64),
                                    ))
                                    .await;
                                }
                                Err(e) => panic!("writer {writer} seq {seq} (seed {seed}): {e}"),
                            }
                        }
                    }
                    (ops, attempts)
                }),
        ));
    }
    let mut ops = Vec::new();
    for task in tasks {
        ops.extend(task.await.unwrap().0);
    }
    capture_db::seal(&w.db).await.unwrap();
    let report = sea_orm_audit::verify(&w.db).await.unwrap();
    assert!(report.is_ok(), "seed {seed}: {:?}", report.problems);

    let entries = audit_log::Entity::find()
        .filter(audit_log::Column::EntityType.eq("conc_db_rows"))
        .order_by_asc(audit_log::Column::Id)
        .all(&w.db)
        .await
        .unwrap();
    // The setup's four creates, then one entry per committed operation.
    let setup = usize::try_from(ROWS_AT_START).unwrap();
    assert_eq!(
        entries.len(),
        setup + ops.len(),
        "seed {seed}: one entry per committed operation"
    );
    let val =
        |side: &serde_json::Value| side.get("val").and_then(|v| v.as_str()).map(str::to_owned);
    // Per key: its life replayed from its entries.
    let mut state: std::collections::HashMap<i32, Option<String>> =
        (1..=LIFECYCLE_KEYS).map(|k| (k, None)).collect();
    // The committed operations an entry can stand for, by (key, action, value).
    let mut expected: std::collections::HashMap<(i32, &str, String), Vec<&Op>> =
        std::collections::HashMap::new();
    for op in &ops {
        expected
            .entry((op.row, op.action, op.value.clone()))
            .or_default()
            .push(op);
    }
    let carries = workload::carries_context();
    let (mut creates, mut updates, mut deletes) = (0, 0, 0);
    for entry in &entries {
        let key: i32 = entry.object_id.parse().unwrap();
        let changes = entry.changes.clone().unwrap_or_default();
        let (old, new) = (val(&changes["old_value"]), val(&changes["new_value"]));
        let before = state.get_mut(&key).unwrap();
        let context = format!(
            "seed {seed}: entry {} {} of key {key}: {old:?} -> {new:?}, state {before:?}",
            entry.id, entry.action
        );
        match entry.action.as_str() {
            "create" => {
                assert!(
                    before.is_none() && old.is_none(),
                    "{context}: created while present"
                );
                *before = new.clone();
            }
            "update" => {
                assert!(
                    before.is_some() && old == *before,
                    "{context}: old_value is not the value before"
                );
                *before = new.clone();
            }
            "delete" => {
                assert!(
                    before.is_some() && old == *before,
                    "{context}: old_value is not the value before"
                );
                *before = None;
            }
            other => panic!("{context}: action {other}"),
        }
        if entry.id <= entries[setup - 1].id {
            assert_eq!(
                entry.actor, None,
                "{context}: the setup ran without context"
            );
            continue;
        }
        let value = if entry.action == "delete" {
            String::new()
        } else {
            new.clone().unwrap()
        };
        let action: &str = &entry.action;
        let candidates = expected
            .get_mut(&(key, action, value))
            .unwrap_or_else(|| panic!("{context}: no committed operation"));
        // Deletes carry no value: take the candidate whose writer is the entry's actor.
        // An actor only where the write carried one: in a transaction, or on a pool that
        // carries the context; none only for autocommit on one that cannot.
        let pick = candidates
            .iter()
            .position(|op| match entry.actor.as_deref() {
                Some(actor) => actor == workload::actor(op.writer) && (op.in_txn || carries),
                None => !op.in_txn && !carries,
            })
            .unwrap_or_else(|| {
                panic!(
                    "{context}: actor {:?} made none of {candidates:?}",
                    entry.actor
                )
            });
        candidates.swap_remove(pick);
        match entry.action.as_str() {
            "create" => creates += 1,
            "update" => updates += 1,
            _ => deletes += 1,
        }
    }
    let left: Vec<_> = expected.values().flatten().collect();
    assert!(
        left.is_empty(),
        "seed {seed}: committed operations without an entry: {left:?}"
    );
    let rows: std::collections::HashMap<i32, String> = db_row::Entity::find()
        .all(&w.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.val))
        .collect();
    for (key, logged) in &state {
        assert_eq!(
            rows.get(key),
            logged.as_ref(),
            "seed {seed}: key {key}: the log replays to the row as stored"
        );
    }
    eprintln!(
        "lifecycle {backend:?}, seed {seed}: {} operations committed ({creates} creates, {updates} updates, {deletes} deletes), {} entries, verify clean",
        ops.len(),
        entries.len()
    );
    assert!(
        creates > 0 && updates > 0 && deletes > 0,
        "seed {seed}: every kind ran"
    );
    w.finish().await;
}

/// Rows the workload database starts with (created by its setup, without context).
const ROWS_AT_START: i32 = workload::ROWS;
