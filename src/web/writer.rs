//! The background batch writer of API activity entries.
//!
//! Requests never wait for the database: the layer reserves a slot in a bounded queue when a
//! request starts (so an admitted request's entry can always be queued, without blocking) and
//! fills it when the response is done. One task writes the queue with multi-row INSERTs, one
//! transaction per batch, when it holds [`Batching::size`] entries or every
//! [`Batching::interval`]. Requests wake the task only when a batch is full, so a request costs
//! a mutex push, not a cross-thread wake-up. A failing database is retried with exponential
//! backoff, the batch kept; meanwhile the queue fills, and once it is full (in entries or in
//! bytes) the layer applies its [`Overflow`](super::Overflow) policy.
//!
//! One entry must never hold up the others: entries are brought within the backends' limits
//! before they are queued (`limits`), and a batch the database refuses all the same is split
//! until the refused entry is alone, which is then stored in its reduced form; after a COMMIT
//! whose answer was lost, entries already stored are left out of the retry (`batch`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::batch::{self, Failure, Prepared, Tally};
use crate::error::{Error, Result};

/// How the [`ActivityWriter`] batches.
///
/// Defaults: batches of 200 entries or every 2 seconds, a queue of 10,000 entries and 32 MiB,
/// retries backing off from 100 ms to 30 s, and 30 seconds for [`ActivityWriter::shutdown`]
/// to write what is left. Out-of-range values (a size of 0) are clamped where they are used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct Batching {
    /// Entries per batch (one transaction; multi-row INSERTs of up to 100 rows on PostgreSQL,
    /// 500 elsewhere).
    pub size: usize,
    /// How often a partial batch is written (so an entry waits at most this long).
    pub interval: Duration,
    /// Entries the queue holds, counting requests in flight.
    pub capacity: usize,
    /// Bytes the queued entries may hold (about: bodies, headers, path, context). Once they
    /// do, new requests meet the [`Overflow`](super::Overflow) policy as when the queue is
    /// full, and a request in flight whose entry does not fit keeps only its bodies' sizes.
    pub max_bytes: usize,
    /// Longest wait between retries of a failing batch.
    pub max_backoff: Duration,
    /// How long [`ActivityWriter::shutdown`] keeps trying to write what is queued.
    pub shutdown_timeout: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            size: 200,
            interval: Duration::from_secs(2),
            capacity: 10_000,
            max_bytes: 32 * 1024 * 1024,
            max_backoff: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl Batching {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries per batch (at least 1).
    pub fn size(mut self, size: usize) -> Self {
        self.size = size.max(1);
        self
    }

    /// Longest an entry waits in a partial batch.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Entries the queue holds (at least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Bytes the queued entries may hold (at least 64 KiB).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes.max(MIN_BYTES);
        self
    }

    /// Longest wait between retries.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// How long shutdown keeps trying to write what is queued.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The settings as the writer uses them: the fields are public, so whatever they were set
    /// to is brought into range here (a batch size of 0 would write empty batches forever, a
    /// zero interval panics in tokio, a capacity past the semaphore's maximum panics).
    fn clamped(mut self) -> Self {
        self.size = self.size.max(1);
        self.interval = self.interval.max(Duration::from_millis(1));
        self.capacity = self.capacity.clamp(1, Semaphore::MAX_PERMITS);
        self.max_bytes = self.max_bytes.max(MIN_BYTES);
        self.max_backoff = self.max_backoff.max(FIRST_BACKOFF);
        self
    }
}

/// Smallest byte budget of the queue: room for the largest entry.
const MIN_BYTES: usize = 64 * 1024;
/// First wait before retrying a failed batch.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Counters of an [`ActivityWriter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Entries written: rows inserted, each counted once however many attempts it took.
    pub written: u64,
    /// Entries written in a reduced form (`data.reduced` says why; also reported through
    /// `tracing`): larger than the entry limit, over the queue's byte budget, or refused by
    /// the database as they were. Included in `written`.
    pub reduced: u64,
    /// Requests not recorded because the queue was full or the writer had stopped.
    pub dropped: u64,
    /// Batch writes that failed and were retried.
    pub failed_attempts: u64,
    /// Entries given up at shutdown because the database kept failing.
    pub lost: u64,
    /// Entries queued or reserved by requests in flight.
    pub queued: usize,
    /// About the bytes the queued entries hold.
    pub queued_bytes: usize,
}

