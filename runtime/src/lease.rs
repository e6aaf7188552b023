//! `stampede = "fleet"`: one process computes a key L2 lacks while the others wait for its value in L2, bounded by a lease.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{EntryId, Lease};
use crate::clock::Clock;
use crate::policy::{self, BackendFailureMode};
use crate::process::Installed;
use crate::stats::FnStats;

/// The first pause of a waiting process between two looks at L2; each pause doubles, up to
/// [`LONGEST_PAUSE`], so a fast body is seen soon and a slow one is not polled hard.
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const LONGEST_PAUSE: Duration = Duration::from_millis(250);

/// The fleet-wide single-flight of one function.
#[derive(Debug)]
pub(crate) struct Fleet {
    /// How long a lease lasts: how long other processes wait for a leader that died.
    lease: Duration,
    /// Set once the lease table turned out to be unusable; the function then computes per
    /// process.
    unusable: AtomicBool,
}

/// What a process does about a key that L2 has no fresh value for.
pub(crate) enum Turn<T> {
    /// Computes it, holding the key's lease (let go when dropped), or without one when none
    /// could be had (L2 failed, no lease table, the wait ran out).
    Lead(Option<Held>),
    /// A look at L2 ended the wait: another process's value arrived, or the failure to answer with.
    Done(T),
}

/// What one look at L2 found.
pub(crate) enum Look<T> {
    /// Nothing fresh yet.
    Nothing,
    /// L2 did not answer: this process computes.
    Failed,
    /// What ends the wait.
    Done(T),
}

/// What L2 and the environment a turn needs.
pub(crate) struct Ground<'a> {
    pub(crate) installed: &'a Arc<Installed>,
    pub(crate) id: &'a EntryId,
    pub(crate) name: &'a str,
    pub(crate) stats: &'a FnStats,
    pub(crate) clock: &'a Clock,
}

impl Fleet {
    pub(crate) fn new(lease: Duration) -> Self {
        Fleet {
            lease,
            unusable: AtomicBool::new(false),
        }
    }

    /// After L2 had nothing fresh for a key: takes its lease and leads, or waits for the
    /// holder's value, looking at L2 with `look` after growing, jittered pauses and trying
    /// the lease again after each look (the holder lets go once it stored its value or
    /// failed). A waiter computes itself without the lease as soon as L2 fails, or once twice
    /// the lease passed: the lease it found, then the one a waiter took over.
    pub(crate) async fn turn<T, F, Fut>(&self, ground: Ground<'_>, mut look: F) -> Turn<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Look<T>>,
    {
        if self.unusable.load(Relaxed) {
            return Turn::Lead(None);
        }
        let give_up = Instant::now() + self.lease * 2;
        let mut pause = FIRST_PAUSE;
        let mut waited = false;
        loop {
            match self.take(&ground).await {
                Took::Taken(held) => {
                    // The holder before may have stored its value and let go since the look.
                    return match look().await {
                        Look::Done(found) => Turn::Done(found),
                        Look::Nothing | Look::Failed => Turn::Lead(Some(held)),
                    };
                }
                Took::Failed => return Turn::Lead(None),
                Took::Held => {}
            }
            let now = Instant::now();
            if now >= give_up {
                return Turn::Lead(None);
            }
            if !waited {
                waited = true;
                ground.stats.fleet_wait();
                tracing::debug!(
                    cache = ground.name,
                    "tiered: another process computes this key; waiting for its value"
                );
            }
            // 75–125 %: waiters that started together do not look together.
            let jittered = pause.mul_f64(0.75 + fastrand::f64() / 2.0);
            tokio::time::sleep_until((now + jittered).min(give_up)).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
            match look().await {
                Look::Nothing => {}
                Look::Failed => return Turn::Lead(None),
                Look::Done(found) => return Turn::Done(found),
            }
        }
    }

    /// One attempt at the key's lease, under a name of its own.
    async fn take(&self, ground: &Ground<'_>) -> Took {
        let holder = fastrand::i64(..);
        let l2 = &ground.installed.l2;
        // One attempt, counted as every L2 operation is; a failure means computing here.
        let taken = policy::run(
            BackendFailureMode::L1Only,
            ground.installed.backoff,
            ground.clock,
            ground.stats,
            ground.name,
            || l2.take_lease(ground.id, holder, self.lease),
        )
        .await;
        match taken {
            Ok(Lease::Taken) => Took::Taken(Held {
                installed: ground.installed.clone(),
                id: *ground.id,
                holder,
            }),
            Ok(Lease::Held) => Took::Held,
            Ok(Lease::Unusable(reason)) => {
                if !self.unusable.swap(true, Relaxed) {
                    tracing::warn!(
                        cache = ground.name,
                        %reason,
                        "tiered: stampede = \"fleet\" cannot use the table <table>_leases; this function \
                         computes per process until restarted: create it with the DDL of \
                         RuntimeBuilder::schema_sql() and grant SELECT, INSERT, UPDATE, DELETE on it"
                    );
                }
                Took::Failed
            }
            Err(err) => {
                tracing::debug!(cache = ground.name, %err, "tiered: no lease; computing in this process");
                Took::Failed
            }
        }
    }
}

/// What one attempt at a lease gave.
enum Took {
    Taken(Held),
    Held,
    Failed,
}

/// A lease this process holds on computing an entry. Dropping it lets go, in the background
/// and at best effort: a lease that is not let go expires.
pub(crate) struct Held {
    installed: Arc<Installed>,
    id: EntryId,
    holder: i64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (installed, id, holder) = (self.installed.clone(), self.id, self.holder);
        self.installed.tasks.spawn_on(
            async move {
                if let Err(err) = installed.l2.release_lease(&id, holder).await {
                    tracing::debug!(%err, "tiered: a lease could not be let go; it expires");
                }
            },
            &runtime,
        );
    }
}
