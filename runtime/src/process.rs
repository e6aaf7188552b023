//! What every cache of a process shares: the installed L2, whether the invalidation listener
//! is connected, the clock, and the registry of caches.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{entry_id, EntryId};
use crate::clock::{nanos, Clock};
use crate::error::BackendError;
use crate::guard::Guarded;
use crate::policy::Backoff;
use crate::registry::{Registry, REGISTRY};

/// This process's shared state; unit tests make others (one per simulated process).
pub(crate) static PROCESS: Process = Process::new(Clock::System, &REGISTRY);

/// The shared state of one process.
pub(crate) struct Process {
    installed: RwLock<Option<Arc<Installed>>>,
    pub(crate) listener: ListenerState,
    pub(crate) clock: Clock,
    pub(crate) registry: &'static Registry,
}

/// An installed L2 and the background work that depends on it.
pub(crate) struct Installed {
    pub(crate) l2: Guarded,
    /// Isolates this application's entries in a shared store; part of every entry id.
    pub(crate) namespace: String,
    pub(crate) backoff: Backoff,
    /// Write-behind tasks, the listener and the sweeper, awaited by `shutdown`.
    pub(crate) tasks: TaskTracker,
    /// Stops the listener and the sweeper.
    pub(crate) stop: CancellationToken,
}

impl Installed {
    pub(crate) fn new(l2: Guarded, namespace: String, backoff: Backoff) -> Self {
        Installed {
            l2,
            namespace,
            backoff,
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    pub(crate) fn entry_id(&self, function: &str, version: u32, key: &[u8]) -> EntryId {
        entry_id(&self.namespace, function, version, key)
    }
}

impl Process {
    pub(crate) const fn new(clock: Clock, registry: &'static Registry) -> Self {
        Process {
            installed: RwLock::new(None),
            listener: ListenerState::new(),
            clock,
            registry,
        }
    }

    /// A process of its own for a unit test, with its own registry and clock.
    #[cfg(test)]
    pub(crate) fn for_test(clock: Clock) -> &'static Process {
        Box::leak(Box::new(Process::new(
            clock,
            Box::leak(Box::new(Registry::new())),
        )))
    }

    /// The installed L2, if any. Taken on the miss path only, never on an L1 hit.
    pub(crate) fn installed(&self) -> Option<Arc<Installed>> {
        self.installed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn install(&self, installed: Arc<Installed>) -> Result<(), BackendError> {
        let mut slot = self.installed.write().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return Err(BackendError::AlreadyInstalled);
        }
        *slot = Some(installed);
        Ok(())
    }

    pub(crate) fn uninstall(&self) -> Option<Arc<Installed>> {
        self.installed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

const NOT_LISTENING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Whether the process hears other processes' invalidations, and what that means for L1.
pub(crate) struct ListenerState {
    state: AtomicU8,
    staleness_bound_nanos: AtomicU64,
    /// How many times the connection was lost.
    losses: AtomicU64,
}

impl ListenerState {
    const fn new() -> Self {
        ListenerState {
            state: AtomicU8::new(NOT_LISTENING),
            staleness_bound_nanos: AtomicU64::new(0),
            losses: AtomicU64::new(0),
        }
    }

    /// Whether the listener is connected, so invalidations made by other processes reach this one.
    pub(crate) fn listening(&self) -> bool {
        self.state.load(Relaxed) == UP
    }

    /// How many times the connection was lost so far: a computation that read L2 before a
    /// loss may have missed notices (and, after a server crash, lost tombstones).
    pub(crate) fn losses(&self) -> u64 {
        self.losses.load(SeqCst)
    }

    /// While an installed listener is down, the age past which an L1 entry of an L2-backed
    /// function is no longer served (it may have been invalidated elsewhere meanwhile).
    #[inline]
    pub(crate) fn staleness_cap(&self) -> Option<Duration> {
        match self.state.load(Relaxed) {
            DOWN => Some(Duration::from_nanos(self.staleness_bound_nanos.load(Relaxed))),
            _ => None,
        }
    }

    /// A listener starts (disconnected) with this bound on L1 staleness.
    pub(crate) fn start(&self, staleness_bound: Duration) {
        self.staleness_bound_nanos.store(nanos(staleness_bound), Relaxed);
        self.state.store(DOWN, SeqCst);
    }

    pub(crate) fn connected(&self) {
        self.state.store(UP, SeqCst);
    }

    /// Returns whether it was connected.
    pub(crate) fn disconnected(&self) -> bool {
        let was_up = self.state.swap(DOWN, SeqCst) == UP;
        if was_up {
            self.losses.fetch_add(1, SeqCst);
        }
        was_up
    }

    pub(crate) fn stopped(&self) {
        self.state.store(NOT_LISTENING, SeqCst);
    }
}
