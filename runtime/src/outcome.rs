//! How one call was answered: [`Outcome`], learnt through [`with_outcome`].

use std::cell::Cell;
use std::future::Future;

/// How one call of a `#[tiered_cached]` function was answered, as [`with_outcome`] reports it.
///
/// The first four match the counts `l1_hits`, `l2_hits`, `coalesced` and `misses` of
/// [`FunctionStats`](crate::FunctionStats). More outcomes may come (a stale value served
/// while L2 is down, once that exists), hence `#[non_exhaustive]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// From this process's L1.
    L1Hit,
    /// From the shared L2 (after an L1 miss); the value is now in L1 too.
    L2Hit,
    /// Another caller in this process was computing (or reading L2 for) the same key; this
    /// call waited for it and returned its value. The body did not run for this call.
    Coalesced,
    /// This call ran the function's body and returned what it returned: a value (now
    /// cached), or an `Err` (not cached). `refresh_<fn>` always computes, and so does a call
    /// whose key cannot be encoded.
    Computed,
    /// The output is a [`BackendError`](crate::BackendError) converted into the function's
    /// error type (`on_failure = "error"` only): the L2 read failed before the body ran, or
    /// the L2 write after it did.
    BackendError,
}

impl Outcome {
    /// The outcome in `snake_case` (`"l1_hit"`, `"l2_hit"`, `"coalesced"`, `"computed"`,
    /// `"backend_error"`), as it serializes: for a log field or a response header.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::L1Hit => "l1_hit",
            Outcome::L2Hit => "l2_hit",
            Outcome::Coalesced => "coalesced",
            Outcome::Computed => "computed",
            Outcome::BackendError => "backend_error",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

tokio::task_local! {
    /// The outcome of the last call whose miss path finished within the innermost
    /// `with_outcome`; an L1 hit records nothing.
    static ANSWERED: Cell<Option<Outcome>>;
}

/// Awaits `call`, one call of a `#[tiered_cached]` function (or its `refresh_<fn>`), and
/// says how it was answered.
///
/// It reports on this call alone, whatever other tasks do meanwhile: of many concurrent
/// callers of one key, the one that computed gets [`Outcome::Computed`] and the others
/// [`Outcome::Coalesced`]. Cached functions called inside the body do not change the outer
/// call's outcome. Wrap exactly one call: for a future making several, the outcome is that of
/// the last one answered other than from L1 (or [`Outcome::L1Hit`] if all were L1 hits).
///
/// An unwrapped call pays nothing for this: an L1 hit never looks for a `with_outcome`, and
/// the other paths (L2 and the body) record their outcome only if one is waiting for it.
///
/// ```
/// use tiered::{tiered_cached, with_outcome, Outcome};
///
/// #[tiered_cached(backend = "none")]
/// async fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (value, outcome) = with_outcome(square(12)).await;
/// assert_eq!((value, outcome), (144, Outcome::Computed));
/// let (value, outcome) = with_outcome(square(12)).await;
/// assert_eq!((value, outcome), (144, Outcome::L1Hit));
/// assert_eq!(outcome.as_str(), "l1_hit");
/// # }
/// ```
pub async fn with_outcome<F: Future>(call: F) -> (F::Output, Outcome) {
    ANSWERED
        .scope(Cell::new(None), async move {
            let output = call.await;
            (output, ANSWERED.with(Cell::get).unwrap_or(Outcome::L1Hit))
        })
        .await
}

/// Tells the innermost enclosing [`with_outcome`], if any, how a call that missed L1 was
/// answered. Called once the call is over (its body included), so the outer call of nested
/// cached calls is the one recorded last.
pub(crate) fn record(outcome: Outcome) {
    // Outside any `with_outcome` there is nobody to tell.
    let _ = ANSWERED.try_with(|answered| answered.set(Some(outcome)));
}
