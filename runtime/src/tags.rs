//! Tags: the names entries of any function are invalidated by, and what this process knows of them.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};

/// A tag's SHA-256: what notices and the epochs table carry (a tag may be any length).
pub(crate) type TagHash = [u8; 32];

/// The tags of one entry, as the `tags` expression gave them: each once, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<(String, TagHash)>);

impl Tags {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn hashes(&self) -> impl Iterator<Item = &TagHash> {
        self.0.iter().map(|(_, hash)| hash)
    }

    /// A digest of the whole set.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        for hash in self.hashes() {
            digest.update(hash);
        }
        digest.finalize().into()
    }

    /// The tags' rows in the epochs table (see [`epoch_name`]).
    pub(crate) fn epoch_names(&self) -> impl Iterator<Item = String> + '_ {
        self.hashes().map(epoch_name)
    }
}

/// No tags: an entry of a function without `tags`, or one whose tags do not matter where
/// it goes (an owed invalidation).
pub(crate) static NO_TAGS: Tags = Tags(Vec::new());

/// The tags of an entry from the `tags` expression: anything iterable of string-likes.
pub fn tags<I>(tags: I) -> Tags
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut tags: Vec<(String, TagHash)> = tags
        .into_iter()
        .map(|tag| {
            let tag = tag.as_ref();
            (tag.to_owned(), hash(tag))
        })
        .collect();
    tags.sort_unstable();
    tags.dedup();
    Tags(tags)
}

pub(crate) fn hash(tag: &str) -> TagHash {
    Sha256::digest(tag.as_bytes()).into()
}

/// The name of a tag's row in the epochs table, next to the functions' rows: `#` and its
/// digest in hex. No cache name is empty, and `clear_all`'s row is the empty name.
pub(crate) fn epoch_name(hash: &TagHash) -> String {
    let mut name = String::with_capacity(65);
    name.push('#');
    for byte in hash {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// The tag whose row in the epochs table is named `name`, if it is a tag's.
pub(crate) fn tag_of(name: &str) -> Option<TagHash> {
    let hex = name.strip_prefix('#').filter(|hex| hex.len() == 64)?;
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

/// The name of the namespace's own row in the epochs table, bumped by `clear_all`.
pub(crate) const NAMESPACE_EPOCH: &str = "";

/// How often the tags were invalidated as this process knows it (by itself or by notices),
/// in a fixed number of counters a tag's digest picks: memory stays bounded however many tags
/// are invalidated, and two tags sharing a counter only refuse each other's stores (a missed
/// fill, never a stale one). A computation notes the sum over its entry's tags before it
/// starts and stores its entry in L1 only if that sum has not moved, under the same lock that
/// tag invalidations take to evict: so an entry invalidated by tag while computing is never
/// stored.
pub(crate) struct TagEpochs(Mutex<[u64; SLOTS]>);

const SLOTS: usize = 4096;

fn slot(hash: &TagHash) -> usize {
    usize::from(u16::from_le_bytes([hash[0], hash[1]])) % SLOTS
}

/// The tag epochs, locked.
pub(crate) struct Locked<'a>(MutexGuard<'a, [u64; SLOTS]>);

impl TagEpochs {
    pub(crate) const fn new() -> Self {
        TagEpochs(Mutex::new([0; SLOTS]))
    }

    pub(crate) fn lock(&self) -> Locked<'_> {
        // Counters only: valid whatever a panicking holder did.
        Locked(self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The sum over `tags` now.
    pub(crate) fn sum(&self, tags: &Tags) -> u64 {
        self.lock().sum(tags)
    }
}

impl Locked<'_> {
    pub(crate) fn sum(&self, tags: &Tags) -> u64 {
        tags.hashes()
            .map(|hash| self.0[slot(hash)])
            .fold(0, u64::wrapping_add)
    }

    pub(crate) fn bump(&mut self, hash: &TagHash) {
        self.0[slot(hash)] += 1;
    }
}

/// Which L1 keys of one function carry each tag, so a tag's entries can be evicted without a
/// scan. Keys evicted by capacity linger until the next prune.
pub(crate) struct TagIndex<K>(Mutex<HashMap<TagHash, HashSet<K>>>);

impl<K: Hash + Eq + Clone> TagIndex<K> {
    pub(crate) fn new() -> Self {
        TagIndex(Mutex::new(HashMap::new()))
    }

    fn map(&self) -> MutexGuard<'_, HashMap<TagHash, HashSet<K>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `key` under each of `tags`; past `limit` keys under one tag or `limit` tags,
    /// keeps only the keys `live` still holds (and the tags that still have one).
    pub(crate) fn insert(&self, key: &K, tags: &Tags, limit: usize, live: impl Fn(&K) -> bool) {
        let mut map = self.map();
        for hash in tags.hashes() {
            let keys = map.entry(*hash).or_default();
            keys.insert(key.clone());
            if keys.len() > limit {
                keys.retain(&live);
            }
        }
        if map.len() > limit {
            map.retain(|_, keys| {
                keys.retain(&live);
                !keys.is_empty()
            });
        }
    }

    /// Takes the keys recorded under `hash`.
    pub(crate) fn take(&self, hash: &TagHash) -> HashSet<K> {
        self.map().remove(hash).unwrap_or_default()
    }

    pub(crate) fn clear(&self) {
        self.map().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_kept_once_and_any_text_is_a_tag() {
        let long = "x".repeat(10 * 1024);
        let t = tags(["b", "a", "b", "quote ' \" and\nnewline", "ünïcödé", &long]);
        assert_eq!(t.0.len(), 5);
        assert_eq!(tags(["a", "b"]), tags(vec![String::from("b"), String::from("a")]));
        assert_ne!(hash("a"), hash("a "));
        assert!(t
            .epoch_names()
            .all(|name| name.len() == 65 && name.starts_with('#')));
    }

    #[test]
    fn a_tags_epoch_moves_the_sum_of_every_entry_carrying_it() {
        let epochs = TagEpochs::new();
        let (ab, c) = (tags(["a", "b"]), tags(["c"]));
        let before = (epochs.sum(&ab), epochs.sum(&c));
        epochs.lock().bump(&hash("b"));
        assert_ne!(epochs.sum(&ab), before.0);
        assert_eq!(epochs.sum(&c), before.1);
    }
}
