// fail_safe, the timeouts, eager_refresh and cache_none compile on the shapes they accept and
// answer without a database.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tiered::tiered_cached;

#[derive(Debug, PartialEq)]
enum AppError {
    TimedOut,
}

impl From<tiered::TimedOut> for AppError {
    fn from(_: tiered::TimedOut) -> Self {
        AppError::TimedOut
    }
}

#[tiered_cached(
    ttl = "10m",
    fail_safe = "1h",
    fail_safe_throttle = "10s",
    timeout = "100ms",
    hard_timeout = "2s",
    eager_refresh = 0.8
)]
async fn profile(id: u64) -> Result<String, AppError> {
    Ok(format!("user {id}"))
}

static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(backend = "none", cache_none = false)]
async fn lookup(id: u64) -> Result<Option<u64>, AppError> {
    LOOKUPS.fetch_add(1, SeqCst);
    Ok((id > 0).then_some(id))
}

#[tokio::main]
async fn main() {
    assert_eq!(profile(1).await, Ok("user 1".to_owned()));
    assert_eq!(profile(1).await, Ok("user 1".to_owned()));
    assert_eq!(lookup(0).await, Ok(None));
    assert_eq!(lookup(0).await, Ok(None));
    assert_eq!(lookup(3).await, Ok(Some(3)));
    assert_eq!(lookup(3).await, Ok(Some(3)));
    assert_eq!(LOOKUPS.load(SeqCst), 3);
}
