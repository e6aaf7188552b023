//! One function's cache: the call path L1 → single-flight → L2 → body, `refresh_*` and
//! `invalidate_*`, each under the function's failure policy.

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Entry, EntryId, Observed, TOMBSTONE_LIFETIME};
use crate::call_key::{CallKey, Encoded, Resolved};
use crate::codec::Codec;
use crate::error::BackendError;
use crate::invalidation::{stripe_of, Epochs, Snapshot};
use crate::l1::L1;
use crate::notice::Notice;
use crate::outcome::{self, Outcome};
use crate::output::Output;
use crate::pending::Owed;
use crate::policy::{self, ErrorLog, OnFailure};
use crate::process::{Installed, Process};
use crate::registry::RegisteredCache;
use crate::single_flight::{Flights, Role};
use crate::spec::{Spec, WriteMode};
use crate::stats::{FnStats, FunctionStats};

/// The miss path of a call, boxed: the caller's future holds a pointer, not the miss path's
/// state (kilobytes of L2 I/O and single-flight state) that a hit never needs.
type Miss<F> = Pin<Box<F>>;

/// The cache of one `#[tiered_cached]` function returning `R`, caching `V`, its L1 keyed by
/// `K` (see `call_key`). The generated code reaches it through its `Site`.
pub struct FnCache<V: 'static, K: 'static, R: 'static> {
    name: &'static str,
    version: u32,
    on_failure: OnFailure<R>,
    l2_ttl: Option<Duration>,
    write: WriteMode,
    /// `None`: `backend = "none"`.
    codec: Option<Codec<V>>,
    l1: L1<V, K>,
    flights: Flights<V>,
    epochs: Epochs,
    stats: FnStats,
    errors: ErrorLog,
    process: &'static Process,
}

/// A function's L2 for one operation, resolved once.
enum L2Access<V> {
    /// `backend = "none"`: L1 only, nothing can fail.
    Absent,
    /// `backend = "pg"` with no runtime installed: a backend error, under the policy.
    NotInstalled,
    Installed(Linked<V>),
}

/// An installed L2 and how this function's values are stored in it.
struct Linked<V> {
    installed: Arc<Installed>,
    codec: Codec<V>,
}

/// What the flight leader's L2 read found.
enum Found<V> {
    Value {
        value: V,
        remaining: Option<Duration>,
        id: EntryId,
    },
    /// Nothing usable: compute, then store there.
    Nothing(Destination<V>),
}

/// Where the leader stores what it computed.
enum Destination<V> {
    /// L1 alone: no L2, or L2 failed and the policy absorbed it. With the entry's L2 id, so
    /// that other processes' invalidations (notices, a reconnection's lookup) reach it.
    L1(Option<EntryId>),
    /// L2, conditional on what the read observed, then L1.
    Both(WriteBack<V>),
}

/// An L2 write conditional on an earlier read.
struct WriteBack<V> {
    linked: Linked<V>,
    entry: Entry<'static>,
    observed: Observed,
    read_at: Instant,
    /// The listener's losses before the read (see `ListenerState::losses`).
    losses: u64,
}

