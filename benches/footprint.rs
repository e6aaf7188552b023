//! Heap use, counted by a global allocator: allocations per L1 hit (each implementation of
//! the L1 hit benchmarks, on the same keys), and bytes per entry of an L1 of 100,000 entries
//! against the raw stores.

#[path = "shared/memoized.rs"]
mod memoized;
#[path = "shared/profile.rs"]
mod profile;
#[path = "shared/results.rs"]
mod results;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use memoized::{by_hand, cached_fns, hot_email, hot_triple, tiered_fns};
use profile::{hot_id, Profile, HOT_KEYS};
use serde_json::{json, Map, Value};
use tiered::tiered_cached;

/// Counts allocations and the bytes currently allocated.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(layout.size(), Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(layout.size(), Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(new_size, Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HITS: usize = 100_000;
const ENTRIES: u64 = 100_000;

/// Allocations per call of `op` over [`HITS`] calls.
fn allocations_per_call(mut op: impl FnMut(usize)) -> f64 {
    let before = ALLOCATIONS.load(Relaxed);
    for i in 0..HITS {
        op(i);
    }
    (ALLOCATIONS.load(Relaxed) - before) as f64 / HITS as f64
}

/// Allocations per hit of `lookup`, after a first call per hot key.
fn allocations_per_hit<F: Future>(runtime: &tokio::runtime::Runtime, lookup: impl Fn(usize) -> F) -> f64 {
    runtime.block_on(async {
        for i in 0..HOT_KEYS {
            lookup(i).await;
        }
    });
    allocations_per_call(|i| {
        runtime.block_on(async { black_box(lookup(i).await) });
    })
}

fn allocations(runtime: &tokio::runtime::Runtime) -> Value {
    let value = Profile::new(1);
    let email = hot_email(1);
    let emails: Vec<String> = (0..HOT_KEYS).map(hot_email).collect();
    let email_at = |i: usize| emails[i % HOT_KEYS].clone();
    let mut per_hit = Map::new();
    let mut record = |name: &str, count: f64| {
        per_hit.insert(name.to_owned(), json!(count));
    };
    record(
        "l1_hit_u64/tiered",
        allocations_per_hit(runtime, |i| tiered_fns::profile(hot_id(i))),
    );
    record(
        "l1_hit_u64/quick_cache",
        allocations_per_hit(runtime, |i| by_hand::quick_cache_profile(hot_id(i))),
    );
    record(
        "l1_hit_u64/mini_moka",
        allocations_per_hit(runtime, |i| by_hand::mini_moka_profile(hot_id(i))),
    );
    record(
        "l1_hit_u64/mini_moka_foldhash",
        allocations_per_hit(runtime, |i| by_hand::mini_moka_foldhash_profile(hot_id(i))),
    );
    record(
        "l1_hit_u64/moka_future",
        allocations_per_hit(runtime, |i| by_hand::moka_future_profile(hot_id(i))),
    );
    record(
        "l1_hit_u64/cached",
        allocations_per_hit(runtime, |i| cached_fns::profile(hot_id(i))),
    );
    record(
        "l1_hit_string/tiered",
        allocations_per_hit(runtime, |i| tiered_fns::profile_by_email(email_at(i))),
    );
    record(
        "l1_hit_string/quick_cache",
        allocations_per_hit(runtime, |i| by_hand::quick_cache_profile_by_email(email_at(i))),
    );
    record(
        "l1_hit_string/cached",
        allocations_per_hit(runtime, |i| cached_fns::profile_by_email(email_at(i))),
    );
    let team = |i: usize| hot_triple(i);
    record(
        "l1_hit_three_args/tiered",
        allocations_per_hit(runtime, |i| {
            let (tenant, team_id, id) = team(i);
            tiered_fns::team_profile(tenant, team_id, id)
        }),
    );
    record(
        "l1_hit_three_args/quick_cache",
        allocations_per_hit(runtime, |i| {
            let (tenant, team_id, id) = team(i);
            by_hand::quick_cache_team_profile(tenant, team_id, id)
        }),
    );
    record(
        "l1_hit_three_args/cached",
        allocations_per_hit(runtime, |i| {
            let (tenant, team_id, id) = team(i);
            cached_fns::team_profile(tenant, team_id, id)
        }),
    );
    json!({
        "value_clone": allocations_per_call(|_| drop(black_box(&value).clone())),
        "string_argument": allocations_per_call(|_| drop(black_box(&email).clone())),
        "per_hit": per_hit,
    })
}

/// An L1 big enough for [`ENTRIES`] (quick_cache's shards hold slightly fewer in practice).
#[tiered_cached(l1_capacity = 100_000)]
async fn stored_profile(id: u64) -> Profile {
    Profile::new(id)
}

/// Bytes still allocated after `fill` has stored [`ENTRIES`] entries, per entry, and how many
/// `fill` says are resident.
fn bytes_per_entry(fill: impl FnOnce() -> u64) -> Value {
    let before = LIVE_BYTES.load(Relaxed);
    let resident = fill();
    let bytes = LIVE_BYTES.load(Relaxed).wrapping_sub(before);
    json!({ "resident": resident, "bytes_per_entry": bytes as f64 / ENTRIES as f64 })
}

fn stored_profile_l1_hits() -> u64 {
    tiered::stats()
        .into_iter()
        .find(|(name, _)| name.ends_with("stored_profile"))
        .map_or(0, |(_, counts)| counts.l1_hits)
}

fn memory(runtime: &tokio::runtime::Runtime) -> Value {
    let values = bytes_per_entry(|| {
        let profiles: Vec<Profile> = (0..ENTRIES).map(Profile::new).collect();
        std::mem::forget(profiles);
        ENTRIES
    });
    let tiered = bytes_per_entry(|| {
        let fill = || async {
            for id in 0..ENTRIES {
                stored_profile(id).await;
            }
        };
        runtime.block_on(fill());
        // Resident: the hits of a second pass (a lower bound: its misses evict other entries).
        let hits_before = stored_profile_l1_hits();
        runtime.block_on(fill());
        stored_profile_l1_hits() - hits_before
    });
    let mini_moka = bytes_per_entry(|| {
        use mini_moka::sync::ConcurrentCacheExt;
        let cache = mini_moka::sync::Cache::new(ENTRIES);
        for id in 0..ENTRIES {
            cache.insert(id, Profile::new(id));
        }
        cache.sync();
        let resident = cache.entry_count();
        std::mem::forget(cache);
        resident
    });
    let quick_cache = bytes_per_entry(|| {
        let cache = quick_cache::sync::Cache::new(ENTRIES as usize);
        for id in 0..ENTRIES {
            cache.insert(id, Profile::new(id));
        }
        let resident = cache.len() as u64;
        std::mem::forget(cache);
        resident
    });
    json!({
        "entries": ENTRIES,
        "value": values,
        "tiered": tiered,
        "mini_moka": mini_moka,
        "quick_cache": quick_cache,
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let allocations = allocations(&runtime);
    let memory = memory(&runtime);
    results::record(
        "footprint",
        json!({ "allocations": allocations, "memory": memory }),
    );
}