#[derive(Debug, Default)]
struct Counters {
    stored: Tally,
    dropped: AtomicU64,
    failed_attempts: AtomicU64,
    lost: AtomicU64,
}

/// State shared by the handles, the requests' reservations and the task.
#[derive(Debug)]
struct Shared {
    /// Entries of finished requests, not yet taken by the task. Each keeps its slot (permit)
    /// until it is written, which is what bounds memory.
    buffer: Mutex<Vec<(Box<dyn Pending>, Slot)>>,
    /// Slots: one per entry queued, being written, or reserved by a request in flight.
    slots: Arc<Semaphore>,
    /// About the bytes of the entries queued or being written.
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    /// Reservations of requests still in flight (shutdown waits for them).
    in_flight: AtomicUsize,
    /// Wakes the task when a batch is full, or at shutdown when the last request in flight
    /// ends. Requests otherwise never wake it: no cross-thread wake-up per request.
    wake: Notify,
    counters: Counters,
    size: usize,
    capacity: usize,
}

impl Shared {
    fn take_buffer(&self) -> Vec<(Box<dyn Pending>, Slot)> {
        std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What a finished request leaves in the queue, turned into its entry by the task (off the
/// response path).
pub(crate) trait Pending: std::fmt::Debug + Send + 'static {
    /// About the memory it holds.
    fn approx_bytes(&self) -> usize;
    /// Keeps only the sizes of its bodies, marking the entry reduced for `reason`.
    fn drop_bodies(&mut self, reason: &'static str);
    /// The entry, within every limit.
    fn prepare(self: Box<Self>) -> Prepared;
}

/// A queued entry's place: its slot, and its bytes in the budget, both given back when it is
/// written (or given up).
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
    budget: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Why an entry lost its bodies before it was queued.
const OVER_BUDGET: &str = "the activity queue was over its byte budget";

/// A slot in the queue, taken when a request starts: its entry can always be queued once the
/// response is done, without waiting. Dropping it unused frees the slot.
#[derive(Debug)]
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    pub(crate) fn send<P: Pending>(mut self, mut entry: P) {
        if let Some(permit) = self.permit.take() {
            let shared = &self.shared;
            let mut bytes = entry.approx_bytes();
            let before = shared.bytes.fetch_add(bytes, Ordering::AcqRel);
            if before + bytes > shared.max_bytes {
                // Admitted while there was room; the bodies no longer fit.
                entry.drop_bodies(OVER_BUDGET);
                let smaller = entry.approx_bytes();
                shared.bytes.fetch_sub(bytes - smaller, Ordering::AcqRel);
                bytes = smaller;
            }
            let slot = Slot {
                _permit: permit,
                bytes,
                budget: shared.bytes.clone(),
            };
            let full = {
                let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
                buffer.push((Box::new(entry), slot));
                buffer.len() >= shared.size
            };
            if full {
                self.shared.wake.notify_one();
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.shared.in_flight.fetch_sub(1, Ordering::AcqRel) == 1
            && self.shared.slots.is_closed()
        {
            self.shared.wake.notify_one();
        }
    }
}

#[derive(Debug)]
enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// A handle to the background task writing API activity entries; cheap to clone.
///
/// Spawn it once, give it to [`ActivityLog::new`](super::ActivityLog::new), and call
/// [`shutdown`](Self::shutdown) after the server stopped (axum's `with_graceful_shutdown`
/// waits for requests in flight first): everything queued is written. If every handle is
/// dropped without a shutdown, the task writes what is queued and ends.
#[derive(Debug, Clone)]
pub struct ActivityWriter {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
}

impl ActivityWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn spawn(db: DatabaseConnection, batching: Batching) -> Self {
        let batching = batching.clamped();
        let (control, control_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(batching.capacity)),
            bytes: Arc::new(AtomicUsize::new(0)),
            max_bytes: batching.max_bytes,
            in_flight: AtomicUsize::new(0),
            wake: Notify::new(),
            counters: Counters::default(),
            size: batching.size,
            capacity: batching.capacity,
        });
        let task = Task {
            db,
            batching,
            shared: shared.clone(),
            control: control_rx,
            waiting: Vec::new(),
            stopping: None,
        };
        tokio::spawn(task.run());
        ActivityWriter { shared, control }
    }

    /// A slot for one entry, or `None` when the queue is full (in entries or bytes) or the
    /// writer has stopped.
    pub(crate) fn reserve(&self) -> Option<Reservation> {
        if self.shared.bytes.load(Ordering::Acquire) >= self.shared.max_bytes {
            return None;
        }
        let permit = self.shared.slots.clone().try_acquire_owned().ok()?;
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Reservation {
            shared: self.shared.clone(),
            permit: Some(permit),
        })
    }

