//! Unit tests of the call path over the in-memory L2 and a mock clock: no server, no sleeps.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;

use super::*;
use crate::breaker::{Breaker, BreakerSettings};
use crate::call_key::Parts;
use crate::clock::{Clock, MockClock};
use crate::codec::serde_codec;
use crate::guard::Guarded;
use crate::memory::{Fault, MemoryStore, Operation};
use crate::outcome::with_outcome;
use crate::policy::Backoff;
use crate::spec::CacheName;

type Key = (u64,);

const L2_TIMEOUT: Duration = Duration::from_millis(300);
const BREAKER: BreakerSettings = BreakerSettings {
    threshold: 3,
    cooldown: Duration::from_secs(1),
    max_cooldown: Duration::from_secs(4),
};
const STALENESS_BOUND: Duration = Duration::from_secs(2);
/// The policies of plain (`u64`) functions.
const L1_ONLY: OnFailure<u64> = OnFailure::L1Only;
const RETRY_3: OnFailure<u64> = OnFailure::Retry { attempts: 3 };

/// One test's world: a table shared by its processes, and the clock they all read.
struct World {
    store: Arc<MemoryStore>,
    mock: Arc<MockClock>,
    clock: Clock,
}

impl World {
    fn new() -> Self {
        let (mock, clock) = MockClock::new();
        World {
            store: MemoryStore::new(),
            mock,
            clock,
        }
    }

    /// A process without an installed L2.
    fn bare_process(&self) -> &'static Process {
        Process::for_test(self.clock.clone())
    }

    /// A process with the memory L2 installed and its listener connected.
    fn process(&self) -> &'static Process {
        let process = self.bare_process();
        let l2 = Arc::new(self.store.connect(process.registry, self.clock.clone()));
        let breaker = Breaker::new(BREAKER, self.clock.clone(), "memory".into());
        let guarded = Guarded::new(l2, breaker, L2_TIMEOUT, "memory".into());
        let installed = Installed::new(guarded, String::new(), Backoff::DEFAULT);
        process.install(Arc::new(installed)).expect("installed");
        process.listener.start(STALENESS_BOUND);
        process.listener.connected();
        process
    }
}

/// The error type of the `Result` functions under test.
#[derive(Debug, Clone, PartialEq)]
enum AppError {
    Origin(&'static str),
    Backend(BackendError),
    TimedOut(TimedOut),
}

impl From<TimedOut> for AppError {
    fn from(err: TimedOut) -> Self {
        AppError::TimedOut(err)
    }
}

impl From<BackendError> for AppError {
    fn from(err: BackendError) -> Self {
        AppError::Backend(err)
    }
}

type Answer = Result<u64, AppError>;

fn spec<R>(on_failure: OnFailure<R>) -> Spec<u64, R> {
    Spec {
        name: CacheName::Fixed("f"),
        version: 0,
        on_failure,
        l1_ttl: None,
        l2_ttl: None,
        l1_capacity: 100,
        write: WriteMode::Through,
        codec: serde_codec::<u64>(),
        fail_safe: None,
        timeout: None,
        hard_timeout: None,
        eager_refresh: None,
        uncached: None,
        fleet_lease: None,
    }
}

/// The `OnFailure::Error` of a fn returning [`Answer`], as the attribute emits it.
fn propagate() -> OnFailure<Answer> {
    OnFailure::Error(policy::escalate)
}

fn cache<R: Output<u64> + 'static>(
    process: &'static Process,
    spec: Spec<u64, R>,
) -> &'static FnCache<u64, Key, R> {
    let cache: &'static FnCache<u64, Key, R> = Box::leak(Box::new(FnCache::new("f", &spec, process)));
    process.registry.register(cache);
    cache
}

/// A call as the generated code makes it: L1, else the miss path.
async fn call<R: Output<u64>>(
    cache: &'static FnCache<u64, Key, R>,
    key: u64,
    body: impl Future<Output = R>,
) -> R {
    let key = Parts((key,));
    match cache.hit(&key) {
        Some(value) => R::from_cached(value),
        None => cache.call(cache.resolve(key), body).await,
    }
}

/// The L2 id of key `k` of `f`.
fn id(k: u64) -> EntryId {
    let bytes = crate::key::key(&(&k,)).0.expect("encodable");
    crate::backend::entry_id("", "f", 0, &bytes)
}

