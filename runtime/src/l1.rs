//! L1: the in-process store of one function (mini-moka), with per-entry expiry and epochs.

use std::time::{Duration, Instant};

use mini_moka::sync::Cache;

use crate::key::KeyBytes;

#[derive(Clone)]
struct Entry<V> {
    value: V,
    /// Set when the entry must die before the store's own TTL would evict it: an entry filled
    /// from L2 lives no longer than its L2 row.
    expires_at: Option<Instant>,
    /// The function's invalidate-all epoch when stored; an entry of an older epoch is dead.
    epoch: u64,
}

/// One function's L1.
pub(crate) struct L1<V> {
    entries: Cache<KeyBytes, Entry<V>>,
    ttl: Option<Duration>,
}

impl<V: Clone + Send + Sync + 'static> L1<V> {
    pub(crate) fn new(capacity: u64, ttl: Option<Duration>) -> Self {
        let mut builder = Cache::builder().max_capacity(capacity);
        if let Some(ttl) = ttl {
            builder = builder.time_to_live(ttl);
        }
        L1 {
            entries: builder.build(),
            ttl,
        }
    }

    /// The live value for `key` stored in `epoch`, cloned.
    pub(crate) fn get(&self, key: &KeyBytes, epoch: u64) -> Option<V> {
        let entry = self.entries.get(key)?;
        if entry.epoch != epoch || entry.expires_at.is_some_and(|at| Instant::now() >= at) {
            return None;
        }
        Some(entry.value)
    }

    /// Stores `value`, to expire after the L1 TTL or `remaining` (the L2 row's lifetime left),
    /// whichever comes first.
    pub(crate) fn insert(&self, key: KeyBytes, value: V, epoch: u64, remaining: Option<Duration>) {
        let expires_at = match (self.ttl, remaining) {
            (Some(ttl), Some(remaining)) if remaining < ttl => Some(Instant::now() + remaining),
            (None, Some(remaining)) => Some(Instant::now() + remaining),
            _ => None,
        };
        self.entries.insert(key, Entry { value, expires_at, epoch });
    }

    pub(crate) fn remove(&self, key: &KeyBytes) {
        self.entries.invalidate(key);
    }

    /// Frees every entry. Correctness does not depend on it: entries of older epochs are
    /// already dead.
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> KeyBytes {
        KeyBytes::from_slice(&[n])
    }

    #[test]
    fn stores_and_removes() {
        let l1 = L1::new(10, None);
        l1.insert(k(1), "a", 0, None);
        assert_eq!(l1.get(&k(1), 0), Some("a"));
        assert_eq!(l1.get(&k(2), 0), None);
        l1.remove(&k(1));
        assert_eq!(l1.get(&k(1), 0), None);
    }

    #[test]
    fn an_entry_of_an_older_epoch_is_dead() {
        let l1 = L1::new(10, None);
        l1.insert(k(1), "a", 3, None);
        assert_eq!(l1.get(&k(1), 4), None);
    }

    #[test]
    fn an_entry_dies_with_its_l2_row_or_its_ttl() {
        let l1 = L1::new(10, Some(Duration::from_secs(60)));
        l1.insert(k(1), "short", 0, Some(Duration::ZERO));
        l1.insert(k(2), "long", 0, Some(Duration::from_secs(3600)));
        assert_eq!(l1.get(&k(1), 0), None);
        assert_eq!(l1.get(&k(2), 0), Some("long"));

        let l1 = L1::new(10, Some(Duration::from_millis(1)));
        l1.insert(k(1), "a", 0, None);
        std::thread::sleep(Duration::from_millis(5)); // waiting out a TTL is the behaviour under test
        assert_eq!(l1.get(&k(1), 0), None);
    }
}
