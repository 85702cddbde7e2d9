//! History queries: filters, keyset and offset pagination, counts, and index use at 100k rows.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::TestDb;
use sea_orm::sea_query::Query;
use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_audit::{Action, History, Status, audit_log};

const ACTIONS: [&str; 4] = ["create", "update", "delete", "login"];

/// Seeds `n` entries with multi-row INSERTs: 5 entity types, n/10 objects, 50 actors, 10 tools,
/// 4 actions, 1 in 20 failed, one second apart from 2026-01-01.
async fn seed(t: &TestDb, n: usize) {
    use audit_log::Column as C;
    let per = if t.backend() == DbBackend::Postgres {
        100
    } else {
        500
    };
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut i = 0;
    while i < n {
        let mut insert = Query::insert();
        insert.into_table(audit_log::Entity).columns([
            C::EntityType,
            C::ObjectId,
            C::Action,
            C::Actor,
            C::CreatedAt,
            C::Tool,
            C::Status,
        ]);
        for k in i..(i + per).min(n) {
            let at = start + Duration::seconds(i64::try_from(k).unwrap());
            let at: sea_orm::Value = if t.backend() == DbBackend::MySql {
                at.naive_utc().into()
            } else {
                at.into()
            };
            insert.values_panic([
                format!("type{}", k % 5).into(),
                format!("{}", k % (n / 10)).into(),
                ACTIONS[k % 4].into(),
                format!("user{}", k % 50).into(),
                at.into(),
                format!("tool{}", k % 10).into(),
                (if k % 20 == 0 { "failed" } else { "success" }).into(),
            ]);
        }
        t.db.execute(&insert).await.unwrap();
        i += per;
    }
}

#[tokio::test]
async fn filters_pages_and_counts() {
    let t = TestDb::new().await;
    seed(&t, 2000).await;
    let q = History::new().entity_type("type1").actor("user11");
    // k % 5 == 1 and k % 50 == 11: k = 11, 61, ... : 40 entries.
    assert_eq!(q.count(&t.db).await.unwrap(), 40);
    let page = q.clone().limit(15).fetch(&t.db).await.unwrap();
    assert_eq!(page.entries.len(), 15);
    assert!(
        page.entries.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );
    assert!(
        page.entries
            .iter()
            .all(|e| e.entity_type == "type1" && e.actor.as_deref() == Some("user11"))
    );

    // Keyset pages cover everything exactly once.
    let mut seen = Vec::new();
    let mut query = q.clone().limit(15);
    loop {
        let page = query.clone().fetch(&t.db).await.unwrap();
        seen.extend(page.entries.iter().map(|e| e.id));
        match page.next {
            Some(cursor) => query = query.before(cursor),
            None => break,
        }
    }
    assert_eq!(seen.len(), 40);
    let distinct: std::collections::BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), 40);
    // Offset pages agree with keyset pages.
    let third = q.clone().limit(15).offset(30).fetch(&t.db).await.unwrap();
    assert_eq!(third.entries.len(), 10);
    assert_eq!(third.entries[0].id, seen[30]);
    assert_eq!(third.next, None);

    let failed = History::new()
        .status(Status::Failed)
        .count(&t.db)
        .await
        .unwrap();
    assert_eq!(failed, 100);
    let logins = History::new()
        .action(Action::Login)
        .tool("tool3")
        .count(&t.db)
        .await
        .unwrap();
    assert_eq!(logins, 100, "k % 4 == 3 and k % 10 == 3, so k % 20 == 3");
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let window = History::new()
        .created_after(start + Duration::seconds(100))
        .created_before(start + Duration::seconds(200));
    assert_eq!(
        window.count(&t.db).await.unwrap(),
        100,
        "after is inclusive, before exclusive"
    );
    let one = History::new()
        .object("type3", "13")
        .fetch(&t.db)
        .await
        .unwrap();
    assert_eq!(one.entries.len(), 10);
    assert_eq!(
        History::new()
            .limit(0)
            .fetch(&t.db)
            .await
            .unwrap()
            .entries
            .len(),
        1,
        "clamped up"
    );
    assert_eq!(
        History::new()
            .limit(1_000_000)
            .fetch(&t.db)
            .await
            .unwrap()
            .entries
            .len(),
        1000,
        "clamped down"
    );
    t.finish().await;
}

/// Every combination of filters, as builders.
fn combinations() -> Vec<(String, History)> {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let mut out = Vec::new();
    for target in 0..3 {
        for mask in 0..32u32 {
            let mut q = History::new();
            let mut name = Vec::new();
            match target {
                1 => {
                    q = q.entity_type("type2");
                    name.push("entity_type");
                }
                2 => {
                    q = q.object("type2", "77");
                    name.push("object");
                }
                _ => {}
            }
            if mask & 1 != 0 {
                q = q.actor("user7");
                name.push("actor");
            }
            if mask & 2 != 0 {
                q = q.tool("tool4");
                name.push("tool");
            }
            if mask & 4 != 0 {
                q = q.action(Action::Update);
                name.push("action");
            }
            if mask & 8 != 0 {
                q = q.status(Status::Failed);
                name.push("status");
            }
            if mask & 16 != 0 {
                q = q
                    .created_after(start)
                    .created_before(start + Duration::hours(1));
                name.push("time");
            }
            out.push((name.join("+"), q));
        }
    }
    out
}

#[tokio::test]
async fn every_filter_combination_uses_an_index_at_100k_rows() {
    let t = TestDb::new().await;
    let backend = t.backend();
    if backend == DbBackend::MySql {
        // Plans are checked on SQLite and PostgreSQL; MySQL's EXPLAIN format differs per version.
        t.finish().await;
        return;
    }
    seed(&t, 100_000).await;
    let analyze = if backend == DbBackend::Postgres {
        "ANALYZE audit_log"
    } else {
        "ANALYZE"
    };
    t.db.execute_unprepared(analyze).await.unwrap();
    for (name, q) in combinations() {
        let stmt = q.statement(backend);
        let prefix = if backend == DbBackend::Postgres {
            "EXPLAIN "
        } else {
            "EXPLAIN QUERY PLAN "
        };
        let mut explain = stmt.clone();
        explain.sql = format!("{prefix}{}", stmt.sql);
        let rows = t.db.query_all_raw(explain).await.unwrap();
        let plan: Vec<String> = rows
            .iter()
            .map(|r| {
                if backend == DbBackend::Postgres {
                    r.try_get::<String>("", "QUERY PLAN").unwrap()
                } else {
                    r.try_get::<String>("", "detail").unwrap()
                }
            })
            .collect();
        let text = plan.join(" | ");
        let indexed = if backend == DbBackend::Postgres {
            text.contains("Index") && !text.contains("Seq Scan")
        } else {
            text.contains("USING INDEX")
                || text.contains("USING COVERING INDEX")
                || text.contains("USING INTEGER PRIMARY KEY")
                // No filter at all: walking the rowid b-tree newest first is the primary key.
                || (name.is_empty() && text.trim() == "SCAN audit_log")
        };
        assert!(indexed, "filters [{name}] not served by an index: {text}");
    }
    t.finish().await;
}
