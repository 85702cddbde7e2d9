//! Hook mode made exact: what each entry says about concurrent writers, per backend, inside and
//! outside transactions (the README's "Guarantees" cite these tests).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::TestDb;
use common::entities::post;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    DbErr, EntityTrait, QuerySelect, TransactionTrait,
};
use sea_orm_audit::chain::ProblemKind;
use sea_orm_audit::{Action, Event, logs_for_id};
use serde_json::json;

fn new_post(title: &str) -> post::ActiveModel {
    common::post_with_body(title, "start")
}

/// A pool of one connection, so that session settings apply to every statement.
async fn single_connection(url: &str) -> DatabaseConnection {
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(1).sqlx_logging(false);
    Database::connect(opt).await.expect("connect")
}

/// Inserts a post without the hooks: a row that existed before auditing, with no history.
async fn post_without_history(db: &DatabaseConnection, title: &str) -> i32 {
    post::Entity::insert(new_post(title))
        .exec(db)
        .await
        .unwrap()
        .last_insert_id
}

/// MariaDB: a transaction holding the first audited update of an object with no history (or
/// the first event about a new object) makes no unrelated writer wait. Object 1 has history
/// and sorts right before object 2 in the log's `(entity_type, object_id, id)` index, so a gap
/// lock on object 2's empty range would cover object 1's next entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_first_entry_of_an_object_takes_no_gap_lock() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let y = new_post("y").insert(&t.db).await.unwrap();
    let x = post_without_history(&t.db, "x").await;
    assert_eq!((y.id, x), (1, 2), "object ids sort as the test needs");
    Event::new("note")
        .target_id("ticket", "1")
        .record(&t.db)
        .await
        .unwrap();

    let other = single_connection(&t.url).await;
    other
        .execute_unprepared("SET SESSION innodb_lock_wait_timeout = 2")
        .await
        .unwrap();
    for holder_writes_event in [false, true] {
        let holder = t.db.begin().await.unwrap();
        if holder_writes_event {
            Event::new("note")
                .target_id("ticket", "2")
                .record(&holder)
                .await
                .unwrap();
        } else {
            post::ActiveModel {
                id: Set(x),
                body: Set(format!("held-{holder_writes_event}")),
                ..Default::default()
            }
            .update(&holder)
            .await
            .unwrap();
        }
        let started = Instant::now();
        // Outside a transaction, then inside one.
        let outside = if holder_writes_event {
            Event::new("note")
                .target_id("ticket", "1")
                .record(&other)
                .await
        } else {
            post::ActiveModel {
                id: Set(y.id),
                body: Set("unrelated".into()),
                ..Default::default()
            }
            .update(&other)
            .await
            .map(drop)
        };
        let inside = async {
            let txn = other.begin().await?;
            if holder_writes_event {
                Event::new("note")
                    .target_id("ticket", "1")
                    .record(&txn)
                    .await?;
            } else {
                post::ActiveModel {
                    id: Set(y.id),
                    body: Set("unrelated in a transaction".into()),
                    ..Default::default()
                }
                .update(&txn)
                .await?;
            }
            txn.commit().await
        }
        .await;
        let waited = started.elapsed();
        holder.commit().await.unwrap();
        outside.unwrap_or_else(|e| panic!("event={holder_writes_event}, outside: {e}"));
        inside.unwrap_or_else(|e| panic!("event={holder_writes_event}, inside: {e}"));
        assert!(
            waited < Duration::from_millis(1500),
            "event={holder_writes_event}: the unrelated writes waited {waited:?}"
        );
    }
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.first_broken());
    assert_eq!(logs_for_id(&t.db, "posts", "2").await.unwrap().len(), 1);
    assert_eq!(logs_for_id(&t.db, "ticket", "2").await.unwrap().len(), 1);
    other.close().await.ok();
    t.finish().await;
}

const TASKS: usize = 16;
const UPDATES: usize = 25;

