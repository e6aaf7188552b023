#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use tiered_macros::tiered_cached;
pub use tiered_runtime::{
    clear_l1, deadpool_postgres, l2_evictions, shutdown, stats, BackendError, BackendFailureMode,
    FunctionStats, Runtime, RuntimeBuilder,
};

/// What `#[tiered_cached]` expands to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use tiered_runtime::__private::*;
}
