//! `#[tiered_cached]`, the attribute of the `tiered` crate; use it through `tiered`.
//!
//! The work is in three stages, one per module: `args` reads the attribute's options as
//! written, `validate` checks them and the function and settles what they mean, `expand`
//! generates a thin call into `::tiered::__private`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod args;
mod expand;
mod validate;

use proc_macro::TokenStream;

/// Caches an `async fn` in two tiers: an in-process L1 over the shared PostgreSQL L2.
///
/// ```ignore
/// use tiered::tiered_cached;
///
/// #[tiered_cached(backend = "pg", on_failure = "retry(3)", ttl = "10m")]
/// pub async fn user_profile(id: u64) -> Result<Profile, AppError> {
///     load_profile(id).await
/// }
///
/// let profile = user_profile(7).await?;          // computed, then cached
/// let again = user_profile(7).await?;            // from L1
/// invalidate_user_profile(7).await?;             // gone from L1 and L2, in every process
/// let fresh = refresh_user_profile(7).await?;    // recomputed and stored now
/// invalidate_all_user_profile().await?;          // every entry of `user_profile`
/// ```
///
/// # Options
///
/// All are optional, and every value is checked at compile time.
///
/// | option | values | default | meaning |
/// |---|---|---|---|
/// | `backend` | `"pg"`, `"none"` | `"pg"` | `"pg"`: L1 + the PostgreSQL L2 installed at start-up; `"none"`: L1 only, and the cached type needs no serde traits (key arguments still need `Serialize`) |
/// | `on_failure` | `"l1_only"`, `"error"`, `"retry(N)"` with 1 ≤ N ≤ 255 | `"l1_only"` | what a failing L2 does to a call (`BackendFailureMode`) |
/// | `ttl` | `"<integer><unit>"`, unit `ms`, `s`, `m`, `h` or `d`, above zero: `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"` | no expiry | lifetime of an entry in both tiers |
/// | `l1_ttl`, `l2_ttl` | as `ttl` | `ttl` | per-tier lifetime (`l2_ttl` needs `backend = "pg"`) |
/// | `l1_capacity` | integer ≥ 1 | `10_000` | the entries kept in L1: any working set of this many keys fits (a few percent of slack per shard) |
/// | `name` | non-empty string | `module_path!()::fn` (a method: `module_path!()::<Self type>::fn`) | the cache's stable name: its L2 namespace, its stats label |
/// | `version` | integer (`u32`) | `0` | part of the L2 key: bump it when the cached type's encoding changes |
/// | `key` | a Rust expression in a string, over the arguments | all arguments except `self` | what identifies an entry, e.g. `key = "(tenant, id)"` |
/// | `write` | `"through"`, `"behind"` | `"through"` | `"behind"`: the L2 write after a miss runs off the caller's path (needs `backend = "pg"`) |
///
/// # What is cached
///
/// A fn returning `Result<V, E>` (any path whose last segment is `Result` with a type argument,
/// so `io::Result<V>` too) caches `V`: only `Ok` is stored, an `Err` goes to the caller. Under
/// `on_failure = "error"` a backend error reaches the caller as `E::from(BackendError)`, so
/// the fn must return a `Result` whose `E: From<tiered::BackendError>`. Any other return type
/// `V` is stored as it is. `V` must be owned (`'static`): `Clone + Send + Sync`, plus
/// `Serialize + DeserializeOwned` for `backend = "pg"`. The key's arguments must be
/// `Serialize`; references (`&str`, `&[u8]`, `&Struct`) work.
///
/// # Generated items
///
/// Next to `f(a: A, b: B) -> R`, with `f`'s visibility:
///
/// | item | does |
/// |---|---|
/// | `async fn invalidate_f(a: A, b: B) -> Result<(), BackendError>` | removes the entry from L1 and L2, and from every other process's L1 |
/// | `async fn invalidate_all_f() -> Result<(), BackendError>` | removes every entry of `f`, in both tiers, in every process |
/// | `async fn refresh_f(a: A, b: B) -> R` | runs the body now, bypassing both tiers, and stores an `Ok`/plain result in both |
///
/// The body moves to a hidden `__tiered_body_f` (which keeps the signature as written, and
/// the fn's `cfg` and lint attributes), and the cache lives in a `static` inside a hidden
/// `__tiered_cache_f`. `f` keeps its attributes, with `#[expect(..)]` relaxed to
/// `#[allow(..)]` on every generated fn: the fn is split in several, and a lint expected in one
/// part would be reported as unfulfilled in the others. Arguments written as patterns
/// (`(a, b): (u32, u32)`) are named `__tiered_arg0`, `__tiered_arg1`, … in `f` and its helpers.
///
/// # Methods
///
/// On a method with a receiver (`self`, `&self`, `&mut self`, `self: Arc<Self>`) in an
/// inherent, non-generic `impl` block, the helpers are associated fns of the same block:
/// `Self::invalidate_f(a, b)` and `Self::invalidate_all_f()` take no receiver (`self` is not
/// part of the key), unless the `key` expression uses `self`, in which case `invalidate_f`
/// takes `&self`; `refresh_f` takes the method's receiver. Without `name`, the cache is named
/// after the `Self` type's path and the method.
///
/// A fn without a receiver is treated as a free fn, so inside an `impl` only methods with a
/// receiver are supported: move an associated fn without receiver out of the `impl`. Trait
/// impls are not supported either (the helpers are not trait items).
///
/// # Rejected at compile time
///
/// Unknown or repeated options, out-of-range or malformed values, a fn that is not `async`,
/// an `unsafe fn`, type or const generic parameters and `impl Trait` arguments (the cache is
/// a `static`, which cannot use them; lifetime parameters are fine), an `impl Trait` or
/// borrowing cached type, `cfg` on arguments, `on_failure = "error"` without a `Result` return
/// type, and `write = "behind"` or `l2_ttl` with `backend = "none"`. On any error the item is
/// emitted unchanged next to the errors, so IDEs keep working.
#[proc_macro_attribute]
pub fn tiered_cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match validate::validate(args.into(), item.clone()) {
        Ok(cached) => expand::expand(&cached),
        Err(errors) => expand::fallback(item, errors),
    }
    .into()
}
