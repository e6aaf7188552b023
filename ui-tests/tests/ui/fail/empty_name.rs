use tiered::tiered_cached;

#[tiered_cached(name = "")]
async fn f(id: u64) -> u64 {
    id
}

#[tiered_cached(name = "#users")]
async fn g(id: u64) -> u64 {
    id
}

fn main() {}