impl<V, K, R> std::fmt::Debug for FnCache<V, K, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnCache")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<V, K, R> FnCache<V, K, R>
where
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    R: Output<V> + 'static,
{
    pub(crate) fn new(name: &'static str, spec: &Spec<V, R>, process: &'static Process) -> Self {
        FnCache {
            name,
            version: spec.version,
            on_failure: spec.on_failure,
            l2_ttl: spec.l2_ttl,
            write: spec.write,
            codec: spec.codec,
            l1: L1::new(spec.l1_capacity.max(1), spec.l1_ttl, process.clock.clone()),
            flights: Flights::new(),
            epochs: Epochs::new(),
            stats: FnStats::default(),
            errors: ErrorLog::new(name, process.clock.clone()),
            process,
        }
    }

    /// The value for the call's key if L1 has it live, counted as a hit. The generated fn
    /// returns it as it is: wrapping it in a ready future to await costs a hit measurably
    /// more (the value, just cloned, is copied through each layer; BENCHMARKS.md, L1 hit).
    #[inline]
    pub fn hit<Q: CallKey<K>>(&self, key: &Q) -> Option<V> {
        let lookup = key.lookup()?;
        let value = self.l1.get(&lookup, self.epochs.all(), self.max_age())?;
        // Counted, not traced: even a disabled `trace!` costs a visible share of a hit.
        self.stats.l1_hit();
        Some(value)
    }

    /// The call's key past L1, as the miss path, `refresh_<fn>` and `invalidate_<fn>` take it.
    pub fn resolve<Q: CallKey<K>>(&self, key: Q) -> Resolved<K> {
        key.resolve()
    }

    /// The miss path of a call (after [`FnCache::hit`]): L2, else the body, once per key
    /// however many callers arrive together.
    pub fn call<F>(&'static self, key: Resolved<K>, body: F) -> Miss<impl Future<Output = R>>
    where
        F: Future<Output = R>,
    {
        Box::pin(async move {
            // What a backend error handed to the caller leaves it at; every answer sets it.
            let mut outcome = Outcome::BackendError;
            let output = match key.0 {
                Ok(key) => {
                    let (result, role) = self
                        .flights
                        .run(&key.bytes, || self.lead(&key, body, &mut outcome))
                        .await;
                    if role == Role::Coalesced {
                        self.stats.coalesced();
                        outcome = Outcome::Coalesced;
                    }
                    result.map_or_else(|output| output, R::from_cached)
                }
                Err(message) => self.uncached(message, body, &mut outcome).await,
            };
            outcome::record(outcome);
            output
        })
    }

    /// `refresh_<fn>`: runs the body now, stores its value in both tiers as the newest, and
    /// makes every computation that started earlier unable to store over it.
    pub async fn refresh(&'static self, key: Resolved<K>, body: impl Future<Output = R>) -> R {
        let mut outcome = Outcome::BackendError;
        let output = match key.0 {
            Ok(key) => self
                .recompute(&key, body, &mut outcome)
                .await
                .map_or_else(|output| output, R::from_cached),
            Err(message) => self.uncached(message, body, &mut outcome).await,
        };
        outcome::record(outcome);
        output
    }

    /// `invalidate_<fn>`: L2 first (a tombstone), then this process's L1, so no caller can
    /// refill L1 from the old row after this returns.
    pub async fn invalidate(&'static self, key: Resolved<K>) -> Result<(), BackendError> {
        let key = key.0.map_err(|message| BackendError::Key {
            function: self.name.to_owned(),
            message,
        })?;
        let stripe = stripe_of(&key.bytes);
        let in_l2 = match self.l2() {
            L2Access::Absent => Ok(()),
            L2Access::NotInstalled => Err(BackendError::NotConfigured),
            L2Access::Installed(linked) => {
                let entry = self.entry(&linked.installed, &key, stripe);
                let l2 = &linked.installed.l2;
                let done = self.attempt(&linked.installed, || l2.invalidate(&entry)).await;
                // Owed to L2 (and so to other processes) until it answers: see `pending`.
                // Past its bound, an invalidate-all is owed instead, and applied here too.
                done.inspect_err(|err| {
                    if l2.owe(Owed::Key(entry), err, &self.stats) {
                        self.drop_all_l1();
                    }
                })
            }
        };
        self.epochs.invalidate(stripe, || {
            self.l1.remove(&key.stored);
            self.flights.forget(&key.bytes);
        });
        self.stats.invalidation();
        self.on_failure.settle_helper(&self.errors, "invalidate", in_l2)
    }

    /// `invalidate_all_<fn>`: a new epoch in L2 (O(1) in the number of rows), then in L1.
    pub async fn invalidate_all(&'static self) -> Result<(), BackendError> {
        let in_l2 = match self.l2() {
            L2Access::Absent => Ok(()),
            L2Access::NotInstalled => Err(BackendError::NotConfigured),
            L2Access::Installed(linked) => {
                let l2 = &linked.installed.l2;
                let done = self
                    .attempt(&linked.installed, || l2.invalidate_all(self.name))
                    .await;
                done.inspect_err(|err| {
                    l2.owe(Owed::All(self.name), err, &self.stats);
                })
            }
        };
        self.drop_all_l1();
        self.stats.invalidation();
        self.on_failure
            .settle_helper(&self.errors, "invalidate all", in_l2)
    }

    /// Kills every L1 entry and every flight of this function in this process; computations
    /// that started earlier cannot store.
    fn drop_all_l1(&self) {
        self.epochs.invalidate_all();
        self.flights.forget_all();
        self.l1.clear();
    }

    /// The flight leader's work after an L1 miss: L2, else the body, then the write-back.
    /// `Err` holds the output that is not cached (the body's error, or a backend error the
    /// policy hands to the caller). Sets `outcome` when it answers.
    async fn lead(
        &'static self,
        key: &Encoded<K>,
        body: impl Future<Output = R>,
        outcome: &mut Outcome,
    ) -> Result<V, R> {
        // A flight that ended between our L1 miss and joining may have filled L1.
        if let Some(value) = self.l1.get(&key.stored, self.epochs.all(), self.max_age()) {
            self.stats.l1_hit();
            *outcome = Outcome::L1Hit;
            return Ok(value);
        }
        let stripe = stripe_of(&key.bytes);
        // Taken before reading L2: an invalidation after this point refuses our L1 store.
        let snapshot = self.epochs.snapshot(stripe);
        let destination = match self.read_l2(key, stripe, snapshot).await? {
            Found::Value { value, remaining, id } => {
                self.stats.l2_hit();
                *outcome = Outcome::L2Hit;
                tracing::debug!(cache = self.name, "tiered: L2 hit");
                self.store_l1(key, Some(&id), &value, snapshot, remaining);
                return Ok(value);
            }
            Found::Nothing(destination) => destination,
        };
        tracing::debug!(cache = self.name, "tiered: miss, running the function");
        let value = self.compute(body, outcome).await.cached()?;
        self.store(key, &value, snapshot, destination)
            .await
            .inspect_err(|_| *outcome = Outcome::BackendError)?;
        Ok(value)
    }

    async fn read_l2(&self, key: &Encoded<K>, stripe: usize, snapshot: Snapshot) -> Result<Found<V>, R> {
        let linked = match self.l2() {
            L2Access::Absent => return Ok(Found::Nothing(Destination::L1(None))),
            L2Access::NotInstalled => {
                self.settle("read", Err(BackendError::NotConfigured))?;
                return Ok(Found::Nothing(Destination::L1(None)));
            }
            L2Access::Installed(linked) => linked,
        };
        let entry = self.entry(&linked.installed, key, stripe);
        // The plain read needs the epoch and the notices that change it: without the listener,
        // another process's invalidate-all would go unseen.
        let known_epoch = self
            .epochs
            .l2_epoch()
            .filter(|_| self.process.listener.listening());
        let read_at = self.process.clock.now();
        let losses = self.process.listener.losses();
        let read = self
            .attempt(&linked.installed, || {
                linked.installed.l2.read(self.name, &entry.id, known_epoch)
            })
            .await;
        let row = match read {
            Ok(row) => row,
            Err(err) => {
                self.settle("read", Err(err))?;
                return Ok(Found::Nothing(Destination::L1(Some(entry.id))));
            }
        };
        if known_epoch.is_none() {
            self.epochs.learn_l2_epoch(snapshot.all, row.observed.epoch);
        }
        if let Some(bytes) = &row.value {
            match linked.codec.decode(bytes) {
                Ok(value) => {
                    return Ok(Found::Value {
                        value,
                        remaining: row.remaining,
                        id: entry.id,
                    })
                }
                Err(reason) => tracing::warn!(
                    cache = self.name,
                    %reason,
                    "tiered: L2 row cannot be decoded; treating it as a miss and overwriting it"
                ),
            }
        }
        Ok(Found::Nothing(Destination::Both(WriteBack {
            linked,
            entry,
            observed: row.observed,
            read_at,
            losses,
        })))
    }

    /// Stores what the leader computed: in L2 unless an invalidation overtook the
    /// computation, and in L1 unless one overtook it here.
    async fn store(
        &'static self,
        key: &Encoded<K>,
        value: &V,
        snapshot: Snapshot,
        destination: Destination<V>,
    ) -> Result<(), R> {
        let write_back = match destination {
            Destination::L1(id) => {
                self.store_l1(key, id.as_ref(), value, snapshot, None);
                return Ok(());
            }
            Destination::Both(write_back) => write_back,
        };
        let WriteBack {
            linked,
            entry,
            observed,
            read_at,
            losses,
        } = write_back;
        let bytes = match linked.codec.encode(value) {
            Ok(bytes) => bytes,
            Err(reason) => {
                tracing::warn!(cache = self.name, %reason, "tiered: value cannot be encoded; kept in L1 only");
                self.store_l1(key, Some(&entry.id), value, snapshot, None);
                return Ok(());
            }
        };
        // The tombstone that would reject a write this late may have been swept already.
        if self.process.clock.now().duration_since(read_at) > TOMBSTONE_LIFETIME / 2 {
            self.superseded();
            return Ok(());
        }
        // If the listener lost its connection since the read (or L1 was dropped), invalidations
        // may have gone unheard, and after a server crash an UNLOGGED table has lost the
        // tombstones that would refuse this write: L1 alone.
        if self.process.listener.losses() != losses || self.epochs.all() != snapshot.all {
            self.store_l1(key, Some(&entry.id), value, snapshot, None);
            return Ok(());
        }
        match self.write {
            WriteMode::Through => {
                let written = self
                    .attempt(&linked.installed, || {
                        linked.installed.l2.write(&entry, &bytes, self.l2_ttl, observed)
                    })
                    .await;
                match written {
                    Ok(true) => self.store_l1(key, Some(&entry.id), value, snapshot, None),
                    Ok(false) => self.superseded(),
                    Err(err) => {
                        self.settle("write", Err(err))?;
                        self.store_l1(key, Some(&entry.id), value, snapshot, None);
                    }
                }
            }
            WriteMode::Behind => {
                self.store_l1(key, Some(&entry.id), value, snapshot, None);
                let stored = key.stored.clone();
                let tasks = linked.installed.tasks.clone();
                tasks.spawn(async move {
                    let written = self
                        .attempt(&linked.installed, || {
                            linked.installed.l2.write(&entry, &bytes, self.l2_ttl, observed)
                        })
                        .await;
                    match written {
                        Ok(true) => {}
                        Ok(false) => {
                            // Invalidated while computing: drop what we put in L1 (at worst a
                            // newer entry, which costs a miss, never a stale read).
                            self.l1.remove(&stored);
                            self.superseded();
                        }
                        // No caller waits for it, whatever the mode.
                        Err(err) => self.errors.absorbed("write behind", &err),
                    }
                });
            }
        }
        Ok(())
    }

    /// `refresh_<fn>`'s work once its key is encoded.
    async fn recompute(
        &'static self,
        key: &Encoded<K>,
        body: impl Future<Output = R>,
        outcome: &mut Outcome,
    ) -> Result<V, R> {
        let value = self.compute(body, outcome).await.cached()?;
        let stripe = stripe_of(&key.bytes);
        let id = self
            .overwrite(key, stripe, &value)
            .await
            .inspect_err(|_| *outcome = Outcome::BackendError)?;
        self.epochs.invalidate(stripe, || self.flights.forget(&key.bytes));
        let snapshot = self.epochs.snapshot(stripe);
        self.store_l1(key, id.as_ref(), &value, snapshot, None);
        Ok(value)
    }

    /// `refresh_<fn>`'s L2 write: the value over whatever the row holds. Returns the entry's
    /// id if the function has an L2.
    async fn overwrite(&self, key: &Encoded<K>, stripe: usize, value: &V) -> Result<Option<EntryId>, R> {
        Ok(match self.l2() {
            L2Access::Absent => None,
            L2Access::NotInstalled => {
                self.settle("refresh", Err(BackendError::NotConfigured))?;
                None
            }
            L2Access::Installed(linked) => {
                let entry = self.entry(&linked.installed, key, stripe);
                match linked.codec.encode(value) {
                    Ok(bytes) => {
                        let overwritten = self
                            .attempt(&linked.installed, || {
                                linked.installed.l2.overwrite(&entry, &bytes, self.l2_ttl)
                            })
                            .await;
                        self.settle("refresh", overwritten)?;
                    }
                    Err(reason) => {
                        tracing::warn!(cache = self.name, %reason, "tiered: value cannot be encoded; kept in L1 only");
                    }
                }
                Some(entry.id)
            }
        })
    }

    /// Runs the body without caching when the key cannot be encoded.
    async fn uncached(&self, message: String, body: impl Future<Output = R>, outcome: &mut Outcome) -> R {
        let err = BackendError::Key {
            function: self.name.to_owned(),
            message,
        };
        if let Err(output) = self.settle("key", Err(err)) {
            return output;
        }
        self.compute(body, outcome).await
    }

    /// Runs the body: an origin call.
    async fn compute(&self, body: impl Future<Output = R>, outcome: &mut Outcome) -> R {
        self.stats.miss();
        #[cfg(feature = "metrics")]
        let started = Instant::now();
        let output = body.await;
        #[cfg(feature = "metrics")]
        crate::measure::body_ran(self.name, started.elapsed());
        *outcome = Outcome::Computed;
        output
    }

    /// Where this function's L2 is now. A missing runtime counts as a backend error.
    fn l2(&self) -> L2Access<V> {
        let Some(codec) = self.codec else {
            return L2Access::Absent;
        };
        match self.process.installed() {
            Some(installed) => L2Access::Installed(Linked { installed, codec }),
            None => {
                self.stats.backend_error();
                L2Access::NotInstalled
            }
        }
    }

    fn entry(&self, installed: &Installed, key: &Encoded<K>, stripe: usize) -> Entry<'static> {
        Entry {
            function: self.name,
            version: self.version,
            id: installed.entry_id(self.name, self.version, &key.bytes),
            stripe,
        }
    }

    /// Runs an L2 operation under the function's mode (retries and their backoff).
    async fn attempt<T, F, Fut>(&self, installed: &Installed, op: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        policy::run(
            self.on_failure.mode(),
            installed.backoff,
            &self.process.clock,
            &self.stats,
            self.name,
            op,
        )
        .await
    }

    fn settle(&self, operation: &str, result: Result<(), BackendError>) -> Result<(), R> {
        self.on_failure.settle(&self.errors, operation, result)
    }

    /// While the invalidation listener is down, L1 entries of an L2-backed function are
    /// served only while young: another process may have invalidated them meanwhile.
    #[inline]
    fn max_age(&self) -> Option<Duration> {
        match self.codec {
            Some(_) => self.process.listener.staleness_cap(),
            None => None,
        }
    }

    fn store_l1(
        &self,
        key: &Encoded<K>,
        id: Option<&EntryId>,
        value: &V,
        snapshot: Snapshot,
        remaining: Option<Duration>,
    ) {
        let stored = self.epochs.store_if_current(snapshot, || {
            self.l1
                .insert(key.stored.clone(), id, value.clone(), snapshot.all, remaining);
        });
        if !stored {
            self.superseded();
        }
    }

    fn superseded(&self) {
        tracing::debug!(
            cache = self.name,
            "tiered: entry was invalidated while computing; the result is returned but not cached"
        );
    }
}

impl<V, K, R> RegisteredCache for FnCache<V, K, R>
where
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    R: Output<V> + 'static,
{
    fn name(&self) -> &str {
        self.name
    }

    fn stats(&self) -> FunctionStats {
        self.stats.snapshot()
    }

    #[cfg(feature = "metrics")]
    fn l1_entries(&self) -> u64 {
        self.l1.len()
    }

    fn has_l2(&self) -> bool {
        self.codec.is_some()
    }

    fn clear_l1(&self) {
        self.drop_all_l1();
    }

    fn evict_ids(&self, ids: &[EntryId]) {
        self.epochs.invalidate_every_stripe(|| {
            for id in ids {
                self.l1.remove_by_id(id);
                self.stats.invalidation();
            }
        });
    }

    fn evict_remote(&self, notice: &Notice) {
        match notice {
            Notice::Key { stripe, id } => self.epochs.invalidate(*stripe, || self.l1.remove_by_id(id)),
            Notice::All => self.drop_all_l1(),
        }
        self.stats.invalidation();
    }
}

#[cfg(test)]
mod tests;
