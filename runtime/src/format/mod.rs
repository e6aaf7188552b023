//! The bytes of keys and L2 values: MessagePack, with `Some` marked so nested options stay exact.

mod decode;
mod encode;
#[cfg(test)]
pub(crate) mod properties;

pub(crate) use decode::Decoder;
pub(crate) use encode::{Encoder, Heap, Maps, Sink};

use rmp::Marker;

/// The byte before the value of a `Some`. MessagePack never uses it, so no other value starts
/// with it, and options stay exact however deeply they nest: `None` is `c0`, `Some(None)` and
/// `Some(())` are `c1 c0`, `Some(Some(None))` is `c1 c1 c0`.
const SOME: Marker = Marker::Reserved;

/// Deeper nesting is an error when decoding, so a corrupt row cannot exhaust the stack.
const MAX_DEPTH: usize = 1024;

/// Why a value could not be encoded or decoded.
#[derive(Debug)]
pub(crate) struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl serde::ser::Error for Error {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        Error(message.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        Error(message.to_string())
    }
}
