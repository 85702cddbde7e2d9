//! Before-images on their way from a `before_*` hook to its `after_*` hook.
//!
//! `after_save` receives only the new model, so `before_save` hands the old row over through a
//! small in-memory table keyed by (current task, entity type, object id). The key includes the
//! tokio task (or, outside tokio tasks, the thread), so concurrent writers never see each other's
//! snapshots. Two writes of one object in one task (joined futures) would share a key: the
//! second `before_*` hook waits until the first write has logged (see [`IN_FLIGHT_WAIT`] and
//! [`Claim::acquire`]), so each `after_*` hook takes its own snapshot. A write that fails after
//! `before_save` leaves its snapshot behind; it is replaced by the next audited write of the
//! same object in the same task, never read by another task, and dropped after [`STALE_AFTER`]
//! once the table holds more than [`PURGE_ABOVE`] entries, or sooner, oldest first, once the
//! snapshots waiting hold more than [`SNAPSHOT_BYTES`] in all (those of the last second aside):
//! writes that fail (a constraint violated) or are cancelled in every request of a busy server
//! would otherwise keep a copy of their rows for ten minutes, whatever their size.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use tokio::sync::Notify;

use crate::error::Error;
use crate::limits::map_size;
use crate::scope::Scope;

/// Snapshots older than this are considered abandoned by failed writes.
pub const STALE_AFTER: Duration = Duration::from_secs(600);
/// The snapshot table is swept for abandoned entries only above this size.
pub const PURGE_ABOVE: usize = 1024;
/// The most the snapshots waiting between a `before_*` and an `after_*` hook may hold, in
/// bytes (counted as the text of their values), but for those left in the last
/// [`IN_FLIGHT_WAIT`]: above it the oldest of the others are dropped until all hold half of
/// it (or those of the last second alone are left). Apart from those of writes still running,
/// they were left behind by writes that failed or were cancelled; a write still running whose
/// snapshot was dropped fails in its `after_*` hook with [`Error::MissingSnapshot`] (outside a
/// transaction its write has then landed with no entry), so only a write that runs longer
/// than a second while others fill half of this is at risk.
pub const SNAPSHOT_BYTES: usize = 64 << 20;
/// How long a `before_*` hook waits for each step (its read, its write, its log row) of
/// another audited write of the same object in the same task that it saw running (futures
/// joined with `tokio::join!`). A step that takes longer fails this write with
/// [`Error::WriteInFlight`], before it runs.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

