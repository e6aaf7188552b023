//! Shared set-up of the integration tests: one tokio runtime and one PostgreSQL per test binary.
#![allow(dead_code)] // each test binary uses a different part of it

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use tiered::{BackendError, Runtime, RuntimeBuilder};
use tiered_testkit::{FaultProxy, PgServer, ProxyMode};

/// One multi-threaded runtime for every test of a binary: pooled connections are bound to the
/// runtime that opened them, so tests must not each bring their own.
pub fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime")
        })
        .block_on(future)
}

/// The cache table of this test binary, installed on first use against the harness's server
/// (a throwaway cluster, or `TIERED_TEST_DATABASE_URL`).
pub fn installed_table() -> &'static str {
    static TABLE: OnceLock<String> = OnceLock::new();
    TABLE.get_or_init(|| {
        let table = tiered_testkit::unique_name("t");
        block_on(
            tiered::Runtime::builder()
                .postgres_url(PgServer::shared().url())
                .table(&table)
                .l2_timeout(Duration::from_secs(5))
                .install(),
        )
        .expect("install the tiered runtime");
        table
    })
}

/// Runs `statement` on the harness's server and returns the first column of each row as i64.
pub async fn query_i64(statement: &str) -> Vec<i64> {
    tiered_testkit::sql(PgServer::shared().url(), statement)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .iter()
        .map(|row| row.get::<_, i64>(0))
        .collect()
}

/// A session of its own on the server at `url`, its connection driven by a spawned task.
pub async fn session(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"));
    tokio::spawn(connection);
    client
}

/// The counts of the cache named `name`, or zeros if it was never used.
pub fn stats_of(name: &str) -> tiered::FunctionStats {
    tiered::stats().get(name).copied().unwrap_or_default()
}

/// Holds the lock that makes the tests of a binary run one at a time (they clear the process's
/// L1 or share keys), with the runtime installed.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    installed_table();
    guard
}

/// Awaits `call` after polling it once and then adding a permit to `joined`: a caller of a
/// cached fn has joined its key's flight (or found L1) by its first poll, so a body that
/// acquires N permits knows N callers have joined.
pub async fn joined_then<F: Future>(call: F, joined: &tokio::sync::Semaphore) -> F::Output {
    let mut call = std::pin::pin!(call);
    if let Poll::Ready(output) = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        joined.add_permits(1);
        return output;
    }
    joined.add_permits(1);
    call.await
}

/// Polls until `done` says the background work it checks for (the sweeper's, in the table) is
/// done; panics with `what` after 15 s.
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test binary's runtime installed through a fault proxy, so its tests can take the server
/// away; they share it and switch the proxy (or stop the server), so they run one at a time.
pub struct Proxied {
    pub proxy: FaultProxy,
    pub table: String,
}

impl Proxied {
    /// The binary's runtime, installed on first use with the options `configure` adds, and the
    /// lock that runs its tests one at a time; the proxy passes traffic.
    pub fn shared(
        configure: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder,
    ) -> (MutexGuard<'static, ()>, &'static Proxied) {
        static LOCK: Mutex<()> = Mutex::new(());
        static SHARED: OnceLock<Proxied> = OnceLock::new();
        let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = SHARED.get_or_init(|| {
            let server = PgServer::shared();
            let proxy = block_on(FaultProxy::start(server.host_port())).expect("start the proxy");
            let table = tiered_testkit::unique_name("t");
            let builder = Runtime::builder()
                .postgres_url(proxy.url_for(server.url()))
                .table(&table);
            block_on(configure(builder).install()).expect("install through the proxy");
            Proxied { proxy, table }
        });
        shared.proxy.set_mode(ProxyMode::Pass);
        (guard, shared)
    }
}

