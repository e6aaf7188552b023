//! L1: the in-process store of one function (quick_cache), with per-entry expiry, epochs, and
//! an index from L2 entry ids to keys so other processes' invalidations can find entries.
//!
//! quick_cache rather than mini-moka, by measurement (BENCHMARKS.md): a quick_cache hit is a
//! shard read lock and a clone, where mini-moka also logs every read into a channel that its
//! eviction policy replays under a lock. A hit costs about a quarter of mini-moka's on one
//! thread and scales with cores, and its hit ratio is as good (its Clock-PRO/S3-FIFO-like
//! policy against mini-moka's TinyLFU). quick_cache has no TTL of its own, so every entry
//! carries its deadline and a read past it is a miss.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::Equivalent;

use crate::l2::EntryId;

#[derive(Clone)]
struct Entry<V> {
    value: V,
    /// The earlier of the L1 TTL and the L2 row's remaining lifetime, from `stored_at`.
    expires_at: Option<Instant>,
    /// The function's invalidate-all epoch when stored; an entry of an older epoch is dead.
    epoch: u64,
    stored_at: Instant,
}

/// One function's L1, keyed by `K` (see `call_key`).
pub(crate) struct L1<V, K> {
    entries: Cache<K, Entry<V>>,
    ttl: Option<Duration>,
    /// Every entry stored with an L2 id is in here (the converse need not hold: ids of
    /// evicted entries linger until the next prune).
    ids: Mutex<HashMap<EntryId, K>>,
    prune_at: usize,
}

impl<V: Clone + Send + Sync + 'static, K: Hash + Eq + Clone + Send + Sync + 'static> L1<V, K> {
    pub(crate) fn new(capacity: u64, ttl: Option<Duration>) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        L1 {
            entries: Cache::new(capacity),
            ttl,
            ids: Mutex::new(HashMap::new()),
            prune_at: capacity.saturating_mul(2).saturating_add(64),
        }
    }

    /// The live value for `key` stored in `epoch`, cloned; with `max_age`, only if it was
    /// stored less than that long ago. A dead entry stays until it is overwritten or evicted.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q, epoch: u64, max_age: Option<Duration>) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let entry = self.entries.get(key)?;
        if entry.epoch != epoch {
            return None;
        }
        if entry.expires_at.is_some() || max_age.is_some() {
            let now = Instant::now();
            let expired = entry.expires_at.is_some_and(|at| now >= at)
                || max_age.is_some_and(|age| now.saturating_duration_since(entry.stored_at) > age);
            if expired {
                return None;
            }
        }
        Some(entry.value)
    }

    /// Stores `value`, to expire after the L1 TTL or `remaining` (the L2 row's lifetime left),
    /// whichever comes first; `id` makes it reachable by [`L1::remove_by_id`].
    pub(crate) fn insert(
        &self,
        key: K,
        id: Option<&EntryId>,
        value: V,
        epoch: u64,
        remaining: Option<Duration>,
    ) {
        let stored_at = Instant::now();
        let lifetime = match (self.ttl, remaining) {
            (Some(ttl), Some(remaining)) => Some(ttl.min(remaining)),
            (ttl, remaining) => ttl.or(remaining),
        };
        // A lifetime too long for an `Instant` is no expiry.
        let expires_at = lifetime.and_then(|lifetime| stored_at.checked_add(lifetime));
        let entry = Entry {
            value,
            expires_at,
            epoch,
            stored_at,
        };
        let Some(id) = id else {
            self.entries.insert(key, entry);
            return;
        };
        // Index and entry change together under the index lock, so a prune never sees one
        // without the other.
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.insert(*id, key.clone());
        self.entries.insert(key, entry);
        if ids.len() > self.prune_at {
            ids.retain(|_, key| self.entries.contains_key(key));
        }
    }

    /// Removes the entry stored under L2 id `id`, if any.
    pub(crate) fn remove_by_id(&self, id: &EntryId) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = ids.remove(id) {
            self.entries.remove(&key);
        }
    }

    pub(crate) fn remove(&self, key: &K) {
        self.entries.remove(key);
    }

    /// Frees every entry. Correctness does not depend on it: entries of older epochs are
    /// already dead.
    pub(crate) fn clear(&self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> u8 {
        n
    }

    #[test]
    fn stores_and_removes() {
        let l1 = L1::new(10, None);
        l1.insert(k(1), None, "a", 0, None);
        assert_eq!(l1.get(&k(1), 0, None), Some("a"));
        assert_eq!(l1.get(&k(2), 0, None), None);
        l1.remove(&k(1));
        assert_eq!(l1.get(&k(1), 0, None), None);
    }

    #[test]
    fn an_entry_of_an_older_epoch_is_dead() {
        let l1 = L1::new(10, None);
        l1.insert(k(1), None, "a", 3, None);
        assert_eq!(l1.get(&k(1), 4, None), None);
    }

    #[test]
    fn an_entry_dies_with_its_l2_row_or_its_ttl() {
        let l1 = L1::new(10, Some(Duration::from_secs(60)));
        l1.insert(k(1), None, "short", 0, Some(Duration::ZERO));
        l1.insert(k(2), None, "long", 0, Some(Duration::from_secs(3600)));
        assert_eq!(l1.get(&k(1), 0, None), None);
        assert_eq!(l1.get(&k(2), 0, None), Some("long"));

        let l1 = L1::new(10, Some(Duration::from_millis(1)));
        l1.insert(k(1), None, "a", 0, None);
        std::thread::sleep(Duration::from_millis(5)); // waiting out a TTL is the behaviour under test
        assert_eq!(l1.get(&k(1), 0, None), None);
    }

    #[test]
    fn entries_stored_with_an_id_can_be_removed_by_it_and_the_index_is_pruned() {
        let l1 = L1::new(2, None);
        l1.insert(k(1), Some(&[1; 32]), "a", 0, None);
        l1.insert(k(2), Some(&[2; 32]), "b", 0, None);
        l1.remove_by_id(&[1; 32]);
        assert_eq!(l1.get(&k(1), 0, None), None);
        assert_eq!(l1.get(&k(2), 0, None), Some("b"));
        for n in 3..200u8 {
            l1.remove(&k(n - 1));
            l1.insert(k(n), Some(&[n; 32]), "x", 0, None);
        }
        assert!(l1.ids.lock().unwrap().len() <= l1.prune_at + 1);
        assert_eq!(l1.get(&k(199), 0, None), Some("x"));
        l1.remove_by_id(&[199; 32]);
        assert_eq!(
            l1.get(&k(199), 0, None),
            None,
            "the newest entry is still indexed"
        );
    }

    #[test]
    fn with_a_max_age_older_entries_are_not_served() {
        let l1 = L1::new(10, None);
        l1.insert(k(1), None, "a", 0, None);
        std::thread::sleep(Duration::from_millis(5)); // the entry's age is the behaviour under test
        assert_eq!(l1.get(&k(1), 0, Some(Duration::from_millis(1))), None);
        assert_eq!(l1.get(&k(1), 0, Some(Duration::from_secs(60))), Some("a"));
    }
}
