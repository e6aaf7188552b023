//! Property tests: generated values of generated types decode exactly, and share a key only when equal.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess};
use serde::ser::{
    SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};
use serde::{Deserialize, Serialize};

use super::{Decoder, Encoder, Heap};

/// The names of struct fields and of variants, by position.
const FIELDS: [&str; 4] = ["a", "b", "c", "d"];
const VARIANTS: [&str; 4] = ["V0", "V1", "V2", "V3"];

/// A type of serde's data model.
#[derive(Clone, Debug)]
pub(crate) enum Type {
    Unit,
    Bool,
    U64,
    I64,
    I128,
    F32,
    F64,
    Char,
    Str,
    Bytes,
    UnitStruct,
    Option(Box<Type>),
    Newtype(Box<Type>),
    /// Elements, and whether their number is known ahead.
    Seq(Box<Type>, bool),
    Tuple(Vec<Type>),
    TupleStruct(Vec<Type>),
    /// Keys, values, and whether their number is known ahead.
    Map(Box<Type>, Box<Type>, bool),
    /// Fields named after [`FIELDS`].
    Struct(Vec<Type>),
    /// Variants named after [`VARIANTS`].
    Enum(Vec<VariantType>),
}

#[derive(Clone, Debug)]
pub(crate) enum VariantType {
    Unit,
    Newtype(Type),
    Tuple(Vec<Type>),
    Struct(Vec<Type>),
}

/// A value of a [`Type`]. Floats are held as their bits, so equality is bitwise, as keys
/// compare them: each NaN equals itself, and `-0.0` differs from `0.0`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Value {
    Unit,
    Bool(bool),
    U64(u64),
    I64(i64),
    I128(i128),
    F32(u32),
    F64(u64),
    Char(char),
    Str(String),
    Bytes(Vec<u8>),
    UnitStruct,
    None,
    Some(Box<Value>),
    Newtype(Box<Value>),
    Seq(Vec<Value>, bool),
    Tuple(Vec<Value>),
    TupleStruct(Vec<Value>),
    /// Distinct keys, sorted unless [`shuffled`].
    Map(Vec<(Value, Value)>, bool),
    Struct(Vec<Value>),
    Variant(usize, VariantValue),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum VariantValue {
    Unit,
    Newtype(Box<Value>),
    Tuple(Vec<Value>),
    Struct(Vec<Value>),
}

/// Types nested up to four deep, options most often.
fn any_type() -> impl Strategy<Value = Type> {
    let leaf = select(vec![
        Type::Unit,
        Type::Bool,
        Type::U64,
        Type::I64,
        Type::I128,
        Type::F32,
        Type::F64,
        Type::Char,
        Type::Str,
        Type::Bytes,
        Type::UnitStruct,
    ]);
    leaf.prop_recursive(4, 24, 3, |inner| {
        let types = || vec(inner.clone(), 0..3);
        let variant = prop_oneof![
            Just(VariantType::Unit),
            inner.clone().prop_map(VariantType::Newtype),
            types().prop_map(VariantType::Tuple),
            types().prop_map(VariantType::Struct),
        ];
        prop_oneof![
            3 => inner.clone().prop_map(|t| Type::Option(Box::new(t))),
            1 => inner.clone().prop_map(|t| Type::Newtype(Box::new(t))),
            1 => (inner.clone(), any::<bool>()).prop_map(|(t, known)| Type::Seq(Box::new(t), known)),
            1 => types().prop_map(Type::Tuple),
            1 => types().prop_map(Type::TupleStruct),
            1 => (inner.clone(), inner.clone(), any::<bool>())
                .prop_map(|(k, v, known)| Type::Map(Box::new(k), Box::new(v), known)),
            1 => types().prop_map(Type::Struct),
            1 => vec(variant, 1..4).prop_map(Type::Enum),
        ]
    })
}

