//! Through a transaction-mode pgbouncer (the harness's, which behaves like Debian's 1.18, named
//! prepared statements untracked): L2 with `transaction_pooler(true)`, the switch to unnamed
//! statements without it, and a listener given the pooler's URL.
//!
//! Set-up and read-back SQL goes to the server itself, never through the pooler. Each test
//! installs the runtime and shuts it down again ([`OwnRuntime`]), one test at a time. The other
//! process of the invalidation test is this test binary running `other_process`.

mod common;

use std::fmt::Debug;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Once;

use common::{await_invalidation, block_on, install_error, stats_of, OtherProcess, OwnRuntime};
use tiered::{tiered_cached, BackendError, FunctionStats, Runtime};
use tiered_testkit::{PgBouncer, PgServer};
use tracing::field::{Field, Visit};
use tracing::span;

const POOLER_VAR: &str = "TIERED_POOLER_URL";
const SERVER_VAR: &str = "TIERED_POOLER_SERVER_URL";
const TABLE_VAR: &str = "TIERED_POOLER_TABLE";
/// Leads each line the other process answers with.
const OTHER: &str = "other-process: ";

/// Concurrent callers, as many as the pool has connections.
const TASKS: u64 = 16;
const ROUNDS: u64 = 120;
/// More keys than `value` keeps in L1, so that reads reach L2.
const KEYS: u64 = 64;

fn server() -> &'static str {
    PgServer::shared().url()
}

fn pooler() -> &'static str {
    PgBouncer::shared().url()
}

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Every backend error reaches the caller (`on_failure = "error"`).
#[tiered_cached(name = "pooler_value", on_failure = "error", l1_capacity = 16)]
async fn value(k: u64) -> Result<u64, AppError> {
    Ok(k * 10)
}

static SHARED_RUNS: AtomicU64 = AtomicU64::new(0);

/// How many times the body has run in this process, this run included.
#[tiered_cached(name = "pooler_shared")]
async fn shared(_k: u64) -> u64 {
    SHARED_RUNS.fetch_add(1, SeqCst) + 1
}

/// 16 tasks of reads (L1 hits, L2 hits and misses), refreshes and invalidations of `value`,
/// and one invalidation of all its entries, all at once; every answer is checked.
async fn concurrent_calls() {
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let k = (task * 7 + round) % KEYS;
                    match round % 8 {
                        3 => assert_eq!(refresh_value(k).await.expect("refresh"), k * 10),
                        6 => invalidate_value(k).await.expect("invalidate"),
                        _ => assert_eq!(value(k).await.expect("read"), k * 10),
                    }
                    if task == 0 && round == ROUNDS / 2 {
                        invalidate_all_value().await.expect("invalidate all");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task of calls");
    }
}

/// Reads every key with L1 emptied: the keys whose rows are live are L2 hits.
async fn read_every_key_from_l2() {
    tiered::clear_l1();
    for k in 0..KEYS {
        assert_eq!(value(k).await.expect("read"), k * 10);
    }
}

/// How `now` differs from `before`, in the counts these tests look at.
#[derive(Debug, PartialEq, Eq)]
struct Counted {
    l2_hits: u64,
    misses: u64,
    backend_errors: u64,
    short_circuited: u64,
}

fn counted(before: FunctionStats, now: FunctionStats) -> Counted {
    Counted {
        l2_hits: now.l2_hits - before.l2_hits,
        misses: now.misses - before.misses,
        backend_errors: now.backend_errors - before.backend_errors,
        short_circuited: now.short_circuited - before.short_circuited,
    }
}

/// Counts the warnings that name `transaction_pooler(true)`: the runtime gives one when it
/// finds a pooler by itself.
struct SwitchWarnings;

static SWITCH_WARNINGS: AtomicU64 = AtomicU64::new(0);

impl tracing::Subscriber for SwitchWarnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() == tracing::Level::WARN
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct NamesTheOption(bool);
        impl Visit for NamesTheOption {
            fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
                self.0 |=
                    field.name() == "message" && format!("{value:?}").contains("transaction_pooler(true)");
            }
        }
        let mut names = NamesTheOption(false);
        event.record(&mut names);
        if names.0 {
            SWITCH_WARNINGS.fetch_add(1, SeqCst);
        }
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// The warnings naming `transaction_pooler(true)` so far in this process.
fn switch_warnings() -> u64 {
    static SUBSCRIBED: Once = Once::new();
    SUBSCRIBED.call_once(|| {
        tracing::subscriber::set_global_default(SwitchWarnings).expect("the only subscriber");
    });
    SWITCH_WARNINGS.load(SeqCst)
}

/// The server's log from a point on.
struct ServerLog {
    path: PathBuf,
    from: u64,
}

