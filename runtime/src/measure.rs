//! The `metrics` feature's latencies, recorded as operations finish (see `export` for the rest).

use std::time::Duration;

use metrics::histogram;

/// Records one admitted L2 operation.
pub(crate) fn l2_operation(operation: &'static str, took: Duration) {
    let operation = match operation {
        "invalidate all" => "invalidate_all",
        operation => operation,
    };
    histogram!("tiered_l2_operation_seconds", "operation" => operation).record(took);
}

/// Records one run of a function's body.
pub(crate) fn body_ran(cache: &'static str, took: Duration) {
    histogram!("tiered_body_seconds", "cache" => cache).record(took);
}
