//! The engine behind [`tiered`](https://docs.rs/tiered): an in-process L1 per function
//! (quick_cache) over a shared PostgreSQL L2, with single-flight, a failure policy and
//! invalidation that never lets a stale result be stored after it.
//!
//! Use it through the `tiered` crate and its `#[tiered_cached]` attribute; this crate holds
//! everything that attribute calls, so all caching logic is ordinary, testable code.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod breaker;
mod cache;
mod call_key;
mod clock;
mod codec;
mod connect;
mod error;
#[cfg(feature = "metrics")]
mod export;
mod fanout;
mod format;
mod guard;
mod invalidation;
mod key;
mod l1;
mod lease;
mod listener;
#[cfg(feature = "metrics")]
mod measure;
#[cfg(test)]
mod memory;
mod notice;
mod outcome;
mod output;
mod pending;
mod policy;
mod postgres;
mod probe;
mod process;
mod protocol;
mod readers;
mod registry;
mod resync;
mod runtime;
mod schema;
mod single_flight;
mod site;
mod spec;
mod stats;
mod sweeper;
mod tags;

pub use deadpool_postgres;
pub use error::{BackendError, TimedOut};
#[cfg(feature = "metrics")]
pub use export::export_metrics;
pub use fanout::{clear_all, invalidate_tag};
pub use outcome::{with_outcome, Outcome};
pub use policy::BackendFailureMode;
pub use registry::{clear_l1, stats};
pub use runtime::{shutdown, Runtime, RuntimeBuilder};
pub use stats::FunctionStats;
pub use sweeper::l2_evictions;

/// What `#[tiered_cached]` expands to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::cache::{FnCache, Hit};
    pub use crate::call_key::{
        key_arguments, AnyKey, CallKey, KeyArgs, KeyPart, Parts, Resolved, ViaBytes, ViaTyped, MAX_PARTS,
        SCALAR_PARTS,
    };
    pub use crate::codec::{serde_codec, Codec};
    pub use crate::error::{time_out, BackendError};
    pub use crate::key::{key, Key};
    pub use crate::output::Output;
    pub use crate::policy::{escalate, OnFailure};
    pub use crate::site::Site;
    pub use crate::spec::{CacheName, FailSafe, HardTimeout, Spec, WriteMode};
    pub use crate::tags::{tags, Tags};
    pub use core::time::Duration;
}
