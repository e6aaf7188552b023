//! `stampede = "fleet"` over the same harness: processes sharing one table, on tokio's paused clock.

use super::*;

const LEASE: Duration = Duration::from_secs(10);
const ANSWER_L1_ONLY: OnFailure<Answer> = OnFailure::L1Only;

fn fleet<R>(on_failure: OnFailure<R>) -> Spec<u64, R> {
    Spec {
        fleet_lease: Some(LEASE),
        ..spec(on_failure)
    }
}

/// `callers` calls of key 1 in `f`, each with a body worth `value`, once all joined the flight.
async fn callers(
    f: &'static FnCache<u64, Key, Answer>,
    origin: &Arc<Origin>,
    count: usize,
    value: u64,
) -> Vec<tokio::task::JoinHandle<Answer>> {
    let tasks = (0..count)
        .map(|_| {
            let origin = origin.clone();
            tokio::spawn(async move { call(f, 1, origin.answer(value)).await })
        })
        .collect();
    while f.flights.participants(&bytes(1)) < count {
        tokio::task::yield_now().await;
    }
    tasks
}

/// Waits until `f`'s flight of key 1 waits for another process.
async fn waiting(f: &'static FnCache<u64, Key, Answer>) {
    while stats(f).fleet_waits == 0 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_process_waits_for_the_value_another_one_computes_instead_of_running_the_body() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), fleet(ANSWER_L1_ONLY)),
        cache(world.process(), fleet(ANSWER_L1_ONLY)),
    );
    let (leader, release) = held_computation(a, Ok(7)).await;
    let origin = Origin::new();
    let waiters = callers(b, &origin, 3, 8).await;
    waiting(b).await;
    release.notify_one();
    assert_eq!(leader.await.unwrap(), Ok(7));
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), Ok(7));
    }
    assert_eq!(origin.runs(), 0, "the waiting process did not run the body");
    let b_stats = stats(b);
    assert_eq!(
        (
            b_stats.fleet_waits,
            b_stats.l2_hits,
            b_stats.coalesced,
            b_stats.misses
        ),
        (1, 1, 2, 0)
    );
    assert_eq!(stats(a).misses, 1);
    assert_eq!(call(b, 1, origin.answer(9)).await, Ok(7), "b's L1 has it");
}

#[tokio::test(start_paused = true)]
async fn when_the_leader_dies_another_process_computes_once_its_lease_expired() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), fleet(ANSWER_L1_ONLY)),
        cache(world.process(), fleet(ANSWER_L1_ONLY)),
    );
    let started = tokio::time::Instant::now();
    let (leader, _never) = held_computation(a, Ok(7)).await;
    let origin = Origin::new();
    let waiters = callers(b, &origin, 3, 8).await;
    waiting(b).await;
    // A process that dies lets go of nothing.
    world
        .store
        .inject(Operation::ReleaseLease, Fault::Fail(unavailable()), Some(1));
    leader.abort();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), Ok(8));
    }
    let waited = started.elapsed();
    assert!(
        (LEASE..LEASE + Duration::from_secs(1)).contains(&waited),
        "took over after {waited:?}"
    );
    assert_eq!((origin.runs(), stats(b).misses, stats(b).fleet_waits), (1, 1, 1));
    let c = cache(world.process(), fleet(ANSWER_L1_ONLY));
    assert_eq!(
        call(c, 1, origin.answer(9)).await,
        Ok(8),
        "b stored its value in L2"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_body_fails_lets_go_and_a_waiting_process_computes_at_once() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), fleet(ANSWER_L1_ONLY)),
        cache(world.process(), fleet(ANSWER_L1_ONLY)),
    );
    let started = tokio::time::Instant::now();
    let (leader, release) = held_computation(a, Err(AppError::Origin("down"))).await;
    let origin = Origin::new();
    let waiter = callers(b, &origin, 1, 8).await.remove(0);
    waiting(b).await;
    release.notify_one();
    assert_eq!(leader.await.unwrap(), Err(AppError::Origin("down")));
    assert_eq!(waiter.await.unwrap(), Ok(8));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((origin.runs(), stats(b).misses), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn with_l2_down_each_process_computes_once_for_its_own_callers() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), fleet(ANSWER_L1_ONLY)),
        cache(world.process(), fleet(ANSWER_L1_ONLY)),
    );
    for operation in [Operation::Read, Operation::Write, Operation::TakeLease] {
        world.store.inject(operation, Fault::Fail(unavailable()), None);
    }
    let origin = Origin::new();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = Vec::new();
    for (f, value) in [(a, 1), (b, 2)] {
        for _ in 0..5 {
            let (origin, release) = (origin.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                call(f, 1, async move {
                    let _open = release.acquire().await;
                    origin.answer(value).await
                })
                .await
            }));
        }
        while f.flights.participants(&bytes(1)) < 5 {
            tokio::task::yield_now().await;
        }
    }
    release.add_permits(1);
    let answers: Vec<Answer> = futures_util::future::try_join_all(tasks).await.unwrap();
    assert_eq!(answers, [vec![Ok(1); 5], vec![Ok(2); 5]].concat());
    assert_eq!(origin.runs(), 2, "one run per process");
    for f in [a, b] {
        assert_eq!(
            (stats(f).misses, stats(f).coalesced, stats(f).fleet_waits),
            (1, 4, 0)
        );
    }
    assert_eq!(
        world.store.calls(Operation::TakeLease),
        0,
        "a failed read leaves the lease alone"
    );
}

#[tokio::test]
async fn a_process_function_never_takes_a_lease() {
    let world = World::new();
    let f = cache(world.process(), spec(ANSWER_L1_ONLY));
    let origin = Origin::new();
    assert_eq!(call(f, 1, origin.answer(3)).await, Ok(3));
    assert_eq!(world.store.calls(Operation::TakeLease), 0);
}
