//! Two-tier memoization for async Rust, from one attribute.
//!
//! ```ignore
//! use tiered::tiered_cached;
//!
//! #[tiered_cached(backend = "pg", on_failure = "retry(3)", ttl = "10m")]
//! async fn user_profile(id: u64) -> Result<Profile, AppError> { /* expensive */ }
//! ```
//!
//! A call answers from an in-process L1 (mini-moka), then from a shared L2 table in
//! PostgreSQL, and only then runs the body. See the README for the attribute's options, the
//! failure modes and the guarantees.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use tiered_macros::tiered_cached;
pub use tiered_runtime::{
    clear_l1, deadpool_postgres, shutdown, stats, BackendError, BackendFailureMode, FunctionStats, Runtime,
    RuntimeBuilder,
};

/// What `#[tiered_cached]` expands to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use tiered_runtime::__private::*;
}
