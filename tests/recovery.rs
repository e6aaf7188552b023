//! Recovering from an outage of PostgreSQL or of this process's connections to it: invalidations
//! made meanwhile are replayed, not lost; a reconnected listener evicts what it missed and
//! keeps the rest of L1; L2 serves again within about a second.
//!
//! This process (A) reaches the server through a proxy the tests cut; the other process (B,
//! this test binary running the ignored `other_process` test) connects directly.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::{block_on, query_i64, stats_of, OtherProcess, Proxied as Setup};
use tiered::{tiered_cached, with_outcome, Outcome};
use tiered_testkit::{PgServer, ProxyMode};

const URL_VAR: &str = "TIERED_RECOVERY_URL";
const TABLE_VAR: &str = "TIERED_RECOVERY_TABLE";
const OTHER: &str = "other-process: ";

/// The bound on recovery these tests assert, generous for a loaded machine: the listener tries
/// again at most a second after a failure, then one probe's round trip, one lookup and (for an
/// owed invalidation) one statement.
const RECOVERY: Duration = Duration::from_secs(3);

/// The source of truth the cached functions read: `<table>_truth (k, v)` on the server, each
/// time on a connection of its own (not through the proxy), so a body runs whatever the proxy
/// does and after the server restarted.
static TRUTH: OnceLock<(String, String)> = OnceLock::new();

async fn truth_sql(statement: impl FnOnce(&str) -> String) -> Vec<tokio_postgres::Row> {
    let (url, table) = TRUTH.get().expect("the truth's place is known");
    tiered_testkit::sql(url, &statement(table))
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

async fn connect_truth(url: &str, table: &str) {
    let _ = TRUTH.set((url.to_owned(), format!("{table}_truth")));
    truth_sql(|table| {
        format!("CREATE TABLE IF NOT EXISTS {table} (k bigint PRIMARY KEY, v bigint NOT NULL)")
    })
    .await;
}

/// The value of `k`: its row in the truth table, or `k` itself.
async fn truth(k: u64) -> u64 {
    let rows = truth_sql(|table| format!("SELECT v FROM {table} WHERE k = {k}")).await;
    rows.first().map_or(k, |row| row.get::<_, i64>(0) as u64)
}

async fn set_truth(k: u64, v: u64) {
    truth_sql(|table| format!("INSERT INTO {table} VALUES ({k}, {v}) ON CONFLICT (k) DO UPDATE SET v = {v}"))
        .await;
}

/// Body runs of `partitioned` in this process.
static PARTITIONED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// One function per test, so each test's rows can be told apart in the table.
#[tiered_cached(name = "stopped")]
async fn stopped(k: u64) -> u64 {
    truth(k).await
}

#[tiered_cached(name = "cut")]
async fn cut(k: u64) -> u64 {
    truth(k).await
}

#[tiered_cached(name = "partitioned")]
async fn partitioned(k: u64) -> u64 {
    PARTITIONED_RUNS.fetch_add(1, SeqCst);
    truth(k).await
}

#[tiered_cached(name = "breaker")]
async fn breaker(k: u64) -> u64 {
    truth(k).await
}

/// Body runs of `outage` in this process.
static OUTAGE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "outage", ttl = "1h", fail_safe = "1h")]
async fn outage(k: u64) -> u64 {
    OUTAGE_RUNS.fetch_add(1, SeqCst);
    truth(k).await
}

/// Body runs of `grouped` in this process.
static GROUPED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "grouped", tags = "[format!(\"group:{}\", k % 2)]")]
async fn grouped(k: u64) -> u64 {
    GROUPED_RUNS.fetch_add(1, SeqCst);
    truth(k).await
}

/// Calls the function `name` of this binary.
async fn call(name: &str, k: u64) -> u64 {
    match name {
        "stopped" => stopped(k).await,
        "cut" => cut(k).await,
        "partitioned" => partitioned(k).await,
        "outage" => outage(k).await,
        "grouped" => grouped(k).await,
        other => panic!("no function {other}"),
    }
}

