use tiered::tiered_cached;

#[tiered_cached]
async fn f(id: u64, #[cfg(debug_assertions)] _trace: bool) -> u64 {
    id
}

fn main() {}
