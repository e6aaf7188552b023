//! The two tiers against a real PostgreSQL: hits, expiry, invalidation, refresh, keys, methods.
//! Every test counts body executions and reads the table back with SQL.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{block_on, installed_table, joined_then, query_i64, serial, session, stats_of};
use serde::{Deserialize, Serialize};
use tiered::tiered_cached;
use tokio::sync::{Notify, Semaphore};

/// Rows of `function` in the cache table holding a value (tombstones excluded).
async fn live_rows(function: &str) -> i64 {
    let table = installed_table();
    query_i64(&format!(
        "SELECT count(*) FROM {table} WHERE function = '{function}' AND value IS NOT NULL"
    ))
    .await[0]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

static L1_HIT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "l1_hit")]
async fn l1_hit(id: u64) -> Profile {
    L1_HIT_RUNS.fetch_add(1, SeqCst);
    Profile {
        id,
        name: format!("user {id}"),
    }
}

#[test]
fn a_repeated_call_is_an_l1_hit_and_runs_no_body() {
    let _serial = serial();
    block_on(async {
        let first = l1_hit(7).await;
        assert_eq!(l1_hit(7).await, first);
        assert_eq!(L1_HIT_RUNS.load(SeqCst), 1);
        let stats = stats_of("l1_hit");
        assert_eq!((stats.l1_hits, stats.l2_hits, stats.misses), (1, 0, 1));
        assert_eq!(
            live_rows("l1_hit").await,
            1,
            "the miss wrote its row through to L2"
        );
    });
}

static L2_HIT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "l2_hit")]
async fn l2_hit(id: u64) -> Profile {
    L2_HIT_RUNS.fetch_add(1, SeqCst);
    Profile {
        id,
        name: "from the body".into(),
    }
}

#[test]
fn after_l1_is_cleared_the_value_comes_from_l2_without_running_the_body() {
    let _serial = serial();
    block_on(async {
        let computed = l2_hit(1).await;
        tiered::clear_l1();
        assert_eq!(l2_hit(1).await, computed);
        assert_eq!(L2_HIT_RUNS.load(SeqCst), 1);
        assert_eq!(stats_of("l2_hit").l2_hits, 1);
        // The L2 hit filled L1 again.
        assert_eq!(l2_hit(1).await, computed);
        assert_eq!(stats_of("l2_hit").l1_hits, 1);
    });
}

static L1_TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "l1_ttl", l1_ttl = "200ms", l2_ttl = "1h")]
async fn short_l1(id: u64) -> u64 {
    L1_TTL_RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn an_expired_l1_entry_is_answered_from_l2() {
    let _serial = serial();
    block_on(async {
        short_l1(1).await;
        tokio::time::sleep(Duration::from_millis(400)).await; // outlive the 200 ms L1 TTL
        short_l1(1).await;
        assert_eq!(L1_TTL_RUNS.load(SeqCst), 1);
        assert_eq!(stats_of("l1_ttl").l2_hits, 1);
    });
}

static TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "both_ttl", ttl = "300ms")]
async fn short_both(id: u64) -> usize {
    TTL_RUNS.fetch_add(1, SeqCst) + id as usize
}

#[test]
fn an_entry_expired_in_both_tiers_is_recomputed_and_its_row_rewritten() {
    let _serial = serial();
    block_on(async {
        assert_eq!(short_both(0).await, 0);
        tokio::time::sleep(Duration::from_millis(500)).await; // outlive the 300 ms TTL
        assert_eq!(short_both(0).await, 1, "expired in L1 and L2: recomputed");
        assert_eq!(TTL_RUNS.load(SeqCst), 2);
        let table = installed_table();
        let live = query_i64(&format!(
            "SELECT count(*) FROM {table} WHERE function = 'both_ttl' AND expires_at > now() \
             AND expires_at < now() + interval '1 second'"
        ))
        .await;
        assert_eq!(live, [1], "the row was rewritten with a fresh expiry");
    });
}