/// Runs `TASKS` x `UPDATES` audited updates of one row at once, inside transactions or not.
/// Even tasks set `body` and `views`, odd tasks `body` only; every value is unique (and no
/// views value is the initial 0).
async fn contend(t: &TestDb, id: i32, in_transactions: bool) {
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let db = t.db.clone();
        let actor = format!("task{task}");
        tasks.push(tokio::spawn(
            sea_orm_audit::AuditContext::new()
                .actor(actor)
                .scope(async move {
                    for n in 0..UPDATES {
                        let mut am = post::ActiveModel {
                            id: Set(id),
                            body: Set(format!("task{task}-{n}")),
                            ..Default::default()
                        };
                        if task.is_multiple_of(2) {
                            am.views = Set(i32::try_from(task * 1000 + n + 1).unwrap());
                        }
                        if !in_transactions {
                            am.update(&db).await?;
                            continue;
                        }
                        let txn = db.begin().await?;
                        if txn.get_database_backend() == DbBackend::Sqlite {
                            // SQLite has no row locks: take the write lock before the hook's read.
                            txn.execute_unprepared("UPDATE posts SET views = views WHERE 0")
                                .await?;
                        }
                        am.update(&txn).await?;
                        txn.commit().await?;
                    }
                    Ok::<_, DbErr>(())
                }),
        ));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

/// Checks the updates `contend` made: 0 entries whose new values are not their actor's, 0
/// writes without an entry, 0 duplicates. Inside transactions also: each entry's old values
/// are the previous entry's new values. Returns the number of entries whose old values are
/// not (outside transactions they may be older than the row they overwrote).
fn check_attribution(updates: &[sea_orm_audit::LogEntry], in_transactions: bool) -> usize {
    let mut seen = HashSet::new();
    // The row as `new_post` and `post_without_history` store it.
    let mut state = json!({"body": "start", "views": 0})
        .as_object()
        .unwrap()
        .clone();
    let mut stale = 0;
    for (i, entry) in updates.iter().enumerate() {
        let changes = entry.changes.as_ref().unwrap();
        let actor = entry.actor.as_deref().unwrap();
        let body = changes.new_value["body"].as_str().unwrap();
        let (writer, n) = body.split_once('-').unwrap();
        assert_eq!(
            writer, actor,
            "entry {i}: new body {body} attributed to {actor}"
        );
        assert!(
            seen.insert(body.to_owned()),
            "entry {i}: {body} logged twice"
        );
        let task: usize = actor.strip_prefix("task").unwrap().parse().unwrap();
        let n: usize = n.parse().unwrap();
        let mut fields: Vec<&str> = changes.new_value.keys().map(String::as_str).collect();
        fields.sort_unstable();
        if task.is_multiple_of(2) {
            assert_eq!(fields, ["body", "views"], "entry {i} by {actor}");
            assert_eq!(
                changes.new_value["views"],
                json!(task * 1000 + n + 1),
                "entry {i}"
            );
        } else {
            assert_eq!(fields, ["body"], "entry {i}: {actor} did not write views");
        }
        assert_eq!(entry.action, Action::Update, "entry {i}");
        if changes.old_value.iter().any(|(f, old)| &state[f] != old) {
            stale += 1;
            assert!(
                !in_transactions,
                "entry {i} ({actor}): old_value {:?} is not the previous new_value {state:?}",
                changes.old_value
            );
        }
        for (field, new) in &changes.new_value {
            state.insert(field.clone(), new.clone());
        }
    }
    assert_eq!(seen.len(), TASKS * UPDATES, "every write has its entry");
    stale
}

/// The entries of one row under 16 concurrent writers name exactly what each writer wrote,
/// on every backend, inside and outside transactions: MySQL's after-image is built from the
/// before-image and the values written (never the re-read, which can show another writer's
/// values), and no backend logs a column the write did not set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_each_log_exactly_their_own_values() {
    for in_transactions in [false, true] {
        let t = TestDb::new().await;
        let row = new_post("contended").insert(&t.db).await.unwrap();
        contend(&t, row.id, in_transactions).await;
        let mut history = logs_for_id(&t.db, "posts", &row.id.to_string())
            .await
            .unwrap();
        history.reverse();
        assert_eq!(history.len(), 1 + TASKS * UPDATES);
        assert_eq!(history[0].action, Action::Create);
        let stale = check_attribution(&history[1..], in_transactions);
        let report = sea_orm_audit::verify(&t.db).await.unwrap();
        if in_transactions {
            assert!(report.is_ok(), "{:?}", report.first_broken());
        } else {
            assert!(
                report
                    .problems
                    .iter()
                    .all(|p| matches!(p.kind, ProblemKind::Fork { .. })),
                "{:?}",
                report.first_broken()
            );
        }
        eprintln!(
            "{:?} in_transactions={in_transactions}: {} entries, 0 misattributed, 0 missing, \
             0 duplicates, {stale} with an older old_value, {} forks",
            t.backend(),
            history.len(),
            report.problems.len()
        );
        t.finish().await;
    }
}

/// An object with no history (a row that predates auditing) under 16 concurrent transactional
/// writers still gets one exact chain: on MySQL the head is read without a lock when a plain
/// read finds no entries, and that read happens after the row lock was granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contention_on_an_object_without_history_keeps_one_chain() {
    let t = TestDb::new().await;
    let id = post_without_history(&t.db, "old row").await;
    contend(&t, id, true).await;
    let mut history = logs_for_id(&t.db, "posts", &id.to_string()).await.unwrap();
    history.reverse();
    assert_eq!(
        history.len(),
        TASKS * UPDATES,
        "no create: the row predates auditing"
    );
    check_attribution(&history, true);
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.first_broken());
    t.finish().await;
}

/// MariaDB: 16 transactions each doing the first audited update of an object with no history
/// (all in one gap of the log's index) and holding it do not wait for each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_first_updates_of_many_new_objects_do_not_wait_for_each_other() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let mut ids = Vec::new();
    for k in 0..TASKS {
        ids.push(post_without_history(&t.db, &format!("old {k}")).await);
    }
    let mut opt = ConnectOptions::new(t.url.clone());
    opt.max_connections(u32::try_from(TASKS).unwrap())
        .sqlx_logging(false);
    let db = Database::connect(opt).await.unwrap();
    // Every task holds its transaction open until all of them hold theirs: none waited for
    // another's commit. A task that did wait fails on the lock timeout and never arrives.
    let all_hold = Arc::new(tokio::sync::Barrier::new(TASKS));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in ids {
        let db = db.clone();
        let all_hold = all_hold.clone();
        tasks.push(tokio::spawn(async move {
            let txn = db.begin().await?;
            txn.execute_unprepared("SET SESSION innodb_lock_wait_timeout = 2")
                .await?;
            post::ActiveModel {
                id: Set(id),
                body: Set("first audited".into()),
                ..Default::default()
            }
            .update(&txn)
            .await?;
            tokio::time::timeout(Duration::from_secs(10), all_hold.wait())
                .await
                .map_err(|_| DbErr::Custom("another task never held its update".into()))?;
            txn.commit().await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.first_broken());
    assert_eq!(report.checked, TASKS as u64);
    db.close().await.ok();
    t.finish().await;
}

const ROUNDS: usize = 100;

/// Two updates of one object joined in one task (`tokio::join!`) are both logged, each with
/// its own before-image: the second waits in its `before_save` until the first has logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joined_updates_of_one_object_are_both_logged_exactly() {
    for in_transaction in [false, true] {
        let t = TestDb::new().await;
        let p = new_post("joined").insert(&t.db).await.unwrap();
        for round in 0..ROUNDS {
            let a = post::ActiveModel {
                id: Set(p.id),
                body: Set(format!("a{round}")),
                ..Default::default()
            };
            let b = post::ActiveModel {
                id: Set(p.id),
                body: Set(format!("b{round}")),
                views: Set(i32::try_from(round + 1).unwrap()),
                ..Default::default()
            };
            let (ra, rb) = if in_transaction {
                let txn = t.db.begin().await.unwrap();
                let results = tokio::join!(a.update(&txn), b.update(&txn));
                txn.commit().await.unwrap();
                results
            } else {
                tokio::join!(a.update(&t.db), b.update(&t.db))
            };
            ra.unwrap_or_else(|e| panic!("in_transaction={in_transaction} round {round}: {e}"));
            rb.unwrap_or_else(|e| panic!("in_transaction={in_transaction} round {round}: {e}"));
        }
        assert_eq!(
            sea_orm_audit::__private::pending_snapshots_for_current_task(),
            0
        );
        let mut history = logs_for_id(&t.db, "posts", &p.id.to_string())
            .await
            .unwrap();
        history.reverse();
        assert_eq!(
            history.len(),
            1 + 2 * ROUNDS,
            "in_transaction={in_transaction}"
        );
        let mut state = history[0].changes.as_ref().unwrap().new_value.clone();
        let mut bodies = HashSet::new();
        for (i, entry) in history.iter().enumerate().skip(1) {
            let changes = entry.changes.as_ref().unwrap();
            for (field, old) in &changes.old_value {
                assert_eq!(
                    &state[field], old,
                    "entry {i}: old_value is the previous new_value"
                );
            }
            assert!(
                bodies.insert(changes.new_value["body"].clone()),
                "entry {i} twice"
            );
            for (field, new) in &changes.new_value {
                state.insert(field.clone(), new.clone());
            }
        }
        let stored = post::Entity::find_by_id(p.id)
            .one(&t.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            state["body"],
            json!(stored.body),
            "the newest entry is the stored row"
        );
        let report = sea_orm_audit::verify(&t.db).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.first_broken());
        t.finish().await;
    }
}

