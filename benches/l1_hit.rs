//! L1 hits: `#[tiered_cached]` against `#[cached]`, moka, and hand-written lookups over the
//! raw stores, on one thread and with every core hitting a shared set of keys.

#[path = "shared/memoized.rs"]
mod memoized;
#[path = "shared/profile.rs"]
mod profile;
#[path = "shared/threads.rs"]
mod threads;

use std::future::Future;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use memoized::{by_hand, cached_fns, hot_email, hot_triple, tiered_fns};
use profile::{hot_id, Profile, HOT_KEYS};
use threads::{current_thread, threads_together};

/// Threads of the contended benchmarks: one per core of the benchmark machine.
const THREADS: usize = 2;

/// Calls `lookup` once per hot key, so every later call is a hit.
fn fill<F: Future>(lookup: &impl Fn(usize) -> F) {
    current_thread().block_on(async {
        for i in 0..HOT_KEYS {
            lookup(i).await;
        }
    });
}

/// Time per hit on one thread, cycling through the hot keys.
fn hits<F: Future>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, lookup: impl Fn(usize) -> F) {
    fill(&lookup);
    let runtime = current_thread();
    group.bench_function(name, |b| {
        let mut i = 0;
        b.to_async(&runtime).iter(|| {
            i += 1;
            lookup(i)
        })
    });
}

/// Wall time per hit while [`THREADS`] threads hit the hot keys together: a store that
/// scales perfectly halves its single-thread time on two cores.
fn contended_hits<F: Future>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    lookup: impl Fn(usize) -> F + Sync,
) {
    fill(&lookup);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(THREADS as u64) as usize;
            threads_together(THREADS, per_thread, &lookup)
        })
    });
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("l1_hit_u64");
    let value = Profile::new(1);
    group.bench_function("value_clone", |b| b.iter(|| black_box(&value).clone()));
    hits(&mut group, "tiered", |i| tiered_fns::profile(hot_id(i)));
    hits(&mut group, "quick_cache", |i| {
        by_hand::quick_cache_profile(hot_id(i))
    });
    hits(&mut group, "mini_moka", |i| by_hand::mini_moka_profile(hot_id(i)));
    hits(&mut group, "mini_moka_foldhash", |i| {
        by_hand::mini_moka_foldhash_profile(hot_id(i))
    });
    hits(&mut group, "moka_future", |i| {
        by_hand::moka_future_profile(hot_id(i))
    });
    hits(&mut group, "cached", |i| cached_fns::profile(hot_id(i)));
    group.finish();

    // The callers pass an owned `String` to every implementation: its clone is in each figure.
    let mut group = c.benchmark_group("l1_hit_string");
    let email = hot_email(1);
    group.bench_function("argument_clone", |b| b.iter(|| black_box(&email).clone()));
    let emails: Vec<String> = (0..HOT_KEYS).map(hot_email).collect();
    let email_at = |i: usize| emails[i % HOT_KEYS].clone();
    hits(&mut group, "tiered", |i| {
        tiered_fns::profile_by_email(email_at(i))
    });
    hits(&mut group, "quick_cache", |i| {
        by_hand::quick_cache_profile_by_email(email_at(i))
    });
    hits(&mut group, "cached", |i| {
        cached_fns::profile_by_email(email_at(i))
    });
    group.finish();

    // A newtype key against the `u64` it wraps, in one group: the ratio is the cost of a user's
    // own key type on the hit path.
    let mut group = c.benchmark_group("l1_hit_newtype");
    hits(&mut group, "tiered_u64", |i| tiered_fns::profile(hot_id(i)));
    hits(&mut group, "tiered_user_id", |i| {
        tiered_fns::profile_by_user_id(tiered_fns::UserId(hot_id(i)))
    });
    group.finish();

    // The same hits through `tiered::with_outcome`, and without it (as `l1_hit_u64/tiered`).
    let mut group = c.benchmark_group("l1_hit_outcome");
    hits(&mut group, "unused", |i| tiered_fns::profile(hot_id(i)));
    hits(&mut group, "used", |i| {
        tiered::with_outcome(tiered_fns::profile(hot_id(i)))
    });
    group.finish();

    let mut group = c.benchmark_group("l1_hit_three_args");
    hits(&mut group, "tiered", |i| {
        let (tenant, team, id) = hot_triple(i);
        tiered_fns::team_profile(tenant, team, id)
    });
    hits(&mut group, "quick_cache", |i| {
        let (tenant, team, id) = hot_triple(i);
        by_hand::quick_cache_team_profile(tenant, team, id)
    });
    hits(&mut group, "cached", |i| {
        let (tenant, team, id) = hot_triple(i);
        cached_fns::team_profile(tenant, team, id)
    });
    group.finish();
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("l1_hit_u64_contended");
    contended_hits(&mut group, "tiered", |i| tiered_fns::profile(hot_id(i)));
    contended_hits(&mut group, "quick_cache", |i| {
        by_hand::quick_cache_profile(hot_id(i))
    });
    contended_hits(&mut group, "mini_moka", |i| by_hand::mini_moka_profile(hot_id(i)));
    contended_hits(&mut group, "mini_moka_foldhash", |i| {
        by_hand::mini_moka_foldhash_profile(hot_id(i))
    });
    contended_hits(&mut group, "moka_future", |i| {
        by_hand::moka_future_profile(hot_id(i))
    });
    contended_hits(&mut group, "cached", |i| cached_fns::profile(hot_id(i)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = single_thread, contended
}
criterion_main!(benches);