fn bytes(k: u64) -> crate::key::KeyBytes {
    crate::key::key(&(&k,)).0.expect("encodable")
}

/// An origin that counts its runs.
#[derive(Default)]
struct Origin {
    runs: AtomicUsize,
}

impl Origin {
    fn new() -> Arc<Self> {
        Arc::default()
    }

    async fn value(&self, value: u64) -> u64 {
        self.runs.fetch_add(1, SeqCst);
        value
    }

    async fn answer(&self, value: u64) -> Answer {
        Ok(self.value(value).await)
    }

    fn runs(&self) -> usize {
        self.runs.load(SeqCst)
    }
}

fn stats<R: Output<u64> + 'static>(cache: &'static FnCache<u64, Key, R>) -> FunctionStats {
    cache.stats.snapshot()
}

fn unavailable() -> BackendError {
    BackendError::Connect {
        target: "memory".into(),
        message: "refused".into(),
        retryable: true,
    }
}

#[tokio::test]
async fn a_value_computed_in_one_process_is_an_l2_hit_in_another() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), spec(L1_ONLY)),
        cache(world.process(), spec(L1_ONLY)),
    );
    let origin = Origin::new();
    assert_eq!(call(a, 1, origin.value(10)).await, 10);
    assert_eq!(call(b, 1, origin.value(11)).await, 10);
    assert_eq!(call(b, 1, origin.value(12)).await, 10);
    assert_eq!(origin.runs(), 1);
    assert_eq!((stats(b).l2_hits, stats(b).l1_hits), (1, 1));
    assert_eq!(world.store.calls(Operation::Read), 2);
}

#[tokio::test]
async fn under_l1_only_a_failed_read_runs_the_body_and_keeps_the_value_in_l1_alone() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    world
        .store
        .inject(Operation::Read, Fault::Fail(unavailable()), Some(1));
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.value(10)).await, 10);
    assert_eq!(call(f, 1, origin.value(11)).await, 10, "served from L1");
    assert_eq!(origin.runs(), 1);
    assert_eq!(stats(f).backend_errors, 1);
    // Nothing was read, so there is nothing the write could be conditional on.
    assert_eq!(world.store.calls(Operation::Write), 0);
}

#[tokio::test]
async fn under_error_a_failed_read_is_the_callers_error_and_the_body_does_not_run() {
    let world = World::new();
    let f = cache(world.process(), spec(propagate()));
    world
        .store
        .inject(Operation::Read, Fault::Fail(unavailable()), Some(1));
    let origin = Origin::new();
    assert_eq!(
        call(f, 1, origin.answer(10)).await,
        Err(AppError::Backend(unavailable()))
    );
    assert_eq!(origin.runs(), 0);
    assert_eq!(call(f, 1, origin.answer(10)).await, Ok(10));
}

#[tokio::test]
async fn a_computation_overtaken_by_an_invalidation_is_returned_but_stored_nowhere() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    let (computing, release) = held_computation(f, 7).await;
    f.invalidate(f.resolve(Parts((1u64,))))
        .await
        .expect("invalidated");
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 7, "its own caller gets it");
    let row = world.store.row(&id(1)).expect("a tombstone");
    assert_eq!((row.value, row.generation), (None, 1), "L2 keeps the tombstone");
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.value(8)).await, 8, "L1 did not keep 7");
    assert_eq!(origin.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_of_one_key_share_one_computation() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    let origin = Origin::new();
    let release = Arc::new(Notify::new());
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let (origin, release) = (origin.clone(), release.clone());
            tokio::spawn(async move {
                call(f, 1, async move {
                    release.notified().await;
                    origin.value(5).await
                })
                .await
            })
        })
        .collect();
    while f.flights.participants(&bytes(1)) < 50 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 5);
    }
    assert_eq!(origin.runs(), 1);
    assert_eq!((stats(f).misses, stats(f).coalesced), (1, 49));
}

#[tokio::test]
async fn without_an_installed_l2_a_pg_function_runs_l1_only_and_counts_the_error() {
    let world = World::new();
    let f = cache(world.bare_process(), spec(L1_ONLY));
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.value(3)).await, 3);
    assert_eq!(call(f, 1, origin.value(4)).await, 3);
    assert_eq!(origin.runs(), 1);
    assert_eq!(stats(f).backend_errors, 1);
    let g = cache(world.bare_process(), spec(propagate()));
    assert_eq!(
        call(g, 1, origin.answer(3)).await,
        Err(AppError::Backend(BackendError::NotConfigured))
    );
}