/// Values of `t`, drawn from small sets often enough that two of them are often equal.
fn value_of(t: &Type) -> BoxedStrategy<Value> {
    let values = |types: &[Type]| types.iter().map(value_of).collect::<Vec<_>>();
    match t {
        Type::Unit => Just(Value::Unit).boxed(),
        Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::U64 => prop_oneof![0..3u64, any::<u64>()].prop_map(Value::U64).boxed(),
        Type::I64 => prop_oneof![-2..2i64, any::<i64>()].prop_map(Value::I64).boxed(),
        Type::I128 => prop_oneof![-2..2i128, any::<i128>()]
            .prop_map(Value::I128)
            .boxed(),
        Type::F32 => {
            let special = [0.0, -0.0, 1.5, f32::NAN, -f32::NAN, f32::INFINITY].map(f32::to_bits);
            prop_oneof![3 => select(special.to_vec()), 1 => any::<u32>()]
                .prop_map(Value::F32)
                .boxed()
        }
        Type::F64 => {
            let special = [0.0, -0.0, 1.5, f64::NAN, -f64::NAN, f64::INFINITY].map(f64::to_bits);
            prop_oneof![3 => select(special.to_vec()), 1 => any::<u64>()]
                .prop_map(Value::F64)
                .boxed()
        }
        Type::Char => prop_oneof![select(vec!['a', 'é']), any::<char>()]
            .prop_map(Value::Char)
            .boxed(),
        Type::Str => vec(prop_oneof![select(vec!['a', 'é']), any::<char>()], 0..40)
            .prop_map(|chars| Value::Str(chars.into_iter().collect()))
            .boxed(),
        Type::Bytes => vec(prop_oneof![0..2u8, any::<u8>()], 0..70)
            .prop_map(Value::Bytes)
            .boxed(),
        Type::UnitStruct => Just(Value::UnitStruct).boxed(),
        Type::Option(t) => prop_oneof![
            Just(Value::None),
            value_of(t).prop_map(|v| Value::Some(Box::new(v))),
        ]
        .boxed(),
        Type::Newtype(t) => value_of(t).prop_map(|v| Value::Newtype(Box::new(v))).boxed(),
        Type::Seq(t, known) => {
            let known = *known;
            vec(value_of(t), 0..3)
                .prop_map(move |vs| Value::Seq(vs, known))
                .boxed()
        }
        Type::Tuple(ts) => values(ts).prop_map(Value::Tuple).boxed(),
        Type::TupleStruct(ts) => values(ts).prop_map(Value::TupleStruct).boxed(),
        Type::Map(k, v, known) => {
            let known = *known;
            vec((value_of(k), value_of(v)), 0..4)
                .prop_map(move |entries| {
                    let distinct: BTreeMap<Value, Value> = entries.into_iter().collect();
                    Value::Map(distinct.into_iter().collect(), known)
                })
                .boxed()
        }
        Type::Struct(ts) => values(ts).prop_map(Value::Struct).boxed(),
        Type::Enum(variants) => Union::new(variants.iter().enumerate().map(|(i, variant)| {
            let value = match variant {
                VariantType::Unit => Just(VariantValue::Unit).boxed(),
                VariantType::Newtype(t) => value_of(t)
                    .prop_map(|v| VariantValue::Newtype(Box::new(v)))
                    .boxed(),
                VariantType::Tuple(ts) => values(ts).prop_map(VariantValue::Tuple).boxed(),
                VariantType::Struct(ts) => values(ts).prop_map(VariantValue::Struct).boxed(),
            };
            value.prop_map(move |v| Value::Variant(i, v))
        }))
        .boxed(),
    }
}

/// A type with a value of it.
pub(crate) fn typed_value() -> impl Strategy<Value = (Type, Value)> {
    any_type().prop_flat_map(|t| (value_of(&t), Just(t)).prop_map(|(v, t)| (t, v)))
}

/// Values of a type, some of them likely equal.
fn typed_values() -> impl Strategy<Value = Vec<Value>> {
    any_type().prop_flat_map(|t| vec(value_of(&t), 2..16))
}

