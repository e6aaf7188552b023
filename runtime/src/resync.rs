//! What a reconnected listener evicts: what was invalidated while it could not hear, as L2 tells it.
//!
//! Notices are delivered in the order their transactions committed, so once the listener hears
//! its own probe, sent at server time `t`, it has heard every notice committed before that
//! probe. After a loss, what it may have missed is therefore in L2 with a later timestamp:
//! rows an invalidation or a refresh changed (`updated_at` is the changing transaction's
//! start, so [`MARGIN`] covers one that started before `t` and committed after it), and the
//! functions whose invalidate-all epoch moved since that probe read the epochs (one moved
//! while the listener was connected may be cleared once more). Those are evicted;
//! the rest of L1 stays. Whatever L2 cannot vouch for clears every L1, as a first connection
//! does: no earlier state, a lookup that found too much, an outage long enough for tombstones
//! to be swept, or a restarted server whose UNLOGGED table lost them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::backend::TOMBSTONE_LIFETIME;

/// How long before the last probe heard the lookup starts: the longest an invalidating
/// statement may take from its start (its `updated_at`) to its commit (lock waits included)
/// and still be found.
pub(crate) const MARGIN: Duration = Duration::from_secs(30);

/// The most changed rows a reconnection evicts one by one; past it, every L1 is cleared.
pub(crate) const MAX_ROWS: i64 = 10_000;

/// The server as a probe of the listener read it (see `probe`), its epochs read before the
/// probe committed: every change made before it was heard once the probe is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Server {
    /// The probe's start by the server's clock.
    pub(crate) now: SystemTime,
    /// When the server started: a restart after a crash empties an UNLOGGED table.
    pub(crate) started: SystemTime,
    pub(crate) unlogged: bool,
    /// The namespace's invalidate-all epochs, by function.
    pub(crate) epochs: HashMap<String, i64>,
}

/// What a reconnection evicts.
#[derive(Debug, PartialEq)]
pub(crate) enum Plan {
    /// Every L1 of an L2-backed function, for this reason.
    ClearAll(&'static str),
    /// The functions whose epoch moved, and the rows changed since `since`.
    Evict {
        since: SystemTime,
        functions: Vec<String>,
    },
}

/// What to evict on reconnecting, given `before`, the last probe heard before the loss, and
/// `server`, the first probe heard since.
pub(crate) fn plan(before: Option<&Server>, server: &Server) -> Plan {
    let Some(before) = before else {
        return Plan::ClearAll("nothing is known of the time before");
    };
    if server.unlogged && server.started != before.started {
        return Plan::ClearAll("the server restarted, which may have emptied the UNLOGGED table");
    }
    let since = before.now - MARGIN;
    // The tombstones of the whole outage must still be there (the sweeper takes them once
    // expired; the half keeps a margin for clocks and sweeps in progress).
    let away = server.now.duration_since(since).unwrap_or_default();
    if away > TOMBSTONE_LIFETIME / 2 {
        return Plan::ClearAll("the listener was away longer than tombstones are sure to last");
    }
    let mut functions: Vec<String> = server
        .epochs
        .iter()
        .filter(|(function, epoch)| before.epochs.get(*function) != Some(epoch))
        .map(|(function, _)| function.clone())
        .collect();
    functions.sort();
    Plan::Evict { since, functions }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    fn server(now: u64, epochs: &[(&str, i64)]) -> Server {
        Server {
            now: at(now),
            started: at(0),
            unlogged: false,
            epochs: epochs.iter().map(|(f, e)| (f.to_string(), *e)).collect(),
        }
    }

    #[test]
    fn rows_changed_since_the_last_probe_heard_less_the_margin_and_moved_epochs_are_evicted() {
        let before = server(100, &[("f", 1), ("g", 4)]);
        let now = server(120, &[("f", 1), ("g", 5), ("h", 1)]);
        assert_eq!(
            plan(Some(&before), &now),
            Plan::Evict {
                since: at(100) - MARGIN,
                functions: vec!["g".to_owned(), "h".to_owned()],
            }
        );
    }

    #[test]
    fn without_a_baseline_or_after_a_long_outage_everything_is_cleared() {
        let now = server(1000, &[]);
        assert!(matches!(plan(None, &now), Plan::ClearAll(_)));
        let long_ago = server(1000 - TOMBSTONE_LIFETIME.as_secs() / 2, &[]);
        assert!(matches!(plan(Some(&long_ago), &now), Plan::ClearAll(_)));
        let recent = server(1000 - TOMBSTONE_LIFETIME.as_secs() / 2 + MARGIN.as_secs(), &[]);
        assert!(matches!(plan(Some(&recent), &now), Plan::Evict { .. }));
    }

    #[test]
    fn a_restart_clears_everything_only_if_the_table_is_unlogged() {
        let before = server(100, &[]);
        let mut restarted = server(120, &[]);
        restarted.started = at(110);
        assert!(matches!(plan(Some(&before), &restarted), Plan::Evict { .. }));
        restarted.unlogged = true;
        assert!(matches!(plan(Some(&before), &restarted), Plan::ClearAll(_)));
    }
}