static L2_BOUND_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "l2_bound", l1_ttl = "1h", l2_ttl = "300ms")]
async fn l2_bound(id: u64) -> u64 {
    L2_BOUND_RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn an_l1_entry_filled_from_l2_dies_with_its_row() {
    let _serial = serial();
    block_on(async {
        l2_bound(1).await;
        tiered::clear_l1();
        l2_bound(1).await; // an L2 hit: L1 now holds the row's remaining lifetime, not 1 h
        tokio::time::sleep(Duration::from_millis(500)).await;
        l2_bound(1).await;
        assert_eq!(L2_BOUND_RUNS.load(SeqCst), 2);
    });
}

static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "flaky")]
async fn flaky(id: u64) -> Result<u64, String> {
    if FLAKY_RUNS.fetch_add(1, SeqCst) == 0 {
        Err("origin down".to_owned())
    } else {
        Ok(id)
    }
}

#[test]
fn an_err_is_returned_but_never_cached() {
    let _serial = serial();
    block_on(async {
        assert_eq!(flaky(3).await, Err("origin down".to_owned()));
        assert_eq!(live_rows("flaky").await, 0);
        assert_eq!(flaky(3).await, Ok(3));
        assert_eq!(flaky(3).await, Ok(3));
        assert_eq!(FLAKY_RUNS.load(SeqCst), 2);
        assert_eq!(live_rows("flaky").await, 1);
    });
}

static NOT_FOUND_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "not_found")]
async fn not_found(id: u64) -> Result<Option<Profile>, String> {
    NOT_FOUND_RUNS.fetch_add(1, SeqCst);
    Ok((id != 404).then(|| Profile {
        id,
        name: format!("user {id}"),
    }))
}

#[test]
fn an_ok_none_is_a_negative_answer_cached_in_both_tiers() {
    let _serial = serial();
    block_on(async {
        assert_eq!(not_found(404).await, Ok(None));
        assert_eq!(not_found(404).await, Ok(None));
        assert_eq!(NOT_FOUND_RUNS.load(SeqCst), 1);
        assert_eq!(
            live_rows("not_found").await,
            1,
            "the `None` is a row with a value"
        );
        tiered::clear_l1();
        assert_eq!(not_found(404).await, Ok(None));
        assert_eq!(NOT_FOUND_RUNS.load(SeqCst), 1);
        assert_eq!(stats_of("not_found").l2_hits, 1);
    });
}
static INVALIDATED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "invalidated")]
async fn invalidated(id: u64) -> usize {
    INVALIDATED_RUNS.fetch_add(1, SeqCst) + id as usize
}

#[test]
fn invalidate_removes_the_entry_from_both_tiers() {
    let _serial = serial();
    block_on(async {
        assert_eq!(invalidated(0).await, 0);
        assert_eq!(invalidated(1).await, 2);
        invalidate_invalidated(0).await.unwrap();
        assert_eq!(
            live_rows("invalidated").await,
            1,
            "key 0 is a tombstone, key 1 untouched"
        );
        assert_eq!(invalidated(0).await, 2, "recomputed");
        assert_eq!(invalidated(1).await, 2, "still cached");
        assert_eq!(INVALIDATED_RUNS.load(SeqCst), 3);
        tiered::clear_l1();
        assert_eq!(invalidated(0).await, 2, "L2 holds the recomputed value");
        assert_eq!(INVALIDATED_RUNS.load(SeqCst), 3);
        assert_eq!(stats_of("invalidated").invalidations, 1);
    });
}

static ALL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "invalidated_all")]
async fn everything(id: u64) -> usize {
    ALL_RUNS.fetch_add(1, SeqCst) + id as usize
}

#[test]
fn invalidate_all_drops_every_entry_of_the_function_in_both_tiers() {
    let _serial = serial();
    block_on(async {
        everything(0).await;
        everything(10).await;
        invalidate_all_everything().await.unwrap();
        let table = installed_table();
        let epochs = query_i64(&format!(
            "SELECT epoch FROM {table}_epochs WHERE function = 'invalidated_all'"
        ))
        .await;
        assert_eq!(epochs, [1], "one epoch bump, whatever the number of rows");
        assert_eq!(everything(0).await, 2);
        assert_eq!(everything(10).await, 13);
        tiered::clear_l1();
        assert_eq!(everything(0).await, 2, "the new rows are served from L2");
        assert_eq!(ALL_RUNS.load(SeqCst), 4);
    });
}

