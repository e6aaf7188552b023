//! The L2 backend as the call path sees it: a small trait, implemented by the PostgreSQL table
//! and, for unit tests, by memory.
//!
//! Writes are conditional so that a computation which started before an invalidation cannot
//! store its result after it ("no stale write-back"):
//!
//! - every entry has a `generation`; invalidating a key bumps it and leaves a tombstone, and a
//!   write succeeds only if the generation is still the one its computation read;
//! - every function has an `epoch`; `invalidate_all` bumps it (O(1)), entries of older epochs
//!   are never read, and a write succeeds only in the epoch it read. An entry's epoch is the
//!   sum of its function's, the namespace's (`clear_all`) and its tags' (`invalidate_tag`), so
//!   each of those is O(1) too.
//!
//! The operations that change what other processes may hold (overwrite, invalidate,
//! invalidate-all) send a notice to other processes if and only if the change is made.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::BackendError;
use crate::tags::{TagHash, Tags, NAMESPACE_EPOCH};

/// The id of one entry: SHA-256 over namespace, function, version and key, each
/// length-prefixed, so no two entries share an id whatever their size.
pub(crate) type EntryId = [u8; 32];

/// The id of an entry of `function` in `namespace`.
pub(crate) fn entry_id(namespace: &str, function: &str, version: u32, key: &[u8]) -> EntryId {
    let mut digest = Sha256::new();
    for part in [namespace.as_bytes(), function.as_bytes()] {
        digest.update((part.len() as u64).to_le_bytes());
        digest.update(part);
    }
    digest.update(version.to_le_bytes());
    // The key's encoding is self-delimiting: nothing can follow it ambiguously.
    digest.update(key);
    digest.finalize().into()
}

/// How long a tombstone stays. A computation that took longer than half of it does not
/// write back, since the tombstone that should reject it may be gone.
pub(crate) const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(600);

/// A boxed future of a backend operation.
pub(crate) type Op<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// One entry of one function, as the operations that change it need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub(crate) function: &'a str,
    pub(crate) version: u32,
    pub(crate) id: EntryId,
    /// The key's epoch stripe, for the notice to other processes.
    pub(crate) stripe: usize,
    pub(crate) tags: &'a Tags,
}

impl Entry<'_> {
    /// The rows of the epochs table whose sum is the entry's epoch: its function's, the
    /// namespace's (`clear_all`) and its tags'. Any of them moving makes the entry unreadable
    /// and refuses writes computed before.
    pub(crate) fn epoch_names(&self) -> Vec<String> {
        [self.function.to_owned(), NAMESPACE_EPOCH.to_owned()]
            .into_iter()
            .chain(self.tags.epoch_names())
            .collect()
    }
}

/// What a computation saw in L2 before computing; its write is conditional on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) generation: i64,
    /// The function's invalidate-all epoch the read was made under.
    pub(crate) epoch: i64,
}

/// The answer of an L2 read.
#[derive(Debug)]
pub(crate) struct Row {
    /// The encoded value if the entry is live (present, not a tombstone, of the current
    /// epoch, not expired).
    pub(crate) value: Option<Vec<u8>>,
    /// The live entry's lifetime left, when it has a TTL.
    pub(crate) remaining: Option<Duration>,
    pub(crate) observed: Observed,
}

/// A shared L2 store.
pub(crate) trait L2: Send + Sync {
    /// Reads an entry. With `known_epoch` (the entry's epoch as this process knows it) the
    /// entry is checked against it; without, the current epoch is read too and returned in
    /// [`Observed::epoch`].
    fn read<'a>(&'a self, entry: &'a Entry<'a>, known_epoch: Option<i64>) -> Op<'a, Row>;

    /// Stores a computed value unless the entry was invalidated since `observed`. Returns
    /// whether it was stored.
    fn write<'a>(
        &'a self,
        entry: &'a Entry<'a>,
        value: &'a [u8],
        ttl: Option<Duration>,
        observed: Observed,
    ) -> Op<'a, bool>;

    /// Stores a value unconditionally as the newest (bumping the generation, so computations
    /// that started earlier cannot overwrite it), and tells other processes (`refresh_*`).
    fn overwrite<'a>(&'a self, entry: &'a Entry<'a>, value: &'a [u8], ttl: Option<Duration>) -> Op<'a, ()>;

    /// Replaces the entry with a tombstone of a newer generation and tells other processes.
    fn invalidate<'a>(&'a self, entry: &'a Entry<'a>) -> Op<'a, ()>;

    /// Starts a new epoch for the function, so every entry it had is unreadable at once, and
    /// tells other processes.
    fn invalidate_all<'a>(&'a self, function: &'a str) -> Op<'a, ()>;

    /// Starts a new epoch for the tag, so every entry carrying it, of any function, is
    /// unreadable at once, and tells other processes.
    fn invalidate_tag<'a>(&'a self, tag: &'a TagHash) -> Op<'a, ()>;

    /// Starts a new epoch for the namespace, so every entry of every function is unreadable at
    /// once, and tells other processes.
    fn clear_all(&self) -> Op<'_, ()>;

    /// Lets go of the store's connections (at shutdown).
    fn close(&self);

    /// Takes the fleet-wide lease on computing entry `id` for `length` (`stampede = "fleet"`),
    /// unless a lease on it has not expired yet. `holder` names this taking: only it lets go.
    fn take_lease<'a>(&'a self, id: &'a EntryId, holder: i64, length: Duration) -> Op<'a, Lease>;

    /// Lets go of the lease `holder` took on `id`, if it still holds it.
    fn release_lease<'a>(&'a self, id: &'a EntryId, holder: i64) -> Op<'a, ()>;
}

/// What an attempt to take an entry's lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lease {
    /// This attempt holds it now.
    Taken,
    /// Another holder's lease has not expired.
    Held,
    /// The lease table is missing (tables made before `stampede = "fleet"`) or the role may
    /// not use it: why, as the server said it.
    Unusable(String),
}
