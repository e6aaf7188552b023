//! Invalidations that span functions: `invalidate_tag` and `clear_all`, in every tier and process.

use crate::error::BackendError;
use crate::process::{Process, PROCESS};
use crate::tags;

/// Invalidates every entry carrying `tag`, of every function, in both tiers and in every
/// process: once it returns `Ok`, no call in this process returns such an entry, and other
/// processes stop when the notice reaches them (as for `invalidate_<fn>`). A computation
/// already running whose entry carries the tag returns its value to its callers but stores
/// it nowhere.
///
/// It costs one statement, whatever the number of tagged entries: the tag's epoch is bumped
/// and entries written under the old one are never read again (their rows go with their TTL).
/// It belongs to no function's `on_failure`: when L2 cannot be updated it returns the
/// [`BackendError`] (other processes then keep their entries until their TTL), and this
/// process's L1 drops the tagged entries either way.
///
/// ```
/// # async fn run() -> Result<(), tiered::BackendError> {
/// // After user 42 changed, everything cached about them, in whatever function:
/// tiered::invalidate_tag("user:42").await?;
/// # Ok(())
/// # }
/// ```
pub async fn invalidate_tag(tag: impl AsRef<str>) -> Result<(), BackendError> {
    invalidate_tag_in(&PROCESS, tag.as_ref()).await
}

/// Invalidates every entry of every cached function of this runtime's namespace, in both
/// tiers and in every process, in one statement (a new epoch for the namespace). The
/// guarantees and failures are those of [`invalidate_tag`].
///
/// ```
/// # async fn run() -> Result<(), tiered::BackendError> {
/// tiered::clear_all().await?;
/// # Ok(())
/// # }
/// ```
pub async fn clear_all() -> Result<(), BackendError> {
    clear_all_in(&PROCESS).await
}

pub(crate) async fn invalidate_tag_in(process: &Process, tag: &str) -> Result<(), BackendError> {
    let hash = tags::hash(tag);
    // L2 first: once this process's L1 has dropped the entries, none can come back from L2.
    let in_l2 = match process.installed() {
        Some(installed) => installed.l2.invalidate_tag(&hash).await,
        None => Err(BackendError::NotConfigured),
    };
    process.registry.drop_tag(&hash);
    match &in_l2 {
        Ok(()) => tracing::info!(tag = %tags::epoch_name(&hash), "tiered: tag invalidated"),
        Err(err) => tracing::warn!(
            tag = %tags::epoch_name(&hash),
            error = %err,
            "tiered: tag invalidated in this process's L1 only"
        ),
    }
    in_l2
}

pub(crate) async fn clear_all_in(process: &Process) -> Result<(), BackendError> {
    let in_l2 = match process.installed() {
        Some(installed) => installed.l2.clear_all().await,
        None => Err(BackendError::NotConfigured),
    };
    process.registry.clear_l1(false);
    match &in_l2 {
        Ok(()) => tracing::info!("tiered: every cache cleared"),
        Err(err) => tracing::warn!(error = %err, "tiered: every cache cleared in this process's L1 only"),
    }
    in_l2
}
