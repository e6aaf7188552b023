//! Circuit breaker: after repeated L2 failures, skip L2 for a growing cool-down, then probe.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BreakerSettings {
    /// Consecutive failed operations that open the breaker.
    pub(crate) threshold: u32,
    /// The first cool-down; each failed probe doubles it, up to `max_cooldown`.
    pub(crate) cooldown: Duration,
    pub(crate) max_cooldown: Duration,
}

impl BreakerSettings {
    pub(crate) const DEFAULT: BreakerSettings = BreakerSettings {
        threshold: 5,
        cooldown: Duration::from_secs(1),
        max_cooldown: Duration::from_secs(30),
    };
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        cooldown: Duration,
    },
    /// One operation is probing the server; the others are still skipped.
    Probing {
        cooldown: Duration,
    },
}

/// The breaker of one installed backend (one server), shared by every function.
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// Permission for one L2 operation; report its outcome with [`Attempt::finish`].
pub(crate) struct Attempt<'a> {
    breaker: &'a Breaker,
    probe: bool,
    finished: bool,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every transition leaves a valid state, even if interrupted by a panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets an operation through, or says how long L2 is still skipped.
    pub(crate) fn admit(&self) -> Result<Attempt<'_>, Duration> {
        let mut state = self.state();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until, cooldown } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                *state = State::Probing { cooldown };
                tracing::info!("tiered: circuit breaker half-open: probing PostgreSQL");
                true
            }
            State::Probing { .. } => return Err(Duration::ZERO),
        };
        Ok(Attempt {
            breaker: self,
            probe,
            finished: false,
        })
    }

    fn record(&self, probe: bool, answered: bool) {
        let mut state = self.state();
        let settings = self.settings;
        *state = match (*state, answered) {
            (State::Probing { .. }, true) => {
                tracing::info!("tiered: circuit breaker closed: PostgreSQL answers again");
                State::Closed { failures: 0 }
            }
            (State::Probing { cooldown }, false) if probe => {
                let cooldown = (cooldown * 2).min(settings.max_cooldown);
                tracing::warn!(
                    ?cooldown,
                    "tiered: circuit breaker probe failed; skipping L2 longer"
                );
                State::Open {
                    until: Instant::now() + cooldown,
                    cooldown,
                }
            }
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 >= settings.threshold => {
                let cooldown = settings.cooldown;
                tracing::warn!(
                    failures = failures + 1,
                    ?cooldown,
                    "tiered: circuit breaker open: skipping L2 after consecutive failures"
                );
                State::Open {
                    until: Instant::now() + cooldown,
                    cooldown,
                }
            }
            (State::Closed { failures }, false) => State::Closed {
                failures: failures + 1,
            },
            // An operation admitted before the breaker opened finished late: the state stands.
            (other, _) => other,
        };
    }
}

impl Attempt<'_> {
    /// Records whether the server answered (a SQL error is an answer; a refused, dropped or
    /// timed-out connection is not).
    pub(crate) fn finish(mut self, answered: bool) {
        self.finished = true;
        self.breaker.record(self.probe, answered);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        // A probe cancelled before it finished must not leave the breaker probing forever.
        if self.probe && !self.finished {
            self.breaker.record(true, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(BreakerSettings {
            threshold,
            cooldown: Duration::from_millis(20),
            max_cooldown: Duration::from_millis(50),
        })
    }

    fn fail(breaker: &Breaker) {
        breaker.admit().expect("admitted").finish(false);
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures_only() {
        let b = breaker(3);
        fail(&b);
        fail(&b);
        b.admit().unwrap().finish(true); // a success resets the count
        fail(&b);
        fail(&b);
        assert!(b.admit().is_ok());
        fail(&b);
        let skipped_for = b.admit().err().expect("open");
        assert!(skipped_for <= Duration::from_millis(20));
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_through_and_closes_it() {
        let b = breaker(1);
        fail(&b);
        std::thread::sleep(Duration::from_millis(25)); // the cool-down is what is tested
        let probe = b.admit().expect("probe admitted");
        assert!(b.admit().is_err(), "only one probe at a time");
        probe.finish(true);
        assert!(b.admit().is_ok());
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_the_cap() {
        let b = breaker(1);
        fail(&b);
        for expected in [40, 50, 50] {
            std::thread::sleep(Duration::from_millis(55));
            b.admit().expect("probe").finish(false);
            let State::Open { cooldown, .. } = *b.state() else {
                panic!("not open")
            };
            assert_eq!(cooldown, Duration::from_millis(expected));
        }
    }

    #[test]
    fn a_cancelled_probe_reopens_the_breaker() {
        let b = breaker(1);
        fail(&b);
        std::thread::sleep(Duration::from_millis(25));
        drop(b.admit().expect("probe"));
        assert!(matches!(*b.state(), State::Open { .. }));
    }
}
