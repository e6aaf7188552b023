//! Cross-process invalidation: a dedicated LISTEN connection that evicts the L1 entries other
//! processes invalidated, and caps L1 staleness while it is disconnected.

use std::convert::Infallible;
use std::future::poll_fn;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use crate::postgres::PgBackend;
use crate::probe::{undelivered, Probe, PROBE_EVERY};
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
    /// Sends the probes (see `probe`) from one of L2's sessions.
    pub(crate) prober: Weak<PgBackend>,
}

/// Why a listener connection ended.
enum Lost {
    /// Broken, closed or unanswered.
    Connection(String),
    /// It answers, but notifications from other sessions do not arrive: why, and what to do.
    Undelivered(String),
}

/// Listens for `process` until `stop` is cancelled, reconnecting with backoff after every
/// loss. `first` gets the verdict on the first connection that answers: `Ok` once notices
/// arrive on it, or why they do not (then the runtime is not installed).
pub(crate) async fn run(
    settings: ListenerSettings,
    process: &'static Process,
    stop: CancellationToken,
    first: oneshot::Sender<Result<(), String>>,
) {
    process.listener.start(settings.staleness_bound);
    let mut first = Some(first);
    let mut probe = Probe::new(settings.origin);
    let mut undelivered_said = false;
    let mut pause = Duration::from_millis(50);
    loop {
        let Err(lost) = tokio::select! {
            () = stop.cancelled() => break,
            outcome = listen(&settings, process, &mut probe, &mut first) => outcome,
        };
        if process.listener.disconnected() {
            pause = Duration::from_millis(50);
            undelivered_said = false;
        }
        match lost {
            Lost::Connection(reason) => {
                tracing::warn!(%reason, ?pause, "tiered: invalidation listener lost; reconnecting");
            }
            Lost::Undelivered(reason) => {
                // The installer fails with it while it waits; after, it is logged once.
                let untold = match first.take() {
                    Some(installer) => installer.send(Err(reason)).err().and_then(Result::err),
                    None => Some(reason),
                };
                match untold {
                    Some(reason) if !undelivered_said => {
                        undelivered_said = true;
                        tracing::warn!(
                            %reason,
                            "tiered: invalidation notices do not arrive; reconnecting. Until they \
                             do, L1 entries older than max_stale_while_disconnected are not served"
                        );
                    }
                    Some(reason) => {
                        tracing::debug!(%reason, "tiered: invalidation notices still do not arrive")
                    }
                    None => {}
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    process.listener.stopped();
}

/// A notification as the listener sorts it.
struct Heard {
    probe: bool,
    payload: String,
}

/// One connection's life: returns when it is lost.
async fn listen(
    settings: &ListenerSettings,
    process: &Process,
    probe: &mut Probe,
    first: &mut Option<oneshot::Sender<Result<(), String>>>,
) -> Result<Infallible, Lost> {
    let (client, mut connection) = tokio::time::timeout(settings.timeout, settings.config.connect())
        .await
        .map_err(|_| Lost::Connection(format!("connecting timed out after {:?}", settings.timeout)))?
        .map_err(Lost::Connection)?;
    let (notices, mut received) = mpsc::unbounded_channel();
    let probe_channel = probe.channel().to_owned();
    // The connection delivers notifications only to whoever polls it for messages.
    let _driver = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(notice) = message {
                let heard = Heard {
                    probe: notice.channel() == probe_channel,
                    payload: notice.payload().to_owned(),
                };
                if notices.send(heard).is_err() {
                    break;
                }
            }
        }
    }));
    let listen = format!("LISTEN \"{}\"; LISTEN \"{}\"", settings.channel, probe.channel());
    tokio::time::timeout(settings.timeout, client.batch_execute(&listen))
        .await
        .map_err(|_| Lost::Connection("LISTEN timed out".to_owned()))?
        .map_err(|err| Lost::Connection(err.to_string()))?;
    // Connected once a probe arrives, or at once if none could be sent (L2 is down): notices
    // of other processes are then taken on trust until the next probe.
    let mut connected = !send_probe(settings, probe).await;
    if connected {
        connected_now(settings, process, first);
    }

    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    let every = settings.heartbeat * PROBE_EVERY;
    let mut probes = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = probe.deadline();
        let overdue = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            heard = received.recv() => match heard {
                Some(Heard { probe: true, payload }) => {
                    if probe.heard(&payload) && !connected {
                        connected = true;
                        connected_now(settings, process, first);
                    }
                }
                Some(Heard { probe: false, payload }) => process.registry.apply(&payload, settings.origin),
                None => return Err(Lost::Connection("connection closed".to_owned())),
            },
            () = overdue => {
                return Err(Lost::Undelivered(undelivered(&settings.config.target(), settings.timeout)));
            }
            // Not before: a pooler could hand the listener's query the very session that
            // holds the LISTEN just as the probe arrives there.
            _ = heartbeat.tick(), if connected => {
                tokio::time::timeout(settings.timeout, client.simple_query(""))
                    .await
                    .map_err(|_| Lost::Connection(format!("no answer within {:?}", settings.timeout)))?
                    .map_err(|err| Lost::Connection(err.to_string()))?;
            }
            // Not while one is in flight, the first one included.
            _ = probes.tick(), if probe.deadline().is_none() => {
                send_probe(settings, probe).await;
            }
        }
    }
}

/// Notices reach this connection: whatever was invalidated while nobody listened is unknown,
/// so drop it all. Clearing bumps each function's epoch, so computations that read L2 before
/// now cannot store either.
fn connected_now(
    settings: &ListenerSettings,
    process: &Process,
    first: &mut Option<oneshot::Sender<Result<(), String>>>,
) {
    process.registry.clear_l1(true);
    process.listener.connected();
    if let Some(first) = first.take() {
        // The installer may have stopped waiting.
        let _ = first.send(Ok(()));
    }
    tracing::info!(channel = settings.channel, "tiered: listening for invalidations");
}

/// Sends a probe from one of L2's sessions; returns whether it was sent (and is awaited).
async fn send_probe(settings: &ListenerSettings, probe: &mut Probe) -> bool {
    let Some(prober) = settings.prober.upgrade() else {
        return false;
    };
    let payload = probe.next_payload();
    let sent = tokio::time::timeout(settings.timeout, prober.notify(probe.channel(), &payload)).await;
    match sent {
        Ok(Ok(())) => {
            probe.sent(payload, tokio::time::Instant::now() + settings.timeout);
            true
        }
        Ok(Err(err)) => {
            tracing::debug!(%err, "tiered: could not send a listener probe");
            false
        }
        Err(_) => {
            tracing::debug!(timeout = ?settings.timeout, "tiered: could not send a listener probe in time");
            false
        }
    }
}
