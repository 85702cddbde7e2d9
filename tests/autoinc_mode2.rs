//! MariaDB under `innodb_autoinc_lock_mode = 2`, on a server of its own that
//! `.ci/mariadb-autoinc2` starts (the setting needs a server start): the ids of one multi-row
//! INSERT can interleave with a concurrent INSERT's there, so they cannot be read back as one
//! block. Skipped (saying so) without `AUDIT_TEST_MYSQL_AUTOINC2_URL`; CI runs it.

mod common;

use std::collections::HashMap;

use common::entities::post;
use sea_orm::ActiveValue::Set;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, Statement};
use sea_orm_audit::ExecAudited;
use sea_orm_migration::MigratorTrait;

const ENV: &str = "AUDIT_TEST_MYSQL_AUTOINC2_URL";
const TASKS: usize = 8;
const ROUNDS: usize = 20;
const ROWS: usize = 5;
/// Rows per statement of the interleaving probe: long enough statements to overlap.
const PROBE_ROWS: usize = 200;

fn draft(title: String) -> post::ActiveModel {
    post::ActiveModel {
        title: Set(title),
        body: Set("body".into()),
        views: Set(0),
        secret: Set(None),
        ..Default::default()
    }
}

async fn fresh_db(server_url: &str) -> (DatabaseConnection, String) {
    let name = format!("audit_autoinc2_{}", std::process::id());
    let admin = Database::connect(server_url).await.unwrap();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await.ok();
    let (base, _) = server_url.rsplit_once('/').unwrap();
    let db = Database::connect(format!("{base}/{name}")).await.unwrap();
    common::Migrator::up(&db, None).await.unwrap();
    common::create_table(&db, post::Entity).await;
    (db, name)
}

/// Statements whose auto-increment ids were not one consecutive block: plain SeaORM
/// `insert_many` from `TASKS` tasks at once, each row tagged with its statement. Shows that
/// the server interleaves, i.e. that the library's handling of mode 2 is exercised.
async fn interleaved_statements(db: &DatabaseConnection) -> usize {
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let rows = (0..PROBE_ROWS).map(|k| draft(format!("probe-{t}-{r}-{k}")));
                post::Entity::insert_many(rows).exec(&db).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut ids: HashMap<String, Vec<i32>> = HashMap::new();
    for row in post::Entity::find().all(db).await.unwrap() {
        if let Some(rest) = row.title.strip_prefix("probe-") {
            let statement = rest.rsplit_once('-').unwrap().0.to_owned();
            ids.entry(statement).or_default().push(row.id);
        }
    }
    db.execute_unprepared("DELETE FROM posts").await.unwrap();
    ids.values()
        .filter(|ids| {
            let (min, max) = (ids.iter().min().unwrap(), ids.iter().max().unwrap());
            usize::try_from(max - min).unwrap() + 1 != ids.len()
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_row_inserts_are_logged_exactly_under_lock_mode_2() {
    let Ok(server_url) = std::env::var(ENV) else {
        eprintln!("autoinc lock mode 2: skipped (set {ENV}; .ci/mariadb-autoinc2 does)");
        return;
    };
    let (db, name) = fresh_db(&server_url).await;
    let mode = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(@@innodb_autoinc_lock_mode AS SIGNED) AS m",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "m")
        .unwrap();
    assert_eq!(mode, 2, "the server runs with innodb_autoinc_lock_mode = 2");
    let interleaved = interleaved_statements(&db).await;

    // `.exec_audited` runs the application's own statement: it cannot split it, so a
    // multi-row insert of auto-increment rows is refused before anything is written.
    let err = post::Entity::insert_many([draft("a".into()), draft("b".into())])
        .exec_audited(&db)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("innodb_autoinc_lock_mode is 2"), "{err}");
    assert!(post::Entity::find().all(&db).await.unwrap().is_empty());
    assert!(common::all_logs(&db).await.is_empty());
    // One row's id is exact.
    post::Entity::insert(draft("one".into()))
        .exec_audited(&db)
        .await
        .unwrap();

    // `bulk::insert_many` inserts one row per statement under mode 2: from `TASKS` tasks at
    // once, every row gets exactly one `create`, with its own values, and no other row's.
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut inserted = Vec::new();
            for r in 0..ROUNDS {
                let rows = (0..ROWS).map(|k| draft(format!("bulk-{t}-{r}-{k}")));
                inserted.extend(sea_orm_audit::bulk::insert_many(&db, rows).await.unwrap());
            }
            inserted
        }));
    }
    let mut returned = Vec::new();
    for task in tasks {
        returned.extend(task.await.unwrap());
    }
    assert_eq!(returned.len(), TASKS * ROUNDS * ROWS);
    let stored: HashMap<i32, String> = post::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p.title))
        .collect();
    for row in &returned {
        assert_eq!(stored.get(&row.id), Some(&row.title), "returned as stored");
    }
    let mut creates: HashMap<String, Vec<String>> = HashMap::new();
    for entry in common::all_logs(&db).await {
        assert_eq!(entry.action, "create");
        let title = entry.changes.unwrap()["new_value"]["title"]
            .as_str()
            .unwrap()
            .to_owned();
        creates.entry(entry.object_id).or_default().push(title);
    }
    assert_eq!(creates.len(), stored.len(), "one object per row");
    for (id, title) in &stored {
        assert_eq!(
            creates.get(&id.to_string()),
            Some(&vec![title.clone()]),
            "row {id}: exactly one create, with its own values"
        );
    }
    assert!(
        sea_orm_audit::verify(&db)
            .await
            .unwrap()
            .problems
            .is_empty()
    );
    eprintln!(
        "autoinc lock mode 2: {interleaved} of {} plain multi-row inserts got interleaved ids; \
         {} rows from {TASKS} concurrent bulk::insert_many, each logged once as stored",
        TASKS * ROUNDS,
        returned.len()
    );
    db.close().await.ok();
    common::drop_server_db(&server_url, &name).await;
}