/// A joined write whose twin is still reading after `IN_FLIGHT_WAIT` (its row lock is held by
/// another transaction) fails with `WriteInFlight` before it runs; the twin then completes and
/// is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joined_write_whose_twin_is_stuck_fails_before_it_runs() {
    let t = TestDb::new().await;
    if t.backend() == DbBackend::Sqlite {
        // No row locks: a read cannot be held up long enough.
        return t.finish().await;
    }
    let p = new_post("stuck").insert(&t.db).await.unwrap();
    let holder = t.db.begin().await.unwrap();
    post::Entity::find_by_id(p.id)
        .lock_exclusive()
        .one(&holder)
        .await
        .unwrap();
    let a = post::ActiveModel {
        id: Set(p.id),
        body: Set("a".into()),
        ..Default::default()
    };
    let b = post::ActiveModel {
        id: Set(p.id),
        body: Set("b".into()),
        ..Default::default()
    };
    // `b` gives up waiting for `a`, which waits for the lock; then the lock is released.
    let b_then_release = async {
        let waited = sea_orm_audit::IN_FLIGHT_WAIT + Duration::from_secs(10);
        let rb = tokio::time::timeout(waited, b.update(&t.db))
            .await
            .expect("b gave up waiting");
        holder.rollback().await.unwrap();
        rb
    };
    let (ra, rb) = tokio::join!(a.update(&t.db), b_then_release);
    ra.unwrap();
    let err = rb.unwrap_err().to_string();
    assert!(err.contains("in flight"), "{err}");
    let stored = post::Entity::find_by_id(p.id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.body, "a", "the failed write did not run");
    let history = logs_for_id(&t.db, "posts", &p.id.to_string())
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[0].changes.as_ref().unwrap().new_value["body"],
        json!("a")
    );
    t.finish().await;
}

/// Updates (or deletes) post `id` on `db`.
async fn write_post<C: ConnectionTrait>(db: &C, id: i32, delete: bool) -> Result<u64, DbErr> {
    if delete {
        let am = post::ActiveModel {
            id: Set(id),
            ..Default::default()
        };
        return Ok(am.delete(db).await?.rows_affected);
    }
    post::ActiveModel {
        id: Set(id),
        body: Set(format!("written {id}")),
        ..Default::default()
    }
    .update(db)
    .await
    .map(|_| 1)
}

const RACES: i32 = 10;

/// The before-image finds no row; another connection inserts and commits it; then our UPDATE
/// (or DELETE), held back by the proxy, changes it. The write is logged, marked
/// `before_image: absent`, on PostgreSQL in and outside transactions and on MySQL outside
/// them. Inside a MySQL transaction the locking read's gap lock makes the insert wait for us,
/// so the write matches nothing and nothing is logged. SQLite runs without the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_inserted_between_the_before_image_and_the_write_is_logged() {
    use common::proxy::{FaultProxy, upstream_of};
    let t = TestDb::new().await;
    let backend = t.backend();
    if backend == DbBackend::Sqlite {
        return t.finish().await;
    }
    let proxy = FaultProxy::start(upstream_of(&t.url)).await;
    let (update, delete) = match backend {
        DbBackend::Postgres => ("UPDATE \"posts\"", "DELETE FROM \"posts\""),
        _ => ("UPDATE `posts`", "DELETE FROM `posts`"),
    };
    let mut id = 1000;
    for in_transaction in [false, true] {
        for deleting in [false, true] {
            for _ in 0..RACES {
                id += 1;
                let via_proxy = single_connection(&proxy.url(&t.url)).await;
                let pattern = if deleting { delete } else { update };
                proxy.delay(Some((pattern, Duration::from_millis(600))));
                let delayed = proxy.delayed();
                let inserter = {
                    let db = t.db.clone();
                    let counters = proxy.counters.clone();
                    tokio::spawn(async move {
                        // Inserts while the proxy holds the write back.
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while counters.delayed.load(Ordering::SeqCst) == delayed {
                            assert!(Instant::now() < deadline, "the write never came");
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        post::ActiveModel {
                            id: Set(id),
                            ..new_post(&format!("race {id}"))
                        }
                        .insert(&db)
                        .await
                    })
                };
                let result = if in_transaction {
                    let txn = via_proxy.begin().await.unwrap();
                    let result = write_post(&txn, id, deleting).await;
                    txn.commit().await.unwrap();
                    result
                } else {
                    write_post(&via_proxy, id, deleting).await
                };
                proxy.delay(None);
                inserter.await.unwrap().unwrap();
                via_proxy.close().await.ok();
                assert_eq!(proxy.delayed(), delayed + 1, "the write was held back");
                let what = format!("in_transaction={in_transaction} delete={deleting} id={id}");
                let history = logs_for_id(&t.db, "posts", &id.to_string()).await.unwrap();
                let stored = post::Entity::find_by_id(id).one(&t.db).await.unwrap();
                if in_transaction && backend == DbBackend::MySql {
                    match result {
                        Err(DbErr::RecordNotUpdated) if !deleting => {}
                        Ok(0) if deleting => {}
                        other => panic!("{what}: {other:?}"),
                    }
                    assert_eq!(history.len(), 1, "{what}: only the create");
                    assert!(stored.is_some(), "{what}");
                    continue;
                }
                assert_eq!(result.unwrap(), 1, "{what}: the write changed the row");
                assert_eq!(history.len(), 2, "{what}: {history:?}");
                let entry = &history[0];
                assert_eq!(history[1].action, Action::Create, "{what}");
                assert_eq!(entry.data["before_image"], json!("absent"), "{what}");
                let changes = entry.changes.as_ref().unwrap();
                assert!(changes.old_value.is_empty(), "{what}: old values unknown");
                if deleting {
                    assert_eq!(entry.action, Action::Delete, "{what}");
                    assert!(stored.is_none(), "{what}");
                } else {
                    assert_eq!(entry.action, Action::Update, "{what}");
                    assert_eq!(changes.new_value["body"], json!(format!("written {id}")));
                }
            }
        }
    }
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.first_broken());
    t.finish().await;
}