    pub(crate) fn count_dropped(&self) {
        let before = self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        // One warning per power of two: visible, not a flood.
        if (before + 1).is_power_of_two() {
            tracing::warn!(
                dropped = before + 1,
                "sea-orm-audit: API activity queue full or closed; requests are served without \
                 an activity entry"
            );
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            written: c.stored.written.load(Ordering::Relaxed),
            reduced: c.stored.reduced.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            queued: self
                .shared
                .capacity
                .saturating_sub(self.shared.slots.available_permits()),
            queued_bytes: self.shared.bytes.load(Ordering::Relaxed),
        }
    }

    /// Writes everything queued now, and returns once it is written (retrying a failing
    /// database until it is). Entries of requests still in flight are not waited for.
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.control
            .send(Control::Flush(done))
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())
    }

    /// Stops accepting entries, waits for the requests in flight that reserved one, writes
    /// everything queued (retrying for up to [`Batching::shutdown_timeout`]), and ends the
    /// task. Returns the final counters; entries that could not be written in time are
    /// counted in [`WriterStats::lost`] and reported through `tracing`. Calling it again, or
    /// from another handle, returns at once.
    pub async fn shutdown(&self) -> WriterStats {
        let (done, wait) = oneshot::channel();
        if self.control.send(Control::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
        self.stats()
    }
}

fn stopped() -> Error {
    Error::WriterStopped
}

struct Task {
    db: DatabaseConnection,
    batching: Batching,
    shared: Arc<Shared>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Flush and shutdown requests answered once the batch in hand is written.
    waiting: Vec<oneshot::Sender<()>>,
    /// Set once shutting down: the time after which failing batches are given up.
    stopping: Option<Instant>,
}

