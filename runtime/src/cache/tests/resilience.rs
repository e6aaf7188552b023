//! `fail_safe`, `timeout`, `hard_timeout`, `eager_refresh` and `cache_none` over the same
//! harness: TTLs on the mock clock, body durations on tokio's paused clock.

use super::*;
use crate::spec::{FailSafe, HardTimeout};

const TTL: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(60);
const THROTTLE: Duration = Duration::from_secs(5);
const ANSWER_L1_ONLY: OnFailure<Answer> = OnFailure::L1Only;

fn fail_safe<R>(on_failure: OnFailure<R>) -> Spec<u64, R> {
    Spec {
        l1_ttl: Some(TTL),
        l2_ttl: Some(TTL),
        fail_safe: Some(FailSafe {
            window: WINDOW,
            throttle: THROTTLE,
        }),
        ..spec(on_failure)
    }
}

fn timeouts(soft: Option<Duration>, hard: Option<Duration>) -> Spec<u64, Answer> {
    Spec {
        timeout: soft,
        hard_timeout: hard.map(|after| HardTimeout {
            after,
            timed_out: crate::error::time_out,
        }),
        ..fail_safe(ANSWER_L1_ONLY)
    }
}

const DOWN: AppError = AppError::Origin("down");

impl Origin {
    async fn failure(&self) -> Answer {
        self.runs.fetch_add(1, SeqCst);
        Err(DOWN)
    }

    /// A value after `delay` on tokio's clock.
    async fn slow(&self, value: u64, delay: Duration) -> Answer {
        tokio::time::sleep(delay).await;
        self.answer(value).await
    }
}

/// A call of a function with timeouts, as the generated code makes it.
async fn call_detached(
    cache: &'static FnCache<u64, Key, Answer>,
    key: u64,
    body: impl Future<Output = Answer> + Send + 'static,
) -> Answer {
    let key = Parts((key,));
    match cache.hit(&key) {
        Some(value) => Ok(value),
        None => cache.call_detached(cache.resolve(key), body).await,
    }
}

#[tokio::test]
async fn after_expiry_a_failing_body_is_answered_by_the_stale_value_then_left_alone_for_the_throttle() {
    let world = World::new();
    let f = cache(world.process(), fail_safe(ANSWER_L1_ONLY));
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.answer(7)).await, Ok(7));
    world.mock.advance(TTL);
    let (answer, outcome) = with_outcome(call(f, 1, origin.failure())).await;
    assert_eq!((answer, outcome), (Ok(7), Outcome::Stale));
    assert_eq!((origin.runs(), stats(f).stale_served), (2, 1));

    world.mock.advance(THROTTLE - Duration::from_millis(1));
    assert_eq!(call(f, 1, origin.failure()).await, Ok(7), "within the throttle");
    assert_eq!(origin.runs(), 2, "the body is not tried within the throttle");

    world.mock.advance(Duration::from_millis(1));
    assert_eq!(call(f, 1, origin.failure()).await, Ok(7));
    assert_eq!(
        (origin.runs(), stats(f).stale_served),
        (3, 2),
        "tried again after it"
    );
    assert_eq!(call(f, 1, origin.answer(8)).await, Ok(7), "throttled again");
}

#[tokio::test]
async fn a_fresh_value_replaces_the_stale_one_once_the_body_succeeds() {
    let world = World::new();
    let f = cache(world.process(), fail_safe(ANSWER_L1_ONLY));
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.answer(7)).await, Ok(7));
    world.mock.advance(TTL);
    assert_eq!(
        call(f, 1, origin.answer(8)).await,
        Ok(8),
        "a working body answers"
    );
    assert_eq!(call(f, 1, origin.failure()).await, Ok(8), "and is cached");
    assert_eq!((origin.runs(), stats(f).stale_served), (2, 0));
}

#[tokio::test]
async fn a_value_past_its_window_is_never_served() {
    let world = World::new();
    let f = cache(world.process(), fail_safe(ANSWER_L1_ONLY));
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.answer(7)).await, Ok(7));
    world.mock.advance(TTL + WINDOW);
    assert_eq!(call(f, 1, origin.failure()).await, Err(DOWN));
    assert_eq!(stats(f).stale_served, 0);
}

