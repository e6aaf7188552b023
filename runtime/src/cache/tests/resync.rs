//! What a reconnected listener evicts (see `resync`): the entries of the rows L2 says changed
//! and the functions whose epoch moved, nothing else.

use super::*;

async fn outcome(f: &'static FnCache<u64, Key, u64>, key: u64) -> Outcome {
    answered(f, key, async move { key }).await.1
}

#[tokio::test]
async fn the_changed_rows_are_evicted_the_rest_stays_and_earlier_computations_do_not_store() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    for key in [2, 3] {
        assert_eq!(call(f, key, async move { key }).await, key);
    }
    let (computing, release) = held_computation(f, 1).await;
    let evicted = f
        .process
        .registry
        .evict_changed(&[], &[("f".to_owned(), id(2)), ("g".to_owned(), id(3))]);
    assert_eq!(evicted, 1, "g is not a function of this process");
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 1);
    assert_eq!(outcome(f, 2).await, Outcome::L2Hit, "evicted");
    assert_eq!(outcome(f, 3).await, Outcome::L1Hit, "kept");
    assert_eq!(
        outcome(f, 1).await,
        Outcome::L2Hit,
        "its stripe is unknown, so no computation that started earlier stored in L1"
    );
    assert_eq!(stats(f).invalidations, 1);
}

#[tokio::test]
async fn a_function_whose_epoch_moved_loses_its_whole_l1() {
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    assert_eq!(call(f, 1, async { 1 }).await, 1);
    f.process.registry.evict_changed(&["g".to_owned()], &[]);
    assert_eq!(outcome(f, 1).await, Outcome::L1Hit);
    f.process.registry.evict_changed(&["f".to_owned()], &[]);
    assert_eq!(outcome(f, 1).await, Outcome::L2Hit);
}

#[tokio::test]
async fn an_entry_computed_after_a_failed_read_is_reached_by_other_processes_invalidations() {
    let world = World::new();
    let (a, b) = (
        cache(world.process(), spec(L1_ONLY)),
        cache(world.process(), spec(L1_ONLY)),
    );
    world
        .store
        .inject(Operation::Read, Fault::Fail(unavailable()), Some(1));
    assert_eq!(call(b, 1, async { 1 }).await, 1, "L1 alone");
    a.invalidate(a.resolve(Parts((1u64,)))).await.unwrap();
    assert_eq!(call(b, 1, async { 2 }).await, 2, "the notice found it by its id");
}
