//! An in-memory L2 for unit tests of the call path: the PostgreSQL table's semantics
//! (tombstones, generations, epochs, conditional writes, notices) and faults on demand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::backend::{Entry, EntryId, Lease, Observed, Op, Row, L2, TOMBSTONE_LIFETIME};
use crate::clock::Clock;
use crate::error::BackendError;
use crate::notice::{Notice, Payload};
use crate::registry::Registry;
use crate::tags::{epoch_name, TagHash, NAMESPACE_EPOCH};

/// The operations of [`L2`], to count them and aim faults at them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Operation {
    Read,
    Write,
    Overwrite,
    Invalidate,
    InvalidateAll,
    InvalidateTag,
    ClearAll,
    TakeLease,
    ReleaseLease,
}

/// What an armed fault does to an operation.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Fails with this error.
    Fail(BackendError),
    /// Never answers (the guard's timeout ends it).
    Hang,
    /// Waits until the gate is opened (`notify_waiters`/`notify_one`), then runs.
    Gate(Arc<Notify>),
}

struct Armed {
    operation: Operation,
    fault: Fault,
    /// How many more operations it hits; `None`: all of them.
    times: Option<u32>,
}

/// One entry as the table holds it.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    /// `None`: a tombstone.
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) generation: i64,
    pub(crate) epoch: i64,
    expires_at: Option<Instant>,
}

#[derive(Default)]
struct Table {
    rows: HashMap<EntryId, StoredRow>,
    epochs: HashMap<String, i64>,
    /// The processes that hear notices: their registry and their runtime's origin.
    listeners: Vec<(&'static Registry, u64)>,
    faults: Vec<Armed>,
    calls: HashMap<Operation, u32>,
    /// Leases by entry: their holder and expiry, on tokio's clock (the one waiters sleep on).
    leases: HashMap<EntryId, (i64, tokio::time::Instant)>,
}

/// A table shared by the simulated processes of one test.
#[derive(Default)]
pub(crate) struct MemoryStore {
    table: Mutex<Table>,
}

impl MemoryStore {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The backend of one simulated process, whose notices reach `registry` (its own skipped).
    pub(crate) fn connect(self: &Arc<Self>, registry: &'static Registry, clock: Clock) -> MemoryL2 {
        let origin = fastrand::u64(..);
        self.table().listeners.push((registry, origin));
        MemoryL2 {
            store: self.clone(),
            origin,
            clock,
        }
    }

    /// Arms `fault` for the next `times` operations of the kind (`None`: until [`heal`]).
    ///
    /// [`heal`]: MemoryStore::heal
    pub(crate) fn inject(&self, operation: Operation, fault: Fault, times: Option<u32>) {
        self.table().faults.push(Armed {
            operation,
            fault,
            times,
        });
    }

    /// Disarms every fault.
    pub(crate) fn heal(&self) {
        self.table().faults.clear();
    }

    /// How many operations of the kind were attempted (faulted ones included).
    pub(crate) fn calls(&self, operation: Operation) -> u32 {
        self.table().calls.get(&operation).copied().unwrap_or(0)
    }

    /// The entry with this id, if the table has it.
    pub(crate) fn row(&self, id: &EntryId) -> Option<StoredRow> {
        self.table().rows.get(id).cloned()
    }

    /// Replaces the value of a live entry, as a foreign or corrupted writer would.
    pub(crate) fn corrupt(&self, id: &EntryId, value: Vec<u8>) {
        if let Some(row) = self.table().rows.get_mut(id) {
            row.value = Some(value);
        }
    }

    /// Counts the call and takes the fault armed for it, if any.
    fn begin(&self, operation: Operation) -> Option<Fault> {
        let mut table = self.table();
        *table.calls.entry(operation).or_default() += 1;
        let armed = table
            .faults
            .iter_mut()
            .position(|armed| armed.operation == operation && armed.times.is_none_or(|times| times > 0))?;
        let armed = &mut table.faults[armed];
        if let Some(times) = &mut armed.times {
            *times -= 1;
        }
        Some(armed.fault.clone())
    }
}

/// One simulated process's connection to a [`MemoryStore`].
pub(crate) struct MemoryL2 {
    store: Arc<MemoryStore>,
    origin: u64,
    clock: Clock,
}

impl MemoryL2 {
    /// Runs `apply` on the table unless a fault says otherwise.
    async fn run<T>(
        &self,
        operation: Operation,
        apply: impl FnOnce(&mut Table, Instant) -> T,
    ) -> Result<T, BackendError> {
        match self.store.begin(operation) {
            None => {}
            Some(Fault::Fail(err)) => return Err(err),
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::Gate(gate)) => gate.notified().await,
        }
        let now = self.clock.now();
        Ok(apply(&mut self.store.table(), now))
    }

    /// Bumps one row of the epochs table, then tells every other process.
    async fn bump_epoch(
        &self,
        operation: Operation,
        name: String,
        function: &str,
        notice: Notice,
    ) -> Result<(), BackendError> {
        self.run(operation, |table, _| {
            *table.epochs.entry(name).or_default() += 1;
        })
        .await?;
        self.notify(function, notice);
        Ok(())
    }

