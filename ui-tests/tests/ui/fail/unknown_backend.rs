use tiered::tiered_cached;

#[tiered_cached(backend = "redis")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
