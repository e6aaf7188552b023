//! tiered against Redis, as a user would compare them, on a Redis server this benchmark starts
//! (the Debian package `redis-server`) next to the PostgreSQL one:
//!
//! - an L2 hit of `#[tiered_cached]` against a raw Redis `GET` of the same bytes, the `cached`
//!   crate's Redis store (`AsyncRedisCache` behind `#[concurrent_cached]`) and a raw prepared
//!   `SELECT`, timed call by call in turn;
//! - a workload of two processes, each making Zipf(0.99) calls over 100,000 keys to a
//!   function whose body takes 1 ms, through tiered (L1 of 10,000 + PostgreSQL L2; writing
//!   through, its default, and behind), through
//!   `cached`'s Redis store, and through moka (10,000) in front of Redis by hand: latency per
//!   call and calls of the body, from empty caches (the first half of the calls) and after
//!   (the second half). The body sleeps 1 ms on tokio's timer (so 1–2 ms), as an origin that
//!   waits for I/O does.
//!
//! The benchmark runs itself as the workload's processes (`TIERED_BENCH_WORKLOAD` set).

// Its two-way L2 hit is not used: here the L2 hit is compared four ways.
#[allow(dead_code)]
#[path = "shared/l2_calls.rs"]
mod l2_calls;
#[path = "shared/profile.rs"]
mod profile;
#[path = "shared/results.rs"]
mod results;
#[path = "shared/zipf.rs"]
mod zipf;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cached::macros::concurrent_cached;
use cached::AsyncRedisCache;
use l2_calls::{alternating, boxed, profile_from_l2, raw_select, row_ids, RawRows, Server};
use profile::{hot_id, Profile, HOT_KEYS};
use serde_json::{json, Value};
use tiered::tiered_cached;
use zipf::Zipf;

const CONNECTIONS: usize = 8;
const L2_HIT_ROUNDS: usize = 10_000;
const WORKLOAD_KEYS: usize = 100_000;
const EXPONENT: f64 = 0.99;
const PROCESSES: usize = 2;
/// Tasks calling at once in each process.
const TASKS: usize = 16;
/// Calls of each task: the first half from empty caches, the second half with the caches
/// filled by the first (each half is reported apart).
const CALLS_PER_TASK: usize = 10_000;
const BODY: Duration = Duration::from_millis(1);
/// Each implementation's workload, run this many times in turn (each from empty caches).
const REPEATS: usize = 3;
const IMPLEMENTATIONS: [&str; 4] = ["tiered", "tiered_behind", "cached_redis", "moka_redis"];
/// Where a workload process writes its figures, one line.
const ANSWER: &str = "workload> ";

/// `TIERED_BENCH_<name>`, which the parent sets for the workload's processes.
fn given(name: &str) -> String {
    let name = format!("TIERED_BENCH_{name}");
    std::env::var(&name).unwrap_or_else(|_| panic!("{name} is set by the parent process"))
}

/// The Redis server's URL, for the `cached` stores' `create` blocks.
static REDIS_URL: OnceLock<String> = OnceLock::new();

fn redis_url() -> &'static str {
    REDIS_URL.get().expect("the Redis URL is set first")
}

/// A throwaway Redis server on a free port, without persistence; stopped when dropped.
struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("redis-server: {err}; install it with `apt-get install redis-server` (benches/run.sh does)")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a Redis connection")
}

/// The raw `GET`: the value's bytes, as the raw `SELECT` returns them.
async fn raw_get(mut connection: redis::aio::MultiplexedConnection, key: usize) -> Vec<u8> {
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<Vec<u8>>>(&mut connection)
        .await
        .expect("a GET")
        .expect("the value")
}

/// `cached`'s Redis store over the same keys: every call a Redis `GET` and a decode.
#[concurrent_cached(
    ty = "AsyncRedisCache<u64, Profile>",
    create = r##"{ AsyncRedisCache::builder("profile_from_redis").connection_string(redis_url()).build().await.expect("cached's Redis store") }"##,
    map_error = r##"|err| format!("{err:?}")"##
)]
async fn profile_from_redis(id: u64) -> Result<Profile, String> {
    Ok(Profile::new(id))
}