static REFRESH_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "refreshed")]
async fn refreshed(id: u64) -> usize {
    REFRESH_RUNS.fetch_add(1, SeqCst) + id as usize
}

#[test]
fn refresh_runs_the_body_and_stores_the_new_value_in_both_tiers() {
    let _serial = serial();
    block_on(async {
        assert_eq!(refreshed(0).await, 0);
        assert_eq!(refresh_refreshed(0).await, 1);
        assert_eq!(refreshed(0).await, 1, "L1 holds the refreshed value");
        tiered::clear_l1();
        assert_eq!(refreshed(0).await, 1, "L2 holds the refreshed value");
        assert_eq!(REFRESH_RUNS.load(SeqCst), 2);
        assert_eq!(live_rows("refreshed").await, 1);
    });
}

#[tiered_cached(name = "double")]
async fn double(x: u64) -> u64 {
    x * 2
}

#[tiered_cached(name = "triple")]
async fn triple(x: u64) -> u64 {
    x * 3
}

#[test]
fn two_functions_with_equal_arguments_never_share_an_entry() {
    let _serial = serial();
    block_on(async {
        assert_eq!((double(5).await, triple(5).await), (10, 15));
        tiered::clear_l1();
        assert_eq!((double(5).await, triple(5).await), (10, 15));
        assert_eq!(stats_of("double").l2_hits + stats_of("triple").l2_hits, 2);
        let table = installed_table();
        let ids = query_i64(&format!(
            "SELECT count(DISTINCT id) FROM {table} WHERE function IN ('double', 'triple')"
        ))
        .await;
        assert_eq!(ids, [2]);
    });
}

static LENGTH_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "length")]
async fn length(text: &str) -> (usize, char) {
    LENGTH_RUNS.fetch_add(1, SeqCst);
    (text.len(), text.chars().last().unwrap_or(' '))
}

#[test]
fn one_mebibyte_keys_that_differ_in_their_last_byte_are_distinct_entries() {
    let _serial = serial();
    block_on(async {
        let a = "a".repeat(1 << 20);
        let mut b = a.clone();
        b.pop();
        b.push('b');
        assert_eq!(length(&a).await, (1 << 20, 'a'));
        assert_eq!(length(&b).await, (1 << 20, 'b'));
        tiered::clear_l1();
        assert_eq!(length(&a).await, (1 << 20, 'a'));
        assert_eq!(length(&b).await, (1 << 20, 'b'));
        assert_eq!(LENGTH_RUNS.load(SeqCst), 2);
        assert_eq!(stats_of("length").l2_hits, 2);
        assert_eq!(live_rows("length").await, 2);
    });
}

struct Repo {
    prefix: &'static str,
    runs: AtomicUsize,
}

impl Repo {
    #[tiered_cached]
    async fn label(&self, id: u64) -> String {
        self.runs.fetch_add(1, SeqCst);
        format!("{}{id}", self.prefix)
    }
}

#[test]
fn methods_are_cached_and_their_helpers_are_associated_functions() {
    let _serial = serial();
    block_on(async {
        let repo = Repo {
            prefix: "#",
            runs: AtomicUsize::new(0),
        };
        assert_eq!(repo.label(1).await, "#1");
        assert_eq!(repo.label(1).await, "#1");
        assert_eq!(repo.runs.load(SeqCst), 1);
        Repo::invalidate_label(1).await.unwrap();
        assert_eq!(repo.label(1).await, "#1");
        assert_eq!(repo.runs.load(SeqCst), 2);
        assert_eq!(repo.refresh_label(1).await, "#1");
        assert_eq!(repo.runs.load(SeqCst), 3);
        Repo::invalidate_all_label().await.unwrap();
        // Module, type identifier and method: what the source says, nothing the compiler
        // chooses, so the name (hashed into every row id) survives a compiler upgrade.
        assert!(
            tiered::stats().contains_key("caching::Repo::label"),
            "a method's cache is named after its module and type: {:?}",
            tiered::stats().keys()
        );
    });
}