#[tokio::test]
async fn an_invalidated_value_is_never_served_as_stale() {
    let world = World::new();
    let f = cache(world.process(), fail_safe(ANSWER_L1_ONLY));
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.answer(7)).await, Ok(7));
    world.mock.advance(TTL);
    f.invalidate(f.resolve(Parts((1u64,)))).await.unwrap();
    assert_eq!(call(f, 1, origin.failure()).await, Err(DOWN));

    // Invalidated while the failing body runs: the stale value found before it is dropped.
    assert_eq!(call(f, 2, origin.answer(7)).await, Ok(7));
    world.mock.advance(TTL);
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let failing = tokio::spawn({
        let (started, release) = (started.clone(), release.clone());
        async move {
            call(f, 2, async move {
                started.notify_one();
                release.notified().await;
                Err(DOWN)
            })
            .await
        }
    });
    started.notified().await;
    f.invalidate(f.resolve(Parts((2u64,)))).await.unwrap();
    release.notify_one();
    assert_eq!(failing.await.unwrap(), Err(DOWN));
    assert_eq!(stats(f).stale_served, 0);
}

#[tokio::test]
async fn another_processs_stale_value_answers_from_l2() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), fail_safe(ANSWER_L1_ONLY)),
        cache(world.process(), fail_safe(ANSWER_L1_ONLY)),
    );
    let origin = Origin::new();
    assert_eq!(call(a, 1, origin.answer(7)).await, Ok(7));
    world.mock.advance(TTL);
    assert_eq!(call(b, 1, origin.failure()).await, Ok(7), "b never held it");
    assert_eq!(stats(b).stale_served, 1);
    world.mock.advance(WINDOW);
    assert_eq!(
        call(a, 1, origin.failure()).await,
        Err(DOWN),
        "gone from both tiers"
    );
}

#[tokio::test]
async fn a_panicking_body_is_answered_by_the_stale_value() {
    let world = World::new();
    let f = cache(world.process(), fail_safe(ANSWER_L1_ONLY));
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.answer(7)).await, Ok(7));
    world.mock.advance(TTL);
    let answer = call(f, 1, async { panic!("the origin broke") }).await;
    assert_eq!(answer, Ok(7));
    assert_eq!(stats(f).stale_served, 1);
}

#[tokio::test]
async fn without_fail_safe_an_expired_value_never_answers() {
    let world = World::new();
    let f = cache(
        world.process(),
        Spec {
            fail_safe: None,
            ..fail_safe(ANSWER_L1_ONLY)
        },
    );
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.answer(7)).await, Ok(7));
    world.mock.advance(TTL);
    assert_eq!(call(f, 1, origin.failure()).await, Err(DOWN));
}

#[tokio::test(start_paused = true)]
async fn past_the_soft_timeout_the_stale_value_answers_and_the_body_still_stores_its_value() {
    let world = World::new();
    let f = cache(world.process(), timeouts(Some(Duration::from_millis(100)), None));
    let origin = Origin::new();
    assert_eq!(call_detached(f, 1, async { Ok(7) }).await, Ok(7));
    world.mock.advance(TTL);
    let started = tokio::time::Instant::now();
    let slow = {
        let origin = origin.clone();
        async move { origin.slow(8, Duration::from_secs(2)).await }
    };
    assert_eq!(call_detached(f, 1, slow).await, Ok(7));
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(100),
        "answered at the soft timeout"
    );
    assert_eq!(stats(f).stale_served, 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    while origin.runs() == 0 || f.hit(&Parts((1u64,))) != Some(8) {
        tokio::task::yield_now().await;
    }
    assert!(world.store.row(&id(1)).and_then(|row| row.value).is_some());
}

#[tokio::test(start_paused = true)]
async fn without_a_stale_value_the_soft_timeout_does_not_apply() {
    let world = World::new();
    let f = cache(world.process(), timeouts(Some(Duration::from_millis(100)), None));
    let origin = Origin::new();
    let started = tokio::time::Instant::now();
    let slow = {
        let origin = origin.clone();
        async move { origin.slow(8, Duration::from_secs(2)).await }
    };
    assert_eq!(call_detached(f, 1, slow).await, Ok(8));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn an_invalidation_during_the_background_body_keeps_it_from_storing() {
    let world = World::new();
    let f = cache(world.process(), timeouts(Some(Duration::from_millis(100)), None));
    assert_eq!(call_detached(f, 1, async { Ok(7) }).await, Ok(7));
    world.mock.advance(TTL);
    let done = Arc::new(Notify::new());
    let slow = {
        let done = done.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            done.notify_one();
            Ok(8)
        }
    };
    assert_eq!(call_detached(f, 1, slow).await, Ok(7));
    f.invalidate(f.resolve(Parts((1u64,)))).await.unwrap();
    done.notified().await;
    // The body's task stores right after it returns: let it run to the end.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(f.hit(&Parts((1u64,))), None, "L1 did not take it");
    let row = world.store.row(&id(1)).expect("the tombstone");
    assert_eq!(row.value, None, "L2 kept the tombstone");
}

