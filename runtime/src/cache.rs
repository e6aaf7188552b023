//! One function's cache: the call path L1 → single-flight → L2 → body, `refresh_*` and
//! `invalidate_*`, each under the function's failure policy.

use std::future::Future;
use std::hash::Hash;
use std::panic::{resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::backend::{Entry, EntryId, Observed, TOMBSTONE_LIFETIME};
use crate::call_key::{CallKey, Encoded, Resolved};
use crate::clock::nanos;
use crate::codec::Codec;
use crate::error::{BackendError, TimedOut};
use crate::invalidation::{stripe_of, Epochs, Snapshot};
use crate::l1::{Aged, Stale, L1};
use crate::lease::{Fleet, Held};
use crate::notice::Notice;
use crate::outcome::{self, Outcome};
use crate::output::Output;
use crate::pending::Owed;
use crate::policy::{self, ErrorLog, OnFailure};
use crate::process::{Installed, Process};
use crate::registry::RegisteredCache;
use crate::single_flight::{Flights, Renewals, Role};
use crate::spec::{FailSafe, HardTimeout, Spec, WriteMode};
use crate::stats::{FnStats, FunctionStats};
use crate::tags::{TagHash, TagIndex, Tags, NO_TAGS};

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
    fail_safe: Option<FailSafe>,
    timeout: Option<Duration>,
    hard_timeout: Option<HardTimeout<R>>,
    eager_refresh: Option<f64>,
    uncached: Option<fn(&V) -> bool>,
    fleet: Option<Fleet>,
    l1: L1<V, K>,
    flights: Flights<V>,
    renewals: Renewals,
    tag_index: TagIndex<K>,
    /// Whether an entry with tags was resolved: tag invalidations then detach its flights.
    tagged: AtomicBool,
    /// How many keys one tag's index holds before it is pruned against L1.
    prune_at: usize,
    epochs: Epochs,
    stats: FnStats,
    errors: ErrorLog,
    /// The log of the body's failures that `fail_safe` or `hard_timeout` answered for.
    failures: ErrorLog,
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
    /// Nothing fresh enough: compute, then store there. A value past its freshness but within
    /// `fail_safe` comes along, to answer if the body cannot.
    Nothing(Destination<V>, Option<Stale<V>>),
}

/// Where the leader stores what it computed.
enum Destination<V> {
    /// L1 alone: no L2, or L2 failed and the policy absorbed it. With the entry's L2 id, so
    /// that other processes' invalidations (notices, a reconnection's lookup) reach it.
    L1(Option<EntryId>),
    /// L2, conditional on what the read observed, then L1.
    Both(WriteBack<V>),
}

impl<V> Destination<V> {
    fn id(&self) -> Option<&EntryId> {
        match self {
            Destination::L1(id) => id.as_ref(),
            Destination::Both(write_back) => Some(&write_back.id),
        }
    }
}

/// What a flight leader has settled before the body runs.
struct Prepared<V> {
    snapshot: Snapshot,
    destination: Destination<V>,
    stale: Option<Stale<V>>,
}

/// Why the body gave no fresh value.
enum Failure<R> {
    /// It returned an `Err`.
    Output(R),
    /// It panicked (or, detached, its task was cancelled).
    Panic(Box<dyn std::any::Any + Send>),
    /// It was still running after this long.
    TimedOut(Duration),
}

/// How long a key whose eager refresh failed waits before a hit tries again, for a function
/// without `fail_safe` (with it, `fail_safe_throttle`).
const RENEWAL_PAUSE: Duration = Duration::from_secs(1);

/// How a flight leader runs the body: in the caller's task ([`Inline`]), or in a task of its
/// own that a caller can stop waiting for ([`Detached`]).
trait Body<V: 'static, K: 'static, R: 'static> {
    /// The body alone, to run uncached.
    fn into_body(self) -> impl Future<Output = R>;

    fn finish(
        self,
        cache: &'static FnCache<V, K, R>,
        key: &Encoded<K>,
        prepared: Prepared<V>,
        outcome: &mut Outcome,
    ) -> impl Future<Output = Result<V, R>>;
}

struct Inline<F>(F);

struct Detached<F>(F);

