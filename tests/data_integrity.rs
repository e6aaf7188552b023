//! Values and keys come back exactly through the attribute: `Some(())` and `Some(None)` read
//! back from L2 as themselves, and arguments that differ only in a `Some` are computed apart.
//! Every test counts body executions; the stored rows are read back with SQL.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::{block_on, installed_table, serial, stats_of};
use tiered::tiered_cached;
use tiered_testkit::PgServer;

/// The stored bytes of the rows of `function` that hold a value, in byte order.
async fn stored_values(function: &str) -> Vec<Vec<u8>> {
    let table = installed_table();
    let statement = format!(
        "SELECT value FROM {table} WHERE function = '{function}' AND value IS NOT NULL ORDER BY value"
    );
    tiered_testkit::sql(PgServer::shared().url(), &statement)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

static UNIT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "some_unit")]
async fn some_unit(id: u64) -> Option<()> {
    UNIT_RUNS.fetch_add(1, SeqCst);
    (id == 1).then_some(())
}

#[test]
fn some_unit_read_back_from_l2_is_some_unit_not_none() {
    let _serial = serial();
    block_on(async {
        assert_eq!(some_unit(1).await, Some(()));
        assert_eq!(some_unit(2).await, None);
        tiered::clear_l1();
        assert_eq!(some_unit(1).await, Some(()), "from L2");
        assert_eq!(some_unit(2).await, None, "from L2");
        assert_eq!(UNIT_RUNS.load(SeqCst), 2, "the L2 hits ran no body");
        assert_eq!(stats_of("some_unit").l2_hits, 2);
        // The format byte, then nil for `None` and the `Some` marker before nil for `Some(())`.
        assert_eq!(
            stored_values("some_unit").await,
            [vec![2, 0xc0], vec![2, 0xc1, 0xc0]]
        );
    });
}

static NESTED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "some_none")]
async fn some_none(id: u64) -> Option<Option<u64>> {
    NESTED_RUNS.fetch_add(1, SeqCst);
    match id {
        0 => None,
        1 => Some(None),
        _ => Some(Some(id)),
    }
}

#[test]
fn some_none_read_back_from_l2_is_some_none_not_none() {
    let _serial = serial();
    block_on(async {
        let expected = [None, Some(None), Some(Some(2))];
        for (id, value) in (0..).zip(expected) {
            assert_eq!(some_none(id).await, value);
        }
        tiered::clear_l1();
        for (id, value) in (0..).zip(expected) {
            assert_eq!(some_none(id).await, value, "from L2");
        }
        assert_eq!(NESTED_RUNS.load(SeqCst), 3, "the L2 hits ran no body");
        assert_eq!(stats_of("some_none").l2_hits, 3);
        assert_eq!(stored_values("some_none").await.len(), 3);
    });
}

static BY_UNIT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "by_unit", backend = "none")]
async fn by_unit(x: Option<()>) -> (Option<()>, usize) {
    (x, BY_UNIT_RUNS.fetch_add(1, SeqCst))
}

static BY_NESTED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "by_nested", backend = "none")]
async fn by_nested(x: Option<Option<u8>>) -> (Option<Option<u8>>, usize) {
    (x, BY_NESTED_RUNS.fetch_add(1, SeqCst))
}

#[test]
fn arguments_that_differ_only_in_a_some_have_keys_of_their_own() {
    let _serial = serial();
    block_on(async {
        assert_eq!(by_unit(None).await, (None, 0));
        assert_eq!(by_unit(Some(())).await, (Some(()), 1), "not None's value");
        assert_eq!(by_unit(None).await, (None, 0));
        assert_eq!(by_unit(Some(())).await, (Some(()), 1));
        assert_eq!(BY_UNIT_RUNS.load(SeqCst), 2, "one body run per key");
        assert_eq!(stats_of("by_unit").l1_hits, 2);

        let arguments = [None, Some(None), Some(Some(0))];
        for x in arguments.into_iter().chain(arguments) {
            assert_eq!(by_nested(x).await.0, x);
        }
        assert_eq!(BY_NESTED_RUNS.load(SeqCst), 3, "one body run per key");
        assert_eq!(stats_of("by_nested").l1_hits, 3);
    });
}
