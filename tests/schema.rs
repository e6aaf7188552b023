//! The schema under the operator's control: tables made by an admin from `schema_sql()` serve
//! a role with table privileges only (`create_schema(false)`), which cannot create them;
//! install names what existing tables lack; `unlogged(true)` makes the cache table alone
//! UNLOGGED; installing on existing tables sends no NOTICE.
//!
//! Each test installs the runtime and shuts it down again ([`Installed`]), one at a time.

mod common;

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use common::{block_on, eventually, query_i64, session, stats_of};
use tiered::{tiered_cached, BackendError, Runtime, RuntimeBuilder};
use tiered_testkit::{unique_name, PgServer};

/// The test role's password: a server that checks passwords takes it, the harness's (trust)
/// ignores it.
const PASSWORD: &str = "least-privilege";

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The runtime as a test installed it; shut down when dropped, even by a failing test.
struct Installed;

impl Installed {
    fn new(builder: RuntimeBuilder) -> Installed {
        block_on(builder.install()).unwrap_or_else(|e| panic!("install: {e}"));
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        block_on(tiered::shutdown());
    }
}

/// The error that installing with `builder` fails with.
fn install_error(builder: RuntimeBuilder) -> BackendError {
    match block_on(builder.install()) {
        Err(err) => err,
        Ok(()) => {
            block_on(tiered::shutdown());
            panic!("install succeeded");
        }
    }
}

/// Runs `statements` on the harness's server as its superuser.
fn as_admin(statements: &str) {
    block_on(async {
        session(PgServer::shared().url())
            .await
            .batch_execute(statements)
            .await
            .unwrap_or_else(|e| panic!("{statements}: {e}"));
    });
}

/// The harness's server as `role`.
fn url_of(role: &str) -> String {
    let server = PgServer::shared();
    let config: tokio_postgres::Config = server.url().parse().expect("the server's URL");
    let database = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{role}:{PASSWORD}@{}/{database}", server.host_port())
}

#[tiered_cached(name = "least")]
async fn least(k: u64) -> u64 {
    k
}

#[test]
fn a_role_with_only_table_privileges_installs_with_create_schema_false_and_gets_l2_hits() {
    let _serial = serial();
    let (schema, role, table) = (unique_name("s"), unique_name("r"), unique_name("t"));
    let builder = || {
        Runtime::builder()
            .postgres_url(url_of(&role))
            .table(&table)
            .namespace("least")
            .l2_max_rows(5)
            .sweep_interval(Duration::from_millis(50))
            .l2_timeout(Duration::from_secs(5))
    };
    // The admin's migration: the role may use the schema and the tables, not create in it.
    as_admin(&format!(
        "CREATE SCHEMA {schema};
         CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}';
         GRANT USAGE ON SCHEMA {schema} TO {role};
         ALTER ROLE {role} SET search_path = {schema};
         SET search_path = {schema};
         {ddl}
         GRANT SELECT, INSERT, UPDATE, DELETE ON {table}, {table}_epochs TO {role};",
        ddl = builder().schema_sql()
    ));
    let values = format!("SELECT count(*) FROM {schema}.{table} WHERE value IS NOT NULL");
    let values = || async { query_i64(&values).await[0] };

    let installed = Installed::new(builder().create_schema(false));
    let (before, evictions) = (stats_of("least"), tiered::l2_evictions());
    block_on(async {
        for k in 0..20 {
            least(k).await;
        }
    });
    // The sweeper, as the role, evicts down to l2_max_rows.
    block_on(eventually("the role's sweeper did not evict", || async {
        values().await <= 5 && tiered::l2_evictions() - evictions >= 15
    }));
    block_on(async {
        tiered::clear_l1();
        assert_eq!(least(19).await, 19);
        assert_eq!(stats_of("least").l2_hits - before.l2_hits, 1, "an L2 hit");
        invalidate_least(19).await.expect("invalidate as the role");
        invalidate_all_least().await.expect("invalidate_all as the role");
    });
    block_on(eventually(
        "the role's sweeper did not delete dead-epoch rows",
        || async { values().await == 0 },
    ));
    assert_eq!(stats_of("least").backend_errors, before.backend_errors);
    drop(installed);

    // The same role may not run the DDL: a clear permission error that says what to do.
    let err = install_error(builder());
    let message = err.to_string();
    assert!(matches!(err, BackendError::Query { .. }), "{err:?}");
    for part in [
        &format!("permission denied for schema {schema}"),
        "SQLSTATE 42501",
        "create_schema(false)",
        "schema_sql()",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    as_admin(&format!("DROP SCHEMA {schema} CASCADE; DROP ROLE {role};"));
}

