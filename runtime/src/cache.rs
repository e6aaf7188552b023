//! One function's cache: the call path L1 → single-flight → L2 → body, refresh and
//! invalidation, each under the function's failure policy.

use std::convert::Infallible;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::call_key::{CallKey, Owned, Resolved};
use crate::codec::Codec;
use crate::error::BackendError;
use crate::invalidation::{stripe_of, Epochs, RegisteredCache, Snapshot};
use crate::l1::L1;
use crate::l2::{Entry, EntryId, Notice, Observed};
use crate::listener::{listening, staleness_cap};
use crate::policy::{self, BackendFailureMode};
use crate::runtime::{installed, Installed};
use crate::single_flight::{Flights, Role};
use crate::site::{Spec, WriteMode};
use crate::stats::{FnStats, FunctionStats};

/// The miss path of a call, boxed: the caller's future holds a pointer, not the miss path's
/// state (kilobytes of L2 I/O and single-flight state) that a hit never needs.
type Miss<F> = Pin<Box<F>>;

/// Why a cached call did not produce a value.
enum Failure<E, B> {
    /// The function body returned `Err`.
    Body(E),
    /// L2 failed and the function's mode propagates errors (`B = BackendError`); with
    /// `B = Infallible` backend errors are absorbed and this cannot happen.
    Backend(B),
}

/// What a backend error becomes for the caller: chosen by type, so the paths that absorb
/// errors cannot return one.
trait Escalation: Sized {
    /// `Some` if the error reaches the caller, `None` if it is logged and absorbed.
    fn escalate(err: &BackendError) -> Option<Self>;
}

impl Escalation for Infallible {
    fn escalate(_: &BackendError) -> Option<Self> {
        None
    }
}

impl Escalation for BackendError {
    fn escalate(err: &BackendError) -> Option<Self> {
        Some(err.clone())
    }
}

/// Which work a call does on a miss.
#[derive(Clone, Copy)]
enum Path {
    /// L1, then L2, then the body.
    Cached,
    /// The body now, bypassing both tiers (`refresh_<fn>`).
    Refresh,
}

/// Where a computed value goes in L2, and the state its write is conditional on.
struct WriteBack {
    installed: Arc<Installed>,
    observed: Observed,
}

/// Where one key lives: its epoch stripe and, when L2 is installed, its L2 entry id.
struct Slot<'k, K> {
    key: &'k Owned<K>,
    stripe: usize,
    id: Option<EntryId>,
}

/// The answer of L2 on an L1 miss.
enum Lookup<V> {
    Hit(V, Option<Duration>),
    /// Compute; then write back to L2, or keep the value in L1 only (no L2, or L2 failed).
    Miss(Option<WriteBack>),
}

/// The cache of one `#[tiered_cached]` function, its L1 keyed by `K` (see `call_key`). The
/// generated code reaches it through its `Site` and calls one of the methods below.
pub struct FnCache<V: 'static, K: 'static> {
    name: &'static str,
    version: u32,
    mode: BackendFailureMode,
    l2_ttl: Option<Duration>,
    write: WriteMode,
    codec: Option<Codec<V>>,
    l1: L1<V, K>,
    flights: Flights<V>,
    epochs: Epochs,
    stats: FnStats,
}

impl<V, K> std::fmt::Debug for FnCache<V, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnCache")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `NotConfigured` is logged once per process: it is a set-up choice, not an incident.
static WARNED_NOT_CONFIGURED: AtomicBool = AtomicBool::new(false);