#[tokio::test]
async fn entries_expire_with_their_ttl_on_the_clock() {
    let world = World::new();
    let f = cache(
        world.process(),
        Spec {
            l1_ttl: Some(Duration::from_secs(10)),
            l2_ttl: Some(Duration::from_secs(10)),
            ..spec(L1_ONLY)
        },
    );
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.value(1)).await, 1);
    world.mock.advance(Duration::from_secs(9));
    assert_eq!(call(f, 1, origin.value(2)).await, 1);
    world.mock.advance(Duration::from_secs(1));
    assert_eq!(call(f, 1, origin.value(3)).await, 3, "expired in both tiers");
    assert_eq!(origin.runs(), 2);
}

/// `f` of a second process computes `value` for key 1 and stores it in L2.
async fn stored_elsewhere(world: &World, value: u64) {
    let other = cache(world.process(), spec(L1_ONLY));
    assert_eq!(call(other, 1, async move { value }).await, value);
}

#[tokio::test]
async fn retry_tries_again_after_a_backoff_on_the_clock_and_reads_the_row() {
    let world = World::new();
    stored_elsewhere(&world, 10).await;
    let f = cache(world.process(), spec(RETRY_3));
    world
        .store
        .inject(Operation::Read, Fault::Fail(unavailable()), Some(2));
    let before = world.mock.elapsed();
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.value(11)).await, 10);
    assert_eq!(origin.runs(), 0);
    let stats = stats(f);
    assert_eq!((stats.backend_errors, stats.retries, stats.l2_hits), (2, 2, 1));
    // 20 ms then 40 ms, each plus up to a quarter of jitter.
    let paused = world.mock.elapsed() - before;
    assert!(
        paused >= Duration::from_millis(60) && paused <= Duration::from_millis(75),
        "{paused:?}"
    );
}

#[tokio::test]
async fn retry_gives_up_after_its_attempts_and_carries_on_with_l1() {
    let world = World::new();
    let f = cache(world.process(), spec(RETRY_3));
    world
        .store
        .inject(Operation::Read, Fault::Fail(unavailable()), None);
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.value(4)).await, 4);
    assert_eq!(world.store.calls(Operation::Read), 3);
    assert_eq!(call(f, 1, origin.value(5)).await, 4, "kept in L1");
    assert_eq!(origin.runs(), 1);
}

#[tokio::test]
async fn retry_does_not_retry_a_permanent_error() {
    let world = World::new();
    let f = cache(world.process(), spec(RETRY_3));
    let denied = BackendError::Query {
        operation: "read",
        table: "t".into(),
        target: "memory".into(),
        message: "permission denied (SQLSTATE 42501)".into(),
        retryable: false,
    };
    world.store.inject(Operation::Read, Fault::Fail(denied), None);
    assert_eq!(call(f, 1, async { 1 }).await, 1);
    assert_eq!(world.store.calls(Operation::Read), 1);
    assert_eq!(stats(f).retries, 0);
}

#[tokio::test]
async fn a_failed_write_keeps_the_value_in_l1_under_l1_only() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    world
        .store
        .inject(Operation::Write, Fault::Fail(unavailable()), Some(1));
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.value(6)).await, 6);
    assert_eq!(call(f, 1, origin.value(7)).await, 6);
    assert_eq!(origin.runs(), 1);
    assert!(world.store.row(&id(1)).is_none(), "nothing reached L2");
}

#[tokio::test]
async fn a_failed_write_is_the_callers_error_under_error() {
    let world = World::new();
    let f = cache(world.process(), spec(propagate()));
    world
        .store
        .inject(Operation::Write, Fault::Fail(unavailable()), Some(1));
    let origin = Origin::new();
    assert_eq!(
        call(f, 1, origin.answer(6)).await,
        Err(AppError::Backend(unavailable()))
    );
    assert_eq!(origin.runs(), 1);
    assert_eq!(call(f, 1, origin.answer(7)).await, Ok(7), "nothing was cached");
}

#[tokio::test]
async fn a_failed_write_is_retried_under_retry() {
    let world = World::new();
    let f = cache(world.process(), spec(OnFailure::Retry { attempts: 2 }));
    world
        .store
        .inject(Operation::Write, Fault::Fail(unavailable()), Some(1));
    assert_eq!(call(f, 1, async { 6 }).await, 6);
    assert_eq!(world.store.calls(Operation::Write), 2);
    assert!(world.store.row(&id(1)).and_then(|row| row.value).is_some());
}

