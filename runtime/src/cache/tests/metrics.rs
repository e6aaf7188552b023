//! The `metrics` feature over the same harness: what `export_metrics` publishes, and the
//! latencies recorded as operations finish.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;

use super::*;
use crate::export::publish;

/// A recorder for this test's thread alone (tests run in parallel, each on its own thread,
/// and `#[tokio::test]` runs its tasks on the test's thread).
struct Recorded {
    snapshotter: Snapshotter,
    _guard: ::metrics::LocalRecorderGuard<'static>,
}

impl Recorded {
    fn start() -> Self {
        let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
        Recorded {
            snapshotter: recorder.snapshotter(),
            _guard: ::metrics::set_default_local_recorder(recorder),
        }
    }

    /// What was recorded since the last time (a snapshot drains the recorder).
    fn take(&self) -> Metrics {
        Metrics(
            self.snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let (kind, key) = key.into_parts();
                    let mut labels: Vec<String> = key
                        .labels()
                        .map(|label| format!("{}={}", label.key(), label.value()))
                        .collect();
                    labels.sort();
                    (kind, key.name().to_owned(), labels, value)
                })
                .collect(),
        )
    }
}

/// Metrics as recorded: kind, name, labels sorted as `key=value`, value.
struct Metrics(Vec<(MetricKind, String, Vec<String>, DebugValue)>);

impl Metrics {
    fn value(&self, name: &str, labels: &[&str]) -> Option<&DebugValue> {
        let mut labels: Vec<String> = labels.iter().map(|label| (*label).to_owned()).collect();
        labels.sort();
        self.0
            .iter()
            .find(|(_, n, l, _)| n == name && *l == labels)
            .map(|(_, _, _, value)| value)
    }

    fn counter(&self, name: &str, labels: &[&str]) -> u64 {
        match self.value(name, labels) {
            Some(DebugValue::Counter(count)) => *count,
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[&str]) -> f64 {
        match self.value(name, labels) {
            Some(DebugValue::Gauge(value)) => value.0,
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    /// How many durations a histogram holds.
    fn samples(&self, name: &str, labels: &[&str]) -> usize {
        match self.value(name, labels) {
            Some(DebugValue::Histogram(samples)) => samples.len(),
            None => 0,
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    /// The count of calls of cache `f` answered so.
    fn calls(&self, outcome: &str) -> u64 {
        self.counter("tiered_calls_total", &["cache=f", &format!("outcome={outcome}")])
    }
}

#[tokio::test]
async fn export_publishes_each_caches_counts_by_outcome_and_its_l1_size() {
    let recorded = Recorded::start();
    let world = World::new();
    let (a, b) = (world.process(), world.process());
    let (fa, fb) = (cache(a, spec(L1_ONLY)), cache(b, spec(L1_ONLY)));
    for key in [1, 1, 1, 2] {
        call(fa, key, async move { key }).await;
    }
    call(fb, 1, async { 0 }).await;
    fa.invalidate(fa.resolve(Parts((2u64,)))).await.unwrap();
    publish(a);
    let metrics = recorded.take();
    let calls = ["l1_hit", "l2_hit", "coalesced", "computed"].map(|outcome| metrics.calls(outcome));
    assert_eq!(calls, [2, 0, 0, 2]);
    assert_eq!(metrics.counter("tiered_invalidations_total", &["cache=f"]), 1);
    assert_eq!(metrics.counter("tiered_backend_errors_total", &["cache=f"]), 0);
    assert_eq!(metrics.gauge("tiered_l1_entries", &["cache=f"]), 1.0);
    assert_eq!(metrics.gauge("tiered_breaker_state", &[]), 0.0);
    assert_eq!(metrics.gauge("tiered_listener_connected", &[]), 1.0);
    publish(b);
    let metrics = recorded.take();
    assert_eq!(
        [metrics.calls("l2_hit"), metrics.calls("computed")],
        [1, 0],
        "B's counts"
    );
}

#[tokio::test]
async fn export_shows_the_open_breaker_the_lost_listener_and_the_skipped_operations() {
    let recorded = Recorded::start();
    let world = World::new();
    let process = world.process();
    let f = cache(process, spec(RETRY_3));
    world
        .store
        .inject(Operation::Read, Fault::Fail(unavailable()), None);
    call(f, 1, async { 1 }).await;
    call(f, 2, async { 2 }).await;
    process.listener.disconnected();
    publish(process);
    let metrics = recorded.take();
    assert_eq!(metrics.gauge("tiered_breaker_state", &[]), 1.0);
    assert_eq!(metrics.gauge("tiered_listener_connected", &[]), 0.0);
    // The first call's three failed attempts open the breaker; the second call's is skipped.
    assert_eq!(metrics.counter("tiered_backend_errors_total", &["cache=f"]), 3);
    assert_eq!(metrics.counter("tiered_retries_total", &["cache=f"]), 2);
    assert_eq!(metrics.counter("tiered_short_circuited_total", &["cache=f"]), 1);
}

#[tokio::test]
async fn l2_operations_and_bodies_are_timed_as_they_finish_and_an_l1_hit_is_not() {
    let recorded = Recorded::start();
    let world = World::new();
    let f = cache(world.process(), spec(L1_ONLY));
    call(f, 1, async { 1 }).await;
    call(f, 1, async { 1 }).await;
    f.invalidate_all().await.unwrap();
    let metrics = recorded.take();
    let operations = ["read", "write", "invalidate_all"]
        .map(|name| metrics.samples("tiered_l2_operation_seconds", &[&format!("operation={name}")]));
    assert_eq!(operations, [1, 1, 1]);
    assert_eq!(metrics.samples("tiered_body_seconds", &["cache=f"]), 1);
    assert!(
        metrics.0.iter().all(|(kind, ..)| *kind == MetricKind::Histogram),
        "counters and gauges wait for export_metrics"
    );
}
