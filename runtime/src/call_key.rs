//! How a call's arguments find its L1 entry: as they are when they are `Hash + Eq + Clone`,
//! else by their encoded bytes; past L1, every key also has its bytes for L2.
//!
//! An L1 hit is the product's hot path, and encoding a key, then hashing and comparing the
//! bytes, costs more than the store's lookup itself (BENCHMARKS.md). So when every key argument
//! is an integer, `bool`, `char` or a string, the attribute keys L1 by the tuple of them
//! ([`Parts`]), hashed and compared as they are. Any other key ([`Key`]) is encoded first, as
//! before. Either way the bytes are those of [`key`](crate::key::key), so L2 rows, entry ids
//! and epoch stripes do not depend on which form L1 uses.

use std::any::Any;
use std::hash::{Hash, Hasher};

use quick_cache::Equivalent;
use serde::Serialize;

use crate::key::{Key, KeyBytes};
use crate::tags::Tags;

/// A call's key as the generated code passes it: looked up in L1 as it is, and resolved to
/// its stored form and bytes only past L1.
pub trait CallKey<K> {
    /// The key as L1 hashes and compares it.
    type Lookup<'a>: Hash + Equivalent<K>
    where
        Self: 'a;

    /// `None` when the key cannot be encoded: the call is not cached.
    fn lookup(&self) -> Option<Self::Lookup<'_>>;

    /// The key as L1 stores it, with its bytes.
    fn resolve(self) -> Resolved<K>;
}

/// A call's key past L1: as L1 stores it, and encoded (for L2, epochs and single-flight); or
/// why it could not be encoded.
pub struct Resolved<K>(pub(crate) Result<Box<Encoded<K>>, String>);

impl<K> std::fmt::Debug for Resolved<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Resolved").finish_non_exhaustive()
    }
}

/// A resolved key that could be encoded.
#[derive(Clone)]
pub(crate) struct Encoded<K> {
    pub(crate) stored: K,
    pub(crate) bytes: KeyBytes,
    /// The entry's tags (`tags = "…"`; none without).
    pub(crate) tags: Tags,
    /// The sum of the tags' epochs in this process when the key was resolved.
    pub(crate) tag_epoch: u64,
}

impl<K> Resolved<K> {
    fn encoded<S: Serialize + ?Sized>(stored: K, form: &S) -> Self {
        Resolved(
            crate::key::key(form)
                .0
                .map(|bytes| Encoded::untagged(stored, bytes)),
        )
    }

    /// The key with its entry's tags and their epoch sum then.
    pub(crate) fn tagged(mut self, tags: Tags, tag_epoch: u64) -> Self {
        if let Ok(encoded) = &mut self.0 {
            encoded.tags = tags;
            encoded.tag_epoch = tag_epoch;
        }
        self
    }
}

impl<K> Encoded<K> {
    fn untagged(stored: K, bytes: KeyBytes) -> Box<Self> {
        Box::new(Encoded {
            stored,
            bytes,
            tags: Tags::default(),
            tag_epoch: 0,
        })
    }
}

/// An argument type L1 can key by as it is. Its [`Hash`] equals its owned form's (as `Borrow`
/// requires), so a lookup by the borrowed form finds the entry stored by the owned one.
pub trait KeyPart: Hash + Serialize + Copy {
    /// The part as L1 stores it.
    type Owned: Hash + Eq + Clone + Send + Sync + 'static;

    /// Whether `owned` is this part.
    fn matches(&self, owned: &Self::Owned) -> bool;

    /// The part as L1 stores it.
    fn to_owned_part(&self) -> Self::Owned;
}

macro_rules! scalar_parts {
    ($($scalar:ident),*) => {
        /// The names of the scalar types that are [`KeyPart`]s (the attribute keys L1 by
        /// arguments of these types as they are, and a test holds its list to this one).
        pub const SCALAR_PARTS: &[&str] = &[$(stringify!($scalar)),*];
        $(
        impl KeyPart for $scalar {
            type Owned = $scalar;

            #[inline]
            fn matches(&self, owned: &$scalar) -> bool {
                self == owned
            }

            fn to_owned_part(&self) -> $scalar {
                *self
            }
        }
    )*};
}

scalar_parts!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool, char);

impl KeyPart for &str {
    type Owned = String;

    #[inline]
    fn matches(&self, owned: &String) -> bool {
        *self == owned.as_str()
    }

    fn to_owned_part(&self) -> String {
        (*self).to_owned()
    }
}

/// The key arguments of a call, all [`KeyPart`]s, as a tuple: L1 stores the tuple of their
/// owned forms. It hashes as that tuple does (each element in turn).
#[derive(Clone, Copy, Hash)]
pub struct Parts<T>(pub T);

/// The most key arguments a [`Parts`] tuple holds (the attribute's limit for typed keys).
pub const MAX_PARTS: usize = 8;

