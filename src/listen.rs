//! Listeners: follow the log as entries commit, to forward them to a file or a SIEM.
//!
//! Entries are written inside the caller's transaction, and nothing tells the library when (or
//! whether) that transaction commits. So listeners read what is committed: a [`Tail`] polls
//! `audit_log` for new ids. It works from any process, and **it never sees an entry that was
//! rolled back**.
//!
//! Ids are allocated when a row is inserted but become visible when its transaction commits, so
//! a transaction that began earlier can commit an entry with a lower id than entries already
//! delivered. The tail remembers such holes below its high-water mark and looks for them again
//! on every poll until they appear (and are delivered) or [`Tail::gap_timeout`] passes (a
//! rolled-back insert leaves a permanent hole; such ids are counted in
//! [`Tail::missed_holes`]). Within one `Tail`, every committed entry is delivered exactly once,
//! in id order within a poll, provided its transaction commits within the gap timeout of its
//! insert. To resume after a restart, persist [`Tail::last_id`] and start with
//! [`Tail::from_id`] (holes open at that moment are not carried over).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::audit_log;
use crate::entry::LogEntry;

/// Where a new [`Tail`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// After the newest entry at the first poll.
    Newest,
    /// After this id (0: from the beginning).
    After(i64),
}

/// Most holes tracked at once; a larger jump in ids (a huge rolled-back batch) is counted as
/// missed at once rather than remembered id by id.
const MAX_HOLES: usize = 100_000;

/// Follows the log over committed entries. See the module docs for the delivery guarantees.
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
    holes: BTreeMap<i64, Instant>,
    missed: u64,
    poll_interval: Duration,
    batch: u64,
    gap_timeout: Duration,
    entity_type: Option<String>,
    /// The last poll filled its batch: more rows are waiting.
    behind: bool,
}

impl Tail {
    /// A tail that delivers entries committed from now on.
    pub fn new(db: DatabaseConnection) -> Self {
        Tail {
            db,
            start: Start::Newest,
            last: None,
            holes: BTreeMap::new(),
            missed: 0,
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

    /// How long a hole is looked for before it counts as missed (default 60 s).
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
        self.missed
    }

    /// Holes still being looked for.
    pub fn open_holes(&self) -> usize {
        self.holes.len()
    }

    /// One round: the entries that committed since the last poll, oldest first.
    pub async fn poll(&mut self) -> Result<Vec<LogEntry>, DbErr> {
        let last = match self.last {
            Some(last) => last,
            None => {
                let start = match self.start {
                    Start::After(id) => id,
                    Start::Newest => newest_id(&self.db).await?,
                };
                self.last = Some(start);
                start
            }
        };
        let mut rows = Vec::new();
        // Holes first: late commits below the high-water mark.
        let holes: Vec<i64> = self.holes.keys().copied().collect();
        for chunk in holes.chunks(crate::bulk::KEYS_PER_STATEMENT) {
            let found = audit_log::Entity::find()
                .filter(audit_log::Column::Id.is_in(chunk.iter().copied()))
                .all(&self.db)
                .await?;
            for row in &found {
                self.holes.remove(&row.id);
            }
            rows.extend(found);
        }
        let fresh = audit_log::Entity::find()
            .filter(audit_log::Column::Id.gt(last))
            .order_by_asc(audit_log::Column::Id)
            .limit(self.batch)
            .all(&self.db)
            .await?;
        self.behind = fresh.len() as u64 >= self.batch;
        let now = Instant::now();
        let mut mark = last;
        for row in &fresh {
            if row.id > mark + 1 {
                let gap = usize::try_from(row.id - mark - 1).unwrap_or(usize::MAX);
                if self.holes.len().saturating_add(gap) > MAX_HOLES {
                    self.missed += gap as u64;
                } else {
                    for id in mark + 1..row.id {
                        self.holes.insert(id, now);
                    }
                }
            }
            mark = row.id;
        }
        self.last = Some(mark);
        rows.extend(fresh);
        let timeout = self.gap_timeout;
        let before = self.holes.len();
        self.holes
            .retain(|_, seen| now.duration_since(*seen) < timeout);
        self.missed += (before - self.holes.len()) as u64;

        rows.sort_by_key(|r| r.id);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if self
                .entity_type
                .as_ref()
                .is_some_and(|t| *t != row.entity_type)
            {
                continue;
            }
            out.push(LogEntry::try_from(row)?);
        }
        Ok(out)
    }

    /// Runs the tail on tokio, calling `handler` for each entry in order; while it is behind (a
    /// poll filled its batch) it polls again at once. Database errors are
    /// reported through `tracing` and retried with backoff (up to 30 s between tries).
    /// [`TailHandle::shutdown`] stops it once a last poll finds it caught up, and gives the tail back (for its
    /// [`Tail::last_id`]).
    pub fn spawn<F, Fut>(mut self, mut handler: F) -> TailHandle
    where
        F: FnMut(LogEntry) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
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
        TailHandle { stop, join }
    }
}

async fn newest_id(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let max: Option<Option<i64>> = audit_log::Entity::find()
        .select_only()
        .column_as(audit_log::Column::Id.max(), "id")
        .into_tuple()
        .one(db)
        .await?;
    Ok(max.flatten().unwrap_or(0))
}

/// A running [`Tail::spawn`].
#[derive(Debug)]
pub struct TailHandle {
    stop: tokio::sync::watch::Sender<bool>,
    join: tokio::task::JoinHandle<Tail>,
}

impl TailHandle {
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
