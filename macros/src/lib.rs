//! `#[tiered_cached]`; use it through the `tiered` crate.
use proc_macro::TokenStream;

/// Placeholder until the attribute lands.
#[proc_macro_attribute]
pub fn tiered_cached(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
