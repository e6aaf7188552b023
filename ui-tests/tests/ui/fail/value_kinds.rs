// Each option's value has a kind: a string, or an integer for `l1_capacity` and `version`.
use tiered::tiered_cached;

#[tiered_cached(ttl = 5, version = "1", key, write = through)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
