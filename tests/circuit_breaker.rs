//! The circuit breaker: after consecutive failures L2 is skipped (no network, no timeout), and
//! it closes by itself once the server answers again.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{block_on, stats_of};
use tiered::{tiered_cached, BackendError};
use tiered_testkit::{FaultProxy, PgServer, ProxyMode};

const COOLDOWN: Duration = Duration::from_millis(300);

#[tiered_cached(name = "guarded", on_failure = "error")]
async fn guarded(id: u64) -> Result<u64, BackendError> {
    Ok(id)
}

static LENIENT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "lenient")]
async fn lenient(id: u64) -> u64 {
    LENIENT_RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn the_breaker_opens_after_consecutive_failures_skips_l2_and_closes_by_itself() {
    let server = PgServer::shared();
    block_on(async {
        let proxy = FaultProxy::start(server.host_port()).await.expect("proxy");
        tiered::Runtime::builder()
            .postgres_url(proxy.url_for(server.url()))
            .table(tiered_testkit::unique_name("t"))
            .l2_timeout(Duration::from_millis(500))
            .breaker_threshold(3)
            .breaker_cooldown(COOLDOWN, Duration::from_secs(2))
            .sweep_interval(Duration::from_secs(3600)) // only the calls below touch L2
            .install()
            .await
            .expect("install");
        assert_eq!(guarded(1).await.unwrap(), 1);

        proxy.set_mode(ProxyMode::Refuse);
        for key in 2..5 {
            let err = guarded(key).await.unwrap_err();
            assert!(
                !matches!(err, BackendError::CircuitOpen { .. }),
                "not open yet: {err}"
            );
        }
        let dialled = proxy.connections_accepted();
        let started = Instant::now();
        let err = guarded(5).await.unwrap_err();
        assert!(
            matches!(err, BackendError::CircuitOpen { .. }),
            "open after 3 failures: {err:?}"
        );
        assert!(err.to_string().contains("circuit breaker open"), "{err}");
        assert_eq!(lenient(1).await, 1, "L1Only calls carry on");
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "no L2 time: {:?}",
            started.elapsed()
        );
        assert_eq!(
            proxy.connections_accepted(),
            dialled,
            "nothing went to the network"
        );
        assert!(stats_of("lenient").short_circuited >= 1);

        proxy.set_mode(ProxyMode::Pass);
        let deadline = Instant::now() + COOLDOWN * 10;
        loop {
            match guarded(6).await {
                Ok(value) => break assert_eq!(value, 6),
                Err(BackendError::CircuitOpen { retry_in, .. }) => {
                    assert!(Instant::now() < deadline, "the breaker never closed");
                    tokio::time::sleep(retry_in.max(Duration::from_millis(10))).await;
                }
                Err(other) => panic!("unexpected: {other}"),
            }
        }
        assert_eq!(guarded(7).await.unwrap(), 7, "closed: L2 is used again");
        tiered::shutdown().await;
    });
}
