//! Each `BackendFailureMode` with PostgreSQL unreachable (a proxy that refuses or stalls, or the
//! server itself stopped), and recovery once it is back — without restarting the process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use common::{block_on, eventually, query_i64, stats_of, Proxied as Setup};
use tiered::{tiered_cached, BackendError};
use tiered_testkit::ProxyMode;

const L2_TIMEOUT: Duration = Duration::from_millis(500);

/// The runtime is installed through a proxy, so tests can take the server away.
fn setup() -> (MutexGuard<'static, ()>, &'static Setup) {
    Setup::shared(|builder| {
        builder
            .l2_timeout(L2_TIMEOUT)
            .retry_base_delay(Duration::from_millis(20))
            .retry_max_delay(Duration::from_millis(200))
            .breaker_threshold(u32::MAX) // the breaker has its own tests
    })
}

impl Setup {
    /// Calls `call` (in an empty L1) until `function` has `rows` rows holding a value: the
    /// listener reconnects as L2 comes back, and a computation its reconnection overlaps is
    /// kept out of L2 (see `store`), so the first call after recovery may not write.
    async fn written_again<F: std::future::Future<Output = u64>>(
        &self,
        function: &str,
        rows: i64,
        call: impl Fn() -> F,
    ) {
        eventually("L2 is written again after recovery", || async {
            tiered::clear_l1();
            call().await;
            self.live_rows(function).await == rows
        })
        .await;
    }

    /// Rows holding a value for `function`, read directly from the server (not via the proxy).
    async fn live_rows(&self, function: &str) -> i64 {
        query_i64(&format!(
            "SELECT count(*) FROM {} WHERE function = '{function}' AND value IS NOT NULL",
            self.table
        ))
        .await[0]
    }
}

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error(transparent)]
    Backend(#[from] BackendError),
}

static LENIENT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "lenient")]
async fn lenient(id: u64) -> u64 {
    LENIENT_RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn l1_only_succeeds_with_the_server_down_and_uses_l2_again_once_it_is_back() {
    let (_serial, setup) = setup();
    block_on(async {
        setup.proxy.set_mode(ProxyMode::Refuse);
        assert_eq!(lenient(1).await, 1, "the call succeeds without L2");
        assert_eq!(lenient(1).await, 1);
        assert_eq!(LENIENT_RUNS.load(SeqCst), 1, "L1 alone served the second call");
        assert!(stats_of("lenient").backend_errors >= 1);
        invalidate_lenient(1)
            .await
            .expect("L1Only invalidation succeeds with L2 down");

        setup.proxy.set_mode(ProxyMode::Pass);
        setup.written_again("lenient", 1, || lenient(2)).await;
        tiered::clear_l1();
        assert_eq!(lenient(2).await, 2);
        assert_eq!(stats_of("lenient").l2_hits, 1, "and read again");
    });
}

static STRICT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "strict", on_failure = "error")]
async fn strict(id: u64) -> Result<u64, AppError> {
    STRICT_RUNS.fetch_add(1, SeqCst);
    Ok(id)
}

#[test]
fn error_mode_returns_the_backend_error_to_the_caller() {
    let (_serial, setup) = setup();
    block_on(async {
        setup.proxy.set_mode(ProxyMode::Refuse);
        let err = strict(1).await.unwrap_err();
        let AppError::Backend(backend) = err;
        assert!(
            backend.is_retryable(),
            "a refused connection is retryable: {backend:?}"
        );
        assert!(
            backend
                .to_string()
                .contains(&setup.proxy.addr().port().to_string()),
            "the error says where: {backend}"
        );
        assert_eq!(
            STRICT_RUNS.load(SeqCst),
            0,
            "the body does not run when L2 cannot be read"
        );
        assert!(invalidate_strict(1).await.is_err());
        assert!(invalidate_all_strict().await.is_err());

        setup.proxy.set_mode(ProxyMode::Pass);
        setup
            .written_again("strict", 1, || async { strict(1).await.unwrap_or(0) })
            .await;
        invalidate_strict(1).await.unwrap();
    });
}

