// `write = "behind"`: without a backend installed the value still lands in L1.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use serde::{Deserialize, Serialize};
use tiered::tiered_cached;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Page {
    id: u32,
    html: String,
}

static RENDERS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(write = "behind", on_failure = "retry(2)", ttl = "2h")]
async fn render(id: u32) -> Result<Page, std::convert::Infallible> {
    RENDERS.fetch_add(1, SeqCst);
    Ok(Page {
        id,
        html: format!("<p>{id}</p>"),
    })
}

#[tokio::main]
async fn main() {
    let page = render(1).await.unwrap();
    assert_eq!(render(1).await.unwrap(), page);
    assert_eq!(RENDERS.load(SeqCst), 1);
    tiered::shutdown().await;
}