impl<V, K, R, F> Body<V, K, R> for Inline<F>
where
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    R: Output<V> + 'static,
    F: Future<Output = R>,
{
    fn into_body(self) -> impl Future<Output = R> {
        self.0
    }

    fn finish(
        self,
        cache: &'static FnCache<V, K, R>,
        key: &Encoded<K>,
        prepared: Prepared<V>,
        outcome: &mut Outcome,
    ) -> impl Future<Output = Result<V, R>> {
        cache.finish(key, self.0, prepared, outcome)
    }
}

impl<V, K, R, F> Body<V, K, R> for Detached<F>
where
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    R: Output<V> + Send + 'static,
    F: Future<Output = R> + Send + 'static,
{
    fn into_body(self) -> impl Future<Output = R> {
        self.0
    }

    fn finish(
        self,
        cache: &'static FnCache<V, K, R>,
        key: &Encoded<K>,
        prepared: Prepared<V>,
        outcome: &mut Outcome,
    ) -> impl Future<Output = Result<V, R>> {
        cache.finish_detached(key, self.0, prepared, outcome)
    }
}

/// What the hit path of a function with `eager_refresh` found.
pub enum Hit<V> {
    /// A live value, young enough.
    Fresh(V),
    /// A live value past the refresh point: the caller answers with it and calls
    /// [`FnCache::renew`].
    Due(V),
    /// Nothing live.
    Miss,
}

/// An L2 write conditional on an earlier read.
struct WriteBack<V> {
    linked: Linked<V>,
    id: EntryId,
    stripe: usize,
    observed: Observed,
    read_at: Instant,
    /// The listener's losses before the read (see `ListenerState::losses`).
    losses: u64,
    /// The key's fleet-wide lease, let go once the write is done (`stampede = "fleet"`).
    lease: Option<Held>,
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
            fail_safe: spec.fail_safe,
            timeout: spec.timeout,
            hard_timeout: spec.hard_timeout,
            eager_refresh: spec.eager_refresh,
            uncached: spec.uncached,
            fleet: spec.fleet_lease.map(Fleet::new),
            l1: L1::new(
                spec.l1_capacity.max(1),
                spec.l1_ttl,
                spec.fail_safe.map(|fail_safe| fail_safe.window),
                process.clock.clone(),
            ),
            flights: Flights::new(),
            renewals: Renewals::default(),
            tag_index: TagIndex::new(),
            tagged: AtomicBool::new(false),
            prune_at: usize::try_from(spec.l1_capacity)
                .unwrap_or(usize::MAX)
                .saturating_mul(2)
                .saturating_add(64),
            epochs: Epochs::new(),
            stats: FnStats::default(),
            errors: ErrorLog::new(name, process.clock.clone()),
            failures: ErrorLog::new(name, process.clock.clone()),
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

    /// [`FnCache::hit`] for a function with `eager_refresh`: a value past the refresh point
    /// answers, and the caller starts [`FnCache::renew`].
    #[inline]
    pub fn hit_aged<Q: CallKey<K>>(&self, key: &Q) -> Hit<V> {
        let (Some(lookup), Some(fraction)) = (key.lookup(), self.eager_refresh) else {
            return Hit::Miss;
        };
        match self
            .l1
            .get_aged(&lookup, self.epochs.all(), self.max_age(), fraction)
        {
            Some(Aged::Fresh(value)) => {
                self.stats.l1_hit();
                Hit::Fresh(value)
            }
            Some(Aged::Due(value)) => {
                self.stats.l1_hit();
                Hit::Due(value)
            }
            None => Hit::Miss,
        }
    }

    /// The call's key past L1, as the miss path, `refresh_<fn>` and `invalidate_<fn>` take it.
    pub fn resolve<Q: CallKey<K>>(&self, key: Q) -> Resolved<K> {
        key.resolve()
    }

    /// [`FnCache::resolve`] for a function with `tags`: the key with the entry's tags, and
    /// how often they were invalidated so far, so an entry invalidated by tag while it is
    /// computed is not stored.
    pub fn resolve_tagged<Q: CallKey<K>>(&self, key: Q, tags: Tags) -> Resolved<K> {
        self.tagged.store(true, Relaxed);
        let tag_epoch = self.process.registry.tags.sum(&tags);
        key.resolve().tagged(tags, tag_epoch)
    }

