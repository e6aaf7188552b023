//! The encoder of keys and values, writing to a fixed buffer or to the heap.

use rmp::Marker;
use serde::ser::{self, Serialize, Serializer};

use super::{Error, SOME};

/// Where an [`Encoder`] writes.
pub(crate) trait Sink {
    /// Why the sink cannot take what is written, or why the value cannot be encoded.
    type Error: ser::Error;

    /// How the sink takes maps.
    const MAPS: Maps;

    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Everything written so far, to patch a length into.
    fn written(&mut self) -> &mut [u8];

    /// Drops what was written past `len`.
    fn truncate(&mut self, len: usize);
}

/// How an [`Encoder`] writes maps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Maps {
    /// In the order they iterate in: values, which only need to decode.
    InOrder,
    /// Sorted by their entries' bytes: keys, so that equal maps encode alike whatever order
    /// they iterate in (two equal `HashMap`s seldom agree on one).
    Sorted,
    /// Not at all: sorting allocates, and a sink that must not allocate refuses maps.
    Refused,
}

/// Bytes on the heap, of any length; with maps `SORTED` for keys.
#[derive(Default)]
pub(crate) struct Heap<const SORTED: bool>(pub(crate) Vec<u8>);

impl<const SORTED: bool> Sink for Heap<SORTED> {
    type Error = Error;

    const MAPS: Maps = if SORTED { Maps::Sorted } else { Maps::InOrder };

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn written(&mut self) -> &mut [u8] {
        &mut self.0
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
}

/// A serde serializer writing the format of keys and L2 values, which is MessagePack with:
///
/// - integers in their shortest form whatever their type, `i128` and `u128` as 16 big-endian
///   bytes of binary, floats as `f32` or `f64` with their exact bits (`-0.0`, every NaN);
/// - `None`, `()` and unit structs as nil, and `Some(x)` as the byte [`SOME`] followed by `x`;
/// - newtype structs as their content, sequences and tuples as arrays, maps as maps in the
///   order [`Sink::MAPS`] says;
/// - structs as maps from field names to values, so a row stays readable after a field with a
///   default is added and becomes unreadable when the struct changes incompatibly;
/// - a unit variant as its name, any other variant as a one-entry map from its name to its
///   content (a newtype's value, a tuple's array, a struct's map).
///
/// Every value delimits itself, and two different values of one type encode differently, so
/// two calls with different arguments never share a key.
pub(crate) struct Encoder<S> {
    /// Where the bytes go.
    pub(crate) sink: S,
}

/// The length of a sequence or map ahead of it as a placeholder: a marker and 32 bits.
const PLACEHOLDER: usize = 5;

/// The error of a sequence or map that had more or fewer elements than its length said.
const MISCOUNTED: &str = "a sequence or map had another number of elements than its length";

impl<S: Sink> Encoder<S> {
    pub(crate) fn new(sink: S) -> Self {
        Encoder { sink }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), S::Error> {
        self.sink.put(bytes)
    }

    /// A marker, then a big-endian length or value of the marker's width.
    #[inline]
    fn marked<const N: usize>(&mut self, marker: Marker, data: [u8; N]) -> Result<(), S::Error> {
        self.marked_byte(marker.to_u8(), data)
    }

    #[inline]
    fn marked_byte<const N: usize>(&mut self, marker: u8, data: [u8; N]) -> Result<(), S::Error> {
        self.put(&[marker])?;
        self.put(&data)
    }

    /// The shortest header of a length.
    #[inline]
    fn header(&mut self, kind: Kind, len: usize) -> Result<(), S::Error> {
        let (marker, width) = kind.header(len).ok_or_else(|| too_long(len))?;
        match width {
            0 => self.put(&[marker]),
            1 => self.marked_byte(marker, [len as u8]),
            2 => self.marked_byte(marker, (len as u16).to_be_bytes()),
            _ => self.marked_byte(marker, (len as u32).to_be_bytes()),
        }
    }

    #[inline]
    fn str(&mut self, v: &str) -> Result<(), S::Error> {
        self.header(Kind::Str, v.len())?;
        self.put(v.as_bytes())
    }

