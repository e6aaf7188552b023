// `Result` caches only `Ok`; any other type, `Option` and `()` included, is cached as it is.
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tiered::tiered_cached;

static PARSES: AtomicUsize = AtomicUsize::new(0);
static FINDS: AtomicUsize = AtomicUsize::new(0);
static PINGS: AtomicUsize = AtomicUsize::new(0);
static READS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(backend = "none")]
async fn parse(text: String) -> Result<u32, std::num::ParseIntError> {
    PARSES.fetch_add(1, SeqCst);
    text.parse()
}

#[tiered_cached]
async fn find(id: u32) -> Option<Vec<String>> {
    FINDS.fetch_add(1, SeqCst);
    (id % 2 == 0).then(|| vec![id.to_string()])
}

#[tiered_cached(backend = "none")]
async fn ping() {
    PINGS.fetch_add(1, SeqCst);
}

// A `Result` alias: `V` is its first argument.
#[tiered_cached]
async fn read(path: &str) -> io::Result<Vec<u8>> {
    READS.fetch_add(1, SeqCst);
    match path {
        "missing" => Err(io::Error::new(io::ErrorKind::NotFound, path)),
        _ => Ok(path.as_bytes().to_vec()),
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(parse("12".into()).await, Ok(12));
    assert_eq!(parse("12".into()).await, Ok(12));
    assert_eq!(PARSES.load(SeqCst), 1);
    assert!(parse("x".into()).await.is_err());
    assert!(parse("x".into()).await.is_err());
    assert_eq!(PARSES.load(SeqCst), 3, "an `Err` is not cached");

    assert_eq!(find(1).await, None);
    assert_eq!(find(1).await, None);
    assert_eq!(FINDS.load(SeqCst), 1, "`None` is a value like any other");
    assert_eq!(find(2).await, Some(vec!["2".to_owned()]));

    ping().await;
    ping().await;
    refresh_ping().await;
    assert_eq!(PINGS.load(SeqCst), 2);

    assert_eq!(read("a").await.unwrap(), b"a");
    assert_eq!(read("a").await.unwrap(), b"a");
    assert!(read("missing").await.is_err());
    assert!(refresh_read("missing").await.is_err());
    assert_eq!(READS.load(SeqCst), 3);
}
