//! L1: the in-process store of one function (quick_cache), with per-entry expiry, epochs, and
//! an index from L2 entry ids to keys so other processes' invalidations can find entries.
//!
//! quick_cache rather than mini-moka, by measurement (BENCHMARKS.md): a quick_cache hit is a
//! shard read lock and a clone, where mini-moka also logs every read into a channel that its
//! eviction policy replays under a lock. A hit costs a fraction of mini-moka's on one
//! thread and scales with cores, and its hit ratio is as good (its Clock-PRO/S3-FIFO-like
//! policy against mini-moka's TinyLFU). quick_cache has no TTL of its own, so every entry
//! carries its deadline and a read past it is a miss.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{DefaultHashBuilder, Equivalent, OptionsBuilder, UnitWeighter};

use crate::backend::EntryId;
use crate::clock::{nanos, Clock};

/// A key as L1 stores it, with what decides whether its entry is live. That is kept with the
/// key, not the value, and checked while quick_cache compares keys ([`Probe`]): a hit then
/// clones the value alone and hands it on untouched, where moving it out of a wrapper costs
/// a hit measurably more (it was just written, and a shifted copy stalls on store forwarding).
#[derive(Clone)]
struct EntryKey<K> {
    key: K,
    /// The function's invalidate-all epoch when stored; an entry of an older epoch is dead.
    epoch: u64,
    /// In clock ticks ([`Clock::ticks`]), as are the deadlines: words where `Instant`s take
    /// more, so more entries share the CPU's caches.
    stored_at: u64,
    /// The earlier of the L1 TTL and the L2 row's remaining lifetime; [`NEVER`]: no expiry.
    expires_at: u64,
    /// Until when the value may answer as stale under `fail_safe` (not read by a hit).
    stale_until: u64,
}

const NEVER: u64 = u64::MAX;

impl<K: Hash> Hash for EntryKey<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// Entries are one per key: storing a key replaces its entry, live or not.
impl<K: PartialEq> PartialEq for EntryKey<K> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<K: Eq> Eq for EntryKey<K> {}

/// A search for the entry of `key` that only an entry `admits` accepts matches, so an entry
/// it refuses is a miss (and stays until it is overwritten or evicted). Each kind of lookup
/// has its own rule type, so the hit's rule is compiled alone.
struct Probe<'q, Q: ?Sized, A> {
    key: &'q Q,
    admits: A,
}

/// Which stored entries a lookup accepts.
trait Admits {
    fn admits<K>(&self, stored: &EntryKey<K>) -> bool;
}

impl<Q: Hash + ?Sized, A> Hash for Probe<'_, Q, A> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl<K, Q: Equivalent<K> + ?Sized, A: Admits> Equivalent<EntryKey<K>> for Probe<'_, Q, A> {
    #[inline]
    fn equivalent(&self, stored: &EntryKey<K>) -> bool {
        self.key.equivalent(&stored.key) && self.admits.admits(stored)
    }
}

/// Any entry, live or not.
struct Any;

impl Admits for Any {
    #[inline]
    fn admits<K>(&self, _: &EntryKey<K>) -> bool {
        true
    }
}

/// A live entry: stored in `epoch` and, with `max_age`, less than that long ago.
#[derive(Clone, Copy)]
struct Liveness<'c> {
    epoch: u64,
    max_age: Option<Duration>,
    clock: &'c Clock,
}

impl Liveness<'_> {
    /// Stored less than `max_age` ago, if there is one.
    #[inline]
    fn young<K>(self, stored: &EntryKey<K>, now: u64) -> bool {
        self.max_age
            .is_none_or(|age| now.saturating_sub(stored.stored_at) <= nanos(age))
    }
}

impl Admits for Liveness<'_> {
    #[inline]
    fn admits<K>(&self, stored: &EntryKey<K>) -> bool {
        if stored.epoch != self.epoch {
            return false;
        }
        if stored.expires_at == NEVER && self.max_age.is_none() {
            return true;
        }
        let now = self.clock.ticks();
        now < stored.expires_at && self.young(stored, now)
    }
}

