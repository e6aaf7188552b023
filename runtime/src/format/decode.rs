//! The decoder of L2 values: strict wherever a row of another type could pass for the one asked.

use rmp::Marker;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, Expected, Unexpected, Visitor};

use super::{Error, MAX_DEPTH, SOME};

/// One item of the input: a scalar, or the header of what follows.
enum Token<'de> {
    Nil,
    /// [`SOME`]: the value follows.
    Some,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    F32(f32),
    F64(f64),
    Str(&'de [u8]),
    Bin(&'de [u8]),
    /// This many elements follow.
    Array(usize),
    /// This many entries follow.
    Map(usize),
}

impl Token<'_> {
    /// The error of finding this token where `expected` was asked for.
    fn invalid(&self, expected: &dyn Expected) -> Error {
        let unexpected = match *self {
            Token::Nil => Unexpected::Unit,
            Token::Some => Unexpected::Option,
            Token::Bool(v) => Unexpected::Bool(v),
            Token::Unsigned(v) => Unexpected::Unsigned(v),
            Token::Signed(v) => Unexpected::Signed(v),
            Token::F32(v) => Unexpected::Float(v.into()),
            Token::F64(v) => Unexpected::Float(v),
            // Not the string itself: the error reaches the log, and a value may be private.
            Token::Str(_) => Unexpected::Other("a string"),
            Token::Bin(v) => Unexpected::Bytes(v),
            Token::Array(_) => Unexpected::Seq,
            Token::Map(_) => Unexpected::Map,
        };
        de::Error::invalid_type(unexpected, expected)
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|err| Error(format!("a string is not UTF-8: {err}")))
}

/// A serde deserializer of what [`Encoder`](super::Encoder) writes. It reads every value as it
/// was written, `Some` and floats included, and refuses rather than converts: a float of
/// another width, a struct from an array, an option from a bare value, trailing elements.
pub(crate) struct Decoder<'de> {
    input: &'de [u8],
    /// How much deeper values may still nest.
    depth: usize,
}

impl<'de> Decoder<'de> {
    pub(crate) fn new(input: &'de [u8]) -> Self {
        Decoder {
            input,
            depth: MAX_DEPTH,
        }
    }

    /// Checks that the value read was the whole input.
    pub(crate) fn finish(self) -> Result<(), Error> {
        match self.input.len() {
            0 => Ok(()),
            left => Err(Error(format!("{left} bytes left over after the value"))),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'de [u8], Error> {
        let (taken, rest) = self
            .input
            .split_at_checked(len)
            .ok_or_else(|| Error("the value ends early".into()))?;
        self.input = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        self.take(N).map(copied)
    }

    /// A big-endian length of `width` bytes.
    fn length(&mut self, width: usize) -> Result<usize, Error> {
        Ok(self
            .take(width)?
            .iter()
            .fold(0, |len, &byte| len << 8 | usize::from(byte)))
    }

    fn token(&mut self) -> Result<Token<'de>, Error> {
        let [byte] = self.array()?;
        let marker = Marker::from_u8(byte);
        Ok(match marker {
            _ if marker == SOME => Token::Some,
            Marker::Null => Token::Nil,
            Marker::False => Token::Bool(false),
            Marker::True => Token::Bool(true),
            Marker::FixPos(v) => Token::Unsigned(v.into()),
            Marker::U8 => Token::Unsigned(u8::from_be_bytes(self.array()?).into()),
            Marker::U16 => Token::Unsigned(u16::from_be_bytes(self.array()?).into()),
            Marker::U32 => Token::Unsigned(u32::from_be_bytes(self.array()?).into()),
            Marker::U64 => Token::Unsigned(u64::from_be_bytes(self.array()?)),
            Marker::FixNeg(v) => Token::Signed(v.into()),
            Marker::I8 => Token::Signed(i8::from_be_bytes(self.array()?).into()),
            Marker::I16 => Token::Signed(i16::from_be_bytes(self.array()?).into()),
            Marker::I32 => Token::Signed(i32::from_be_bytes(self.array()?).into()),
            Marker::I64 => Token::Signed(i64::from_be_bytes(self.array()?)),
            Marker::F32 => Token::F32(f32::from_be_bytes(self.array()?)),
            Marker::F64 => Token::F64(f64::from_be_bytes(self.array()?)),
            Marker::FixStr(len) => Token::Str(self.take(len.into())?),
            Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let len = self.length(width(marker))?;
                Token::Str(self.take(len)?)
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                let len = self.length(width(marker))?;
                Token::Bin(self.take(len)?)
            }
            Marker::FixArray(len) => Token::Array(len.into()),
            Marker::Array16 | Marker::Array32 => Token::Array(self.length(width(marker))?),
            Marker::FixMap(len) => Token::Map(len.into()),
            Marker::Map16 | Marker::Map32 => Token::Map(self.length(width(marker))?),
            Marker::Reserved
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32
            | Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16 => return Err(Error(format!("no value starts with {byte:#04x}"))),
        })
    }

    /// Runs `f` one level deeper, or fails past [`MAX_DEPTH`].
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        self.depth = self
            .depth
            .checked_sub(1)
            .ok_or_else(|| Error(format!("nested deeper than {MAX_DEPTH} levels")))?;
        let result = f(self);
        self.depth += 1;
        result
    }

    fn visit<V: Visitor<'de>>(&mut self, token: Token<'de>, visitor: V) -> Result<V::Value, Error> {
        match token {
            Token::Nil => visitor.visit_unit(),
            Token::Some => self.nested(|de| visitor.visit_some(de)),
            Token::Bool(v) => visitor.visit_bool(v),
            Token::Unsigned(v) => visitor.visit_u64(v),
            Token::Signed(v) => visitor.visit_i64(v),
            Token::F32(v) => visitor.visit_f32(v),
            Token::F64(v) => visitor.visit_f64(v),
            Token::Str(v) => visitor.visit_borrowed_str(utf8(v)?),
            Token::Bin(v) => visitor.visit_borrowed_bytes(v),
            Token::Array(len) => self.nested(|de| {
                let mut elements = Elements { de, remaining: len };
                let value = visitor.visit_seq(&mut elements)?;
                elements.finish("elements", value)
            }),
            Token::Map(len) => self.nested(|de| {
                let mut entries = Elements { de, remaining: len };
                let value = visitor.visit_map(&mut entries)?;
                entries.finish("entries", value)
            }),
        }
    }

    /// Reads past one value, whatever it holds, without recursing.
    fn skip(&mut self) -> Result<(), Error> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            pending = pending.saturating_add(match self.token()? {
                Token::Some => 1,
                Token::Array(len) => len,
                Token::Map(len) => len.saturating_mul(2),
                _ => 0,
            });
        }
        Ok(())
    }
}