/// The harness's server, for a test that stops it; `None` (said on stderr) when it is
/// `TIERED_TEST_DATABASE_URL`'s, which a test must not stop.
pub fn stoppable_server() -> Option<&'static PgServer> {
    let server = PgServer::shared();
    if server.is_external() {
        eprintln!("not run: this test stops the server, which it cannot do to TIERED_TEST_DATABASE_URL");
        return None;
    }
    Some(server)
}

/// In a test binary's other process: installs the runtime on the server and table that its
/// test passed in `url_var` and `table_var`, and returns them.
pub async fn install_from_env(url_var: &str, table_var: &str) -> (String, String) {
    let url = std::env::var(url_var).unwrap_or_else(|_| panic!("{url_var}: started by a test"));
    let table = std::env::var(table_var).unwrap_or_else(|_| panic!("{table_var}: started by a test"));
    Runtime::builder()
        .postgres_url(&url)
        .table(&table)
        .install()
        .await
        .expect("the other process installs");
    (url, table)
}

/// This test binary running one of its ignored tests as another process, which may read
/// commands from its standard input and answers in lines of its standard output that start
/// with a prefix; killed when dropped.
pub struct OtherProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    prefix: &'static str,
}

impl OtherProcess {
    /// Runs the ignored test named `test` with the variables `env`; it answers after `prefix`.
    pub fn start(test: &str, env: &[(&str, &str)], prefix: &'static str) -> OtherProcess {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--ignored", "--exact", test, "--nocapture"])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {test} as another process: {err}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        OtherProcess {
            child,
            stdin,
            stdout,
            prefix,
        }
    }

    /// Sends it `command` (a line) and returns its answer.
    pub fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .expect("write to the other process");
        self.answer()
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its next answer, without the prefix.
    pub fn answer(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stdout.read_line(&mut line).expect("read the other process") > 0,
                "the other process exited"
            );
            // The test harness may put its own "test NAME ... " in front of an answer.
            if let Some((_, answer)) = line.trim_end().split_once(self.prefix) {
                return answer.to_owned();
            }
        }
    }
}

impl Drop for OtherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holds the lock that keeps the tests of a binary that each install a runtime of their own
/// one at a time.
pub fn one_runtime_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The runtime one test installed on a table of its own; shut down when dropped, even by a
/// failing test, so that the next test can install again.
pub struct OwnRuntime {
    pub table: String,
    _serial: MutexGuard<'static, ()>,
}

impl OwnRuntime {
    /// Installs the runtime `configure` sets up, on a new table named after `prefix`.
    pub fn install(prefix: &str, configure: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder) -> OwnRuntime {
        let serial = one_runtime_at_a_time();
        let table = tiered_testkit::unique_name(prefix);
        let builder = Runtime::builder()
            .table(&table)
            .l2_timeout(Duration::from_secs(5));
        block_on(configure(builder).install()).unwrap_or_else(|e| panic!("install ({prefix}): {e}"));
        OwnRuntime {
            table,
            _serial: serial,
        }
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        block_on(tiered::shutdown());
    }
}

/// The error that installing the runtime `configure` sets up fails with.
pub fn install_error(configure: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder) -> BackendError {
    let _serial = one_runtime_at_a_time();
    match block_on(configure(Runtime::builder()).install()) {
        Err(err) => err,
        Ok(()) => {
            block_on(tiered::shutdown());
            panic!("install succeeded");
        }
    }
}

/// The other process's side of an invalidation test, its runtime installed: calls `shared`
/// twice (the second call an L1 hit), answers "ready" after `prefix`, waits (10 s at most)
/// until an invalidation of the cache `name` arrives, then answers "ran N" with what
/// `shared` returns.
pub async fn await_invalidation<F: Future<Output = u64>>(prefix: &str, name: &str, shared: impl Fn() -> F) {
    shared().await;
    assert_eq!(shared().await, 1, "the second call is an L1 hit");
    println!("{prefix}ready");
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats_of(name).invalidations == 0 {
        assert!(Instant::now() < deadline, "no invalidation arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("{prefix}ran {}", shared().await);
}
