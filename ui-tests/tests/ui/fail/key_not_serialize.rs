use tiered::tiered_cached;

struct Query {
    text: String,
}

#[tiered_cached(backend = "none")]
async fn run(query: &Query, limit: u32) -> usize {
    query.text.len() + limit as usize
}

fn main() {}