macro_rules! tuple_parts {
    ($(($($part:ident $index:tt),*))*) => {$(
        impl<$($part: KeyPart),*> Equivalent<($($part::Owned,)*)> for Parts<($($part,)*)> {
            #[inline]
            fn equivalent(&self, _stored: &($($part::Owned,)*)) -> bool {
                true $(&& self.0.$index.matches(&_stored.$index))*
            }
        }

        impl<$($part: KeyPart),*> CallKey<($($part::Owned,)*)> for Parts<($($part,)*)> {
            // By reference: the parts were just written one by one, and copying them whole
            // would stall on store forwarding.
            type Lookup<'a> = &'a Self where Self: 'a;

            #[inline]
            fn lookup(&self) -> Option<&Self> {
                Some(self)
            }

            fn resolve(self) -> Resolved<($($part::Owned,)*)> {
                Resolved::encoded(($(self.0.$index.to_owned_part(),)*), &self.0)
            }
        }
    )*};
}

impl<K, T> Equivalent<K> for &Parts<T>
where
    Parts<T>: Equivalent<K>,
{
    #[inline]
    fn equivalent(&self, stored: &K) -> bool {
        (**self).equivalent(stored)
    }
}

tuple_parts! {
    ()
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
}

/// The L1 key of a function whose arguments are not all [`KeyPart`]s (or that has a `key`
/// expression): the arguments as they are when every one is `Hash + Eq + Clone + 'static`
/// (a call site tells by [`KeyArgs`]), else their encoding. One function always takes the
/// same form: it is chosen by the argument types.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AnyKey(Form);

#[derive(Clone)]
enum Form {
    Typed(Box<dyn TypedKey>),
    Bytes(ByteKey),
}

impl PartialEq for Form {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Form::Typed(a), Form::Typed(b)) => a.dyn_eq(&**b),
            (Form::Bytes(a), Form::Bytes(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Form {}

impl Hash for Form {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            // The same writes, through `dyn`, as the owned tuple's own `Hash` makes, so a probe
            // hashing its borrowed arguments directly finds the entry.
            Form::Typed(key) => key.dyn_hash(state),
            Form::Bytes(key) => key.hash(state),
        }
    }
}

/// An owned argument tuple behind `dyn`, so one L1 type holds any function's typed keys.
trait TypedKey: Any + Send + Sync {
    fn dyn_hash(&self, state: &mut dyn Hasher);
    fn dyn_eq(&self, other: &dyn TypedKey) -> bool;
    fn dyn_clone(&self) -> Box<dyn TypedKey>;
    fn as_any(&self) -> &dyn Any;
}

impl<T: Hash + Eq + Clone + Send + Sync + 'static> TypedKey for T {
    fn dyn_hash(&self, mut state: &mut dyn Hasher) {
        self.hash(&mut state);
    }

    fn dyn_eq(&self, other: &dyn TypedKey) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }

    fn dyn_clone(&self) -> Box<dyn TypedKey> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Clone for Box<dyn TypedKey> {
    fn clone(&self) -> Self {
        self.dyn_clone()
    }
}

/// The key arguments of a call site (references to them) before their form is chosen: the
/// generated code calls `(&KeyArgs(arguments)).form()` with [`ViaTyped`] and [`ViaBytes`] in
/// scope, and method resolution picks [`ViaTyped`] when the arguments qualify (it takes
/// `KeyArgs` by reference, one autoref sooner than [`ViaBytes`]).
pub struct KeyArgs<T>(pub T);

/// The key of arguments that are all `Hash + Eq + Clone + 'static`: looked up as they are.
pub trait ViaTyped {
    /// The key as L1 looks it up.
    type Key;
    /// The key.
    fn form(&self) -> Self::Key;
}

/// The key of any other arguments: their encoding.
pub trait ViaBytes {
    /// The key.
    fn form(&self) -> Key;
}

impl<T: Serialize> ViaBytes for &KeyArgs<T> {
    #[inline]
    fn form(&self) -> Key {
        crate::key::key(&self.0)
    }
}

/// Requires what every key needs: its arguments can be encoded (their bytes name the entry in
/// L2). It does nothing; the attribute calls it first, so a missing `Serialize` is reported
/// as that.
#[inline(always)]
pub fn key_arguments<T: Serialize + ?Sized>(_: &T) {}

/// Borrowed arguments, looked up in L1 as the owned tuple they would be stored as.
#[derive(Clone, Copy, Hash)]
pub struct Typed<T>(T);

