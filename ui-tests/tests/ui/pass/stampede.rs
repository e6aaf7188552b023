// Every form of `stampede` compiles, and without a database a fleet function computes in its
// own process.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tiered::tiered_cached;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(stampede = "fleet")]
async fn fleet(id: u64) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    id
}

#[tiered_cached(stampede = "fleet(30s)", ttl = "1m")]
async fn fleet_with_a_lease(id: u64) -> u64 {
    id
}

#[tiered_cached(backend = "none", stampede = "process")]
async fn per_process(id: u64) -> u64 {
    id
}

#[tokio::main]
async fn main() {
    assert_eq!(fleet(1).await, 1);
    assert_eq!(fleet(1).await, 1);
    assert_eq!(RUNS.load(SeqCst), 1);
    assert_eq!(fleet_with_a_lease(2).await, 2);
    assert_eq!(per_process(3).await, 3);
}
