//! Single-flight: concurrent callers of one key share one L2 read and one body execution.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OnceCell;

use crate::key::KeyBytes;

/// The computations in flight for one function, by key.
///
/// Each flight is a `tokio::sync::OnceCell`: the first caller runs its computation, the others
/// wait. If that caller is cancelled or panics, or its computation returns an error, the cell
/// stays empty and the next waiter runs its own computation — so waiters never hang and a
/// non-`Clone` error is never shared. The map lock is held only to find or drop a flight.
pub(crate) struct Flights<V> {
    map: Mutex<HashMap<KeyBytes, Arc<OnceCell<V>>>>,
}

/// Whether a caller ran the computation or got another caller's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Led,
    Coalesced,
}

impl<V: Clone> Flights<V> {
    pub(crate) fn new() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<KeyBytes, Arc<OnceCell<V>>>> {
        // Every critical section leaves the map consistent, even if a panic interrupted it.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the flight for `key`, running `compute` if no other caller is running one.
    pub(crate) async fn run<E, F, Fut>(&self, key: &KeyBytes, compute: F) -> (Result<V, E>, Role)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let flight = self.map().entry(key.clone()).or_default().clone();
        let _leave = Leave {
            flights: self,
            key,
            flight: &flight,
        };
        let mut role = Role::Coalesced;
        let result = flight
            .get_or_try_init(|| {
                role = Role::Led;
                compute()
            })
            .await
            .cloned();
        (result, role)
    }

    /// Detaches the flight of `key`, so callers from now on start a new computation instead of
    /// joining one that began before an invalidation.
    pub(crate) fn forget(&self, key: &KeyBytes) {
        self.map().remove(key);
    }

    /// Detaches the flights of the keys `matches` picks.
    pub(crate) fn forget_where(&self, matches: impl Fn(&KeyBytes) -> bool) {
        self.map().retain(|key, _| !matches(key));
    }

    /// Detaches every flight.
    pub(crate) fn forget_all(&self) {
        self.map().clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }

    /// How many callers take part in the flight of `key` now (0 if there is none).
    #[cfg(test)]
    pub(crate) fn participants(&self, key: &KeyBytes) -> usize {
        // The map holds one reference, each participant one.
        self.map()
            .get(key)
            .map_or(0, |flight| Arc::strong_count(flight) - 1)
    }
}

/// The keys whose value is being refreshed in the background (`eager_refresh`): one refresh
/// per key at a time, claimed before its task is spawned; after a failed one, none until a
/// pause has passed (in clock ticks).
#[derive(Default)]
pub(crate) struct Renewals(Mutex<HashMap<KeyBytes, Option<u64>>>);

/// A claimed refresh; dropping it lets the key be refreshed again (after its pause, if any).
pub(crate) struct Renewal<'a> {
    renewals: &'a Renewals,
    key: KeyBytes,
    paused_until: Option<u64>,
}

impl Renewals {
    /// Claims `key` at `now`, unless a refresh of it is running or pausing.
    pub(crate) fn claim(&self, key: &KeyBytes, now: u64) -> Option<Renewal<'_>> {
        let mut keys = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.get(key) {
            None => {}
            Some(Some(until)) if *until <= now => {}
            Some(_) => return None,
        }
        keys.insert(key.clone(), None);
        Some(Renewal {
            renewals: self,
            key: key.clone(),
            paused_until: None,
        })
    }
}

impl Renewal<'_> {
    /// No refresh of the key until `until`.
    pub(crate) fn pause_until(&mut self, until: u64) {
        self.paused_until = Some(until);
    }
}

impl Drop for Renewal<'_> {
    fn drop(&mut self) {
        let mut keys = self.renewals.0.lock().unwrap_or_else(PoisonError::into_inner);
        match self.paused_until {
            None => keys.remove(&self.key),
            Some(until) => keys.insert(self.key.clone(), Some(until)),
        };
    }
}

/// Removes a finished or abandoned flight from the map when a participant leaves, even by
/// cancellation or panic.
struct Leave<'a, V> {
    flights: &'a Flights<V>,
    key: &'a KeyBytes,
    flight: &'a Arc<OnceCell<V>>,
}

impl<V> Drop for Leave<'_, V> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = map.get(self.key) {
            // Two references: the map's and ours, so nobody else is waiting on it.
            let abandoned = Arc::strong_count(current) == 2;
            if Arc::ptr_eq(current, self.flight) && (self.flight.initialized() || abandoned) {
                map.remove(self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;
    use tokio::sync::Notify;

    fn k(n: u8) -> KeyBytes {
        KeyBytes::from_slice(&[n])
    }

    #[tokio::test]
    async fn concurrent_callers_of_one_key_share_one_computation() {
        let flights = Arc::new(Flights::<u32>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flights, runs, release) = (flights.clone(), runs.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run(&k(1), || async move {
                        runs.fetch_add(1, SeqCst);
                        release.notified().await;
                        Ok::<_, ()>(7)
                    })
                    .await
            }));
        }
        while flights.map().get(&k(1)).map_or(0, Arc::strong_count) < 51 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        let mut led = 0;
        for task in tasks {
            let (value, role) = task.await.unwrap();
            assert_eq!(value, Ok(7));
            led += usize::from(role == Role::Led);
        }
        assert_eq!((runs.load(SeqCst), led), (1, 1));
        assert_eq!(flights.len(), 0, "a finished flight is removed");
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_leader_is_cancelled() {
        let flights = Arc::new(Flights::<u32>::new());
        let leader_started = Arc::new(Notify::new());
        let leader = {
            let (flights, started) = (flights.clone(), leader_started.clone());
            tokio::spawn(async move {
                flights
                    .run(&k(1), || async move {
                        started.notify_one();
                        std::future::pending::<Result<u32, ()>>().await
                    })
                    .await
            })
        };
        leader_started.notified().await;
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run(&k(1), || async { Ok::<_, ()>(9) }).await })
        };
        while flights.map().get(&k(1)).map_or(0, Arc::strong_count) < 3 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        let (value, role) = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((value, role), (Ok(9), Role::Led));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_panicking_computation_does_not_hang_waiters_or_break_the_next_call() {
        let flights = Arc::new(Flights::<u32>::new());
        let panicked = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run::<(), _, _>(&k(1), || async {
                        tokio::task::yield_now().await;
                        panic!("body failed")
                    })
                    .await
            })
        };
        assert!(panicked.await.unwrap_err().is_panic());
        assert_eq!(flights.run(&k(1), || async { Ok::<_, ()>(3) }).await.0, Ok(3));
    }

    #[tokio::test]
    async fn an_error_is_not_shared_and_the_next_caller_computes_again() {
        let flights = Flights::<u32>::new();
        assert_eq!(
            flights.run(&k(1), || async { Err::<u32, _>("down") }).await.0,
            Err("down")
        );
        assert_eq!(flights.run(&k(1), || async { Ok::<_, &str>(5) }).await.0, Ok(5));
        assert_eq!(flights.len(), 0);
    }
}
