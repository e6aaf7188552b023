//! TLS from the URL, against a TLS-only server the harness starts (plain TCP is refused there):
//! L2 round trips and cross-process invalidation under `sslmode=require` and `verify-full`,
//! `prefer` by default, `verify-ca`, the listener of `postgres_pool` taking its TLS from
//! `listen_url`, and clear errors for a wrong CA, a host the certificate does not name and
//! `sslmode=disable`.
//!
//! Each test installs the runtime and shuts it down again ([`OwnRuntime`]), one test at a time.
//! The other process of the invalidation tests is this test binary running `other_process`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;

use common::{await_invalidation, block_on, stats_of, OtherProcess, OwnRuntime};
use tiered::deadpool_postgres::{Manager, ManagerConfig, Pool};
use tiered::{tiered_cached, BackendError, Runtime};
use tiered_testkit::PgServer;

/// In every URL, so that tests can check that no message shows it (the server trusts every
/// connection that gets past `pg_hba.conf`, so it is never checked).
const PASSWORD: &str = "pw-never-shown";

const OTHER_URL_VAR: &str = "TIERED_TLS_OTHER_URL";
const OTHER_TABLE_VAR: &str = "TIERED_TLS_OTHER_TABLE";
/// Leads each line the other process answers with.
const OTHER: &str = "other-process: ";

fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::start_tls_only().unwrap_or_else(|e| panic!("{e}")))
}

/// The server's URL, with the password and `params`.
fn url(params: &str) -> String {
    let url = format!("postgres://postgres:{PASSWORD}@{}/postgres", server().host_port());
    if params.is_empty() {
        url
    } else {
        format!("{url}?{params}")
    }
}

fn ca() -> String {
    server().tls().expect("TLS files").ca().display().to_string()
}

fn wrong_ca() -> String {
    server()
        .tls()
        .expect("TLS files")
        .wrong_ca()
        .display()
        .to_string()
}

fn verify_full_url() -> String {
    url(&format!("sslmode=verify-full&sslrootcert={}", ca()))
}

/// The first column of the first row of `statement`, run over the server's Unix socket.
async fn count(statement: &str) -> i64 {
    let conninfo = server().socket_conninfo().expect("a throwaway cluster");
    tiered_testkit::sql(&conninfo, statement)
        .await
        .unwrap_or_else(|e| panic!("{e}"))[0]
        .get(0)
}

/// How many invalidation listeners of process `pid` are connected over TLS.
async fn listeners_over_tls(pid: u32) -> i64 {
    count(&format!(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'tiered-listener-{pid}' AND s.ssl"
    ))
    .await
}

/// The error that installing with `url` fails with.
fn install_error(url: &str) -> BackendError {
    common::install_error(|builder| builder.postgres_url(url))
}