/// A connection that runs `gap(n)` before its `n`th statement (from 1): what other writers do
/// between two statements of a hook, without timing.
struct Gaps<'a, C> {
    inner: &'a C,
    statements: std::sync::atomic::AtomicUsize,
    gap: GapFn,
}

type GapFn = Box<
    dyn Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

impl<C> Gaps<'_, C> {
    async fn before_statement(&self) {
        let n = self.statements.fetch_add(1, Ordering::SeqCst) + 1;
        (self.gap)(n).await;
    }
}

#[async_trait::async_trait]
impl<C: ConnectionTrait> ConnectionTrait for Gaps<'_, C> {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: sea_orm::Statement) -> Result<sea_orm::ExecResult, DbErr> {
        self.before_statement().await;
        self.inner.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<sea_orm::ExecResult, DbErr> {
        self.before_statement().await;
        self.inner.execute_unprepared(sql).await
    }

    async fn query_one_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> Result<Option<sea_orm::QueryResult>, DbErr> {
        self.before_statement().await;
        self.inner.query_one_raw(stmt).await
    }

    async fn query_all_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> Result<Vec<sea_orm::QueryResult>, DbErr> {
        self.before_statement().await;
        self.inner.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }
}

/// What the other writers of `a_delete_racing_a_delete_and_two_inserts_is_logged` do before
/// our delete's `n`th statement.
async fn other_writer(
    db: DatabaseConnection,
    fired: Arc<std::sync::atomic::AtomicUsize>,
    n: usize,
    id: i32,
) {
    let insert = |title: String| post::ActiveModel {
        id: Set(id),
        ..new_post(&title)
    };
    // 1: the before-image read, 2: the log read, 3: the second read, 4: DELETE.
    match n {
        2 => {
            insert(format!("first {id}")).insert(&db).await.unwrap();
        }
        3 => {
            let gone = post::ActiveModel {
                id: Set(id),
                ..Default::default()
            };
            assert_eq!(gone.delete(&db).await.unwrap().rows_affected, 1);
        }
        4 => {
            insert(format!("second {id}")).insert(&db).await.unwrap();
        }
        _ => return,
    }
    fired.fetch_add(1, Ordering::SeqCst);
}

/// A delete whose before-image finds no row, while other writers commit between
/// its statements: one inserts the row before the log is read (so the log says it exists), one
/// deletes it before the row is read again (absent again), one inserts it once more before our
/// DELETE, which removes it. That delete is logged, marked `before_image: absent`. (The hook
/// took "the log said it exists, the row was absent" to mean the DELETE matched nothing: 2 of
/// 58 deletes went unlogged in a CI run of
/// `contended_inserts_updates_and_deletes_in_transactions_are_all_logged`.) The same outside
/// transactions on MySQL and SQLite; inside one, MySQL's locking read takes a gap lock that
/// keeps the first insert out until we commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_racing_a_delete_and_two_inserts_is_logged() {
    let t = TestDb::new().await;
    // Inside a transaction only on PostgreSQL (see above; SQLite's snapshot would refuse our
    // DELETE).
    let modes: &[bool] = match t.backend() {
        DbBackend::Postgres => &[false, true],
        _ => &[false],
    };
    for (round, &in_transaction) in modes.iter().enumerate() {
        let id = 2000 + i32::try_from(round).unwrap();
        let fired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let gap: GapFn = {
            let (db, fired) = (t.db.clone(), fired.clone());
            Box::new(move |n| {
                let (db, fired) = (db.clone(), fired.clone());
                // In a task of its own: another writer, not a second write of this task.
                Box::pin(async move {
                    tokio::spawn(other_writer(db, fired, n, id)).await.unwrap();
                })
            })
        };
        let result = if in_transaction {
            let txn = t.db.begin().await.unwrap();
            let gaps = Gaps {
                inner: &txn,
                statements: Default::default(),
                gap,
            };
            let result = write_post(&gaps, id, true).await;
            txn.commit().await.unwrap();
            result
        } else {
            let gaps = Gaps {
                inner: &t.db,
                statements: Default::default(),
                gap,
            };
            write_post(&gaps, id, true).await
        };
        let what = format!("in_transaction={in_transaction} id={id}");
        assert_eq!(
            fired.load(Ordering::SeqCst),
            3,
            "{what}: every gap was used"
        );
        assert_eq!(
            result.unwrap(),
            1,
            "{what}: our DELETE removed the second row"
        );
        assert!(
            post::Entity::find_by_id(id)
                .one(&t.db)
                .await
                .unwrap()
                .is_none()
        );
        let history = logs_for_id(&t.db, "posts", &id.to_string()).await.unwrap();
        let actions: Vec<_> = history.iter().map(|e| e.action.clone()).collect();
        assert_eq!(
            actions,
            [
                Action::Delete,
                Action::Create,
                Action::Delete,
                Action::Create
            ],
            "{what}: newest first"
        );
        assert_eq!(history[0].data["before_image"], json!("absent"), "{what}");
    }
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.first_broken());
    t.finish().await;
}

