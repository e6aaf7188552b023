use tiered::tiered_cached;

#[tiered_cached(on_failure = "error")]
async fn f(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
