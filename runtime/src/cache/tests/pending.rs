//! Invalidations whose L2 step failed: owed, replayed once L2 answers, and never overtaken by
//! this process's own reads and writes of the function.

use super::*;
use crate::pending::MAX_KEYS;

fn key(k: u64) -> Resolved<Key> {
    Parts((k,)).resolve()
}

/// Replays what `process` owes, as its listener does once L2 answers again.
async fn replay(process: &Process) -> Result<(), BackendError> {
    process.installed().expect("installed").l2.replay(None).await
}

fn owed_counts<R: Output<u64> + 'static>(f: &'static FnCache<u64, Key, R>) -> (u64, u64) {
    let counts = stats(f);
    (counts.invalidations_queued, counts.invalidations_replayed)
}

#[tokio::test]
async fn a_failed_invalidation_reaches_l2_and_the_other_processes_once_l2_answers() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), spec(L1_ONLY)),
        cache(world.process(), spec(L1_ONLY)),
    );
    assert_eq!(call(b, 1, async { 1 }).await, 1);
    world
        .store
        .inject(Operation::Invalidate, Fault::Fail(unavailable()), None);
    a.invalidate(key(1)).await.expect("l1_only absorbs it");
    assert_eq!(owed_counts(a), (1, 0));
    assert_eq!(call(b, 1, async { 2 }).await, 1, "not announced yet");
    assert!(world.store.row(&id(1)).unwrap().value.is_some());
    assert!(replay(a.process).await.is_err(), "L2 still fails");

    world.store.heal();
    replay(a.process).await.expect("replayed");
    assert_eq!(owed_counts(a), (1, 1));
    assert_eq!(world.store.row(&id(1)).unwrap().value, None, "a tombstone");
    assert_eq!(call(b, 1, async { 2 }).await, 2, "the notice evicted it");
    replay(a.process).await.expect("nothing left");
    assert_eq!(world.store.calls(Operation::Invalidate), 3);
}

#[tokio::test]
async fn a_function_that_owes_an_invalidation_neither_reads_nor_writes_l2_until_it_is_replayed() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    assert_eq!(call(f, 1, async { 1 }).await, 1);
    world
        .store
        .inject(Operation::Invalidate, Fault::Fail(unavailable()), Some(2));
    f.invalidate(key(1)).await.unwrap();
    // Reads still work; but the old row must not come back, nor a value be stored over it
    // before its tombstone: the replay comes first, and it fails.
    assert_eq!(call(f, 1, async { 2 }).await, 2);
    assert_eq!(
        world.store.calls(Operation::Read),
        1,
        "no read since the first call"
    );
    assert_eq!(world.store.calls(Operation::Write), 1);
    assert_eq!(call(f, 1, async { 3 }).await, 2, "kept in L1 alone");

    // L2 answers: the next operation of the function replays first.
    assert_eq!(call(f, 2, async { 20 }).await, 20);
    assert_eq!(world.store.row(&id(1)).unwrap().value, None);
    assert_eq!(owed_counts(f), (1, 1));
    assert_eq!(world.store.calls(Operation::Write), 2, "key 2 was written back");
}

#[tokio::test]
async fn every_mode_owes_a_failed_invalidation_but_not_one_that_would_fail_again() {
    for on_failure in [OnFailure::L1Only, OnFailure::Retry { attempts: 2 }, propagate()] {
        let world = World::new();
        let f = cache(world.process(), spec(on_failure));
        world
            .store
            .inject(Operation::InvalidateAll, Fault::Fail(unavailable()), None);
        let returned = f.invalidate_all().await;
        assert_eq!(returned.is_err(), on_failure.mode().propagates());
        assert_eq!(owed_counts(f), (1, 0), "{on_failure:?}");
    }
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    let denied = BackendError::Query {
        operation: "invalidate",
        table: "t".into(),
        target: "memory".into(),
        message: "permission denied (SQLSTATE 42501)".into(),
        retryable: false,
    };
    world
        .store
        .inject(Operation::Invalidate, Fault::Fail(denied), None);
    f.invalidate(key(1)).await.unwrap();
    assert_eq!(owed_counts(f), (0, 0));
}

#[tokio::test]
async fn past_the_bound_the_owed_keys_are_replayed_as_one_invalidate_all() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    assert_eq!(call(f, 0, async { 1 }).await, 1);
    world
        .store
        .inject(Operation::Invalidate, Fault::Fail(unavailable()), None);
    for k in 0..=MAX_KEYS as u64 {
        f.invalidate(key(k)).await.unwrap();
    }
    assert_eq!(owed_counts(f).0, MAX_KEYS as u64 + 1);
    world.store.heal();
    // The breaker opened on the way; the listener's return lets it probe at once.
    f.process.installed().unwrap().l2.server_back();
    let invalidations = world.store.calls(Operation::Invalidate);
    replay(f.process).await.expect("replayed");
    assert_eq!(world.store.calls(Operation::Invalidate), invalidations);
    assert_eq!(world.store.calls(Operation::InvalidateAll), 1);
    assert_eq!(owed_counts(f).1, 1);
    assert_eq!(call(f, 0, async { 2 }).await, 2, "the old row is of a dead epoch");
}

#[tokio::test(start_paused = true)]
async fn callers_of_a_function_that_owes_do_not_each_wait_out_a_failing_replay() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    world.store.inject(Operation::Invalidate, Fault::Hang, None);
    f.invalidate(key(1)).await.unwrap();
    let started = tokio::time::Instant::now();
    let answers = tokio::join!(
        call(f, 1, async { 1 }),
        call(f, 2, async { 2 }),
        call(f, 3, async { 3 }),
        call(f, 4, async { 4 }),
        call(f, 5, async { 5 })
    );
    assert_eq!(answers, (1, 2, 3, 4, 5));
    // The first caller's replay times out; the next one tries again (the first one started
    // before it came), and the other three take its answer.
    assert_eq!(started.elapsed(), 2 * L2_TIMEOUT);
    assert_eq!(world.store.calls(Operation::Invalidate), 3);
    assert_eq!(world.store.calls(Operation::Read), 0);
}
