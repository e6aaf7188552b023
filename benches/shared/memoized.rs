//! One memoized async fn per implementation under test, each caching [`Profile`]s in a store
//! of 10,000 entries: `#[tiered_cached]`, the `cached` crate's `#[cached]`, and the same
//! lookup written by hand (get, clone out, else load and insert) over each raw store.

use std::hash::{BuildHasher, Hash};
use std::sync::LazyLock;

use super::profile::{email_of, hot_id, Profile};

/// Entries per store, as `#[tiered_cached]`'s default `l1_capacity`.
pub const CAPACITY: usize = 10_000;

/// The string form of [`hot_id`], for the `String`-keyed functions (well under 64 bytes).
pub fn hot_email(i: usize) -> String {
    email_of(hot_id(i))
}

/// The three-argument form of [`hot_id`]: (tenant, team, id).
pub fn hot_triple(i: usize) -> (u64, u32, u64) {
    let id = hot_id(i);
    (id % 7, (id % 13) as u32, id)
}

/// The profile of the `String`-keyed functions.
fn with_email(email: String) -> Profile {
    Profile {
        id: 0,
        name: "Profile holder found by email".to_owned(),
        email,
    }
}

/// `#[tiered_cached]` with its defaults (`backend = "pg"`; with no runtime installed the hit
/// path is the one of an installed runtime whose invalidation listener is connected).
pub mod tiered_fns {
    use super::{with_email, Profile};
    use tiered::tiered_cached;

    #[tiered_cached]
    pub async fn profile(id: u64) -> Profile {
        Profile::new(id)
    }

    #[tiered_cached]
    pub async fn profile_by_email(email: String) -> Profile {
        with_email(email)
    }

    #[tiered_cached]
    pub async fn team_profile(tenant: u64, team: u32, id: u64) -> Profile {
        Profile::new(id ^ tenant ^ u64::from(team))
    }

    /// A user's newtype key: looked up in L1 as itself, as a `u64` is.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
    pub struct UserId(pub u64);

    #[tiered_cached]
    pub async fn profile_by_user_id(id: UserId) -> Profile {
        Profile::new(id.0)
    }
}

/// The `cached` crate's `#[cached]` with an LRU bound of the same size.
pub mod cached_fns {
    use super::{with_email, Profile};
    use cached::proc_macro::cached;

    #[cached(max_size = 10_000)]
    pub async fn profile(id: u64) -> Profile {
        Profile::new(id)
    }

    #[cached(max_size = 10_000)]
    pub async fn profile_by_email(email: String) -> Profile {
        with_email(email)
    }

    #[cached(max_size = 10_000)]
    pub async fn team_profile(tenant: u64, team: u32, id: u64) -> Profile {
        Profile::new(id ^ tenant ^ u64::from(team))
    }
}

/// Hand-written memoization over each raw store.
pub mod by_hand {
    use super::*;

    type Quick<K> = quick_cache::sync::Cache<K, Profile>;
    type MiniMoka<S> = mini_moka::sync::Cache<u64, Profile, S>;

    static QUICK_BY_ID: LazyLock<Quick<u64>> = LazyLock::new(|| Quick::new(CAPACITY));
    static QUICK_BY_EMAIL: LazyLock<Quick<String>> = LazyLock::new(|| Quick::new(CAPACITY));
    static QUICK_BY_TEAM: LazyLock<Quick<(u64, u32, u64)>> = LazyLock::new(|| Quick::new(CAPACITY));
    static MINI_MOKA: LazyLock<MiniMoka<std::hash::RandomState>> =
        LazyLock::new(|| mini_moka::sync::Cache::new(CAPACITY as u64));
    static MINI_MOKA_FOLDHASH: LazyLock<MiniMoka<foldhash::fast::RandomState>> = LazyLock::new(|| {
        mini_moka::sync::Cache::builder()
            .max_capacity(CAPACITY as u64)
            .build_with_hasher(foldhash::fast::RandomState::default())
    });
    static MOKA: LazyLock<moka::future::Cache<u64, Profile>> =
        LazyLock::new(|| moka::future::Cache::new(CAPACITY as u64));

    /// The lookup a user writes around a store: get and clone out, else load and insert.
    async fn on_quick_cache<K: Eq + Hash>(
        store: &Quick<K>,
        key: K,
        load: impl FnOnce(&K) -> Profile,
    ) -> Profile {
        if let Some(hit) = store.get(&key) {
            return hit;
        }
        let value = load(&key);
        store.insert(key, value.clone());
        value
    }

    async fn on_mini_moka<S: BuildHasher + Clone + Send + Sync + 'static>(
        store: &MiniMoka<S>,
        id: u64,
    ) -> Profile {
        if let Some(hit) = store.get(&id) {
            return hit;
        }
        let value = Profile::new(id);
        store.insert(id, value.clone());
        value
    }

    pub async fn quick_cache_profile(id: u64) -> Profile {
        on_quick_cache(&QUICK_BY_ID, id, |&id| Profile::new(id)).await
    }

    pub async fn quick_cache_profile_by_email(email: String) -> Profile {
        on_quick_cache(&QUICK_BY_EMAIL, email, |email| with_email(email.clone())).await
    }

    pub async fn quick_cache_team_profile(tenant: u64, team: u32, id: u64) -> Profile {
        on_quick_cache(&QUICK_BY_TEAM, (tenant, team, id), |&(tenant, team, id)| {
            Profile::new(id ^ tenant ^ u64::from(team))
        })
        .await
    }

    pub async fn mini_moka_profile(id: u64) -> Profile {
        on_mini_moka(&MINI_MOKA, id).await
    }

    pub async fn mini_moka_foldhash_profile(id: u64) -> Profile {
        on_mini_moka(&MINI_MOKA_FOLDHASH, id).await
    }

    pub async fn moka_future_profile(id: u64) -> Profile {
        if let Some(hit) = MOKA.get(&id).await {
            return hit;
        }
        let value = Profile::new(id);
        MOKA.insert(id, value.clone()).await;
        value
    }
}
