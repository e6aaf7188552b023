use tiered::tiered_cached;

#[tiered_cached(tll = "5m")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
