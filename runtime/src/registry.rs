//! The registry of every function's cache in a process: what `stats()`, `clear_l1()` and
//! other processes' notices reach.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::notice::{Notice, Payload};
use crate::stats::FunctionStats;

/// What the registry can do with any function's cache, whatever its value and key types.
pub(crate) trait RegisteredCache: Send + Sync {
    fn name(&self) -> &str;
    fn stats(&self) -> FunctionStats;
    /// Entries held in L1 now.
    #[cfg(feature = "metrics")]
    fn l1_entries(&self) -> u64;
    /// Whether the function has an L2, so other processes can invalidate its entries.
    fn has_l2(&self) -> bool;
    /// Drops every L1 entry of this process (L2 untouched), and keeps computations that
    /// started earlier from storing.
    fn clear_l1(&self);
    /// Applies another process's invalidation.
    fn evict_remote(&self, notice: &Notice);
}

/// The caches of one process.
pub(crate) struct Registry {
    caches: Mutex<Vec<&'static dyn RegisteredCache>>,
}

/// The caches of this process.
pub(crate) static REGISTRY: Registry = Registry::new();

impl Registry {
    pub(crate) const fn new() -> Self {
        Registry {
            caches: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn register(&self, cache: &'static dyn RegisteredCache) {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        if caches.iter().any(|c| c.name() == cache.name()) {
            tracing::warn!(
                cache = cache.name(),
                "tiered: two cached functions share this cache name; give one a distinct `name`"
            );
        }
        caches.push(cache);
    }

    fn caches(&self) -> Vec<&'static dyn RegisteredCache> {
        self.caches.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Counts per cache name.
    pub(crate) fn stats(&self) -> BTreeMap<String, FunctionStats> {
        let mut all = BTreeMap::<String, FunctionStats>::new();
        for cache in self.caches() {
            *all.entry(cache.name().to_owned()).or_default() += cache.stats();
        }
        all
    }

    /// Entries held in L1 per cache name.
    #[cfg(feature = "metrics")]
    pub(crate) fn l1_entries(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::<String, u64>::new();
        for cache in self.caches() {
            *all.entry(cache.name().to_owned()).or_default() += cache.l1_entries();
        }
        all
    }

    /// Drops the L1 of every cache; with `l2_backed_only`, of those with an L2 alone.
    pub(crate) fn clear_l1(&self, l2_backed_only: bool) {
        for cache in self.caches() {
            if cache.has_l2() || !l2_backed_only {
                cache.clear_l1();
            }
        }
    }

    /// Applies a notice another process sent (skipping this runtime's own, `own_origin`).
    pub(crate) fn apply(&self, payload: &str, own_origin: u64) {
        let Some(notice) = Payload::parse(payload) else {
            tracing::warn!(payload, "tiered: ignoring a malformed invalidation notice");
            return;
        };
        if notice.origin == own_origin {
            return;
        }
        for cache in self.caches() {
            if cache.name() == notice.function {
                cache.evict_remote(&notice.notice);
            }
        }
        // When each process evicted: what a cross-process delay is measured by.
        tracing::trace!(
            function = notice.function,
            "tiered: applied an invalidation notice"
        );
    }
}

/// Counts for every cached function used so far in this process, by cache name.
///
/// A function appears once it has been called (or invalidated) for the first time.
///
/// ```
/// let all = tiered::stats();
/// for (name, counts) in &all {
///     println!("{name}: {} L1 hits, {} origin calls", counts.l1_hits, counts.misses);
/// }
/// ```
pub fn stats() -> BTreeMap<String, FunctionStats> {
    REGISTRY.stats()
}

/// Empties the L1 of every cached function in this process; L2 is untouched, so the next
/// calls are answered from PostgreSQL (or recomputed).
///
/// ```
/// tiered::clear_l1();
/// ```
pub fn clear_l1() {
    REGISTRY.clear_l1(false);
}
