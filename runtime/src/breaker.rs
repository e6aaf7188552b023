//! Circuit breaker: after repeated L2 failures, skip L2 for a growing cool-down, then probe.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::clock::Clock;

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
        /// Operations skipped since it opened, reported when it closes.
        skipped: u64,
    },
    /// One operation is probing the server; the others are still skipped.
    Probing {
        cooldown: Duration,
        skipped: u64,
    },
}

/// The breaker of one installed backend (one server), shared by every function. It logs
/// once when it opens and once when it closes, never per skipped operation.
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    clock: Clock,
    /// The server, for its log lines.
    target: String,
    state: Mutex<State>,
}

/// Permission for one L2 operation; report its outcome with [`Attempt::finish`].
pub(crate) struct Attempt<'a> {
    breaker: &'a Breaker,
    probe: bool,
    finished: bool,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings, clock: Clock, target: String) -> Self {
        Breaker {
            settings,
            clock,
            target,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The server answers again (another connection reached it): if open, the next operation
    /// probes at once, and a failed probe starts again from the first cool-down.
    pub(crate) fn probe_now(&self) {
        let mut state = self.state();
        if let State::Open { until, cooldown, .. } = &mut *state {
            *until = self.clock.now();
            *cooldown = self.settings.cooldown / 2;
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every transition leaves a valid state, even if interrupted by a panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets an operation through, or says how long L2 is still skipped.
    pub(crate) fn admit(&self) -> Result<Attempt<'_>, Duration> {
        let mut state = self.state();
        let probe = match &mut *state {
            State::Closed { .. } => false,
            State::Open {
                until,
                cooldown,
                skipped,
            } => {
                let now = self.clock.now();
                if now < *until {
                    *skipped += 1;
                    return Err(*until - now);
                }
                *state = State::Probing {
                    cooldown: *cooldown,
                    skipped: *skipped,
                };
                tracing::debug!(target = self.target, "tiered: circuit breaker half-open: probing");
                true
            }
            State::Probing { skipped, .. } => {
                *skipped += 1;
                return Err(Duration::ZERO);
            }
        };
        Ok(Attempt {
            breaker: self,
            probe,
            finished: false,
        })
    }

    /// The state as a gauge shows it: 0 closed, 1 open, 2 half-open (probing).
    #[cfg(feature = "metrics")]
    pub(crate) fn state_code(&self) -> u8 {
        match *self.state() {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::Probing { .. } => 2,
        }
    }

    fn record(&self, probe: bool, answered: bool) {
        let mut state = self.state();
        let settings = self.settings;
        *state = match (*state, answered) {
            (State::Probing { skipped, .. }, true) => {
                tracing::info!(
                    target = self.target,
                    skipped,
                    "tiered: circuit breaker closed: PostgreSQL answers again"
                );
                State::Closed { failures: 0 }
            }
            (State::Probing { cooldown, skipped }, false) if probe => {
                let cooldown = (cooldown * 2).min(settings.max_cooldown);
                tracing::debug!(
                    target = self.target,
                    ?cooldown,
                    "tiered: circuit breaker probe failed; skipping L2 longer"
                );
                State::Open {
                    until: self.clock.now() + cooldown,
                    cooldown,
                    skipped,
                }
            }
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 >= settings.threshold => {
                let cooldown = settings.cooldown;
                tracing::warn!(
                    target = self.target,
                    failures = failures + 1,
                    ?cooldown,
                    "tiered: circuit breaker open: skipping L2 after consecutive failures"
                );
                State::Open {
                    until: self.clock.now() + cooldown,
                    cooldown,
                    skipped: 0,
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
    use crate::clock::MockClock;
    use std::sync::Arc;

    fn breaker(threshold: u32) -> (Breaker, Arc<MockClock>) {
        let (mock, clock) = MockClock::new();
        let settings = BreakerSettings {
            threshold,
            cooldown: Duration::from_millis(20),
            max_cooldown: Duration::from_millis(50),
        };
        (Breaker::new(settings, clock, "db:5432/app".into()), mock)
    }

    fn fail(breaker: &Breaker) {
        breaker.admit().expect("admitted").finish(false);
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures_only() {
        let (b, _) = breaker(3);
        fail(&b);
        fail(&b);
        b.admit().unwrap().finish(true); // a success resets the count
        fail(&b);
        fail(&b);
        assert!(b.admit().is_ok());
        fail(&b);
        assert_eq!(b.admit().err(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_through_and_closes_it() {
        let (b, clock) = breaker(1);
        fail(&b);
        clock.advance(Duration::from_millis(19));
        assert_eq!(
            b.admit().err(),
            Some(Duration::from_millis(1)),
            "still cooling down"
        );
        clock.advance(Duration::from_millis(1));
        let probe = b.admit().expect("probe admitted");
        assert!(b.admit().is_err(), "only one probe at a time");
        probe.finish(true);
        assert!(b.admit().is_ok());
        assert_eq!(*b.state(), State::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_the_cap() {
        let (b, clock) = breaker(1);
        fail(&b);
        for expected in [40, 50, 50] {
            let State::Open { cooldown, .. } = *b.state() else {
                panic!("not open")
            };
            clock.advance(cooldown);
            b.admit().expect("probe").finish(false);
            let State::Open { cooldown, .. } = *b.state() else {
                panic!("not open")
            };
            assert_eq!(cooldown, Duration::from_millis(expected));
        }
    }

    #[test]
    fn a_cancelled_probe_reopens_the_breaker() {
        let (b, clock) = breaker(1);
        fail(&b);
        clock.advance(Duration::from_millis(20));
        drop(b.admit().expect("probe"));
        assert!(matches!(*b.state(), State::Open { .. }));
    }

    #[test]
    fn told_the_server_is_back_an_open_breaker_probes_at_once() {
        let (b, clock) = breaker(1);
        fail(&b);
        clock.advance(Duration::from_millis(20));
        b.admit().expect("probe").finish(false);
        b.probe_now();
        let probe = b.admit().expect("probed without waiting out the cool-down");
        probe.finish(false);
        assert!(
            matches!(*b.state(), State::Open { cooldown, .. } if cooldown == Duration::from_millis(20)),
            "a failed probe starts again from the first cool-down"
        );
        b.probe_now();
        b.admit().expect("probe").finish(true);
        assert_eq!(*b.state(), State::Closed { failures: 0 });
    }

    #[test]
    fn skipped_operations_are_counted_until_it_closes() {
        let (b, clock) = breaker(1);
        fail(&b);
        for _ in 0..3 {
            assert!(b.admit().is_err());
        }
        clock.advance(Duration::from_millis(20));
        let probe = b.admit().expect("probe");
        assert!(b.admit().is_err());
        assert!(matches!(*b.state(), State::Probing { skipped: 4, .. }));
        probe.finish(true);
    }
}