/// `value` with the entries of each of its maps in another order, chosen by `seed`.
fn shuffled(value: &Value, rng: &mut fastrand::Rng) -> Value {
    let all = |vs: &[Value], rng: &mut fastrand::Rng| vs.iter().map(|v| shuffled(v, rng)).collect();
    match value {
        Value::Some(v) => Value::Some(Box::new(shuffled(v, rng))),
        Value::Newtype(v) => Value::Newtype(Box::new(shuffled(v, rng))),
        Value::Seq(vs, known) => Value::Seq(all(vs, rng), *known),
        Value::Tuple(vs) => Value::Tuple(all(vs, rng)),
        Value::TupleStruct(vs) => Value::TupleStruct(all(vs, rng)),
        Value::Struct(vs) => Value::Struct(all(vs, rng)),
        Value::Map(entries, known) => {
            let mut entries: Vec<_> = entries
                .iter()
                .map(|(k, v)| (shuffled(k, rng), shuffled(v, rng)))
                .collect();
            rng.shuffle(&mut entries);
            Value::Map(entries, *known)
        }
        Value::Variant(i, VariantValue::Newtype(v)) => {
            Value::Variant(*i, VariantValue::Newtype(Box::new(shuffled(v, rng))))
        }
        Value::Variant(i, VariantValue::Tuple(vs)) => Value::Variant(*i, VariantValue::Tuple(all(vs, rng))),
        Value::Variant(i, VariantValue::Struct(vs)) => Value::Variant(*i, VariantValue::Struct(all(vs, rng))),
        scalar => scalar.clone(),
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn elements<A: SerializeSeq>(mut seq: A, vs: &[Value]) -> Result<A::Ok, A::Error> {
            vs.iter().try_for_each(|v| seq.serialize_element(v))?;
            seq.end()
        }
        match self {
            Value::Unit => s.serialize_unit(),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::U64(v) => s.serialize_u64(*v),
            Value::I64(v) => s.serialize_i64(*v),
            Value::I128(v) => s.serialize_i128(*v),
            Value::F32(bits) => s.serialize_f32(f32::from_bits(*bits)),
            Value::F64(bits) => s.serialize_f64(f64::from_bits(*bits)),
            Value::Char(v) => s.serialize_char(*v),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(v) => s.serialize_bytes(v),
            Value::UnitStruct => s.serialize_unit_struct("U"),
            Value::None => s.serialize_none(),
            Value::Some(v) => s.serialize_some(v),
            Value::Newtype(v) => s.serialize_newtype_struct("N", v),
            Value::Seq(vs, known) => elements(s.serialize_seq(known.then_some(vs.len()))?, vs),
            Value::Tuple(vs) => {
                let mut tuple = s.serialize_tuple(vs.len())?;
                vs.iter().try_for_each(|v| tuple.serialize_element(v))?;
                tuple.end()
            }
            Value::TupleStruct(vs) => {
                let mut tuple = s.serialize_tuple_struct("T", vs.len())?;
                vs.iter().try_for_each(|v| tuple.serialize_field(v))?;
                tuple.end()
            }
            Value::Map(entries, known) => {
                let mut map = s.serialize_map(known.then_some(entries.len()))?;
                entries.iter().try_for_each(|(k, v)| map.serialize_entry(k, v))?;
                map.end()
            }
            Value::Struct(vs) => {
                let mut fields = s.serialize_struct("S", vs.len())?;
                FIELDS
                    .iter()
                    .zip(vs)
                    .try_for_each(|(name, v)| fields.serialize_field(name, v))?;
                fields.end()
            }
            Value::Variant(i, content) => {
                let (index, name) = (*i as u32, VARIANTS[*i]);
                match content {
                    VariantValue::Unit => s.serialize_unit_variant("E", index, name),
                    VariantValue::Newtype(v) => s.serialize_newtype_variant("E", index, name, v),
                    VariantValue::Tuple(vs) => {
                        let mut tuple = s.serialize_tuple_variant("E", index, name, vs.len())?;
                        vs.iter().try_for_each(|v| tuple.serialize_field(v))?;
                        tuple.end()
                    }
                    VariantValue::Struct(vs) => {
                        let mut fields = s.serialize_struct_variant("E", index, name, vs.len())?;
                        FIELDS
                            .iter()
                            .zip(vs)
                            .try_for_each(|(name, v)| fields.serialize_field(name, v))?;
                        fields.end()
                    }
                }
            }
        }
    }
}

/// Deserializes a [`Value`] of the type it holds, asking the deserializer for that type as a
/// derived `Deserialize` would.
struct Of<'a>(&'a Type);

