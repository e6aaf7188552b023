//! The expansion adds no warnings of its own and documents the public helpers it generates.
#![deny(
    warnings,
    unused_qualifications,
    missing_docs,
    unused_parens,
    unused_mut,
    unused_variables
)]

use tiered::tiered_cached;

/// A user record.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// Its id.
    pub id: u64,
    /// Its tenant.
    pub tenant: String,
}

/// Loads a user.
#[tiered_cached(ttl = "1m", key = "(tenant, id)")]
pub async fn user(tenant: &str, id: u64, mut retries: u8) -> Result<User, std::io::Error> {
    retries = retries.saturating_sub(1);
    let _ = retries;
    Ok(User {
        id,
        tenant: tenant.to_owned(),
    })
}

/// Counts something.
#[tiered_cached(backend = "none", key = "id")]
pub async fn count(id: u64, _unused: bool) -> u64 {
    id
}

/// Documented, but never called.
#[tiered_cached(backend = "none")]
pub async fn never_called() -> u8 {
    1
}

/// Never called, and private: the helpers must not warn about dead code.
#[tiered_cached(backend = "none")]
#[expect(clippy::unused_async, unused_variables, reason = "checked in the body only")]
async fn private_unused(x: u32) -> u8 {
    let y = 1;
    2
}

/// Compiled in: its helpers too.
#[cfg(all())]
#[tiered_cached(backend = "none")]
pub async fn configured(id: u64) -> u64 {
    id
}

/// Compiled out: its helpers too, or they would call a body that is not there.
#[cfg(any())]
#[tiered_cached(backend = "none")]
pub async fn configured_out(id: u64) -> u64 {
    id
}

/// A store.
pub struct Store;

impl Store {
    /// Finds a name.
    #[tiered_cached(backend = "none")]
    pub async fn name(&self, id: u64) -> String {
        format!("name {id}")
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(user("acme", 1, 3).await.unwrap().tenant, "acme");
    assert_eq!(count(1, true).await, 1);
    assert_eq!(Store.name(1).await, "name 1");
    Store::invalidate_name(1).await.unwrap();
    assert_eq!(refresh_configured(2).await, 2);
}
