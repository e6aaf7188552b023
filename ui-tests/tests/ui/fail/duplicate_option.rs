use tiered::tiered_cached;

#[tiered_cached(ttl = "5m", backend = "none", ttl = "10m")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
