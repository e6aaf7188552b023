use tiered::tiered_cached;

#[tiered_cached(ttl = "0s")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