#[tokio::test]
async fn a_failed_invalidation_still_drops_l1_and_is_returned_only_under_error() {
    for (on_failure, returned) in [(OnFailure::L1Only, Ok(())), (propagate(), Err(unavailable()))] {
        let world = World::new();
        let f = cache(world.process(), spec(on_failure));
        assert_eq!(call(f, 1, async { Ok(1) }).await, Ok(1));
        world
            .store
            .inject(Operation::Invalidate, Fault::Fail(unavailable()), Some(1));
        assert_eq!(f.invalidate(f.resolve(Parts((1u64,)))).await, returned);
        world
            .store
            .inject(Operation::InvalidateAll, Fault::Fail(unavailable()), Some(1));
        assert_eq!(f.invalidate_all().await, returned);
        // L1 was dropped; L2 gets the (owed) invalidations before the next read.
        assert_eq!(call(f, 1, async { Ok(2) }).await, Ok(2));
        assert_eq!(stats(f).l2_hits, 0);
    }
}

#[tokio::test]
async fn the_breaker_skips_l2_after_repeated_failures_then_probes_on_the_clock() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    world
        .store
        .inject(Operation::Read, Fault::Fail(unavailable()), None);
    for key in 0..3 {
        call(f, key, async move { key }).await;
    }
    assert_eq!(world.store.calls(Operation::Read), 3);
    assert_eq!(call(f, 3, async { 3 }).await, 3);
    assert_eq!(world.store.calls(Operation::Read), 3, "skipped while open");
    assert_eq!(stats(f).short_circuited, 1);
    world.store.heal();
    world.mock.advance(BREAKER.cooldown);
    assert_eq!(call(f, 4, async { 4 }).await, 4);
    assert_eq!(world.store.calls(Operation::Read), 4, "one probe");
    assert!(
        world.store.row(&id(4)).is_some(),
        "closed: the write went through"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_server_costs_a_call_the_l2_timeout() {
    let world = World::new();
    let f = cache(world.process(), spec(propagate()));
    world.store.inject(Operation::Read, Fault::Hang, Some(1));
    let started = tokio::time::Instant::now();
    let answer = call(f, 1, async { Ok(1) }).await;
    assert!(
        matches!(answer, Err(AppError::Backend(BackendError::Timeout { .. }))),
        "{answer:?}"
    );
    assert_eq!(started.elapsed(), L2_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_takes_over_when_the_computing_caller_is_cancelled_or_panics() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    for leader_ends_by_panicking in [false, true] {
        f.invalidate_all().await.unwrap();
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let leader = tokio::spawn({
            let (started, release) = (started.clone(), release.clone());
            async move {
                call(f, 1, async move {
                    started.notify_one();
                    release.notified().await;
                    if leader_ends_by_panicking {
                        panic!("the body failed");
                    }
                    std::future::pending().await
                })
                .await
            }
        });
        started.notified().await;
        let origin = Origin::new();
        let waiter = tokio::spawn({
            let origin = origin.clone();
            async move { call(f, 1, origin.value(9)).await }
        });
        while f.flights.participants(&bytes(1)) < 2 {
            tokio::task::yield_now().await;
        }
        match leader_ends_by_panicking {
            true => release.notify_one(),
            false => leader.abort(),
        }
        assert!(leader.await.is_err());
        assert_eq!(waiter.await.unwrap(), 9);
        assert_eq!(origin.runs(), 1, "the waiter computed");
    }
}

/// Starts computing key 1 with a body held until the returned gate is opened; returns the
/// caller's task.
async fn held_computation<R: Output<u64> + Send + 'static>(
    f: &'static FnCache<u64, Key, R>,
    output: R,
) -> (tokio::task::JoinHandle<R>, Arc<Notify>) {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let task = tokio::spawn({
        let (started, release) = (started.clone(), release.clone());
        async move {
            call(f, 1, async move {
                started.notify_one();
                release.notified().await;
                output
            })
            .await
        }
    });
    started.notified().await;
    (task, release)
}

#[tokio::test]
async fn a_computation_overtaken_by_invalidate_all_stores_nowhere() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    let (computing, release) = held_computation(f, 7).await;
    f.invalidate_all().await.unwrap();
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 7);
    assert!(world.store.row(&id(1)).is_none(), "the write was refused");
    assert_eq!(call(f, 1, async { 8 }).await, 8);
}

