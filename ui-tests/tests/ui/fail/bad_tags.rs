use tiered::tiered_cached;

#[tiered_cached(tags = "[format!(\"user:{id}\")")]
async fn unclosed(id: u64) -> u64 {
    id
}

#[tiered_cached(tags = "[id]")]
async fn not_strings(id: u64) -> u64 {
    id
}

fn main() {}
