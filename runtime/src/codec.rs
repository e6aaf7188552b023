//! Value encoding for L2 rows: a format byte, then the value as [`format`](crate::format) writes it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::format::{Decoder, Encoder, Heap};

/// Bumped whenever the row layout changes; a row with another first byte is a miss. Format 1
/// (plain MessagePack) wrote `Some(())` and `Some(None)` as `None`.
const FORMAT: u8 = 2;

/// How one function's values are stored in L2. `None` in a spec means the function has no L2.
pub struct Codec<V> {
    encode: fn(&V) -> Result<Vec<u8>, String>,
    decode: fn(&[u8]) -> Result<V, String>,
}

impl<V> Clone for Codec<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Codec<V> {}

impl<V> Codec<V> {
    pub(crate) fn encode(&self, value: &V) -> Result<Vec<u8>, String> {
        (self.encode)(value)
    }

    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<V, String> {
        (self.decode)(bytes)
    }
}

/// The serde codec, for `backend = "pg"`. Its bounds are what the attribute requires of the
/// stored type, so a type that cannot be stored fails to compile here.
pub const fn serde_codec<V>() -> Option<Codec<V>>
where
    V: Serialize + DeserializeOwned,
{
    Some(Codec {
        encode: encode::<V>,
        decode: decode::<V>,
    })
}

fn encode<V: Serialize>(value: &V) -> Result<Vec<u8>, String> {
    let mut encoder = Encoder::new(Heap::<false>(vec![FORMAT]));
    value.serialize(&mut encoder).map_err(|err| err.to_string())?;
    Ok(encoder.sink.0)
}

fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, String> {
    let Some((&FORMAT, rest)) = bytes.split_first() else {
        return Err("unknown row format".into());
    };
    let mut decoder = Decoder::new(rest);
    let value = V::deserialize(&mut decoder).map_err(|err| err.to_string())?;
    decoder.finish().map_err(|err| err.to_string())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Profile {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Other {
        code: u64,
        label: String,
    }

    fn codec<V: Serialize + DeserializeOwned>() -> Codec<V> {
        serde_codec::<V>().unwrap()
    }

    #[test]
    fn values_round_trip() {
        let profile = Profile {
            id: 7,
            name: "ann".into(),
            tags: vec!["a".into()],
        };
        let bytes = codec::<Profile>().encode(&profile).unwrap();
        assert_eq!(codec::<Profile>().decode(&bytes).unwrap(), profile);
        let map: HashMap<u32, Option<String>> = [(1, None), (2, Some("x".into()))].into();
        assert_eq!(codec().decode(&codec().encode(&map).unwrap()), Ok(map));
    }

    #[test]
    fn garbage_truncated_and_foreign_rows_fail_to_decode() {
        let c = codec::<Profile>();
        let bytes = c
            .encode(&Profile {
                id: 1,
                name: "n".into(),
                tags: vec![],
            })
            .unwrap();
        assert!(c.decode(b"\xde\xad\xbe\xef").is_err());
        assert!(c.decode(&[]).is_err());
        assert!(c.decode(&bytes[..bytes.len() - 2]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(c.decode(&longer).is_err());
        let other = codec::<Other>()
            .encode(&Other {
                code: 1,
                label: "n".into(),
            })
            .unwrap();
        assert!(c.decode(&other).is_err());
        assert!(codec::<u64>()
            .decode(&codec::<String>().encode(&"7".to_owned()).unwrap())
            .is_err());
    }

    /// `value` written as a `W` and read back as an `R`.
    fn reread<W, R>(value: &W) -> Result<R, String>
    where
        W: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        codec::<R>().decode(&codec::<W>().encode(value).unwrap())
    }

    fn round_trip<V: Serialize + DeserializeOwned>(value: &V) -> V {
        reread::<V, V>(value).unwrap()
    }

    #[test]
    fn options_units_floats_and_wide_integers_come_back_exactly() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Unit;
        // Each of these came back as `None` while `Some(x)` was written as `x`.
        assert_eq!(round_trip(&Some(())), Some(()));
        assert_eq!(round_trip(&Some(Unit)), Some(Unit));
        assert_eq!(round_trip(&Some(None::<u64>)), Some(None));
        assert_eq!(round_trip(&Some(Some(None::<u64>))), Some(Some(None)));
        assert_eq!(round_trip(&None::<Option<u64>>), None);
        let signalling_nan = 0x7ff0_0000_0000_0001;
        for bits in [0.0, -0.0, f64::NAN, -f64::NAN, f64::INFINITY, f64::MIN_POSITIVE]
            .map(f64::to_bits)
            .into_iter()
            .chain([signalling_nan])
        {
            assert_eq!(round_trip(&f64::from_bits(bits)).to_bits(), bits, "{bits:#x}");
        }
        for bits in [0.0, -0.0, f32::NAN, -f32::NAN, f32::INFINITY].map(f32::to_bits) {
            assert_eq!(round_trip(&f32::from_bits(bits)).to_bits(), bits, "{bits:#x}");
        }
        let wide = (i128::MIN, u128::MAX, 'é', String::new(), -1i8);
        assert_eq!(round_trip(&wide), wide);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        id: u64,
        name: String,
        ratio: f64,
        page: Option<u32>,
    }

    const ROW: V1 = V1 {
        id: 7,
        name: String::new(),
        ratio: 0.5,
        page: Some(2),
    };

    #[test]
    fn a_row_written_before_a_field_with_a_default_was_added_still_decodes() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct V2 {
            id: u64,
            name: String,
            ratio: f64,
            page: Option<u32>,
            #[serde(default)]
            tags: Vec<String>,
        }
        let read: V2 = reread(&ROW).unwrap();
        assert_eq!((read.id, read.page, read.tags), (7, Some(2), vec![]));
    }

    #[test]
    fn a_row_of_an_incompatible_version_of_the_struct_is_an_error_not_a_value() {
        #[derive(Debug, Serialize, Deserialize)]
        struct AddedWithoutDefault {
            id: u64,
            name: String,
            ratio: f64,
            page: Option<u32>,
            email: String,
        }
        #[derive(Debug, Serialize, Deserialize)]
        struct Renamed {
            ident: u64,
            name: String,
            ratio: f64,
            page: Option<u32>,
        }
        #[derive(Debug, Serialize, Deserialize)]
        struct Retyped {
            id: String,
            name: String,
            ratio: f64,
            page: Option<u32>,
        }
        #[derive(Debug, Serialize, Deserialize)]
        struct Narrowed {
            id: u64,
            name: String,
            ratio: f32,
            page: Option<u32>,
        }
        #[derive(Debug, Serialize, Deserialize)]
        struct NoLongerOptional {
            id: u64,
            name: String,
            ratio: f64,
            page: u32,
        }
        assert!(reread::<V1, AddedWithoutDefault>(&ROW).is_err());
        assert!(reread::<V1, Renamed>(&ROW).is_err());
        assert!(reread::<V1, Retyped>(&ROW).is_err());
        assert!(reread::<V1, Narrowed>(&ROW).is_err(), "not rounded to an f32");
        assert!(reread::<V1, NoLongerOptional>(&ROW).is_err());
        assert!(reread::<V1, (u64, String, f64, Option<u32>)>(&ROW).is_err());
        assert!(reread::<(u64, String, f64, Option<u32>), V1>(&(7, String::new(), 0.5, Some(2))).is_err());
    }

    #[test]
    fn a_field_removed_from_the_struct_is_skipped_unless_unknown_fields_are_denied() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Slim {
            id: u64,
        }
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Strict {
            id: u64,
        }
        assert_eq!(reread::<V1, Slim>(&ROW), Ok(Slim { id: 7 }));
        assert!(reread::<V1, Strict>(&ROW).is_err());
    }

    #[test]
    fn a_row_of_an_incompatible_version_of_the_enum_is_an_error_not_a_value() {
        #[derive(Debug, Serialize, Deserialize)]
        enum Old {
            Kept(u8),
            Gone,
            Flag,
        }
        #[derive(Debug, Serialize, Deserialize)]
        enum New {
            Kept(String),
            Flag(bool),
        }
        assert!(reread::<Old, New>(&Old::Gone).is_err(), "variant removed");
        assert!(reread::<Old, New>(&Old::Kept(1)).is_err(), "content retyped");
        assert!(reread::<Old, New>(&Old::Flag).is_err(), "unit became newtype");
        assert!(
            reread::<New, Old>(&New::Flag(true)).is_err(),
            "newtype became unit"
        );
        assert!(reread::<Option<()>, ()>(&Some(())).is_err());
        assert!(reread::<Option<u8>, Option<Option<u8>>>(&Some(1)).is_err());
    }

    #[test]
    fn rows_nested_past_the_limit_are_an_error_not_a_stack_overflow() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Chain(Option<Box<Chain>>);
        let mut row = vec![FORMAT];
        row.extend(std::iter::repeat_n(0xc1, 100_000));
        row.push(0xc0);
        let error = codec::<Chain>().decode(&row).unwrap_err();
        assert!(error.contains("nested deeper"), "{error}");

        // An unknown field is skipped without recursing, however deep.
        #[derive(Debug, Serialize, Deserialize)]
        struct Slim {
            id: u64,
        }
        let mut row = vec![FORMAT, 0x82, 0xa2, b'i', b'd', 0x07, 0xa1, b'x'];
        row.extend(std::iter::repeat_n(0x91, 100_000));
        row.push(0xc0);
        assert_eq!(codec::<Slim>().decode(&row).map(|slim| slim.id), Ok(7));
    }
}
