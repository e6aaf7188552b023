//! Key encoding: a call's arguments as collision-free bytes, inline up to 64 bytes.

use serde::ser::{self, Serialize};
use smallvec::SmallVec;

use crate::format::{Encoder, Heap, Maps, Sink};

/// The encoded key of one call. Keys up to 64 bytes live inline, so building one for an L1
/// lookup allocates nothing.
pub type KeyBytes = SmallVec<[u8; INLINE]>;

/// The longest key kept inline.
const INLINE: usize = 64;

/// The key of one call, or why it could not be encoded.
#[derive(Debug)]
pub struct Key(pub(crate) Result<KeyBytes, String>);

/// Encodes the key arguments of a call, in the format of keys and L2 values (`format/`).
///
/// Every value delimits itself and different values of a type encode differently, so two
/// different argument tuples of one function never encode to the same bytes; maps are sorted,
/// so equal maps encode alike.
pub fn key<K: Serialize + ?Sized>(arguments: &K) -> Key {
    Key(inline(arguments).map_or_else(|| spilled(arguments), Ok))
}

/// The key written inline, if it is one of the common keys [`Inline`] takes.
#[inline]
fn inline<K: Serialize + ?Sized>(arguments: &K) -> Option<KeyBytes> {
    let mut encoder = Encoder::new(Inline {
        bytes: KeyBytes::from_buf([0; INLINE]),
        len: 0,
    });
    arguments.serialize(&mut encoder).ok()?;
    let Inline { mut bytes, len } = encoder.sink;
    bytes.truncate(len);
    Some(bytes)
}

/// The key written to the heap: any length, maps sorted.
fn spilled<K: Serialize + ?Sized>(arguments: &K) -> Result<KeyBytes, String> {
    let mut encoder = Encoder::new(Heap::<true>::default());
    arguments.serialize(&mut encoder).map_err(|err| err.to_string())?;
    Ok(KeyBytes::from_vec(encoder.sink.0))
}

/// Where the common keys are encoded: up to [`INLINE`] bytes without a map, written without
/// allocating, as every L1 hit on an encoded key encodes it first. Anything else is
/// [`Unsupported`], and [`key`] writes the key to the heap instead, to the same bytes.
struct Inline {
    /// All [`INLINE`] bytes, zeroed, until [`key`] truncates it to `len`.
    bytes: KeyBytes,
    len: usize,
}

/// Not for [`Inline`]: the key is written to the heap.
#[derive(Debug)]
struct Unsupported;

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not an inline key")
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

impl Sink for Inline {
    type Error = Unsupported;

