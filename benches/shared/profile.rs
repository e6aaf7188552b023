//! The value every benchmark caches, and the keys it is looked up by.

use serde::{Deserialize, Serialize};

/// A small struct whose clone costs two heap allocations and two copies (its `value_clone`
/// time is in BENCHMARKS.md), like a typical cached row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub id: u64,
    pub name: String,
    pub email: String,
}

impl Profile {
    pub fn new(id: u64) -> Self {
        Profile {
            id,
            name: format!("Profile holder number {id:>8}"),
            email: email_of(id),
        }
    }
}

pub fn email_of(id: u64) -> String {
    format!("holder.{id:08}@mail.example.com")
}

/// How many distinct keys the hit benchmarks cycle through: all stay resident in every store.
pub const HOT_KEYS: usize = 1024;

/// The `i`-th key of the hot set, visited in a scattered order so consecutive lookups touch
/// different parts of the store.
pub fn hot_id(i: usize) -> u64 {
    ((i.wrapping_mul(617)) % HOT_KEYS) as u64
}
