//! Integration tests of the harness against a real PostgreSQL server.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tiered_testkit::{sql, unique_name, FaultProxy, PgBouncer, PgServer, ProxyMode};
use tokio::time::timeout;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Makes the `watchdog_child` test start a server and wait to be killed.
const WATCHDOG_CHILD_VAR: &str = "TIERED_TESTKIT_WATCHDOG_CHILD";

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn select_one(client: &Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client.query_one("SELECT 1", &[]).await?.get(0))
}

/// The first column of each row `query` returns, through the simple query protocol (the only one
/// pgbouncer's admin console speaks, and one that needs no named statement).
async fn simple_column(client: &Client, query: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let messages = client.simple_query(query).await?;
    Ok(messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or_default().to_string()),
            _ => None,
        })
        .collect())
}

async fn backend_pid(client: &Client, query: &str) -> Result<String, tokio_postgres::Error> {
    Ok(simple_column(client, query).await?.remove(0))
}

/// Polls `check` until it holds, failing the test after `limit`.
async fn eventually<F: Future<Output = bool>>(what: &str, limit: Duration, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn proxy_to_shared() -> (FaultProxy, String) {
    let pg = PgServer::shared();
    let proxy = FaultProxy::start(pg.host_port()).await.expect("proxy starts");
    let url = proxy.url_for(pg.url());
    (proxy, url)
}

#[tokio::test]
async fn shared_server_answers_queries() {
    let pg = PgServer::shared();
    let client = connect(pg.url()).await.expect("connects");
    assert_eq!(select_one(&client).await.unwrap(), 1);
    let rows = sql(pg.url(), "SELECT 40 + 2").await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 42);
    assert!(pg.url().ends_with(&format!(":{}/postgres", pg.port())) || pg.is_external());
}

