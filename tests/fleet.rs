//! `stampede = "fleet"` across processes on one PostgreSQL: four processes (this test binary
//! running the ignored `fleet_member` test), 50 callers each, one cold key. Each run of a body
//! is a row of `<table>_runs`, counted with SQL; the members start together behind a lock
//! this process holds on `<table>_gate` until all of them wait for it.

mod common;

use std::sync::{MutexGuard, OnceLock};
use std::time::Duration;

use common::{block_on, eventually, one_runtime_at_a_time, session, stats_of, OtherProcess, OwnRuntime};
use tiered::{tiered_cached, Runtime};
use tiered_testkit::{PgBouncer, PgServer};

/// L2's URL in a member: the server's, or the pooler's.
const L2_VAR: &str = "TIERED_FLEET_L2_URL";
/// The server's URL: the listener's, and the runs' and the gate's.
const SERVER_VAR: &str = "TIERED_FLEET_SERVER_URL";
const TABLE_VAR: &str = "TIERED_FLEET_TABLE";
/// `cold` or `crash`: the function the member's callers call.
const FUNCTION_VAR: &str = "TIERED_FLEET_FUNCTION";
/// Leads each line a member answers with.
const MEMBER: &str = "fleet-member: ";

const PROCESSES: usize = 4;
const CALLERS: usize = 50;
/// `crash`'s lease.
const LEASE: Duration = Duration::from_secs(3);

/// The session bodies record their runs on, and the runs' table.
static RUNS: OnceLock<(tokio_postgres::Client, String)> = OnceLock::new();

/// The table of the body's runs.
fn runs_ddl(table: &str) -> String {
    format!("CREATE TABLE {table}_runs (pid bigint NOT NULL, started timestamptz NOT NULL);")
}

/// Records a run of a body (this process's id, the server's clock), takes `duration`, and
/// returns this process's id: every caller learns which process computed its value.
async fn run_body(duration: Duration) -> u64 {
    let (client, table) = RUNS.get().expect("a member records its runs");
    client
        .execute(
            &format!("INSERT INTO {table} VALUES ($1, clock_timestamp())"),
            &[&i64::from(std::process::id())],
        )
        .await
        .expect("record a run");
    tokio::time::sleep(duration).await;
    u64::from(std::process::id())
}

#[tiered_cached(name = "fleet_cold", stampede = "fleet")]
async fn cold(_k: u64) -> u64 {
    run_body(Duration::from_millis(500)).await
}

#[tiered_cached(name = "fleet_crash", stampede = "fleet(3s)")]
async fn crash(_k: u64) -> u64 {
    run_body(Duration::from_secs(1)).await
}

/// Not a test on its own: a member of the fleet the tests start. Installs its runtime, answers
/// "ready", waits at the gate, calls its function from 50 tasks at once, and answers with the
/// value they all got and its counts.
#[test]
#[ignore = "a member of the fleet tests, which start it themselves"]
fn fleet_member() {
    let var = |name| std::env::var(name).expect("started by a fleet test");
    let (server, table, function) = (var(SERVER_VAR), var(TABLE_VAR), var(FUNCTION_VAR));
    block_on(async {
        let l2 = var(L2_VAR);
        Runtime::builder()
            .transaction_pooler(l2 != server)
            .postgres_url(l2)
            .listen_url(&server)
            .table(&table)
            .install()
            .await
            .expect("a member installs");
        let gate = session(&server).await;
        let _ = RUNS.set((session(&server).await, format!("{table}_runs")));
        println!("{MEMBER}ready");
        gate.batch_execute(&format!("SELECT FROM {table}_gate"))
            .await
            .expect("pass the gate");
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let function = function.clone();
                tokio::spawn(async move {
                    match function.as_str() {
                        "cold" => cold(1).await,
                        _ => crash(1).await,
                    }
                })
            })
            .collect();
        let mut values = Vec::new();
        for caller in callers {
            values.push(caller.await.expect("a caller"));
        }
        values.dedup();
        assert_eq!(values.len(), 1, "every caller got the same value: {values:?}");
        let stats = stats_of(&format!("fleet_{function}"));
        println!(
            "{MEMBER}{} {} {} {} {}",
            values[0], stats.misses, stats.fleet_waits, stats.l2_hits, stats.backend_errors
        );
    });
}

