//! What auditing costs, side by side. See BENCHMARKS.md.
//!
//! ```sh
//! cargo bench --bench audit                      # SQLite file and in-memory
//! AUDIT_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench audit
//! AUDIT_BENCH_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench --bench audit
//! cargo bench --bench audit -- --quick --only postgres --skip history
//! ```
//!
//! For each backend and each single-row operation it runs seven variants on the same
//! connection, interleaved (rotating which goes first): plain SeaORM; a hand-written minimal
//! audit in the same transaction (SELECT the old row, the write, one INSERT into `audit_log`
//! with a serde_json diff); sea-orm-audit's hooks; and database-side capture with the context
//! `capture_db::transaction` sets, without a context, the trigger alone (its seal timed
//! apart), and an entity whose seal is deferred, in `capture_db::transaction_unsealed` (its
//! seal timed apart), on the shared connection and, on PostgreSQL and MySQL, on a pool of its
//! own built with `capture_db::carry_context`. Then the bulk operations on 10,000 rows (SeaORM's own, `bulk::*`, SeaORM's own on
//! the database-mode entity and its seal), history lookups at 1,000,000 log rows, and on
//! PostgreSQL and MySQL autocommit database-mode writes through a pool that carries the
//! context (`capture_db::carry_context`) against one that does not (section `pool`).
//! `AUDIT_BENCH_DB_NAME` names the database created on a server.

#![allow(missing_docs, unreachable_pub)]

/// The databases, one connection each, and their schema.
#[path = "support/backends.rs"]
mod backends;
/// Bulk operations on 10,000 rows.
#[path = "support/bulk.rs"]
mod bulk;
/// The benchmarked entities and their rows.
#[path = "support/entities.rs"]
mod entities;
/// History lookups at 1,000,000 log rows.
#[path = "support/history.rs"]
mod history;
/// Autocommit writes through a pool carrying the context, and through one without.
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
#[path = "support/pool.rs"]
mod pool;
/// Command-line settings.
#[path = "support/settings.rs"]
mod settings;
/// Single-row operations.
#[path = "support/single.rs"]
mod single;
/// Samples, quantiles and printed tables.
#[path = "support/stats.rs"]
mod stats;
/// The axum layer's latency and the activity writer's throughput.
#[cfg(feature = "axum")]
#[path = "support/web.rs"]
mod web;

use sea_orm::DbErr;

use backends::{create_schema, targets};
use settings::Settings;
use stats::Report;

