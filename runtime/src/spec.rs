//! A function's settings as the attribute checked them.

use std::time::Duration;

use crate::codec::Codec;
use crate::error::TimedOut;
use crate::policy::OnFailure;

/// When the L2 write after a miss happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Before the caller gets the value.
    Through,
    /// In a background task; the caller does not wait for it.
    Behind,
}

/// The name of a function's cache: part of every L2 row id and of every notice, so a default
/// is made only of what is written in the source (see [`CacheName::Method`]).
#[derive(Debug, Clone, Copy)]
pub enum CacheName {
    /// Given in full (`name = "…"`, or `module_path!()::fn` for a free function).
    Fixed(&'static str),
    /// A method without `name`: `<module>::<Self type>::<method>`, where the type is its
    /// identifier alone (no path, no generic arguments).
    Method {
        /// `module_path!()` where the method is written.
        module: &'static str,
        /// The method's name.
        method: &'static str,
    },
}

impl CacheName {
    /// The name, given the type name of the method's `Self` (as `std::any::type_name` writes
    /// it). Only its last identifier is used: the part Rust's output has always spelled as
    /// the source does, whatever form the path or generic arguments take.
    pub(crate) fn resolve(self, owner: Option<&str>) -> String {
        match (self, owner) {
            (CacheName::Fixed(name), _) => name.to_owned(),
            (CacheName::Method { module, method }, None) => format!("{module}::{method}"),
            (CacheName::Method { module, method }, Some(owner)) => {
                let path = owner.split('<').next().unwrap_or(owner);
                let ident = path.rsplit("::").next().unwrap_or(path);
                format!("{module}::{ident}::{method}")
            }
        }
    }
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
    /// `fail_safe` and `fail_safe_throttle`; `None`: an expired value never answers.
    pub fail_safe: Option<FailSafe>,
    /// `timeout` (soft): with a stale value, how long a caller waits for the body.
    pub timeout: Option<Duration>,
    /// `hard_timeout`: the longest a caller waits for the body.
    pub hard_timeout: Option<HardTimeout<R>>,
    /// `eager_refresh`: the fraction of an entry's lifetime after which a hit refreshes it in
    /// the background.
    pub eager_refresh: Option<f64>,
    /// `cache_none = false`: which values are returned but not stored (`Option::is_none`).
    pub uncached: Option<fn(&V) -> bool>,
    /// `stampede = "fleet"`: the lease a process takes to compute a missing key while other
    /// processes wait for its value; `None`: `"process"`, each process computes.
    pub fleet_lease: Option<Duration>,
}

/// How long expired values may still answer when no fresh one can be had.
#[derive(Debug, Clone, Copy)]
pub struct FailSafe {
    /// `fail_safe`: how long past its expiry a value is kept and may answer.
    pub window: Duration,
    /// `fail_safe_throttle`: once a stale value answered for a failing body, how long it keeps
    /// answering before the body is tried again.
    pub throttle: Duration,
}

/// `hard_timeout`: the bound, and what a caller gets when it passes without a stale value.
pub struct HardTimeout<R> {
    /// How long a caller waits for the body at most.
    pub after: Duration,
    /// `Err(E::from(TimedOut))` ([`time_out`](crate::error::time_out)).
    pub timed_out: fn(TimedOut) -> R,
}

impl<R> Clone for HardTimeout<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for HardTimeout<R> {}

impl<R> std::fmt::Debug for HardTimeout<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HardTimeout")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl<V> std::fmt::Debug for Codec<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_methods_default_name_is_its_module_its_types_identifier_and_its_name() {
        let name = CacheName::Method {
            module: "app::repo",
            method: "get",
        };
        assert_eq!(
            name.resolve(Some("app::model::UserRepo")),
            "app::repo::UserRepo::get"
        );
        assert_eq!(
            name.resolve(Some("app::Repo<alloc::string::String, app::Id>")),
            "app::repo::Repo::get",
            "generic arguments are not part of it"
        );
        assert_eq!(CacheName::Fixed("x").resolve(Some("T")), "x");
    }
}
