#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use tiered_macros::tiered_cached;
pub use tiered_runtime::{
    clear_all, clear_l1, deadpool_postgres, invalidate_tag, l2_evictions, shutdown, stats, with_outcome,
    BackendError, BackendFailureMode, FunctionStats, Outcome, Runtime, RuntimeBuilder, TimedOut,
};

/// Publishes tiered's counters and gauges to the [`metrics`](https://docs.rs/metrics)
/// recorder the application installed (e.g. `metrics-exporter-prometheus`). With the
/// `metrics` feature (off by default; without it no metrics code is compiled).
///
/// Call it before each scrape, as a `/metrics` handler that renders the exporter would, or
/// from a periodic task. It reads the counts behind [`stats`] when called, so an L1 hit costs
/// nothing more with the feature on. The two histograms are recorded as operations finish.
/// Every series but the process-wide gauges has a `cache` label (the cache name, as in
/// [`stats`]).
///
/// | metric | labels | what |
/// |---|---|---|
/// | `tiered_calls_total` | `cache`, `outcome` | calls by [`Outcome`]: `l1_hit`, `l2_hit`, `coalesced`, `computed` (origin calls: `misses` in [`stats`]) |
/// | `tiered_backend_errors_total` | `cache` | failed L2 operations, each attempt |
/// | `tiered_retries_total` | `cache` | retries under `retry(N)` |
/// | `tiered_short_circuited_total` | `cache` | L2 operations skipped while the circuit breaker was open |
/// | `tiered_invalidations_total` | `cache` | invalidations applied to this process's L1 |
/// | `tiered_l1_entries` | `cache` | gauge: entries held in L1 (expired and invalidated ones until evicted or overwritten) |
/// | `tiered_breaker_state` | | gauge: 0 closed, 1 open, 2 half-open (a probe in flight); set while a runtime is installed |
/// | `tiered_listener_connected` | | gauge: 1 while the invalidation listener is connected, else 0 |
/// | `tiered_l2_operation_seconds` | `operation` | histogram: each L2 operation the breaker let through (`read`, `write`, `refresh`, `invalidate`, `invalidate_all`), failures and timeouts included |
/// | `tiered_body_seconds` | `cache` | histogram: each run of a function's body |
///
/// ```no_run
/// # async fn run() {
/// // Published every 15 seconds, for an exporter that pushes.
/// let mut every = tokio::time::interval(std::time::Duration::from_secs(15));
/// loop {
///     every.tick().await;
///     tiered::export_metrics();
/// }
/// # }
/// ```
#[cfg(feature = "metrics")]
pub fn export_metrics() {
    tiered_runtime::export_metrics();
}

/// What `#[tiered_cached]` expands to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use tiered_runtime::__private::*;
}
