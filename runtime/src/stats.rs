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
    }
}
