use tiered::tiered_cached;

#[tiered_cached]
async fn f(id: u64) -> impl std::fmt::Display {
    id
}

fn main() {}
