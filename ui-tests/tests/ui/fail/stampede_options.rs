use tiered::tiered_cached;

#[tiered_cached(stampede = "cluster")]
async fn unknown(id: u64) -> u64 {
    id
}

#[tiered_cached(stampede = "fleet(0s)")]
async fn zero_lease(id: u64) -> u64 {
    id
}

#[tiered_cached(stampede = "fleet(10 seconds)")]
async fn not_a_duration(id: u64) -> u64 {
    id
}

#[tiered_cached(backend = "none", stampede = "fleet")]
async fn nothing_to_share(id: u64) -> u64 {
    id
}

#[tiered_cached(stampede = true)]
async fn not_a_string(id: u64) -> u64 {
    id
}

fn main() {}