macro_rules! typed_args {
    ($(($($arg:ident $index:tt),+))*) => {$(
        impl<'a, $($arg),+> ViaTyped for KeyArgs<($(&'a $arg,)+)>
        where
            $($arg: Hash + Eq + Clone + Serialize + Send + Sync + 'static),+
        {
            type Key = Typed<($(&'a $arg,)+)>;

            #[inline]
            fn form(&self) -> Self::Key {
                Typed(self.0)
            }
        }

        impl<'a, $($arg),+> Equivalent<AnyKey> for Typed<($(&'a $arg,)+)>
        where
            $($arg: Hash + Eq + Clone + Send + Sync + 'static),+
        {
            #[inline]
            fn equivalent(&self, stored: &AnyKey) -> bool {
                match &stored.0 {
                    Form::Typed(key) => key
                        .as_any()
                        .downcast_ref::<($($arg,)+)>()
                        .is_some_and(|key| true $(&& *self.0.$index == key.$index)+),
                    Form::Bytes(_) => false,
                }
            }
        }

        impl<'a, $($arg),+> CallKey<AnyKey> for Typed<($(&'a $arg,)+)>
        where
            $($arg: Hash + Eq + Clone + Serialize + Send + Sync + 'static),+
        {
            type Lookup<'b> = &'b Self where Self: 'b;

            #[inline]
            fn lookup(&self) -> Option<&Self> {
                Some(self)
            }

            fn resolve(self) -> Resolved<AnyKey> {
                let owned = ($(self.0.$index.clone(),)+);
                Resolved::encoded(AnyKey(Form::Typed(Box::new(owned))), &self.0)
            }
        }
    )*};
}

impl<K, T> Equivalent<K> for &Typed<T>
where
    Typed<T>: Equivalent<K>,
{
    #[inline]
    fn equivalent(&self, stored: &K) -> bool {
        (**self).equivalent(stored)
    }
}

typed_args! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
}

/// Keys up to this long are held in three words.
const SHORT: usize = 24;

/// An encoded key of at most [`SHORT`] bytes, zero-padded into words: hashing and comparing
/// it are a few word operations, where a byte slice costs a loop and a `memcmp` call.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Short {
    len: u8,
    words: [u64; 3],
}

impl Short {
    fn new(bytes: &[u8]) -> Option<Short> {
        if bytes.len() > SHORT {
            return None;
        }
        // Byte by byte into registers: the key was just written a byte at a time, and wider
        // loads of it would stall on store forwarding.
        let mut words = [0u64; 3];
        for (i, &byte) in bytes.iter().enumerate() {
            words[i / 8] |= u64::from(byte) << (8 * (i % 8));
        }
        Some(Short {
            len: bytes.len() as u8,
            words,
        })
    }

    fn hash<H: Hasher>(&self, state: &mut H) {
        for word in self.words {
            state.write_u64(word);
        }
        state.write_u8(self.len);
    }
}

/// An encoded key as L1 stores it: short ones in words, longer ones on the heap.
#[derive(Clone, PartialEq, Eq)]
struct ByteKey(Bytes);

#[derive(Clone, PartialEq, Eq)]
enum Bytes {
    Short(Short),
    Long(Box<[u8]>),
}

/// An encoded key being looked up, borrowed from the call's encoding: it hashes and compares
/// as the [`ByteKey`] it would be stored as, so a lookup allocates nothing.
pub struct ByteLookup<'a>(Borrowed<'a>);

enum Borrowed<'a> {
    Short(Short),
    Long(&'a [u8]),
}

impl<'a> ByteLookup<'a> {
    #[inline]
    fn new(key: &'a KeyBytes) -> Self {
        ByteLookup(Short::new(key).map_or(Borrowed::Long(key), Borrowed::Short))
    }

    fn to_stored(&self) -> ByteKey {
        ByteKey(match self.0 {
            Borrowed::Short(short) => Bytes::Short(short),
            Borrowed::Long(bytes) => Bytes::Long(bytes.into()),
        })
    }
}

impl Hash for ByteKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            Bytes::Short(short) => short.hash(state),
            Bytes::Long(bytes) => state.write(bytes),
        }
    }
}

impl Hash for ByteLookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.0 {
            Borrowed::Short(short) => short.hash(state),
            Borrowed::Long(bytes) => state.write(bytes),
        }
    }
}

impl Equivalent<ByteKey> for ByteLookup<'_> {
    #[inline]
    fn equivalent(&self, stored: &ByteKey) -> bool {
        match (&self.0, &stored.0) {
            (Borrowed::Short(short), Bytes::Short(stored)) => short == stored,
            (Borrowed::Long(bytes), Bytes::Long(stored)) => *bytes == &**stored,
            _ => false,
        }
    }
}

impl Equivalent<AnyKey> for ByteLookup<'_> {
    #[inline]
    fn equivalent(&self, stored: &AnyKey) -> bool {
        match &stored.0 {
            Form::Bytes(stored) => self.equivalent(stored),
            Form::Typed(_) => false,
        }
    }
}

impl CallKey<AnyKey> for Key {
    type Lookup<'a> = ByteLookup<'a>;

