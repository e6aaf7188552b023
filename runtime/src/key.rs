//! Key encoding: a call's arguments as collision-free bytes (MessagePack), inline up to 64 bytes.

use serde::ser::{self, Impossible, Serialize, Serializer};
use smallvec::SmallVec;

/// The encoded key of one call. Keys up to 64 bytes live inline, so building one for an L1
/// lookup allocates nothing.
pub type KeyBytes = SmallVec<[u8; INLINE]>;

/// The longest key kept inline.
const INLINE: usize = 64;

/// The key of one call, or why it could not be encoded.
#[derive(Debug)]
pub struct Key(pub(crate) Result<KeyBytes, String>);

/// Encodes the key arguments of a call.
///
/// MessagePack is self-delimiting (lengths precede strings, sequences and maps), so two
/// different argument tuples of one function never encode to the same bytes.
pub fn key<K: Serialize + ?Sized>(arguments: &K) -> Key {
    let mut inline = Inline {
        bytes: KeyBytes::from_buf([0; INLINE]),
        len: 0,
    };
    if arguments.serialize(&mut inline).is_ok() {
        inline.bytes.truncate(inline.len);
        return Key(Ok(inline.bytes));
    }
    let mut bytes = KeyBytes::new();
    Key(rmp_serde::encode::write(&mut bytes, arguments)
        .map(|()| bytes)
        .map_err(|err| err.to_string()))
}

/// The MessagePack encoder of the common keys: integers, floats, booleans, strings, bytes,
/// options, and tuples and structs of them, up to 64 bytes. It writes exactly what `rmp_serde`
/// writes (structs as arrays), at a fraction of its cost: every L1 hit encodes its key first.
/// Anything else, or longer, is [`Unsupported`], and [`key`] uses `rmp_serde` instead.
struct Inline {
    /// All [`INLINE`] bytes, zeroed, until [`key`] truncates it to `len`.
    bytes: KeyBytes,
    len: usize,
}

/// Not for [`Inline`]: the key is encoded by `rmp_serde`.
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

impl Inline {
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

    /// A marker byte, then a big-endian length or value of the marker's width.
    #[inline]
    fn marked<const N: usize>(&mut self, marker: u8, data: [u8; N]) -> Result<(), Unsupported> {
        self.put(&[marker])?;
        self.put(&data)
    }

    // Lengths past what fits in 64 bytes are left to rmp_serde.

    fn str_header(&mut self, len: usize) -> Result<(), Unsupported> {
        match len {
            0..32 => self.put(&[0xa0 | len as u8]),
            _ => self.marked(0xd9, [u8::try_from(len).map_err(|_| Unsupported)?]),
        }
    }

    fn bin_header(&mut self, len: usize) -> Result<(), Unsupported> {
        self.marked(0xc4, [u8::try_from(len).map_err(|_| Unsupported)?])
    }

    fn array_header(&mut self, len: usize) -> Result<(), Unsupported> {
        match len {
            0..16 => self.put(&[0x90 | len as u8]),
            _ => self.marked(0xdc, u16::try_from(len).map_err(|_| Unsupported)?.to_be_bytes()),
        }
    }
}

impl Serializer for &mut Inline {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.put(&[if v { 0xc3 } else { 0xc2 }])
    }

    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        match v {
            0.. => self.serialize_u64(v as u64),
            -32..=-1 => self.put(&[v as u8]),
            -128..=-33 => self.marked(0xd0, (v as i8).to_be_bytes()),
            -32_768..=-129 => self.marked(0xd1, (v as i16).to_be_bytes()),
            -2_147_483_648..=-32_769 => self.marked(0xd2, (v as i32).to_be_bytes()),
            _ => self.marked(0xd3, v.to_be_bytes()),
        }
    }

    fn serialize_i128(self, v: i128) -> Result<(), Unsupported> {
        self.serialize_bytes(&v.to_be_bytes())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.serialize_u64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.serialize_u64(v.into())
    }

    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        match v {
            0..128 => self.put(&[v as u8]),
            128..256 => self.marked(0xcc, [v as u8]),
            256..65_536 => self.marked(0xcd, (v as u16).to_be_bytes()),
            65_536..4_294_967_296 => self.marked(0xce, (v as u32).to_be_bytes()),
            _ => self.marked(0xcf, v.to_be_bytes()),
        }
    }

    fn serialize_u128(self, v: u128) -> Result<(), Unsupported> {
        self.serialize_bytes(&v.to_be_bytes())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        self.marked(0xca, v.to_be_bytes())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        self.marked(0xcb, v.to_be_bytes())
    }

    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        self.str_header(v.len())?;
        self.put(v.as_bytes())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        self.bin_header(v.len())?;
        self.put(v)
    }

    fn serialize_none(self) -> Result<(), Unsupported> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.put(&[0xc0])
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.array_header(0)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        // rmp_serde's marker for MessagePack extension types.
        if name == "_ExtStruct" {
            return Err(Unsupported);
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self, Unsupported> {
        self.array_header(len)?;
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Self, Unsupported> {
        self.serialize_tuple(len)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Self, Unsupported> {
        self.serialize_tuple(len)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(Unsupported)
    }
}

impl ser::SerializeTuple for &mut Inline {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Inline {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Inline {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
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
    fn the_inline_encoder_writes_what_rmp_serde_writes() {
        #[derive(serde::Serialize, Debug)]
        struct Query<'a> {
            tenant: u32,
            name: &'a str,
            page: Option<u16>,
        }
        #[derive(serde::Serialize, Debug)]
        struct Id(u64);
        #[derive(serde::Serialize, Debug)]
        struct Pair(i8, bool);
        #[derive(serde::Serialize, Debug)]
        struct Unit;
        #[derive(serde::Serialize, Debug)]
        enum Kind {
            Plain,
            Tagged(u8),
        }
        /// Serialized as MessagePack binary.
        #[derive(Debug)]
        struct Blob(Vec<u8>);
        impl Serialize for Blob {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }
        fn same<K: Serialize + std::fmt::Debug + ?Sized>(k: &K) {
            let mut expected = KeyBytes::new();
            rmp_serde::encode::write(&mut expected, k).unwrap();
            assert_eq!(bytes(k), expected, "{k:?}");
        }

        let unsigned = [
            0,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX,
        ];
        for n in unsigned {
            same(&(n,));
            same(&(n as u8, n as u16, n as u32));
        }
        let signed = [
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
        for n in signed {
            same(&(n,));
            same(&(n as i8, n as i16, n as i32));
        }
        for len in [0, 1, 31, 32, 61, 62, 63, 64, 255, 256, 70_000] {
            same(&("é".repeat(len / 2) + &"x".repeat(len % 2),));
            same(&(Blob(vec![7; len]),));
        }
        same(&(
            1.5f32,
            -0.25f64,
            true,
            false,
            'x',
            'é',
            (),
            Unit,
            None::<u8>,
            Some(3u8),
        ));
        same(&(
            Query {
                tenant: 7,
                name: "acme",
                page: Some(2),
            },
            Id(9),
            Pair(-5, true),
        ));
        same(&(Kind::Plain, 1u128, -1i128));
        same(&[3u8; 20]);
        // Not inline: rmp_serde all the same.
        same(&(
            Kind::Tagged(1),
            vec![1u8, 2],
            [(1u8, 2u8)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        ));
        same(&[9u64; 32]);
    }

    #[test]
    fn small_keys_stay_inline() {
        assert!(!bytes(&(42u64, "tenant")).spilled());
    }
}
