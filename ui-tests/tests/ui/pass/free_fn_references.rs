// A free fn whose key is made of borrowed arguments: `&str`, `&[u8]` and `&Struct`.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use serde::{Deserialize, Serialize};
use tiered::tiered_cached;

#[derive(Serialize)]
struct Filter {
    kind: String,
    limit: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Report {
    title: String,
    bytes: usize,
    lines: Vec<String>,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(ttl = "5m")]
async fn report(title: &str, data: &[u8], filter: &Filter) -> Report {
    RUNS.fetch_add(1, SeqCst);
    Report {
        title: title.to_owned(),
        bytes: data.len(),
        lines: vec![filter.kind.clone(); filter.limit],
    }
}

// Lifetime parameters are fine: only the cached value must own its data.
#[tiered_cached(backend = "none")]
async fn greet<'a>(greeting: &'a str, name: &'a str) -> String {
    format!("{greeting}, {name}")
}

#[tokio::main]
async fn main() {
    let filter = Filter {
        kind: "error".into(),
        limit: 2,
    };
    let first = report("daily", b"abc", &filter).await;
    assert_eq!(first.lines, ["error", "error"]);
    assert_eq!(report("daily", b"abc", &filter).await, first);
    assert_eq!(RUNS.load(SeqCst), 1);

    report("daily", b"abcd", &filter).await;
    report(
        "daily",
        b"abc",
        &Filter {
            kind: "error".into(),
            limit: 3,
        },
    )
    .await;
    assert_eq!(RUNS.load(SeqCst), 3, "every argument is part of the key");

    invalidate_report("daily", b"abc", &filter).await.unwrap();
    report("daily", b"abc", &filter).await;
    assert_eq!(RUNS.load(SeqCst), 4, "invalidated");

    assert_eq!(refresh_report("daily", b"abc", &filter).await, first);
    assert_eq!(RUNS.load(SeqCst), 5, "refresh runs the body");
    report("daily", b"abc", &filter).await;
    assert_eq!(RUNS.load(SeqCst), 5, "and stores its result");

    invalidate_all_report().await.unwrap();
    report("daily", b"abcd", &filter).await;
    assert_eq!(RUNS.load(SeqCst), 6, "invalidate_all drops every entry");

    assert_eq!(greet("hello", "ann").await, "hello, ann");
    assert_eq!(refresh_greet("hello", "ann").await, "hello, ann");
}