const MIX_TASKS: usize = 16;
const MIX_OPS: usize = 24;
const MIX_IDS: i32 = 4;

/// What one task's mix of writes did: (inserts, updates, deletes) that committed a change.
type Done = (usize, usize, usize);

/// One write of the mix in a transaction of its own: insert, update or delete of post `id`.
/// Returns which kind committed a change, or `None` when the write failed (duplicate key,
/// missing row, deadlock: the transaction rolled back) or matched nothing.
async fn mixed_write(
    db: &DatabaseConnection,
    op: usize,
    id: i32,
    tag: &str,
) -> Result<Option<usize>, DbErr> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE posts SET views = views WHERE 0")
            .await?;
    }
    let result = match op {
        0 => post::ActiveModel {
            id: Set(id),
            ..new_post(tag)
        }
        .insert(&txn)
        .await
        .map(|_| true),
        1 => post::ActiveModel {
            id: Set(id),
            body: Set(tag.to_owned()),
            ..Default::default()
        }
        .update(&txn)
        .await
        .map(|_| true),
        _ => post::ActiveModel {
            id: Set(id),
            ..Default::default()
        }
        .delete(&txn)
        .await
        .map(|r| r.rows_affected == 1),
    };
    match result {
        Ok(changed) => {
            txn.commit().await?;
            Ok(changed.then_some(op))
        }
        Err(_) => {
            txn.rollback().await?;
            Ok(None)
        }
    }
}

/// Inside transactions, 16 tasks inserting, updating and deleting the same 4 rows: every
/// committed change has exactly one entry (an update or delete of a row the before-image did
/// not see included), each create and update the one with its own title or body; each row's
/// entries replay as a valid life (a create only when the row was absent, each `old_value`
/// the value before, unless the before-image saw no row) ending in the row as stored; and
/// every chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_inserts_updates_and_deletes_in_transactions_are_all_logged() {
    let t = TestDb::new().await;
    let mut tasks = Vec::new();
    for task in 0..MIX_TASKS {
        let db = t.db.clone();
        tasks.push(tokio::spawn(async move {
            let mut done: Done = (0, 0, 0);
            // The tags of committed creates and updates.
            let mut tags = Vec::new();
            for n in 0..MIX_OPS {
                let op = (task + n) % 3;
                let id = i32::try_from((task * 7 + n) % 4).unwrap() + 1;
                let tag = format!("task{task}-{n}");
                match mixed_write(&db, op, id, &tag).await? {
                    Some(0) => done.0 += 1,
                    Some(1) => done.1 += 1,
                    Some(_) => done.2 += 1,
                    None => continue,
                }
                if op < 2 {
                    tags.push(tag);
                }
            }
            Ok::<_, DbErr>((done, tags))
        }));
    }
    let mut done: Done = (0, 0, 0);
    let mut committed = HashSet::new();
    for task in tasks {
        let (d, tags) = task.await.unwrap().unwrap();
        done = (done.0 + d.0, done.1 + d.1, done.2 + d.2);
        committed.extend(tags);
    }
    let mut logged: Done = (0, 0, 0);
    let mut absent = 0;
    // How many old values were compared with the replayed row (the check is not vacuous).
    let mut compared = 0;
    let mut tags = HashSet::new();
    for id in 1..=MIX_IDS {
        let mut history = logs_for_id(&t.db, "posts", &id.to_string()).await.unwrap();
        history.reverse();
        // The row as the entries so far say it is: `None` absent; fields not known are missing.
        let mut state: Option<serde_json::Map<String, serde_json::Value>> = None;
        for (i, entry) in history.iter().enumerate() {
            let changes = entry.changes.clone().unwrap_or_default();
            let seen = !entry.data.contains_key("before_image");
            let at = format!("object {id}, entry {i} ({:?})", entry.action);
            if seen && entry.action != Action::Create {
                let before = state
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: no row before"));
                for (field, old) in &changes.old_value {
                    if let Some(known) = before.get(field) {
                        assert_eq!(known, old, "{at}: old_value is not the value before");
                        compared += 1;
                    }
                }
            }
            let tag = match &entry.action {
                Action::Create => {
                    assert!(state.is_none(), "{at}: created over an existing row");
                    logged.0 += 1;
                    state = Some(changes.new_value.clone());
                    changes.new_value.get("title")
                }
                Action::Update => {
                    logged.1 += 1;
                    let row = state.get_or_insert_with(Default::default);
                    if !seen {
                        row.clear();
                    }
                    row.extend(changes.new_value.clone());
                    changes.new_value.get("body")
                }
                Action::Delete => {
                    logged.2 += 1;
                    state = None;
                    None
                }
                other => panic!("{at}: {other:?}"),
            };
            if let Some(tag) = tag {
                let tag = tag.as_str().unwrap().to_owned();
                assert!(committed.contains(&tag), "{at}: {tag} never committed");
                assert!(tags.insert(tag.clone()), "{at}: {tag} logged twice");
            }
            absent += usize::from(!seen);
        }
        let row = post::Entity::find_by_id(id).one(&t.db).await.unwrap();
        match (row, state) {
            (None, None) => {}
            (Some(row), Some(state)) => {
                for (field, value) in [("title", json!(row.title)), ("body", json!(row.body))] {
                    if let Some(logged) = state.get(field) {
                        assert_eq!(logged, &value, "object {id}: {field} as stored");
                    }
                }
            }
            (row, state) => panic!("object {id}: stored {row:?}, the log says {state:?}"),
        }
    }
    assert_eq!(
        logged, done,
        "(creates, updates, deletes) logged vs committed"
    );
    assert_eq!(
        tags, committed,
        "each committed create and update has its entry"
    );
    assert!(compared > 0, "no old value was compared");
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.first_broken());
    eprintln!(
        "{:?}: committed (inserts, updates, deletes) = {done:?}, all logged; {absent} of them \
         changed a row their before-image did not see; {compared} old values replayed",
        t.backend()
    );
    t.finish().await;
}