impl<V, K> FnCache<V, K>
where
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(name: &'static str, spec: &Spec<V>) -> Self {
        FnCache {
            name,
            version: spec.version,
            mode: spec.on_failure,
            l2_ttl: spec.l2_ttl,
            write: spec.write,
            codec: spec.codec,
            l1: L1::new(spec.l1_capacity.max(1), spec.l1_ttl),
            flights: Flights::new(),
            epochs: Epochs::new(),
            stats: FnStats::default(),
        }
    }

    /// The value for the call's key if L1 has it live, counted as a hit. The generated fn
    /// returns it as it is: wrapping it in a ready future to await costs a hit a fifth more
    /// (the value, just cloned, is copied through each layer; BENCHMARKS.md).
    #[inline]
    pub fn hit<Q: CallKey<K>>(&self, key: &Q) -> Option<V> {
        let lookup = key.lookup()?;
        let value = self.l1.get(&lookup, self.epochs.all(), self.max_age())?;
        // Counted, not traced: even a disabled `trace!` costs a tenth of a hit.
        self.stats.l1_hit();
        Some(value)
    }

    /// The call's key past L1, as the miss paths, `refresh_<fn>` and `invalidate_<fn>` take it.
    pub fn resolve<Q: CallKey<K>>(&self, key: Q) -> Resolved<K> {
        key.resolve()
    }

    /// The miss path of a function returning a plain value: L2, else the body.
    pub fn call(
        &'static self,
        key: Resolved<K>,
        body: impl Future<Output = V>,
    ) -> Miss<impl Future<Output = V>> {
        Box::pin(self.plain(Path::Cached, key, body))
    }

    /// The miss path of a function returning `Result` whose mode absorbs backend errors.
    pub fn call_result<E>(
        &'static self,
        key: Resolved<K>,
        body: impl Future<Output = Result<V, E>>,
    ) -> Miss<impl Future<Output = Result<V, E>>> {
        Box::pin(async move {
            self.run::<E, Infallible>(Path::Cached, key, body)
                .await
                .map_err(Failure::into_body_error)
        })
    }

    /// The miss path of a function under `on_failure = "error"`.
    pub fn call_result_propagating<E: From<BackendError>>(
        &'static self,
        key: Resolved<K>,
        body: impl Future<Output = Result<V, E>>,
    ) -> Miss<impl Future<Output = Result<V, E>>> {
        Box::pin(async move {
            self.run::<E, BackendError>(Path::Cached, key, body)
                .await
                .map_err(Failure::into_error)
        })
    }

    /// `refresh_<fn>` of a function returning a plain value.
    pub async fn refresh(&'static self, key: Resolved<K>, body: impl Future<Output = V>) -> V {
        self.plain(Path::Refresh, key, body).await
    }

    /// `refresh_<fn>` of a function returning `Result` whose mode absorbs backend errors.
    pub async fn refresh_result<E>(
        &'static self,
        key: Resolved<K>,
        body: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        self.run::<E, Infallible>(Path::Refresh, key, body)
            .await
            .map_err(Failure::into_body_error)
    }

    /// `refresh_<fn>` under `on_failure = "error"`.
    pub async fn refresh_result_propagating<E: From<BackendError>>(
        &'static self,
        key: Resolved<K>,
        body: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        self.run::<E, BackendError>(Path::Refresh, key, body)
            .await
            .map_err(Failure::into_error)
    }

    async fn plain(&'static self, path: Path, key: Resolved<K>, body: impl Future<Output = V>) -> V {
        let result = self
            .run::<Infallible, Infallible>(path, key, async { Ok(body.await) })
            .await;
        match result.map_err(Failure::into_body_error) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    async fn run<E, B: Escalation>(
        &'static self,
        path: Path,
        key: Resolved<K>,
        body: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Failure<E, B>> {
        let key = match key.0 {
            Ok(key) => key,
            Err(message) => return self.uncached(message, body).await,
        };
        match path {
            Path::Cached => self.get(&key, body).await,
            Path::Refresh => self.recompute(&key, body).await,
        }
    }

    /// `invalidate_<fn>`: L2 first (tombstone), then this process's L1, so no caller can
    /// refill L1 from the old row after this returns.
    pub async fn invalidate(&'static self, key: Resolved<K>) -> Result<(), BackendError> {
        let key = key.0.map_err(|message| BackendError::Key {
            function: self.name.to_owned(),
            message,
        })?;
        let stripe = stripe_of(&key.bytes);
        let l2 = match self.codec {
            None => Ok(()),
            Some(_) => match installed() {
                None => Err(BackendError::NotConfigured),
                Some(installed) => {
                    let id = installed.backend.entry_id(self.name, self.version, &key.bytes);
                    let entry = self.entry(id, stripe);
                    policy::run(self.mode, installed.backoff, &self.stats, self.name, || {
                        installed.backend.invalidate(&entry)
                    })
                    .await
                }
            },
        };
        self.epochs.invalidate(stripe, || {
            self.l1.remove(&key.stored);
            self.flights.forget(&key.bytes);
        });
        self.stats.invalidation();
        self.absorb_by_mode("invalidate", l2)
    }

    /// `invalidate_all_<fn>`: a new epoch in L2 (O(1) in the number of rows), then in L1.
    pub async fn invalidate_all(&'static self) -> Result<(), BackendError> {
        let l2 = match self.codec {
            None => Ok(()),
            Some(_) => match installed() {
                None => Err(BackendError::NotConfigured),
                Some(installed) => {
                    policy::run(self.mode, installed.backoff, &self.stats, self.name, || {
                        installed.backend.invalidate_all(self.name)
                    })
                    .await
                }
            },
        };
        self.drop_all_l1();
        self.stats.invalidation();
        self.absorb_by_mode("invalidate all", l2)
    }

    /// Kills every L1 entry and every flight of this function in this process; computations
    /// that started earlier cannot store.
    fn drop_all_l1(&self) {
        self.epochs.invalidate_all();
        self.flights.forget_all();
        self.l1.clear();
    }

    /// The call path after an L1 miss ([`FnCache::hit`]).
    async fn get<E, B: Escalation>(
        &'static self,
        key: &Owned<K>,
        body: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Failure<E, B>> {
        let (result, role) = self.flights.run(&key.bytes, || self.compute(key, body)).await;
        if role == Role::Coalesced {
            self.stats.coalesced();
        }
        result
    }

    /// The leader's work on an L1 miss: L2, else the body, then the write-back.
    async fn compute<E, B: Escalation>(
        &'static self,
        key: &Owned<K>,
        body: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Failure<E, B>> {
        // A flight that ended between our L1 miss and joining may have filled L1.
        if let Some(value) = self.l1.get(&key.stored, self.epochs.all(), self.max_age()) {
            self.stats.l1_hit();
            return Ok(value);
        }
        let installed = self.codec.and_then(|_| installed());
        let slot = self.slot(key, installed.as_deref());
        // Taken before reading L2: an invalidation after this point refuses our L1 store.
        let snapshot = self.epochs.snapshot(slot.stripe);
        let write_back = match self
            .read_l2(&slot, snapshot, installed)
            .await
            .map_err(Failure::Backend)?
        {
            Lookup::Hit(value, remaining) => {
                self.stats.l2_hit();
                tracing::debug!(cache = self.name, "tiered: L2 hit");
                self.store_l1(&slot, &value, snapshot, remaining);
                return Ok(value);
            }
            Lookup::Miss(write_back) => write_back,
        };
        self.stats.miss();
        tracing::debug!(cache = self.name, "tiered: miss, running the function");
        let value = body.await.map_err(Failure::Body)?;
        self.write_back(&slot, &value, snapshot, write_back)
            .await
            .map_err(Failure::Backend)?;
        Ok(value)
    }

    fn slot<'k>(&self, key: &'k Owned<K>, installed: Option<&Installed>) -> Slot<'k, K> {
        Slot {
            key,
            stripe: stripe_of(&key.bytes),
            id: installed.map(|installed| installed.backend.entry_id(self.name, self.version, &key.bytes)),
        }
    }

    fn entry(&self, id: EntryId, stripe: usize) -> Entry<'static> {
        Entry {
            function: self.name,
            version: self.version,
            id,
            stripe,
        }
    }

    /// While the invalidation listener is down, L1 entries of an L2-backed function are
    /// served only while young: another process may have invalidated them meanwhile.
    #[inline]
    fn max_age(&self) -> Option<Duration> {
        self.codec.and_then(|_| staleness_cap())
    }

    async fn read_l2<B: Escalation>(
        &self,
        slot: &Slot<'_, K>,
        snapshot: Snapshot,
        installed: Option<Arc<Installed>>,
    ) -> Result<Lookup<V>, B> {
        let Some(codec) = self.codec else {
            return Ok(Lookup::Miss(None));
        };
        let (Some(installed), Some(id)) = (installed, slot.id) else {
            self.absorb("read", Err(BackendError::NotConfigured))?;
            return Ok(Lookup::Miss(None));
        };
        // The plain read needs the epoch and the notices that change it: without the listener,
        // another process's invalidate-all would go unseen.
        let known_epoch = self.epochs.l2_epoch().filter(|_| listening());
        let read = policy::run(self.mode, installed.backoff, &self.stats, self.name, || {
            installed.backend.read(self.name, &id, known_epoch)
        })
        .await;
        let read = match read {
            Ok(read) => read,
            Err(err) => {
                self.absorb("read", Err(err))?;
                return Ok(Lookup::Miss(None));
            }
        };
        if known_epoch.is_none() {
            self.epochs.learn_l2_epoch(snapshot.all, read.observed.epoch());
        }
        if let Some(bytes) = &read.value {
            match codec.decode(bytes) {
                Ok(value) => return Ok(Lookup::Hit(value, read.remaining)),
                Err(reason) => tracing::warn!(
                    cache = self.name,
                    %reason,
                    "tiered: L2 row cannot be decoded; treating it as a miss and overwriting it"
                ),
            }
        }
        Ok(Lookup::Miss(Some(WriteBack {
            installed,
            observed: read.observed,
        })))
    }

    async fn write_back<B: Escalation>(
        &'static self,
        slot: &Slot<'_, K>,
        value: &V,
        snapshot: Snapshot,
        write_back: Option<WriteBack>,
    ) -> Result<(), B> {
        let (Some(codec), Some(id), Some(WriteBack { installed, observed })) =
            (self.codec, slot.id, write_back)
        else {
            self.store_l1(slot, value, snapshot, None);
            return Ok(());
        };
        let bytes = match codec.encode(value) {
            Ok(bytes) => bytes,
            Err(reason) => {
                tracing::warn!(cache = self.name, %reason, "tiered: value cannot be encoded; kept in L1 only");
                self.store_l1(slot, value, snapshot, None);
                return Ok(());
            }
        };
        let entry = self.entry(id, slot.stripe);
        match self.write {
            WriteMode::Through => {
                let written = policy::run(self.mode, installed.backoff, &self.stats, self.name, || {
                    installed.backend.write(&entry, &bytes, self.l2_ttl, observed)
                })
                .await;
                match written {
                    Ok(true) => self.store_l1(slot, value, snapshot, None),
                    Ok(false) => self.superseded(),
                    Err(err) => {
                        self.absorb("write", Err(err))?;
                        self.store_l1(slot, value, snapshot, None);
                    }
                }
            }
            WriteMode::Behind => {
                self.store_l1(slot, value, snapshot, None);
                let key = slot.key.stored.clone();
                let tasks = installed.tasks.clone();
                tasks.spawn(async move {
                    let written = policy::run(self.mode, installed.backoff, &self.stats, self.name, || {
                        installed.backend.write(&entry, &bytes, self.l2_ttl, observed)
                    })
                    .await;
                    match written {
                        Ok(true) => {}
                        Ok(false) => {
                            // Invalidated while computing: drop what we put in L1 (at worst a
                            // newer entry, which costs a miss, never a stale read).
                            self.l1.remove(&key);
                            self.superseded();
                        }
                        Err(err) => {
                            let Ok(()) = self.absorb::<Infallible>("write behind", Err(err));
                        }
                    }
                });
            }
        }
        Ok(())
    }

    /// `refresh_<fn>`: runs the body, stores the value in both tiers as the newest, and
    /// makes every computation that started earlier unable to store over it.
    async fn recompute<E, B: Escalation>(
        &'static self,
        key: &Owned<K>,
        body: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Failure<E, B>> {
        self.stats.miss();
        let value = body.await.map_err(Failure::Body)?;
        let installed = self.codec.and_then(|_| installed());
        let slot = self.slot(key, installed.as_deref());
        if let Some(codec) = self.codec {
            let stored = match (installed, slot.id, codec.encode(&value)) {
                (None, _, _) | (_, None, _) => Err(BackendError::NotConfigured),
                (Some(_), Some(_), Err(reason)) => {
                    tracing::warn!(cache = self.name, %reason, "tiered: value cannot be encoded; kept in L1 only");
                    Ok(())
                }
                (Some(installed), Some(id), Ok(bytes)) => {
                    let entry = self.entry(id, slot.stripe);
                    policy::run(self.mode, installed.backoff, &self.stats, self.name, || {
                        installed.backend.overwrite(&entry, &bytes, self.l2_ttl)
                    })
                    .await
                }
            };
            self.absorb("refresh", stored).map_err(Failure::Backend)?;
        }
        self.epochs
            .invalidate(slot.stripe, || self.flights.forget(&key.bytes));
        let snapshot = self.epochs.snapshot(slot.stripe);
        self.store_l1(&slot, &value, snapshot, None);
        Ok(value)
    }

    /// Runs the body without caching when the key cannot be encoded.
    async fn uncached<E, B: Escalation>(
        &self,
        message: String,
        body: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Failure<E, B>> {
        let err = BackendError::Key {
            function: self.name.to_owned(),
            message,
        };
        self.absorb("key", Err(err)).map_err(Failure::Backend)?;
        self.stats.miss();
        body.await.map_err(Failure::Body)
    }

    fn store_l1(&self, slot: &Slot<'_, K>, value: &V, snapshot: Snapshot, remaining: Option<Duration>) {
        let stored = self.epochs.store_if_current(slot.stripe, snapshot, || {
            self.l1.insert(
                slot.key.stored.clone(),
                slot.id.as_ref(),
                value.clone(),
                snapshot.all,
                remaining,
            );
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

    /// Applies the failure policy to the outcome of an L2 operation: `Ok` if it succeeded or
    /// its error is absorbed (logged), `Err` if it must reach the caller.
    fn absorb<B: Escalation>(&self, operation: &str, outcome: Result<(), BackendError>) -> Result<(), B> {
        let Err(err) = outcome else { return Ok(()) };
        if let Some(escalated) = B::escalate(&err) {
            return Err(escalated);
        }
        match err {
            BackendError::NotConfigured => {
                if !WARNED_NOT_CONFIGURED.swap(true, Relaxed) {
                    tracing::warn!(
                        cache = self.name,
                        "tiered: {}; backend = \"pg\" functions run with L1 only",
                        BackendError::NotConfigured
                    );
                }
            }
            err => {
                tracing::warn!(cache = self.name, operation, error = %err, "tiered: L2 unavailable; carrying on with L1 only");
            }
        }
        Ok(())
    }

    /// [`FnCache::absorb`] for the helpers that always return `Result<(), BackendError>`.
    fn absorb_by_mode(&self, operation: &str, outcome: Result<(), BackendError>) -> Result<(), BackendError> {
        match self.mode.propagates() {
            true => self.absorb::<BackendError>(operation, outcome),
            false => self
                .absorb::<Infallible>(operation, outcome)
                .map_err(|never| match never {}),
        }
    }
}

impl<E> Failure<E, Infallible> {
    fn into_body_error(self) -> E {
        match self {
            Failure::Body(err) => err,
            Failure::Backend(never) => match never {},
        }
    }
}

impl<E: From<BackendError>> Failure<E, BackendError> {
    fn into_error(self) -> E {
        match self {
            Failure::Body(err) => err,
            Failure::Backend(err) => E::from(err),
        }
    }
}

impl<V, K> RegisteredCache for FnCache<V, K>
where
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        self.name
    }

    fn stats(&self) -> FunctionStats {
        self.stats.snapshot()
    }

    fn has_l2(&self) -> bool {
        self.codec.is_some()
    }

    fn clear_l1(&self) {
        self.drop_all_l1();
    }

    fn evict_remote(&self, notice: &Notice) {
        match notice {
            Notice::Key { stripe, id } => self.epochs.invalidate(*stripe, || self.l1.remove_by_id(id)),
            Notice::All => self.drop_all_l1(),
        }
        self.stats.invalidation();
    }
}
