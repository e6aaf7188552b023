//! Two-tier memoization for async Rust, from one attribute.
//!
//! A call of a `#[tiered_cached]` function answers from an in-process L1 (quick_cache), then from
//! a shared L2 table in PostgreSQL, and only then runs the body — once per key, however many
//! callers arrive together. Invalidating an entry removes it from both tiers and from the L1 of
//! every other process, and a computation overtaken by an invalidation never stores its result.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use tiered::tiered_cached;
//!
//! static ORIGIN_CALLS: AtomicUsize = AtomicUsize::new(0);
//!
//! // `backend = "none"`: L1 only, so this example needs no database. With the default
//! // `backend = "pg"`, install the runtime first: `tiered::Runtime::builder()…install()`.
//! #[tiered_cached(backend = "none", ttl = "10m")]
//! async fn square(n: u64) -> u64 {
//!     ORIGIN_CALLS.fetch_add(1, Ordering::SeqCst);
//!     n * n
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tiered::BackendError> {
//! assert_eq!(square(12).await, 144);
//! assert_eq!(square(12).await, 144); // an L1 hit: the body does not run
//! assert_eq!(ORIGIN_CALLS.load(Ordering::SeqCst), 1);
//!
//! invalidate_square(12).await?; // generated next to `square`
//! assert_eq!(square(12).await, 144);
//! assert_eq!(ORIGIN_CALLS.load(Ordering::SeqCst), 2);
//! # Ok(()) }
//! ```
//!
//! See the README for the attribute's options, the failure modes and the guarantees.
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