async fn invalidate(name: &str, k: u64) {
    let done = match name {
        "stopped" => invalidate_stopped(k).await,
        "cut" => invalidate_cut(k).await,
        "partitioned" => invalidate_partitioned(k).await,
        "outage" => invalidate_outage(k).await,
        other => panic!("no function {other}"),
    };
    done.expect("l1_only invalidation");
}

#[test]
#[ignore = "the other process of the recovery tests, which start it themselves"]
fn other_process() {
    block_on(async {
        let (url, table) = common::install_from_env(URL_VAR, TABLE_VAR).await;
        connect_truth(&url, &table).await;
        println!("{OTHER}ready");
        for line in std::io::stdin().lines() {
            let line = line.expect("stdin");
            let answer = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["get", name, k] => {
                    let (v, outcome) = with_outcome(call(name, k.parse().expect("key"))).await;
                    format!("{v} {outcome}")
                }
                ["invalidate", name, k] => {
                    invalidate(name, k.parse().expect("key")).await;
                    "done".to_owned()
                }
                ["invalidate_tag", tag] => {
                    tiered::invalidate_tag(tag).await.expect("tag invalidated");
                    "done".to_owned()
                }
                _ => format!("unknown command {line:?}"),
            };
            println!("{OTHER}{answer}");
        }
    });
}

/// The runtime of this process, installed through the proxy.
fn setup() -> (MutexGuard<'static, ()>, &'static Setup) {
    let (guard, setup) = Setup::shared(|builder| {
        builder
            .l2_timeout(Duration::from_millis(500))
            // No L1 entry is served while the listener is away: an L1 hit then says it is
            // back, and that its entry survived the reconnection.
            .max_stale_while_disconnected(Duration::ZERO)
            // Long enough that only the listener's return can close the breaker in time.
            .breaker_cooldown(Duration::from_secs(30), Duration::from_secs(60))
    });
    block_on(connect_truth(PgServer::shared().url(), &setup.table));
    (guard, setup)
}

impl Setup {
    fn other_process(&self) -> OtherProcess {
        let mut other = OtherProcess::start(
            "other_process",
            &[(URL_VAR, PgServer::shared().url()), (TABLE_VAR, &self.table)],
            OTHER,
        );
        assert_eq!(other.answer(), "ready");
        other
    }

    /// The function's rows in L2 that are tombstones, read directly from the server.
    async fn tombstones(&self, function: &str) -> i64 {
        query_i64(&format!(
            "SELECT count(*) FROM {} WHERE function = '{function}' AND value IS NULL",
            self.table
        ))
        .await[0]
    }
}

/// Waits until `done`, polled every 20 ms, says so; panics with `what` after `within`.
/// Returns how long it took.
async fn within(within: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Item 8 of issue 12, with L2 taken away by `away` and given back by `back`: this process
/// invalidates key 1 of `function` meanwhile (and returns `Ok`); once L2 is back, the
/// invalidation reaches L2 and the other process, which stops serving the old value.
async fn invalidated_while_away(setup: &Setup, function: &str, away: impl FnOnce(), back: impl FnOnce()) {
    let mut other = setup.other_process();
    set_truth(1, 10).await;
    assert_eq!(other.ask(&format!("get {function} 1")), "10 computed");
    assert_eq!(other.ask(&format!("get {function} 1")), "10 l1_hit");
    assert_eq!(call(function, 1).await, 10, "an L2 hit here");
    set_truth(1, 11).await;

    away();
    let before = stats_of(function);
    invalidate(function, 1).await;
    assert_eq!(
        stats_of(function).invalidations_queued,
        before.invalidations_queued + 1
    );

    back();
    within(RECOVERY, "the queued invalidation is replayed", async || {
        stats_of(function).invalidations_replayed > before.invalidations_replayed
    })
    .await;
    assert_eq!(setup.tombstones(function).await, 1, "the row is a tombstone");
    // A notice, or the other process's own reconnection, evicts it there.
    within(RECOVERY, "the other process serves the new value", async || {
        other.ask(&format!("get {function} 1")).starts_with("11 ")
    })
    .await;
    assert_eq!(other.ask(&format!("get {function} 1")), "11 l1_hit");
    assert_eq!(
        with_outcome(call(function, 1)).await,
        (11, Outcome::L2Hit),
        "as the other process stored it"
    );
}

#[test]
fn an_invalidation_made_while_the_server_is_down_is_replayed_once_it_is_back() {
    let (_serial, setup) = setup();
    let Some(server) = common::stoppable_server() else {
        return;
    };
    // A failure while it is stopped must not leave it stopped for the other tests.
    struct StartedAgain(&'static PgServer);
    impl Drop for StartedAgain {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = self.0.start_again();
            }
        }
    }
    let _started_again = StartedAgain(server);
    block_on(invalidated_while_away(
        setup,
        "stopped",
        || server.stop().expect("stop the server"),
        || server.start_again().expect("start the server again"),
    ));
}

