//! L2 against plain PostgreSQL, on one server: a hit (L1 missed) against a raw prepared
//! `SELECT` of the same row through the same pool; hit throughput of many tasks against
//! `pgbench -S -M prepared` with as many connections; and the miss path (`write = "through"`
//! and `"behind"`) against the body's own time. Latencies are timed call by call, alternating
//! with their baselines, rather than by criterion: round trips on a shared machine drift
//! between two criterion runs more than the differences measured here.
//!
//! The server is `$DATABASE_URL` if set, else a throwaway cluster (`tiered_testkit::PgServer`).

#[path = "shared/l2_calls.rs"]
mod l2_calls;
#[path = "shared/profile.rs"]
mod profile;
#[path = "shared/results.rs"]
mod results;

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use l2_calls::{alternating, boxed, profile_from_l2, raw_select, row_ids, RawRows, Server};
use profile::{hot_id, Profile, HOT_KEYS};
use serde_json::json;
use tiered::deadpool_postgres::Pool;
use tiered::tiered_cached;

/// Pool size of the runtime, and pgbench's client count.
const CONNECTIONS: usize = 8;
/// Tasks issuing L2 hits together in the throughput run.
const TASKS: usize = 64;
const THROUGHPUT_RUN: Duration = Duration::from_secs(5);
/// What the body of the miss-path functions costs by itself.
const BODY: Duration = Duration::from_micros(100);
/// The untimed pause after each measured miss, in which its background work finishes.
const SETTLE: Duration = Duration::from_micros(500);
/// Calls of each kind in the latency measurements.
const L2_HIT_ROUNDS: usize = 20_000;
const MISS_ROUNDS: usize = 2_000;

/// Spins for [`BODY`]: a body whose cost does not depend on the scheduler.
fn body(id: u64) -> Profile {
    let start = Instant::now();
    while start.elapsed() < BODY {
        std::hint::spin_loop();
    }
    Profile::new(id)
}

#[tiered_cached(write = "through")]
async fn computed_write_through(id: u64) -> Profile {
    body(id)
}

#[tiered_cached(write = "behind")]
async fn computed_write_behind(id: u64) -> Profile {
    body(id)
}

/// Keys never used before, so every call of a miss-path function is a miss in both tiers.
fn fresh_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1 << 40);
    NEXT.fetch_add(1, Relaxed)
}

/// One miss at a time, each with a fresh key, against the body alone and against the body
/// followed by one raw `SELECT` (the floor of a miss). The untimed [`SETTLE`] after each call
/// lets a write-behind finish off the clock, as between the calls of a caller that is not
/// saturating the machine (whose runtime's idle workers park meanwhile, as they do here).
fn miss_path(runtime: &tokio::runtime::Runtime, pool: &Pool, rows: &RawRows) -> serde_json::Value {
    alternating(
        runtime,
        MISS_ROUNDS,
        SETTLE,
        vec![
            ("body_alone", boxed(|_| async { body(fresh_key()) })),
            (
                "body_and_raw_select",
                boxed(|i| async move {
                    let body = body(fresh_key());
                    (body, raw_select(pool, &rows.sql, &rows.ids[i % HOT_KEYS]).await)
                }),
            ),
            ("write_through", boxed(|_| computed_write_through(fresh_key()))),
            ("write_behind", boxed(|_| computed_write_behind(fresh_key()))),
        ],
    )
}

