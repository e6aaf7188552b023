use tiered::tiered_cached;

#[tiered_cached(backend = "none", l2_ttl = "1h")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
