//! History lookups: the newest 50 entries of one object at 1,000,000 log rows, `History`
//! against the same SELECT in raw SQL.

use std::time::Instant;

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Statement};
use sea_orm_audit::{History, audit_log};
use serde_json::{Value as Json, json};

use super::backends::Target;
use super::settings::Settings;
use super::stats::{Report, Samples, ratio, us};

/// Objects with at least 100 entries; the lookups read their newest 50.
const HOT_OBJECTS: usize = 1_000;

async fn seed_history(db: &DatabaseConnection, total: usize) -> Result<(), DbErr> {
    let objects = total / 10;
    let per = match db.get_database_backend() {
        DbBackend::Postgres => 100,
        _ => 500,
    };
    // Round-robin over objects, so an object's entries are spread over the table as in life:
    // hot objects get 100 entries, the others share the rest.
    let mut order: Vec<usize> = Vec::with_capacity(total);
    let cold_total = total - HOT_OBJECTS * 100;
    let cold = objects - HOT_OBJECTS;
    for round in 0..100 {
        order.extend(0..HOT_OBJECTS);
        let start = round * cold_total / 100;
        let end = (round + 1) * cold_total / 100;
        for k in start..end {
            order.push(HOT_OBJECTS + k % cold);
        }
    }
    let now = chrono::Utc::now();
    let started = Instant::now();
    for (n, chunk) in order.chunks(per).enumerate() {
        let rows = chunk.iter().map(|&o| audit_log::ActiveModel {
            id: NotSet,
            entity_type: Set("post".into()),
            object_id: Set(o.to_string()),
            action: Set("update".into()),
            actor: Set(Some(format!("user{}", o % 50))),
            created_at: Set(now),
            changes: Set(Some(
                json!({"old_value": {"views": n}, "new_value": {"views": n + 1}}),
            )),
            tool: Set(Some("bench".into())),
            message: Set(None),
            status: Set("success".into()),
            data: Set(None),
            prev_hash: Set(None),
            hash: Set(None),
        });
        audit_log::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    eprintln!(
        "  seeded {total} log rows over {objects} objects in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared("ANALYZE audit_log").await?;
    }
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("ANALYZE").await?;
    }
    Ok(())
}

/// The same query in raw SQL, decoding the columns a caller would read.
async fn raw_history(db: &DatabaseConnection, object_id: &str) -> Result<usize, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT id, entity_type, object_id, action, actor, created_at, changes, tool, message, \
             status, data FROM audit_log WHERE entity_type = $1 AND object_id = $2 ORDER BY id \
             DESC LIMIT 50"
        }
        _ => {
            "SELECT id, entity_type, object_id, action, actor, created_at, changes, tool, message, \
             status, data FROM audit_log WHERE entity_type = ? AND object_id = ? ORDER BY id DESC \
             LIMIT 50"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            ["post".into(), object_id.into()],
        ))
        .await?;
    let mut n = 0;
    for row in rows {
        // Every selected column, as a caller reading history would.
        let _: i64 = row.try_get("", "id")?;
        let _: String = row.try_get("", "entity_type")?;
        let _: String = row.try_get("", "object_id")?;
        let _: String = row.try_get("", "action")?;
        let _: Option<String> = row.try_get("", "actor")?;
        let _: chrono::DateTime<chrono::Utc> = row.try_get("", "created_at")?;
        let _: Option<Json> = row.try_get("", "changes")?;
        let _: Option<String> = row.try_get("", "tool")?;
        let _: Option<String> = row.try_get("", "message")?;
        let _: String = row.try_get("", "status")?;
        let _: Option<Json> = row.try_get("", "data")?;
        n += 1;
    }
    Ok(n)
}

pub(crate) async fn history(
    t: &Target,
    settings: &Settings,
    report: &mut Report,
) -> Result<(), DbErr> {
    let db = &t.db;
    let total = settings.history_rows();
    // The single-row and bulk runs left some rows; start from a clean log.
    db.execute_unprepared("DELETE FROM audit_log").await?;
    seed_history(db, total).await?;
    let lookups = if settings.quick { 500 } else { 5_000 };
    let mut lib = Samples::default();
    let mut raw = Samples::default();
    for i in 0..lookups {
        let object = (i * 7919 % HOT_OBJECTS).to_string();
        for k in 0..2 {
            let start = Instant::now();
            if (i + k) % 2 == 0 {
                let page = History::new()
                    .object("post", object.as_str())
                    .limit(50)
                    .fetch(db)
                    .await?;
                assert_eq!(page.entries.len(), 50);
                lib.push(start.elapsed());
            } else {
                let n = raw_history(db, &object).await?;
                assert_eq!(n, 50);
                raw.push(start.elapsed());
            }
        }
    }
    report.line(format!(
        "| {} | {total} rows | {} / {} | {} / {} | {} |",
        t.name,
        us(raw.median()),
        us(raw.p99()),
        us(lib.median()),
        us(lib.p99()),
        ratio(lib.p99(), raw.p99())
    ));
    Ok(())
}