#[test]
fn an_invalidation_made_while_cut_off_is_replayed_once_the_connections_are_back() {
    let (_serial, setup) = setup();
    block_on(invalidated_while_away(
        setup,
        "cut",
        || setup.proxy.set_mode(ProxyMode::Refuse),
        || setup.proxy.set_mode(ProxyMode::Pass),
    ));
}

/// Item 7 of issue 12: while this process is cut off, the other process invalidates key 1.
/// Once the listener is back, this process never serves key 1's old value, and still serves
/// keys 2 and 3 from L1 without running their bodies again.
#[test]
fn a_reconnected_listener_evicts_what_was_invalidated_meanwhile_and_keeps_the_rest() {
    let (_serial, setup) = setup();
    block_on(async {
        let mut other = setup.other_process();
        set_truth(1, 100).await;
        for k in 0..4 {
            partitioned(k).await;
        }
        assert_eq!(PARTITIONED_RUNS.load(SeqCst), 4);
        // Key 0 answers from L1 while the listener is connected (a test before may have
        // left it reconnecting).
        within(RECOVERY, "the listener is up", async || {
            with_outcome(partitioned(0)).await.1 == Outcome::L1Hit
        })
        .await;
        for k in 1..4 {
            assert_eq!(with_outcome(partitioned(k)).await.1, Outcome::L1Hit);
        }

        setup.proxy.set_mode(ProxyMode::Refuse);
        set_truth(1, 101).await;
        assert_eq!(other.ask("invalidate partitioned 1"), "done");
        assert_eq!(setup.tombstones("partitioned").await, 1);

        setup.proxy.set_mode(ProxyMode::Pass);
        // Key 0 answers from L1 again once the listener is back.
        let took = within(RECOVERY, "the listener is back", async || {
            with_outcome(partitioned(0)).await.1 == Outcome::L1Hit
        })
        .await;
        eprintln!("listener back {took:?} after the connections were");
        let runs = PARTITIONED_RUNS.load(SeqCst);
        for k in 2..4 {
            assert_eq!(
                with_outcome(partitioned(k)).await,
                (k, Outcome::L1Hit),
                "key {k} was kept"
            );
        }
        assert_eq!(partitioned(1).await, 101, "key 1's old value is never served");
        assert_eq!(PARTITIONED_RUNS.load(SeqCst), runs + 1, "only key 1 ran again");
        assert_eq!(with_outcome(partitioned(1)).await, (101, Outcome::L1Hit));
    });
}

/// Item 7 of issue 12: the breaker, opened by the outage with a 30 s cool-down, lets L2 serve
/// again within [`RECOVERY`] of the connections' return, as soon as the listener is back.
#[test]
fn the_breaker_closes_within_seconds_of_the_server_returning() {
    let (_serial, setup) = setup();
    block_on(async {
        assert_eq!(breaker(40).await, 40);
        setup.proxy.set_mode(ProxyMode::Refuse);
        let skipped = stats_of("breaker").short_circuited;
        within(Duration::from_secs(30), "the breaker opens", async || {
            tiered::clear_l1();
            breaker(40).await;
            stats_of("breaker").short_circuited > skipped
        })
        .await;

        setup.proxy.set_mode(ProxyMode::Pass);
        let took = within(RECOVERY, "L2 answers again", async || {
            tiered::clear_l1();
            with_outcome(breaker(40)).await.1 == Outcome::L2Hit
        })
        .await;
        eprintln!("L2 hit {took:?} after the connections were back");
    });
}