static RETRIED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "retried", on_failure = "retry(4)")]
async fn retried(id: u64) -> u64 {
    RETRIED_RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn retry_makes_exactly_the_configured_attempts_with_backoff_then_falls_back_to_l1() {
    let (_serial, setup) = setup();
    block_on(async {
        setup.proxy.set_mode(ProxyMode::Refuse);
        let before = stats_of("retried");
        let connections = setup.proxy.connections_accepted();
        let started = Instant::now();
        assert_eq!(retried(1).await, 1, "after the attempts, the L1Only behaviour");
        let elapsed = started.elapsed();
        let after = stats_of("retried");
        assert_eq!(
            after.backend_errors - before.backend_errors,
            4,
            "4 attempts in total"
        );
        assert_eq!(after.retries - before.retries, 3);
        // At least the three retries dialled anew (the listener's reconnections add more).
        let dialled = setup.proxy.connections_accepted() - connections;
        assert!(dialled >= 3, "the attempts went to the network: {dialled}");
        // Backoff 20 ms, 40 ms, 80 ms (+ up to 25 % jitter each).
        assert!(
            elapsed >= Duration::from_millis(140),
            "no backoff between attempts: {elapsed:?}"
        );
        assert_eq!(RETRIED_RUNS.load(SeqCst), 1);
        assert_eq!(retried(1).await, 1);
        assert_eq!(RETRIED_RUNS.load(SeqCst), 1, "served from L1");
    });
}

#[tiered_cached(name = "stalled")]
async fn stalled(id: u64) -> u64 {
    id
}

#[tiered_cached(name = "stalled_strict", on_failure = "error")]
async fn stalled_strict(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

/// A real timing bound, stated generously: a call waits out one `l2_timeout` (no less: the
/// server never answered) and is then answered, well before four of them.
#[test]
fn a_stalled_server_costs_a_call_one_l2_timeout_then_it_is_answered() {
    let (_serial, setup) = setup();
    block_on(async {
        setup.proxy.set_mode(ProxyMode::Stall);
        // An outer bound, so a missing L2 timeout fails the test instead of hanging it.
        let bounded = |call| tokio::time::timeout(Duration::from_secs(30), call);
        let started = Instant::now();
        assert_eq!(bounded(stalled(1)).await.expect("the call hung"), 1);
        let took = started.elapsed();
        assert!(took >= L2_TIMEOUT && took < L2_TIMEOUT * 4, "took {took:?}");

        let started = Instant::now();
        let AppError::Backend(err) = tokio::time::timeout(Duration::from_secs(30), stalled_strict(1))
            .await
            .expect("the call hung")
            .unwrap_err();
        assert!(matches!(err, BackendError::Timeout { .. }), "{err:?}");
        let took = started.elapsed();
        assert!(took >= L2_TIMEOUT && took < L2_TIMEOUT * 4, "took {took:?}");
        setup.proxy.cut_all();
    });
}

static KILLED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "killed")]
async fn survives(id: u64) -> u64 {
    KILLED_RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn with_the_server_killed_and_restarted_mid_run_calls_never_fail() {
    let (_serial, setup) = setup();
    let Some(server) = common::stoppable_server() else {
        return;
    };
    block_on(async {
        assert_eq!(survives(1).await, 1);
        server.stop().expect("stop the server");
        assert_eq!(survives(1).await, 1, "L1 hit");
        assert_eq!(survives(2).await, 2, "miss computed without L2");
        server.start_again().expect("restart the server");
        assert_eq!(survives(3).await, 3);
        assert_eq!(KILLED_RUNS.load(SeqCst), 3);
        // Rows for keys 1 and 3.
        setup.written_again("killed", 2, || survives(3)).await;
    });
}
