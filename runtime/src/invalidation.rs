//! Invalidation epochs: per-key and per-function counters that keep results computed before
//! an invalidation out of L1.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::key::KeyBytes;

const STRIPES: usize = 64;

/// The epoch stripe of a key: FNV-1a of its bytes, the same in every process and build, so a
/// notice from another process names the stripe to bump.
pub(crate) fn stripe_of(key: &KeyBytes) -> usize {
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % STRIPES as u64) as usize
}

/// Epochs of one function. A computation notes them before it reads L2 and stores its result
/// in L1 only if no invalidation of its key (or of the whole function) happened meanwhile.
///
/// Keys share 64 stripes, so an invalidation may also refuse the store of an unrelated key
/// in its stripe: a missed fill, never a stale one. The stripe locks are taken only on the
/// miss and invalidation paths, never on an L1 hit, and never across an `.await`.
pub(crate) struct Epochs {
    all: AtomicU64,
    stripes: [Mutex<u64>; STRIPES],
    /// The function's invalidate-all epoch in L2, with the local `all` it was read under.
    l2: Mutex<Option<(u64, i64)>>,
}

/// The epochs one computation of a key started under, and the key's stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) all: u64,
    /// Which stripe, and its epoch then.
    stripe: usize,
    stripe_epoch: u64,
}

impl Epochs {
    pub(crate) fn new() -> Self {
        Epochs {
            all: AtomicU64::new(0),
            stripes: std::array::from_fn(|_| Mutex::new(0)),
            l2: Mutex::new(None),
        }
    }

    /// The invalidate-all epoch; L1 entries of another epoch are dead.
    #[inline]
    pub(crate) fn all(&self) -> u64 {
        self.all.load(SeqCst)
    }

    fn stripe(&self, stripe: usize) -> MutexGuard<'_, u64> {
        // The guarded data is a counter, valid whatever a panicking holder did.
        self.stripes[stripe % STRIPES]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self, stripe: usize) -> Snapshot {
        let stripe_epoch = *self.stripe(stripe);
        Snapshot {
            all: self.all(),
            stripe,
            stripe_epoch,
        }
    }

    /// Runs `store` (an L1 insert) only if the stripe was not invalidated since `snapshot`,
    /// atomically with respect to [`Epochs::invalidate`]. Returns whether it ran.
    pub(crate) fn store_if_current(&self, snapshot: Snapshot, store: impl FnOnce()) -> bool {
        let stripe = self.stripe(snapshot.stripe);
        let current = *stripe == snapshot.stripe_epoch && self.all() == snapshot.all;
        if current {
            store();
        }
        current
    }

    /// Marks the stripe invalidated and runs `evict` (L1 removal) under the same lock, so no
    /// computation of its keys that started earlier can store after it.
    pub(crate) fn invalidate(&self, stripe: usize, evict: impl FnOnce()) {
        let mut stripe = self.stripe(stripe);
        *stripe += 1;
        evict();
    }

    /// [`Epochs::invalidate`] for keys whose stripes are not known: marks every stripe
    /// invalidated (L1 entries stay, computations that started earlier cannot store), and
    /// runs `evict` under every stripe's lock.
    pub(crate) fn invalidate_every_stripe(&self, evict: impl FnOnce()) {
        // In index order, as no other holder takes two.
        let mut stripes: Vec<MutexGuard<'_, u64>> = (0..STRIPES).map(|stripe| self.stripe(stripe)).collect();
        for stripe in &mut stripes {
            **stripe += 1;
        }
        evict();
    }

    /// Marks every key of the function invalidated. L1 entries carry the epoch they were
    /// stored in, so this alone makes them unreadable.
    pub(crate) fn invalidate_all(&self) {
        self.all.fetch_add(1, SeqCst);
    }

    /// The function's invalidate-all epoch in L2 as this process last read it, if no
    /// invalidate-all happened here since: every one, made here or heard of from another
    /// process (and every reconnection of the listener), bumps `all`. Knowing it, an L2 read
    /// is a plain primary-key lookup whose row is checked here.
    pub(crate) fn l2_epoch(&self) -> Option<i64> {
        let learned = *self.l2.lock().unwrap_or_else(PoisonError::into_inner);
        learned
            .filter(|&(all, _)| all == self.all())
            .map(|(_, epoch)| epoch)
    }

    /// Records the L2 epoch `epoch`, read while the local epoch was `all`.
    pub(crate) fn learn_l2_epoch(&self, all: u64, epoch: i64) {
        *self.l2.lock().unwrap_or_else(PoisonError::into_inner) = Some((all, epoch));
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
        let stripe = stripe_of(&k(1));
        let before = epochs.snapshot(stripe);
        epochs.invalidate(stripe, || {});
        assert!(!epochs.store_if_current(before, || panic!("stored a stale value")));
        let after = epochs.snapshot(stripe);
        assert!(epochs.store_if_current(after, || {}));
    }

    #[test]
    fn a_store_after_invalidate_all_is_refused() {
        let epochs = Epochs::new();
        let before = epochs.snapshot(stripe_of(&k(1)));
        epochs.invalidate_all();
        assert!(!epochs.store_if_current(before, || panic!("stored a stale value")));
    }

    #[test]
    fn stripes_are_stable_across_processes_and_spread_keys() {
        assert_eq!(
            stripe_of(&KeyBytes::from_slice(b"")),
            0xcbf2_9ce4_8422_2325_u64 as usize % STRIPES
        );
        let used: std::collections::HashSet<usize> = (0..=255).map(|n| stripe_of(&k(n))).collect();
        assert!(used.len() > STRIPES / 2);
    }
}