#[tokio::test(start_paused = true)]
async fn past_the_hard_timeout_a_caller_without_a_stale_value_gets_timed_out_and_the_value_is_stored_later() {
    let world = World::new();
    let f = cache(world.process(), timeouts(None, Some(Duration::from_millis(500))));
    let origin = Origin::new();
    let slow = {
        let origin = origin.clone();
        async move { origin.slow(8, Duration::from_secs(2)).await }
    };
    let started = tokio::time::Instant::now();
    let answer = call_detached(f, 1, slow).await;
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(
        answer,
        Err(AppError::TimedOut(TimedOut {
            function: "f".into(),
            after: Duration::from_millis(500)
        }))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    while f.hit(&Parts((1u64,))).is_none() {
        tokio::task::yield_now().await;
    }
    assert_eq!(call_detached(f, 1, origin.failure_owned()).await, Ok(8));
    assert_eq!(origin.runs(), 1, "the late value answers");
}

#[tokio::test(start_paused = true)]
async fn past_the_hard_timeout_a_stale_value_answers() {
    let world = World::new();
    let f = cache(world.process(), timeouts(None, Some(Duration::from_millis(500))));
    assert_eq!(call_detached(f, 1, async { Ok(7) }).await, Ok(7));
    world.mock.advance(TTL);
    let slow = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(8)
    };
    let started = tokio::time::Instant::now();
    assert_eq!(call_detached(f, 1, slow).await, Ok(7));
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(stats(f).stale_served, 1);
}

impl Origin {
    /// [`Origin::failure`] as a `'static` future.
    fn failure_owned(self: &Arc<Self>) -> impl Future<Output = Answer> + Send + 'static {
        let origin = self.clone();
        async move { origin.failure().await }
    }
}

/// `spec` with a 2 s TTL, refreshed past half of it.
fn eager<R>(spec: Spec<u64, R>) -> Spec<u64, R> {
    Spec {
        l1_ttl: Some(Duration::from_secs(2)),
        l2_ttl: Some(Duration::from_secs(2)),
        eager_refresh: Some(0.5),
        ..spec
    }
}

/// A call of a function with `eager_refresh`, as the generated code makes it.
async fn call_eager(
    cache: &'static FnCache<u64, Key, u64>,
    key: u64,
    origin: &Arc<Origin>,
    value: u64,
) -> u64 {
    let body = {
        let origin = origin.clone();
        async move { origin.value(value).await }
    };
    let key = Parts((key,));
    match cache.hit_aged(&key) {
        Hit::Fresh(value) => value,
        Hit::Due(value) => {
            cache.renew(cache.resolve(key), body);
            value
        }
        Hit::Miss => cache.call(cache.resolve(key), body).await,
    }
}

#[tokio::test]
async fn a_hit_past_the_eager_refresh_point_answers_at_once_and_refreshes_once_in_the_background() {
    let world = World::new();
    let f = cache(world.process(), eager(spec(L1_ONLY)));
    let origin = Origin::new();
    assert_eq!(call_eager(f, 1, &origin, 1).await, 1);
    world.mock.advance(Duration::from_millis(900));
    assert_eq!(call_eager(f, 1, &origin, 2).await, 1, "young: no refresh");
    assert_eq!(origin.runs(), 1);
    world.mock.advance(Duration::from_millis(200));
    for _ in 0..5 {
        assert_eq!(
            call_eager(f, 1, &origin, 2).await,
            1,
            "due: the old value answers"
        );
    }
    while f.hit(&Parts((1u64,))) != Some(2) {
        tokio::task::yield_now().await;
    }
    assert_eq!(origin.runs(), 2, "one refresh for the five due hits");
    assert_eq!(stats(f).eager_refreshes, 1);
    world.mock.advance(Duration::from_millis(1_500));
    assert_eq!(
        call_eager(f, 1, &origin, 3).await,
        2,
        "the refreshed value has a new lifetime"
    );
    assert!(world.store.row(&id(1)).and_then(|row| row.value).is_some());
}

#[tokio::test]
async fn an_eager_refresh_takes_a_value_another_process_refreshed_from_l2() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), eager(spec(L1_ONLY))),
        cache(world.process(), eager(spec(L1_ONLY))),
    );
    let origin = Origin::new();
    assert_eq!(call_eager(a, 1, &origin, 1).await, 1);
    assert_eq!(call_eager(b, 1, &origin, 1).await, 1, "from L2");
    world.mock.advance(Duration::from_millis(1_100));
    assert_eq!(call_eager(a, 1, &origin, 2).await, 1);
    while a.hit(&Parts((1u64,))) != Some(2) {
        tokio::task::yield_now().await;
    }
    assert_eq!(call_eager(b, 1, &origin, 3).await, 1);
    while b.hit(&Parts((1u64,))) == Some(1) {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.hit(&Parts((1u64,))), Some(2), "b took a's refreshed row");
    assert_eq!(origin.runs(), 2, "the body ran once for both refreshes");
}