    #[inline]
    fn lookup(&self) -> Option<ByteLookup<'_>> {
        self.0.as_ref().ok().map(ByteLookup::new)
    }

    fn resolve(self) -> Resolved<AnyKey> {
        Resolved(self.0.map(|bytes| {
            let stored = AnyKey(Form::Bytes(ByteLookup::new(&bytes).to_stored()));
            Encoded::untagged(stored, bytes)
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;
    use crate::key::key;

    fn encoded<K>(resolved: Resolved<K>) -> Encoded<K> {
        *resolved.0.unwrap_or_else(|message| panic!("{message}"))
    }

    #[test]
    fn parts_hash_and_compare_as_the_tuple_they_are_stored_as() {
        let state = std::hash::RandomState::new();
        let parts = Parts((7u64, "acme", -1i8, 'x', true));
        let stored = encoded(parts.resolve()).stored;
        assert_eq!(stored, (7u64, "acme".to_owned(), -1i8, 'x', true));
        assert_eq!(state.hash_one(parts), state.hash_one(&stored));
        assert!(parts.equivalent(&stored));
        assert!(!Parts((7u64, "acme!", -1i8, 'x', true)).equivalent(&stored));
        assert!(Parts(()).equivalent(&()));
    }

    #[test]
    fn both_forms_encode_their_key_as_the_arguments_encode() {
        let name = String::from("acme");
        let typed = encoded(Parts((7u64, name.as_str())).resolve());
        assert_eq!(typed.bytes, key(&(&7u64, &name)).0.unwrap());
        let encoded = encoded(key(&(&7u64, &name)).resolve());
        assert_eq!(encoded.bytes, typed.bytes);
    }

    #[test]
    fn encoded_keys_of_every_length_hash_and_compare_as_stored() {
        // All zeros: only their lengths tell them apart, inline and on the heap.
        let state = std::hash::RandomState::new();
        let keys: Vec<Key> = (0..=2 * SHORT)
            .map(|len| Key(Ok(KeyBytes::from_vec(vec![0; len]))))
            .collect();
        for (n, key) in keys.iter().enumerate() {
            let lookup = key.lookup().unwrap();
            let stored = lookup.to_stored();
            assert_eq!(state.hash_one(&lookup), state.hash_one(&stored));
            for (m, other) in keys.iter().enumerate() {
                assert_eq!(other.lookup().unwrap().equivalent(&stored), n == m, "{n} vs {m}");
            }
        }
    }

    #[test]
    fn parts_take_up_to_max_parts_arguments() {
        fn is_call_key<K, Q: CallKey<K>>(_: &Q) {}
        let widest = Parts((0u8, 1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8));
        is_call_key::<(u8, u8, u8, u8, u8, u8, u8, u8), _>(&widest);
        assert_eq!(MAX_PARTS, 8);
    }

    #[derive(Clone, PartialEq, Eq, Hash, Serialize)]
    struct UserId(u64);

    #[test]
    #[allow(
        clippy::needless_borrow,
        reason = "the borrow is how the generated code picks the form"
    )]
    fn hash_eq_clone_arguments_are_looked_up_as_themselves() {
        let state = std::hash::RandomState::new();
        let (id, tag) = (UserId(7), Some(3u8));
        let probe: Typed<(&UserId, &Option<u8>)> = (&KeyArgs((&id, &tag))).form();
        let stored = encoded(probe.resolve()).stored;
        assert_eq!(state.hash_one(probe), state.hash_one(&stored));
        assert!(probe.equivalent(&stored));
        let other = UserId(8);
        assert!(!(&KeyArgs((&other, &tag))).form().equivalent(&stored));
        assert_eq!(
            encoded(probe.resolve()).bytes,
            key(&(&id, &tag)).0.unwrap(),
            "the same bytes as the encoded form, for L2"
        );
        let bytes_form = encoded(key(&(&id, &tag)).resolve()).stored;
        assert!(!probe.equivalent(&bytes_form) && stored != bytes_form);
    }

    #[test]
    #[allow(
        clippy::needless_borrow,
        reason = "the borrow is how the generated code picks the form"
    )]
    fn other_arguments_are_looked_up_by_their_encoding() {
        let ratio = 1.5f64;
        let name: &str = "acme";
        let by_bytes: Key = (&KeyArgs((&ratio, name))).form();
        let stored = encoded(by_bytes.resolve()).stored;
        let again: Key = (&KeyArgs((&ratio, name))).form();
        assert!(again.lookup().unwrap().equivalent(&stored));
    }

    #[test]
    fn a_key_that_cannot_be_encoded_has_no_lookup() {
        let key = Key(Err("no".to_owned()));
        assert!(key.lookup().is_none());
        assert_eq!(key.resolve().0.err().as_deref(), Some("no"));
    }
}