/// An L2 hit against a raw `GET` of the same bytes, `cached`'s Redis store and the raw
/// `SELECT`, call by call.
fn l2_hit(server: &Server, redis: &Redis) -> Value {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let pool = runtime.block_on(async { l2_calls::pool(server.url(), CONNECTIONS) });
    let table = tiered_testkit::unique_name("bench_redis");
    runtime
        .block_on(
            tiered::Runtime::builder()
                .postgres_pool(pool.clone())
                .listen_url(server.url())
                .table(&table)
                .l2_timeout(Duration::from_secs(5))
                .install(),
        )
        .expect("the tiered runtime installs");
    let connection = runtime.block_on(async {
        for i in 0..HOT_KEYS {
            profile_from_l2(hot_id(i)).await;
            profile_from_redis(hot_id(i)).await.expect("cached's Redis store");
        }
        redis_connection(&redis.url).await
    });
    let rows = RawRows {
        sql: format!("SELECT value FROM {table} WHERE id = $1"),
        ids: runtime.block_on(row_ids(&pool, &table)),
    };
    runtime.block_on(async {
        let mut connection = connection.clone();
        for (key, id) in rows.ids.iter().enumerate() {
            let value = raw_select(&pool, &rows.sql, id).await;
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query_async::<()>(&mut connection)
                .await
                .expect("a SET");
        }
    });
    let figures = alternating(
        &runtime,
        L2_HIT_ROUNDS,
        Duration::ZERO,
        vec![
            ("tiered", boxed(|i| profile_from_l2(hot_id(i)))),
            ("raw_get", boxed(|i| raw_get(connection.clone(), i % HOT_KEYS))),
            ("cached_redis", boxed(|i| profile_from_redis(hot_id(i)))),
            (
                "raw_select",
                boxed(|i| raw_select(&pool, &rows.sql, &rows.ids[i % HOT_KEYS])),
            ),
        ],
    );
    runtime.block_on(tiered::shutdown());
    figures
}

/// Calls of the workload's body in this process, and the time they took in all.
static ORIGIN_CALLS: AtomicU64 = AtomicU64::new(0);
static ORIGIN_NANOS: AtomicU64 = AtomicU64::new(0);

async fn origin(id: u64) -> Profile {
    let start = Instant::now();
    tokio::time::sleep(BODY).await;
    ORIGIN_CALLS.fetch_add(1, Relaxed);
    ORIGIN_NANOS.fetch_add(u64::try_from(start.elapsed().as_nanos()).expect("short"), Relaxed);
    Profile::new(id)
}

#[tiered_cached(l1_capacity = 10_000)]
async fn work_tiered(id: u64) -> Profile {
    origin(id).await
}

/// The same, returning before its L2 write.
#[tiered_cached(l1_capacity = 10_000, write = "behind")]
async fn work_tiered_behind(id: u64) -> Profile {
    origin(id).await
}

/// How many calls each of tiered's tiers answered in this process so far.
fn tiers() -> tiered::FunctionStats {
    let mut all = tiered::FunctionStats::default();
    for counts in tiered::stats().into_values() {
        all += counts;
    }
    all
}

#[concurrent_cached(
    ty = "AsyncRedisCache<u64, Profile>",
    create = r##"{ AsyncRedisCache::builder(given("PREFIX")).connection_string(redis_url()).build().await.expect("cached's Redis store") }"##,
    map_error = r##"|err| format!("{err:?}")"##
)]
async fn work_cached(id: u64) -> Result<Profile, String> {
    Ok(origin(id).await)
}

/// moka in front of Redis, as a user writes it: moka, else Redis (JSON), else the body and
/// both stores.
struct MokaRedis {
    l1: moka::future::Cache<u64, Profile>,
    redis: redis::aio::MultiplexedConnection,
    prefix: String,
}

impl MokaRedis {
    async fn get(&self, id: u64) -> Profile {
        if let Some(hit) = self.l1.get(&id).await {
            return hit;
        }
        let key = format!("{}:{id}", self.prefix);
        let mut redis = self.redis.clone();
        let stored: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("a GET");
        let value = match stored {
            Some(bytes) => serde_json::from_slice(&bytes).expect("a stored profile"),
            None => {
                let value = origin(id).await;
                let bytes = serde_json::to_vec(&value).expect("JSON");
                redis::cmd("SET")
                    .arg(&key)
                    .arg(bytes)
                    .query_async::<()>(&mut redis)
                    .await
                    .expect("a SET");
                value
            }
        };
        self.l1.insert(id, value.clone()).await;
        value
    }
}

