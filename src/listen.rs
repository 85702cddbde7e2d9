//! Listeners: follow the log as entries commit, to forward them to a file or a SIEM.
//!
//! Entries are written inside the caller's transaction, and nothing tells the library when (or
//! whether) that transaction commits. So listeners read what is committed: a [`Tail`] polls
//! `audit_log` for new ids. It works from any process, and **it never sees an entry that was
//! rolled back**.
//!
//! # Guarantees
//!
//! Within one `Tail`, every committed entry is delivered exactly once, provided its transaction
//! commits within the gap timeout (below). This holds across database errors and reconnects:
//! a poll reads everything it needs first and changes the tail only once every statement has
//! succeeded, so a poll that fails (or whose future is dropped) leaves the tail as it was, and
//! the next poll reads the same rows again. Entries come in id order within a poll; a late
//! commit (below) comes in a later poll than entries with higher ids.
//!
//! # Holes
//!
//! Ids are allocated when a row is inserted but become visible when its transaction commits, so
//! a transaction that began earlier can commit an entry with a lower id than entries already
//! delivered. An id below the tail's high-water mark that it has not read yet is a *hole*. The
//! tail remembers its holes and looks for them again on every poll, delivering each as soon as
//! it appears. A hole is waited for [`Tail::gap_timeout`] (default 60 s) from the poll that
//! noticed it; after that, the first successful poll that still does not find it gives it up
//! and counts it in [`Tail::missed_holes`]. A rolled-back insert leaves such a hole for ever
//! on PostgreSQL and MariaDB (SQLite reuses the id instead); an entry whose transaction
//! commits after its hole was given up is not delivered. Holes found in a poll are delivered
//! even if their time ran out during a database outage, since nothing is given up by a poll
//! that failed.
//!
//! [`Tail::new`] ("from now") does not start blindly after the newest id: transactions still
//! open at that moment may hold lower ids. It takes as holes the missing ids above the newest
//! entry written more than one gap timeout before the start (by `created_at`, so the writers'
//! clocks count), and waits for them like any other hole. An entry inserted within the gap
//! timeout before the start and committed within the gap timeout after it is therefore
//! delivered; older open transactions are not looked for.
//!
//! # Rows that cannot be decoded
//!
//! Rows are decoded one by one. A committed row that cannot be decoded into a [`LogEntry`] (a
//! `status` the library does not know, `data` that is not a JSON object, ...) is not
//! delivered: it is reported through `tracing` (a warning naming its id), counted in
//! [`Tail::undecodable_rows`] (also [`TailHandle::undecodable_rows`] while a spawned tail runs),
//! and the latest [`Error::Corrupt`] reports are kept in [`Tail::undecodable`]. The rows around
//! it are delivered as usual.
//!
//! To resume after a restart, persist [`Tail::last_id`] and start with [`Tail::from_id`]
//! (holes open at that moment are not carried over).
//!
//! # Entries written by database-side capture
//!
//! Trigger-written entries are read like any other, once, when they commit. On SQLite and
//! MySQL an entry written outside `capture_db::transaction`, and on every backend an entry of
//! an entity whose seal is deferred ([`Seal::Deferred`](crate::Seal::Deferred)), is stored
//! with `hash = 'unsealed'` until [`capture_db::seal`](crate::capture_db::seal) runs; the tail delivers it
//! at its commit, not at its seal, and never again: sealing fills in only `prev_hash` and
//! `hash`, which a [`LogEntry`] does not carry, so the entry delivered is the sealed entry
//! field for field, and forwarding it before the seal keeps a copy of it from the start of
//! the window in which it is not yet protected.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::SimpleExpr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityName, EntityTrait, IdenStatic,
    QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Statement,
};

use crate::audit_log;
use crate::entry::LogEntry;
use crate::error::Error;
use crate::sql::{Placeholders, quote};

/// Where a new [`Tail`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// After the newest entry at the first poll, minus the ids that may still commit.
    Newest,
    /// After this id (0: from the beginning).
    After(i64),
}

