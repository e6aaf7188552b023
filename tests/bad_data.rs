//! Rows that cannot be used — garbage, truncated, of an older `version`, of another type — are
//! misses: recomputed and overwritten, never a panic, never an error to the caller.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::{block_on, installed_table, query_i64, serial};
use serde::{Deserialize, Serialize};
use tiered::tiered_cached;
use tiered_testkit::PgServer;

async fn execute(statement: String) {
    tiered_testkit::sql(PgServer::shared().url(), &statement)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    lines: Vec<String>,
}

static ORDER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "order", on_failure = "error")]
async fn order(id: u64) -> Result<Order, tiered::BackendError> {
    ORDER_RUNS.fetch_add(1, SeqCst);
    Ok(Order {
        id,
        lines: vec!["book".into(); 3],
    })
}

#[test]
fn garbage_truncated_and_empty_rows_are_misses_even_under_on_failure_error() {
    let _serial = serial();
    let table = installed_table();
    block_on(async {
        order(1).await.unwrap();
        let corruptions = [
            "'\\xdeadbeef'::bytea",
            "substring(value from 1 for length(value) - 3)",
            "''::bytea",
            "value || '\\x00'::bytea",
        ];
        for (i, corruption) in corruptions.iter().enumerate() {
            execute(format!(
                "UPDATE {table} SET value = {corruption} WHERE function = 'order'"
            ))
            .await;
            tiered::clear_l1();
            let fresh = order(1).await.expect("a corrupt row is a miss, not an error");
            assert_eq!(fresh.lines.len(), 3);
            assert_eq!(ORDER_RUNS.load(SeqCst), i + 2, "{corruption}: recomputed");
        }
        tiered::clear_l1();
        order(1).await.unwrap();
        assert_eq!(
            ORDER_RUNS.load(SeqCst),
            5,
            "the last recomputation overwrote the row"
        );
    });
}

static V1_RUNS: AtomicUsize = AtomicUsize::new(0);
static V2_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "versioned", version = 1)]
async fn price_v1(id: u64) -> u32 {
    V1_RUNS.fetch_add(1, SeqCst);
    id as u32
}

/// The same cache after a deploy that changed the stored type and bumped `version`.
#[tiered_cached(name = "versioned", version = 2)]
async fn price_v2(id: u64) -> (u32, String) {
    V2_RUNS.fetch_add(1, SeqCst);
    (id as u32, "EUR".into())
}

#[test]
fn a_row_of_an_older_version_is_never_read() {
    let _serial = serial();
    let table = installed_table();
    block_on(async {
        assert_eq!(price_v1(7).await, 7);
        assert_eq!(price_v2(7).await, (7, "EUR".to_owned()));
        tiered::clear_l1();
        assert_eq!(price_v2(7).await, (7, "EUR".to_owned()));
        assert_eq!((V1_RUNS.load(SeqCst), V2_RUNS.load(SeqCst)), (1, 1));
        let versions = query_i64(&format!(
            "SELECT version FROM {table} WHERE function = 'versioned' ORDER BY version"
        ))
        .await;
        assert_eq!(versions, [1, 2], "each version has its own row");
    });
}

static TEXT_RUNS: AtomicUsize = AtomicUsize::new(0);
static NUMBER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "retyped")]
async fn as_text(id: u64) -> String {
    TEXT_RUNS.fetch_add(1, SeqCst);
    format!("#{id}")
}

/// The same cache name and version, but another type: a deploy that forgot to bump `version`.
#[tiered_cached(name = "retyped")]
async fn as_order(id: u64) -> Order {
    NUMBER_RUNS.fetch_add(1, SeqCst);
    Order { id, lines: vec![] }
}

#[test]
fn a_row_of_another_type_under_the_same_name_is_a_miss_and_is_overwritten() {
    let _serial = serial();
    block_on(async {
        assert_eq!(as_text(3).await, "#3");
        assert_eq!(
            as_order(3).await.id,
            3,
            "the String row does not decode as an Order"
        );
        assert_eq!(NUMBER_RUNS.load(SeqCst), 1);
        tiered::clear_l1();
        assert_eq!(as_order(3).await.id, 3);
        assert_eq!(NUMBER_RUNS.load(SeqCst), 1, "the row now holds the Order");
        assert_eq!(TEXT_RUNS.load(SeqCst), 1);
    });
}
