use tiered::tiered_cached;

#[tiered_cached(ttl = "5 parsecs")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
