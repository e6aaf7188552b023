//! Cross-process invalidation: a dedicated LISTEN connection that evicts the L1 entries other
//! processes invalidated, and caps L1 staleness while it is disconnected.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use crate::process::Process;

/// How the listener connects and what it listens to.
pub(crate) struct ListenerSettings {
    pub(crate) config: crate::connect::ConnectConfig,
    pub(crate) channel: String,
    /// This runtime's id in payloads, so its own notifications are skipped.
    pub(crate) origin: u64,
    /// How often the connection is checked, so a silently dead one is noticed.
    pub(crate) heartbeat: Duration,
    pub(crate) timeout: Duration,
    pub(crate) staleness_bound: Duration,
}

/// Listens for `process` until `stop` is cancelled, reconnecting with backoff after every
/// loss; `listening` is notified each time it is connected.
pub(crate) async fn run(
    settings: ListenerSettings,
    process: &'static Process,
    stop: CancellationToken,
    listening: Arc<Notify>,
) {
    process.listener.start(settings.staleness_bound);
    let mut pause = Duration::from_millis(50);
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => break,
            outcome = listen(&settings, process, &listening) => outcome,
        };
        if process.listener.disconnected() {
            pause = Duration::from_millis(50);
        }
        if let Err(reason) = outcome {
            tracing::warn!(%reason, ?pause, "tiered: invalidation listener lost; reconnecting");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    process.listener.stopped();
}

/// One connection's life: returns when it is lost.
async fn listen(settings: &ListenerSettings, process: &Process, listening: &Notify) -> Result<(), String> {
    let (client, mut connection) = tokio::time::timeout(settings.timeout, settings.config.connect())
        .await
        .map_err(|_| format!("connecting timed out after {:?}", settings.timeout))??;
    let (notices, mut received) = mpsc::unbounded_channel();
    // The connection delivers notifications only to whoever polls it for messages.
    let _driver = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(notice) = message {
                if notices.send(notice.payload().to_owned()).is_err() {
                    break;
                }
            }
        }
    }));
    let listen = format!("LISTEN \"{}\"", settings.channel);
    tokio::time::timeout(settings.timeout, client.batch_execute(&listen))
        .await
        .map_err(|_| "LISTEN timed out".to_owned())?
        .map_err(|err| err.to_string())?;
    // Whatever was invalidated while nobody listened is unknown: drop it all. Clearing bumps
    // each function's epoch, so computations that read L2 before now cannot store either.
    process.registry.clear_l1(true);
    process.listener.connected();
    listening.notify_one();
    tracing::info!(channel = settings.channel, "tiered: listening for invalidations");

    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    loop {
        tokio::select! {
            payload = received.recv() => match payload {
                Some(payload) => process.registry.apply(&payload, settings.origin),
                None => return Err("connection closed".to_owned()),
            },
            _ = heartbeat.tick() => {
                tokio::time::timeout(settings.timeout, client.simple_query(""))
                    .await
                    .map_err(|_| format!("no answer within {:?}", settings.timeout))?
                    .map_err(|err| err.to_string())?;
            }
        }
    }
}