/// Calls per second of [`TASKS`] tasks for [`THROUGHPUT_RUN`], each calling `call(i)` for
/// the keys `i` of its own share of [`HOT_KEYS`] in turn: no two tasks ask for one key, so no
/// call waits for another's (single-flight) and each reads its row, as pgbench's clients do.
async fn calls_per_second<F>(call: impl Fn(usize) -> F + Send + Sync + 'static) -> f64
where
    F: Future + Send,
{
    let call = Arc::new(call);
    let calls = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (call, calls) = (call.clone(), calls.clone());
            tokio::spawn(async move {
                let share = HOT_KEYS / TASKS;
                let first = task * share;
                let mut n = 0;
                while start.elapsed() < THROUGHPUT_RUN {
                    call(first + n % share).await;
                    calls.fetch_add(1, Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a throughput task");
    }
    calls.load(Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// L2 hits per second through `#[tiered_cached]`, and raw `SELECT`s per second through the
/// same pool, each from [`TASKS`] tasks.
async fn pool_throughput(pool: Pool, rows: Arc<RawRows>) -> serde_json::Value {
    let before = l2_counts();
    let start = Instant::now();
    let tiered_calls = calls_per_second(|i| profile_from_l2(hot_id(i))).await;
    let elapsed = start.elapsed().as_secs_f64();
    let after = l2_counts();
    let raw_selects = calls_per_second(move |i| {
        let (pool, rows) = (pool.clone(), rows.clone());
        async move { raw_select(&pool, &rows.sql, &rows.ids[i % HOT_KEYS]).await }
    })
    .await;
    json!({
        "tasks": TASKS,
        "connections": CONNECTIONS,
        "seconds": THROUGHPUT_RUN.as_secs(),
        "tiered_calls_per_second": tiered_calls,
        "tiered_l2_hits_per_second": (after.l2_hits - before.l2_hits) as f64 / elapsed,
        "tiered_l1_hits": after.l1_hits - before.l1_hits,
        "tiered_coalesced": after.coalesced - before.coalesced,
        "tiered_backend_errors": after.backend_errors - before.backend_errors,
        "raw_selects_per_second": raw_selects,
    })
}

fn l2_counts() -> tiered::FunctionStats {
    tiered::stats()
        .into_iter()
        .find(|(name, _)| name.ends_with("profile_from_l2"))
        .map(|(_, counts)| counts)
        .unwrap_or_default()
}

/// `pgbench` of the installed PostgreSQL, for the select-only baseline.
fn pgbench() -> String {
    let on_path = Command::new("pgbench").arg("--version").output().is_ok();
    if on_path {
        return "pgbench".to_owned();
    }
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/pgbench"))
        .filter(|path| path.exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("pgbench (PostgreSQL's client tools) is needed for the throughput baseline")
        .display()
        .to_string()
}

fn run_pgbench(pgbench: &str, url: &str, args: &[&str]) -> String {
    let output = Command::new(pgbench)
        .args(args)
        .arg(url)
        .output()
        .expect("pgbench runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "pgbench {args:?} failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// `pgbench -S -M prepared` (one primary-key `SELECT` per transaction) with
/// [`CONNECTIONS`] clients for [`THROUGHPUT_RUN`].
fn pgbench_throughput(url: &str) -> serde_json::Value {
    let pgbench = pgbench();
    run_pgbench(&pgbench, url, &["-i", "-q", "-s", "1"]);
    let (clients, seconds) = (CONNECTIONS.to_string(), THROUGHPUT_RUN.as_secs().to_string());
    let report = run_pgbench(
        &pgbench,
        url,
        &[
            "-S", "-M", "prepared", "-n", "-j", "2", "-c", &clients, "-T", &seconds,
        ],
    );
    let tps = report
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's report: {report}"));
    json!({ "clients": CONNECTIONS, "threads": 2, "seconds": THROUGHPUT_RUN.as_secs(), "tps": tps })
}

fn block_on_all<F: Future>(runtime: &tokio::runtime::Runtime, calls: impl Iterator<Item = F>) {
    runtime.block_on(async {
        for call in calls {
            call.await;
        }
    });
}

fn main() {
    let server = Server::start();
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let pool = runtime.block_on(async { l2_calls::pool(url, CONNECTIONS) });
    let table = tiered_testkit::unique_name("bench");
    runtime
        .block_on(
            tiered::Runtime::builder()
                .postgres_pool(pool.clone())
                .listen_url(url)
                .table(&table)
                .l2_timeout(Duration::from_secs(5))
                .install(),
        )
        .expect("the tiered runtime installs");
    // One L2 row per hot key.
    block_on_all(&runtime, (0..HOT_KEYS).map(|i| profile_from_l2(hot_id(i))));

    let ids = runtime.block_on(row_ids(&pool, &table));
    assert_eq!(ids.len(), HOT_KEYS, "one L2 row per hot key");
    let rows = Arc::new(RawRows {
        sql: format!("SELECT value FROM {table} WHERE id = $1"),
        ids,
    });

    let latency = json!({
        "l2_hit": l2_calls::l2_hit(&runtime, &pool, &rows, L2_HIT_ROUNDS),
        "miss_path": miss_path(&runtime, &pool, &rows),
    });
    results::record("l2_latency", latency);
    let pool_figures = runtime.block_on(pool_throughput(pool, rows));
    let pgbench = pgbench_throughput(url);
    runtime.block_on(tiered::shutdown());
    results::record(
        "l2_throughput",
        json!({ "pool": pool_figures, "pgbench": pgbench }),
    );
}