/// A function returning `Option<u64>` with `cache_none = false`.
fn optional(process: &'static Process) -> &'static FnCache<Option<u64>, Key, Option<u64>> {
    let spec = Spec {
        name: CacheName::Fixed("f"),
        version: 0,
        on_failure: OnFailure::L1Only,
        l1_ttl: None,
        l2_ttl: None,
        l1_capacity: 100,
        write: WriteMode::Through,
        codec: serde_codec::<Option<u64>>(),
        fail_safe: None,
        timeout: None,
        hard_timeout: None,
        eager_refresh: None,
        uncached: Some(Option::is_none),
        fleet_lease: None,
    };
    let cache = Box::leak(Box::new(FnCache::new("f", &spec, process)));
    process.registry.register(cache);
    cache
}

#[tokio::test]
async fn with_cache_none_false_none_is_returned_but_not_stored() {
    let world = World::new();
    let f = optional(world.process());
    let runs = AtomicUsize::new(0);
    let body = |value| {
        runs.fetch_add(1, SeqCst);
        async move { value }
    };
    let key = || f.resolve(Parts((1u64,)));
    assert_eq!(f.call(key(), body(None)).await, None);
    assert!(world.store.row(&id(1)).is_none(), "nothing in L2");
    assert_eq!(f.hit(&Parts((1u64,))), None, "nothing in L1");
    assert_eq!(f.call(key(), body(Some(3))).await, Some(3));
    assert_eq!(f.hit(&Parts((1u64,))), Some(Some(3)), "Some is stored");
    assert_eq!(runs.load(SeqCst), 2);

    // A refresh that finds nothing removes what was there.
    assert_eq!(f.refresh(key(), body(None)).await, None);
    assert_eq!(f.hit(&Parts((1u64,))), None);
    assert_eq!(world.store.row(&id(1)).and_then(|row| row.value), None);
}

#[tokio::test]
async fn with_fail_safe_l1_entries_answer_while_the_listener_is_down_up_to_the_window() {
    let world = World::new();
    let f = cache(
        world.process(),
        Spec {
            l1_ttl: None,
            l2_ttl: None,
            ..fail_safe(L1_ONLY)
        },
    );
    assert_eq!(call(f, 1, async { 1 }).await, 1);
    f.process.listener.disconnected();
    world.mock.advance(WINDOW);
    assert_eq!(
        call(f, 1, async { 2 }).await,
        1,
        "an L1 hit past the staleness bound"
    );
    assert_eq!(stats(f).l2_hits, 0);
    world.mock.advance(Duration::from_nanos(1));
    assert_eq!(call(f, 1, async { 2 }).await, 1, "past the window: from L2");
    assert_eq!(stats(f).l2_hits, 1);
}

#[tokio::test(start_paused = true)]
async fn past_the_hard_timeout_every_waiting_caller_is_answered_and_the_body_runs_once() {
    let world = World::new();
    let f = cache(world.process(), timeouts(None, Some(Duration::from_millis(500))));
    let origin = Origin::new();
    let started = tokio::time::Instant::now();
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let origin = origin.clone();
            tokio::spawn(async move {
                let slow = {
                    let origin = origin.clone();
                    async move { origin.slow(8, Duration::from_secs(2)).await }
                };
                call_detached(f, 1, slow).await
            })
        })
        .collect();
    for caller in callers {
        assert!(matches!(caller.await.unwrap(), Err(AppError::TimedOut(_))));
    }
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(500),
        "each waited its own bound"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(origin.runs(), 1, "the waiters did not start bodies of their own");
}

#[tokio::test]
async fn a_failed_eager_refresh_serves_nothing_stale_and_pauses_before_the_next() {
    let world = World::new();
    let f = cache(world.process(), eager(fail_safe(ANSWER_L1_ONLY)));
    let origin = Origin::new();
    let key = || Parts((1u64,));
    assert_eq!(call(f, 1, origin.answer(1)).await, Ok(1));
    world.mock.advance(Duration::from_millis(1_100));
    let Hit::Due(1) = f.hit_aged(&key()) else {
        panic!("due")
    };
    f.renew(f.resolve(key()), origin.failure_owned());
    while origin.runs() < 2 {
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        stats(f).stale_served,
        0,
        "no caller was answered with a stale value"
    );
    f.renew(f.resolve(key()), origin.failure_owned());
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(origin.runs(), 2, "paused after the failure");
    world.mock.advance(THROTTLE);
    f.renew(f.resolve(key()), origin.failure_owned());
    while origin.runs() < 3 {
        tokio::task::yield_now().await;
    }
}
