//! The sweeper: deletes expired rows, rows of dead epochs and rows past `l2_max_rows` in the background, in batches.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Weak;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::BackendError;
use crate::postgres::PgBackend;

/// Rows one statement deletes at most, so no statement holds many locks for long.
const BATCH: i64 = 1000;
/// Server-side limit of one sweeping statement.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The limit of one whole sweep, on this side: a sweep is many statements.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Rows this process's sweeper deleted to keep its namespace within `l2_max_rows`.
static EVICTED: AtomicU64 = AtomicU64::new(0);

/// How many rows the sweeper of this process has deleted, since the process started, to keep
/// its namespace within [`l2_max_rows`](crate::RuntimeBuilder::l2_max_rows) (oldest-written
/// first). Each process sweeps, so a namespace's evictions are the sum over its processes.
///
/// ```
/// assert_eq!(tiered::l2_evictions(), 0); // nothing installed, nothing swept
/// ```
pub fn l2_evictions() -> u64 {
    EVICTED.load(Relaxed)
}

/// Sweeps every `interval` until `stop` is cancelled or the backend is gone, keeping the
/// namespace within `max_rows` if given. A sweep's failure is logged at `warn` once, and its
/// recovery at `info`, not every attempt between.
pub(crate) async fn run(
    backend: Weak<PgBackend>,
    interval: Duration,
    max_rows: Option<i64>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(backend) = backend.upgrade() else {
            return;
        };
        let evicted_before = EVICTED.load(Relaxed);
        let swept = tokio::time::timeout(SWEEP_TIMEOUT, sweep(&backend, max_rows))
            .await
            .map_err(|_| format!("no end within {SWEEP_TIMEOUT:?}"))
            .and_then(|swept| swept.map_err(|err| err.to_string()));
        match swept {
            Ok(deleted) => {
                if failing {
                    tracing::info!("tiered: sweeping works again");
                    failing = false;
                }
                let evicted = EVICTED.load(Relaxed) - evicted_before;
                if deleted > 0 || evicted > 0 {
                    tracing::debug!(
                        deleted,
                        evicted,
                        "tiered: swept expired, invalidated and evicted rows"
                    );
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, ?interval, "tiered: sweep failed; retrying every interval");
                    failing = true;
                }
            }
        }
    }
}

/// One sweep: expired rows and rows of dead epochs, then the oldest-written past `max_rows`.
/// Returns how many of the former it deleted; evictions are counted in [`EVICTED`] as they
/// commit.
async fn sweep(backend: &PgBackend, max_rows: Option<i64>) -> Result<u64, BackendError> {
    let deleted = backend.sweep(BATCH, STATEMENT_TIMEOUT).await?;
    if let Some(keep) = max_rows {
        backend.evict(keep, BATCH, STATEMENT_TIMEOUT, &EVICTED).await?;
    }
    Ok(deleted)
}
