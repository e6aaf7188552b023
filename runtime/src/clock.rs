//! Time, read through a clock that tests can hold still and move: L1 expiry, the breaker's
//! cool-downs, retry backoff and the staleness cap all read it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[cfg(test)]
use std::sync::{
    atomic::{AtomicU64, Ordering::SeqCst},
    Arc,
};

/// The clock of one process: the system's monotonic clock, or (in unit tests) a mock that
/// moves only when told to, as moka's `Clock::mock` does.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    System,
    #[cfg(test)]
    Mock(Arc<MockClock>),
}

impl Clock {
    /// Now.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            #[cfg(test)]
            Clock::Mock(mock) => mock.origin + mock.elapsed(),
        }
    }

    /// Now, in nanoseconds from a fixed origin: two `u64`s take less room in an L1 entry than
    /// two `Instant`s (585 years fit).
    // Out of line: inlined into L1's key comparison, it made that comparison too big to be
    // inlined into quick_cache's lookup, costing every hit a call (BENCHMARKS.md, issue 9).
    #[inline(never)]
    pub(crate) fn ticks(&self) -> u64 {
        match self {
            Clock::System => {
                static START: OnceLock<Instant> = OnceLock::new();
                let start = *START.get_or_init(Instant::now);
                nanos(start.elapsed())
            }
            #[cfg(test)]
            Clock::Mock(mock) => nanos(mock.elapsed()),
        }
    }

    /// Waits `duration`. A mock clock does not wait: it moves forward by `duration` at once,
    /// so a test of retries sees their backoff add up without sleeping.
    pub(crate) async fn sleep(&self, duration: Duration) {
        match self {
            Clock::System => tokio::time::sleep(duration).await,
            #[cfg(test)]
            Clock::Mock(mock) => mock.advance(duration),
        }
    }
}

/// `duration` in nanoseconds, saturating.
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A clock that stands still until [`MockClock::advance`] moves it.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct MockClock {
    origin: Instant,
    elapsed_nanos: AtomicU64,
}

#[cfg(test)]
impl MockClock {
    /// A mock clock, and the [`Clock`] that reads it.
    pub(crate) fn new() -> (Arc<MockClock>, Clock) {
        let mock = Arc::new(MockClock {
            origin: Instant::now(),
            elapsed_nanos: AtomicU64::new(0),
        });
        (mock.clone(), Clock::Mock(mock))
    }

    pub(crate) fn advance(&self, duration: Duration) {
        self.elapsed_nanos.fetch_add(nanos(duration), SeqCst);
    }

    /// How far the clock has moved since it was made.
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_nanos.load(SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mock_clock_moves_only_when_advanced_or_slept_on() {
        let (mock, clock) = MockClock::new();
        let (before, ticks) = (clock.now(), clock.ticks());
        assert_eq!(clock.now(), before);
        mock.advance(Duration::from_secs(3));
        clock.sleep(Duration::from_secs(2)).await;
        assert_eq!(clock.now() - before, Duration::from_secs(5));
        assert_eq!(clock.ticks() - ticks, 5_000_000_000);
    }
}
