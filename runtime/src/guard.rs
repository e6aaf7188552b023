//! The bounds of every L2 operation: a timeout (waiting for a connection included), and the
//! circuit breaker that skips L2 after repeated failures; and the replay of owed invalidations.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Entry, EntryId, Lease, Observed, Op, Row, L2};
use crate::breaker::Breaker;
use crate::error::BackendError;
use crate::pending::{Owed, Pending};
use crate::stats::FnStats;
use crate::tags::TagHash;

/// An L2 whose operations each take at most `timeout` and are skipped while the breaker is
/// open. The call path reaches L2 only through it.
///
/// A function that owes invalidations (see `pending`) reaches L2 only after they are replayed:
/// none of its reads may find, and none of its writes may store over, a row that an
/// invalidation this process returned from should have killed.
pub(crate) struct Guarded {
    inner: Arc<dyn L2>,
    breaker: Breaker,
    timeout: Duration,
    /// Where L2 is (`host:port/database`), for errors.
    target: String,
    pending: Pending,
    /// One replay at a time, holding the last one's error (`None`: it paid everything).
    replaying: tokio::sync::Mutex<Option<BackendError>>,
    /// Replays started so far.
    replays: AtomicU64,
}

impl Guarded {
    pub(crate) fn new(inner: Arc<dyn L2>, breaker: Breaker, timeout: Duration, target: String) -> Self {
        Guarded {
            pending: Pending::new(breaker.clock().clone()),
            replaying: tokio::sync::Mutex::new(None),
            replays: AtomicU64::new(0),
            inner,
            breaker,
            timeout,
            target,
        }
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub(crate) fn close(&self) {
        self.inner.close();
    }

    pub(crate) async fn read(
        &self,
        entry: &Entry<'_>,
        known_epoch: Option<i64>,
    ) -> Result<Row, BackendError> {
        self.replay(Some(entry.function)).await?;
        self.run("read", self.inner.read(entry, known_epoch)).await
    }

    pub(crate) async fn write(
        &self,
        entry: &Entry<'_>,
        value: &[u8],
        ttl: Option<Duration>,
        observed: Observed,
    ) -> Result<bool, BackendError> {
        self.replay(Some(entry.function)).await?;
        self.run("write", self.inner.write(entry, value, ttl, observed))
            .await
    }

    pub(crate) async fn overwrite(
        &self,
        entry: &Entry<'_>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.replay(Some(entry.function)).await?;
        self.run("refresh", self.inner.overwrite(entry, value, ttl)).await
    }

    pub(crate) async fn invalidate(&self, entry: &Entry<'_>) -> Result<(), BackendError> {
        self.replay(Some(entry.function)).await?;
        self.run("invalidate", self.inner.invalidate(entry)).await
    }

    pub(crate) async fn invalidate_tag(&self, tag: &TagHash) -> Result<(), BackendError> {
        self.run("invalidate_tag", self.inner.invalidate_tag(tag)).await
    }

    pub(crate) async fn clear_all(&self) -> Result<(), BackendError> {
        self.run("clear_all", self.inner.clear_all()).await
    }

    pub(crate) async fn invalidate_all(&self, function: &str) -> Result<(), BackendError> {
        self.replay(Some(function)).await?;
        self.run("invalidate all", self.inner.invalidate_all(function))
            .await
    }

    pub(crate) async fn take_lease(
        &self,
        id: &EntryId,
        holder: i64,
        length: Duration,
    ) -> Result<Lease, BackendError> {
        self.run("take lease", self.inner.take_lease(id, holder, length))
            .await
    }

    pub(crate) async fn release_lease(&self, id: &EntryId, holder: i64) -> Result<(), BackendError> {
        self.run("release lease", self.inner.release_lease(id, holder))
            .await
    }

    /// Owes L2 `owed`, an invalidation whose L2 step failed with `err`, if L2 could not be
    /// reached (see `pending`); `stats` are its function's. Returns whether the function now
    /// owes an invalidate-all instead, which the caller applies to its L1 too.
    pub(crate) fn owe(&self, owed: Owed, err: &BackendError, stats: &'static FnStats) -> bool {
        crate::pending::owed_after(err) && self.pending.owe(owed, stats)
    }

    /// Whether some function owes L2 an invalidation.
    pub(crate) fn owes(&self) -> bool {
        self.pending.owes(None)
    }

    /// Replays what `function` owes (every function's debts, for `None`).
    /// `Err` if some of it is still owed: L2 did not take it.
    pub(crate) async fn replay(&self, function: Option<&str>) -> Result<(), BackendError> {
        if !self.pending.owes(function) {
            return Ok(());
        }
        let seen = self.replays.load(SeqCst);
        let mut last = self.replaying.lock().await;
        // A replay that started after this caller came and failed answers for it too: callers
        // of a function that owes do not each wait out a failing server in turn. (One that
        // started before may have failed before the server came back.)
        if let Some(err) = last.as_ref() {
            if self.replays.load(SeqCst) > seen && self.pending.owes(function) {
                return Err(err.clone());
            }
        }
        self.replays.fetch_add(1, SeqCst);
        let paid = self.pay(function).await;
        *last = paid.as_ref().err().cloned();
        paid
    }

    /// [`Guarded::replay`]'s work, under its lock.
    async fn pay(&self, function: Option<&str>) -> Result<(), BackendError> {
        for due in self.pending.due(function) {
            let replayed = match due.owed {
                Owed::Key(entry) => self.run("invalidate", self.inner.invalidate(&entry)).await,
                Owed::All(function) => {
                    self.run("invalidate all", self.inner.invalidate_all(function))
                        .await
                }
            };
            match replayed {
                Ok(()) => self.pending.paid(&due, false),
                Err(err) if crate::pending::owed_after(&err) => return Err(err),
                Err(err) => {
                    // The server answered with an error that replaying again would repeat.
                    tracing::warn!(
                        cache = due.owed.function(),
                        %err,
                        "tiered: a queued invalidation cannot be replayed; it is dropped"
                    );
                    self.pending.paid(&due, true);
                }
            }
        }
        Ok(())
    }

    /// The server answers again (the listener reached it): an open breaker probes at the next
    /// operation instead of waiting out its cool-down.
    pub(crate) fn server_back(&self) {
        self.breaker.probe_now();
    }

    /// Runs `attempt` if the breaker admits it, within the timeout, and reports to the breaker
    /// whether the server answered.
    async fn run<T>(&self, operation: &'static str, attempt: Op<'_, T>) -> Result<T, BackendError> {
        let admitted = self
            .breaker
            .admit()
            .map_err(|retry_in| BackendError::CircuitOpen {
                target: self.target.clone(),
                retry_in,
            })?;
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(BackendError::Timeout {
                    operation,
                    target: self.target.clone(),
                    timeout: self.timeout,
                })
            });
        #[cfg(feature = "metrics")]
        crate::measure::l2_operation(operation, started.elapsed());
        // A permanent error (bad SQL, permission) is still an answer from the server.
        admitted.finish(!matches!(&outcome, Err(err) if err.is_retryable()));
        outcome
    }
}
