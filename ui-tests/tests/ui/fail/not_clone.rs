use tiered::tiered_cached;

struct Connection;

#[tiered_cached(backend = "none")]
async fn connect(url: String) -> Connection {
    let _ = url;
    Connection
}

fn main() {}