impl<'de> DeserializeSeed<'de> for Of<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let visitor = Of(self.0);
        match self.0 {
            Type::Unit => d.deserialize_unit(visitor),
            Type::Bool => d.deserialize_bool(visitor),
            Type::U64 => d.deserialize_u64(visitor),
            Type::I64 => d.deserialize_i64(visitor),
            Type::I128 => d.deserialize_i128(visitor),
            Type::F32 => d.deserialize_f32(visitor),
            Type::F64 => d.deserialize_f64(visitor),
            Type::Char => d.deserialize_char(visitor),
            Type::Str => d.deserialize_string(visitor),
            Type::Bytes => d.deserialize_byte_buf(visitor),
            Type::UnitStruct => d.deserialize_unit_struct("U", visitor),
            Type::Option(_) => d.deserialize_option(visitor),
            Type::Newtype(_) => d.deserialize_newtype_struct("N", visitor),
            Type::Seq(..) => d.deserialize_seq(visitor),
            Type::Tuple(ts) => d.deserialize_tuple(ts.len(), visitor),
            Type::TupleStruct(ts) => d.deserialize_tuple_struct("T", ts.len(), visitor),
            Type::Map(..) => d.deserialize_map(visitor),
            Type::Struct(ts) => d.deserialize_struct("S", &FIELDS[..ts.len()], visitor),
            Type::Enum(vs) => d.deserialize_enum("E", &VARIANTS[..vs.len()], visitor),
        }
    }
}

/// The elements of a tuple, struct or variant of the types `ts`, all present, in order.
fn each<'de, A: SeqAccess<'de>>(seq: &mut A, ts: &[Type]) -> Result<Vec<Value>, A::Error> {
    ts.iter()
        .map(|t| {
            seq.next_element_seed(Of(t))?
                .ok_or_else(|| de::Error::custom("too short"))
        })
        .collect()
}

/// The fields of a struct or variant of the types `ts`, each exactly once, in field order.
fn fields<'de, A: MapAccess<'de>>(map: &mut A, ts: &[Type]) -> Result<Vec<Value>, A::Error> {
    let mut found: Vec<Option<Value>> = vec![None; ts.len()];
    while let Some(name) = map.next_key::<String>()? {
        let i = FIELDS[..ts.len()]
            .iter()
            .position(|field| *field == name)
            .ok_or_else(|| de::Error::unknown_field(&name, &FIELDS))?;
        if found[i].replace(map.next_value_seed(Of(&ts[i]))?).is_some() {
            return Err(de::Error::duplicate_field(FIELDS[i]));
        }
    }
    found
        .into_iter()
        .zip(FIELDS)
        .map(|(v, name)| v.ok_or_else(|| de::Error::missing_field(name)))
        .collect()
}