#[test]
fn create_schema_false_names_what_is_missing_and_creates_nothing() {
    let _serial = serial();
    let table = unique_name("t");
    let builder = || {
        Runtime::builder()
            .postgres_url(PgServer::shared().url())
            .table(&table)
            .l2_max_rows(10)
            .create_schema(false)
    };
    let err = install_error(builder());
    assert!(matches!(err, BackendError::InvalidConfig(_)), "{err:?}");
    for part in [
        format!("table {table} does not exist"),
        format!("table {table}_epochs does not exist"),
    ] {
        assert!(err.to_string().contains(&part), "{part:?} missing from: {err}");
    }
    let tables = format!("SELECT count(*) FROM pg_class WHERE relname IN ('{table}', '{table}_epochs')");
    assert_eq!(
        block_on(query_i64(&tables)),
        [0],
        "create_schema(false) created a table"
    );

    as_admin(&format!(
        "{ddl} ALTER TABLE {table} DROP COLUMN updated_at; DROP TABLE {table}_epochs;",
        ddl = builder().schema_sql()
    ));
    let err = install_error(builder());
    for part in [
        format!("table {table} lacks column updated_at timestamp with time zone"),
        format!("table {table} lacks an index on (namespace, updated_at) (for l2_max_rows)"),
        format!("table {table}_epochs does not exist"),
    ] {
        assert!(err.to_string().contains(&part), "{part:?} missing from: {err}");
    }
    assert!(!err.to_string().contains("lacks column id"), "{err}");
}

#[test]
fn unlogged_makes_the_cache_table_unlogged_and_keeps_the_epochs_logged() {
    let _serial = serial();
    let table = unique_name("t");
    let builder = Runtime::builder()
        .postgres_url(PgServer::shared().url())
        .table(&table)
        .unlogged(true);
    assert!(builder
        .schema_sql()
        .starts_with(&format!("CREATE UNLOGGED TABLE IF NOT EXISTS {table} (")));
    let _installed = Installed::new(builder);
    let persistence = |relation: String| {
        let rows = block_on(tiered_testkit::sql(
            PgServer::shared().url(),
            &format!("SELECT relpersistence::text FROM pg_class WHERE oid = '{relation}'::regclass"),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        rows[0].get::<_, String>(0)
    };
    assert_eq!(persistence(table.clone()), "u");
    assert_eq!(persistence(format!("{table}_epochs")), "p");
}

/// Keeps what tokio-postgres logs: it logs each NOTICE a connection receives at `info`.
struct Captured(Mutex<Vec<String>>);

impl log::Log for Captured {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("tokio_postgres")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            lines.push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<&'static Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Box::leak(Box::new(Captured(Mutex::new(Vec::new()))));
        log::set_logger(captured).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Info);
        captured
    })
}

fn take_captured() -> Vec<String> {
    std::mem::take(&mut *captured().0.lock().unwrap_or_else(PoisonError::into_inner))
}

#[test]
fn installing_on_existing_tables_sends_no_notice() {
    let _serial = serial();
    captured();
    // A NOTICE on a connection the way the pool drives them shows up here.
    block_on(async {
        let (client, connection) = tokio_postgres::connect(PgServer::shared().url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        let driver = tokio::spawn(connection);
        client
            .batch_execute("DO $$ BEGIN RAISE NOTICE 'tiered-probe'; END $$")
            .await
            .expect("raise a notice");
        drop(client);
        driver.await.expect("driver").expect("connection");
    });
    assert_eq!(take_captured(), ["NOTICE: tiered-probe"]);

    let table = unique_name("t");
    for _ in 0..2 {
        drop(Installed::new(
            Runtime::builder()
                .postgres_url(PgServer::shared().url())
                .table(&table)
                .l2_max_rows(10),
        ));
    }
    assert_eq!(take_captured(), Vec::<String>::new());
}
