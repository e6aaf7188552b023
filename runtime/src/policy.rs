//! The failure policy: what a cached function does when an L2 operation fails.

use std::future::Future;
use std::time::Duration;

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

/// Runs `op` under `mode`: once, or up to `attempts` times while its error is retryable.
/// Returns the last error when every attempt failed; the caller then applies the mode.
pub(crate) async fn run<T, F, Fut>(
    mode: BackendFailureMode,
    backoff: Backoff,
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
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