impl<'de> de::Visitor<'de> for Of<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value of {:?}", self.0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        match self.0 {
            Type::Unit => Ok(Value::Unit),
            Type::UnitStruct => Ok(Value::UnitStruct),
            _ => Err(de::Error::invalid_type(de::Unexpected::Unit, &self)),
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        match self.0 {
            Type::I64 => i64::try_from(v).map(Value::I64).map_err(E::custom),
            _ => Ok(Value::U64(v)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::I64(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::I128(v))
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<Value, E> {
        Ok(Value::F32(v.to_bits()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::F64(v.to_bits()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        let mut chars = v.chars();
        match (self.0, chars.next(), chars.next()) {
            (Type::Char, Some(c), None) => Ok(Value::Char(c)),
            (Type::Str, ..) => Ok(Value::Str(v.to_owned())),
            _ => Err(de::Error::invalid_type(de::Unexpected::Str(v), &self)),
        }
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let Type::Option(t) = self.0 else {
            return Err(de::Error::invalid_type(de::Unexpected::Option, &self));
        };
        Ok(Value::Some(Box::new(Of(t).deserialize(d)?)))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let Type::Newtype(t) = self.0 else {
            return Err(de::Error::invalid_type(de::Unexpected::NewtypeStruct, &self));
        };
        Ok(Value::Newtype(Box::new(Of(t).deserialize(d)?)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        match self.0 {
            Type::Seq(t, known) => {
                let mut vs = Vec::new();
                while let Some(v) = seq.next_element_seed(Of(t))? {
                    vs.push(v);
                }
                Ok(Value::Seq(vs, *known))
            }
            Type::Tuple(ts) => each(&mut seq, ts).map(Value::Tuple),
            Type::TupleStruct(ts) => each(&mut seq, ts).map(Value::TupleStruct),
            _ => Err(de::Error::invalid_type(de::Unexpected::Seq, &self)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        match self.0 {
            Type::Map(k, v, known) => {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key_seed(Of(k))? {
                    entries.push((key, map.next_value_seed(Of(v))?));
                }
                Ok(Value::Map(entries, *known))
            }
            Type::Struct(ts) => fields(&mut map, ts).map(Value::Struct),
            _ => Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
        }
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let Type::Enum(variants) = self.0 else {
            return Err(de::Error::invalid_type(de::Unexpected::Enum, &self));
        };
        let (name, access) = data.variant::<String>()?;
        let i = VARIANTS[..variants.len()]
            .iter()
            .position(|variant| *variant == name)
            .ok_or_else(|| de::Error::unknown_variant(&name, &VARIANTS))?;
        let content = match &variants[i] {
            VariantType::Unit => access.unit_variant().map(|()| VariantValue::Unit)?,
            VariantType::Newtype(t) => VariantValue::Newtype(Box::new(access.newtype_variant_seed(Of(t))?)),
            VariantType::Tuple(ts) => access.tuple_variant(ts.len(), Variant(ts, false))?,
            VariantType::Struct(ts) => access.struct_variant(&FIELDS[..ts.len()], Variant(ts, true))?,
        };
        Ok(Value::Variant(i, content))
    }
}

/// The content of a tuple variant, or of a struct variant when `.1`.
struct Variant<'a>(&'a [Type], bool);

impl<'de> de::Visitor<'de> for Variant<'_> {
    type Value = VariantValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "the content of a variant of {:?}", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VariantValue, A::Error> {
        match self.1 {
            false => each(&mut seq, self.0).map(VariantValue::Tuple),
            true => Err(de::Error::invalid_type(de::Unexpected::Seq, &self)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VariantValue, A::Error> {
        match self.1 {
            true => fields(&mut map, self.0).map(VariantValue::Struct),
            false => Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
        }
    }
}

/// The value bytes of `value`, as the L2 codec writes them after its format byte.
fn encoded<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut encoder = Encoder::new(Heap::<false>::default());
    value.serialize(&mut encoder).expect("every value encodes");
    encoder.sink.0
}

/// The key bytes of `value`, written to the heap whatever its length (`key::key` writes the
/// common keys inline, to the same bytes: its tests hold it to this).
pub(crate) fn key_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut encoder = Encoder::new(Heap::<true>::default());
    value.serialize(&mut encoder).expect("every key encodes");
    encoder.sink.0
}

fn decoded(t: &Type, bytes: &[u8]) -> Result<Value, super::Error> {
    let mut decoder = Decoder::new(bytes);
    let value = Of(t).deserialize(&mut decoder)?;
    decoder.finish()?;
    Ok(value)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_value_decodes_to_itself((t, value) in typed_value()) {
        prop_assert_eq!(decoded(&t, &encoded(&value)).expect("decodes"), value);
    }

    #[test]
    fn values_of_a_type_share_a_key_exactly_when_equal(values in typed_values()) {
        keys_follow_equality(&values)?;
    }

    #[test]
    fn a_key_does_not_depend_on_the_order_maps_iterate_in(
        (_, value) in typed_value(),
        seed in any::<u64>(),
    ) {
        let reordered = shuffled(&value, &mut fastrand::Rng::with_seed(seed));
        prop_assert_eq!(key_bytes(&reordered), key_bytes(&value));
    }
}

/// Types whose serde impls are derived, with the attributes that make serde buffer a value
/// (flatten, internally tagged and untagged enums) and so read it without knowing its type.
mod derived {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Unit;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Wrapper(pub Option<Option<Option<()>>>);

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub enum Shape {
        Plain,
        Newtype(Option<()>),
        Other(Option<()>),
        Tuple(Option<Option<u8>>, ()),
        Struct {
            unit: Option<Unit>,
            units: Vec<Option<()>>,
        },
    }

    /// Fields left out when empty.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Sparse {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub min: Option<()>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max: Option<()>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind")]
    pub enum Tagged {
        A { maybe: Option<Option<()>> },
        B { unit: Option<Unit> },
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum Loose {
        Nothing(Option<()>),
        Number(u8),
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Flattened {
        pub maybe: Option<Option<()>>,
        pub unit: Option<Unit>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Record {
        pub id: u8,
        pub shape: Option<Option<Shape>>,
        pub wrapper: Wrapper,
        pub sparse: Sparse,
        pub tagged: Tagged,
        pub loose: Loose,
        pub by_name: HashMap<String, Option<()>>,
        #[serde(flatten)]
        pub flattened: Flattened,
    }

    fn unit() -> impl Strategy<Value = Option<Unit>> {
        any::<Option<()>>().prop_map(|unit| unit.map(|()| Unit))
    }

    pub fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            Just(Shape::Plain),
            any::<Option<()>>().prop_map(Shape::Newtype),
            any::<Option<()>>().prop_map(Shape::Other),
            any::<Option<Option<u8>>>().prop_map(|v| Shape::Tuple(v, ())),
            (unit(), vec(any::<Option<()>>(), 0..3)).prop_map(|(unit, units)| Shape::Struct { unit, units }),
        ]
    }

    pub fn wrapper() -> impl Strategy<Value = Wrapper> {
        any::<Option<Option<Option<()>>>>().prop_map(Wrapper)
    }

    pub fn sparse() -> impl Strategy<Value = Sparse> {
        any::<(Option<()>, Option<()>)>().prop_map(|(min, max)| Sparse { min, max })
    }

    pub fn tagged() -> impl Strategy<Value = Tagged> {
        prop_oneof![
            any::<Option<Option<()>>>().prop_map(|maybe| Tagged::A { maybe }),
            unit().prop_map(|unit| Tagged::B { unit }),
        ]
    }

    pub fn loose() -> impl Strategy<Value = Loose> {
        prop_oneof![
            any::<Option<()>>().prop_map(Loose::Nothing),
            (0..3u8).prop_map(Loose::Number),
        ]
    }

    pub fn flattened() -> impl Strategy<Value = Flattened> {
        (any::<Option<Option<()>>>(), unit()).prop_map(|(maybe, unit)| Flattened { maybe, unit })
    }

    pub fn record() -> impl Strategy<Value = Record> {
        let by_name = proptest::collection::hash_map(select(vec!["a", "b"]), any::<Option<()>>(), 0..3)
            .prop_map(|map| map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        (
            0..2u8,
            proptest::option::of(proptest::option::of(shape())),
            wrapper(),
            sparse(),
            tagged(),
            loose(),
            by_name,
            flattened(),
        )
            .prop_map(
                |(id, shape, wrapper, sparse, tagged, loose, by_name, flattened)| Record {
                    id,
                    shape,
                    wrapper,
                    sparse,
                    tagged,
                    loose,
                    by_name,
                    flattened,
                },
            )
    }
}

/// Fails unless any two of `values` share a key exactly when they are equal.
fn keys_follow_equality<T: Serialize + PartialEq + fmt::Debug>(values: &[T]) -> Result<(), TestCaseError> {
    let keys: Vec<_> = values.iter().map(key_bytes).collect();
    for (a, key_a) in values.iter().zip(&keys) {
        for (b, key_b) in values.iter().zip(&keys) {
            prop_assert_eq!(key_a == key_b, a == b, "{:?} and {:?}", a, b);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn every_derived_value_decodes_to_itself(record in derived::record()) {
        let bytes = encoded(&record);
        let mut decoder = Decoder::new(&bytes);
        let decoded = derived::Record::deserialize(&mut decoder).expect("decodes");
        decoder.finish().expect("no bytes left over");
        prop_assert_eq!(decoded, record);
    }

    #[test]
    fn derived_values_share_a_key_exactly_when_equal(
        shapes in vec(derived::shape(), 2..12),
        wrappers in vec(derived::wrapper(), 2..12),
        sparse in vec(derived::sparse(), 2..12),
        tagged in vec(derived::tagged(), 2..12),
        loose in vec(derived::loose(), 2..12),
        flattened in vec(derived::flattened(), 2..12),
        records in vec(derived::record(), 2..12),
    ) {
        keys_follow_equality(&shapes)?;
        keys_follow_equality(&wrappers)?;
        keys_follow_equality(&sparse)?;
        keys_follow_equality(&tagged)?;
        keys_follow_equality(&loose)?;
        keys_follow_equality(&flattened)?;
        keys_follow_equality(&records)?;
    }
}
