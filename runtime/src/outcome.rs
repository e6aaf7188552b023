//! How one call was answered: [`Outcome`], learnt through [`with_outcome`].

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How one call of a `#[tiered_cached]` function was answered, as [`with_outcome`] reports it.
///
/// The first four match the counts `l1_hits`, `l2_hits`, `coalesced` and `misses` of
/// [`FunctionStats`](crate::FunctionStats) (a body that ran before a failed L2 write counts in
/// `misses` too, though its call is a `BackendError`), `Stale` matches `stale_served`. More
/// outcomes may come, hence `#[non_exhaustive]`.
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
    /// No fresh value could be had (the body failed, panicked or passed a timeout) and an
    /// expired one answered instead, within the function's `fail_safe`.
    Stale,
}

impl Outcome {
    /// The outcome in `snake_case` (`"l1_hit"`, `"l2_hit"`, `"coalesced"`, `"computed"`,
    /// `"backend_error"`, `"stale"`), as it serializes: for a log field or a response header.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::L1Hit => "l1_hit",
            Outcome::L2Hit => "l2_hit",
            Outcome::Coalesced => "coalesced",
            Outcome::Computed => "computed",
            Outcome::BackendError => "backend_error",
            Outcome::Stale => "stale",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `record` writes to: the state of the innermost [`with_outcome`] being polled on this
/// thread. A thread-local swapped around each poll (as tokio's task-locals are, more cheaply),
/// so it follows the wrapped call's task and nothing else.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Outside,
    /// Within a `with_outcome`: the outcome of the last call that missed L1, if any did.
    Inside(Option<Outcome>),
}

thread_local! {
    static ANSWERED: Cell<Slot> = const { Cell::new(Slot::Outside) };
}

/// Awaits `call`, one call of a `#[tiered_cached]` function (or its `refresh_<fn>`), and
/// says how it was answered.
///
/// It reports on this call alone, whatever other tasks do meanwhile: of many concurrent
/// callers of one key, the one that computed gets [`Outcome::Computed`] and the others
/// [`Outcome::Coalesced`]. Cached functions called inside the body do not change the outer
/// call's outcome (nor do tasks it spawns). Wrap exactly one call: for a future making several,
/// the outcome is that of the last one answered other than from L1 (or [`Outcome::L1Hit`] if
/// all were L1 hits).
///
/// An unwrapped call pays nothing for this: an L1 hit never looks for a `with_outcome`, and
/// the other paths (L2 and the body) record their outcome only if one is waiting for it. A
/// wrapped L1 hit costs a few thread-local reads and writes more.
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
pub fn with_outcome<F: Future>(call: F) -> impl Future<Output = (F::Output, Outcome)> {
    WithOutcome { call, answered: None }
}

pin_project_lite::pin_project! {
    /// The future of [`with_outcome`].
    struct WithOutcome<F> {
        #[pin]
        call: F,
        answered: Option<Outcome>,
    }
}

impl<F: Future> Future for WithOutcome<F> {
    type Output = (F::Output, Outcome);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let scope = Scope::enter(*this.answered);
        let polled = this.call.poll(cx);
        *this.answered = scope.leave();
        let answered = this.answered.unwrap_or(Outcome::L1Hit);
        polled.map(|output| (output, answered))
    }
}

/// One poll's stay in a `with_outcome`: the enclosing slot comes back when it ends, even by
/// a panic.
struct Scope {
    outer: Slot,
}

impl Scope {
    fn enter(answered: Option<Outcome>) -> Self {
        Scope {
            outer: ANSWERED.replace(Slot::Inside(answered)),
        }
    }

    /// What was recorded during the poll.
    fn leave(self) -> Option<Outcome> {
        match ANSWERED.get() {
            Slot::Inside(answered) => answered,
            // Every nested scope restores ours when it leaves.
            Slot::Outside => None,
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        ANSWERED.set(self.outer);
    }
}

/// Tells the innermost enclosing [`with_outcome`], if any, how a call that missed L1 was
/// answered. Called once the call is over (its body included), so of nested cached calls
/// the outer one is recorded last.
pub(crate) fn record(outcome: Outcome) {
    ANSWERED.with(|slot| {
        if let Slot::Inside(_) = slot.get() {
            slot.set(Slot::Inside(Some(outcome)));
        }
    });
}
