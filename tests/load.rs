//! Under load: a thousand callers of one cold key share one computation, and many tasks racing
//! random invalidations never see an invalidated value. Bounded in time.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{block_on, joined_then, serial, stats_of};
use tiered::tiered_cached;
use tokio::sync::Semaphore;

static COLD_RUNS: AtomicUsize = AtomicUsize::new(0);
/// A permit per caller of `cold` that has joined the flight.
static COLD_JOINED: Semaphore = Semaphore::const_new(0);

#[tiered_cached(name = "cold")]
async fn cold(k: u64) -> u64 {
    COLD_RUNS.fetch_add(1, SeqCst);
    // A slow origin: it answers once every caller has piled up on it.
    let _ = COLD_JOINED.acquire_many(1000).await;
    k
}

#[test]
fn a_thousand_concurrent_callers_of_one_cold_key_run_the_body_once_and_read_l2_once() {
    let _serial = serial();
    block_on(async {
        let callers: Vec<_> = (0..1000)
            .map(|_| tokio::spawn(joined_then(cold(42), &COLD_JOINED)))
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 42);
        }
        assert_eq!(COLD_RUNS.load(SeqCst), 1, "one body execution");
        let stats = stats_of("cold");
        // Every L2 read is made by a flight's leader and ends in an L2 hit or a miss.
        assert_eq!((stats.misses, stats.l2_hits), (1, 0), "one L2 read");
        assert_eq!((stats.coalesced, stats.l1_hits), (999, 0));
    });
}

const KEYS: usize = 32;
/// The version each key's body returns now; bumped before each invalidation.
static VERSION: [AtomicU64; KEYS] = [const { AtomicU64::new(0) }; KEYS];
/// The newest version of each key whose invalidation has returned.
static INVALIDATED: [AtomicU64; KEYS] = [const { AtomicU64::new(0) }; KEYS];

#[tiered_cached(name = "versioned_load")]
async fn versioned(k: usize) -> u64 {
    let version = VERSION[k].load(SeqCst);
    tokio::task::yield_now().await; // let invalidations interleave with computations
    version
}

/// xorshift64*: enough randomness for picking keys, without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn after_an_invalidation_returns_no_task_observes_the_invalidated_value() {
    let _serial = serial();
    let run_for = Duration::from_secs(3);
    let (calls, invalidations) = block_on(async {
        let tasks: Vec<_> = (0..64u64)
            .map(|task| {
                tokio::spawn(async move {
                    let mut random = 0x9e37_79b9_7f4a_7c15 ^ (task + 1);
                    let (mut calls, mut invalidations) = (0u64, 0u64);
                    let started = Instant::now();
                    while started.elapsed() < run_for {
                        let k = (next_random(&mut random) % KEYS as u64) as usize;
                        if next_random(&mut random) % 10 == 0 {
                            let version = VERSION[k].fetch_add(1, SeqCst) + 1;
                            invalidate_versioned(k).await.expect("invalidate");
                            INVALIDATED[k].fetch_max(version, SeqCst);
                            invalidations += 1;
                        } else {
                            let floor = INVALIDATED[k].load(SeqCst);
                            let seen = versioned(k).await;
                            assert!(
                                seen >= floor,
                                "key {k}: got version {seen} after version {floor} was invalidated"
                            );
                            calls += 1;
                        }
                    }
                    (calls, invalidations)
                })
            })
            .collect();
        let mut totals = (0, 0);
        for task in tasks {
            let (calls, invalidations) = task.await.expect("a task saw an invalidated value");
            totals.0 += calls;
            totals.1 += invalidations;
        }
        totals
    });
    eprintln!("{calls} calls and {invalidations} invalidations in {run_for:?}, none stale");
    assert!(
        calls > 1000 && invalidations > 100,
        "the load was real: {calls} calls, {invalidations} invalidations"
    );
    let stats = stats_of("versioned_load");
    assert!(
        stats.l1_hits > 0 && stats.l2_hits + stats.misses > 0,
        "both tiers were exercised: {stats:?}"
    );
}