/// The snapshot a failed write left behind is replaced at once by the next write of the same
/// object in the same task: a retry does not wait (it may hold locks in its transaction), and
/// is logged with its own before-image.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_after_a_failed_write_of_the_same_object_does_not_wait() {
    let t = TestDb::new().await;
    new_post("taken").insert(&t.db).await.unwrap();
    let p = new_post("free").insert(&t.db).await.unwrap();
    for in_transaction in [false, true] {
        let failing = post::ActiveModel {
            id: Set(p.id),
            title: Set("taken".into()), // UNIQUE(title): the UPDATE fails after before_save
            ..Default::default()
        };
        if in_transaction {
            let txn = t.db.begin().await.unwrap();
            assert!(failing.update(&txn).await.is_err());
            // PostgreSQL aborts a transaction after a failed statement: retry in a new one.
            txn.rollback().await.unwrap();
        } else {
            assert!(failing.update(&t.db).await.is_err());
        }
        let started = Instant::now();
        let retry = post::ActiveModel {
            id: Set(p.id),
            body: Set(format!("retry {in_transaction}")),
            ..Default::default()
        };
        if in_transaction {
            let txn = t.db.begin().await.unwrap();
            retry.update(&txn).await.unwrap();
            txn.commit().await.unwrap();
        } else {
            retry.update(&t.db).await.unwrap();
        }
        let took = started.elapsed();
        assert!(
            took < sea_orm_audit::IN_FLIGHT_WAIT / 2,
            "in_transaction={in_transaction}: the retry took {took:?}"
        );
    }
    let history = logs_for_id(&t.db, "posts", &p.id.to_string())
        .await
        .unwrap();
    let bodies: Vec<_> = history
        .iter()
        .map(|e| e.changes.as_ref().unwrap().new_value["body"].clone())
        .collect();
    assert_eq!(
        bodies,
        [json!("retry true"), json!("retry false"), json!("start")]
    );
    assert_eq!(
        history[0].changes.as_ref().unwrap().old_value["body"],
        json!("retry false")
    );
    assert_eq!(
        sea_orm_audit::__private::pending_snapshots_for_current_task(),
        0
    );
    t.finish().await;
}

/// Hook mode outside a transaction: a write whose answer is lost (the connection cut after the
/// server committed it; a future dropped while its statement runs ends the same way) has no
/// entry, because the hook that writes the entry never runs. This is the README's "does not
/// hold" case, checked as such. Through `AtomicExt` (a transaction of its own) the write and its
/// entry commit together or not at all: the UPDATE's answer lost rolls both back, the
/// COMMIT's answer lost commits both. The proxy swallows the answer to the statement carrying
/// the new body (its bound value), and counts that it did. SQLite runs in process.
#[tokio::test]
async fn a_lost_answer_leaves_an_autocommit_write_without_an_entry_and_never_an_atomic_one() {
    use common::proxy::{FaultProxy, upstream_of};
    use sea_orm_audit::AtomicExt;
    let t = TestDb::new().await;
    if t.backend() == DbBackend::Sqlite {
        return t.finish().await;
    }
    let proxy = FaultProxy::start(upstream_of(&t.url)).await;
    let post = new_post("lost answers").insert(&t.db).await.unwrap();
    let updates = || async {
        logs_for_id(&t.db, "posts", &post.id.to_string())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == Action::Update)
            .count()
    };
    let body = || async {
        post::Entity::find_by_id(post.id)
            .one(&t.db)
            .await
            .unwrap()
            .unwrap()
            .body
    };
    let update = |value: &str| post::ActiveModel {
        id: Set(post.id),
        body: Set(value.to_owned()),
        ..Default::default()
    };
    // (how, the pattern whose answer is lost, the new body, whether it commits)
    let cases = [
        ("autocommit", "lost-autocommit", "lost-autocommit", true),
        ("atomic", "lost-atomic-update", "lost-atomic-update", false),
        ("atomic", "COMMIT", "lost-atomic-commit", true),
    ];
    for (how, pattern, value, commits) in cases {
        let via_proxy = single_connection(&proxy.url(&t.url)).await;
        let (swallowed, entries) = (proxy.swallowed(), updates().await);
        proxy.swallow_reply_to(pattern, 1);
        let result = match how {
            "autocommit" => update(value).update(&via_proxy).await,
            _ => update(value).update_atomic(&via_proxy).await,
        };
        proxy.swallow_reply_to(pattern, 0);
        via_proxy.close().await.ok();
        assert!(
            result.is_err(),
            "{how} {value}: the client never got the answer"
        );
        assert_eq!(
            proxy.swallowed(),
            swallowed + 1,
            "{how} {value}: the fault fired"
        );
        let stored = body().await;
        if commits {
            assert_eq!(
                stored, value,
                "{how} {value}: the server committed the write"
            );
        } else {
            assert_ne!(stored, value, "{how} {value}: rolled back");
        }
        let logged = updates().await - entries;
        match (how, commits) {
            // The write committed; its hook never ran.
            ("autocommit", _) => assert_eq!(logged, 0, "{how} {value}"),
            // The entry commits exactly when the write does.
            _ => assert_eq!(logged, usize::from(commits), "{how} {value}"),
        }
    }
    // PostgreSQL: the future dropped while the proxy holds its UPDATE (a request cancelled
    // mid-statement). The server still runs and commits it; the hook never runs. (On MySQL a
    // statement dropped mid-flight can leave sqlx's connection unusable, launchbadge/sqlx
    // issue 563.)
    if t.backend() == DbBackend::Postgres {
        let via_proxy = single_connection(&proxy.url(&t.url)).await;
        let (delayed, entries) = (proxy.delayed(), updates().await);
        proxy.delay(Some(("lost-cancelled", Duration::from_millis(500))));
        let write = update("lost-cancelled").update(&via_proxy);
        let cancelled = tokio::time::timeout(Duration::from_millis(200), write).await;
        assert!(cancelled.is_err(), "dropped while its UPDATE was held");
        assert_eq!(proxy.delayed(), delayed + 1, "the delay fired");
        let deadline = Instant::now() + Duration::from_secs(10);
        while body().await != "lost-cancelled" {
            assert!(Instant::now() < deadline, "the held UPDATE never landed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy.delay(None);
        assert_eq!(updates().await, entries, "the write landed with no entry");
        via_proxy.close().await.ok();
    }
    t.finish().await;
}

/// MariaDB: a transaction whose snapshot predates another writer's first entry about an
/// object still chains from that entry, for a hook's update of a row with no history and for
/// an event about a new object. The snapshot shows no `audit_chain_head` row; the row is
/// claimed by an upsert and read with a lock, so as committed. With the plain read alone the
/// transaction started a second chain, which `verify` reported as a fork (README, "What does
/// not hold", until this test).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_a_stale_snapshot_still_chains_from_the_head() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let id = post_without_history(&t.db, "old row").await;
    let note = |message: &'static str| Event::new("note").target_id("ticket", "9").message(message);
    let update = |body: &str| post::ActiveModel {
        id: Set(id),
        body: Set(body.to_owned()),
        ..Default::default()
    };
    let txn = t.db.begin().await.unwrap();
    // A consistent read: the snapshot is taken here.
    post::Entity::find_by_id(id)
        .one(&txn)
        .await
        .unwrap()
        .unwrap();
    // Another connection writes both objects' first entries, and commits.
    update("first").update(&t.db).await.unwrap();
    note("first").record(&t.db).await.unwrap();
    update("second").update(&txn).await.unwrap();
    note("second").record(&txn).await.unwrap();
    txn.commit().await.unwrap();
    for (entity_type, object_id) in [("posts", id.to_string()), ("ticket", "9".to_owned())] {
        let history = logs_for_id(&t.db, entity_type, &object_id).await.unwrap();
        assert_eq!(history.len(), 2, "{entity_type} {object_id}");
    }
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.checked, 4);
    t.finish().await;
}

