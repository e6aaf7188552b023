//! Shared set-up of the integration tests: one tokio runtime and one PostgreSQL per test binary.
#![allow(dead_code)] // each test binary uses a different part of it

use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use tiered_testkit::PgServer;

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