#[tokio::test]
async fn sql_reports_the_failing_statement() {
    let err = sql(PgServer::shared().url(), "SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
}

#[tokio::test]
async fn unique_names_are_distinct_valid_identifiers() {
    let names: Vec<String> = ["cache", "My-Table!", "9lives", "", &"x".repeat(100)]
        .iter()
        .flat_map(|prefix| (0..200).map(move |_| unique_name(prefix)))
        .collect();
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), names.len());
    for name in &names {
        assert!(name.len() <= 63, "{name} is too long");
        assert!(
            name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_'),
            "{name}"
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
    }
    assert!(unique_name("cache").starts_with("cache_"));
    assert!(unique_name("My-Table!").starts_with("my_table__"));

    // PostgreSQL takes them unquoted and keeps them whole.
    let url = PgServer::shared().url();
    let table = unique_name(&"x".repeat(100));
    sql(url, &format!("CREATE TABLE {table} (id int)")).await.unwrap();
    let found = sql(
        url,
        &format!("SELECT count(*) FROM pg_tables WHERE tablename = '{table}'"),
    )
    .await
    .unwrap();
    assert_eq!(found[0].get::<_, i64>(0), 1);
    sql(url, &format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test]
async fn stop_refuses_connections_until_start_again() {
    let pg = PgServer::start().expect("server starts");
    if pg.is_external() {
        assert!(pg.stop().is_err() && pg.start_again().is_err());
        return;
    }
    let client = connect(pg.url()).await.expect("connects");
    assert_eq!(select_one(&client).await.unwrap(), 1);

    pg.stop().expect("stops");
    assert!(select_one(&client).await.is_err(), "open connection must break");
    assert!(connect(pg.url()).await.is_err(), "new connection must be refused");
    assert!(pg.stop().is_err(), "stopping a stopped server is an error");

    pg.start_again().expect("starts again");
    let client = connect(pg.url()).await.expect("connects after restart");
    assert_eq!(select_one(&client).await.unwrap(), 1);

    let dir = pg.log_path().unwrap().parent().unwrap().to_path_buf();
    assert!(dir.is_dir());
    drop(pg);
    assert!(!dir.exists(), "drop removes {}", dir.display());
}

#[tokio::test]
async fn proxy_passes_and_counts_connections() {
    let (proxy, url) = proxy_to_shared().await;
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    assert!(url.contains(&proxy.addr().to_string()));

    let clients = [connect(&url).await.unwrap(), connect(&url).await.unwrap()];
    for client in &clients {
        assert_eq!(select_one(client).await.unwrap(), 1);
    }
    assert_eq!(proxy.connections_accepted(), 2);
    assert_eq!(proxy.open_connections(), 2);

    drop(clients);
    eventually("clients are closed", Duration::from_secs(5), || async {
        proxy.open_connections() == 0
    })
    .await;
    assert_eq!(proxy.connections_accepted(), 2);
}

#[tokio::test]
async fn refuse_closes_new_and_open_connections() {
    let (proxy, url) = proxy_to_shared().await;
    let client = connect(&url).await.unwrap();
    assert_eq!(select_one(&client).await.unwrap(), 1);

    proxy.set_mode(ProxyMode::Refuse);
    assert!(select_one(&client).await.is_err(), "open connection must be cut");
    assert!(connect(&url).await.is_err(), "new connection must fail");
    assert_eq!(proxy.connections_accepted(), 2);
    eventually(
        "refused connections are closed",
        Duration::from_secs(5),
        || async { proxy.open_connections() == 0 },
    )
    .await;

    proxy.set_mode(ProxyMode::Pass);
    assert_eq!(select_one(&connect(&url).await.unwrap()).await.unwrap(), 1);
}

#[tokio::test]
async fn stall_holds_traffic_until_pass() {
    let (proxy, url) = proxy_to_shared().await;
    let client = connect(&url).await.unwrap();

    proxy.set_mode(ProxyMode::Stall);
    let query = timeout(Duration::from_millis(300), select_one(&client)).await;
    assert!(
        query.is_err(),
        "query on an open connection must not complete while stalled"
    );
    let new = timeout(Duration::from_millis(300), connect(&url)).await;
    assert!(new.is_err(), "connecting must not complete while stalled");
    assert_eq!(proxy.open_connections(), 2, "stalled connections stay open");

    proxy.set_mode(ProxyMode::Pass);
    let fresh = connect(&url).await.unwrap();
    assert_eq!(select_one(&fresh).await.unwrap(), 1);
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let (proxy, url) = proxy_to_shared().await;
    let client = connect(&url).await.unwrap();
    let delay = Duration::from_millis(150);

    proxy.set_mode(ProxyMode::Latency(delay));
    let started = Instant::now();
    client.simple_query("SELECT 1").await.unwrap();
    let elapsed = started.elapsed();
    // One chunk each way, each delayed.
    assert!(elapsed >= 2 * delay, "round trip took only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "round trip took {elapsed:?}");
}

#[tokio::test]
async fn cut_all_closes_open_connections_only() {
    let (proxy, url) = proxy_to_shared().await;
    let clients = [connect(&url).await.unwrap(), connect(&url).await.unwrap()];

    proxy.cut_all();
    for client in &clients {
        assert!(select_one(client).await.is_err(), "open connection must be cut");
    }
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    assert_eq!(select_one(&connect(&url).await.unwrap()).await.unwrap(), 1);
}

#[tokio::test]
async fn dropping_the_proxy_closes_everything() {
    let (proxy, url) = proxy_to_shared().await;
    let client = connect(&url).await.unwrap();
    let addr = proxy.addr();

    drop(proxy);
    assert!(
        select_one(&client).await.is_err(),
        "open connection must be closed"
    );
    eventually("the listener is closed", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
}

#[tokio::test]
async fn shared_pgbouncer_reaches_the_shared_server() {
    let pg = PgServer::shared();
    let through = connect(PgBouncer::shared().url()).await.expect("connects");
    let direct = connect(pg.url()).await.expect("connects");
    let query = "SELECT current_user || '@' || current_database() || ':' || current_setting('port')";
    assert_eq!(
        simple_column(&through, query).await.unwrap(),
        simple_column(&direct, query).await.unwrap()
    );
}

/// What makes a transaction pooler hard for a client: a server connection, with the session
/// state a client left on it, goes to whichever client starts the next transaction.
#[tokio::test]
async fn pgbouncer_hands_server_sessions_to_other_clients_between_transactions() {
    let bouncer = PgBouncer::start(PgServer::shared()).expect("pgbouncer starts");
    let admin = connect(bouncer.admin_url()).await.expect("admin console");
    let config = admin.simple_query("SHOW CONFIG").await.unwrap();
    let pool_mode = config.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) if row.get(0) == Some("pool_mode") => row.get(1),
        _ => None,
    });
    assert_eq!(pool_mode, Some("transaction"));

    let (a, b) = (
        connect(bouncer.url()).await.unwrap(),
        connect(bouncer.url()).await.unwrap(),
    );
    // A fresh pgbouncer has one server connection, idle between A's statements.
    let first = backend_pid(&a, "SELECT pg_backend_pid()").await.unwrap();
    a.simple_query("PREPARE tiered_pid AS SELECT pg_backend_pid()")
        .await
        .unwrap();
    b.simple_query("BEGIN").await.unwrap();
    assert_eq!(
        backend_pid(&b, "EXECUTE tiered_pid").await.unwrap(),
        first,
        "B's transaction runs on A's server connection, with A's prepared statement"
    );
    // While B's transaction holds it, A is served by another server connection.
    let err = a.simple_query("EXECUTE tiered_pid").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_SQL_STATEMENT_NAME), "{err}");
    assert_ne!(backend_pid(&a, "SELECT pg_backend_pid()").await.unwrap(), first);
    b.simple_query("COMMIT").await.unwrap();

    let url = bouncer.url().to_string();
    let dir = bouncer.log_path().parent().unwrap().to_path_buf();
    drop(bouncer);
    assert!(connect(&url).await.is_err(), "dropping pgbouncer stops it");
    assert!(!dir.exists(), "drop removes {}", dir.display());
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> &str {
    let after_user = url.split_once('@').map_or(url, |(_, rest)| rest);
    after_user.split('/').next().unwrap()
}