    /// The start of a variant with content: a one-entry map from its name to the content.
    fn variant(&mut self, name: &str) -> Result<(), S::Error> {
        self.put(&[Marker::FixMap(1).to_u8()])?;
        self.str(name)
    }

    /// Writes the shortest header of `count` in place of the placeholder at `at`, moving what
    /// follows back over the bytes it does not need.
    fn patch(&mut self, kind: Kind, at: usize, count: usize) -> Result<(), S::Error> {
        let (marker, width) = kind.header(count).ok_or_else(|| too_long(count))?;
        let mut header = [marker, 0, 0, 0, 0];
        header[1..=width].copy_from_slice(&(count as u32).to_be_bytes()[4 - width..]);
        let written = self.sink.written();
        let end = written.len();
        written.copy_within(at + PLACEHOLDER..end, at + 1 + width);
        written[at..=at + width].copy_from_slice(&header[..=width]);
        self.sink.truncate(end - PLACEHOLDER + 1 + width);
        Ok(())
    }
}

fn too_long<E: ser::Error>(len: usize) -> E {
    E::custom(format!(
        "{len} bytes or elements are more than MessagePack can hold"
    ))
}

/// What a length is of.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bin,
    Array,
    Map,
}

impl Kind {
    /// The marker byte of the shortest header of `len`, and how many bytes of length follow
    /// it; `None` past 32 bits.
    #[inline]
    fn header(self, len: usize) -> Option<(u8, usize)> {
        use Marker::*;
        // A marker per arm, so that each converts to its byte at compile time.
        Some(match (self, len) {
            (Kind::Str, 0..32) => (FixStr(len as u8).to_u8(), 0),
            (Kind::Array, 0..16) => (FixArray(len as u8).to_u8(), 0),
            (Kind::Map, 0..16) => (FixMap(len as u8).to_u8(), 0),
            (Kind::Str, 0..256) => (Str8.to_u8(), 1),
            (Kind::Bin, 0..256) => (Bin8.to_u8(), 1),
            (Kind::Str, 0..65_536) => (Str16.to_u8(), 2),
            (Kind::Bin, 0..65_536) => (Bin16.to_u8(), 2),
            (Kind::Array, 0..65_536) => (Array16.to_u8(), 2),
            (Kind::Map, 0..65_536) => (Map16.to_u8(), 2),
            (Kind::Str, 0..=0xffff_ffff) => (Str32.to_u8(), 4),
            (Kind::Bin, 0..=0xffff_ffff) => (Bin32.to_u8(), 4),
            (Kind::Array, 0..=0xffff_ffff) => (Array32.to_u8(), 4),
            (Kind::Map, 0..=0xffff_ffff) => (Map32.to_u8(), 4),
            _ => return None,
        })
    }
}

/// How a sequence or map gets its length.
enum Length {
    /// Written ahead; this many elements are still to come.
    Ahead(usize),
    /// Not known ahead: a placeholder at `at`, patched at the end with the count.
    Patched { at: usize, count: usize },
}

impl Length {
    #[inline]
    fn start<S: Sink>(encoder: &mut Encoder<S>, kind: Kind, len: Option<usize>) -> Result<Length, S::Error> {
        match len {
            Some(len) => {
                encoder.header(kind, len)?;
                Ok(Length::Ahead(len))
            }
            None => {
                let at = encoder.sink.written().len();
                let widest = match kind {
                    Kind::Array => Marker::Array32,
                    _ => Marker::Map32,
                };
                encoder.marked(widest, [0; PLACEHOLDER - 1])?;
                Ok(Length::Patched { at, count: 0 })
            }
        }
    }

    /// Counts one element, or one entry of a map.
    #[inline]
    fn count<E: ser::Error>(&mut self) -> Result<(), E> {
        match self {
            Length::Ahead(remaining) => {
                *remaining = remaining.checked_sub(1).ok_or_else(|| E::custom(MISCOUNTED))?;
            }
            Length::Patched { count, .. } => *count += 1,
        }
        Ok(())
    }

