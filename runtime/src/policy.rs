//! The failure policy: what a cached function does when an L2 operation fails: retry it,
//! absorb the error (log it, carry on with L1) or hand it to the caller.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::clock::{nanos, Clock};
use crate::error::BackendError;
use crate::stats::FnStats;

/// How a cached function handles a failing L2 backend.
///
/// It applies to every operation that touches L2: the read on an L1 miss, the write after
/// computing, and invalidation.
///
/// ```
/// use tiered::BackendFailureMode;
/// assert_eq!(BackendFailureMode::default(), BackendFailureMode::L1Only);
/// assert_eq!(BackendFailureMode::Retry { attempts: 3 }.attempts(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendFailureMode {
    /// Log the error (`tracing::warn!`) and carry on with L1 alone. The call succeeds even
    /// when PostgreSQL is down or was never configured.
    #[default]
    L1Only,
    /// The error reaches the caller: the function returns `Err(E::from(BackendError))` and
    /// `invalidate_*` return `Err(BackendError)`.
    Error,
    /// Up to `attempts` attempts in total (the first included) for a retryable error, with
    /// capped exponential backoff plus 0–25 % jitter; then the `L1Only` behaviour.
    Retry {
        /// Total attempts, the first included (1 to 255).
        attempts: u8,
    },
}

impl BackendFailureMode {
    /// How many times an L2 operation is tried in total under this mode.
    pub fn attempts(self) -> u8 {
        match self {
            BackendFailureMode::Retry { attempts } => attempts.max(1),
            BackendFailureMode::L1Only | BackendFailureMode::Error => 1,
        }
    }

    /// Whether a backend error reaches the caller.
    pub fn propagates(self) -> bool {
        self == BackendFailureMode::Error
    }
}

/// A function's failure policy as the attribute gives it: its mode and, under `Error`, how a
/// backend error becomes the function's output `R` (so the mode is written once, and
/// `E: From<BackendError>` is required only where it is used).
pub enum OnFailure<R> {
    /// [`BackendFailureMode::L1Only`].
    L1Only,
    /// [`BackendFailureMode::Retry`].
    Retry {
        /// Total attempts, the first included.
        attempts: u8,
    },
    /// [`BackendFailureMode::Error`], with the conversion into the function's output
    /// ([`escalate`]).
    Error(fn(BackendError) -> R),
}

impl<R> Clone for OnFailure<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for OnFailure<R> {}

impl<R> std::fmt::Debug for OnFailure<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.mode().fmt(f)
    }
}

/// `on_failure = "error"`: a backend error as the function's `Err`. Its bound is the one the
/// attribute requires of the error type, so a missing `From` is one error, at that type.
pub fn escalate<V, E: From<BackendError>>(err: BackendError) -> Result<V, E> {
    Err(E::from(err))
}

impl<R> OnFailure<R> {
    /// The mode, as users name it.
    pub fn mode(&self) -> BackendFailureMode {
        match *self {
            OnFailure::L1Only => BackendFailureMode::L1Only,
            OnFailure::Retry { attempts } => BackendFailureMode::Retry { attempts },
            OnFailure::Error(_) => BackendFailureMode::Error,
        }
    }

    /// What the result of an L2 operation of the call path becomes: `Ok` if it succeeded or
    /// its error is absorbed (logged), `Err(output)` if the error goes to the caller.
    pub(crate) fn settle(
        &self,
        log: &ErrorLog,
        operation: &str,
        result: Result<(), BackendError>,
    ) -> Result<(), R> {
        self.escalated(log, operation, result)
            .map_err(|(escalate, err)| escalate(err))
    }

    /// [`OnFailure::settle`] for `invalidate_*`, which return the backend error itself.
    pub(crate) fn settle_helper(
        &self,
        log: &ErrorLog,
        operation: &str,
        result: Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        self.escalated(log, operation, result).map_err(|(_, err)| err)
    }

    /// The one place the mode decides: an error goes to the caller (with the conversion into
    /// the function's output) under `Error`, and is logged and absorbed otherwise.
    fn escalated(
        &self,
        log: &ErrorLog,
        operation: &str,
        result: Result<(), BackendError>,
    ) -> Result<(), Escalated<R>> {
        let Err(err) = result else { return Ok(()) };
        match *self {
            OnFailure::Error(escalate) => Err((escalate, err)),
            OnFailure::L1Only | OnFailure::Retry { .. } => {
                log.absorbed(operation, &err);
                Ok(())
            }
        }
    }
}

/// An error the mode hands to the caller, and how it becomes the function's output.
type Escalated<R> = (fn(BackendError) -> R, BackendError);

/// `NotConfigured` is logged once per process: it is a set-up choice, not an incident.
static WARNED_NOT_CONFIGURED: AtomicBool = AtomicBool::new(false);

/// The log of one cache's absorbed backend errors (or, with [`ErrorLog::due`] alone, of its
/// body's failures): at most one line per [`ErrorLog::PERIOD`],
/// with a count of the ones not logged. An open breaker is not logged per call at all: the
/// breaker logs when it opens and closes.
pub(crate) struct ErrorLog {
    cache: &'static str,
    clock: Clock,
    /// In clock ticks; 0: log the next one.
    quiet_until: AtomicU64,
    unlogged: AtomicU64,
}