/// Item 7 of issue 12: with `fail_safe`, a server stopped for 10 s under load costs no caller
/// an error and runs no body for keys already cached (L1 keeps answering while no one can
/// reach the server), and L2 serves again within [`RECOVERY`] of the restart.
#[test]
fn with_fail_safe_a_stopped_server_costs_no_error_and_no_body_run_for_cached_keys() {
    let (_serial, setup) = setup();
    let Some(server) = common::stoppable_server() else {
        return;
    };
    block_on(async {
        // Keys no other test gives a truth of its own.
        for k in 100..120 {
            assert_eq!(outage(k).await, k);
        }
        let runs = OUTAGE_RUNS.load(SeqCst);
        server.stop().expect("stop the server");
        let until = Instant::now() + Duration::from_secs(10);
        let callers: Vec<_> = (0..4)
            .map(|caller| {
                tokio::spawn(async move {
                    let mut calls = 0u64;
                    while Instant::now() < until {
                        let k = 100 + (calls * 7 + caller) % 20;
                        // The body panics if it runs: its source of truth is down too.
                        assert_eq!(outage(k).await, k);
                        calls += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    calls
                })
            })
            .collect();
        let mut calls = 0;
        for caller in callers {
            calls += caller.await.expect("no caller failed");
        }
        server.start_again().expect("start the server again");
        assert_eq!(OUTAGE_RUNS.load(SeqCst), runs, "{calls} calls ran no body");
        let took = within(RECOVERY, "L2 answers again", async || {
            tiered::clear_l1();
            with_outcome(outage(103)).await.1 == Outcome::L2Hit
        })
        .await;
        eprintln!("{calls} calls in 10 s without the server; L2 hit {took:?} after the restart");
        assert_eq!(setup.tombstones("outage").await, 0);
    });
}

/// Item 7 of issue 12 with `fail_safe`, and the tags of issue 13: while this process is cut
/// off, the other process invalidates a key and a tag; once the listener is back, neither
/// old value is served here.
#[test]
fn after_a_partition_no_value_invalidated_meanwhile_is_served_fail_safe_or_tagged() {
    let (_serial, setup) = setup();
    block_on(async {
        let mut other = setup.other_process();
        set_truth(50, 500).await;
        set_truth(51, 510).await;
        set_truth(52, 520).await;
        assert_eq!(outage(50).await, 500);
        assert_eq!((grouped(51).await, grouped(52).await), (510, 520));
        within(RECOVERY, "the listener is up", async || {
            with_outcome(grouped(52)).await.1 == Outcome::L1Hit
        })
        .await;

        setup.proxy.set_mode(ProxyMode::Refuse);
        set_truth(50, 501).await;
        set_truth(51, 511).await;
        assert_eq!(other.ask("invalidate outage 50"), "done");
        assert_eq!(other.ask("invalidate_tag group:1"), "done");

        setup.proxy.set_mode(ProxyMode::Pass);
        within(RECOVERY, "the listener is back", async || {
            with_outcome(grouped(52)).await.1 == Outcome::L1Hit
        })
        .await;
        let runs = GROUPED_RUNS.load(SeqCst);
        assert_eq!(
            outage(50).await,
            501,
            "the invalidated key's old value is never served"
        );
        assert_eq!(
            grouped(51).await,
            511,
            "the invalidated tag's old value is never served"
        );
        assert_eq!(grouped(52).await, 520, "the other tag's entry is kept");
        assert_eq!(GROUPED_RUNS.load(SeqCst), runs + 1);
    });
}
