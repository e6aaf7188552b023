//! Several processes, one PostgreSQL: an invalidation in one reaches the L1 of the others.
//!
//! This test process is instance A; each test starts instance B as a child process (this same
//! test binary, running the ignored `instance_b` test) and drives it over stdin/stdout.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{block_on, installed_table};
use tiered::tiered_cached;
use tiered_testkit::PgServer;

const URL_VAR: &str = "TIERED_INSTANCE_B_URL";
const TABLE_VAR: &str = "TIERED_INSTANCE_B_TABLE";
const ANSWER: &str = "instance-b: ";

/// The source of truth both instances cache: `<table>_truth (k, v)`.
static TRUTH: OnceLock<(tokio_postgres::Client, String)> = OnceLock::new();

async fn connect_truth(url: &str, table: &str) {
    let client = common::session(url).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table}_truth (k bigint PRIMARY KEY, v bigint NOT NULL)"
        ))
        .await
        .expect("create the truth table");
    let _ = TRUTH.set((client, format!("{table}_truth")));
}

#[tiered_cached(name = "truth")]
async fn truth(k: i64) -> i64 {
    let (client, table) = TRUTH.get().expect("connected");
    let row = client
        .query_opt(&format!("SELECT v FROM {table} WHERE k = $1"), &[&k])
        .await
        .expect("read the truth");
    row.map_or(-1, |row| row.get(0))
}

async fn set_truth(k: i64, v: i64) {
    let (client, table) = TRUTH.get().expect("connected");
    client
        .execute(
            &format!("INSERT INTO {table} VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2"),
            &[&k, &v],
        )
        .await
        .expect("write the truth");
}

fn invalidations_of_truth() -> u64 {
    tiered::stats()
        .get("truth")
        .map_or(0, |stats| stats.invalidations)
}

fn nanos_since_epoch() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

#[test]
#[ignore = "instance B of the multi-process tests, which start it themselves"]
fn instance_b() {
    let url = std::env::var(URL_VAR).expect("started by a multi-process test");
    let table = std::env::var(TABLE_VAR).expect("started by a multi-process test");
    block_on(async {
        connect_truth(&url, &table).await;
        tiered::Runtime::builder()
            .postgres_url(&url)
            .table(&table)
            // The listener test checks what a reconnection keeps: this cap must not drop it first.
            .max_stale_while_disconnected(Duration::from_secs(600))
            .install()
            .await
            .expect("instance B installs");
        println!("{ANSWER}ready");
        for line in std::io::stdin().lock().lines() {
            let line = line.expect("stdin");
            let words: Vec<&str> = line.split_whitespace().collect();
            let answer = match words.as_slice() {
                ["get", k] => {
                    let before = tiered::stats().get("truth").copied().unwrap_or_default();
                    let v = truth(k.parse().expect("key")).await;
                    let after = tiered::stats().get("truth").copied().unwrap_or_default();
                    let tier = if after.l1_hits > before.l1_hits {
                        "l1"
                    } else {
                        "not-l1"
                    };
                    format!("{v} {tier}")
                }
                ["await_invalidations", n] => {
                    let n: u64 = n.parse().expect("count");
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while invalidations_of_truth() < n && Instant::now() < deadline {
                        tokio::task::yield_now().await;
                    }
                    match invalidations_of_truth() >= n {
                        true => format!("{}", nanos_since_epoch()),
                        false => "timeout".to_owned(),
                    }
                }
                ["invalidations"] => invalidations_of_truth().to_string(),
                _ => format!("unknown command {line:?}"),
            };
            println!("{ANSWER}{answer}");
        }
    });
}

/// Instance B, killed when dropped.
struct InstanceB {
    process: std::process::Child,
    stdin: ChildStdin,
    stdout: Box<dyn BufRead + Send>,
}

impl InstanceB {
    fn start() -> InstanceB {
        let mut process = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--ignored",
                "--exact",
                "instance_b",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(URL_VAR, PgServer::shared().url())
            .env(TABLE_VAR, installed_table())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start instance B");
        let stdin = process.stdin.take().expect("stdin");
        let stdout = Box::new(BufReader::new(process.stdout.take().expect("stdout")));
        let mut b = InstanceB {
            process,
            stdin,
            stdout,
        };
        assert_eq!(b.answer(), "ready");
        b
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to instance B");
        self.stdin.flush().expect("flush");
    }

    fn answer(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stdout.read_line(&mut line).expect("read instance B") > 0,
                "instance B exited"
            );
            // The test harness may put its own "test instance_b ... " in front of the first answer.
            if let Some((_, answer)) = line.trim_end().split_once(ANSWER) {
                return answer.to_owned();
            }
        }
    }

    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.answer()
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl Drop for InstanceB {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Tests here invalidate the same function in both instances, so they run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let table = installed_table();
    block_on(connect_truth(PgServer::shared().url(), table));
    guard
}