impl ErrorLog {
    const PERIOD: Duration = Duration::from_secs(10);

    pub(crate) fn new(cache: &'static str, clock: Clock) -> Self {
        ErrorLog {
            cache,
            clock,
            quiet_until: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// Logs an error that the policy absorbed (or that no caller waits for).
    pub(crate) fn absorbed(&self, operation: &str, err: &BackendError) {
        match err {
            BackendError::CircuitOpen { .. } => {}
            BackendError::NotConfigured => {
                if !WARNED_NOT_CONFIGURED.swap(true, Relaxed) {
                    tracing::warn!(
                        cache = self.cache,
                        "tiered: {err}; backend = \"pg\" functions run with L1 only"
                    );
                }
            }
            err => {
                let Some(unlogged) = self.due() else { return };
                tracing::warn!(
                    cache = self.cache,
                    operation,
                    error = %err,
                    unlogged,
                    "tiered: L2 unavailable; carrying on with L1 only"
                );
            }
        }
    }

    /// Whether to log now, and how many were not logged since the last time: one line per
    /// period at most.
    pub(crate) fn due(&self) -> Option<u64> {
        let now = self.clock.ticks();
        let quiet_until = self.quiet_until.load(Relaxed);
        let due = now >= quiet_until
            && self
                .quiet_until
                .compare_exchange(
                    quiet_until,
                    now.saturating_add(nanos(Self::PERIOD)),
                    Relaxed,
                    Relaxed,
                )
                .is_ok();
        if !due {
            self.unlogged.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.unlogged.swap(0, Relaxed))
    }
}

/// The backoff between retries: `base * 2^(n-1)`, capped at `max`, plus 0–25 % jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    pub(crate) const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_secs(1),
    };

    /// The pause before retry number `retry` (1 for the first retry).
    pub(crate) fn delay(self, retry: u32) -> Duration {
        let exponential = self
            .base
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(20));
        let capped = exponential.min(self.max);
        capped + capped.mul_f64(fastrand::f64() * 0.25)
    }
}

/// Runs `op` under `mode`: once, or up to `attempts` times while its error is retryable,
/// pausing by `clock`. Returns the last error when every attempt failed; the caller then
/// settles it ([`OnFailure::settle`]).
pub(crate) async fn run<T, F, Fut>(
    mode: BackendFailureMode,
    backoff: Backoff,
    clock: &Clock,
    stats: &FnStats,
    name: &str,
    mut op: F,
) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let attempts = u32::from(mode.attempts());
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(err) => {
                match err {
                    BackendError::CircuitOpen { .. } => stats.short_circuit(),
                    _ => stats.backend_error(),
                }
                if attempt >= attempts || !err.is_retryable() {
                    return Err(err);
                }
                let pause = backoff.delay(attempt);
                tracing::debug!(cache = name, attempt, ?pause, error = %err, "tiered: retrying L2 operation");
                stats.retry();
                clock.sleep(pause).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    #[test]
    fn delay_grows_exponentially_is_capped_and_jittered_by_at_most_a_quarter() {
        let backoff = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        };
        for _ in 0..100 {
            let first = backoff.delay(1);
            let second = backoff.delay(2);
            let capped = backoff.delay(10);
            assert!(first >= Duration::from_millis(10) && first <= Duration::from_micros(12_500));
            assert!(second >= Duration::from_millis(20) && second <= Duration::from_millis(25));
            assert!(capped >= Duration::from_millis(50) && capped <= Duration::from_micros(62_500));
        }
    }

    fn retryable() -> BackendError {
        BackendError::Connect {
            target: "here".into(),
            message: "refused".into(),
            retryable: true,
        }
    }

    async fn count_attempts(mode: BackendFailureMode, err: BackendError) -> (u32, FnStats) {
        let stats = FnStats::default();
        let mut calls = 0;
        let result: Result<(), _> = run(
            mode,
            Backoff {
                base: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
            &MockClock::new().1,
            &stats,
            "t",
            || {
                calls += 1;
                let err = err.clone();
                async move { Err(err) }
            },
        )
        .await;
        assert!(result.is_err());
        (calls, stats)
    }

    #[tokio::test]
    async fn retry_makes_exactly_the_configured_attempts_for_a_retryable_error() {
        let (calls, stats) = count_attempts(BackendFailureMode::Retry { attempts: 4 }, retryable()).await;
        assert_eq!(calls, 4);
        assert_eq!(stats.snapshot().retries, 3);
        assert_eq!(stats.snapshot().backend_errors, 4);
    }

    #[tokio::test]
    async fn a_non_retryable_error_is_tried_once() {
        let (calls, _) = count_attempts(
            BackendFailureMode::Retry { attempts: 4 },
            BackendError::NotConfigured,
        )
        .await;
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn l1_only_and_error_try_once() {
        assert_eq!(count_attempts(BackendFailureMode::L1Only, retryable()).await.0, 1);
        assert_eq!(count_attempts(BackendFailureMode::Error, retryable()).await.0, 1);
    }
}