/// Most holes tracked at once; a larger jump in ids (a huge rolled-back batch) is counted as
/// missed at once rather than remembered id by id.
const MAX_HOLES: usize = 100_000;

/// How many [`Tail::undecodable`] reports are kept (the count has no limit).
const KEPT_REPORTS: usize = 100;

/// Follows the log over committed entries. See the [module docs](self) for the delivery
/// guarantees and how holes are waited for.
///
/// ```
/// # use sea_orm_audit::listen::Tail;
/// # async fn demo(db: sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
/// let mut tail = Tail::new(db).from_start().entity_type("post");
/// for entry in tail.poll().await? {
///     println!("{} {} {}", entry.id, entry.action, entry.object_id);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct Tail {
    db: DatabaseConnection,
    start: Start,
    last: Option<i64>,
    /// Open holes and when they were noticed.
    holes: BTreeMap<i64, Instant>,
    /// Shared with a [`TailHandle`], which reads them while the tail runs.
    counts: Arc<Counts>,
    reports: Vec<Error>,
    poll_interval: Duration,
    batch: u64,
    gap_timeout: Duration,
    entity_type: Option<String>,
    /// The last poll filled its batch: more rows are waiting.
    behind: bool,
}

/// A tail's counters; only the tail writes them.
#[derive(Debug, Default)]
struct Counts {
    missed: AtomicU64,
    undecodable: AtomicU64,
}

impl Counts {
    fn missed(&self, ids: u64) {
        if ids > 0 {
            self.missed.fetch_add(ids, Ordering::Relaxed);
        }
    }
}

/// Where a tail starts: its first poll's work before reading entries.
struct Begin {
    last: i64,
    /// Ids at or below `last` that may still commit.
    holes: Vec<i64>,
    /// Ids below `last` beyond [`MAX_HOLES`].
    missed: u64,
}

impl Tail {
    /// A tail that delivers entries committed from now on, including those of transactions
    /// open at its first poll (see the module docs for how far back it looks).
    pub fn new(db: DatabaseConnection) -> Self {
        Tail {
            db,
            start: Start::Newest,
            last: None,
            holes: BTreeMap::new(),
            counts: Arc::default(),
            reports: Vec::new(),
            poll_interval: Duration::from_millis(500),
            batch: 500,
            gap_timeout: Duration::from_secs(60),
            entity_type: None,
            behind: false,
        }
    }

    /// Deliver every entry in the log, oldest first.
    pub fn from_start(self) -> Self {
        self.from_id(0)
    }

    /// Deliver entries after this id (a [`Tail::last_id`] saved earlier).
    pub fn from_id(mut self, id: i64) -> Self {
        self.start = Start::After(id);
        self.last = None;
        self
    }

    /// Only entries of this entity type (the others are read but not delivered).
    pub fn entity_type(mut self, entity_type: impl Into<String>) -> Self {
        self.entity_type = Some(entity_type.into());
        self
    }

    /// Pause between polls of [`Tail::spawn`] (default 500 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Rows read per poll (default 500).
    pub fn batch(mut self, rows: u64) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// How long a hole is looked for before it counts as missed (default 60 s); for
    /// [`Tail::new`], also how far back before the start it looks for open transactions.
    pub fn gap_timeout(mut self, timeout: Duration) -> Self {
        self.gap_timeout = timeout;
        self
    }

    /// The highest id read so far (0 before the first poll of a tail started from the start).
    pub fn last_id(&self) -> i64 {
        self.last.unwrap_or(match self.start {
            Start::After(id) => id,
            Start::Newest => 0,
        })
    }

    /// Ids given up on: holes that did not fill within the gap timeout.
    pub fn missed_holes(&self) -> u64 {
        self.counts.missed.load(Ordering::Relaxed)
    }

    /// Holes still being looked for.
    pub fn open_holes(&self) -> usize {
        self.holes.len()
    }

    /// Committed rows read but not delivered because they could not be decoded.
    pub fn undecodable_rows(&self) -> u64 {
        self.counts.undecodable.load(Ordering::Relaxed)
    }