pub(crate) type Key = (Scope, &'static str, String);

#[derive(Debug)]
pub(crate) enum Pending {
    /// The `before_*` hook is still reading: its write has not run yet.
    Reading,
    /// The `after_*` hook took the snapshot and is writing the log row.
    Logging,
    /// Update with nothing `Set`: nothing can change.
    Unchanged,
    /// Update or delete of a stored row.
    Before {
        /// The row as stored before the write.
        row: Map<String, Json>,
        /// The chain head, if it was read with the row.
        head: Option<Option<String>>,
        /// The columns the update sets, with the values the application gave them.
        written: Map<String, Json>,
    },
    /// Update or delete of a row the before-image read did not find.
    Absent {
        /// As in `Before`.
        written: Map<String, Json>,
        /// Delete: the id of the log's newest entry about the object, read before the row
        /// was read the second time (`None`: no entry, or an update).
        newest_logged: Option<i64>,
    },
}

struct Slot {
    at: Instant,
    ticket: u64,
    pending: Pending,
    /// What `pending` holds, as counted by [`size_of`].
    bytes: usize,
}

impl Slot {
    fn running(&self) -> bool {
        matches!(self.pending, Pending::Reading | Pending::Logging)
    }
}

/// The snapshots, and the bytes they hold in all.
#[derive(Default)]
struct Table {
    slots: HashMap<Key, Slot>,
    bytes: usize,
}

impl Table {
    fn insert(&mut self, key: Key, slot: Slot) {
        self.bytes += slot.bytes;
        if let Some(old) = self.slots.insert(key, slot) {
            self.bytes -= old.bytes;
        }
    }

    /// Removes `key`'s slot if it is still the one with `ticket`.
    fn remove(&mut self, key: &Key, ticket: u64) {
        if self.slots.get(key).is_some_and(|s| s.ticket == ticket) {
            let slot = self.slots.remove(key).expect("just seen");
            self.bytes -= slot.bytes;
        }
    }

    /// Gives `key`'s slot, if `accept` takes it, `pending`, which holds `size` bytes (see
    /// [`size_of`]); returns what it held and its ticket.
    fn replace(
        &mut self,
        key: &Key,
        accept: impl FnOnce(&Slot) -> bool,
        pending: Pending,
        size: usize,
    ) -> Option<(Pending, u64)> {
        let slot = self.slots.get_mut(key).filter(|s| accept(s))?;
        self.bytes = self.bytes - slot.bytes + size;
        slot.bytes = size;
        slot.at = Instant::now();
        Some((std::mem::replace(&mut slot.pending, pending), slot.ticket))
    }

    /// Drops the slots older than [`STALE_AFTER`].
    fn purge_stale(&mut self, now: Instant) {
        let bytes = &mut self.bytes;
        self.slots.retain(|_, s| {
            let keep = now.duration_since(s.at) < STALE_AFTER;
            if !keep {
                *bytes -= s.bytes;
            }
            keep
        });
    }

    /// Above [`SNAPSHOT_BYTES`], drops the oldest snapshots no hook is running on and that
    /// were left more than [`IN_FLIGHT_WAIT`] ago, until they hold half of it.
    fn evict(&mut self) {
        if self.bytes <= SNAPSHOT_BYTES {
            return;
        }
        let now = Instant::now();
        let mut candidates: Vec<(Instant, Key)> = self
            .slots
            .iter()
            .filter(|(_, slot)| {
                slot.bytes > 0 && !slot.running() && now.duration_since(slot.at) >= IN_FLIGHT_WAIT
            })
            .map(|(key, slot)| (slot.at, key.clone()))
            .collect();
        candidates.sort_by_key(|(at, _)| *at);
        for (_, key) in candidates {
            if self.bytes <= SNAPSHOT_BYTES / 2 {
                break;
            }
            let slot = self.slots.remove(&key).expect("listed above");
            self.bytes -= slot.bytes;
            EVICTED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

static PENDING: LazyLock<Mutex<Table>> = LazyLock::new(|| Mutex::new(Table::default()));
/// Woken whenever a slot is taken or given up, for hooks waiting on a write of the same key.
static RELEASED: Notify = Notify::const_new();
static TICKETS: AtomicU64 = AtomicU64::new(0);
/// Snapshots dropped by [`Table::evict`].
static EVICTED: AtomicU64 = AtomicU64::new(0);

fn table() -> MutexGuard<'static, Table> {
    // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bytes a snapshot holds (see [`map_size`]).
fn size_of(pending: &Pending) -> usize {
    64 + match pending {
        Pending::Before { row, written, .. } => map_size(row) + map_size(written),
        Pending::Absent { written, .. } => map_size(written),
        Pending::Reading | Pending::Logging | Pending::Unchanged => return 0,
    }
}

fn in_flight(key: &Key) -> Error {
    Error::WriteInFlight {
        entity_type: key.1.to_owned(),
        object_id: key.2.clone(),
    }
}

/// A `before_*` hook's hold on its key, from before its read until it leaves its snapshot.
/// Dropped without [`Claim::leave`] (the read failed, or the future was dropped), it frees the
/// key.
pub(crate) struct Claim {
    key: Key,
    ticket: u64,
    left: bool,
}

impl Claim {
    /// Claims `key` once no other write of it is in flight in this task.
    ///
    /// A slot whose hook is running (`Reading`, `Logging`) is a write in flight for certain:
    /// its `Claim` or `Release` frees the slot however the hook ends. A snapshot between the
    /// two hooks is either a write in flight (joined futures) or the leftover of a write that
    /// failed; nothing tells them apart but having seen the same write earlier while one of
    /// its hooks ran. So the hook waits for a write it saw running, for at most
    /// [`IN_FLIGHT_WAIT`] from the slot's last change, and takes any other snapshot as a
    /// leftover and replaces it at once: a retry after a failed write does not wait (it may
    /// hold locks in its transaction). Outside a tokio runtime, with no timer at hand, it
    /// never waits.
    pub(crate) async fn acquire(key: Key) -> Result<Claim, Error> {
        let can_wait = tokio::runtime::Handle::try_current().is_ok();
        // The ticket of the write of this key seen with a hook running.
        let mut seen_running = None;
        loop {
            let released = RELEASED.notified();
            tokio::pin!(released);
            // Registered before the table is read, so a release in between is not missed.
            released.as_mut().enable();
            let claimed = {
                let mut map = table();
                let now = Instant::now();
                if map.slots.len() > PURGE_ABOVE {
                    map.purge_stale(now);
                }
                let busy_until = map.slots.get(&key).and_then(|slot| {
                    let running = slot.running();
                    if running {
                        seen_running = Some(slot.ticket);
                    }
                    let in_flight_for_sure = running || seen_running == Some(slot.ticket);
                    let deadline = slot.at + IN_FLIGHT_WAIT;
                    if !in_flight_for_sure || now.duration_since(slot.at) >= STALE_AFTER {
                        None // left behind by a write that failed
                    } else if can_wait && now < deadline {
                        Some(Ok(deadline))
                    } else {
                        Some(Err(in_flight(&key)))
                    }
                });
                match busy_until {
                    Some(Ok(deadline)) => Err(deadline),
                    Some(Err(e)) => return Err(e),
                    None => {
                        let ticket = TICKETS.fetch_add(1, Ordering::Relaxed);
                        let slot = Slot {
                            at: now,
                            ticket,
                            pending: Pending::Reading,
                            bytes: 0,
                        };
                        map.insert(key.clone(), slot);
                        Ok(Claim {
                            key: key.clone(),
                            ticket,
                            left: false,
                        })
                    }
                }
            };
            match claimed {
                Ok(claim) => {
                    if can_wait {
                        // Lets a future joined with this one run up to its own claim while this
                        // one is `Reading`, even when our read would not yield: it then sees
                        // this write running.
                        tokio::task::yield_now().await;
                    }
                    return Ok(claim);
                }
                Err(deadline) => {
                    let _ = tokio::time::timeout_at(deadline.into(), released).await;
                }
            }
        }
    }

    /// Leaves the snapshot for the `after_*` hook.
    pub(crate) fn leave(mut self, pending: Pending) -> Result<(), Error> {
        self.left = true;
        // Counted before the table is locked: every hook of every task takes that lock.
        let size = size_of(&pending);
        let mut map = table();
        let ticket = self.ticket;
        if map
            .replace(&self.key, |s| s.ticket == ticket, pending, size)
            .is_none()
        {
            // Taken over after STALE_AFTER: this write must not run on someone else's snapshot.
            return Err(in_flight(&self.key));
        }
        map.evict();
        drop(map);
        RELEASED.notify_waiters();
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        table().remove(&self.key, self.ticket);
        RELEASED.notify_waiters();
    }
}

/// Frees a key once the `after_*` hook that took its snapshot has written the log row (or
/// failed): until then the next write of the object in this task waits, so that its chain head
/// read finds this entry.
pub(crate) struct Release {
    key: Key,
    ticket: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        table().remove(&self.key, self.ticket);
        RELEASED.notify_waiters();
    }
}

/// The snapshot a `before_*` hook left for `key`, if its read has finished, and the
/// [`Release`] that frees the key.
pub(crate) fn take(key: &Key) -> Option<(Pending, Release)> {
    let (pending, ticket) = table().replace(key, |s| !s.running(), Pending::Logging, 0)?;
    let release = Release {
        key: key.clone(),
        ticket,
    };
    Some((pending, release))
}

/// How many before-snapshots are waiting for their `after_*` hook (diagnostics and tests).
pub fn pending_snapshots() -> usize {
    table().slots.len()
}

/// How many of those belong to the current task (or thread).
pub fn pending_snapshots_for_current_task() -> usize {
    let scope = Scope::current();
    table().slots.keys().filter(|(s, _, _)| *s == scope).count()
}

/// The bytes those snapshots hold, as counted against [`SNAPSHOT_BYTES`].
pub fn pending_snapshot_bytes() -> usize {
    table().bytes
}

/// How many snapshots were dropped to stay under [`SNAPSHOT_BYTES`] since the process began.
pub fn evicted_snapshots() -> u64 {
    EVICTED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> Key {
        (Scope::current(), "pending_sweep_test", n.to_string())
    }

    fn stale_slot(at: Instant) -> Slot {
        let pending = Pending::Absent {
            written: Map::new(),
            newest_logged: None,
        };
        Slot {
            at,
            ticket: TICKETS.fetch_add(1, Ordering::Relaxed),
            bytes: size_of(&pending),
            pending,
        }
    }

    /// Snapshots left behind more than `STALE_AFTER` ago are kept while the table holds
    /// `PURGE_ABOVE` entries or fewer, and swept (their bytes with them) by the next hook once
    /// it holds more; a younger one stays.
    #[tokio::test]
    async fn stale_snapshots_are_swept_once_the_table_is_large() {
        let Some(old) = Instant::now().checked_sub(STALE_AFTER + Duration::from_secs(1)) else {
            eprintln!("the clock started less than ten minutes ago: nothing can be that old");
            return;
        };
        let present = |n: usize| table().slots.contains_key(&key(n));
        {
            let mut map = table();
            for n in 0..10 {
                map.insert(key(n), stale_slot(old));
            }
        }
        drop(Claim::acquire(key(100_000)).await.unwrap());
        assert!((0..10).all(present), "swept below PURGE_ABOVE");

        let bytes_before = {
            let mut map = table();
            for n in 10..=PURGE_ABOVE {
                map.insert(key(n), stale_slot(old));
            }
            map.insert(key(100_001), stale_slot(Instant::now()));
            map.bytes
        };
        drop(Claim::acquire(key(100_000)).await.unwrap());
        assert!(!(0..=PURGE_ABOVE).any(present), "stale snapshots left");
        assert!(present(100_001), "a young snapshot was swept");
        let bytes_after = table().bytes;
        assert!(
            bytes_after < bytes_before,
            "{bytes_after} of {bytes_before} bytes"
        );
        let mut map = table();
        let ticket = map.slots[&key(100_001)].ticket;
        map.remove(&key(100_001), ticket);
    }
}
