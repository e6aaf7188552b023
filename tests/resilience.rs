//! `fail_safe`, `timeout`, `hard_timeout`, `eager_refresh` and `cache_none` against a real
//! PostgreSQL. TTLs here are real (L2 expiry is the server's clock), so the tests wait past a
//! one-second TTL; every other wait is on counts or on the value coming back.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{block_on, installed_table, query_i64, serial, stats_of};
use tiered::{tiered_cached, TimedOut};

#[derive(Debug, Clone, PartialEq)]
enum AppError {
    Down,
    TimedOut(TimedOut),
}

impl From<TimedOut> for AppError {
    fn from(err: TimedOut) -> Self {
        AppError::TimedOut(err)
    }
}

/// A controllable origin: how often it ran, whether it fails, how long it takes.
struct Origin {
    runs: AtomicUsize,
    failing: AtomicBool,
    slow: AtomicBool,
}

impl Origin {
    const fn new() -> Self {
        Origin {
            runs: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            slow: AtomicBool::new(false),
        }
    }

    async fn answer(&self, value: u64, delay: Duration) -> Result<u64, AppError> {
        self.runs.fetch_add(1, SeqCst);
        if self.slow.load(SeqCst) {
            tokio::time::sleep(delay).await;
        }
        match self.failing.load(SeqCst) {
            true => Err(AppError::Down),
            false => Ok(value),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(SeqCst)
    }
}

/// Seconds left before the row of `function` leaves the table.
async fn row_lifetime(function: &str) -> i64 {
    let table = installed_table();
    query_i64(&format!(
        "SELECT EXTRACT(EPOCH FROM expires_at - now())::int8 FROM {table} WHERE function = '{function}'"
    ))
    .await[0]
}

/// Past a one-second TTL, in both tiers (L2's is the server's clock).
async fn past_ttl() {
    tokio::time::sleep(Duration::from_millis(1_100)).await;
}

static PRICE: Origin = Origin::new();

#[tiered_cached(name = "price", ttl = "1s", fail_safe = "1h", fail_safe_throttle = "1h")]
async fn price(id: u64) -> Result<u64, AppError> {
    PRICE.answer(id * 10, Duration::ZERO).await
}

#[test]
fn a_failing_body_is_answered_by_the_stale_value_until_it_is_invalidated() {
    let _serial = serial();
    block_on(async {
        assert_eq!(price(1).await, Ok(10));
        assert!(
            row_lifetime("price").await > 3_500,
            "the row is kept for fail_safe past its TTL"
        );
        past_ttl().await;
        PRICE.failing.store(true, SeqCst);
        assert_eq!(price(1).await, Ok(10), "stale, from L1");
        assert_eq!(price(1).await, Ok(10));
        assert_eq!(PRICE.runs(), 2, "the body is not tried again within the throttle");
        assert_eq!(stats_of("price").stale_served, 1);

        // Another process has only L2: clear this one's L1.
        tiered::clear_l1();
        assert_eq!(price(1).await, Ok(10), "stale, from L2");
        assert_eq!(stats_of("price").stale_served, 2);

        invalidate_price(1).await.expect("invalidated");
        assert_eq!(
            price(1).await,
            Err(AppError::Down),
            "an invalidated value never answers"
        );
        PRICE.failing.store(false, SeqCst);
    });
}

static QUOTE: Origin = Origin::new();

#[tiered_cached(
    name = "quote",
    ttl = "1s",
    fail_safe = "1h",
    timeout = "100ms",
    hard_timeout = "30s"
)]
async fn quote(id: u64) -> Result<u64, AppError> {
    QUOTE
        .answer(id + QUOTE.runs() as u64, Duration::from_secs(2))
        .await
}