impl Task {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.batching.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            if self.stopping.is_some() {
                // A shutdown arrived while a failing batch was being retried.
                return self.stop().await;
            }
            tokio::select! {
                biased;
                command = self.control.recv() => match command {
                    Some(Control::Flush(done)) => {
                        self.waiting.push(done);
                        self.write_buffer().await;
                        self.answer();
                    }
                    Some(Control::Shutdown(done)) => {
                        self.waiting.push(done);
                        return self.stop().await;
                    }
                    None => return self.stop().await,
                },
                () = self.shared.wake.notified() => self.write_buffer().await,
                _ = tick.tick() => self.write_buffer().await,
            }
        }
    }

    fn answer(&mut self) {
        for done in self.waiting.drain(..) {
            let _ = done.send(());
        }
    }

    /// Refuses new reservations, waits (within the shutdown timeout) for requests in flight
    /// that hold one, and writes everything.
    async fn stop(mut self) {
        let timeout = self.batching.shutdown_timeout;
        let until = *self
            .stopping
            .get_or_insert_with(|| Instant::now() + timeout);
        self.shared.slots.close();
        let shared = self.shared.clone();
        loop {
            let waiting_for = shared.wake.notified();
            if self.shared.in_flight.load(Ordering::Acquire) == 0 {
                break;
            }
            self.write_buffer().await;
            if tokio::time::timeout_at(until, waiting_for).await.is_err() {
                tracing::error!(
                    in_flight = self.shared.in_flight.load(Ordering::Acquire),
                    "sea-orm-audit: requests still in flight at the end of the activity \
                     writer's shutdown timeout; their entries are not written"
                );
                break;
            }
        }
        self.write_buffer().await;
        // Late shutdown or flush requests from other handles.
        while let Ok(command) = self.control.try_recv() {
            match command {
                Control::Flush(done) | Control::Shutdown(done) => self.waiting.push(done),
            }
        }
        self.answer();
    }

    /// Writes everything buffered in batches of `size`, retrying each until it is written (or,
    /// when stopping, until the shutdown deadline). Slots are freed as batches are done.
    async fn write_buffer(&mut self) {
        loop {
            let mut taken = self.shared.take_buffer();
            if taken.is_empty() {
                return;
            }
            while !taken.is_empty() {
                let take = taken.len().min(self.batching.size);
                let (entries, slots): (Vec<Prepared>, Vec<Slot>) = taken
                    .drain(..take)
                    .map(|(pending, slot)| (pending.prepare(), slot))
                    .unzip();
                self.write_with_retry(entries).await;
                drop(slots);
            }
        }
    }

    async fn write_with_retry(&mut self, mut entries: Vec<Prepared>) {
        let shared = self.shared.clone();
        let counters = &shared.counters;
        let tally = &counters.stored;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0u32;
        // Whether an earlier attempt may have committed without our knowing (its COMMIT got
        // no answer): then what is already stored is left out before writing again.
        let mut ambiguous = false;
        loop {
            attempt += 1;
            let checked = match ambiguous {
                true => batch::leave_out_stored(&self.db, &mut entries, tally).await,
                false => Ok(()),
            };
            let result = match checked {
                Ok(()) => {
                    ambiguous = false;
                    batch::write_isolating(&self.db, entries, tally).await
                }
                Err(error) => Err(Failure {
                    error,
                    remaining: entries,
                    ambiguous: true,
                }),
            };
            let failure = match result {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(
                            attempt,
                            "sea-orm-audit: API activity batch written after retrying"
                        );
                    }
                    return;
                }
                Err(failure) => failure,
            };
            let Failure {
                error,
                remaining,
                ambiguous: unsure,
            } = failure;
            entries = remaining;
            ambiguous |= unsure;
            let n = entries.len() as u64;
            counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if let Some(until) = self.stopping
                && Instant::now() + backoff > until
            {
                counters.lost.fetch_add(n, Ordering::Relaxed);
                tracing::error!(
                    %error,
                    entries = n,
                    "sea-orm-audit: giving up on an API activity batch at shutdown"
                );
                return;
            }
            tracing::warn!(
                %error,
                attempt,
                entries = n,
                retry_in_ms = backoff.as_millis() as u64,
                "sea-orm-audit: writing API activity failed; retrying"
            );
            self.sleep_watching_control(backoff).await;
            backoff = (backoff * 2).min(self.batching.max_backoff);
        }
    }

    /// Sleeps between retries while still taking commands: a shutdown sets the deadline after
    /// which batches are given up, flushes wait for the batch in hand.
    async fn sleep_watching_control(&mut self, duration: Duration) {
        let wake = Instant::now() + duration;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => return,
                command = self.control.recv() => match command {
                    Some(Control::Flush(done)) => self.waiting.push(done),
                    Some(Control::Shutdown(done)) => {
                        self.waiting.push(done);
                        self.start_stopping();
                    }
                    None => {
                        // Every handle is gone: no more commands can come.
                        self.start_stopping();
                        tokio::time::sleep_until(wake).await;
                        return;
                    }
                },
            }
        }
    }

    fn start_stopping(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now() + self.batching.shutdown_timeout);
        }
    }
}
