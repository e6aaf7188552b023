use tiered::tiered_cached;

#[tiered_cached(ttl = "5m")]
struct Profile;

fn main() {
    let _ = Profile;
}
