//! Key encoding: a call's arguments as collision-free bytes (MessagePack), inline up to 64 bytes.

use serde::Serialize;
use smallvec::SmallVec;

/// The encoded key of one call. Keys up to 64 bytes live inline, so building one for an L1
/// lookup allocates nothing.
pub type KeyBytes = SmallVec<[u8; 64]>;

/// The key of one call, or why it could not be encoded.
#[derive(Debug)]
pub struct Key(pub(crate) Result<KeyBytes, String>);

/// Encodes the key arguments of a call.
///
/// MessagePack is self-delimiting (lengths precede strings, sequences and maps), so two
/// different argument tuples of one function never encode to the same bytes.
pub fn key<K: Serialize + ?Sized>(arguments: &K) -> Key {
    let mut bytes = KeyBytes::new();
    Key(rmp_serde::encode::write(&mut bytes, arguments)
        .map(|()| bytes)
        .map_err(|err| err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<K: Serialize + ?Sized>(k: &K) -> KeyBytes {
        key(k).0.unwrap()
    }

    #[test]
    fn argument_tuples_that_concatenate_alike_encode_differently() {
        assert_ne!(bytes(&("ab", "c")), bytes(&("a", "bc")));
        assert_ne!(bytes(&(1u64, 23u64)), bytes(&(12u64, 3u64)));
        assert_ne!(bytes(&(Some(1u8),)), bytes(&(None::<u8>, 1u8)));
    }

    #[test]
    fn references_encode_like_the_values() {
        let name = String::from("x");
        assert_eq!(bytes(&(&name.as_str(), &7u64)), bytes(&("x", 7u64)));
        assert_eq!(bytes(&(&[1u8, 2][..],)), bytes(&(vec![1u8, 2],)));
    }

    #[test]
    fn small_keys_stay_inline() {
        assert!(!bytes(&(42u64, "tenant")).spilled());
    }
}
