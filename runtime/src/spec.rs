//! A function's settings as the attribute checked them.

use std::time::Duration;

use crate::codec::Codec;
use crate::policy::OnFailure;

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

/// The settings of a function returning `R` whose cached part is `V`.
#[derive(Debug)]
pub struct Spec<V: 'static, R: 'static> {
    /// `name`.
    pub name: CacheName,
    /// `version`: part of the L2 key.
    pub version: u32,
    /// `on_failure`.
    pub on_failure: OnFailure<R>,
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