    const MAPS: Maps = Maps::Refused;

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), Unsupported> {
        let end = self.len + bytes.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(Unsupported)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn written(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }

    fn truncate(&mut self, len: usize) {
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;
    use crate::format::properties::{key_bytes, typed_value};

    proptest! {
        #[test]
        fn a_key_is_the_same_bytes_inline_and_on_the_heap((_, value) in typed_value()) {
            prop_assert_eq!(key(&value).0.expect("every key encodes").to_vec(), key_bytes(&value));
        }
    }

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
    fn options_nest_exactly() {
        #[derive(Serialize)]
        struct Unit;
        assert_eq!(bytes(&(None::<()>,))[..], [0x91, 0xc0]);
        assert_eq!(bytes(&(Some(()),))[..], [0x91, 0xc1, 0xc0]);
        assert_eq!(bytes(&(Some(None::<u8>),))[..], [0x91, 0xc1, 0xc0]);
        assert_eq!(bytes(&(Some(Some(7u8)),))[..], [0x91, 0xc1, 0xc1, 0x07]);
        // Each pair shared a key while `Some(x)` was written as `x`.
        assert_ne!(bytes(&(None::<()>,)), bytes(&(Some(()),)));
        assert_ne!(bytes(&(None::<Unit>,)), bytes(&(Some(Unit),)));
        assert_ne!(bytes(&(None::<Option<u8>>,)), bytes(&(Some(None::<u8>),)));
        assert_ne!(
            bytes(&(Some(None::<Option<u8>>),)),
            bytes(&(Some(Some(None::<u8>)),))
        );
    }

    #[test]
    fn fields_skipped_when_empty_do_not_make_keys_collide() {
        #[derive(Serialize)]
        struct Range {
            #[serde(skip_serializing_if = "Option::is_none")]
            min: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            max: Option<u32>,
        }
        let min = Range {
            min: Some(1),
            max: None,
        };
        let max = Range {
            min: None,
            max: Some(1),
        };
        assert_ne!(bytes(&(min,)), bytes(&(max,)));
    }

    #[test]
    fn equal_maps_encode_alike_whatever_order_they_iterate_in() {
        let entry = |i: u32| (i, Some(i.to_string()));
        let forward: HashMap<u32, Option<String>> = (0..100).map(entry).collect();
        let backward: HashMap<u32, Option<String>> = (0..100).rev().map(entry).collect();
        assert_ne!(
            forward.keys().collect::<Vec<_>>(),
            backward.keys().collect::<Vec<_>>(),
            "two HashMaps with their own hashers iterate in different orders"
        );
        assert_eq!(bytes(&(&forward,)), bytes(&(&backward,)));
        let sorted: BTreeMap<u32, Option<String>> = (0..100).map(entry).collect();
        assert_eq!(bytes(&(&sorted,)), bytes(&(&forward,)));
        let mut fewer = forward.clone();
        fewer.remove(&7);
        assert_ne!(bytes(&(&fewer,)), bytes(&(&forward,)));
    }

    #[derive(Serialize, Debug)]
    struct Query<'a> {
        tenant: u32,
        name: &'a str,
        page: u16,
    }

    #[derive(Serialize, Debug)]
    struct Id(u64);

    #[derive(Serialize, Debug)]
    struct Pair(i8, bool);

    #[derive(Serialize, Debug)]
    enum Kind {
        Plain,
        Tagged(u8),
        Pair(u8, i8),
        Named { id: u32 },
    }

    /// Serialized as MessagePack binary.
    #[derive(Debug)]
    struct Blob(Vec<u8>);

    impl Serialize for Blob {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&self.0)
        }
    }

    /// The even numbers below it, as a sequence whose length is not known ahead.
    #[derive(Debug)]
    struct Evens(u32);

    impl Serialize for Evens {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq((0..self.0).filter(|n| n % 2 == 0))
        }
    }

    const UNSIGNED: [u64; 11] = [
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        1 << 32,
        u64::MAX,
    ];

    const SIGNED: [i64; 13] = [
        0,
        1,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32_768,
        -32_769,
        -(1 << 31),
        -(1 << 31) - 1,
        i64::MIN,
        i64::MAX,
    ];

    /// Calls `check` with keys of every kind and length the format has: integers and lengths
    /// at each boundary of their encodings, floats, strings, binary, structs and variants.
    fn every_kind_of_key(check: &mut dyn FnMut(&dyn Sample)) {
        for n in UNSIGNED {
            check(&(n,));
            check(&(n as u8, n as u16, n as u32));
        }
        for n in SIGNED {
            check(&(n,));
            check(&(n as i8, n as i16, n as i32));
        }
        for len in [
            0, 1, 15, 16, 31, 32, 61, 62, 63, 64, 255, 256, 65_535, 65_536, 70_000,
        ] {
            check(&("é".repeat(len / 2) + &"x".repeat(len % 2),));
            check(&(Blob(vec![7; len]),));
            check(&(vec![1u8; len],));
            check(&(Evens(2 * len as u32),));
        }
        check(&(1.5f32, -0.25f64, -0.0f64, f64::NAN, true, false, 'x', 'é', ()));
        check(&(
            Query {
                tenant: 7,
                name: "acme",
                page: 2,
            },
            Id(9),
            Pair(-5, true),
        ));
        check(&(Kind::Plain, Kind::Tagged(1), Kind::Pair(2, -3)));
        check(&(Kind::Named { id: 4 }, 1u128, -1i128));
        check(&[3u8; 20]);
        check(&(BTreeMap::from([(1u8, "one")]),));
        check(&(BTreeMap::from_iter((0u8..20).map(|n| (n, -i64::from(n)))),));
    }

    /// A key of [`every_kind_of_key`], encoded each way the tests compare.
    trait Sample: std::fmt::Debug {
        fn inline(&self) -> Option<KeyBytes>;
        fn spilled(&self) -> KeyBytes;
        fn rmp_serde(&self) -> Vec<u8>;
    }

    impl<K: Serialize + std::fmt::Debug> Sample for K {
        fn inline(&self) -> Option<KeyBytes> {
            inline(self)
        }

        fn spilled(&self) -> KeyBytes {
            spilled(self).unwrap()
        }

        fn rmp_serde(&self) -> Vec<u8> {
            let mut bytes = Vec::new();
            self.serialize(&mut rmp_serde::Serializer::new(&mut bytes).with_struct_map())
                .unwrap();
            bytes
        }
    }

    #[test]
    fn inline_keys_are_the_bytes_written_to_the_heap() {
        let mut inlined = 0;
        every_kind_of_key(&mut |k| {
            if let Some(bytes) = k.inline() {
                assert_eq!(bytes, k.spilled(), "{k:?}");
                inlined += 1;
            }
        });
        assert!(inlined > 50, "most of them are inline: {inlined}");
        assert!(inline(&[u64::MAX; 32]).is_none(), "too long");
        assert!(inline(&(BTreeMap::from([(1, 2)]),)).is_none(), "a map");
    }

    #[test]
    fn apart_from_options_and_unit_structs_keys_are_messagepack_as_rmp_serde_writes_it() {
        every_kind_of_key(&mut |k| assert_eq!(k.spilled()[..], k.rmp_serde()[..], "{k:?}"));
    }

    #[test]
    fn small_keys_stay_inline() {
        assert!(!bytes(&(42u64, "tenant")).spilled());
    }
}
