//! L2 reads on the connections held for them: they go on while every other pooled connection
//! is busy. This binary installs its own runtime, with a pool of two (one held for reads).

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{block_on, query_i64, session, stats_of};
use tiered::tiered_cached;
use tiered_testkit::PgServer;

static RUNS: AtomicU64 = AtomicU64::new(0);

#[tiered_cached(name = "shared_read", write = "through")]
async fn echo(id: u64) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn reads_go_on_while_every_other_pooled_connection_waits_in_a_write() {
    let table = tiered_testkit::unique_name("t");
    block_on(
        tiered::Runtime::builder()
            .postgres_url(PgServer::shared().url())
            .table(&table)
            .max_connections(2)
            .l2_timeout(Duration::from_secs(10))
            .install(),
    )
    .expect("install the tiered runtime");
    block_on(async {
        assert_eq!(echo(1).await, 1);
        assert_eq!(echo(2).await, 2);
        tiered::clear_l1();

        // Writes to the table wait for this lock; reads do not.
        let locker = session(PgServer::shared().url()).await;
        locker
            .batch_execute(&format!("BEGIN; LOCK TABLE {table} IN SHARE MODE"))
            .await
            .expect("lock the cache table");
        // Two misses: one write waits for the lock on the pool's other connection, the next
        // waits for that connection.
        let writers = [tokio::spawn(echo(100)), tokio::spawn(echo(101))];
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiting_on_the_lock = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO {table} %'"
        );
        while query_i64(&waiting_on_the_lock).await[0] == 0 {
            assert!(Instant::now() < deadline, "no write ever waited for the lock");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let before = stats_of("shared_read");
        let reads = async {
            assert_eq!(echo(1).await, 1);
            assert_eq!(echo(2).await, 2);
        };
        let waited = tokio::time::timeout(Duration::from_secs(5), reads).await;
        locker.batch_execute("ROLLBACK").await.expect("unlock");
        waited.expect("the L2 reads waited for a pooled connection");
        let after = stats_of("shared_read");
        assert_eq!(after.l2_hits - before.l2_hits, 2, "{before:?} -> {after:?}");
        for writer in writers {
            writer.await.expect("a writer");
        }
        assert_eq!(RUNS.load(SeqCst), 4, "1, 2, 100 and 101 ran once each");
    });
}