/// Not a test on its own: `watchdog_cleans_up_after_sigkill` runs it in a child process.
#[test]
#[ignore = "helper process for watchdog_cleans_up_after_sigkill"]
fn watchdog_child() {
    if std::env::var_os(WATCHDOG_CHILD_VAR).is_none() {
        return;
    }
    let pg = PgServer::shared();
    println!(
        "SERVER {} {}",
        pg.host_port(),
        pg.log_path().unwrap().parent().unwrap().display()
    );
    let bouncer = PgBouncer::shared();
    println!(
        "BOUNCER {} {}",
        host_port(bouncer.url()),
        bouncer.log_path().parent().unwrap().display()
    );
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn watchdog_cleans_up_after_sigkill() {
    if PgServer::shared().is_external() {
        eprintln!("external server: no throwaway cluster, so no watchdog to test");
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["watchdog_child", "--exact", "--ignored", "--nocapture"])
        .env(WATCHDOG_CHILD_VAR, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // "SERVER|BOUNCER <host:port> <directory>", one line each.
    let reported: Vec<(String, std::path::PathBuf)> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .filter_map(|line| {
            let rest = line
                .strip_prefix("SERVER ")
                .or_else(|| line.strip_prefix("BOUNCER "))?;
            let (addr, dir) = rest.split_once(' ')?;
            Some((addr.to_string(), dir.into()))
        })
        .take(2)
        .collect();
    assert_eq!(reported.len(), 2, "child reports its server and pgbouncer");
    for (addr, _) in &reported {
        assert!(TcpStream::connect(addr).is_ok(), "child's {addr} is up");
    }

    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for (addr, dir) in &reported {
        while dir.exists() || TcpStream::connect(addr).is_ok() {
            assert!(
                Instant::now() < deadline,
                "watchdog did not clean up {} ({addr})",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
