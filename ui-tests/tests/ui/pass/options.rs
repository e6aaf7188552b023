// Every option, each at least once, with what can be observed without a database.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tiered::tiered_cached;

static SQUARES: AtomicUsize = AtomicUsize::new(0);
static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(
    backend = "none",
    on_failure = "l1_only",
    l1_ttl = "200ms",
    l1_capacity = 1_000,
    name = "ui::options::square",
    version = 3
)]
async fn square(x: u64) -> u64 {
    SQUARES.fetch_add(1, SeqCst);
    x * x
}

// No PostgreSQL is installed: `backend = "pg"` runs on L1 alone.
#[tiered_cached(
    backend = "pg",
    on_failure = "retry(3)",
    ttl = "10m",
    l2_ttl = "1d",
    key = "id",
    write = "through"
)]
async fn lookup(id: u32, trace: bool) -> Result<String, std::io::Error> {
    LOOKUPS.fetch_add(1, SeqCst);
    let _ = trace;
    Ok(format!("user {id}"))
}

#[tiered_cached(on_failure = "retry(255)", ttl = "1s", l1_ttl = "250ms", write = "behind")]
async fn behind(id: u32) -> u32 {
    id + 1
}

#[tokio::main]
async fn main() {
    assert_eq!(square(3).await, 9);
    assert_eq!(square(3).await, 9);
    assert_eq!(SQUARES.load(SeqCst), 1, "the second call is an L1 hit");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(square(3).await, 9);
    assert_eq!(SQUARES.load(SeqCst), 2, "l1_ttl expired the entry");

    assert_eq!(lookup(1, false).await.unwrap(), "user 1");
    assert_eq!(lookup(1, true).await.unwrap(), "user 1");
    assert_eq!(LOOKUPS.load(SeqCst), 1, "`trace` is not part of the key");

    assert_eq!(behind(1).await, 2);

    let stats = tiered::stats();
    let square = &stats["ui::options::square"];
    assert_eq!((square.l1_hits, square.misses), (1, 2));
    let lookup = stats
        .iter()
        .find(|(name, _)| name.ends_with("::lookup"))
        .expect("named after its module path")
        .1;
    assert_eq!((lookup.l1_hits, lookup.misses), (1, 1));
}