/// MariaDB: a head row claimed by a write that then logs nothing stays as a placeholder and
/// means "no head", outside a transaction and inside one that rolls back: the object's next
/// entry starts its chain and `verify` is clean. The failing writes are an update to a title
/// another row holds (the UNIQUE constraint refuses it after the claim) and an update to a
/// 100,000-character body (hostile; the database refuses it, 1406), each outside a
/// transaction; then an update in a transaction rolled back. The placeholder read back after the first failure shows the claim
/// fired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_a_claimed_head_no_entry_follows_means_no_head() {
    use sea_orm_audit::audit_chain_head;
    let t = TestDb::new().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    new_post("taken").insert(&t.db).await.unwrap();
    let id = post_without_history(&t.db, "old row").await;
    let head_row = || async {
        audit_chain_head::Entity::find_by_id(("posts".to_owned(), id.to_string()))
            .one(&t.db)
            .await
            .unwrap()
    };
    assert!(head_row().await.is_none(), "no history yet");
    let taken = post::ActiveModel {
        id: Set(id),
        title: Set("taken".into()),
        ..Default::default()
    };
    let refused = taken.update(&t.db).await;
    assert!(refused.is_err(), "{refused:?}");
    let placeholder = head_row().await.expect("the claim left its row");
    assert_eq!(
        (placeholder.head_id, placeholder.hash.as_deref()),
        (0, None)
    );
    let update = |body: String| post::ActiveModel {
        id: Set(id),
        body: Set(body),
        ..Default::default()
    };
    let huge = update("x".repeat(100_000)).update(&t.db).await;
    // Refused by the database (1406 Data too long), after the hook's reads.
    assert!(
        huge.as_ref()
            .is_err_and(|e| e.to_string().contains("Data too long")),
        "{huge:?}"
    );
    let txn = t.db.begin().await.unwrap();
    update("rolled back".into()).update(&txn).await.unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(head_row().await, Some(placeholder), "still the placeholder");
    assert!(
        logs_for_id(&t.db, "posts", &id.to_string())
            .await
            .unwrap()
            .is_empty()
    );

    update("first".into()).update(&t.db).await.unwrap();
    update("second".into()).update(&t.db).await.unwrap();
    let history = logs_for_id(&t.db, "posts", &id.to_string()).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        head_row().await.unwrap().head_id,
        history[0].id,
        "the newest entry"
    );
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    t.finish().await;
}