/// What a member answered once its callers were done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    /// The id of the process whose value every caller got.
    value: u64,
    misses: u64,
    fleet_waits: u64,
    l2_hits: u64,
    backend_errors: u64,
}

impl Answer {
    fn parse(line: &str) -> Answer {
        let numbers: Vec<u64> = line
            .split(' ')
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("a member's answer: {line:?}"))
            })
            .collect();
        let [value, misses, fleet_waits, l2_hits, backend_errors] = numbers[..] else {
            panic!("a member's answer: {line:?}");
        };
        Answer {
            value,
            misses,
            fleet_waits,
            l2_hits,
            backend_errors,
        }
    }
}

/// A fleet of members calling `function` on a table of their own, held at the gate until
/// [`Fleet::open`].
struct Fleet {
    table: String,
    members: Vec<OtherProcess>,
    /// The session holding the gate's lock, in an open transaction.
    gate: tokio_postgres::Client,
    /// Fleets of several processes each would slow each other down past their timings.
    _serial: MutexGuard<'static, ()>,
}

impl Fleet {
    /// Starts the members with L2 at `l2`, and waits until each waits at the gate.
    fn start(function: &str, l2: &str) -> Fleet {
        let serial = one_runtime_at_a_time();
        let table = tiered_testkit::unique_name("fleet");
        let server = PgServer::shared().url();
        let gate = block_on(async {
            let gate = session(server).await;
            gate.batch_execute(&format!("{} CREATE TABLE {table}_gate ();", runs_ddl(&table)))
                .await
                .expect("create the runs and the gate");
            gate.batch_execute(&format!(
                "BEGIN; LOCK TABLE {table}_gate IN ACCESS EXCLUSIVE MODE;"
            ))
            .await
            .expect("close the gate");
            gate
        });
        let env = [
            (L2_VAR, l2),
            (SERVER_VAR, server),
            (TABLE_VAR, table.as_str()),
            (FUNCTION_VAR, function),
        ];
        let mut members: Vec<OtherProcess> = (0..PROCESSES)
            .map(|_| OtherProcess::start("fleet_member", &env, MEMBER))
            .collect();
        for member in &mut members {
            assert_eq!(member.answer(), "ready");
        }
        let waiting = format!(
            "SELECT count(*) FROM pg_locks WHERE relation = '{table}_gate'::regclass AND NOT granted"
        );
        block_on(eventually("every member waits at the gate", || async {
            common::query_i64(&waiting).await == [PROCESSES as i64]
        }));
        Fleet {
            table,
            members,
            gate,
            _serial: serial,
        }
    }

    /// Lets every member's callers go at once.
    fn open(&self) {
        block_on(self.gate.batch_execute("COMMIT")).expect("open the gate");
    }

    /// The runs of the body so far: the process and the server's clock (seconds since the
    /// epoch), in order.
    async fn runs(&self) -> Vec<(u64, f64)> {
        let rows = self
            .gate
            .query(
                &format!(
                    "SELECT pid, EXTRACT(EPOCH FROM started)::float8 FROM {}_runs ORDER BY started",
                    self.table
                ),
                &[],
            )
            .await
            .expect("read the runs");
        rows.iter()
            .map(|row| (row.get::<_, i64>(0) as u64, row.get(1)))
            .collect()
    }

    fn answers(&mut self) -> Vec<Answer> {
        self.members
            .iter_mut()
            .map(|member| Answer::parse(&member.answer()))
            .collect()
    }
}

