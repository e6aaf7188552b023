//! Value encoding for L2 rows: a format byte, then MessagePack with named fields.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bumped if the row layout ever changes; a row with another first byte is a miss.
const FORMAT: u8 = 1;

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
    let mut bytes = vec![FORMAT];
    // Named fields make a row of a differently shaped struct fail to decode instead of
    // decoding into the wrong fields.
    value
        .serialize(&mut rmp_serde::Serializer::new(&mut bytes).with_struct_map())
        .map_err(|err| err.to_string())?;
    Ok(bytes)
}

fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, String> {
    let Some((&FORMAT, mut rest)) = bytes.split_first() else {
        return Err("unknown row format".into());
    };
    let value = <V as serde::Deserialize>::deserialize(&mut rmp_serde::Deserializer::new(&mut rest))
        .map_err(|err| err.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes left over after the value", rest.len()));
    }
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
}