    #[inline]
    fn end<S: Sink>(self, encoder: &mut Encoder<S>, kind: Kind) -> Result<(), S::Error> {
        match self {
            Length::Ahead(0) => Ok(()),
            Length::Ahead(_) => Err(ser::Error::custom(MISCOUNTED)),
            Length::Patched { at, count } => encoder.patch(kind, at, count),
        }
    }
}

/// A sequence, tuple or struct being written: an array of elements, or a map of named fields.
pub(crate) struct Seq<'a, S> {
    encoder: &'a mut Encoder<S>,
    kind: Kind,
    length: Length,
}

impl<'a, S: Sink> Seq<'a, S> {
    #[inline]
    fn start(encoder: &'a mut Encoder<S>, kind: Kind, len: Option<usize>) -> Result<Self, S::Error> {
        let length = Length::start(encoder, kind, len)?;
        Ok(Seq {
            encoder,
            kind,
            length,
        })
    }

    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.length.count()?;
        value.serialize(&mut *self.encoder)
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), S::Error> {
        self.length.count()?;
        self.encoder.str(name)?;
        value.serialize(&mut *self.encoder)
    }

    #[inline]
    fn end(self) -> Result<(), S::Error> {
        self.length.end(self.encoder, self.kind)
    }
}

/// A map being written, in order or sorted as [`Sink::MAPS`] says.
pub(crate) struct Map<'a, S> {
    encoder: &'a mut Encoder<S>,
    entries: Entries,
}

enum Entries {
    /// Written as they come.
    InOrder(Length),
    /// Encoded apart, each from its start in `starts`, and written sorted at the end.
    Sorted {
        encoded: Encoder<Heap<true>>,
        starts: Vec<usize>,
    },
}

impl<'a, S: Sink> Map<'a, S> {
    fn start(encoder: &'a mut Encoder<S>, len: Option<usize>) -> Result<Self, S::Error> {
        let entries = match S::MAPS {
            Maps::InOrder => Entries::InOrder(Length::start(encoder, Kind::Map, len)?),
            Maps::Sorted => Entries::Sorted {
                encoded: Encoder::new(Heap::default()),
                starts: Vec::with_capacity(len.unwrap_or(0)),
            },
            Maps::Refused => return Err(ser::Error::custom("maps are not encoded here")),
        };
        Ok(Map { encoder, entries })
    }
}

impl<S: Sink> ser::SerializeMap for Map<'_, S> {
    type Ok = ();
    type Error = S::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        match &mut self.entries {
            Entries::InOrder(length) => {
                length.count()?;
                key.serialize(&mut *self.encoder)
            }
            Entries::Sorted { encoded, starts } => {
                starts.push(encoded.sink.0.len());
                key.serialize(encoded).map_err(ser::Error::custom)
            }
        }
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        match &mut self.entries {
            Entries::InOrder(_) => value.serialize(&mut *self.encoder),
            Entries::Sorted { encoded, .. } => value.serialize(encoded).map_err(ser::Error::custom),
        }
    }

    fn end(self) -> Result<(), S::Error> {
        match self.entries {
            Entries::InOrder(length) => length.end(self.encoder, Kind::Map),
            Entries::Sorted { encoded, starts } => {
                let bytes = encoded.sink.0;
                let ends = starts.iter().skip(1).copied().chain([bytes.len()]);
                let mut entries: Vec<&[u8]> = starts
                    .iter()
                    .zip(ends)
                    .map(|(&start, end)| &bytes[start..end])
                    .collect();
                entries.sort_unstable();
                self.encoder.header(Kind::Map, entries.len())?;
                entries.iter().try_for_each(|entry| self.encoder.put(entry))
            }
        }
    }
}