#[tokio::test]
async fn a_computation_overtaken_by_another_process_invalidation_stores_nowhere() {
    let world = World::new();
    let a = cache(world.process(), spec(L1_ONLY));
    let b = cache(world.process(), spec(L1_ONLY));
    let (computing, release) = held_computation(a, 7).await;
    b.invalidate(b.resolve(Parts((1u64,)))).await.unwrap();
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 7);
    assert_eq!(world.store.row(&id(1)).unwrap().value, None);
    assert_eq!(call(a, 1, async { 8 }).await, 8, "not in A's L1 either");
}

#[tokio::test]
async fn after_another_processs_invalidation_a_caller_does_not_join_a_computation_from_before() {
    let world = World::new();
    let a = cache(world.process(), spec(L1_ONLY));
    let b = cache(world.process(), spec(L1_ONLY));
    let (computing, release) = held_computation(a, 7).await;
    b.invalidate(b.resolve(Parts((1u64,)))).await.unwrap();
    assert_eq!(call(a, 1, async { 8 }).await, 8, "a computation of its own");
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 7);
}

#[tokio::test]
async fn a_refresh_wins_over_a_computation_that_started_before_it() {
    let world = World::new();
    let a = cache(world.process(), spec(L1_ONLY));
    let b = cache(world.process(), spec(L1_ONLY));
    let (computing, release) = held_computation(a, 7).await;
    assert_eq!(
        call(b, 1, async { 1 }).await,
        1,
        "B computes and stores meanwhile"
    );
    assert_eq!(a.refresh(a.resolve(Parts((1u64,))), async { 9 }).await, 9);
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 7);
    assert_eq!(call(a, 1, async { 0 }).await, 9);
    assert_eq!(call(b, 1, async { 0 }).await, 9, "B's L1 heard of the refresh");
    let row = world.store.row(&id(1)).unwrap();
    assert_eq!(serde_codec::<u64>().unwrap().decode(&row.value.unwrap()), Ok(9));
}

#[tokio::test]
async fn write_behind_answers_before_the_write_and_undoes_l1_if_the_write_is_refused() {
    let world = World::new();
    let f = cache(
        world.process(),
        Spec {
            write: WriteMode::Behind,
            ..spec(L1_ONLY)
        },
    );
    let gate = Arc::new(Notify::new());
    world
        .store
        .inject(Operation::Write, Fault::Gate(gate.clone()), Some(1));
    assert_eq!(call(f, 1, async { 5 }).await, 5, "answered while the write waits");
    assert_eq!(call(f, 1, async { 6 }).await, 5, "and L1 has it");
    // Another process invalidates before the write lands: the write is refused and this
    // process's L1 entry goes with it.
    let other = cache(world.process(), spec(L1_ONLY));
    let installed = f.process.installed().unwrap();
    other.invalidate(other.resolve(Parts((1u64,)))).await.unwrap();
    gate.notify_one();
    installed.tasks.close();
    installed.tasks.wait().await;
    assert_eq!(world.store.row(&id(1)).unwrap().value, None);
    assert_eq!(call(f, 1, async { 6 }).await, 6);
}

#[tokio::test]
async fn a_computation_older_than_half_a_tombstones_life_is_not_written_back() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    let (computing, release) = held_computation(f, 7).await;
    world
        .mock
        .advance(TOMBSTONE_LIFETIME / 2 + Duration::from_secs(1));
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 7);
    assert_eq!(world.store.calls(Operation::Write), 0);
}

#[tokio::test]
async fn another_processs_invalidations_evict_this_processs_l1() {
    let world = World::new();
    let a = cache(world.process(), spec(L1_ONLY));
    let b = cache(world.process(), spec(L1_ONLY));
    assert_eq!(call(b, 1, async { 1 }).await, 1);
    assert_eq!(call(b, 2, async { 2 }).await, 2);
    a.invalidate(a.resolve(Parts((1u64,)))).await.unwrap();
    assert_eq!(call(b, 1, async { 10 }).await, 10);
    assert_eq!(call(b, 2, async { 20 }).await, 2, "other keys stay");
    a.invalidate_all().await.unwrap();
    assert_eq!(call(b, 2, async { 20 }).await, 20);
    assert_eq!(stats(b).invalidations, 2);
}

