//! The self-addressed notice that shows notifications reach the listener: a transaction-mode pooler answers its queries but drops them.
//!
//! The notice is sent from another session (one of L2's), on a channel of this runtime's own,
//! so it never reaches the registry nor other processes. At (re)connection the listener counts
//! as connected only once its notice arrived; later, a notice that does not arrive in time
//! counts as a lost connection.

use std::time::Duration;

use tokio::time::Instant;

use crate::resync::Server;

/// Heartbeats between two probes once connected.
pub(crate) const PROBE_EVERY: u32 = 10;

/// The probes of one listener.
#[derive(Debug)]
pub(crate) struct Probe {
    channel: String,
    sent: u64,
    /// The probe in flight.
    awaited: Option<Awaited>,
}

#[derive(Debug)]
struct Awaited {
    payload: String,
    /// When it is overdue.
    deadline: Instant,
    /// The server as the probe read it.
    server: Server,
}

impl Probe {
    /// The probes of the runtime `origin`, on a channel no other runtime listens to.
    pub(crate) fn new(origin: u64) -> Self {
        Probe {
            channel: format!("tiered_probe_{origin:016x}"),
            sent: 0,
            awaited: None,
        }
    }

    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// The payload of a new probe; [`Probe::sent`] once it is sent.
    pub(crate) fn next_payload(&mut self) -> String {
        self.sent += 1;
        format!("probe {}", self.sent)
    }

    /// `payload` was sent, reading `server`: it must be heard by `deadline`.
    pub(crate) fn sent(&mut self, payload: String, deadline: Instant, server: Server) {
        self.awaited = Some(Awaited {
            payload,
            deadline,
            server,
        });
    }

    /// When the probe in flight is overdue, if one is.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.awaited.as_ref().map(|awaited| awaited.deadline)
    }

    /// A notice heard on [`Probe::channel`]: if it is the probe in flight (then none is), the
    /// server as it read it. Notices are delivered in the order their transactions committed,
    /// so every notice committed before the probe has been heard too.
    pub(crate) fn heard(&mut self, payload: &str) -> Option<Server> {
        let awaited = self.awaited.take_if(|awaited| awaited.payload == payload)?;
        Some(awaited.server)
    }
}

/// Why notices are not delivered to the listener at `target`, and what to do.
pub(crate) fn undelivered(target: &str, waited: Duration) -> String {
    format!(
        "the invalidation listener's connection to {target} answers queries but received no \
         notification within {waited:?} of one sent from another session: LISTEN needs a \
         direct connection to the PostgreSQL server that L2 writes to, and a transaction-mode \
         pooler (pgbouncer, Supavisor, ...) drops notifications. Give .listen_url(..) the \
         server's own address, not the pooler's"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::Payload;

    #[test]
    fn channels_are_identifiers_of_their_runtime() {
        let probe = Probe::new(u64::MAX);
        assert_eq!(probe.channel(), "tiered_probe_ffffffffffffffff");
        assert!(probe.channel().len() <= 63);
        assert_ne!(Probe::new(1).channel(), Probe::new(2).channel());
    }

    #[test]
    fn only_the_probe_in_flight_is_heard_and_only_once() {
        let mut probe = Probe::new(1);
        let deadline = Instant::now() + Duration::from_secs(5);
        let server = Server {
            now: std::time::SystemTime::UNIX_EPOCH,
            started: std::time::SystemTime::UNIX_EPOCH,
            unlogged: false,
            epochs: [("f".to_owned(), 1)].into(),
        };
        let first = probe.next_payload();
        assert_eq!(probe.heard(&first), None, "not sent yet");
        probe.sent(first.clone(), deadline, server.clone());
        assert_eq!(probe.deadline(), Some(deadline));
        let second = probe.next_payload();
        assert_ne!(first, second);
        assert_eq!(probe.heard(&second), None, "another probe's payload");
        assert_eq!(probe.heard(&first), Some(server));
        assert_eq!(probe.deadline(), None);
        assert_eq!(probe.heard(&first), None, "a duplicate");
    }

    #[test]
    fn probes_are_never_taken_for_invalidations() {
        let mut probe = Probe::new(0xfeed);
        for _ in 0..3 {
            let payload = probe.next_payload();
            assert_eq!(Payload::parse(&payload), None, "{payload:?}");
        }
    }

    #[test]
    fn the_explanation_names_the_target_and_the_fix() {
        let text = undelivered("127.0.0.1:6432/app", Duration::from_secs(5));
        for part in [
            "127.0.0.1:6432/app",
            "LISTEN",
            "direct connection",
            "pooler",
            ".listen_url(",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
    }
}