impl<'a, S: Sink> Serializer for &'a mut Encoder<S> {
    type Ok = ();
    type Error = S::Error;
    type SerializeSeq = Seq<'a, S>;
    type SerializeTuple = Seq<'a, S>;
    type SerializeTupleStruct = Seq<'a, S>;
    type SerializeTupleVariant = Seq<'a, S>;
    type SerializeMap = Map<'a, S>;
    type SerializeStruct = Seq<'a, S>;
    type SerializeStructVariant = Seq<'a, S>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), S::Error> {
        let marker = if v { Marker::True } else { Marker::False };
        self.put(&[marker.to_u8()])
    }

    fn serialize_i8(self, v: i8) -> Result<(), S::Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), S::Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), S::Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(self, v: i64) -> Result<(), S::Error> {
        match v {
            0.. => self.serialize_u64(v as u64),
            -32..=-1 => self.put(&[Marker::FixNeg(v as i8).to_u8()]),
            -128..=-33 => self.marked(Marker::I8, (v as i8).to_be_bytes()),
            -32_768..=-129 => self.marked(Marker::I16, (v as i16).to_be_bytes()),
            -2_147_483_648..=-32_769 => self.marked(Marker::I32, (v as i32).to_be_bytes()),
            _ => self.marked(Marker::I64, v.to_be_bytes()),
        }
    }

    fn serialize_i128(self, v: i128) -> Result<(), S::Error> {
        self.serialize_bytes(&v.to_be_bytes())
    }

    fn serialize_u8(self, v: u8) -> Result<(), S::Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), S::Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), S::Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u64(self, v: u64) -> Result<(), S::Error> {
        match v {
            0..128 => self.put(&[Marker::FixPos(v as u8).to_u8()]),
            128..256 => self.marked(Marker::U8, [v as u8]),
            256..65_536 => self.marked(Marker::U16, (v as u16).to_be_bytes()),
            65_536..4_294_967_296 => self.marked(Marker::U32, (v as u32).to_be_bytes()),
            _ => self.marked(Marker::U64, v.to_be_bytes()),
        }
    }

    fn serialize_u128(self, v: u128) -> Result<(), S::Error> {
        self.serialize_bytes(&v.to_be_bytes())
    }

    fn serialize_f32(self, v: f32) -> Result<(), S::Error> {
        self.marked(Marker::F32, v.to_be_bytes())
    }

    fn serialize_f64(self, v: f64) -> Result<(), S::Error> {
        self.marked(Marker::F64, v.to_be_bytes())
    }

    fn serialize_char(self, v: char) -> Result<(), S::Error> {
        self.str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), S::Error> {
        self.str(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), S::Error> {
        self.header(Kind::Bin, v.len())?;
        self.put(v)
    }

    fn serialize_none(self) -> Result<(), S::Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), S::Error> {
        self.put(&[SOME.to_u8()])?;
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), S::Error> {
        self.put(&[Marker::Null.to_u8()])
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), S::Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), S::Error> {
        self.str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        self.variant(variant)?;
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a, S>, S::Error> {
        Seq::start(self, Kind::Array, len)
    }

    fn serialize_tuple(self, len: usize) -> Result<Seq<'a, S>, S::Error> {
        Seq::start(self, Kind::Array, Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a, S>, S::Error> {
        Seq::start(self, Kind::Array, Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq<'a, S>, S::Error> {
        self.variant(variant)?;
        Seq::start(self, Kind::Array, Some(len))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Map<'a, S>, S::Error> {
        Map::start(self, len)
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Seq<'a, S>, S::Error> {
        Seq::start(self, Kind::Map, Some(len))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq<'a, S>, S::Error> {
        self.variant(variant)?;
        Seq::start(self, Kind::Map, Some(len))
    }
}

macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl<S: Sink> ser::$trait for Seq<'_, S> {
            type Ok = ();
            type Error = S::Error;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
                self.element(value)
            }

            #[inline]
            fn end(self) -> Result<(), S::Error> {
                Seq::end(self)
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl<S: Sink> ser::$trait for Seq<'_, S> {
            type Ok = ();
            type Error = S::Error;

            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                value: &T,
            ) -> Result<(), S::Error> {
                self.field(name, value)
            }

            #[inline]
            fn end(self) -> Result<(), S::Error> {
                Seq::end(self)
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);