static DESCRIBE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "describe")]
async fn describe(name: &str, bytes: &[u8], profile: &Profile) -> String {
    DESCRIBE_RUNS.fetch_add(1, SeqCst);
    format!("{name}:{}:{}", bytes.len(), profile.name)
}

#[test]
fn reference_arguments_are_keyed_by_their_values() {
    let _serial = serial();
    block_on(async {
        let profile = Profile {
            id: 1,
            name: "ann".into(),
        };
        assert_eq!(describe("a", &[1, 2], &profile).await, "a:2:ann");
        assert_eq!(
            describe(&String::from("a"), &Vec::from([1, 2]), &profile.clone()).await,
            "a:2:ann"
        );
        assert_eq!(DESCRIBE_RUNS.load(SeqCst), 1);
        let other = Profile {
            id: 1,
            name: "bob".into(),
        };
        assert_eq!(describe("a", &[1, 2], &other).await, "a:2:bob");
        assert_eq!(DESCRIBE_RUNS.load(SeqCst), 2);
    });
}

static CORRUPT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "corrupt")]
async fn corruptible(id: u64) -> Profile {
    CORRUPT_RUNS.fetch_add(1, SeqCst);
    Profile {
        id,
        name: "fresh".into(),
    }
}

#[test]
fn an_undecodable_row_is_a_miss_that_is_recomputed_and_overwritten() {
    let _serial = serial();
    block_on(async {
        corruptible(1).await;
        let table = installed_table();
        for garbage in [
            "'\\xdeadbeef'::bytea",
            "'\\x01'::bytea",
            "substring(value from 1 for 5)",
        ] {
            tiered_testkit::sql(
                tiered_testkit::PgServer::shared().url(),
                &format!("UPDATE {table} SET value = {garbage} WHERE function = 'corrupt'"),
            )
            .await
            .unwrap();
            tiered::clear_l1();
            assert_eq!(corruptible(1).await.name, "fresh");
        }
        assert_eq!(CORRUPT_RUNS.load(SeqCst), 4, "each corrupt row was a miss");
        tiered::clear_l1();
        assert_eq!(corruptible(1).await.name, "fresh");
        assert_eq!(
            CORRUPT_RUNS.load(SeqCst),
            4,
            "the row was overwritten with a readable one"
        );
    });
}

#[tiered_cached(name = "behind", write = "behind")]
async fn written_behind(id: u64) -> u64 {
    id
}

#[test]
fn write_behind_stores_the_row_after_the_call_returned() {
    let _serial = serial();
    block_on(async {
        // Another session locks the table against writes: the call must return while its
        // write waits for that lock, and the write must land once the lock is released.
        let table = installed_table();
        let locker = session(tiered_testkit::PgServer::shared().url()).await;
        locker
            .batch_execute(&format!("BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE"))
            .await
            .unwrap();
        assert_eq!(written_behind(4).await, 4);
        let waiting = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE 'INSERT INTO {table} %'"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while query_i64(&waiting).await[0] == 0 {
            assert!(Instant::now() < deadline, "no write waits for the lock");
            tokio::task::yield_now().await;
        }
        assert_eq!(live_rows("behind").await, 0);
        locker.batch_execute("COMMIT").await.unwrap();
        while live_rows("behind").await == 0 {
            assert!(Instant::now() < deadline, "the write-behind row never appeared");
            tokio::task::yield_now().await;
        }
        tiered::clear_l1();
        assert_eq!(written_behind(4).await, 4);
        assert_eq!(stats_of("behind").l2_hits, 1);
    });
}

static COALESCED_RUNS: AtomicUsize = AtomicUsize::new(0);
/// A permit per caller of `slow` that has joined the flight.
static COALESCED_JOINED: Semaphore = Semaphore::const_new(0);

#[tiered_cached(name = "coalesced")]
async fn slow(id: u64) -> u64 {
    COALESCED_RUNS.fetch_add(1, SeqCst);
    // Held until every caller has joined, so none can come late and hit L1.
    let _ = COALESCED_JOINED.acquire_many(100).await;
    id
}

