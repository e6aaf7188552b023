// Every mistake is reported in one go, and the item is kept as written.
use tiered::tiered_cached;

#[tiered_cached(
    backend = "mysql",
    ttl = "5 min",
    l1_capacity = "many",
    colour = "red",
    on_failure = "retry(300)"
)]
fn f<T>(value: T) -> T {
    value
}

fn main() {
    assert_eq!(f(1), 1);
}
