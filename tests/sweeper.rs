//! The sweeper deletes expired rows, old tombstones' neighbours and rows of invalidated epochs
//! in the background, and leaves live rows alone; with `l2_max_rows` it evicts a namespace's
//! oldest-written values.

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::{block_on, eventually, query_i64, stats_of};
use tiered::tiered_cached;
use tiered_testkit::PgServer;

/// One test at a time: each installs the runtime on a table of its own.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

#[tiered_cached(name = "short_lived", ttl = "200ms")]
async fn short_lived(k: u64) -> u64 {
    k
}

#[tiered_cached(name = "long_lived")]
async fn long_lived(k: u64) -> u64 {
    k
}

#[tiered_cached(name = "superseded")]
async fn superseded(k: u64) -> u64 {
    k
}

#[tiered_cached(name = "bounded")]
async fn bounded(k: u64) -> u64 {
    k
}

#[test]
fn the_sweeper_deletes_expired_and_dead_epoch_rows_and_keeps_live_ones() {
    let _serial = serial();
    let table = tiered_testkit::unique_name("t");
    block_on(async {
        tiered::Runtime::builder()
            .postgres_url(PgServer::shared().url())
            .table(&table)
            .sweep_interval(Duration::from_millis(100))
            .install()
            .await
            .expect("install");
        for k in 0..50 {
            short_lived(k).await;
            long_lived(k).await;
            superseded(k).await;
        }
        invalidate_all_superseded().await.unwrap();
        let count = |function: &'static str| {
            let table = table.clone();
            async move {
                query_i64(&format!(
                    "SELECT count(*) FROM {table} WHERE function = '{function}'"
                ))
                .await[0]
            }
        };
        eventually("expired and dead-epoch rows were not swept", || async {
            count("short_lived").await + count("superseded").await == 0
        })
        .await;
        assert_eq!(count("long_lived").await, 50, "live rows are kept");
        tiered::shutdown().await;
    });
}

#[test]
fn l2_max_rows_evicts_the_oldest_written_values_of_the_namespace_only() {
    const KEEP: u64 = 50;
    let _serial = serial();
    let table = tiered_testkit::unique_name("t");
    block_on(async {
        tiered::Runtime::builder()
            .postgres_url(PgServer::shared().url())
            .table(&table)
            .namespace("bounded")
            .l2_max_rows(KEEP)
            .sweep_interval(Duration::from_millis(50))
            .install()
            .await
            .expect("install");
        let evictions_before = tiered::l2_evictions();
        // Another namespace's rows, older than all of ours: not ours to evict.
        query_i64(&format!(
            "WITH i AS (INSERT INTO {table} (id, namespace, function, version, value, generation, epoch) \
             SELECT sha256(int8send(n)), 'other', 'f', 1, '\\x00', 0, 0 FROM generate_series(1, 100) n \
             RETURNING 1) SELECT count(*) FROM i"
        ))
        .await;
        // The oldest row of the namespace, a tombstone: left to expire, never evicted.
        invalidate_bounded(0).await.unwrap();
        for k in 1..=3 * KEEP {
            bounded(k).await;
        }
        let rows = |filter: &'static str| {
            let table = table.clone();
            async move { query_i64(&format!("SELECT count(*) FROM {table} WHERE {filter}")).await[0] }
        };
        // The count follows each batch's commit: wait for both.
        eventually("the namespace was not brought down to l2_max_rows", || async {
            rows("namespace = 'bounded' AND value IS NOT NULL").await <= KEEP as i64
                && tiered::l2_evictions() - evictions_before >= 2 * KEEP
        })
        .await;
        assert_eq!(
            rows("namespace = 'bounded' AND value IS NOT NULL").await,
            KEEP as i64
        );
        assert_eq!(
            rows("namespace = 'bounded' AND value IS NULL").await,
            1,
            "the tombstone is kept"
        );
        assert_eq!(
            rows("namespace = 'other'").await,
            100,
            "another namespace is untouched"
        );
        assert_eq!(tiered::l2_evictions() - evictions_before, 2 * KEEP);

        // The newest KEEP are answered from L2; the oldest were evicted and run again.
        tiered::clear_l1();
        let before = stats_of("bounded");
        for k in 2 * KEEP + 1..=3 * KEEP {
            bounded(k).await;
        }
        let after_newest = stats_of("bounded");
        assert_eq!(after_newest.l2_hits - before.l2_hits, KEEP);
        assert_eq!(after_newest.misses, before.misses);
        for k in 1..=KEEP {
            bounded(k).await;
        }
        assert_eq!(stats_of("bounded").misses - after_newest.misses, KEEP);
        tiered::shutdown().await;
    });
}
