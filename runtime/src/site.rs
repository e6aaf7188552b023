//! What the attribute emits: one `static Site` per function, holding its settings and, once
//! used, its cache.

use std::hash::Hash;
use std::sync::OnceLock;

use crate::cache::FnCache;
use crate::output::Output;
use crate::process::PROCESS;
use crate::spec::{CacheName, Spec};

/// One function's settings and its cache, created on first use; `K` is how its L1 is keyed
/// (see `call_key`), `R` what the function returns.
#[derive(Debug)]
pub struct Site<V: 'static, K: 'static, R: 'static> {
    spec: Spec<V, R>,
    cache: OnceLock<FnCache<V, K, R>>,
}

impl<V, K, R> Site<V, K, R>
where
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    R: Output<V> + 'static,
{
    /// A site for a `static`.
    pub const fn new(spec: Spec<V, R>) -> Self {
        Site {
            spec,
            cache: OnceLock::new(),
        }
    }

    /// The cache of a free function, or of any function with a fixed name.
    #[inline]
    pub fn get(&'static self) -> &'static FnCache<V, K, R> {
        match self.cache.get() {
            Some(cache) => cache,
            None => self.create(|| None),
        }
    }

    /// The cache of a method of `Owner`: without `name`, it is called
    /// `<module>::<Owner's identifier>::<method>`, so equally named methods of different types
    /// never share a cache.
    #[inline]
    pub fn get_for<Owner: ?Sized>(&'static self) -> &'static FnCache<V, K, R> {
        match self.cache.get() {
            Some(cache) => cache,
            None => self.create(|| Some(std::any::type_name::<Owner>())),
        }
    }

    #[cold]
    fn create(&'static self, owner: impl FnOnce() -> Option<&'static str>) -> &'static FnCache<V, K, R> {
        let mut created = false;
        let cache = self.cache.get_or_init(|| {
            created = true;
            let name: &'static str = match self.spec.name {
                CacheName::Fixed(name) => name,
                // Once per function per process: a bounded leak.
                method => Box::leak(method.resolve(owner()).into_boxed_str()),
            };
            FnCache::new(name, &self.spec, &PROCESS)
        });
        if created {
            PROCESS.registry.register(cache);
        }
        cache
    }
}
