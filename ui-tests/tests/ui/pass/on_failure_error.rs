// `on_failure = "error"`: backend errors reach the caller through `E: From<BackendError>`.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tiered::{tiered_cached, BackendError};

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("cache backend: {0}")]
    Backend(#[from] BackendError),
    #[error("not found: {0}")]
    NotFound(u64),
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(on_failure = "error", ttl = "30s")]
async fn profile(id: u64) -> Result<String, AppError> {
    RUNS.fetch_add(1, SeqCst);
    if id == 0 {
        return Err(AppError::NotFound(id));
    }
    Ok(format!("profile {id}"))
}

#[tiered_cached(backend = "none", on_failure = "error")]
async fn local(id: u64) -> Result<u64, AppError> {
    RUNS.fetch_add(1, SeqCst);
    Ok(id)
}

#[tokio::main]
async fn main() {
    // No PostgreSQL is installed: under "error" a backend error is the caller's to handle,
    // as an `AppError` (the policy itself is tested in tests/failure_modes.rs).
    assert!(matches!(
        profile(1).await,
        Err(AppError::Backend(BackendError::NotConfigured))
    ));
    assert!(matches!(
        refresh_profile(1).await,
        Err(AppError::Backend(BackendError::NotConfigured))
    ));
    assert_eq!(invalidate_profile(1).await, Err(BackendError::NotConfigured));
    assert_eq!(invalidate_all_profile().await, Err(BackendError::NotConfigured));

    // Without an L2 there is nothing to fail.
    assert_eq!(local(7).await.unwrap(), 7);
    assert_eq!(local(7).await.unwrap(), 7);
    invalidate_local(7).await.unwrap();
    invalidate_all_local().await.unwrap();
    let runs = RUNS.load(SeqCst);
    assert_eq!(local(7).await.unwrap(), 7);
    assert_eq!(RUNS.load(SeqCst), runs + 1);
}
