//! The `metrics` feature's export: tiered's counts and gauges through the `metrics` facade.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};

use crate::process::{Process, PROCESS};

/// Publishes tiered's counters and gauges to the installed `metrics` recorder; what it
/// publishes is listed at `tiered::export_metrics`, the way to call it.
pub fn export_metrics() {
    publish(&PROCESS);
}

/// [`export_metrics`] for one process (unit tests simulate several).
pub(crate) fn publish(process: &Process) {
    describe();
    for (cache, counts) in process.registry.stats() {
        let calls = [
            ("l1_hit", counts.l1_hits),
            ("l2_hit", counts.l2_hits),
            ("coalesced", counts.coalesced),
            ("computed", counts.misses),
        ];
        for (outcome, count) in calls {
            counter!("tiered_calls_total", "cache" => cache.clone(), "outcome" => outcome).absolute(count);
        }
        let others = [
            ("tiered_backend_errors_total", counts.backend_errors),
            ("tiered_retries_total", counts.retries),
            ("tiered_short_circuited_total", counts.short_circuited),
            ("tiered_invalidations_total", counts.invalidations),
        ];
        for (name, count) in others {
            counter!(name, "cache" => cache.clone()).absolute(count);
        }
    }
    for (cache, entries) in process.registry.l1_entries() {
        gauge!("tiered_l1_entries", "cache" => cache).set(entries as f64);
    }
    if let Some(installed) = process.installed() {
        gauge!("tiered_breaker_state").set(installed.l2.breaker().state_code());
    }
    gauge!("tiered_listener_connected").set(u8::from(process.listener.listening()));
}

/// What each metric is, for exporters that show it (Prometheus `# HELP`). Cheap enough to
/// repeat at each export, so a recorder installed later still gets it.
fn describe() {
    describe_counter!(
        "tiered_calls_total",
        "Calls of cached functions by how they were answered."
    );
    describe_counter!(
        "tiered_backend_errors_total",
        "Failed L2 operations, each attempt."
    );
    describe_counter!("tiered_retries_total", "Retries of L2 operations under retry(N).");
    describe_counter!(
        "tiered_short_circuited_total",
        "L2 operations skipped while the circuit breaker was open."
    );
    describe_counter!(
        "tiered_invalidations_total",
        "Invalidations applied to this process's L1."
    );
    describe_gauge!("tiered_l1_entries", "Entries held in L1.");
    describe_gauge!(
        "tiered_breaker_state",
        "The L2 circuit breaker: 0 closed, 1 open, 2 half-open."
    );
    describe_gauge!(
        "tiered_listener_connected",
        "1 while the invalidation listener is connected."
    );
    describe_histogram!(
        "tiered_l2_operation_seconds",
        Unit::Seconds,
        "Duration of L2 operations."
    );
    describe_histogram!(
        "tiered_body_seconds",
        Unit::Seconds,
        "Duration of cached functions' bodies."
    );
}
