//! L2 read connections: a few connections held from the pool and shared by concurrent reads,
//! whose queries tokio-postgres pipelines.
//!
//! A connection checked out of the pool carries one query per round trip, and each costs its
//! own system calls and wake-ups on both sides. Queries issued together on one shared
//! connection travel and are answered together: in `benches/l2.rs`, 64 tasks reading through 8
//! shared connections make far more reads per second than the same tasks checking out 8
//! pooled ones (BENCHMARKS.md, L2 throughput). Writes, invalidations and sweeps still
//! check out a connection of their own.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use deadpool_postgres::{Object, Pool, PoolError};

/// A pooled connection shared by reads; it goes back to the pool when the last read using it
/// is done after its slot dropped it.
pub(crate) type Reader = Arc<Object>;

/// The read connections of one backend.
pub(crate) struct Readers {
    slots: Box<[Slot]>,
}

struct Slot {
    held: Mutex<Option<Reader>>,
    /// Reads on this slot's connection now.
    in_flight: AtomicUsize,
}

/// A read's claim on its slot, counted in `in_flight` until dropped.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Readers {
    /// Half of `pool`, so other operations always find connections; none for a pool of one,
    /// whose reads then check out its connection like everything else.
    pub(crate) fn for_pool(pool: &Pool) -> Self {
        let count = pool.status().max_size / 2;
        Readers {
            slots: (0..count)
                .map(|_| Slot {
                    held: Mutex::new(None),
                    in_flight: AtomicUsize::new(0),
                })
                .collect(),
        }
    }

    /// A read connection: the first idle one, so lone reads keep to one warm connection (and
    /// server process), else the least busy; taken from `pool` if its slot has none (or a
    /// closed one). `None` if reads use the pool directly.
    pub(crate) async fn get(&self, pool: &Pool) -> Option<Result<(Reader, InFlight<'_>), PoolError>> {
        let slot = self
            .slots
            .iter()
            .min_by_key(|slot| slot.in_flight.load(Relaxed))?;
        slot.in_flight.fetch_add(1, Relaxed);
        let in_flight = InFlight(&slot.in_flight);
        if let Some(reader) = open(&slot.lock()) {
            return Some(Ok((reader, in_flight)));
        }
        let taken = match pool.get().await {
            Ok(object) => Arc::new(object),
            Err(err) => return Some(Err(err)),
        };
        let mut held = slot.lock();
        // Another read may have filled the slot meanwhile: use that one, ours goes back.
        if let Some(reader) = open(&held) {
            return Some(Ok((reader, in_flight)));
        }
        *held = Some(taken.clone());
        Some(Ok((taken, in_flight)))
    }

    /// Drops every read connection (after a read timed out or lost its connection): the next
    /// reads take fresh ones, and these go back to the pool, which discards closed ones.
    pub(crate) fn clear(&self) {
        for slot in &self.slots {
            *slot.lock() = None;
        }
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Option<Reader>> {
        // A slot holds a connection or none: valid whatever a panicking holder did.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn open(held: &Option<Reader>) -> Option<Reader> {
    held.as_ref().filter(|reader| !reader.is_closed()).cloned()
}