    /// The miss path of a call (after [`FnCache::hit`]): L2, else the body, once per key
    /// however many callers arrive together.
    pub fn call<F>(&'static self, key: Resolved<K>, body: F) -> Miss<impl Future<Output = R>>
    where
        F: Future<Output = R>,
    {
        Box::pin(self.miss(key, Inline(body)))
    }

    /// The miss path of a function with `timeout` or `hard_timeout`: as [`FnCache::call`], but
    /// the body runs in a task of its own, so a caller can stop waiting for it while it
    /// finishes and stores its value.
    pub fn call_detached<F>(&'static self, key: Resolved<K>, body: F) -> Miss<impl Future<Output = R>>
    where
        F: Future<Output = R> + Send + 'static,
        V: Send,
        R: Send,
    {
        Box::pin(self.miss(key, Detached(body)))
    }

    async fn miss<B: Body<V, K, R>>(&'static self, key: Resolved<K>, body: B) -> R {
        let arrival = tokio::time::Instant::now();
        // What a backend error handed to the caller leaves it at; every answer sets it.
        let mut outcome = Outcome::BackendError;
        let output = match key.0 {
            Ok(key) => {
                let flight = self.flights.run(&key.bytes, || async {
                    match self.prepare(&key, &mut outcome).await {
                        Ok(prepared) => body.finish(self, &key, prepared, &mut outcome).await,
                        Err(answer) => answer,
                    }
                });
                // Each caller, leader or waiter, waits at most `hard_timeout` from its arrival;
                // a detached body goes on without it.
                let flown = match self.hard_timeout {
                    None => Ok(flight.await),
                    Some(hard) => tokio::time::timeout_at(arrival + hard.after, flight)
                        .await
                        .map_err(|_| hard.after),
                };
                let (result, role) = match flown {
                    Ok(flown) => flown,
                    Err(after) => {
                        let output = self.past_hard_timeout(&key, after, &mut outcome);
                        outcome::record(outcome);
                        return output;
                    }
                };
                if role == Role::Coalesced {
                    self.stats.coalesced();
                    outcome = Outcome::Coalesced;
                }
                result.map_or_else(|output| output, R::from_cached)
            }
            Err(message) => self.uncached(message, body.into_body(), &mut outcome).await,
        };
        outcome::record(outcome);
        output
    }

    /// After [`Hit::Due`]: refreshes the entry in the background, once per key at a time,
    /// reading L2 first in case another process refreshed it. Misses of the key meanwhile
    /// join its flight.
    pub fn renew<F>(&'static self, key: Resolved<K>, body: F)
    where
        F: Future<Output = R> + Send + 'static,
        V: Send,
        R: Send,
    {
        let Ok(key) = key.0 else { return };
        let Some(renewal) = self.renewals.claim(&key.bytes, self.process.clock.ticks()) else {
            return;
        };
        self.stats.eager_refresh();
        tokio::spawn(async move {
            let mut renewal = renewal;
            let mut outcome = Outcome::BackendError;
            // The caller already answered: only the stores matter, and a failure leaves the
            // entry as it is (no stale value stands in for it), tried again after a pause.
            let (renewed, _) = self
                .flights
                .run(&key.bytes, || async {
                    match self.prepare_renewal(&key, &mut outcome).await {
                        Ok(prepared) => self.finish_renewal(&key, body, prepared, &mut outcome).await,
                        Err(answer) => answer,
                    }
                })
                .await;
            if renewed.is_err() {
                let pause = self
                    .fail_safe
                    .map_or(RENEWAL_PAUSE, |fail_safe| fail_safe.throttle);
                renewal.pause_until(self.process.clock.ticks().saturating_add(nanos(pause)));
            }
        });
    }

    /// The body of an eager refresh: its value stored as a miss's would be; a value the
    /// function does not cache (`cache_none = false`) removes the entry it would replace.
    async fn finish_renewal(
        &'static self,
        key: &Encoded<K>,
        body: impl Future<Output = R>,
        prepared: Prepared<V>,
        outcome: &mut Outcome,
    ) -> Result<V, R> {
        let value = self.compute(body, outcome).await.cached()?;
        if self.uncached.is_some_and(|uncached| uncached(&value)) {
            if let Err(err) = self.drop_key(key).await {
                self.errors.absorbed("eager refresh", &err);
            }
            return Ok(value);
        }
        self.keep(key, value, prepared.snapshot, prepared.destination, outcome)
            .await
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
        let in_l2 = self.drop_key(&key).await;
        self.on_failure.settle_helper(&self.errors, "invalidate", in_l2)
    }

    /// Invalidates one key: L2 (a tombstone), then this process's L1 whatever L2 did.
    async fn drop_key(&'static self, key: &Encoded<K>) -> Result<(), BackendError> {
        let stripe = stripe_of(&key.bytes);
        let in_l2 = match self.l2() {
            L2Access::Absent => Ok(()),
            L2Access::NotInstalled => Err(BackendError::NotConfigured),
            L2Access::Installed(linked) => {
                let entry = self.entry(&linked.installed, key, stripe);
                let l2 = &linked.installed.l2;
                let done = self.attempt(&linked.installed, || l2.invalidate(&entry)).await;
                // Owed to L2 (and so to other processes) until it answers: see `pending`.
                // Past its bound, an invalidate-all is owed instead, and applied here too.
                done.inspect_err(|err| {
                    // The tags play no part in an invalidation.
                    let owed = Entry {
                        function: self.name,
                        version: self.version,
                        id: entry.id,
                        stripe,
                        tags: &NO_TAGS,
                    };
                    if l2.owe(Owed::Key(owed), err, &self.stats) {
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
        in_l2
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
        self.tag_index.clear();
    }

    /// The flight leader's work after an L1 miss, before the body: L1 again, then L2. `Err`
    /// holds the value found (`Ok`) or the output a backend error became (`Err`).
    async fn prepare(
        &'static self,
        key: &Encoded<K>,
        outcome: &mut Outcome,
    ) -> Result<Prepared<V>, Result<V, R>> {
        // A flight that ended between our L1 miss and joining may have filled L1.
        if let Some(value) = self.l1.get(&key.stored, self.epochs.all(), self.max_age()) {
            self.stats.l1_hit();
            *outcome = Outcome::L1Hit;
            return Err(Ok(value));
        }
        self.look_up(key, Duration::ZERO, outcome).await
    }

    /// [`FnCache::prepare`] for an eager refresh: an L2 row counts only if it is not due for
    /// a refresh itself (another process refreshed it).
    async fn prepare_renewal(
        &'static self,
        key: &Encoded<K>,
        outcome: &mut Outcome,
    ) -> Result<Prepared<V>, Result<V, R>> {
        let fraction = self.eager_refresh.unwrap_or(0.0);
        let young = self
            .l2_ttl
            .map_or(Duration::ZERO, |ttl| ttl.mul_f64(1.0 - fraction));
        self.look_up(key, young, outcome).await
    }

    /// Reads L2 for the leader: a value fresh for more than `fresh_beyond` answers.
    async fn look_up(
        &'static self,
        key: &Encoded<K>,
        fresh_beyond: Duration,
        outcome: &mut Outcome,
    ) -> Result<Prepared<V>, Result<V, R>> {
        let stripe = stripe_of(&key.bytes);
        // Taken before reading L2: an invalidation after this point refuses our L1 store.
        let snapshot = self.epochs.snapshot(stripe);
        let found = self.read_l2(key, stripe, snapshot, fresh_beyond).await;
        // stampede = "fleet": another process may be computing the key (see `fleet`).
        match self
            .fleet_turn(key, stripe, snapshot, fresh_beyond, found.map_err(Err)?)
            .await
            .map_err(Err)?
        {
            Found::Value { value, remaining, id } => {
                self.stats.l2_hit();
                *outcome = Outcome::L2Hit;
                tracing::debug!(cache = self.name, "tiered: L2 hit");
                self.store_l1(key, Some(&id), &value, snapshot, remaining);
                Err(Ok(value))
            }
            Found::Nothing(destination, stale) => {
                if let (Some(stale), Some(_)) = (&stale, self.hard_timeout) {
                    // Where every caller past `hard_timeout` looks for one.
                    self.admit(key, snapshot, || {
                        self.l1.insert_stale(
                            key.stored.clone(),
                            destination.id(),
                            stale,
                            snapshot.all,
                            Duration::ZERO,
                        );
                    });
                }
                let stale = match self.fail_safe {
                    None => None,
                    Some(_) => stale.or_else(|| self.l1.stale(&key.stored, snapshot.all, self.max_age())),
                };
                Ok(Prepared {
                    snapshot,
                    destination,
                    stale,
                })
            }
        }
    }

    /// Runs the body in the caller's task, stores its value, and falls back to a stale value
    /// if it fails or panics.
    async fn finish(
        &'static self,
        key: &Encoded<K>,
        body: impl Future<Output = R>,
        prepared: Prepared<V>,
        outcome: &mut Outcome,
    ) -> Result<V, R> {
        tracing::debug!(cache = self.name, "tiered: miss, running the function");
        let Prepared {
            snapshot,
            destination,
            stale,
        } = prepared;
        let Some(stale) = stale else {
            let value = self.compute(body, outcome).await.cached()?;
            return self.keep(key, value, snapshot, destination, outcome).await;
        };
        let id = destination.id().copied();
        let failure = match AssertUnwindSafe(self.compute(body, outcome)).catch_unwind().await {
            Ok(output) => match output.cached() {
                Ok(value) => return self.keep(key, value, snapshot, destination, outcome).await,
                Err(output) => Failure::Output(output),
            },
            Err(panic) => Failure::Panic(panic),
        };
        self.rescue(key, id.as_ref(), stale, snapshot, failure, outcome)
    }

    /// [`FnCache::finish`] with the body in a task of its own, which stores its value whether
    /// or not a caller still waits for it: callers wait up to `timeout` when a stale value can
    /// answer instead, and up to `hard_timeout` in any case.
    async fn finish_detached<F>(
        &'static self,
        key: &Encoded<K>,
        body: F,
        prepared: Prepared<V>,
        outcome: &mut Outcome,
    ) -> Result<V, R>
    where
        F: Future<Output = R> + Send + 'static,
        V: Send,
        R: Send,
    {
        let Prepared {
            snapshot,
            destination,
            mut stale,
        } = prepared;
        let id = destination.id().copied();
        let owned = key.clone();
        // Outer `Err`: the body's own; inner: what storing its value came to.
        let mut task = tokio::spawn(async move {
            let mut ignored = Outcome::Computed;
            let value = self.compute(body, &mut ignored).await.cached()?;
            Ok(self
                .keep(&owned, value, snapshot, destination, &mut ignored)
                .await)
        });
        *outcome = Outcome::Computed;
        if let (Some(soft), Some(_)) = (self.timeout, &stale) {
            match tokio::time::timeout(soft, &mut task).await {
                Ok(joined) => return self.joined(key, id.as_ref(), stale, snapshot, joined, outcome),
                Err(_) => {
                    let waited = Failure::TimedOut(soft);
                    let stale = stale.take().expect("checked above");
                    if let Some(value) = self.serve_stale(key, id.as_ref(), stale, snapshot, &waited, outcome)
                    {
                        return Ok(value);
                    }
                }
            }
        }
        // `hard_timeout` bounds every caller's wait from its arrival (see `miss`).
        let joined = task.await;
        self.joined(key, id.as_ref(), stale, snapshot, joined, outcome)
    }

    /// A caller's answer past `hard_timeout`: the stale value this process holds for the key
    /// (a leader puts one it found in L2 there too), else `TimedOut`.
    fn past_hard_timeout(&self, key: &Encoded<K>, after: Duration, outcome: &mut Outcome) -> R {
        let snapshot = self.epochs.snapshot(stripe_of(&key.bytes));
        let failure = Failure::TimedOut(after);
        let answer = match self.l1.stale(&key.stored, snapshot.all, self.max_age()) {
            Some(stale) => {
                let id = self.l1_id(key);
                self.rescue(key, id.as_ref(), stale, snapshot, failure, outcome)
            }
            None => self.fail(failure),
        };
        answer.map_or_else(|output| output, R::from_cached)
    }

    /// The id other processes' notices name the key's entry by, if the function has an L2.
    fn l1_id(&self, key: &Encoded<K>) -> Option<EntryId> {
        self.codec?;
        let installed = self.process.installed()?;
        Some(installed.entry_id(self.name, self.version, &key.bytes))
    }

    /// What a detached body's task ended with, for its caller.
    fn joined(
        &self,
        key: &Encoded<K>,
        id: Option<&EntryId>,
        stale: Option<Stale<V>>,
        snapshot: Snapshot,
        joined: Result<Result<Result<V, R>, R>, tokio::task::JoinError>,
        outcome: &mut Outcome,
    ) -> Result<V, R> {
        let failure = match joined {
            // A fresh value, or the backend error its write became (`on_failure = "error"`).
            Ok(Ok(kept)) => {
                if kept.is_err() {
                    *outcome = Outcome::BackendError;
                }
                return kept;
            }
            Ok(Err(output)) => Failure::Output(output),
            Err(err) if err.is_panic() => Failure::Panic(err.into_panic()),
            // Only a runtime shutting down cancels the task.
            Err(err) => Failure::Panic(Box::new(err.to_string())),
        };
        match stale {
            Some(stale) => self.rescue(key, id, stale, snapshot, failure, outcome),
            None => self.fail(failure),
        }
    }

    /// Answers with the stale value instead of the failure, unless an invalidation took it.
    fn rescue(
        &self,
        key: &Encoded<K>,
        id: Option<&EntryId>,
        stale: Stale<V>,
        snapshot: Snapshot,
        failure: Failure<R>,
        outcome: &mut Outcome,
    ) -> Result<V, R> {
        match self.serve_stale(key, id, stale, snapshot, &failure, outcome) {
            Some(value) => Ok(value),
            None => self.fail(failure),
        }
    }

    /// The caller's answer when nothing could stand in for the body's.
    fn fail(&self, failure: Failure<R>) -> Result<V, R> {
        match failure {
            Failure::Output(output) => Err(output),
            Failure::Panic(panic) => resume_unwind(panic),
            Failure::TimedOut(after) => {
                let hard = self.hard_timeout.expect("only a hard timeout ends a wait");
                if let Some(unlogged) = self.failures.due() {
                    tracing::warn!(
                        cache = self.name,
                        ?after,
                        unlogged,
                        "tiered: the function did not finish within its hard_timeout and no stale value \
                         could answer; it goes on in the background"
                    );
                }
                Err((hard.timed_out)(TimedOut {
                    function: self.name.to_owned(),
                    after,
                }))
            }
        }
    }

    /// The stale value, stored in L1 to answer for the throttle, unless an invalidation since
    /// `snapshot` removed it.
    fn serve_stale(
        &self,
        key: &Encoded<K>,
        id: Option<&EntryId>,
        stale: Stale<V>,
        snapshot: Snapshot,
        failure: &Failure<R>,
        outcome: &mut Outcome,
    ) -> Option<V> {
        let throttle = self.fail_safe?.throttle;
        let current = self.admit(key, snapshot, || {
            self.l1
                .insert_stale(key.stored.clone(), id, &stale, snapshot.all, throttle);
        });
        if !current {
            return None;
        }
        self.stats.stale_served();
        if let Some(unlogged) = self.failures.due() {
            let reason = match failure {
                Failure::Output(_) => "the function returned an error".to_owned(),
                Failure::Panic(_) => "the function panicked".to_owned(),
                Failure::TimedOut(after) => format!("the function ran longer than {after:?}"),
            };
            tracing::warn!(
                cache = self.name,
                reason,
                unlogged,
                "tiered: no fresh value; a stale one answers (fail_safe)"
            );
        }
        *outcome = Outcome::Stale;
        Some(stale.value)
    }

    /// Stores a value the body produced, unless it is one the function does not cache.
    async fn keep(
        &'static self,
        key: &Encoded<K>,
        value: V,
        snapshot: Snapshot,
        destination: Destination<V>,
        outcome: &mut Outcome,
    ) -> Result<V, R> {
        if self.uncached.is_some_and(|uncached| uncached(&value)) {
            return Ok(value);
        }
        self.store(key, &value, snapshot, destination)
            .await
            .inspect_err(|_| *outcome = Outcome::BackendError)?;
        Ok(value)
    }

    /// Reads the key's L2 row: a value fresh for more than `fresh_beyond` is found.
    async fn read_l2(
        &self,
        key: &Encoded<K>,
        stripe: usize,
        snapshot: Snapshot,
        fresh_beyond: Duration,
    ) -> Result<Found<V>, R> {
        let linked = match self.l2() {
            L2Access::Absent => return Ok(Found::Nothing(Destination::L1(None), None)),
            L2Access::NotInstalled => {
                self.settle("read", Err(BackendError::NotConfigured))?;
                return Ok(Found::Nothing(Destination::L1(None), None));
            }
            L2Access::Installed(linked) => linked,
        };
        let entry = self.entry(&linked.installed, key, stripe);
        // The plain read needs the epoch and the notices that change it: without the listener,
        // another process's invalidate-all would go unseen. A tagged entry's epoch includes its
        // tags', which only its own read learns.
        let tagged = !key.tags.is_empty();
        let known_epoch = self
            .epochs
            .l2_epoch()
            .filter(|_| self.process.listener.listening() && !tagged);
        let read_at = self.process.clock.now();
        let losses = self.process.listener.losses();
        let read = self
            .attempt(&linked.installed, || {
                linked.installed.l2.read(&entry, known_epoch)
            })
            .await;
        let row = match read {
            Ok(row) => row,
            Err(err) => {
                self.settle("read", Err(err))?;
                return Ok(Found::Nothing(Destination::L1(Some(entry.id)), None));
            }
        };
        if known_epoch.is_none() && !tagged {
            self.epochs.learn_l2_epoch(snapshot.all, row.observed.epoch);
        }
        let mut stale = None;
        if let Some(bytes) = &row.value {
            match self.decode(&linked.codec, key, bytes) {
                Ok(value) => {
                    // A row lives `fail_safe` past its freshness (see `l2_lifetime`).
                    let window = self
                        .fail_safe
                        .map_or(Duration::ZERO, |fail_safe| fail_safe.window);
                    let fresh = row.remaining.map(|remaining| remaining.saturating_sub(window));
                    match fresh {
                        Some(fresh) if fresh <= fresh_beyond => {
                            let remaining = row.remaining.unwrap_or_default();
                            stale = Some(self.l1.stale_from_l2(value, remaining));
                        }
                        remaining => {
                            return Ok(Found::Value {
                                value,
                                remaining,
                                id: entry.id,
                            })
                        }
                    }
                }
                Err(reason) => tracing::warn!(
                    cache = self.name,
                    %reason,
                    "tiered: L2 row cannot be decoded; treating it as a miss and overwriting it"
                ),
            }
        }
        let write_back = WriteBack {
            linked,
            id: entry.id,
            stripe,
            observed: row.observed,
            read_at,
            losses,
            lease: None,
        };
        Ok(Found::Nothing(Destination::Both(write_back), stale))
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
            id,
            stripe,
            observed,
            read_at,
            losses,
            lease,
        } = write_back;
        let bytes = match self.encode(&linked.codec, key, value) {
            Ok(bytes) => bytes,
            Err(reason) => {
                tracing::warn!(cache = self.name, %reason, "tiered: value cannot be encoded; kept in L1 only");
                self.store_l1(key, Some(&id), value, snapshot, None);
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
            self.store_l1(key, Some(&id), value, snapshot, None);
            return Ok(());
        }
        let entry = self.entry_at(key, id, stripe);
        match self.write {
            WriteMode::Through => {
                let written = self
                    .attempt(&linked.installed, || {
                        linked
                            .installed
                            .l2
                            .write(&entry, &bytes, self.l2_lifetime(), observed)
                    })
                    .await;
                match written {
                    Ok(true) => self.store_l1(key, Some(&id), value, snapshot, None),
                    Ok(false) => self.superseded(),
                    Err(err) => {
                        self.settle("write", Err(err))?;
                        self.store_l1(key, Some(&id), value, snapshot, None);
                    }
                }
            }
            WriteMode::Behind => {
                self.store_l1(key, Some(&id), value, snapshot, None);
                let key = key.clone();
                let tasks = linked.installed.tasks.clone();
                tasks.spawn(async move {
                    let entry = self.entry_at(&key, id, stripe);
                    // Let go of the key's lease once the write is done.
                    let _lease = lease;
                    let written = self
                        .attempt(&linked.installed, || {
                            linked
                                .installed
                                .l2
                                .write(&entry, &bytes, self.l2_lifetime(), observed)
                        })
                        .await;
                    match written {
                        Ok(true) => {}
                        Ok(false) => {
                            // Invalidated while computing: drop what we put in L1 (at worst a
                            // newer entry, which costs a miss, never a stale read).
                            self.l1.remove(&key.stored);
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
        if self.uncached.is_some_and(|uncached| uncached(&value)) {
            // Not stored, so the entry it replaces must not answer either.
            let dropped = self.drop_key(key).await;
            self.settle("refresh", dropped)
                .inspect_err(|_| *outcome = Outcome::BackendError)?;
            return Ok(value);
        }
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
                match self.encode(&linked.codec, key, value) {
                    Ok(bytes) => {
                        let overwritten = self
                            .attempt(&linked.installed, || {
                                linked.installed.l2.overwrite(&entry, &bytes, self.l2_lifetime())
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

    fn entry<'k>(&self, installed: &Installed, key: &'k Encoded<K>, stripe: usize) -> Entry<'k> {
        self.entry_at(
            key,
            installed.entry_id(self.name, self.version, &key.bytes),
            stripe,
        )
    }

    fn entry_at<'k>(&self, key: &'k Encoded<K>, id: EntryId, stripe: usize) -> Entry<'k> {
        Entry {
            function: self.name,
            version: self.version,
            id,
            stripe,
            tags: &key.tags,
        }
    }

    /// A value as its L2 row holds it: a tagged entry's begins with the digest of its tags, so
    /// a row written under other tags (tags that are not a function of the key) is not
    /// taken for it (their epochs differ, yet their sums may not).
    fn encode(&self, codec: &Codec<V>, key: &Encoded<K>, value: &V) -> Result<Vec<u8>, String> {
        let encoded = codec.encode(value)?;
        if key.tags.is_empty() {
            return Ok(encoded);
        }
        let mut bytes = key.tags.digest().to_vec();
        bytes.extend_from_slice(&encoded);
        Ok(bytes)
    }

    /// The value of an L2 row written by [`FnCache::encode`].
    fn decode(&self, codec: &Codec<V>, key: &Encoded<K>, bytes: &[u8]) -> Result<V, String> {
        if key.tags.is_empty() {
            return codec.decode(bytes);
        }
        match bytes.split_at_checked(32) {
            Some((digest, value)) if digest == key.tags.digest() => codec.decode(value),
            _ => Err("the row was written under other tags".to_owned()),
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
    /// With `fail_safe`, they are served up to its window, what the function accepts as stale:
    /// in an outage no invalidation can commit; in a partition of this process alone, one
    /// made elsewhere may be served here that long (the README states the trade-off).
    #[inline]
    fn max_age(&self) -> Option<Duration> {
        match self.codec {
            Some(_) => self
                .process
                .listener
                .staleness_cap()
                .map(|cap| match self.fail_safe {
                    Some(fail_safe) => cap.max(fail_safe.window),
                    None => cap,
                }),
            None => None,
        }
    }

    /// How long an L2 row lives: its TTL, and with `fail_safe` its window past it.
    fn l2_lifetime(&self) -> Option<Duration> {
        let window = self
            .fail_safe
            .map_or(Duration::ZERO, |fail_safe| fail_safe.window);
        self.l2_ttl.map(|ttl| ttl.saturating_add(window))
    }

    fn store_l1(
        &self,
        key: &Encoded<K>,
        id: Option<&EntryId>,
        value: &V,
        snapshot: Snapshot,
        remaining: Option<Duration>,
    ) {
        let stored = self.admit(key, snapshot, || {
            self.l1
                .insert(key.stored.clone(), id, value.clone(), snapshot.all, remaining);
        });
        if !stored {
            self.superseded();
        }
    }

    /// Runs `insert` (an L1 store of `key`) unless an invalidation of the key, of the function
    /// or of one of the key's tags happened since `snapshot` (and since the key was resolved,
    /// for its tags). Returns whether it ran.
    fn admit(&self, key: &Encoded<K>, snapshot: Snapshot, insert: impl FnOnce()) -> bool {
        if key.tags.is_empty() {
            return self.epochs.store_if_current(snapshot, insert);
        }
        // Under the lock tag invalidations evict with: a tag invalidated after this check
        // finds the key in the index.
        let tag_epochs = self.process.registry.tags.lock();
        if tag_epochs.sum(&key.tags) != key.tag_epoch {
            return false;
        }
        let stored = self.epochs.store_if_current(snapshot, insert);
        if stored {
            let limit = self.prune_at;
            self.tag_index
                .insert(&key.stored, &key.tags, limit, |key| self.l1.contains(key));
        }
        stored
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
            Notice::Key { stripe, id } => self.epochs.invalidate(*stripe, || {
                self.l1.remove_by_id(id);
                // A caller from now on must not join a computation that began before.
                if let Some(installed) = self.process.installed() {
                    self.flights
                        .forget_where(|bytes| installed.entry_id(self.name, self.version, bytes) == *id);
                }
            }),
            Notice::All => self.drop_all_l1(),
            // The registry fans these out to every cache.
            Notice::Tag(_) | Notice::Clear => return,
        }
        self.stats.invalidation();
    }

    fn evict_tag(&self, tag: &TagHash) {
        // Which tags a running computation's entry carries is not kept: every one of a tagged
        // function is detached, so no caller from now on joins one that began before.
        if self.tagged.load(Relaxed) {
            self.flights.forget_all();
        }
        let keys = self.tag_index.take(tag);
        if keys.is_empty() {
            return;
        }
        for key in &keys {
            self.l1.remove(key);
        }
        self.stats.tag_invalidation();
    }
}

mod fleet;
#[cfg(test)]
mod tests;