// ---------------------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), DbErr> {
    let settings = Settings::from_args();
    let targets = targets(&settings).await?;
    let mut single = Report::default();
    let mut database = Report::default();
    let mut deferred = Report::default();
    let mut bulk = Report::default();
    let mut hist = Report::default();
    #[cfg(any(
        feature = "sqlx-postgres",
        feature = "sqlx-mysql",
        feature = "sqlx-sqlite"
    ))]
    let mut pools = Report::default();
    #[cfg(feature = "axum")]
    let (mut latency, mut writer) = (Report::default(), Report::default());
    for t in &targets {
        eprintln!("== {}", t.name);
        create_schema(&t.db).await?;
        if settings.wants("single") {
            if single.lines.is_empty() {
                single.line(
                    "| backend | op | mode | plain µs p50 / p99 | baseline µs p50 / p99 | audited µs \
                     p50 / p99 | audited/plain | baseline/plain | audited/baseline |"
                        .into(),
                );
                single.line("|---|---|---|---|---|---|---|---|---|".into());
            }
            if database.lines.is_empty() {
                database.line(
                    "| backend | op | mode | plain µs p50 / p99 | hooks µs p50 / p99 | db context µs \
                     p50 / p99 | db no context µs p50 / p99 | db trigger only µs p50 / p99 | seal \
                     µs per entry | db context/plain | db no context/plain | trigger only/plain | \
                     (trigger + seal)/plain | db context/hooks |"
                        .into(),
                );
                database.line("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".into());
            }
            if deferred.lines.is_empty() {
                deferred.line(
                    "| backend | op | mode | plain µs p50 | hooks µs p50 | db context µs p50 | db \
                     deferred µs p50 / p99 | seal µs per entry | deferred/plain | (deferred + \
                     seal)/plain | deferred/hooks | deferred/db context | deferred, carry_context \
                     pool µs p50 / p99 | carry_context/hooks |"
                        .into(),
                );
                deferred.line("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".into());
            }
            single::single_row_ops(t, &settings, &mut single, &mut database, &mut deferred).await?;
        }
        if settings.wants("bulk") {
            if bulk.lines.is_empty() {
                bulk.line(
                    "| backend | op | plain ms p50 | hooks (bulk::*) ms p50 | db (SeaORM's own) ms \
                     p50 | seal ms p50 | hooks/plain | db/plain | (db + seal)/plain | log rows \
                     alone ms | hooks/(plain + log rows) | db/(plain + log rows) |"
                        .into(),
                );
                bulk.line("|---|---|---|---|---|---|---|---|---|---|---|---|".into());
            }
            bulk::bulk_ops(t, &settings, &mut bulk).await?;
        }
        #[cfg(any(
            feature = "sqlx-postgres",
            feature = "sqlx-mysql",
            feature = "sqlx-sqlite"
        ))]
        if settings.wants("pool") && t.url.is_some() {
            if pools.lines.is_empty() {
                pools.line(
                    "| backend | op | plain pool µs p50 / p99 | carry_context pool µs p50 / p99 | \
                     carry/plain |"
                        .into(),
                );
                pools.line("|---|---|---|---|---|".into());
            }
            pool::pool_context(t, &settings, &mut pools).await?;
        }
        if settings.wants("history") {
            if hist.lines.is_empty() {
                hist.line(
                    "| backend | log size | raw SQL µs p50 / p99 | History µs p50 / p99 | p99 ratio |"
                        .into(),
                );
                hist.line("|---|---|---|---|---|".into());
            }
            history::history(t, &settings, &mut hist).await?;
        }
        #[cfg(feature = "axum")]
        if settings.wants("web") {
            if latency.lines.is_empty() {
                latency.line(
                    "| backend | no layer µs p50 / p99 | context layer µs p50 / p99 | context + \
                     activity log µs p50 / p99 | context/none | activity/none |"
                        .into(),
                );
                latency.line("|---|---|---|---|---|---|".into());
            }
            web::layer_latency(t.name, &t.db, settings.web_requests(), &mut latency).await?;
            if writer.lines.is_empty() {
                writer.line(
                    "| backend | entries | writer entries/s | raw multi-row INSERT rows/s | \
                     writer time / raw time |"
                        .into(),
                );
                writer.line("|---|---|---|---|---|".into());
            }
            let rounds = settings.bulk_rounds().min(3);
            web::writer_throughput(
                t.name,
                &t.db,
                settings.writer_entries(),
                rounds,
                &mut writer,
            )
            .await?;
        }
    }
    println!("\n## Single-row operations (median / p99 per operation)\n");
    for l in &single.lines {
        println!("{l}");
    }
    println!("\n## Single-row operations, database mode (median / p99 per operation)\n");
    for l in &database.lines {
        println!("{l}");
    }
    println!(
        "\n## Single-row operations, database mode with a deferred seal (medians; the seal \
         timed apart, per entry)\n"
    );
    for l in &deferred.lines {
        println!("{l}");
    }
    println!("\n## Bulk operations\n");
    for l in &bulk.lines {
        println!("{l}");
    }
    #[cfg(any(
        feature = "sqlx-postgres",
        feature = "sqlx-mysql",
        feature = "sqlx-sqlite"
    ))]
    {
        println!(
            "\n## Autocommit database-mode writes under a context: pool with carry_context vs \
             without\n"
        );
        for l in &pools.lines {
            println!("{l}");
        }
    }
    println!("\n## History lookups: newest 50 entries of one object\n");
    for l in &hist.lines {
        println!("{l}");
    }
    #[cfg(feature = "axum")]
    {
        println!("\n## axum layer: latency of a JSON request with one database query\n");
        for l in &latency.lines {
            println!("{l}");
        }
        println!(
            "\n## Activity writer: one flush of queued entries vs the same rows inserted raw\n"
        );
        for l in &writer.lines {
            println!("{l}");
        }
    }
    Ok(())
}
