use tiered::tiered_cached;

#[tiered_cached(cache_none = false)]
async fn not_an_option(id: u64) -> u64 {
    id
}

#[tiered_cached(cache_none = "no")]
async fn not_a_bool(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