/// `bytes`, of length `N`, as an array.
fn copied<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0; N];
    array.copy_from_slice(bytes);
    array
}

/// The bytes of length after a string, binary, array or map marker of 8, 16 or 32 bits.
fn width(marker: Marker) -> usize {
    match marker {
        Marker::Str8 | Marker::Bin8 => 1,
        Marker::Str16 | Marker::Bin16 | Marker::Array16 | Marker::Map16 => 2,
        _ => 4,
    }
}

impl<'de> Deserializer<'de> for &mut Decoder<'de> {
    type Error = Error;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let token = self.token()?;
        self.visit(token, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.token()? {
            Token::Nil => visitor.visit_none(),
            Token::Some => self.nested(|de| visitor.visit_some(de)),
            token => Err(token.invalid(&visitor)),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.token()? {
            Token::F32(v) => visitor.visit_f32(v),
            token => Err(token.invalid(&visitor)),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.token()? {
            Token::F64(v) => visitor.visit_f64(v),
            token => Err(token.invalid(&visitor)),
        }
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.token()? {
            Token::Bin(v) if v.len() == 16 => visitor.visit_i128(i128::from_be_bytes(copied(v))),
            token => Err(token.invalid(&visitor)),
        }
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.token()? {
            Token::Bin(v) if v.len() == 16 => visitor.visit_u128(u128::from_be_bytes(copied(v))),
            token => Err(token.invalid(&visitor)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.token()? {
            token @ Token::Array(_) => self.visit(token, visitor),
            token => Err(token.invalid(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.token()? {
            token @ Token::Map(_) => self.visit(token, visitor),
            token => Err(token.invalid(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.token()? {
            Token::Str(name) => visitor.visit_enum(Variant {
                name: utf8(name)?,
                content: None,
            }),
            Token::Map(1) => match self.token()? {
                Token::Str(name) => {
                    let name = utf8(name)?;
                    self.nested(|de| {
                        visitor.visit_enum(Variant {
                            name,
                            content: Some(de),
                        })
                    })
                }
                token => Err(token.invalid(&"a variant's name")),
            },
            token => Err(token.invalid(&visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 u8 u16 u32 u64 char str string bytes byte_buf unit unit_struct
        identifier
    }
}

/// The elements of an array, or the entries of a map, being read.
struct Elements<'a, 'de> {
    de: &'a mut Decoder<'de>,
    remaining: usize,
}

impl Elements<'_, '_> {
    /// The value read from the elements, if the visitor read them all.
    fn finish<T>(self, what: &str, value: T) -> Result<T, Error> {
        match self.remaining {
            0 => Ok(value),
            left => Err(Error(format!("{left} {what} left over"))),
        }
    }

    /// Counts one element: `false` once there are no more.
    fn next(&mut self) -> bool {
        let more = self.remaining > 0;
        self.remaining = self.remaining.saturating_sub(1);
        more
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if !self.next() {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if !self.next() {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

/// A variant being read: its name, and the decoder of its content unless it is a unit variant.
struct Variant<'a, 'de> {
    name: &'de str,
    content: Option<&'a mut Decoder<'de>>,
}

impl<'a, 'de> Variant<'a, 'de> {
    fn content(self, expected: &dyn Expected) -> Result<&'a mut Decoder<'de>, Error> {
        self.content
            .ok_or_else(|| de::Error::invalid_type(Unexpected::UnitVariant, expected))
    }
}

impl<'a, 'de> de::EnumAccess<'de> for Variant<'a, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self), Error> {
        let variant = seed.deserialize(BorrowedStrDeserializer::new(self.name))?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.content {
            None => Ok(()),
            Some(_) => Err(de::Error::invalid_type(
                Unexpected::Other("a variant with content"),
                &"a unit variant",
            )),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self.content(&"a newtype variant")?)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.content(&visitor)?.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.content(&visitor)?.deserialize_map(visitor)
    }
}