#[test]
fn concurrent_callers_of_one_cold_key_share_one_body_execution() {
    let _serial = serial();
    block_on(async {
        let callers: Vec<_> = (0..100)
            .map(|_| tokio::spawn(joined_then(slow(9), &COALESCED_JOINED)))
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 9);
        }
        assert_eq!(COALESCED_RUNS.load(SeqCst), 1);
        let stats = stats_of("coalesced");
        assert_eq!((stats.misses, stats.coalesced, stats.l1_hits), (1, 99, 0));
    });
}

static STALE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "stale", key = "()")]
async fn gated(gate: Arc<(Notify, Notify)>) -> usize {
    let run = STALE_RUNS.fetch_add(1, SeqCst);
    if run == 0 {
        gate.0.notify_one(); // started
        gate.1.notified().await; // until the invalidation has returned
    }
    run
}

#[test]
fn a_computation_overtaken_by_an_invalidation_stores_nothing() {
    let _serial = serial();
    block_on(async {
        let gate = Arc::new((Notify::new(), Notify::new()));
        let first = tokio::spawn(gated(gate.clone()));
        gate.0.notified().await;
        invalidate_gated(gate.clone()).await.unwrap();
        gate.1.notify_one();
        assert_eq!(first.await.unwrap(), 0, "the caller still gets its own result");
        assert_eq!(live_rows("stale").await, 0, "but L2 kept the tombstone");
        assert_eq!(gated(gate.clone()).await, 1, "and L1 did not keep it either");
    });
}

static LOCAL_STALE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(backend = "none", key = "()")]
async fn gated_locally(gate: Arc<(Notify, Notify)>) -> usize {
    let run = LOCAL_STALE_RUNS.fetch_add(1, SeqCst);
    if run == 0 {
        gate.0.notify_one(); // started
        gate.1.notified().await; // until the invalidation has returned
    }
    run
}

#[test]
fn without_l2_a_computation_overtaken_by_an_invalidation_stores_nothing_in_l1() {
    let _serial = serial();
    block_on(async {
        let gate = Arc::new((Notify::new(), Notify::new()));
        let first = tokio::spawn(gated_locally(gate.clone()));
        gate.0.notified().await;
        invalidate_gated_locally(gate.clone()).await.unwrap();
        gate.1.notify_one();
        assert_eq!(first.await.unwrap(), 0);
        assert_eq!(
            gated_locally(gate.clone()).await,
            1,
            "the overtaken result was not cached"
        );
    });
}

static PLAIN_READ_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "plain_read", l1_capacity = 1, write = "through")]
async fn plain_read(id: u64) -> u64 {
    PLAIN_READ_RUNS.fetch_add(1, SeqCst);
    id * 10
}

/// Once the process knows the function's invalidate-all epoch (its first read returns it, and
/// notices keep it current), an L2 read is a primary-key lookup of the row alone: it does not
/// wait for the epochs table, which another session holds locked here.
#[test]
fn once_the_epoch_is_known_an_l2_read_is_a_primary_key_lookup_of_the_row_alone() {
    let _serial = serial();
    let table = installed_table();
    block_on(async {
        for id in 1..=8 {
            assert_eq!(plain_read(id).await, id * 10);
        }
        let before = stats_of("plain_read");
        let locker = session(tiered_testkit::PgServer::shared().url()).await;
        locker
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table}_epochs IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .expect("lock the epochs table");
        // L1 holds one entry: keys 1 to 7 at least are read from L2. A read that joined the
        // epochs table would wait for the lock until the L2 timeout (5 s in these tests).
        let reads = async {
            for id in 1..=8 {
                assert_eq!(plain_read(id).await, id * 10);
            }
        };
        let waited = tokio::time::timeout(Duration::from_secs(3), reads).await;
        locker.batch_execute("ROLLBACK").await.expect("unlock");
        waited.expect("the L2 reads waited for the locked epochs table");
        let after = stats_of("plain_read");
        assert_eq!(PLAIN_READ_RUNS.load(SeqCst), 8, "no body ran again");
        assert!(after.l2_hits - before.l2_hits >= 7, "{before:?} -> {after:?}");
        assert_eq!(after.backend_errors, before.backend_errors);
    });
}