impl ServerLog {
    /// From now on; `None` for an external server, whose log is not at hand.
    fn from_now() -> Option<ServerLog> {
        let path = PgServer::shared().log_path()?.to_path_buf();
        let from = std::fs::metadata(&path).expect("the server's log").len();
        Some(ServerLog { path, from })
    }

    /// The lines logged since that report an error.
    fn errors(&self) -> Vec<String> {
        let mut log = File::open(&self.path).expect("the server's log");
        log.seek(SeekFrom::Start(self.from)).expect("seek");
        BufReader::new(log)
            .lines()
            .map(|line| line.expect("a line of the log"))
            .filter(|line| line.contains("ERROR:"))
            .collect()
    }
}

#[test]
fn with_transaction_pooler_l2_and_invalidations_work_through_pgbouncer_without_one_error() {
    let warnings = switch_warnings();
    let installed = OwnRuntime::install("pooler", |builder| {
        builder
            .postgres_url(pooler())
            .listen_url(server())
            .transaction_pooler(true)
    });
    let log = ServerLog::from_now();
    let before = stats_of("pooler_value");
    block_on(async {
        concurrent_calls().await;
        read_every_key_from_l2().await;
    });
    let counts = counted(before, stats_of("pooler_value"));
    assert_eq!(
        (counts.backend_errors, counts.short_circuited),
        (0, 0),
        "{counts:?}"
    );
    assert!(counts.l2_hits > 0 && counts.misses > 0, "{counts:?}");

    let mut other = OtherProcess::start(
        "other_process",
        &[
            (POOLER_VAR, pooler()),
            (SERVER_VAR, server()),
            (TABLE_VAR, installed.table.as_str()),
        ],
        OTHER,
    );
    assert_eq!(other.answer(), "ready");
    block_on(invalidate_shared(1)).expect("invalidate through the pooler");
    assert_eq!(
        other.answer(),
        "ran 2",
        "the other process evicted its entry and ran the body again"
    );
    drop(other);

    assert_eq!(switch_warnings(), warnings, "nothing to switch");
    match log {
        Some(log) => assert_eq!(
            log.errors(),
            Vec::<String>::new(),
            "no statement failed on the server"
        ),
        None => eprintln!("an external server: its log is not checked"),
    }
}

#[test]
fn without_the_option_the_pooler_is_found_with_one_warning_and_no_caller_sees_an_error() {
    let warnings = switch_warnings();
    let _installed = OwnRuntime::install("pooler", |builder| {
        builder.postgres_url(pooler()).listen_url(server())
    });
    let before = stats_of("pooler_value");
    block_on(concurrent_calls());
    assert_eq!(
        switch_warnings(),
        warnings + 1,
        "one warning naming transaction_pooler(true)"
    );
    let switched = stats_of("pooler_value");
    block_on(read_every_key_from_l2());
    let counts = counted(before, stats_of("pooler_value"));
    assert_eq!(
        (counts.backend_errors, counts.short_circuited),
        (0, 0),
        "{counts:?}"
    );
    assert!(
        counted(switched, stats_of("pooler_value")).l2_hits > 0,
        "L2 hits after the switch"
    );
    assert_eq!(switch_warnings(), warnings + 1, "still one warning");
}

#[test]
fn a_listener_given_the_poolers_url_fails_install_saying_that_listen_needs_the_server() {
    let through_pooler = [
        install_error(|builder| builder.postgres_url(pooler()).transaction_pooler(true)),
        install_error(|builder| builder.postgres_url(server()).listen_url(pooler())),
    ];
    let pooler_at = PgBouncer::shared().url().split('@').nth(1).expect("host:port/db");
    for err in through_pooler {
        assert!(matches!(err, BackendError::InvalidConfig(_)), "{err:?}");
        let message = err.to_string();
        for part in [pooler_at, "LISTEN", "direct connection", "pooler", ".listen_url("] {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
    }
    assert!(
        matches!(block_on(invalidate_all_value()), Err(BackendError::NotConfigured)),
        "nothing stays installed"
    );
}

/// Not a test on its own: the invalidation test starts it as its other process.
#[test]
#[ignore = "the other process of the invalidation test, which starts it itself"]
fn other_process() {
    let var = |name| std::env::var(name).expect("started by the invalidation test");
    block_on(async {
        Runtime::builder()
            .postgres_url(var(POOLER_VAR))
            .listen_url(var(SERVER_VAR))
            .transaction_pooler(true)
            .table(var(TABLE_VAR))
            .install()
            .await
            .expect("the other process installs through the pooler");
        await_invalidation(OTHER, "pooler_shared", || shared(1)).await;
    });
}
