//! Cross-process invalidation: a dedicated LISTEN connection that evicts the L1 entries other
//! processes invalidated, caps L1 staleness while it is disconnected, and on reconnecting
//! evicts what it missed (see `resync`).

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
use crate::resync::{self, Plan, Server};

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

/// What the listener carries from one connection to the next, to catch up on reconnecting.
#[derive(Default)]
struct Heard {
    /// The server as the last probe heard read it: what a reconnection compares L2 with.
    last_probe: Option<Server>,
    /// Whether the last reconnection could not ask L2 what changed: if the next one cannot
    /// either, it clears every L1, so a lookup that never succeeds (a slow one) does not keep
    /// the listener away.
    lookup_failed: bool,
}

/// The longest wait between two connection attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);

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
    let mut heard = Heard::default();
    let mut pause = Duration::from_millis(50);
    loop {
        let Err(lost) = tokio::select! {
            () = stop.cancelled() => break,
            outcome = listen(&settings, process, &mut probe, &mut first, &mut heard) => outcome,
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
        // Capped low: an attempt costs the server little, and L2 is skipped (see
        // `Guarded::server_back`) until the listener is back.
        pause = (pause * 2).min(MAX_PAUSE);
    }
    process.listener.stopped();
}

/// A notification as the listener sorts it.
struct Notification {
    probe: bool,
    payload: String,
}

/// One connection's life: returns when it is lost. `heard` is what the connections before
/// it heard.
async fn listen(
    settings: &ListenerSettings,
    process: &Process,
    probe: &mut Probe,
    first: &mut Option<oneshot::Sender<Result<(), String>>>,
    heard: &mut Heard,
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
                let heard = Notification {
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
    // of other processes are then taken on trust until the next probe, and nothing tells
    // what was missed, so every L1 is cleared.
    // A pooled connection that died with the server fails once; the second try takes another.
    let sent = send_probe(settings, probe).await || send_probe(settings, probe).await;
    let mut connected = !sent;
    if connected {
        // Unless the connection itself went meanwhile.
        answers(&client, settings.timeout).await?;
        heard.last_probe = None;
        process.registry.clear_l1(true);
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
            notification = received.recv() => match notification {
                Some(Notification { probe: true, payload }) => {
                    if let Some(server) = probe.heard(&payload) {
                        if !connected {
                            connected = true;
                            catch_up(settings, process, heard, &server).await?;
                            connected_now(settings, process, first);
                        }
                        heard.last_probe = Some(server);
                    }
                }
                Some(Notification { probe: false, payload }) => process.registry.apply(&payload, settings.origin),
                None => return Err(Lost::Connection("connection closed".to_owned())),
            },
            () = overdue => {
                return Err(Lost::Undelivered(undelivered(&settings.config.target(), settings.timeout)));
            }
            // Not before: a pooler could hand the listener's query the very session that
            // holds the LISTEN just as the probe arrives there.
            _ = heartbeat.tick(), if connected => {
                answers(&client, settings.timeout).await?;
                replay_owed(process);
            }
            // Not while one is in flight, the first one included.
            _ = probes.tick(), if probe.deadline().is_none() => {
                send_probe(settings, probe).await;
            }
        }
    }
}

/// Whether the connection answers a query in time: else it is lost.
async fn answers(client: &tokio_postgres::Client, timeout: Duration) -> Result<(), Lost> {
    tokio::time::timeout(timeout, client.simple_query(""))
        .await
        .map_err(|_| Lost::Connection(format!("no answer within {timeout:?}")))?
        .map_err(|err| Lost::Connection(err.to_string()))
        .map(drop)
}

