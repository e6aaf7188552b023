//! The call path's side of `stampede = "fleet"` (the protocol is `lease`'s).

use super::*;
use crate::lease::{Ground, Look, Turn};

impl<V, K, R> FnCache<V, K, R>
where
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    R: Output<V> + 'static,
{
    /// What the leader does after its L2 read `found`: with `stampede = "fleet"`, when L2
    /// answered with nothing fresh, it waits for the process computing the key, whose value
    /// is then found as an L2 hit, unless it takes the key's lease (kept in the write-back,
    /// so it is let go once the write is done or abandoned).
    pub(super) async fn fleet_turn(
        &'static self,
        key: &Encoded<K>,
        stripe: usize,
        snapshot: Snapshot,
        fresh_beyond: Duration,
        found: Found<V>,
    ) -> Result<Found<V>, R> {
        let Some(fleet) = &self.fleet else {
            return Ok(found);
        };
        let (mut write_back, stale) = match found {
            Found::Nothing(Destination::Both(write_back), stale) => (write_back, stale),
            other => return Ok(other),
        };
        let look = || async {
            match self.read_l2(key, stripe, snapshot, fresh_beyond).await {
                Ok(Found::Nothing(Destination::Both(_), _)) => Look::Nothing,
                // The policy absorbed a failed read.
                Ok(Found::Nothing(Destination::L1(_), _)) => Look::Failed,
                found => Look::Done(found),
            }
        };
        let installed = write_back.linked.installed.clone();
        let ground = Ground {
            installed: &installed,
            id: &write_back.id,
            name: self.name,
            stats: &self.stats,
            clock: &self.process.clock,
        };
        match fleet.turn(ground, look).await {
            Turn::Lead(lease) => {
                write_back.lease = lease;
                Ok(Found::Nothing(Destination::Both(write_back), stale))
            }
            Turn::Done(found) => found,
        }
    }
}
