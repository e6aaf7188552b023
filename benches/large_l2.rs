//! A large L2: the L2 hit with 10 million rows in the table against the same hit with 10,000
//! (each alternating call by call with a raw prepared `SELECT` of the same rows), then ten
//! sweeps of one million expired rows by the runtime's sweeper while 64 tasks keep reading:
//! their p99 read latency during each sweep against a window just before it without one, and
//! the table's size after each sweep.
//!
//! A process has one runtime, on one table: the small table is read by a second process (this
//! benchmark again, `TIERED_BENCH_SMALL_TABLE` set), and the two take turns in slices of calls,
//! so that the load of a shared machine falls on both alike.
//!
//! Rows beyond the benchmark's own are written with SQL (`INSERT … SELECT generate_series`)
//! as the runtime writes them: a 32-byte SHA-256 id, the namespace, a function name, a value of
//! the size of the benchmark's own. `TIERED_BENCH_L2_ROWS` and `TIERED_BENCH_SWEEPS` scale the
//! run down (defaults 10,000,000 and 10).

#[path = "shared/l2_calls.rs"]
mod l2_calls;
#[path = "shared/profile.rs"]
mod profile;
#[path = "shared/results.rs"]
mod results;

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use l2_calls::{profile_from_l2, row_ids, RawRows, Server};
use profile::{hot_id, HOT_KEYS};
use serde_json::{json, Value};
use tiered::deadpool_postgres::Pool;

const CONNECTIONS: usize = 8;
const SMALL_TABLE: i64 = 10_000;
/// Rows written per statement while the table grows, and rows expired per sweep.
const CHUNK: i64 = 1_000_000;
/// Rounds of one slice of the L2 hit comparison, and slices of each table.
const SLICE_ROUNDS: usize = 1_000;
const SLICES: usize = 20;
/// What the small table's process prints before each answer.
const ANSWER: &str = "small table> ";
/// Tasks reading during (and before) each sweep, each on its own share of the hot keys.
const READERS: usize = 64;
/// The window without a sweep, before each sweep.
const QUIET_WINDOW: Duration = Duration::from_secs(5);
/// Often enough for a sweep to start soon after its rows expired.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

fn setting(name: &str, default: i64) -> i64 {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number of rows or sweeps, not {value:?}"))
    })
}

/// The benchmark's table and a connection to run its SQL on.
struct Table {
    name: String,
    pool: Pool,
}