#[tokio::test]
async fn while_the_listener_is_down_old_l1_entries_are_not_served() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    assert_eq!(call(f, 1, async { 1 }).await, 1);
    f.process.listener.disconnected();
    world.mock.advance(STALENESS_BOUND);
    assert_eq!(call(f, 1, async { 2 }).await, 1, "young enough: an L1 hit");
    assert_eq!(stats(f).l2_hits, 0);
    world.mock.advance(Duration::from_nanos(1));
    assert_eq!(
        call(f, 1, async { 2 }).await,
        1,
        "too old for L1: read again from L2"
    );
    assert_eq!(stats(f).l2_hits, 1);
}

#[tokio::test]
async fn an_undecodable_row_is_a_miss_and_is_overwritten() {
    let world = World::new();
    stored_elsewhere(&world, 10).await;
    world.store.corrupt(&id(1), b"\x01\xc1garbage".to_vec());
    let f = cache(world.process(), spec(L1_ONLY));
    assert_eq!(call(f, 1, async { 11 }).await, 11);
    let row = world.store.row(&id(1)).unwrap();
    assert_eq!(serde_codec::<u64>().unwrap().decode(&row.value.unwrap()), Ok(11));
}

#[tokio::test]
async fn a_key_that_cannot_be_encoded_is_not_cached() {
    let world = World::new();
    let f: &'static FnCache<u64, crate::call_key::AnyKey, u64> =
        Box::leak(Box::new(FnCache::new("g", &spec(L1_ONLY), world.process())));
    let unencodable = || crate::key::Key(Err("a map with non-string keys".into()));
    let origin = Origin::new();
    for _ in 0..2 {
        assert!(f.hit(&unencodable()).is_none());
        assert_eq!(f.call(f.resolve(unencodable()), origin.value(1)).await, 1);
    }
    assert_eq!(origin.runs(), 2);
    assert!(matches!(
        f.invalidate(f.resolve(unencodable())).await,
        Err(BackendError::Key { .. })
    ));
}

#[tokio::test]
async fn the_bodys_err_reaches_its_caller_and_is_not_cached() {
    let world = World::new();
    let f = cache(world.process(), spec(propagate()));
    assert_eq!(
        call(f, 1, async { Err(AppError::Origin("down")) }).await,
        Err(AppError::Origin("down"))
    );
    assert_eq!(world.store.calls(Operation::Write), 0);
    assert_eq!(call(f, 1, async { Ok(2) }).await, Ok(2));
}

#[tokio::test]
async fn a_computation_that_spans_a_listener_reconnection_writes_nothing_to_l2() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    let (computing, release) = held_computation(f, 7).await;
    // The connection is lost (a crash of the server, say) and made again meanwhile.
    f.process.listener.disconnected();
    f.process.registry.clear_l1(true);
    f.process.listener.connected();
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 7);
    assert_eq!(world.store.calls(Operation::Write), 0);
}

#[tokio::test]
async fn a_computation_that_spans_a_listener_loss_keeps_its_value_in_l1_alone() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    let (computing, release) = held_computation(f, 7).await;
    f.process.listener.disconnected();
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 7);
    assert_eq!(world.store.calls(Operation::Write), 0);
    assert_eq!(call(f, 1, async { 8 }).await, 7, "kept in L1");
    // Reads made while it is down write back as usual: they saw the table as it is now.
    assert_eq!(call(f, 2, async { 2 }).await, 2);
    assert_eq!(world.store.calls(Operation::Write), 1);
}

/// A call as [`call`] makes it, with its outcome.
async fn answered<R: Output<u64>>(
    cache: &'static FnCache<u64, Key, R>,
    key: u64,
    body: impl Future<Output = R>,
) -> (R, Outcome) {
    with_outcome(call(cache, key, body)).await
}