/// MariaDB: a bulk update of two objects holds their newest entries (locked by id) from the
/// moment it read them as heads, so an event about one of them, in a transaction, waits for it
/// and then chains from the bulk write's entry. The proxy holds the bulk write's log INSERT
/// back 1.5 s (and counts that it did); the event runs meanwhile. Its head read locks the
/// head entry, then the head row. Locking the head row alone, the event went through at once
/// and was logged before the bulk write's entry, both chained from the create (this test
/// failed); locking the head row first and the entry second, the two deadlocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_an_event_waits_for_a_bulk_write_that_read_its_head() {
    use common::proxy::{FaultProxy, upstream_of};
    use sea_orm::{ColumnTrait, Condition};
    use sea_orm_audit::bulk;
    let t = TestDb::new().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let a = new_post("a").insert(&t.db).await.unwrap();
    let b = new_post("b").insert(&t.db).await.unwrap();
    let proxy = FaultProxy::start(upstream_of(&t.url)).await;
    let via_proxy = single_connection(&proxy.url(&t.url)).await;
    let delayed = proxy.delayed();
    proxy.delay(Some((
        "INSERT INTO `audit_log`",
        Duration::from_millis(1500),
    )));
    let ids = [a.id, b.id];
    let bulk = tokio::spawn(async move {
        let txn = via_proxy.begin().await?;
        bulk::update_many::<post::Entity, _>(
            &txn,
            Condition::all().add(post::Column::Id.is_in(ids)),
            post::ActiveModel {
                body: Set("bulk".into()),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        via_proxy.close().await.ok();
        Ok::<_, DbErr>(())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.delayed() == delayed {
        assert!(
            Instant::now() < deadline,
            "the bulk write's log INSERT was never held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let txn = t.db.begin().await.unwrap();
    Event::new("note")
        .target(&a)
        .message("meanwhile")
        .record(&txn)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    bulk.await.unwrap().unwrap();
    proxy.delay(None);
    assert_eq!(proxy.delayed(), delayed + 1, "the delay fired once");
    let history = logs_for_id(&t.db, "posts", &a.id.to_string())
        .await
        .unwrap();
    let actions: Vec<&str> = history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["note", "update", "create"],
        "the event after the bulk write"
    );
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.first_broken());
    t.finish().await;
}

/// MariaDB: a transaction holding audited writes makes no writer of another object wait,
/// while the writer of the same object still waits for it (its chain stays exact).
///
/// Object 1 sorts right before object 2, which has one entry (its create), in the log's
/// `(entity_type, object_id, id)` index. Until the chain heads had a table of their own
/// (`audit_chain_head`), the holder's locking head read of object 2 took a next-key lock on
/// that entry: the entry and the gap before it, which is where object 1's next entry goes, so
/// object 1's writer waited until its lock wait timeout, in and outside a transaction. The
/// holder here also records an event about an object with no entries, and creates a post:
/// their neighbours' writers must not wait either. Each write runs with a 2 s lock wait
/// timeout, so a wait fails it (1205); the writer of object 2 itself must fail that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_unrelated_writers_never_wait_for_a_chain_head_lock() {
    let t = TestDb::new().await;
    if t.backend() != DbBackend::MySql {
        return t.finish().await;
    }
    let one = new_post("one").insert(&t.db).await.unwrap();
    let two = new_post("two").insert(&t.db).await.unwrap();
    assert_eq!(
        (one.id, two.id),
        (1, 2),
        "object ids sort as the test needs"
    );
    let other = single_connection(&t.url).await;
    other
        .execute_unprepared("SET SESSION innodb_lock_wait_timeout = 2")
        .await
        .unwrap();
    let update = |id: i32, body: String| post::ActiveModel {
        id: Set(id),
        body: Set(body),
        ..Default::default()
    };
    let lock_wait = |r: &Result<(), DbErr>| {
        r.as_ref()
            .is_err_and(|e| e.to_string().contains("Lock wait timeout"))
    };
    let holder = t.db.begin().await.unwrap();
    update(two.id, "held".into()).update(&holder).await.unwrap();
    let note = |id: &str| Event::new("note").target_id("ticket", id).message("n");
    note("5").record(&holder).await.unwrap();
    new_post("three").insert(&holder).await.unwrap();

    // Writers of other objects, outside and inside a transaction: none waits.
    let outside = update(one.id, "outside".into())
        .update(&other)
        .await
        .map(drop);
    assert!(outside.is_ok(), "outside a transaction: {outside:?}");
    let inside = async {
        let txn = other.begin().await?;
        update(one.id, "inside".into()).update(&txn).await?;
        note("4")
            .record(&txn)
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        note("6")
            .record(&txn)
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        new_post("four").insert(&txn).await?;
        txn.commit().await
    }
    .await;
    assert!(inside.is_ok(), "inside one: {inside:?}");
    // The writer of the held object waits, and times out.
    let same = update(two.id, "same".into()).update(&other).await.map(drop);
    assert!(lock_wait(&same), "the held object's writer: {same:?}");
    holder.commit().await.unwrap();

    let entries = |id: i32| {
        let db = t.db.clone();
        async move {
            logs_for_id(&db, "posts", &id.to_string())
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(entries(one.id).await, 3, "its create and both updates");
    assert_eq!(entries(two.id).await, 2, "its create and the held update");
    for id in ["4", "5", "6"] {
        assert_eq!(logs_for_id(&t.db, "ticket", id).await.unwrap().len(), 1);
    }
    let same = update(two.id, "after".into())
        .update(&other)
        .await
        .map(drop);
    assert!(same.is_ok(), "{same:?}");
    let report = sea_orm_audit::verify(&t.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.first_broken());
    other.close().await.ok();
    t.finish().await;
}

/// A column the database changes itself (here a trigger of the application's that adds 1,000
/// to `views` on every update) is not logged in hook mode, on any backend: an update entry
/// holds the columns the update set, with the values it wrote, and nothing else. The row's
/// final `views` shows the trigger fired on both updates.
#[tokio::test]
async fn a_column_the_database_changes_itself_is_not_logged() {
    let t = TestDb::new().await;
    let post = new_post("touched").insert(&t.db).await.unwrap();
    common::bump_views_on_update(&t.db, "posts").await;
    for (n, in_transaction) in [(1, false), (2, true)] {
        let am = post::ActiveModel {
            id: Set(post.id),
            body: Set(format!("edit {n}")),
            ..Default::default()
        };
        if in_transaction {
            let txn = t.db.begin().await.unwrap();
            am.update(&txn).await.unwrap();
            txn.commit().await.unwrap();
        } else {
            am.update(&t.db).await.unwrap();
        }
    }
    let row = post::Entity::find_by_id(post.id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.views, 2000, "the application's trigger fired twice");
    let mut history = logs_for_id(&t.db, "posts", &post.id.to_string())
        .await
        .unwrap();
    history.reverse();
    let changes: Vec<_> = history[1..]
        .iter()
        .map(|e| e.changes.clone().unwrap())
        .collect();
    assert_eq!(
        serde_json::to_value(&changes).unwrap(),
        json!([
            {"old_value": {"body": "start"}, "new_value": {"body": "edit 1"}},
            {"old_value": {"body": "edit 1"}, "new_value": {"body": "edit 2"}},
        ])
    );
    assert!(sea_orm_audit::verify(&t.db).await.unwrap().is_ok());
    t.finish().await;
}
