//! The sweeper deletes expired rows, old tombstones' neighbours and rows of invalidated epochs
//! in the background, and leaves live rows alone.

mod common;

use std::time::{Duration, Instant};

use common::{block_on, query_i64};
use tiered::tiered_cached;
use tiered_testkit::PgServer;

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

#[test]
fn the_sweeper_deletes_expired_and_dead_epoch_rows_and_keeps_live_ones() {
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
        let deadline = Instant::now() + Duration::from_secs(15);
        while count("short_lived").await + count("superseded").await > 0 {
            assert!(
                Instant::now() < deadline,
                "expired and dead-epoch rows were not swept"
            );
            tokio::time::sleep(Duration::from_millis(50)).await; // polling the table for the sweeper's work
        }
        assert_eq!(count("long_lived").await, 50, "live rows are kept");
        tiered::shutdown().await;
    });
}
