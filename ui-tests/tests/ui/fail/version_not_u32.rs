use tiered::tiered_cached;

#[tiered_cached(version = 4294967296)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
