//! Invalidation across many processes: one process invalidates keys one at a time while 2, 4,
//! 8, 16 and then 32 other processes (this benchmark again, `TIERED_BENCH_LISTENER` set), each
//! with the runtime installed on a small pool, listen: how long until every one of them has
//! evicted the key, and how long the invalidating call takes, as listeners are added.
//!
//! The server is a throwaway cluster of the testkit (`max_connections` 200: each process holds
//! its pool and its listener's connection). Each listening process reports the wall-clock time at which its runtime applied each notice
//! (the runtime's `trace` event for it); the delay is from just before the invalidating call.

#[path = "shared/results.rs"]
mod results;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tiered::tiered_cached;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Listening processes at each step; the last is the headline figure.
const LISTENERS: [usize; 5] = [2, 4, 8, 16, 32];
const INVALIDATIONS: u64 = 100;
/// Each listening process's pool, besides its listener's connection.
const POOL: usize = 2;
/// The longest a listening process may take to report an eviction before the run fails.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
const ANSWER: &str = "listener> ";

#[tiered_cached]
async fn item(id: u64) -> String {
    format!("item {id}")
}

/// Now, in nanoseconds of the system's wall clock, which all processes of the machine share.
fn wall_nanos() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
    u64::try_from(since.as_nanos()).expect("before 2554")
}

/// Prints the time of each invalidation notice the runtime applies.
struct Evictions;

impl<S: tracing::Subscriber> Layer<S> for Evictions {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "tiered_runtime::registry" {
            println!("{ANSWER}{}", wall_nanos());
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn given(name: &str) -> String {
    let name = format!("TIERED_BENCH_{name}");
    std::env::var(&name).unwrap_or_else(|_| panic!("{name} is set by the parent process"))
}

/// A listening process: installs the runtime, fills its L1, says so, and reports evictions
/// until its standard input ends.
fn listener_process() {
    let only_notices = tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.target() == "tiered_runtime::registry" && *metadata.level() == tracing::Level::TRACE
    });
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(Evictions.with_filter(only_notices)),
    )
    .expect("the only subscriber");
    let url = given("POSTGRES");
    let runtime = runtime();
    runtime.block_on(async {
        tiered::Runtime::builder()
            .postgres_url(&url)
            .listen_url(&url)
            .table(given("TABLE"))
            .max_connections(POOL)
            .l2_timeout(Duration::from_secs(5))
            .install()
            .await
            .expect("the tiered runtime installs");
        for id in 0..INVALIDATIONS {
            item(id).await;
        }
    });
    println!("{ANSWER}ready");
    std::io::stdin().read_to_end(&mut Vec::new()).ok();
    runtime.block_on(tiered::shutdown());
}

/// A listening process and its reports, read by a thread of their own.
struct Listener {
    child: Child,
    reports: Receiver<String>,
}

impl Listener {
    fn start(url: &str, table: &str) -> Listener {
        let mut child = Command::new(std::env::current_exe().expect("this benchmark"))
            .env("TIERED_BENCH_LISTENER", "1")
            .env("TIERED_BENCH_POSTGRES", url)
            .env("TIERED_BENCH_TABLE", table)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a listening process");
        let stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let (send, reports) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(report) = line.strip_prefix(ANSWER) {
                    if send.send(report.to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        let listener = Listener { child, reports };
        assert_eq!(listener.report(), "ready");
        listener
    }

    fn report(&self) -> String {
        match self.reports.recv_timeout(REPORT_TIMEOUT) {
            Ok(report) => report,
            Err(RecvTimeoutError::Timeout) => {
                panic!("a listening process reported nothing in {REPORT_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("a listening process ended"),
        }
    }

    /// When it evicted the key of the next notice.
    fn evicted_at(&self) -> u64 {
        self.report().parse().expect("a time")
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn milliseconds(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn summary(mut nanos: Vec<u64>) -> Value {
    nanos.sort_unstable();
    json!({
        "median_ms": milliseconds(nanos[nanos.len() / 2]),
        "p90_ms": milliseconds(nanos[nanos.len() * 9 / 10]),
        "max_ms": milliseconds(*nanos.last().expect("some")),
    })
}

/// [`INVALIDATIONS`] invalidations, one at a time, each awaited until every listener evicted.
fn invalidations(runtime: &tokio::runtime::Runtime, listeners: &[Listener]) -> Value {
    let (mut calls, mut all_evicted, mut each_evicted) = (vec![], vec![], vec![]);
    for id in 0..INVALIDATIONS {
        let (before, start) = (wall_nanos(), Instant::now());
        runtime.block_on(invalidate_item(id)).expect("the invalidation");
        calls.push(u64::try_from(start.elapsed().as_nanos()).expect("short"));
        let delays: Vec<u64> = listeners
            .iter()
            .map(|listener| listener.evicted_at().saturating_sub(before))
            .collect();
        all_evicted.push(*delays.iter().max().expect("listeners"));
        each_evicted.extend(delays);
    }
    json!({
        "listeners": listeners.len(),
        "invalidations": INVALIDATIONS,
        "call": summary(calls),
        "all_evicted": summary(all_evicted),
        "each_evicted": summary(each_evicted),
    })
}

fn main() {
    if std::env::var_os("TIERED_BENCH_LISTENER").is_some() {
        return listener_process();
    }
    let server = tiered_testkit::PgServer::start().expect("a PostgreSQL server");
    let table = tiered_testkit::unique_name("bench_many");
    let runtime = runtime();
    runtime
        .block_on(
            tiered::Runtime::builder()
                .postgres_url(server.url())
                .listen_url(server.url())
                .table(&table)
                .max_connections(POOL)
                .l2_timeout(Duration::from_secs(5))
                .install(),
        )
        .expect("the tiered runtime installs");
    let mut listeners: Vec<Listener> = Vec::new();
    let steps: Vec<Value> = LISTENERS
        .iter()
        .map(|&count| {
            while listeners.len() < count {
                listeners.push(Listener::start(server.url(), &table));
            }
            let figures = invalidations(&runtime, &listeners);
            eprintln!("many_processes: {figures}");
            figures
        })
        .collect();
    drop(listeners);
    runtime.block_on(tiered::shutdown());
    results::record("many_processes", json!({ "pool": POOL, "steps": steps }));
}
