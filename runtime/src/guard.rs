//! The bounds of every L2 operation: a timeout (waiting for a connection included), and the
//! circuit breaker that skips L2 after repeated failures.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Entry, EntryId, Lease, Observed, Op, Row, L2};
use crate::breaker::Breaker;
use crate::error::BackendError;
use crate::tags::TagHash;

/// An L2 whose operations each take at most `timeout` and are skipped while the breaker is
/// open. The call path reaches L2 only through it.
pub(crate) struct Guarded {
    inner: Arc<dyn L2>,
    breaker: Breaker,
    timeout: Duration,
    /// Where L2 is (`host:port/database`), for errors.
    target: String,
}

impl Guarded {
    pub(crate) fn new(inner: Arc<dyn L2>, breaker: Breaker, timeout: Duration, target: String) -> Self {
        Guarded {
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
        self.run("read", self.inner.read(entry, known_epoch)).await
    }

    pub(crate) async fn write(
        &self,
        entry: &Entry<'_>,
        value: &[u8],
        ttl: Option<Duration>,
        observed: Observed,
    ) -> Result<bool, BackendError> {
        self.run("write", self.inner.write(entry, value, ttl, observed))
            .await
    }

    pub(crate) async fn overwrite(
        &self,
        entry: &Entry<'_>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.run("refresh", self.inner.overwrite(entry, value, ttl)).await
    }

    pub(crate) async fn invalidate(&self, entry: &Entry<'_>) -> Result<(), BackendError> {
        self.run("invalidate", self.inner.invalidate(entry)).await
    }

    pub(crate) async fn invalidate_tag(&self, tag: &TagHash) -> Result<(), BackendError> {
        self.run("invalidate_tag", self.inner.invalidate_tag(tag)).await
    }

    pub(crate) async fn clear_all(&self) -> Result<(), BackendError> {
        self.run("clear_all", self.inner.clear_all()).await
    }

    pub(crate) async fn invalidate_all(&self, function: &str) -> Result<(), BackendError> {
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
