//! The registry of every function's cache in a process: what `stats()`, `clear_l1()` and
//! other processes' notices reach.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::backend::EntryId;
use crate::notice::{Notice, Payload};
use crate::stats::FunctionStats;
use crate::tags::{tag_of, TagEpochs, TagHash, NAMESPACE_EPOCH};

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
    /// Applies another process's invalidation of this function.
    fn evict_remote(&self, notice: &Notice);
    /// Drops the L1 entries carrying the tag (the caller holds the tag epochs' lock).
    fn evict_tag(&self, tag: &TagHash);
    /// Evicts the L1 entries stored under these L2 ids, learned without their keys' stripes
    /// (see `resync`), and keeps computations that started earlier from storing.
    fn evict_ids(&self, ids: &[EntryId]);
}

/// The caches of one process.
pub(crate) struct Registry {
    caches: Mutex<Vec<&'static dyn RegisteredCache>>,
    /// How often each tag was invalidated, as this process knows it.
    pub(crate) tags: TagEpochs,
}

/// The caches of this process.
pub(crate) static REGISTRY: Registry = Registry::new();

impl Registry {
    pub(crate) const fn new() -> Self {
        Registry {
            caches: Mutex::new(Vec::new()),
            tags: TagEpochs::new(),
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

    /// Applies a tag's invalidation to this process: a new epoch for the tag (so computations
    /// of entries carrying it cannot store) and its entries evicted from every cache, both
    /// under the tag epochs' lock.
    pub(crate) fn drop_tag(&self, tag: &TagHash) {
        let mut epochs = self.tags.lock();
        epochs.bump(tag);
        for cache in self.caches() {
            cache.evict_tag(tag);
        }
    }

    /// What a reconnected listener learned from L2 (see `resync`): drops the L1 of the
    /// `functions` whose epoch moved, and evicts the entries of the `changed` rows (function,
    /// id). Returns how many rows were of a function this process has.
    pub(crate) fn evict_changed(&self, functions: &[String], changed: &[(String, EntryId)]) -> usize {
        // The epochs table also holds the namespace's row (`clear_all`) and the tags'.
        if functions.iter().any(|name| name == NAMESPACE_EPOCH) {
            self.clear_l1(false);
            return 0;
        }
        for tag in functions.iter().filter_map(|name| tag_of(name)) {
            self.drop_tag(&tag);
        }
        let mut ids: BTreeMap<&str, Vec<EntryId>> = BTreeMap::new();
        for (function, id) in changed {
            ids.entry(function).or_default().push(*id);
        }
        let mut evicted = 0;
        for cache in self.caches().into_iter().filter(|cache| cache.has_l2()) {
            if functions.iter().any(|function| function == cache.name()) {
                cache.clear_l1();
            } else if let Some(ids) = ids.get(cache.name()) {
                cache.evict_ids(ids);
                evicted += ids.len();
            }
        }
        evicted
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
        match &notice.notice {
            Notice::Tag(tag) => return self.drop_tag(tag),
            Notice::Clear => return self.clear_l1(false),
            Notice::Key { .. } | Notice::All => {}
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
