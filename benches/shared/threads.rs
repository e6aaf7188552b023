//! Lookups from several threads at once, each on a current-thread runtime of its own.

use std::future::Future;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use super::profile::HOT_KEYS;

/// A runtime for one benchmark thread.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// The time `threads` threads started together take for `per_thread` lookups each, from their
/// own offsets in the hot keys: the slower thread's.
pub fn threads_together<F: Future>(
    threads: usize,
    per_thread: usize,
    lookup: &(impl Fn(usize) -> F + Sync),
) -> Duration {
    let start = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let start = &start;
                scope.spawn(move || {
                    let runtime = current_thread();
                    let offset = thread * HOT_KEYS / threads;
                    start.wait();
                    let began = Instant::now();
                    runtime.block_on(async {
                        for i in offset..offset + per_thread {
                            black_box(lookup(i).await);
                        }
                    });
                    began.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|thread| thread.join().expect("a benchmark thread"))
            .max()
            .unwrap_or(Duration::ZERO)
    })
}
