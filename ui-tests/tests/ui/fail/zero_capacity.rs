use tiered::tiered_cached;

#[tiered_cached(l1_capacity = 0)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
