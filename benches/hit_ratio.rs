//! Hit ratio of each store at `#[tiered_cached]`'s default capacity (10,000 entries) on a
//! Zipf(0.99) trace over 1,000,000 keys: the L1 must not lose hits to be fast.

#[path = "shared/results.rs"]
mod results;
#[path = "shared/zipf.rs"]
mod zipf;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;

use serde_json::json;
use tiered::tiered_cached;
use zipf::Zipf;

const KEYS: usize = 1_000_000;
const EXPONENT: f64 = 0.99;
const CAPACITY: usize = 10_000;
/// Requests before counting, so every store starts the measured part full.
const WARM_UP: usize = 1_000_000;
const MEASURED: usize = 4_000_000;

/// Body executions of the memoized function being measured: one per miss.
static MISSES: AtomicU64 = AtomicU64::new(0);

fn load(id: u64) -> u64 {
    MISSES.fetch_add(1, Relaxed);
    id
}

#[tiered_cached(backend = "none")]
async fn tiered_item(id: u64) -> u64 {
    load(id)
}

#[cached::proc_macro::cached(max_size = 10_000)]
async fn cached_item(id: u64) -> u64 {
    load(id)
}

static QUICK_CACHE: LazyLock<quick_cache::sync::Cache<u64, u64>> =
    LazyLock::new(|| quick_cache::sync::Cache::new(CAPACITY));
static MINI_MOKA: LazyLock<mini_moka::sync::Cache<u64, u64, foldhash::fast::RandomState>> =
    LazyLock::new(|| {
        mini_moka::sync::Cache::builder()
            .max_capacity(CAPACITY as u64)
            .build_with_hasher(foldhash::fast::RandomState::default())
    });

async fn quick_cache_item(id: u64) -> u64 {
    QUICK_CACHE.get(&id).unwrap_or_else(|| {
        let value = load(id);
        QUICK_CACHE.insert(id, value);
        value
    })
}

async fn mini_moka_item(id: u64) -> u64 {
    MINI_MOKA.get(&id).unwrap_or_else(|| {
        let value = load(id);
        MINI_MOKA.insert(id, value);
        value
    })
}

/// The share of the measured requests answered without running the body.
async fn hit_ratio<F: std::future::Future<Output = u64>>(trace: &[u64], lookup: impl Fn(u64) -> F) -> f64 {
    let (warm_up, measured) = trace.split_at(WARM_UP);
    for &id in warm_up {
        lookup(id).await;
    }
    let before = MISSES.load(Relaxed);
    for &id in measured {
        lookup(id).await;
    }
    let misses = MISSES.load(Relaxed) - before;
    1.0 - misses as f64 / measured.len() as f64
}

fn main() {
    let trace = Zipf::new(KEYS, EXPONENT, 0x5eed).trace(WARM_UP + MEASURED);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let figures = json!({
            "keys": KEYS,
            "exponent": EXPONENT,
            "capacity": CAPACITY,
            "requests": MEASURED,
            "tiered": hit_ratio(&trace, tiered_item).await,
            "quick_cache": hit_ratio(&trace, quick_cache_item).await,
            "mini_moka": hit_ratio(&trace, mini_moka_item).await,
            "cached_lru": hit_ratio(&trace, cached_item).await,
        });
        results::record("hit_ratio", figures);
    });
}
