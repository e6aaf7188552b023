use tiered::tiered_cached;

#[tiered_cached(on_failure = "retry(0)")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
