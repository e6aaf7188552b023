use tiered::tiered_cached;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Node {
    id: u64,
}

impl Node {
    #[tiered_cached]
    async fn next(&self, step: u64) -> Option<Self> {
        Some(Node { id: self.id + step })
    }
}

fn main() {}
