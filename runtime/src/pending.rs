//! Invalidations whose L2 step failed, owed to L2 until it answers again: queued, deduplicated, bounded.
//!
//! An invalidation is applied to this process's L1 whatever L2 does; under `l1_only`/`retry` it
//! then returns `Ok`. What L2 (and through its notices every other process) did not get is owed
//! here and replayed (see `guard`): before any other L2 operation of that function, and in the
//! background once the listener is back. A function's debts are its keys and at most one
//! invalidate-all, which makes its keys moot. Past [`MAX_KEYS`] keys, a function's keys become one
//! invalidate-all: O(1) to hold and to replay, and it invalidates more, never less.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::backend::{Entry, EntryId};
use crate::clock::{nanos, Clock};
use crate::error::BackendError;
use crate::stats::FnStats;

/// The keys one function may owe before they become an invalidate-all of the function.
pub(crate) const MAX_KEYS: usize = 1024;

/// A function's log lines (first debt, all paid) are at most one pair per period.
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// One invalidation owed to L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owed {
    Key(Entry<'static>),
    All(&'static str),
}

impl Owed {
    pub(crate) fn function(&self) -> &'static str {
        match self {
            Owed::Key(entry) => entry.function,
            Owed::All(function) => function,
        }
    }
}

/// An owed invalidation handed out for replay; [`Pending::paid`] once L2 has it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Due {
    pub(crate) owed: Owed,
    /// When it was (last) owed: paying an older copy does not pay a newer one.
    seq: u64,
}

