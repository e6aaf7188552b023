//! What the attribute emits: one `static Site` per function, holding its settings and, once
//! used, its cache.

use std::hash::Hash;
use std::sync::OnceLock;
use std::time::Duration;

use crate::cache::FnCache;
use crate::codec::Codec;
use crate::invalidation::registry;
use crate::policy::BackendFailureMode;

/// When the L2 write after a miss happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Before the caller gets the value.
    Through,
    /// In a background task; the caller does not wait for it.
    Behind,
}

/// The name of a function's cache.
#[derive(Debug, Clone, Copy)]
pub enum CacheName {
    /// Given in full (`name = "…"`, or `module_path!()::fn` for a free function).
    Fixed(&'static str),
    /// A method's name, to be qualified with its `Self` type's path.
    Method(&'static str),
}

/// A function's settings, as checked by the attribute.
#[derive(Debug)]
pub struct Spec<V: 'static> {
    /// `name`.
    pub name: CacheName,
    /// `version`: part of the L2 key.
    pub version: u32,
    /// `on_failure`.
    pub on_failure: BackendFailureMode,
    /// `l1_ttl` (or `ttl`); `None`: no expiry.
    pub l1_ttl: Option<Duration>,
    /// `l2_ttl` (or `ttl`); `None`: no expiry.
    pub l2_ttl: Option<Duration>,
    /// `l1_capacity`.
    pub l1_capacity: u64,
    /// `write`.
    pub write: WriteMode,
    /// `None` for `backend = "none"`.
    pub codec: Option<Codec<V>>,
}

impl<V> std::fmt::Debug for Codec<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

/// One function's settings and its cache, created on first use; `K` is how its L1 is keyed
/// (see `call_key`).
#[derive(Debug)]
pub struct Site<V: 'static, K: 'static> {
    spec: Spec<V>,
    cache: OnceLock<FnCache<V, K>>,
}

impl<V, K> Site<V, K>
where
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A site for a `static`.
    pub const fn new(spec: Spec<V>) -> Self {
        Site {
            spec,
            cache: OnceLock::new(),
        }
    }

    /// The cache of a free function, or of any function with a fixed name.
    #[inline]
    pub fn get(&'static self) -> &'static FnCache<V, K> {
        match self.cache.get() {
            Some(cache) => cache,
            None => self.create(|| None),
        }
    }

    /// The cache of a method of `Owner`: without `name`, it is called `<Owner path>::<method>`,
    /// so equally named methods of different types never share a cache.
    #[inline]
    pub fn get_for<Owner: ?Sized>(&'static self) -> &'static FnCache<V, K> {
        match self.cache.get() {
            Some(cache) => cache,
            None => self.create(|| Some(std::any::type_name::<Owner>())),
        }
    }

    #[cold]
    fn create(&'static self, owner: impl FnOnce() -> Option<&'static str>) -> &'static FnCache<V, K> {
        let mut created = false;
        let cache = self.cache.get_or_init(|| {
            created = true;
            let name: &'static str = match (self.spec.name, owner()) {
                (CacheName::Fixed(name), _) | (CacheName::Method(name), None) => name,
                // Once per function per process: a bounded leak.
                (CacheName::Method(method), Some(owner)) => {
                    Box::leak(format!("{owner}::{method}").into_boxed_str())
                }
            };
            FnCache::new(name, &self.spec)
        });
        if created {
            registry().register(cache);
        }
        cache
    }
}