    /// Tells every other process, after the change (as a NOTIFY is sent on commit).
    fn notify(&self, function: &str, notice: Notice) {
        let payload = Payload {
            origin: self.origin,
            function,
            notice,
        }
        .encode();
        let listeners = self.store.table().listeners.clone();
        for (registry, origin) in listeners {
            registry.apply(&payload, origin);
        }
    }
}

/// The entry's epoch: the sum of its rows in the epochs table (see `Entry::epoch_names`).
fn epoch_of(table: &Table, entry: &Entry<'_>) -> i64 {
    entry
        .epoch_names()
        .iter()
        .map(|name| table.epochs.get(name).copied().unwrap_or(0))
        .sum()
}

fn expiry(now: Instant, ttl: Option<Duration>) -> Option<Instant> {
    ttl.map(|ttl| now + ttl)
}

impl L2 for MemoryL2 {
    fn read<'a>(&'a self, entry: &'a Entry<'a>, known_epoch: Option<i64>) -> Op<'a, Row> {
        Box::pin(self.run(Operation::Read, move |table, now| {
            let epoch = known_epoch.unwrap_or_else(|| epoch_of(table, entry));
            let row = table.rows.get(&entry.id);
            let live = row.filter(|row| row.epoch == epoch && row.expires_at.is_none_or(|at| at > now));
            Row {
                value: live.and_then(|row| row.value.clone()),
                remaining: row
                    .and_then(|row| row.expires_at)
                    .map(|at| at.saturating_duration_since(now)),
                observed: Observed {
                    generation: row.map_or(0, |row| row.generation),
                    epoch,
                },
            }
        }))
    }

    fn write<'a>(
        &'a self,
        entry: &'a Entry<'a>,
        value: &'a [u8],
        ttl: Option<Duration>,
        observed: Observed,
    ) -> Op<'a, bool> {
        Box::pin(self.run(Operation::Write, move |table, now| {
            if epoch_of(table, entry) != observed.epoch {
                return false;
            }
            let row = table.rows.entry(entry.id).or_insert(StoredRow {
                value: None,
                generation: observed.generation,
                epoch: observed.epoch,
                expires_at: None,
            });
            if row.generation != observed.generation {
                return false;
            }
            row.value = Some(value.to_vec());
            row.epoch = observed.epoch;
            row.expires_at = expiry(now, ttl);
            true
        }))
    }

    fn overwrite<'a>(&'a self, entry: &'a Entry<'a>, value: &'a [u8], ttl: Option<Duration>) -> Op<'a, ()> {
        Box::pin(async move {
            self.run(Operation::Overwrite, |table, now| {
                let epoch = epoch_of(table, entry);
                let generation = table.rows.get(&entry.id).map_or(1, |row| row.generation + 1);
                table.rows.insert(
                    entry.id,
                    StoredRow {
                        value: Some(value.to_vec()),
                        generation,
                        epoch,
                        expires_at: expiry(now, ttl),
                    },
                );
            })
            .await?;
            self.notify(entry.function, Notice::of(entry));
            Ok(())
        })
    }

    fn invalidate<'a>(&'a self, entry: &'a Entry<'a>) -> Op<'a, ()> {
        Box::pin(async move {
            self.run(Operation::Invalidate, |table, now| {
                let row = table.rows.entry(entry.id).or_insert(StoredRow {
                    value: None,
                    generation: 0,
                    epoch: 0,
                    expires_at: None,
                });
                row.value = None;
                row.generation += 1;
                row.expires_at = Some(now + TOMBSTONE_LIFETIME);
            })
            .await?;
            self.notify(entry.function, Notice::of(entry));
            Ok(())
        })
    }

    fn invalidate_all<'a>(&'a self, function: &'a str) -> Op<'a, ()> {
        Box::pin(self.bump_epoch(
            Operation::InvalidateAll,
            function.to_owned(),
            function,
            Notice::All,
        ))
    }

    fn invalidate_tag<'a>(&'a self, tag: &'a TagHash) -> Op<'a, ()> {
        Box::pin(self.bump_epoch(Operation::InvalidateTag, epoch_name(tag), "", Notice::Tag(*tag)))
    }

    fn clear_all(&self) -> Op<'_, ()> {
        Box::pin(self.bump_epoch(Operation::ClearAll, NAMESPACE_EPOCH.to_owned(), "", Notice::Clear))
    }

    fn close(&self) {}

    fn take_lease<'a>(&'a self, id: &'a EntryId, holder: i64, length: Duration) -> Op<'a, Lease> {
        Box::pin(self.run(Operation::TakeLease, move |table, _| {
            let now = tokio::time::Instant::now();
            match table.leases.get(id) {
                Some((_, expires_at)) if *expires_at > now => Lease::Held,
                _ => {
                    table.leases.insert(*id, (holder, now + length));
                    Lease::Taken
                }
            }
        }))
    }

    fn release_lease<'a>(&'a self, id: &'a EntryId, holder: i64) -> Op<'a, ()> {
        Box::pin(self.run(Operation::ReleaseLease, move |table, _| {
            if table
                .leases
                .get(id)
                .is_some_and(|(held_by, _)| *held_by == holder)
            {
                table.leases.remove(id);
            }
        }))
    }
}
