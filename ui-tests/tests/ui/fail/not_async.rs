use tiered::tiered_cached;

#[tiered_cached]
fn f(id: u64) -> u64 {
    id
}

fn main() {
    // The item is kept as written: callers still compile.
    assert_eq!(f(1), 1);
}
