//! The sweeper: deletes expired rows and rows of dead epochs in the background, in batches.

use std::sync::Weak;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::runtime::Installed;

/// Rows one statement deletes at most, so no statement holds many locks for long.
const BATCH: i64 = 1000;
/// Server-side limit of one sweeping statement.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sweeps every `interval` until `stop` is cancelled or the runtime is gone.
pub(crate) async fn run(installed: Weak<Installed>, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(installed) = installed.upgrade() else {
            return;
        };
        match installed.backend.sweep(BATCH, STATEMENT_TIMEOUT).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "tiered: swept expired and invalidated rows"),
            Err(err) => tracing::debug!(error = %err, "tiered: sweep failed; will try again"),
        }
    }
}
