//! `backend = "pg"` functions in a process that never installed a runtime: each runs under its
//! failure policy with `BackendError::NotConfigured`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tiered::{tiered_cached, BackendError};

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error(transparent)]
    Backend(#[from] BackendError),
}

static LENIENT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached]
async fn lenient(id: u64) -> u64 {
    LENIENT_RUNS.fetch_add(1, SeqCst);
    id
}

#[tokio::test]
async fn l1_only_works_with_l1_alone() {
    assert_eq!(lenient(1).await, 1);
    assert_eq!(lenient(1).await, 1);
    assert_eq!(LENIENT_RUNS.load(SeqCst), 1);
    invalidate_lenient(1).await.expect("L1Only absorbs NotConfigured");
    assert_eq!(lenient(1).await, 1);
    assert_eq!(LENIENT_RUNS.load(SeqCst), 2);
}

static STRICT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(on_failure = "error")]
async fn strict(id: u64) -> Result<u64, AppError> {
    STRICT_RUNS.fetch_add(1, SeqCst);
    Ok(id)
}

#[tokio::test]
async fn error_mode_returns_not_configured() {
    let AppError::Backend(err) = strict(1).await.unwrap_err();
    assert_eq!(err, BackendError::NotConfigured);
    assert_eq!(STRICT_RUNS.load(SeqCst), 0);
    assert_eq!(invalidate_strict(1).await, Err(BackendError::NotConfigured));
    assert_eq!(invalidate_all_strict().await, Err(BackendError::NotConfigured));
}

static LOCAL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(backend = "none", on_failure = "error")]
async fn local_only(id: u64) -> Result<u64, AppError> {
    LOCAL_RUNS.fetch_add(1, SeqCst);
    Ok(id)
}

#[tokio::test]
async fn backend_none_never_needs_l2() {
    assert_eq!(local_only(1).await.unwrap(), 1);
    assert_eq!(local_only(1).await.unwrap(), 1);
    assert_eq!(LOCAL_RUNS.load(SeqCst), 1);
    invalidate_local_only(1).await.unwrap();
    assert_eq!(local_only(1).await.unwrap(), 1);
    assert_eq!(LOCAL_RUNS.load(SeqCst), 2);
}