#[test]
fn past_the_soft_timeout_the_stale_value_answers_and_the_late_value_is_stored() {
    let _serial = serial();
    block_on(async {
        let first = quote(1).await.expect("computed");
        past_ttl().await;
        QUOTE.slow.store(true, SeqCst);
        let started = Instant::now();
        assert_eq!(quote(1).await, Ok(first), "the stale value");
        let waited = started.elapsed();
        println!("a stale value answered past the 100 ms soft timeout in {waited:?}");
        assert!(
            waited < Duration::from_secs(1),
            "answered in {waited:?}, the body takes 2 s"
        );
        assert_eq!(stats_of("quote").stale_served, 1);
        QUOTE.slow.store(false, SeqCst);
        // The body finishes in the background and stores its value, which calls then see.
        let deadline = Instant::now() + Duration::from_secs(30);
        while quote(1).await == Ok(first) {
            assert!(Instant::now() < deadline, "the late value was never stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(QUOTE.runs(), 2, "the late value, not a new run");
    });
}

static REPORT: Origin = Origin::new();

#[tiered_cached(name = "report", ttl = "1h", hard_timeout = "200ms")]
async fn report(id: u64) -> Result<u64, AppError> {
    REPORT.answer(id, Duration::from_secs(1)).await
}

#[test]
fn past_the_hard_timeout_a_caller_without_a_stale_value_gets_timed_out_and_the_value_is_stored() {
    let _serial = serial();
    block_on(async {
        REPORT.slow.store(true, SeqCst);
        let started = Instant::now();
        let answer = report(5).await;
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(answer, Err(AppError::TimedOut(TimedOut { .. }))),
            "{answer:?}"
        );
        REPORT.slow.store(false, SeqCst);
        let deadline = Instant::now() + Duration::from_secs(30);
        while query_i64(&format!(
            "SELECT count(*) FROM {} WHERE function = 'report' AND value IS NOT NULL",
            installed_table()
        ))
        .await[0]
            == 0
        {
            assert!(Instant::now() < deadline, "the late value was never stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(report(5).await, Ok(5));
        assert_eq!(REPORT.runs(), 1, "the stored late value answers");
    });
}

static RATE: Origin = Origin::new();

#[tiered_cached(name = "rate", ttl = "2s", eager_refresh = 0.5)]
async fn rate(id: u64) -> u64 {
    RATE.answer(id, Duration::from_millis(500))
        .await
        .unwrap_or_default()
}

#[test]
fn a_hot_key_is_refreshed_about_once_a_second_and_no_caller_waits_for_the_body() {
    let _serial = serial();
    block_on(async {
        RATE.slow.store(true, SeqCst);
        rate(1).await;
        let mut slowest = Duration::ZERO;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let call = Instant::now();
            rate(1).await;
            slowest = slowest.max(call.elapsed());
        }
        // Refreshed when past half its 2 s TTL, i.e. about every second, 0.5 s per body.
        let runs = RATE.runs();
        assert!((3..=8).contains(&runs), "{runs} body runs in 5 s");
        assert!(
            slowest < Duration::from_millis(250),
            "a call waited {slowest:?}; the body takes 500 ms"
        );
        assert_eq!(stats_of("rate").eager_refreshes as usize, runs - 1);
    });
}

static FOUND: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(name = "lookup", cache_none = false)]
async fn lookup(id: u64) -> Option<u64> {
    FOUND.fetch_add(1, SeqCst);
    (id % 2 == 0).then_some(id)
}

#[test]
fn with_cache_none_false_none_is_not_stored_and_some_is() {
    let _serial = serial();
    block_on(async {
        assert_eq!(lookup(1).await, None);
        assert_eq!(lookup(1).await, None);
        assert_eq!(FOUND.load(SeqCst), 2, "None was not cached");
        assert_eq!(lookup(2).await, Some(2));
        assert_eq!(lookup(2).await, Some(2));
        assert_eq!(FOUND.load(SeqCst), 3, "Some was");
        let table = installed_table();
        let rows = query_i64(&format!("SELECT count(*) FROM {table} WHERE function = 'lookup'")).await[0];
        assert_eq!(rows, 1, "only Some(2) has a row");
    });
}