/// Four members of 50 callers each, all at once: the body runs once, in one member, and every
/// caller gets its value; the others waited for it and found it in L2.
fn the_body_runs_once_in_the_fleet(l2: &str) {
    let mut fleet = Fleet::start("cold", l2);
    fleet.open();
    let answers = fleet.answers();
    let runs = block_on(fleet.runs());
    eprintln!("body runs {}, members {answers:?}", runs.len());
    assert_eq!(runs.len(), 1, "the body ran once in the fleet: {runs:?}");
    let leader = runs[0].0;
    for answer in &answers {
        assert_eq!(
            answer.value, leader,
            "every caller got the leader's value: {answers:?}"
        );
        assert_eq!(answer.backend_errors, 0, "{answers:?}");
    }
    let led: Vec<&Answer> = answers.iter().filter(|answer| answer.misses == 1).collect();
    assert_eq!(led.len(), 1, "{answers:?}");
    let followers = answers.iter().filter(|answer| answer.misses == 0);
    assert!(
        followers.clone().all(|answer| answer.l2_hits == 1),
        "the others found its value in L2: {answers:?}"
    );
    assert!(
        followers.map(|answer| answer.fleet_waits).sum::<u64>() >= 1,
        "some member arrived while the body ran and waited: {answers:?}"
    );
}

#[test]
fn four_processes_of_fifty_callers_run_a_cold_keys_body_once() {
    the_body_runs_once_in_the_fleet(PgServer::shared().url());
}

/// The lease's statements are single autocommit statements: a transaction-mode pooler carries
/// them as it does every other.
#[test]
fn through_a_transaction_mode_pooler_too() {
    the_body_runs_once_in_the_fleet(PgBouncer::shared().url());
}

#[test]
fn when_the_computing_process_is_killed_another_computes_once_the_lease_expired() {
    let mut fleet = Fleet::start("crash", PgServer::shared().url());
    fleet.open();
    block_on(eventually("a member runs the body", || async {
        !fleet.runs().await.is_empty()
    }));
    let (killed, started) = block_on(fleet.runs())[0];
    let at = fleet
        .members
        .iter()
        .position(|member| u64::from(member.id()) == killed)
        .expect("the leader is a member");
    drop(fleet.members.swap_remove(at));
    let answers = fleet.answers();
    let runs = block_on(fleet.runs());
    eprintln!("body runs {runs:?}, members {answers:?}");
    assert_eq!(runs.len(), 2, "the killed run and one more: {runs:?}");
    let (successor, took_over) = runs[1];
    assert_ne!(successor, killed);
    // The lease was taken a read before the first run started.
    let after = took_over - started;
    assert!(
        after >= LEASE.as_secs_f64() - 0.25 && after < LEASE.as_secs_f64() + 2.0,
        "the next run started {after} s after the first"
    );
    for answer in &answers {
        assert_eq!(answer.value, successor, "{answers:?}");
    }
    assert_eq!(
        answers.iter().map(|answer| answer.misses).sum::<u64>(),
        1,
        "{answers:?}"
    );
}

/// Tables made before leases existed: install does not ask for the lease table, and a fleet
/// function then computes in each process, without errors.
#[test]
fn without_the_lease_table_install_succeeds_and_the_function_computes_per_process() {
    let table = tiered_testkit::unique_name("fleet");
    let ddl = Runtime::builder().table(&table).schema_sql();
    block_on(async {
        let client = session(PgServer::shared().url()).await;
        client
            .batch_execute(&format!(
                "{ddl}\nDROP TABLE {table}_leases;\n{}",
                runs_ddl(&table)
            ))
            .await
            .expect("the tables, without leases");
        // This process runs no member: the runs are this test's alone.
        let _ = RUNS.set((client, format!("{table}_runs")));
    });
    // The table made above, in place of the runtime's own.
    let _installed = OwnRuntime::install("fleet", |builder| {
        builder
            .postgres_url(PgServer::shared().url())
            .table(&table)
            .create_schema(false)
    });
    let before = stats_of("fleet_cold");
    let pid = u64::from(std::process::id());
    block_on(async {
        assert_eq!(cold(1).await, pid);
        assert_eq!(cold(2).await, pid);
        tiered::clear_l1();
        assert_eq!(cold(1).await, pid, "from L2");
    });
    let after = stats_of("fleet_cold");
    assert_eq!(
        (
            after.misses - before.misses,
            after.l2_hits - before.l2_hits,
            after.backend_errors - before.backend_errors
        ),
        (2, 1, 0)
    );
}