/// One workload process: [`TASKS`] tasks each making [`CALLS_PER_TASK`] calls on its own
/// Zipf traces, in two halves (all tasks finish the first before any starts the second);
/// prints each half's latencies and calls of the body.
fn workload_process(implementation: &str) {
    let process: u64 = given("PROCESS").parse().expect("a process number");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let moka = runtime.block_on(async {
        match implementation {
            "tiered" | "tiered_behind" => {
                let url = given("POSTGRES");
                tiered::Runtime::builder()
                    .postgres_url(&url)
                    .listen_url(&url)
                    .table(given("TABLE"))
                    .max_connections(CONNECTIONS)
                    .l2_timeout(Duration::from_secs(5))
                    .install()
                    .await
                    .expect("the tiered runtime installs");
                None
            }
            "moka_redis" => Some(Arc::new(MokaRedis {
                l1: moka::future::Cache::new(10_000),
                redis: redis_connection(redis_url()).await,
                prefix: given("PREFIX"),
            })),
            _ => None,
        }
    });
    let implementation = implementation.to_owned();
    let halves: Vec<(Vec<Duration>, u64, u64, Value)> = runtime.block_on(async {
        let mut halves = Vec::new();
        for half in 0..2_u64 {
            let (calls_before, nanos_before) = (ORIGIN_CALLS.load(Relaxed), ORIGIN_NANOS.load(Relaxed));
            let tiers_before = tiers();
            let tasks: Vec<_> = (0..TASKS as u64)
                .map(|task| {
                    let (moka, implementation) = (moka.clone(), implementation.clone());
                    let seed = process << 32 | half << 16 | task;
                    let trace = Zipf::new(WORKLOAD_KEYS, EXPONENT, seed).trace(CALLS_PER_TASK / 2);
                    tokio::spawn(async move {
                        let mut latencies = Vec::with_capacity(trace.len());
                        for id in trace {
                            let start = Instant::now();
                            match (implementation.as_str(), &moka) {
                                ("tiered", _) => drop(work_tiered(id).await),
                                ("tiered_behind", _) => drop(work_tiered_behind(id).await),
                                ("cached_redis", _) => {
                                    drop(work_cached(id).await.expect("cached's Redis store"))
                                }
                                (_, Some(moka)) => drop(moka.get(id).await),
                                (other, None) => panic!("no workload {other}"),
                            }
                            latencies.push(start.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.expect("a workload task"));
            }
            let tiers_after = tiers();
            let answered = json!({
                "l1_hits": tiers_after.l1_hits - tiers_before.l1_hits,
                "l2_hits": tiers_after.l2_hits - tiers_before.l2_hits,
                "coalesced": tiers_after.coalesced - tiers_before.coalesced,
            });
            halves.push((
                all,
                ORIGIN_CALLS.load(Relaxed) - calls_before,
                ORIGIN_NANOS.load(Relaxed) - nanos_before,
                answered,
            ));
        }
        halves
    });
    if implementation.starts_with("tiered") {
        runtime.block_on(tiered::shutdown());
    }
    let [cold, warm] = [0, 1].map(|half| {
        let (mut latencies, origin_calls, origin_nanos, answered) = halves[half].clone();
        latencies.sort_unstable();
        let mean = latencies.iter().sum::<Duration>().as_nanos() as f64 / latencies.len() as f64;
        json!({
            "calls": latencies.len(),
            "mean_ns": mean,
            "p99_ns": latencies[latencies.len() * 99 / 100].as_nanos() as f64,
            "origin_calls": origin_calls,
            "origin_ns": origin_nanos,
            "tiered": answered,
        })
    });
    println!("{ANSWER}{}", json!({ "cold": cold, "warm": warm }));
}

/// [`PROCESSES`] processes running one implementation's workload at once: for each half of
/// the calls, the mean latency over all their calls, the larger of their p99s, and the body's
/// calls in all.
fn workload(implementation: &str, server: &Server, redis: &Redis) -> Value {
    let table = tiered_testkit::unique_name("bench_workload");
    let prefix = tiered_testkit::unique_name("workload");
    let children: Vec<Child> = (0..PROCESSES)
        .map(|process| {
            Command::new(std::env::current_exe().expect("this benchmark"))
                .env("TIERED_BENCH_WORKLOAD", implementation)
                .env("TIERED_BENCH_PROCESS", process.to_string())
                .env("TIERED_BENCH_POSTGRES", server.url())
                .env("TIERED_BENCH_REDIS", &redis.url)
                .env("TIERED_BENCH_TABLE", &table)
                .env("TIERED_BENCH_PREFIX", &prefix)
                .stdout(Stdio::piped())
                .spawn()
                .expect("a workload process")
        })
        .collect();
    let answers: Vec<Value> = children
        .into_iter()
        .map(|mut child| {
            let stdout = BufReader::new(child.stdout.take().expect("its stdout"));
            let answer = stdout
                .lines()
                .map(|line| line.expect("its output"))
                .find_map(|line| line.strip_prefix(ANSWER).map(str::to_owned))
                .unwrap_or_else(|| panic!("the {implementation} workload process ended without figures"));
            assert!(child.wait().expect("the workload process").success());
            serde_json::from_str(&answer).expect("the figures")
        })
        .collect();
    let half = |half: &str| {
        let number = |answer: &Value, name: &str| answer[half][name].as_f64().expect("a number");
        let calls: f64 = answers.iter().map(|a| number(a, "calls")).sum();
        json!({
            "calls": calls,
            "mean_ns": answers.iter().map(|a| number(a, "mean_ns") * number(a, "calls")).sum::<f64>() / calls,
            "p99_ns": answers.iter().map(|a| number(a, "p99_ns")).fold(0.0, f64::max),
            "origin_calls": answers.iter().map(|a| number(a, "origin_calls")).sum::<f64>(),
            // The body's own time, per call: the floor under every implementation's mean.
            "origin_ns_per_call": answers.iter().map(|a| number(a, "origin_ns")).sum::<f64>() / calls,
            // Calls tiered's L1 and L2 answered (zero for the others).
            "l1_hits": answers.iter().map(|a| a[half]["tiered"]["l1_hits"].as_f64().expect("a count")).sum::<f64>(),
            "l2_hits": answers.iter().map(|a| a[half]["tiered"]["l2_hits"].as_f64().expect("a count")).sum::<f64>(),
        })
    };
    json!({ "cold": half("cold"), "warm": half("warm") })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if let Ok(implementation) = std::env::var("TIERED_BENCH_WORKLOAD") {
        REDIS_URL.get_or_init(|| given("REDIS"));
        return workload_process(&implementation);
    }
    let server = Server::start();
    let redis = Redis::start();
    REDIS_URL.get_or_init(|| redis.url.clone());
    results::record("redis_l2_hit", l2_hit(&server, &redis));

    let runs: Vec<(&str, Value)> = (0..REPEATS)
        .flat_map(|_| IMPLEMENTATIONS)
        .map(|implementation| {
            let figures = workload(implementation, &server, &redis);
            eprintln!("against_redis: {implementation}: {figures}");
            (implementation, figures)
        })
        .collect();
    let summary = IMPLEMENTATIONS.map(|implementation| {
        let of = |half: &str, name: &str| {
            median(
                runs.iter()
                    .filter(|(which, _)| *which == implementation)
                    .map(|(_, figures)| figures[half][name].as_f64().expect("a number"))
                    .collect(),
            )
        };
        let half = |half: &str| {
            json!({
                "mean_ns": of(half, "mean_ns"),
                "p99_ns": of(half, "p99_ns"),
                "origin_calls": of(half, "origin_calls"),
                "origin_ns_per_call": of(half, "origin_ns_per_call"),
                "l1_hits": of(half, "l1_hits"),
                "l2_hits": of(half, "l2_hits"),
                "calls": of(half, "calls"),
            })
        };
        let figures = json!({ "cold": half("cold"), "warm": half("warm") });
        (implementation.to_owned(), figures)
    });
    results::record(
        "redis_workload",
        json!({
            "processes": PROCESSES,
            "tasks_per_process": TASKS,
            "keys": WORKLOAD_KEYS,
            "exponent": EXPONENT,
            "body_ms": BODY.as_millis(),
            "repeats": REPEATS,
            "median": serde_json::Map::from_iter(summary),
            "runs": runs.iter().map(|(which, figures)| json!({ "implementation": which, "figures": figures })).collect::<Vec<_>>(),
        }),
    );
}