    /// Why: an [`Error::Corrupt`] naming the row, for the latest 100 undecodable rows, oldest
    /// first.
    pub fn undecodable(&self) -> &[Error] {
        &self.reports
    }

    /// One round: the entries that committed since the last poll, oldest first.
    ///
    /// On error the tail is unchanged: the next poll reads the same rows again.
    pub async fn poll(&mut self) -> Result<Vec<LogEntry>, DbErr> {
        let last = match self.last {
            Some(last) => last,
            None => {
                let begin = match self.start {
                    Start::After(id) => Begin {
                        last: id,
                        holes: Vec::new(),
                        missed: 0,
                    },
                    Start::Newest => start_point(&self.db, self.gap_timeout).await?,
                };
                // Where the tail starts is settled by the first poll that reaches the database,
                // even if a later statement fails: this skips nothing, it only says what
                // "from now" means.
                let now = Instant::now();
                self.holes.extend(begin.holes.iter().map(|&id| (id, now)));
                self.counts.missed(begin.missed);
                self.last = Some(begin.last);
                begin.last
            }
        };
        let looked_for: Vec<i64> = self.holes.keys().copied().collect();
        let mut found = Vec::new();
        for chunk in looked_for.chunks(crate::sql::KEYS_PER_STATEMENT) {
            let filter = audit_log::Column::Id.is_in(chunk.iter().copied());
            found.extend(read(&self.db, filter, None).await?);
        }
        let filter = audit_log::Column::Id.gt(last);
        let fresh = read(&self.db, filter, Some(self.batch)).await?;
        // Every statement succeeded: only now does the tail move.
        Ok(self.advance(last, found, fresh, Instant::now()))
    }

    /// Takes in what a poll read; cannot fail, so the tail moves all at once or not at all.
    fn advance(
        &mut self,
        last: i64,
        mut found: Vec<(i64, QueryResult)>,
        fresh: Vec<(i64, QueryResult)>,
        now: Instant,
    ) -> Vec<LogEntry> {
        for (id, _) in &found {
            self.holes.remove(id);
        }
        self.behind = fresh.len() as u64 >= self.batch;
        let mut mark = last;
        for &(id, _) in &fresh {
            if id > mark + 1 {
                let gap = usize::try_from(id - mark - 1).unwrap_or(usize::MAX);
                if self.holes.len().saturating_add(gap) > MAX_HOLES {
                    self.counts.missed(gap as u64);
                } else {
                    self.holes.extend((mark + 1..id).map(|hole| (hole, now)));
                }
            }
            mark = id;
        }
        self.last = Some(mark);
        let timeout = self.gap_timeout;
        let before = self.holes.len();
        self.holes
            .retain(|_, noticed| now.duration_since(*noticed) < timeout);
        self.counts.missed((before - self.holes.len()) as u64);

        found.sort_by_key(|(id, _)| *id);
        found
            .into_iter()
            .chain(fresh)
            .filter_map(|(id, row)| self.decode(id, &row))
            .collect()
    }

    /// The row as an entry, or `None` when it is filtered out or undecodable (reported).
    fn decode(&mut self, id: i64, row: &QueryResult) -> Option<LogEntry> {
        if let Some(wanted) = &self.entity_type {
            // A row whose entity type cannot be read is decoded, so that it is reported.
            if row
                .try_get::<String>("", "entity_type")
                .is_ok_and(|t| t != *wanted)
            {
                return None;
            }
        }
        let entry = audit_log::read_row::<audit_log::Model>(row).and_then(LogEntry::try_from);
        match entry {
            Ok(entry) => Some(entry),
            Err(error) => {
                tracing::warn!(id, %error, "sea-orm-audit tail: undecodable row not delivered");
                self.counts.undecodable.fetch_add(1, Ordering::Relaxed);
                if self.reports.len() == KEPT_REPORTS {
                    self.reports.remove(0);
                }
                self.reports.push(error);
                None
            }
        }
    }