/// A live entry not yet past `fraction` of its lifetime (`eager_refresh`).
struct Unaged<'c> {
    live: Liveness<'c>,
    fraction: f64,
}

impl Admits for Unaged<'_> {
    #[inline]
    fn admits<K>(&self, stored: &EntryKey<K>) -> bool {
        if stored.epoch != self.live.epoch {
            return false;
        }
        if stored.expires_at == NEVER && self.live.max_age.is_none() {
            return true;
        }
        // One clock read for both questions: a read costs more than the rest of the check.
        let now = self.live.clock.ticks();
        if now >= stored.expires_at || !self.live.young(stored, now) {
            return false;
        }
        let lifetime = stored.expires_at.saturating_sub(stored.stored_at);
        stored.expires_at == NEVER || now < stored.stored_at + (lifetime as f64 * self.fraction) as u64
    }
}

/// An entry of the epoch within its fail-safe window, expired or not; records that window's
/// end, which a stale value keeps however often it answers again.
struct Recoverable<'c> {
    live: Liveness<'c>,
    stale_until: Cell<u64>,
}

impl Admits for Recoverable<'_> {
    fn admits<K>(&self, stored: &EntryKey<K>) -> bool {
        let now = self.live.clock.ticks();
        let admitted =
            stored.epoch == self.live.epoch && now < stored.stale_until && self.live.young(stored, now);
        if admitted {
            self.stale_until.set(stored.stale_until);
        }
        admitted
    }
}

/// Any entry of `key`, live or not.
fn any<K: ?Sized>(key: &K) -> Probe<'_, K, Any> {
    Probe { key, admits: Any }
}

/// A value past its expiry that may still answer (`fail_safe`), until `until` (in ticks).
#[derive(Debug, Clone)]
pub(crate) struct Stale<V> {
    pub(crate) value: V,
    until: u64,
}

/// What a hit of a function with `eager_refresh` found.
pub(crate) enum Aged<V> {
    /// Live and young.
    Fresh(V),
    /// Live, but past the refresh point: answer with it and refresh the entry.
    Due(V),
}

/// quick_cache's options for a function's `capacity`.
///
/// quick_cache splits its capacity evenly across shards (for concurrency), and keys fall into
/// shards by hash, so a full shard evicts while others have room: `capacity` distinct keys did
/// not all fit. Each shard here gets its even share plus four standard deviations of the
/// share's random spread, so a working set of `capacity` keys fits unless one shard draws over
/// four deviations more than its share. The total may exceed `capacity` by that slack: at
/// most 4·√(capacity·shards), so shards hold at least 256 entries each (+18 % at 1,000
/// entries, +11 % at 10,000, +4 % at 100,000 on this machine's 8 shards); a cache of fewer
/// than 512 entries has one shard and is exact.
fn sized(capacity: usize) -> quick_cache::Options {
    let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
    let mut shards = (parallelism * 4).next_power_of_two();
    // Fewer, larger shards keep the slack small against the share.
    while shards > 1 && capacity / shards < 256 {
        shards /= 2;
    }
    let share = capacity.div_ceil(shards);
    let slack = if shards == 1 {
        0
    } else {
        (4.0 * (share as f64).sqrt()).ceil() as usize
    };
    let per_shard = share + slack;
    OptionsBuilder::new()
        .shards(shards)
        .estimated_items_capacity(per_shard * shards)
        .weight_capacity((per_shard * shards) as u64)
        .build()
        .expect("shards, items and weight are set")
}

/// One function's L1, keyed by `K` (see `call_key`).
pub(crate) struct L1<V, K> {
    entries: Cache<EntryKey<K>, V>,
    ttl: Option<Duration>,
    clock: Clock,
    /// Every entry stored with an L2 id is in here (the converse need not hold: ids of
    /// evicted entries linger until the next prune).
    ids: Mutex<HashMap<EntryId, K>>,
    prune_at: usize,
    /// `fail_safe`: how long an entry stays recoverable past its expiry.
    grace: Duration,
}

