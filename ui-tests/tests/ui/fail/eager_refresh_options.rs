use tiered::tiered_cached;

#[tiered_cached(ttl = "1m", eager_refresh = 1.5)]
async fn past_one(id: u64) -> u64 {
    id
}

#[tiered_cached(ttl = "1m", eager_refresh = 1)]
async fn not_a_decimal(id: u64) -> u64 {
    id
}

#[tiered_cached(eager_refresh = 0.8)]
async fn never_expires(id: u64) -> u64 {
    id
}

fn main() {}
