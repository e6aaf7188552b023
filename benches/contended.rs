//! L1 hits of two threads on shared keys: `#[tiered_cached]` against the same lookup by hand
//! on quick_cache (the L1's store), timed in alternating rounds so that the other load of a
//! shared machine falls on both alike; the figure is the median over the rounds.

// Two of its implementations are compared here.
#[allow(dead_code)]
#[path = "shared/memoized.rs"]
mod memoized;
#[path = "shared/profile.rs"]
mod profile;
#[path = "shared/results.rs"]
mod results;
#[path = "shared/threads.rs"]
mod threads;

use std::future::Future;

use memoized::{by_hand, tiered_fns};
use profile::{hot_id, HOT_KEYS};
use serde_json::json;
use threads::{current_thread, threads_together};

/// One per core of the benchmark machine.
const THREADS: usize = 2;
const ROUNDS: usize = 21;
const HITS_PER_THREAD: usize = 1_000_000;

/// Wall time per hit of [`THREADS`] threads started together, each making
/// [`HITS_PER_THREAD`] hits from its own offset in the hot keys: the slower thread's time
/// over all hits.
fn wall_per_hit<F: Future>(lookup: &(impl Fn(usize) -> F + Sync)) -> f64 {
    let slowest = threads_together(THREADS, HITS_PER_THREAD, lookup);
    slowest.as_nanos() as f64 / (THREADS * HITS_PER_THREAD) as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let tiered = |i| tiered_fns::profile(hot_id(i));
    let by_hand = |i| by_hand::quick_cache_profile(hot_id(i));
    current_thread().block_on(async {
        for i in 0..HOT_KEYS {
            tiered(i).await;
            by_hand(i).await;
        }
    });
    // As in any process of four threads or more: this thread and one more have hit before, so
    // the measured threads are the third and fourth to, whose per-thread state `thread_local`
    // (tiered's hit counter) keeps side by side.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let bystander = std::thread::spawn(move || {
        current_thread().block_on(tiered(0));
        released.recv().ok();
    });
    let (mut tiered_ns, mut by_hand_ns, mut ratios) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        // Either goes first in turn, so neither always runs on a warmer or calmer machine.
        let (t, h) = if round % 2 == 0 {
            let t = wall_per_hit(&tiered);
            (t, wall_per_hit(&by_hand))
        } else {
            let h = wall_per_hit(&by_hand);
            (wall_per_hit(&tiered), h)
        };
        tiered_ns.push(t);
        by_hand_ns.push(h);
        ratios.push(t / h);
    }
    drop(release);
    bystander.join().expect("the other thread");
    let (lowest, highest) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    results::record(
        "contended",
        json!({
            "threads": THREADS,
            "rounds": ROUNDS,
            "hits_per_thread": HITS_PER_THREAD,
            "tiered_ns": median(tiered_ns),
            "quick_cache_ns": median(by_hand_ns),
            "ratio_median": median(ratios),
            "ratio_lowest": lowest,
            "ratio_highest": highest,
        }),
    );
}