impl<V: Clone + Send + Sync + 'static, K: Hash + Eq + Clone + Send + Sync + 'static> L1<V, K> {
    pub(crate) fn new(capacity: u64, ttl: Option<Duration>, grace: Option<Duration>, clock: Clock) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        L1 {
            entries: Cache::with_options(
                sized(capacity),
                UnitWeighter,
                DefaultHashBuilder::default(),
                DefaultLifecycle::default(),
            ),
            ttl,
            clock,
            ids: Mutex::new(HashMap::new()),
            prune_at: capacity.saturating_mul(2).saturating_add(64),
            grace: grace.unwrap_or_default(),
        }
    }

    /// The live value for `key` stored in `epoch`, cloned; with `max_age`, only if it was
    /// stored less than that long ago. A dead entry stays until it is overwritten or evicted.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q, epoch: u64, max_age: Option<Duration>) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.get(&Probe {
            key,
            admits: self.liveness(epoch, max_age),
        })
    }

    /// [`L1::get`] for a function with `eager_refresh`: whether the entry is past `fraction`
    /// of its lifetime as well.
    pub(crate) fn get_aged<Q>(
        &self,
        key: &Q,
        epoch: u64,
        max_age: Option<Duration>,
        fraction: f64,
    ) -> Option<Aged<V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let live = self.liveness(epoch, max_age);
        if let Some(value) = self.entries.get(&Probe {
            key,
            admits: Unaged { live, fraction },
        }) {
            return Some(Aged::Fresh(value));
        }
        self.entries.get(&Probe { key, admits: live }).map(Aged::Due)
    }

    /// The value of `key` stored in `epoch` if it is still within its fail-safe window, live
    /// or expired.
    pub(crate) fn stale<Q>(&self, key: &Q, epoch: u64, max_age: Option<Duration>) -> Option<Stale<V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let probe = Probe {
            key,
            admits: Recoverable {
                live: self.liveness(epoch, max_age),
                stale_until: Cell::new(0),
            },
        };
        let value = self.entries.get(&probe)?;
        Some(Stale {
            value,
            until: probe.admits.stale_until.get(),
        })
    }

    /// A value read from L2 whose row expires in `remaining`, as a stale value.
    pub(crate) fn stale_from_l2(&self, value: V, remaining: Duration) -> Stale<V> {
        Stale {
            value,
            until: self.clock.ticks().saturating_add(nanos(remaining)),
        }
    }

    /// Stores a stale value to answer for `throttle` (no longer than its window), so a failing
    /// body is not called again meanwhile.
    pub(crate) fn insert_stale(
        &self,
        key: K,
        id: Option<&EntryId>,
        stale: &Stale<V>,
        epoch: u64,
        throttle: Duration,
    ) {
        let stored_at = self.clock.ticks();
        let expires_at = stored_at.saturating_add(nanos(throttle)).min(stale.until);
        self.put(
            key,
            id,
            stale.value.clone(),
            EntryKey {
                key: (),
                epoch,
                stored_at,
                expires_at,
                stale_until: stale.until,
            },
        );
    }

    fn liveness(&self, epoch: u64, max_age: Option<Duration>) -> Liveness<'_> {
        Liveness {
            epoch,
            max_age,
            clock: &self.clock,
        }
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
        let stored_at = self.clock.ticks();
        let lifetime = match (self.ttl, remaining) {
            (Some(ttl), Some(remaining)) => Some(ttl.min(remaining)),
            (ttl, remaining) => ttl.or(remaining),
        };
        let expires_at = lifetime.map_or(NEVER, |lifetime| stored_at.saturating_add(nanos(lifetime)));
        let stale_until = match expires_at {
            NEVER => NEVER,
            expires_at => expires_at.saturating_add(nanos(self.grace)),
        };
        self.put(
            key,
            id,
            value,
            EntryKey {
                key: (),
                epoch,
                stored_at,
                expires_at,
                stale_until,
            },
        );
    }

    /// Stores `value` under `key` with the deadlines of `entry`.
    fn put(&self, key: K, id: Option<&EntryId>, value: V, entry: EntryKey<()>) {
        let EntryKey {
            epoch,
            stored_at,
            expires_at,
            stale_until,
            ..
        } = entry;
        let stored = |key| EntryKey {
            key,
            epoch,
            stored_at,
            expires_at,
            stale_until,
        };
        let Some(id) = id else {
            self.entries.insert(stored(key), value);
            return;
        };
        // Index and entry change together under the index lock, so a prune never sees one
        // without the other.
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.insert(*id, key.clone());
        self.entries.insert(stored(key), value);
        if ids.len() > self.prune_at {
            ids.retain(|_, key| self.entries.contains_key(&any(key)));
        }
    }

    /// Removes the entry stored under L2 id `id`, if any.
    pub(crate) fn remove_by_id(&self, id: &EntryId) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = ids.remove(id) {
            self.entries.remove(&any(&key));
        }
    }

    /// Whether an entry of `key` is held, live or not.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(&any(key))
    }

    pub(crate) fn remove(&self, key: &K) {
        self.entries.remove(&any(key));
    }

    /// Entries held, dead ones included until evicted or overwritten.
    #[cfg(feature = "metrics")]
    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64
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
    use crate::clock::MockClock;

    fn k(n: u8) -> u8 {
        n
    }

    #[test]
    fn a_working_set_of_the_capacity_is_kept_whole() {
        for capacity in [1u64, 10, 63, 64, 100, 1_000, 10_000] {
            let l1 = L1::new(capacity, None, None, Clock::System);
            for n in 0..capacity {
                l1.insert(n, None, n, 0, None);
            }
            let kept = (0..capacity).filter(|n| l1.get(n, 0, None).is_some()).count();
            assert_eq!(kept as u64, capacity, "capacity {capacity}");
        }
    }

    #[test]
    fn stores_and_removes() {
        let l1 = L1::new(10, None, None, Clock::System);
        l1.insert(k(1), None, "a", 0, None);
        assert_eq!(l1.get(&k(1), 0, None), Some("a"));
        assert_eq!(l1.get(&k(2), 0, None), None);
        l1.remove(&k(1));
        assert_eq!(l1.get(&k(1), 0, None), None);
    }

    #[test]
    fn an_entry_of_an_older_epoch_is_dead() {
        let l1 = L1::new(10, None, None, Clock::System);
        l1.insert(k(1), None, "a", 3, None);
        assert_eq!(l1.get(&k(1), 4, None), None);
    }

    #[test]
    fn an_entry_dies_with_its_l2_row_or_its_ttl() {
        let l1 = L1::new(10, Some(Duration::from_secs(60)), None, Clock::System);
        l1.insert(k(1), None, "short", 0, Some(Duration::ZERO));
        l1.insert(k(2), None, "long", 0, Some(Duration::from_secs(3600)));
        assert_eq!(l1.get(&k(1), 0, None), None);
        assert_eq!(l1.get(&k(2), 0, None), Some("long"));

        let (clock, mock) = MockClock::new();
        let l1 = L1::new(10, Some(Duration::from_millis(10)), None, mock);
        l1.insert(k(1), None, "a", 0, None);
        clock.advance(Duration::from_millis(9));
        assert_eq!(l1.get(&k(1), 0, None), Some("a"));
        clock.advance(Duration::from_millis(1));
        assert_eq!(l1.get(&k(1), 0, None), None);
    }

    #[test]
    fn entries_stored_with_an_id_can_be_removed_by_it_and_the_index_is_pruned() {
        let l1 = L1::new(2, None, None, Clock::System);
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
        let (clock, mock) = MockClock::new();
        let l1 = L1::new(10, None, None, mock);
        l1.insert(k(1), None, "a", 0, None);
        clock.advance(Duration::from_millis(5));
        assert_eq!(l1.get(&k(1), 0, Some(Duration::from_millis(5))), Some("a"));
        assert_eq!(l1.get(&k(1), 0, Some(Duration::from_millis(4))), None);
    }
}