#[test]
fn an_invalidation_in_a_evicts_the_entry_from_b_within_a_bounded_delay() {
    let _serial = serial();
    let mut b = InstanceB::start();
    let k = 1;
    block_on(set_truth(k, 0));
    assert_eq!(b.ask(&format!("get {k}")), "0 not-l1");
    assert_eq!(b.ask(&format!("get {k}")), "0 l1");
    let seen_before: u64 = b.ask("invalidations").parse().unwrap();
    let mut delays = Vec::new();
    for round in 1..=100 {
        block_on(set_truth(k, round));
        b.send(&format!("await_invalidations {}", seen_before + round as u64));
        let sent = nanos_since_epoch();
        block_on(invalidate_truth(k)).expect("invalidate in A");
        let seen: u128 = b.answer().parse().expect("B saw the invalidation");
        delays.push(Duration::from_nanos(seen.saturating_sub(sent) as u64));
        assert_eq!(
            b.ask(&format!("get {k}")),
            format!("{round} not-l1"),
            "B serves the new value"
        );
    }
    delays.sort();
    let (median, max) = (delays[delays.len() / 2], delays[delays.len() - 1]);
    eprintln!(
        "invalidation A -> B's L1 over {} rounds: median {median:?}, max {max:?}",
        delays.len()
    );
    assert!(max < Duration::from_secs(2), "max delay {max:?}");
}

#[test]
fn invalidate_all_in_a_clears_the_function_in_b() {
    let _serial = serial();
    let mut b = InstanceB::start();
    block_on(async {
        set_truth(11, 1).await;
        set_truth(12, 1).await;
    });
    b.ask("get 11");
    b.ask("get 12");
    assert_eq!(b.ask("get 11"), "1 l1");
    let seen: u64 = b.ask("invalidations").parse().unwrap();
    block_on(async {
        set_truth(11, 2).await;
        set_truth(12, 2).await;
    });
    b.send(&format!("await_invalidations {}", seen + 1));
    block_on(invalidate_all_truth()).expect("invalidate_all in A");
    assert_ne!(b.answer(), "timeout");
    assert_eq!(b.ask("get 11"), "2 not-l1");
    assert_eq!(b.ask("get 12"), "2 not-l1");
}

/// B's listener session, by its backend pid, if it has one.
fn listener_of(b: &InstanceB) -> Option<i64> {
    block_on(common::query_i64(&format!(
        "SELECT pid::int8 FROM pg_stat_activity WHERE application_name = 'tiered-listener-{}'",
        b.pid()
    )))
    .first()
    .copied()
}

#[test]
fn when_b_loses_its_listener_connection_it_hears_notices_again_and_keeps_the_rest_of_its_l1() {
    let _serial = serial();
    let mut b = InstanceB::start();
    block_on(async {
        set_truth(21, 1).await;
        set_truth(22, 1).await;
    });
    for k in [21, 22] {
        b.ask(&format!("get {k}"));
        assert_eq!(b.ask(&format!("get {k}")), "1 l1");
    }
    let listener = listener_of(&b).expect("B listens");
    let terminated = block_on(common::query_i64(&format!(
        "SELECT count(pg_terminate_backend({listener}))"
    )));
    assert_eq!(terminated, [1], "B's listener connection was terminated");

    let deadline = Instant::now() + Duration::from_secs(10);
    while listener_of(&b).is_none_or(|pid| pid == listener) {
        assert!(Instant::now() < deadline, "B's listener never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    block_on(set_truth(21, 2));
    block_on(invalidate_truth(21)).expect("invalidate in A");
    // By a notice, or by what B's reconnection learned from L2 if it came first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.ask("get 21").starts_with("2 ") {
        assert!(Instant::now() < deadline, "the invalidation never reached B");
    }
    assert_eq!(b.ask("get 22"), "1 l1", "nothing invalidated it: kept");
}

#[test]
fn ordinary_misses_and_writes_publish_nothing() {
    let _serial = serial();
    let mut b = InstanceB::start();
    b.ask("get 999"); // B's cache of `truth` exists from its first call on
    let seen: u64 = b.ask("invalidations").parse().unwrap();
    block_on(async {
        for k in 100..150 {
            truth(k).await;
        }
    });
    b.send(&format!("await_invalidations {}", seen + 1));
    block_on(invalidate_truth(999)).expect("a sentinel invalidation");
    assert_ne!(b.answer(), "timeout");
    // Notices arrive in commit order: had the 50 misses sent any, B would count them too.
    assert_eq!(b.ask("invalidations"), (seen + 1).to_string());
}
