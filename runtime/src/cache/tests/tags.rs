//! Tags and `clear_all` over the same harness: across functions and processes, and against
//! computations in flight.

use super::*;
use crate::fanout::{clear_all_in, invalidate_tag_in};
use crate::tags::tags;

fn named(process: &'static Process, name: &'static str) -> &'static FnCache<u64, Key, u64> {
    let cache: &'static FnCache<u64, Key, u64> =
        Box::leak(Box::new(FnCache::new(name, &spec(L1_ONLY), process)));
    process.registry.register(cache);
    cache
}

/// A call of a function whose entry for `key` carries `tagged`.
async fn call_tagged(
    cache: &'static FnCache<u64, Key, u64>,
    key: u64,
    tagged: &[&str],
    body: impl Future<Output = u64>,
) -> u64 {
    let key = Parts((key,));
    match cache.hit(&key) {
        Some(value) => value,
        None => cache.call(cache.resolve_tagged(key, tags(tagged)), body).await,
    }
}

/// Starts computing key 1 of `f`, tagged `user:1`, with a body held until the returned gate
/// opens; returns the caller's task.
async fn held_tagged(f: &'static FnCache<u64, Key, u64>) -> (tokio::task::JoinHandle<u64>, Arc<Notify>) {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let task = tokio::spawn({
        let (started, release) = (started.clone(), release.clone());
        async move {
            call_tagged(f, 1, &["user:1"], async move {
                started.notify_one();
                release.notified().await;
                7
            })
            .await
        }
    });
    started.notified().await;
    (task, release)
}

#[tokio::test]
async fn a_tag_invalidates_its_entries_in_every_function_and_process_and_nothing_else() {
    let world = World::new();
    let (here, there) = (world.process(), world.process());
    let (profile, orders) = (named(here, "profile"), named(here, "orders"));
    let remote = named(there, "profile");
    let origin = Origin::new();
    assert_eq!(call_tagged(profile, 1, &["user:1"], origin.value(10)).await, 10);
    assert_eq!(
        call_tagged(orders, 1, &["user:1", "orders"], origin.value(11)).await,
        11
    );
    assert_eq!(call_tagged(profile, 2, &["user:2"], origin.value(20)).await, 20);
    assert_eq!(call(profile, 3, origin.value(30)).await, 30, "untagged");
    assert_eq!(
        call_tagged(remote, 1, &["user:1"], origin.value(99)).await,
        10,
        "from L2"
    );
    assert_eq!(origin.runs(), 4);

    invalidate_tag_in(here, "user:1").await.expect("invalidated");

    assert_eq!(call_tagged(profile, 1, &["user:1"], origin.value(12)).await, 12);
    assert_eq!(
        call_tagged(orders, 1, &["user:1", "orders"], origin.value(13)).await,
        13
    );
    assert_eq!(origin.runs(), 6, "both tagged entries were recomputed");
    assert_eq!(call_tagged(profile, 2, &["user:2"], origin.value(0)).await, 20);
    assert_eq!(call(profile, 3, origin.value(0)).await, 30);
    assert_eq!(origin.runs(), 6, "other tags and untagged entries are kept");
    assert_eq!(
        call_tagged(remote, 1, &["user:1"], origin.value(99)).await,
        12,
        "the other process dropped its L1 entry and read the new row"
    );
    assert_eq!(
        (stats(profile).tag_invalidations, stats(remote).tag_invalidations),
        (1, 1)
    );
}

#[tokio::test]
async fn a_computation_overtaken_by_its_tags_invalidation_stores_nowhere() {
    let world = World::new();
    let process = world.process();
    let f = named(process, "f");
    let (computing, release) = held_tagged(f).await;
    invalidate_tag_in(process, "user:1").await.unwrap();
    release.notify_one();
    assert_eq!(computing.await.unwrap(), 7, "its own caller gets it");
    assert_eq!(f.hit(&Parts((1u64,))), None, "not in L1");
    assert!(world.store.row(&id(1)).is_none(), "not in L2");
    let origin = Origin::new();
    assert_eq!(call_tagged(f, 1, &["user:1"], origin.value(8)).await, 8);
}

#[tokio::test]
async fn a_computation_of_another_tag_is_stored() {
    let world = World::new();
    let process = world.process();
    let f = named(process, "f");
    invalidate_tag_in(process, "user:2").await.unwrap();
    assert_eq!(call_tagged(f, 1, &["user:1"], async { 7 }).await, 7);
    assert_eq!(f.hit(&Parts((1u64,))), Some(7));
}

#[tokio::test]
async fn clear_all_empties_every_function_in_both_tiers_and_every_process() {
    let world = World::new();
    let (here, there) = (world.process(), world.process());
    let (a, b, remote) = (named(here, "a"), named(here, "b"), named(there, "a"));
    let origin = Origin::new();
    assert_eq!(call(a, 1, origin.value(1)).await, 1);
    assert_eq!(call_tagged(b, 1, &["t"], origin.value(2)).await, 2);
    assert_eq!(call(remote, 1, origin.value(9)).await, 1, "from L2");
    clear_all_in(here).await.expect("cleared");
    assert_eq!(call(a, 1, origin.value(3)).await, 3);
    assert_eq!(call_tagged(b, 1, &["t"], origin.value(4)).await, 4);
    assert_eq!(
        call(remote, 1, origin.value(5)).await,
        3,
        "L1 dropped; L2 has a's new row"
    );
    assert_eq!(origin.runs(), 4);
}

#[tokio::test]
async fn when_l2_cannot_be_updated_the_error_is_returned_and_l1_drops_the_entries_anyway() {
    let world = World::new();
    let process = world.process();
    let f = named(process, "f");
    assert_eq!(call_tagged(f, 1, &["user:1"], async { 7 }).await, 7);
    world
        .store
        .inject(Operation::InvalidateTag, Fault::Fail(unavailable()), Some(1));
    assert_eq!(invalidate_tag_in(process, "user:1").await, Err(unavailable()));
    assert_eq!(f.hit(&Parts((1u64,))), None);
}

#[tokio::test]
async fn a_caller_after_a_tag_invalidation_does_not_join_a_computation_from_before() {
    let world = World::new();
    let process = world.process();
    let f = named(process, "f");
    let (before, release) = held_tagged(f).await;
    invalidate_tag_in(process, "user:1").await.unwrap();
    assert_eq!(
        call_tagged(f, 1, &["user:1"], async { 8 }).await,
        8,
        "a computation of its own"
    );
    release.notify_one();
    assert_eq!(before.await.unwrap(), 7);
}

#[tokio::test]
async fn a_row_written_under_other_tags_is_not_taken_for_the_entry() {
    let world = World::new();
    let (a, b) = (named(world.process(), "f"), named(world.process(), "f"));
    assert_eq!(call_tagged(a, 1, &["a"], async { 7 }).await, 7);
    invalidate_tag_in(a.process, "a").await.unwrap();
    assert_eq!(
        call_tagged(b, 1, &["b"], async { 8 }).await,
        8,
        "the row carries tag a, whatever the sums say"
    );
}