    /// Runs the tail on tokio, calling `handler` for each entry in order; while it is behind (a
    /// poll filled its batch) it polls again at once. Database errors are reported through
    /// `tracing` and retried with backoff (up to 30 s between tries); a failed poll delivers
    /// nothing and loses nothing. Undecodable rows are reported as in [`Tail::poll`].
    /// [`TailHandle::shutdown`] stops it once a last poll finds it caught up, and gives the tail
    /// back (for its [`Tail::last_id`] and counters).
    pub fn spawn<F, Fut>(mut self, mut handler: F) -> TailHandle
    where
        F: FnMut(LogEntry) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let counts = self.counts.clone();
        let join = tokio::spawn(async move {
            let mut backoff = self.poll_interval;
            loop {
                let stopping = *stopped.borrow();
                match self.poll().await {
                    Ok(entries) => {
                        backoff = self.poll_interval;
                        for entry in entries {
                            handler(entry).await;
                        }
                    }
                    Err(err) => {
                        self.behind = false;
                        tracing::warn!(error = %err, "sea-orm-audit tail: poll failed, retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
                if self.behind {
                    continue; // catch up (also when stopping) without waiting
                }
                if stopping {
                    break;
                }
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(backoff) => {}
                }
            }
            self
        });
        TailHandle { stop, join, counts }
    }
}

/// Rows matching `filter` in id order, each with its id (the one column that must decode).
async fn read(
    db: &DatabaseConnection,
    filter: SimpleExpr,
    limit: Option<u64>,
) -> Result<Vec<(i64, QueryResult)>, DbErr> {
    let select = audit_log::Entity::find()
        .filter(filter)
        .order_by_asc(audit_log::Column::Id)
        .limit(limit);
    let rows = db.query_all(&select.into_query()).await?;
    rows.into_iter()
        .map(|row| Ok((row.try_get::<i64>("", "id")?, row)))
        .collect()
}

/// Where [`Tail::new`] starts: the newest id, and as holes the missing ids above the newest
/// entry written more than `window` ago (their transactions may still be open).
async fn start_point(db: &DatabaseConnection, window: Duration) -> Result<Begin, DbErr> {
    let backend = db.get_database_backend();
    let cutoff = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| Utc::now().checked_sub_signed(w))
        .unwrap_or(DateTime::UNIX_EPOCH);
    let first_recent = max_or_min_id(
        db,
        audit_log::Column::Id.min(),
        Some(audit_log::Column::CreatedAt.gte(crate::sql::time_value(backend, cutoff))),
    )
    .await?;
    let lower = match first_recent {
        // Nothing written recently: no transaction of the window can be open.
        None => max_or_min_id(db, audit_log::Column::Id.max(), None)
            .await?
            .unwrap_or(0),
        // The entry before the first recent one; none: the table is young, look from id 1.
        Some(first) => max_or_min_id(
            db,
            audit_log::Column::Id.max(),
            Some(audit_log::Column::Id.lt(first)),
        )
        .await?
        .unwrap_or(0),
    };
    // One statement, so the newest id and the missing ids below it come from one snapshot: an
    // entry committing meanwhile is either read here (and delivered later) or left as a hole.
    let id = quote(backend, audit_log::Column::Id.as_str());
    let sql = Placeholders::new(backend).fill(&format!(
        "SELECT {id}, prev_id, next_id FROM (SELECT {id}, LAG({id}) OVER (ORDER BY {id}) AS \
         prev_id, LEAD({id}) OVER (ORDER BY {id}) AS next_id FROM {table} WHERE {id} > {{p}}) \
         edges WHERE prev_id IS NULL OR next_id IS NULL OR {id} > prev_id + 1",
        table = quote(backend, audit_log::Entity.table_name()),
    ));
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [lower.into()]))
        .await?;
    let mut last = lower;
    let mut gaps = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("", "id")?;
        let prev: Option<i64> = row.try_get("", "prev_id")?;
        let next: Option<i64> = row.try_get("", "next_id")?;
        let below = prev.unwrap_or(lower);
        if id > below + 1 {
            gaps.push(below + 1..id);
        }
        if next.is_none() {
            last = id;
        }
    }
    let (holes, missed) = newest_holes(gaps, MAX_HOLES);
    Ok(Begin {
        last,
        holes,
        missed,
    })
}