/// What one function owes, and its counts.
struct Debts {
    stats: &'static FnStats,
    /// An owed invalidate-all, by when it was owed.
    all: Option<u64>,
    keys: HashMap<EntryId, (Entry<'static>, u64)>,
    /// Whether the current debts were announced in the log (then their payment is too).
    announced: bool,
    /// Clock ticks before which the first-debt line is not logged again.
    quiet_until: u64,
}

impl Debts {
    fn is_empty(&self) -> bool {
        self.all.is_none() && self.keys.is_empty()
    }
}

/// The owed invalidations of one process (of its installed L2).
pub(crate) struct Pending {
    functions: Mutex<Table>,
    /// Functions that owe something: the check on every L2 operation costs one load while
    /// nothing is owed.
    owing: AtomicUsize,
    clock: Clock,
}

#[derive(Default)]
struct Table {
    debts: HashMap<&'static str, Debts>,
    seq: u64,
}

/// Whether an invalidation that failed so is owed: L2 could not be reached. A permanent error
/// (a missing privilege, a bad table) would fail again, so it is only logged, as before.
pub(crate) fn owed_after(err: &BackendError) -> bool {
    err.is_retryable() || matches!(err, BackendError::CircuitOpen { .. })
}

impl Pending {
    pub(crate) fn new(clock: Clock) -> Self {
        Pending {
            functions: Mutex::default(),
            owing: AtomicUsize::new(0),
            clock,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Every update leaves the table consistent, even one interrupted by a panic.
        self.functions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `owed`, counted in `stats` (the function's). Returns whether a key owed past the
    /// bound became an invalidate-all of its function, which the caller applies here too (so
    /// this process learns the function's new epoch in L2 rather than trust the old one).
    pub(crate) fn owe(&self, owed: Owed, stats: &'static FnStats) -> bool {
        stats.invalidation_queued();
        let function = owed.function();
        let mut table = self.table();
        table.seq += 1;
        let seq = table.seq;
        let debts = table.debts.entry(function).or_insert_with(|| Debts {
            stats,
            all: None,
            keys: HashMap::new(),
            announced: false,
            quiet_until: 0,
        });
        let first = debts.is_empty();
        let collapsed = match owed {
            Owed::Key(_) if debts.all.is_some() => false,
            Owed::Key(entry) if debts.keys.len() < MAX_KEYS || debts.keys.contains_key(&entry.id) => {
                debts.keys.insert(entry.id, (entry, seq));
                false
            }
            Owed::Key(_) | Owed::All(_) => {
                debts.keys.clear();
                debts.all = Some(seq);
                matches!(owed, Owed::Key(_))
            }
        };
        if !first {
            return collapsed;
        }
        self.owing.fetch_add(1, SeqCst);
        let now = self.clock.ticks();
        debts.announced = now >= debts.quiet_until;
        if debts.announced {
            debts.quiet_until = now.saturating_add(nanos(LOG_PERIOD));
            tracing::warn!(
                cache = function,
                "tiered: an invalidation could not reach L2; it is queued and replayed once L2 \
                 answers (until then other processes may serve the old value)"
            );
        }
        collapsed
    }

    /// Whether `function` (any function, for `None`) owes something.
    pub(crate) fn owes(&self, function: Option<&str>) -> bool {
        if self.owing.load(SeqCst) == 0 {
            return false;
        }
        let table = self.table();
        match function {
            Some(function) => table.debts.get(function).is_some_and(|debts| !debts.is_empty()),
            None => table.debts.values().any(|debts| !debts.is_empty()),
        }
    }

    /// What `function` owes (every function, for `None`), invalidate-alls first.
    pub(crate) fn due(&self, function: Option<&str>) -> Vec<Due> {
        let table = self.table();
        let mut due = Vec::new();
        let owing = table
            .debts
            .iter()
            .filter(|(name, _)| function.is_none_or(|function| **name == function));
        for (name, debts) in owing {
            if let Some(seq) = debts.all {
                due.push(Due {
                    owed: Owed::All(name),
                    seq,
                });
            }
            due.extend(debts.keys.values().map(|&(entry, seq)| Due {
                owed: Owed::Key(entry),
                seq,
            }));
        }
        due
    }

    /// `due` reached L2 (or, if `dropped`, never can): unless it was owed again since, it is
    /// no longer owed.
    pub(crate) fn paid(&self, due: &Due, dropped: bool) {
        let mut table = self.table();
        let function = due.owed.function();
        let Some(debts) = table.debts.get_mut(function) else {
            return;
        };
        let current = match due.owed {
            Owed::All(_) => debts.all == Some(due.seq),
            Owed::Key(entry) => debts.keys.get(&entry.id).is_some_and(|(_, seq)| *seq == due.seq),
        };
        if !current {
            return;
        }
        match due.owed {
            Owed::All(_) => debts.all = None,
            Owed::Key(entry) => {
                debts.keys.remove(&entry.id);
            }
        }
        if !dropped {
            debts.stats.invalidation_replayed();
        }
        if debts.is_empty() {
            self.owing.fetch_sub(1, SeqCst);
            if debts.announced {
                tracing::info!(cache = function, "tiered: every queued invalidation reached L2");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::NO_TAGS;

    fn stats() -> &'static FnStats {
        Box::leak(Box::default())
    }

    fn key(function: &'static str, n: u8) -> Owed {
        Owed::Key(Entry {
            function,
            version: 0,
            id: [n; 32],
            stripe: 0,
            tags: &NO_TAGS,
        })
    }

    fn pay_all(pending: &Pending) {
        for due in pending.due(None) {
            pending.paid(&due, false);
        }
    }

    #[test]
    fn a_key_owed_twice_is_replayed_once_and_counted_twice() {
        let (pending, stats) = (Pending::new(Clock::System), stats());
        assert!(!pending.owes(None));
        assert!(!pending.owe(key("f", 1), stats));
        assert!(!pending.owe(key("f", 1), stats));
        assert!(pending.owes(Some("f")) && !pending.owes(Some("g")));
        assert_eq!(pending.due(Some("f")).len(), 1);
        pay_all(&pending);
        assert!(!pending.owes(None));
        let counts = stats.snapshot();
        assert_eq!(
            (counts.invalidations_queued, counts.invalidations_replayed),
            (2, 1)
        );
    }

    #[test]
    fn an_invalidate_all_makes_the_functions_keys_moot_and_only_its_keys() {
        let pending = Pending::new(Clock::System);
        let (f, g) = (stats(), stats());
        pending.owe(key("f", 1), f);
        pending.owe(key("g", 1), g);
        pending.owe(Owed::All("f"), f);
        pending.owe(key("f", 2), f);
        let due: Vec<Owed> = pending.due(Some("f")).iter().map(|due| due.owed).collect();
        assert_eq!(due, [Owed::All("f")]);
        assert_eq!(pending.due(Some("g")).len(), 1);
    }

    #[test]
    fn past_the_bound_a_functions_keys_become_one_invalidate_all() {
        let (pending, stats) = (Pending::new(Clock::System), stats());
        for n in 0..MAX_KEYS {
            let id = (n as u32).to_le_bytes();
            let mut entry = [0; 32];
            entry[..4].copy_from_slice(&id);
            let owed = Owed::Key(Entry {
                function: "f",
                version: 0,
                id: entry,
                stripe: 0,
                tags: &NO_TAGS,
            });
            assert!(!pending.owe(owed, stats));
        }
        assert_eq!(pending.due(None).len(), MAX_KEYS, "up to the bound, keys");
        assert!(pending.owe(key("f", 0xff), stats), "collapsed");
        assert!(!pending.owe(key("f", 0xfe), stats), "once");
        let due: Vec<Owed> = pending.due(None).iter().map(|due| due.owed).collect();
        assert_eq!(due, [Owed::All("f")]);
    }

    #[test]
    fn paying_an_older_copy_does_not_pay_a_key_owed_again_meanwhile() {
        let (pending, stats) = (Pending::new(Clock::System), stats());
        pending.owe(key("f", 1), stats);
        let replaying = pending.due(None);
        pending.owe(key("f", 1), stats);
        pending.paid(&replaying[0], false);
        assert!(pending.owes(Some("f")), "owed again after its replay started");
        pay_all(&pending);
        assert!(!pending.owes(Some("f")));
    }

    #[test]
    fn a_dropped_debt_is_not_counted_as_replayed() {
        let (pending, stats) = (Pending::new(Clock::System), stats());
        pending.owe(Owed::All("f"), stats);
        pending.paid(&pending.due(None)[0], true);
        assert!(!pending.owes(None));
        assert_eq!(stats.snapshot().invalidations_replayed, 0);
    }
}