fn assert_says(err: &BackendError, expected: &[&str]) {
    assert!(matches!(err, BackendError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    for part in expected {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert!(
        !format!("{err} {err:?}").contains(PASSWORD),
        "the password shows in: {err:?}"
    );
}

static VALUE_RUNS: AtomicU64 = AtomicU64::new(0);

#[tiered_cached(name = "tls_value")]
async fn value(k: u64) -> u64 {
    VALUE_RUNS.fetch_add(1, SeqCst);
    k * 10
}

static SHARED_RUNS: AtomicU64 = AtomicU64::new(0);

/// How many times the body has run in this process, this run included.
#[tiered_cached(name = "tls_shared")]
async fn shared(_k: u64) -> u64 {
    SHARED_RUNS.fetch_add(1, SeqCst) + 1
}

/// A value computed once is read back from L2 after L1 is cleared, and its row is in the table.
fn l2_round_trip(installed: &OwnRuntime) {
    block_on(async {
        tiered::clear_l1();
        let (runs, l2_hits) = (VALUE_RUNS.load(SeqCst), stats_of("tls_value").l2_hits);
        assert_eq!(value(7).await, 70);
        tiered::clear_l1();
        assert_eq!(value(7).await, 70);
        assert_eq!(VALUE_RUNS.load(SeqCst), runs + 1, "the body ran once");
        assert_eq!(
            stats_of("tls_value").l2_hits,
            l2_hits + 1,
            "the second call was an L2 hit"
        );
        let table = &installed.table;
        let rows = count(&format!(
            "SELECT count(*) FROM {table} WHERE function = 'tls_value' AND value IS NOT NULL"
        ))
        .await;
        assert_eq!(rows, 1);
        assert_eq!(listeners_over_tls(std::process::id()).await, 1);
    });
}

/// An invalidation made here evicts the entry from the L1 of another process, whose listener
/// connected with `url`.
fn invalidation_reaches_another_process(installed: &OwnRuntime, url: &str) {
    let mut other = start_other_process(url, &installed.table);
    assert_eq!(block_on(listeners_over_tls(other.id())), 1);
    block_on(invalidate_shared(1)).expect("invalidate over TLS");
    assert_eq!(
        other.answer(),
        "ran 2",
        "the other process evicted its entry and ran the body again"
    );
}

#[test]
fn sslmode_require_round_trips_through_l2_and_carries_invalidations_to_another_process() {
    let url = url("sslmode=require");
    let installed = OwnRuntime::install("tls", |builder| builder.postgres_url(&url));
    l2_round_trip(&installed);
    invalidation_reaches_another_process(&installed, &url);
}

#[test]
fn sslmode_verify_full_round_trips_through_l2_and_carries_invalidations_to_another_process() {
    let url = verify_full_url();
    let installed = OwnRuntime::install("tls", |builder| builder.postgres_url(&url));
    l2_round_trip(&installed);
    invalidation_reaches_another_process(&installed, &url);
}

#[test]
fn without_sslmode_prefer_finds_tls_on_a_tls_only_server() {
    let installed = OwnRuntime::install("tls", |builder| builder.postgres_url(url("")));
    l2_round_trip(&installed);
}

#[test]
fn verify_ca_checks_the_chain_but_not_the_host_name() {
    // A name the certificate does not have, for the same server (hostaddr: no DNS look-up).
    let port = server().port();
    let elsewhere = |params: String| {
        format!("postgres://postgres:{PASSWORD}@db.invalid:{port}/postgres?hostaddr=127.0.0.1&{params}")
    };
    let err = install_error(&elsewhere(format!("sslmode=verify-full&sslrootcert={}", ca())));
    assert_says(
        &err,
        &[
            &format!("TLS handshake with db.invalid:{port} failed"),
            "certificate not valid for this host name",
        ],
    );
    let err = install_error(&elsewhere(format!(
        "sslmode=verify-ca&sslrootcert={}",
        wrong_ca()
    )));
    assert_says(&err, &["certificate not trusted"]);

    let verify_ca = elsewhere(format!("sslmode=verify-ca&sslrootcert={}", ca()));
    let installed = OwnRuntime::install("tls", |builder| builder.postgres_url(&verify_ca));
    l2_round_trip(&installed);
}

#[test]
fn a_wrong_ca_is_a_tls_error_naming_the_host_and_what_failed() {
    let wrong_ca = wrong_ca();
    // As libpq: with sslrootcert, require checks the chain as verify-ca does.
    for mode in ["verify-full", "require"] {
        let err = install_error(&url(&format!("sslmode={mode}&sslrootcert={wrong_ca}")));
        assert_says(
            &err,
            &[
                &format!("TLS handshake with {} failed", server().host_port()),
                "certificate not trusted",
                &format!("sslmode={mode}, sslrootcert={wrong_ca}"),
            ],
        );
    }
}

#[test]
fn sslmode_disable_on_a_tls_only_server_is_an_error_that_says_tls_is_needed() {
    let err = install_error(&url("sslmode=disable"));
    assert_says(
        &err,
        &[
            server().host_port(),
            "no TLS was tried (sslmode=disable)",
            "use sslmode=require",
        ],
    );
}

#[test]
fn with_postgres_pool_the_listener_takes_its_tls_settings_from_listen_url() {
    // The pool goes over the Unix socket, without TLS; only listen_url can bring TLS to the
    // listener, which connects over TCP.
    let conninfo = server().socket_conninfo().expect("a throwaway cluster");
    let manager = Manager::from_config(
        conninfo.parse().expect("the socket's connection string"),
        tokio_postgres::NoTls,
        ManagerConfig::default(),
    );
    let pool = Pool::builder(manager).max_size(4).build().expect("a pool");
    let listen_url = verify_full_url();
    let installed = OwnRuntime::install("tls", |builder| {
        builder.postgres_pool(pool).listen_url(&listen_url)
    });
    l2_round_trip(&installed);
    invalidation_reaches_another_process(&installed, &listen_url);
}

/// Not a test on its own: the invalidation tests start it as their other process.
#[test]
#[ignore = "the other process of the invalidation tests, which start it themselves"]
fn other_process() {
    let url = std::env::var(OTHER_URL_VAR).expect("started by an invalidation test");
    let table = std::env::var(OTHER_TABLE_VAR).expect("started by an invalidation test");
    block_on(async {
        Runtime::builder()
            .postgres_url(&url)
            .table(&table)
            .install()
            .await
            .expect("the other process installs over TLS");
        await_invalidation(OTHER, "tls_shared", || shared(1)).await;
    });
}

/// Starts the other process and waits until it has installed and cached `shared(1)` in L1.
fn start_other_process(url: &str, table: &str) -> OtherProcess {
    let env = [(OTHER_URL_VAR, url), (OTHER_TABLE_VAR, table)];
    let mut other = OtherProcess::start("other_process", &env, OTHER);
    assert_eq!(other.answer(), "ready");
    other
}
