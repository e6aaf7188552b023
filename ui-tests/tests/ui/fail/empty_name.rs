use tiered::tiered_cached;

#[tiered_cached(name = "")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
