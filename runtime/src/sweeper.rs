//! The sweeper: deletes expired rows and rows of dead epochs in the background, in batches.

use std::sync::Weak;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::postgres::PgBackend;

/// Rows one statement deletes at most, so no statement holds many locks for long.
const BATCH: i64 = 1000;
/// Server-side limit of one sweeping statement.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The limit of one whole sweep, on this side: a sweep is many statements.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Sweeps every `interval` until `stop` is cancelled or the backend is gone. A sweep's
/// failure is logged at `warn` once, and its recovery at `info`, not every attempt between.
pub(crate) async fn run(backend: Weak<PgBackend>, interval: Duration, stop: CancellationToken) {
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
        let swept = tokio::time::timeout(SWEEP_TIMEOUT, backend.sweep(BATCH, STATEMENT_TIMEOUT))
            .await
            .map_err(|_| format!("no end within {SWEEP_TIMEOUT:?}"))
            .and_then(|swept| swept.map_err(|err| err.to_string()));
        match swept {
            Ok(deleted) => {
                if failing {
                    tracing::info!("tiered: sweeping works again");
                    failing = false;
                }
                if deleted > 0 {
                    tracing::debug!(deleted, "tiered: swept expired and invalidated rows");
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