/// Notices reach this connection, and `server` is L2 as its first probe read it: evicts what
/// was invalidated since the last probe heard before, as L2 tells it, or else every L1 (see
/// `resync`). Evicting bumps the epochs of the functions concerned, so their computations that
/// read L2 before now cannot store either. If L2 cannot be asked now, the connection counts as
/// lost (L1 stays capped) and the next one asks again, once.
async fn catch_up(
    settings: &ListenerSettings,
    process: &Process,
    heard: &mut Heard,
    server: &Server,
) -> Result<(), Lost> {
    let before = heard.last_probe.as_ref();
    let evicted = match resync::plan(before, server) {
        Plan::ClearAll(reason) => Err(reason.to_owned()),
        Plan::Evict { since, functions } => match changed_since(settings, since).await {
            Ok(changed) if changed.len() as i64 > resync::MAX_ROWS => {
                Err(format!("more than {} rows changed meanwhile", resync::MAX_ROWS))
            }
            Ok(changed) => Ok((
                process.registry.evict_changed(&functions, &changed),
                functions.len(),
            )),
            Err(reason) if !heard.lookup_failed => {
                heard.lookup_failed = true;
                return Err(Lost::Connection(format!(
                    "L2 could not tell what was invalidated meanwhile: {reason}"
                )));
            }
            Err(reason) => Err(format!(
                "L2 could not tell what was invalidated meanwhile: {reason}"
            )),
        },
    };
    heard.lookup_failed = false;
    match evicted {
        Ok((keys, functions)) => tracing::info!(
            keys,
            functions,
            "tiered: invalidation listener back: evicted the keys and functions invalidated meanwhile"
        ),
        Err(reason) => {
            process.registry.clear_l1(true);
            // The first connection has nothing to tell.
            if heard.last_probe.is_some() {
                tracing::info!(%reason, "tiered: invalidation listener back: cleared every L1");
            }
        }
    }
    Ok(())
}

/// The rows changed since `since`, one more than a reconnection evicts one by one at most.
async fn changed_since(
    settings: &ListenerSettings,
    since: std::time::SystemTime,
) -> Result<Vec<(String, crate::backend::EntryId)>, String> {
    let prober = settings.prober.upgrade().ok_or("the runtime is shutting down")?;
    tokio::time::timeout(
        settings.timeout,
        prober.changed_since(since, resync::MAX_ROWS + 1),
    )
    .await
    .map_err(|_| format!("no answer within {:?}", settings.timeout))?
    .map_err(|err| err.to_string())
}

/// The listener is connected, L1 made consistent with L2: L1 is served in full again, L2 is
/// tried again at once, and what this process owes L2 is replayed.
fn connected_now(
    settings: &ListenerSettings,
    process: &Process,
    first: &mut Option<oneshot::Sender<Result<(), String>>>,
) {
    process.listener.connected();
    if let Some(installed) = process.installed() {
        installed.l2.server_back();
    }
    replay_owed(process);
    if let Some(first) = first.take() {
        // The installer may have stopped waiting.
        let _ = first.send(Ok(()));
    }
    tracing::info!(channel = settings.channel, "tiered: listening for invalidations");
}

/// Replays, in the background, the invalidations this process owes L2 (see `pending`), if any:
/// the server answers this connection, so it may take them now.
fn replay_owed(process: &Process) {
    let Some(installed) = process.installed().filter(|installed| installed.l2.owes()) else {
        return;
    };
    let tasks = installed.tasks.clone();
    tasks.spawn(async move {
        // What is still owed stays owed; the next heartbeat tries again.
        let _ = installed.l2.replay(None).await;
    });
}

/// Sends a probe from one of L2's sessions; returns whether it was sent (and is awaited).
async fn send_probe(settings: &ListenerSettings, probe: &mut Probe) -> bool {
    let Some(prober) = settings.prober.upgrade() else {
        return false;
    };
    let payload = probe.next_payload();
    let sent = tokio::time::timeout(settings.timeout, prober.probe(probe.channel(), &payload)).await;
    match sent {
        Ok(Ok(server)) => {
            probe.sent(payload, tokio::time::Instant::now() + settings.timeout, server);
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