#[tokio::test]
async fn the_outcome_says_which_tier_answered_each_call() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), spec(L1_ONLY)),
        cache(world.process(), spec(L1_ONLY)),
    );
    assert_eq!(answered(a, 1, async { 1 }).await, (1, Outcome::Computed));
    assert_eq!(answered(a, 1, async { 2 }).await, (1, Outcome::L1Hit));
    assert_eq!(answered(b, 1, async { 3 }).await, (1, Outcome::L2Hit));
    assert_eq!(answered(b, 1, async { 4 }).await, (1, Outcome::L1Hit));
    let (a, b) = (stats(a), stats(b));
    assert_eq!((a.misses, a.l1_hits, b.l2_hits, b.l1_hits), (1, 1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn of_concurrent_callers_one_computed_and_the_others_coalesced() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let leader = tokio::spawn({
        let (started, release) = (started.clone(), release.clone());
        async move {
            answered(f, 1, async move {
                started.notify_one();
                release.notified().await;
                5
            })
            .await
        }
    });
    started.notified().await;
    let waiters: Vec<_> = (0..3)
        .map(|_| tokio::spawn(answered(f, 1, async { 6 })))
        .collect();
    while f.flights.participants(&bytes(1)) < 4 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    assert_eq!(leader.await.unwrap(), (5, Outcome::Computed));
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), (5, Outcome::Coalesced));
    }
    assert_eq!((stats(f).misses, stats(f).coalesced), (1, 3));
}

#[tokio::test]
async fn a_cached_call_inside_the_body_does_not_change_the_outer_calls_outcome() {
    let world = World::new();
    stored_elsewhere(&world, 10).await;
    let process = world.process();
    // Caches of one name in one process: one L2 row, an L1 each.
    let [outer, wrapped, unwrapped] = [(); 3].map(|()| cache(process, spec(L1_ONLY)));
    let body = async move {
        let (value, outcome) = answered(wrapped, 1, async { 0 }).await;
        assert_eq!(outcome, Outcome::L2Hit, "its own with_outcome");
        // Recorded into the outer call's `with_outcome`, then overwritten by the outer call.
        value + call(unwrapped, 1, async { 0 }).await
    };
    assert_eq!(answered(outer, 2, body).await, (20, Outcome::Computed));
    assert_eq!(stats(unwrapped).l2_hits, 1);
    assert_eq!(answered(outer, 2, async { 0 }).await, (20, Outcome::L1Hit));
}

#[tokio::test]
async fn refresh_and_a_key_that_cannot_be_encoded_are_computed() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    assert_eq!(answered(f, 1, async { 1 }).await, (1, Outcome::Computed));
    let refreshed = with_outcome(f.refresh(f.resolve(Parts((1u64,))), async { 2 }));
    assert_eq!(refreshed.await, (2, Outcome::Computed));
    assert_eq!(answered(f, 1, async { 3 }).await, (2, Outcome::L1Hit));

    let g: &'static FnCache<u64, crate::call_key::AnyKey, u64> =
        Box::leak(Box::new(FnCache::new("g", &spec(L1_ONLY), world.process())));
    let unencodable = || crate::key::Key(Err("a map with non-string keys".into()));
    let uncached = with_outcome(g.call(g.resolve(unencodable()), async { 4 }));
    assert_eq!(uncached.await, (4, Outcome::Computed));
}

#[tokio::test]
async fn a_bodys_err_is_computed_and_a_backend_error_handed_to_the_caller_is_a_backend_error() {
    let world = World::new();
    let f = cache(world.process(), spec(propagate()));
    let failed = Err(AppError::Origin("down"));
    assert_eq!(
        answered(f, 1, async { Err(AppError::Origin("down")) }).await,
        (failed, Outcome::Computed)
    );
    for operation in [Operation::Read, Operation::Write] {
        world.store.inject(operation, Fault::Fail(unavailable()), Some(1));
        assert_eq!(
            answered(f, 1, async { Ok(1) }).await,
            (Err(AppError::Backend(unavailable())), Outcome::BackendError),
            "{operation:?}"
        );
    }
    let refreshed = with_outcome(f.refresh(f.resolve(Parts((1u64,))), async { Ok(2) }));
    world
        .store
        .inject(Operation::Overwrite, Fault::Fail(unavailable()), Some(1));
    assert_eq!(
        refreshed.await,
        (Err(AppError::Backend(unavailable())), Outcome::BackendError)
    );
    // Absorbed under `l1_only`: the body answers.
    let g = cache(world.process(), spec(L1_ONLY));
    world
        .store
        .inject(Operation::Read, Fault::Fail(unavailable()), Some(1));
    assert_eq!(answered(g, 1, async { 3 }).await, (3, Outcome::Computed));
}

mod fleet;
#[cfg(feature = "metrics")]
mod metrics;
mod pending;
mod resilience;
mod resync;
mod tags;
