use tiered::tiered_cached;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
}

impl User {
    // An associated fn without a receiver: a free fn is what works.
    #[tiered_cached]
    async fn find(id: u64) -> Option<Self> {
        Some(User { id })
    }
}

fn main() {}
