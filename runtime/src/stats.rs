//! Per-function counters behind `tiered::stats()`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use thread_local::ThreadLocal;

/// Counts for one cached function (one cache `name`), as returned by [`stats`](crate::stats).
/// It serializes as a map of its counts, for a `/stats` endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct FunctionStats {
    /// Calls answered from the in-process L1.
    pub l1_hits: u64,
    /// Calls answered from the PostgreSQL L2 (after an L1 miss).
    pub l2_hits: u64,
    /// Calls that ran the function body (origin calls).
    pub misses: u64,
    /// Calls that waited for another caller's computation of the same key instead of running
    /// their own.
    pub coalesced: u64,
    /// Failed L2 operations (each failed attempt counts).
    pub backend_errors: u64,
    /// Retries made under `on_failure = "retry(N)"`.
    pub retries: u64,
    /// L2 operations skipped because the circuit breaker was open.
    pub short_circuited: u64,
    /// Invalidations applied to this process's L1 (single keys and whole functions).
    pub invalidations: u64,
    /// Calls answered with an expired value because no fresh one could be had (`fail_safe`:
    /// the body failed, panicked or passed a timeout).
    pub stale_served: u64,
    /// Background refreshes started by hits past `eager_refresh`.
    pub eager_refreshes: u64,
    /// Tag invalidations (`invalidate_tag`, here or in another process) that dropped entries
    /// of this function from this process's L1.
    pub tag_invalidations: u64,
    /// Misses that waited for another process to compute the key (`stampede = "fleet"`).
    pub fleet_waits: u64,
    /// Invalidations whose L2 step failed, queued to be replayed once L2 answers.
    pub invalidations_queued: u64,
    /// Queued invalidations replayed to L2 (each queued key, or a whole function).
    pub invalidations_replayed: u64,
}

/// The live counters of one function.
#[derive(Debug, Default)]
pub(crate) struct FnStats {
    l1_hits: PerThread,
    l2_hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    backend_errors: AtomicU64,
    retries: AtomicU64,
    short_circuited: AtomicU64,
    invalidations: AtomicU64,
    stale_served: AtomicU64,
    eager_refreshes: AtomicU64,
    tag_invalidations: AtomicU64,
    fleet_waits: AtomicU64,
    invalidations_queued: AtomicU64,
    invalidations_replayed: AtomicU64,
}

impl FnStats {
    #[inline]
    pub(crate) fn l1_hit(&self) {
        self.l1_hits.add_one();
    }
    pub(crate) fn l2_hit(&self) {
        self.l2_hits.fetch_add(1, Relaxed);
    }
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub(crate) fn coalesced(&self) {
        self.coalesced.fetch_add(1, Relaxed);
    }
    pub(crate) fn backend_error(&self) {
        self.backend_errors.fetch_add(1, Relaxed);
    }
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }
    pub(crate) fn short_circuit(&self) {
        self.short_circuited.fetch_add(1, Relaxed);
    }
    pub(crate) fn invalidation(&self) {
        self.invalidations.fetch_add(1, Relaxed);
    }
    pub(crate) fn stale_served(&self) {
        self.stale_served.fetch_add(1, Relaxed);
    }
    pub(crate) fn eager_refresh(&self) {
        self.eager_refreshes.fetch_add(1, Relaxed);
    }
    pub(crate) fn tag_invalidation(&self) {
        self.tag_invalidations.fetch_add(1, Relaxed);
    }
    pub(crate) fn fleet_wait(&self) {
        self.fleet_waits.fetch_add(1, Relaxed);
    }
    pub(crate) fn invalidation_queued(&self) {
        self.invalidations_queued.fetch_add(1, Relaxed);
    }
    pub(crate) fn invalidation_replayed(&self) {
        self.invalidations_replayed.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> FunctionStats {
        FunctionStats {
            l1_hits: self.l1_hits.sum(),
            l2_hits: self.l2_hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            backend_errors: self.backend_errors.load(Relaxed),
            retries: self.retries.load(Relaxed),
            short_circuited: self.short_circuited.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            eager_refreshes: self.eager_refreshes.load(Relaxed),
            tag_invalidations: self.tag_invalidations.load(Relaxed),
            fleet_waits: self.fleet_waits.load(Relaxed),
            invalidations_queued: self.invalidations_queued.load(Relaxed),
            invalidations_replayed: self.invalidations_replayed.load(Relaxed),
        }
    }
}

/// The count L1 hits bump. A locked add per hit costs as much as the rest of the hit (the
/// lookup and the value's clone wait for it) and bounces one cache line between cores; here
/// every thread adds to its own slot with a plain load and store, and reading sums the slots.
#[derive(Debug, Default)]
struct PerThread(ThreadLocal<Slot>);

/// One thread's count, alone on its cache lines: `ThreadLocal` packs slots side by side, and
/// two threads' adds to one line would bounce it between their cores on every hit. 128 bytes:
/// x86's adjacent-line prefetch pairs 64-byte lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

impl PerThread {
    #[inline]
    fn add_one(&self) {
        // Only this thread writes its slot (a slot passes to a new thread only after its
        // owner exited), so the load and store cannot lose a concurrent add.
        let Slot(count) = self.0.get_or_default();
        count.store(count.load(Relaxed) + 1, Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|Slot(count)| count.load(Relaxed)).sum()
    }
}

impl std::ops::AddAssign for FunctionStats {
    fn add_assign(&mut self, other: FunctionStats) {
        self.l1_hits += other.l1_hits;
        self.l2_hits += other.l2_hits;
        self.misses += other.misses;
        self.coalesced += other.coalesced;
        self.backend_errors += other.backend_errors;
        self.retries += other.retries;
        self.short_circuited += other.short_circuited;
        self.invalidations += other.invalidations;
        self.stale_served += other.stale_served;
        self.eager_refreshes += other.eager_refreshes;
        self.tag_invalidations += other.tag_invalidations;
        self.fleet_waits += other.fleet_waits;
        self.invalidations_queued += other.invalidations_queued;
        self.invalidations_replayed += other.invalidations_replayed;
    }
}