/// The ids of `gaps` (ascending ranges), newest first, at most `max` of them: the newest are
/// the likeliest to fill. The number of the others, given up at once.
fn newest_holes(gaps: Vec<Range<i64>>, max: usize) -> (Vec<i64>, u64) {
    let mut holes = Vec::new();
    let mut missed = 0u64;
    for gap in gaps.into_iter().rev() {
        let len = (gap.end - gap.start) as u64;
        let kept = len.min((max - holes.len()) as u64);
        holes.extend((gap.end - kept as i64..gap.end).rev());
        missed += len - kept;
    }
    (holes, missed)
}

/// `MIN(id)` or `MAX(id)` of the rows matching `filter` (all rows: `None`).
async fn max_or_min_id(
    db: &DatabaseConnection,
    aggregate: SimpleExpr,
    filter: Option<SimpleExpr>,
) -> Result<Option<i64>, DbErr> {
    let mut select = audit_log::Entity::find()
        .select_only()
        .column_as(aggregate, "id");
    if let Some(filter) = filter {
        select = select.filter(filter);
    }
    let id: Option<Option<i64>> = select.into_tuple().one(db).await?;
    Ok(id.flatten())
}

/// A running [`Tail::spawn`].
#[derive(Debug)]
pub struct TailHandle {
    stop: tokio::sync::watch::Sender<bool>,
    join: tokio::task::JoinHandle<Tail>,
    counts: Arc<Counts>,
}

impl TailHandle {
    /// The running tail's [`Tail::missed_holes`] so far.
    pub fn missed_holes(&self) -> u64 {
        self.counts.missed.load(Ordering::Relaxed)
    }

    /// The running tail's [`Tail::undecodable_rows`] so far (the reports come with the tail
    /// from [`TailHandle::shutdown`], and as `tracing` warnings).
    pub fn undecodable_rows(&self) -> u64 {
        self.counts.undecodable.load(Ordering::Relaxed)
    }

    /// Stops once a last poll finds the tail caught up (delivering what it reads), and returns
    /// the tail. If the database is failing, stops after one failed poll.
    pub async fn shutdown(self) -> Result<Tail, tokio::task::JoinError> {
        let _ = self.stop.send(true);
        self.join.await
    }
}

/// Writes each entry as one line of JSON: a file, a pipe to a log shipper, a socket.
#[derive(Debug)]
pub struct JsonLinesSink<W> {
    writer: Arc<Mutex<W>>,
}

impl<W> Clone for JsonLinesSink<W> {
    fn clone(&self) -> Self {
        JsonLinesSink {
            writer: self.writer.clone(),
        }
    }
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// A sink writing to `writer`.
    pub fn new(writer: W) -> Self {
        JsonLinesSink {
            writer: Arc::new(Mutex::new(writer)),
        }
    }

    /// Writes one entry and a newline, and flushes.
    pub fn write(&self, entry: &LogEntry) -> std::io::Result<()> {
        let line = serde_json::to_string(entry)?;
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        w.flush()
    }

    /// Runs `f` on the writer (to read back an in-memory buffer, say).
    pub fn with<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut w)
    }
}

#[cfg(test)]
mod tests {
    use super::newest_holes;

    #[test]
    fn holes_at_the_start_keep_the_newest_and_count_the_rest() {
        assert_eq!(newest_holes(vec![2..4, 7..8], 10), (vec![7, 3, 2], 0));
        assert_eq!(newest_holes(vec![2..4, 7..9], 3), (vec![8, 7, 3], 1));
        assert_eq!(
            newest_holes(vec![1..500_001, 500_002..1_000_001], 2),
            (vec![1_000_000, 999_999], 999_997)
        );
        assert_eq!(newest_holes(Vec::new(), 2), (Vec::new(), 0));
    }
}
