use tiered::tiered_cached;

#[tiered_cached(key = "tenant, id")]
async fn f(tenant: &str, id: u64) -> u64 {
    let _ = tenant;
    id
}

fn main() {}
