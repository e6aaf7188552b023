//! Invalidation: per-key and per-function epochs that keep stale results out of L1, and the
//! registry of every function's cache in this process.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::key::KeyBytes;
use crate::stats::FunctionStats;

const STRIPES: usize = 64;

/// Epochs of one function. A computation notes them before it reads L2 and stores its result
/// in L1 only if no invalidation of its key (or of the whole function) happened meanwhile.
///
/// Keys share 64 stripes, so an invalidation may also refuse the store of an unrelated key
/// in its stripe: a missed fill, never a stale one. The stripe locks are taken only on the
/// miss and invalidation paths, never on an L1 hit, and never across an `.await`.
pub(crate) struct Epochs {
    all: AtomicU64,
    stripes: [Mutex<u64>; STRIPES],
    hasher: std::hash::RandomState,
}

/// The epochs one computation started under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) all: u64,
    stripe: u64,
}

impl Epochs {
    pub(crate) fn new() -> Self {
        Epochs {
            all: AtomicU64::new(0),
            stripes: std::array::from_fn(|_| Mutex::new(0)),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The invalidate-all epoch; L1 entries of another epoch are dead.
    pub(crate) fn all(&self) -> u64 {
        self.all.load(SeqCst)
    }

    fn stripe(&self, key: &KeyBytes) -> MutexGuard<'_, u64> {
        let mut hasher = self.hasher.build_hasher();
        key.hash(&mut hasher);
        let index = std::hash::Hasher::finish(&hasher) as usize % STRIPES;
        // The guarded data is a counter, valid whatever a panicking holder did.
        self.stripes[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self, key: &KeyBytes) -> Snapshot {
        let stripe = *self.stripe(key);
        Snapshot { all: self.all(), stripe }
    }

    /// Runs `store` (an L1 insert) only if `key` was not invalidated since `snapshot`, atomically
    /// with respect to [`Epochs::invalidate`]. Returns whether it ran.
    pub(crate) fn store_if_current(&self, key: &KeyBytes, snapshot: Snapshot, store: impl FnOnce()) -> bool {
        let stripe = self.stripe(key);
        let current = *stripe == snapshot.stripe && self.all() == snapshot.all;
        if current {
            store();
        }
        current
    }

    /// Marks `key` invalidated and runs `evict` (L1 removal) under the same lock, so no
    /// computation that started earlier can store after it.
    pub(crate) fn invalidate(&self, key: &KeyBytes, evict: impl FnOnce()) {
        let mut stripe = self.stripe(key);
        *stripe += 1;
        evict();
    }

    /// Marks every key of the function invalidated. L1 entries carry the epoch they were
    /// stored in, so this alone makes them unreadable.
    pub(crate) fn invalidate_all(&self) {
        self.all.fetch_add(1, SeqCst);
    }
}

/// What the process-wide registry can do with any function's cache, whatever its value type.
pub(crate) trait RegisteredCache: Send + Sync {
    fn name(&self) -> &str;
    fn stats(&self) -> FunctionStats;
    /// Drops every L1 entry of this process (L2 untouched).
    fn clear_l1(&self);
}

/// Every function cache created in this process.
pub(crate) struct Registry {
    caches: Mutex<Vec<&'static dyn RegisteredCache>>,
}

static REGISTRY: Registry = Registry {
    caches: Mutex::new(Vec::new()),
};

pub(crate) fn registry() -> &'static Registry {
    &REGISTRY
}

impl Registry {
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

    pub(crate) fn caches(&self) -> Vec<&'static dyn RegisteredCache> {
        self.caches.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Empties the L1 of every cached function in this process; L2 is untouched, so the next
/// calls are answered from PostgreSQL (or recomputed).
///
/// ```
/// tiered_runtime::clear_l1();
/// ```
pub fn clear_l1() {
    for cache in registry().caches() {
        cache.clear_l1();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> KeyBytes {
        KeyBytes::from_slice(&[n])
    }

    #[test]
    fn a_store_after_an_invalidation_of_its_key_is_refused() {
        let epochs = Epochs::new();
        let before = epochs.snapshot(&k(1));
        epochs.invalidate(&k(1), || {});
        assert!(!epochs.store_if_current(&k(1), before, || panic!("stored a stale value")));
        let after = epochs.snapshot(&k(1));
        assert!(epochs.store_if_current(&k(1), after, || {}));
    }

    #[test]
    fn a_store_after_invalidate_all_is_refused() {
        let epochs = Epochs::new();
        let before = epochs.snapshot(&k(1));
        epochs.invalidate_all();
        assert!(!epochs.store_if_current(&k(1), before, || panic!("stored a stale value")));
    }
}