impl Table {
    async fn execute(&self, sql: &str) -> u64 {
        let client = self.pool.get().await.expect("a connection");
        client
            .execute(sql, &[])
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    async fn number(&self, sql: &str) -> i64 {
        let client = self.pool.get().await.expect("a connection");
        let row = client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
        row.get(0)
    }

    /// Writes the rows numbered `first..=last` of another function, each a copy of a row of
    /// the benchmark's own but for its id, to expire after `lifetime` (an SQL interval; a
    /// negative one: already expired). Returns the seconds it took.
    async fn write_rows(&self, first: i64, last: i64, lifetime: &str) -> f64 {
        let table = &self.name;
        let start = Instant::now();
        self.execute(&format!(
            "INSERT INTO {table} (id, namespace, function, version, value, generation, epoch, expires_at) \
             SELECT sha256(int8send(g)), own.namespace, 'bench::other_rows', own.version, own.value, 1, \
                    own.epoch, now() + interval '{lifetime}' \
             FROM generate_series({first}::int8, {last}::int8) g, \
                  (SELECT * FROM {table} WHERE function LIKE '%profile_from_l2' LIMIT 1) own"
        ))
        .await;
        start.elapsed().as_secs_f64()
    }

    async fn sizes(&self) -> Value {
        let table = &self.name;
        json!({
            "table_bytes": self.number(&format!("SELECT pg_table_size('{table}')")).await,
            "index_bytes": self.number(&format!("SELECT pg_indexes_size('{table}')")).await,
        })
    }

    async fn expired_rows_left(&self) -> bool {
        let table = &self.name;
        let sql =
            format!("SELECT count(*) FROM (SELECT 1 FROM {table} WHERE expires_at < now() LIMIT 1) one");
        self.number(&sql).await > 0
    }
}

/// [`READERS`] tasks making L2 hits until `stop` is set: each call's latency.
async fn read_until(stop: Arc<AtomicBool>) -> Vec<Duration> {
    let tasks: Vec<_> = (0..READERS)
        .map(|task| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let share = HOT_KEYS / READERS;
                let mut latencies = Vec::new();
                let mut n = 0;
                while !stop.load(Relaxed) {
                    let start = Instant::now();
                    profile_from_l2(hot_id(task * share + n % share)).await;
                    latencies.push(start.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a reader"));
    }
    all
}

fn percentiles(mut latencies: Vec<Duration>) -> Value {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_nanos() as f64;
    json!({ "calls": latencies.len(), "p50_ns": at(0.5), "p99_ns": at(0.99) })
}

/// Reads for [`QUIET_WINDOW`] with no expired row in the table, then expires [`CHUNK`] rows
/// and reads until the sweeper has deleted them all.
async fn one_sweep(table: &Table, first: i64) -> Value {
    let stop = Arc::new(AtomicBool::new(false));
    let readers = tokio::spawn(read_until(stop.clone()));
    tokio::time::sleep(QUIET_WINDOW).await;
    stop.store(true, Relaxed);
    let quiet = percentiles(readers.await.expect("the readers"));

    let write_seconds = table.write_rows(first, first + CHUNK - 1, "-1 second").await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers = tokio::spawn(read_until(stop.clone()));
    let start = Instant::now();
    while table.expired_rows_left().await {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sweep_seconds = start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    let sweeping = percentiles(readers.await.expect("the readers"));
    json!({
        "quiet": quiet,
        "sweeping": sweeping,
        "expired_rows": CHUNK,
        "write_seconds": write_seconds,
        "sweep_seconds": sweep_seconds,
        "after": table.sizes().await,
    })
}

/// A runtime on `table` of `server`, its rows for the hot keys written, and the raw `SELECT`
/// of those rows.
fn install(url: &str, table: &str) -> (tokio::runtime::Runtime, Pool, RawRows) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let pool = runtime.block_on(async { l2_calls::pool(url, CONNECTIONS) });
    runtime
        .block_on(
            tiered::Runtime::builder()
                .postgres_pool(pool.clone())
                .listen_url(url)
                .table(table)
                .l2_timeout(Duration::from_secs(5))
                .sweep_interval(SWEEP_INTERVAL)
                .install(),
        )
        .expect("the tiered runtime installs");
    runtime.block_on(async {
        for i in 0..HOT_KEYS {
            profile_from_l2(hot_id(i)).await;
        }
    });
    let ids = runtime.block_on(row_ids(&pool, table));
    assert_eq!(ids.len(), HOT_KEYS, "one L2 row per hot key");
    let rows = RawRows {
        sql: format!("SELECT value FROM {table} WHERE id = $1"),
        ids,
    };
    (runtime, pool, rows)
}

/// The small table's process: a slice of L2 hits for each line of its standard input.
fn small_table_process(table: &str) {
    let (runtime, pool, rows) = install(&given("POSTGRES"), table);
    println!("{ANSWER}ready");
    for _ in std::io::stdin().lines() {
        println!(
            "{ANSWER}{}",
            l2_calls::l2_hit(&runtime, &pool, &rows, SLICE_ROUNDS)
        );
    }
    runtime.block_on(tiered::shutdown());
}

fn given(name: &str) -> String {
    let name = format!("TIERED_BENCH_{name}");
    std::env::var(&name).unwrap_or_else(|_| panic!("{name} is set by the parent process"))
}

/// The small table's process, driven a line at a time.
struct SmallTable {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl SmallTable {
    fn start(url: &str, table: &str) -> SmallTable {
        let mut child = Command::new(std::env::current_exe().expect("this benchmark"))
            .env("TIERED_BENCH_SMALL_TABLE", table)
            .env("TIERED_BENCH_POSTGRES", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the small table's process");
        let stdout = BufReader::new(child.stdout.take().expect("its stdout")).lines();
        let mut small = SmallTable { child, stdout };
        assert_eq!(small.answer(), "ready");
        small
    }

    fn answer(&mut self) -> String {
        self.stdout
            .by_ref()
            .map(|line| line.expect("its output"))
            .find_map(|line| line.strip_prefix(ANSWER).map(str::to_owned))
            .expect("the small table's process ended")
    }

    fn slice(&mut self) -> Value {
        let stdin = self.child.stdin.as_mut().expect("its stdin");
        writeln!(stdin, "run").expect("a command to the small table's process");
        serde_json::from_str(&self.answer()).expect("its figures")
    }
}

impl Drop for SmallTable {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The median over slices of each slice's median, per kind of call.
fn median_of_slices(slices: &[Value]) -> Value {
    let of = |name: &str| {
        let mut medians: Vec<f64> = slices
            .iter()
            .map(|slice| slice["median_ns"][name].as_f64().expect("a median"))
            .collect();
        medians.sort_unstable_by(f64::total_cmp);
        medians[medians.len() / 2]
    };
    json!({
        "slices": slices.len(),
        "rounds_per_slice": SLICE_ROUNDS,
        "median_ns": { "tiered": of("tiered"), "raw_select": of("raw_select") },
    })
}

fn main() {
    if let Ok(table) = std::env::var("TIERED_BENCH_SMALL_TABLE") {
        return small_table_process(&table);
    }
    let large_table = setting("TIERED_BENCH_L2_ROWS", 10_000_000);
    let sweeps = setting("TIERED_BENCH_SWEEPS", 10);
    let server = Server::start();
    let name = tiered_testkit::unique_name("bench_large");
    let (runtime, pool, rows) = install(server.url(), &name);
    let table = Table {
        name,
        pool: pool.clone(),
    };
    let small_name = tiered_testkit::unique_name("bench_small");
    let mut small = SmallTable::start(server.url(), &small_name);
    let small_table = Table {
        name: small_name,
        pool: pool.clone(),
    };

    let own = HOT_KEYS as i64;
    let grow_start = Instant::now();
    runtime.block_on(async {
        small_table.write_rows(1, SMALL_TABLE - own, "1 day").await;
        small_table
            .execute(&format!("VACUUM ANALYZE {}", small_table.name))
            .await;
        let mut first = 1;
        while first <= large_table - own {
            let last = (first + CHUNK - 1).min(large_table - own);
            let seconds = table.write_rows(first, last, "1 day").await;
            eprintln!("large_l2: rows {first}..={last} written in {seconds:.1} s");
            first = last + 1;
        }
        table.execute(&format!("VACUUM ANALYZE {}", table.name)).await;
    });
    let grow_seconds = grow_start.elapsed().as_secs_f64();
    let (mut small_slices, mut large_slices) = (vec![], vec![]);
    for _ in 0..SLICES {
        large_slices.push(l2_calls::l2_hit(&runtime, &pool, &rows, SLICE_ROUNDS));
        small_slices.push(small.slice());
    }
    drop(small);
    let (small_sizes, large_sizes) =
        runtime.block_on(async { (small_table.sizes().await, table.sizes().await) });
    results::record(
        "large_l2_hit",
        json!({
            "small_rows": SMALL_TABLE,
            "large_rows": large_table,
            "small": median_of_slices(&small_slices),
            "large": median_of_slices(&large_slices),
            "small_sizes": small_sizes,
            "large_sizes": large_sizes,
            "grow_seconds": grow_seconds,
        }),
    );

    let errors_before = l2_errors();
    let sweeps: Vec<Value> = (0..sweeps)
        .map(|sweep| {
            // Ids past every row written so far.
            let first = large_table + sweep * CHUNK + 1;
            let figures = runtime.block_on(one_sweep(&table, first));
            eprintln!("large_l2: sweep {}: {figures}", sweep + 1);
            figures
        })
        .collect();
    let backend_errors = l2_errors() - errors_before;
    runtime.block_on(tiered::shutdown());
    results::record(
        "large_l2_sweeps",
        json!({ "readers": READERS, "rows": large_table, "sweeps": sweeps, "backend_errors": backend_errors }),
    );
}

fn l2_errors() -> u64 {
    tiered::stats()
        .into_iter()
        .find(|(name, _)| name.ends_with("profile_from_l2"))
        .map_or(0, |(_, counts)| counts.backend_errors)
}
