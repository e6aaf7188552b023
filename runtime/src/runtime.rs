//! Start-up and shut-down: `Runtime::builder()…install()` connects L2 for the whole process.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::oneshot;

use crate::backend::L2;
use crate::breaker::{Breaker, BreakerSettings};
use crate::connect::{parse_url, pool_from_config};
use crate::error::BackendError;
use crate::guard::Guarded;
use crate::listener::{self, ListenerSettings};
use crate::policy::Backoff;
use crate::postgres::{PgBackend, PgSettings};
use crate::process::{Installed, PROCESS};
use crate::schema::Schema;
use crate::sweeper;

/// The process-wide tiered runtime: the PostgreSQL L2 shared by every `backend = "pg"`
/// function. Configure it with [`Runtime::builder`].
#[derive(Debug)]
pub struct Runtime {
    _private: (),
}

impl Runtime {
    /// Starts configuring the runtime.
    ///
    /// ```no_run
    /// # async fn start() -> Result<(), tiered::BackendError> {
    /// tiered::Runtime::builder()
    ///     .postgres_url("postgres://app@db.internal:5432/app")
    ///     .namespace("billing")
    ///     .install()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            source: None,
            table: "tiered_cache".to_owned(),
            namespace: String::new(),
            l2_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::DEFAULT,
            breaker: BreakerSettings::DEFAULT,
            max_connections: 16,
            listen_url: None,
            staleness_bound: Duration::from_secs(2),
            sweep_interval: Duration::from_secs(60),
            create_schema: true,
            unlogged: false,
            max_rows: None,
            transaction_pooler: false,
        }
    }
}

enum Source {
    Url(String),
    Pool(Pool),
}

/// Configures and installs the [`Runtime`]. Every setting has a default except the server.
#[must_use = "nothing happens until `.install().await`"]
pub struct RuntimeBuilder {
    source: Option<Source>,
    table: String,
    namespace: String,
    l2_timeout: Duration,
    connect_timeout: Duration,
    backoff: Backoff,
    breaker: BreakerSettings,
    max_connections: usize,
    listen_url: Option<String>,
    staleness_bound: Duration,
    sweep_interval: Duration,
    create_schema: bool,
    unlogged: bool,
    max_rows: Option<u64>,
    transaction_pooler: bool,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("table", &self.table)
            .field("namespace", &self.namespace)
            .field("l2_timeout", &self.l2_timeout)
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// The server, as a `postgres://user:password@host:port/database` URL (or libpq's
    /// `key=value` form). TLS as libpq: `sslmode` (`disable`, `prefer` (the default),
    /// `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file of trusted roots;
    /// without it, the system's), e.g. `?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem`.
    pub fn postgres_url(mut self, url: impl Into<String>) -> Self {
        self.source = Some(Source::Url(url.into()));
        self
    }

    /// The server, as a pool you built (e.g. with TLS). Its connections are used for L2
    /// operations only; half of them (none of a pool of one) are held for L2 reads, which
    /// share them.
    pub fn postgres_pool(mut self, pool: Pool) -> Self {
        self.source = Some(Source::Pool(pool));
        self
    }

    /// The cache table (default `tiered_cache`): a lowercase SQL identifier of at most 48
    /// characters. A second table `<table>_epochs` is created next to it.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// A prefix isolating this application's entries from others' in a shared table
    /// (default: empty).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The most one L2 operation may take, waiting for a pooled connection included
    /// (default 300 ms). A hung server costs a caller at most this, per attempt.
    pub fn l2_timeout(mut self, timeout: Duration) -> Self {
        self.l2_timeout = timeout;
        self
    }

    /// The pause before the first retry under `retry(N)` (default 20 ms); it doubles per retry.
    pub fn retry_base_delay(mut self, delay: Duration) -> Self {
        self.backoff.base = delay;
        self
    }

    /// The longest pause between retries, before jitter (default 1 s).
    pub fn retry_max_delay(mut self, delay: Duration) -> Self {
        self.backoff.max = delay;
        self
    }

    /// After this many consecutive failed L2 operations (default 5), the circuit breaker
    /// opens: L2 is skipped (an `L1Only`/`Retry` call costs no L2 time, an `Error` call fails
    /// at once with [`BackendError::CircuitOpen`]) until one probe succeeds.
    pub fn breaker_threshold(mut self, failures: u32) -> Self {
        self.breaker.threshold = failures.max(1);
        self
    }

    /// How long the open breaker skips L2 before probing (default 1 s), and the cap that
    /// cool-down grows to as probes keep failing (default 30 s).
    pub fn breaker_cooldown(mut self, first: Duration, max: Duration) -> Self {
        self.breaker.cooldown = first;
        self.breaker.max_cooldown = max.max(first);
        self
    }

    /// The server for the invalidation listener's own connection, when the runtime is given a
    /// pool: a pooled connection cannot receive notifications. TLS as for
    /// [`postgres_url`](Self::postgres_url). With `postgres_url`, the listener uses that URL
    /// and this is not needed, unless that URL is a transaction pooler's (see
    /// [`transaction_pooler`](Self::transaction_pooler)): LISTEN needs the server itself.
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// While the invalidation listener is disconnected (other processes' invalidations may be
    /// missed), L1 entries of `backend = "pg"` functions older than this are not served
    /// (default 2 s). On reconnection every such L1 is cleared.
    pub fn max_stale_while_disconnected(mut self, bound: Duration) -> Self {
        self.staleness_bound = bound;
        self
    }

    /// How often expired rows, old tombstones and rows of invalidated epochs are deleted
    /// (default 60 s), in batches of 1,000 with a 5 s statement timeout.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The most connections the pool built from `postgres_url` opens (default 16). Half of
    /// them are held for L2 reads, which share them (tokio-postgres pipelines their queries);
    /// the rest serve writes, invalidations and sweeps.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Whether install creates the tables (default `true`), or only checks them.
    ///
    /// With `true`, every install runs [`schema_sql`](Self::schema_sql) (idempotent:
    /// `CREATE … IF NOT EXISTS`), so the role needs `CREATE` on the schema and must own the
    /// tables once they exist. With `false`, install runs no DDL: it checks, in the catalog,
    /// that both tables exist (in the role's `search_path`) with every column, key and index
    /// tiered uses, and that the role has the privileges below, and fails with
    /// [`BackendError::InvalidConfig`] naming whatever is missing. Create the tables with your
    /// migrations from `schema_sql()`.
    ///
    /// The privileges a role needs in either mode: `USAGE` on the schema; `SELECT`, `INSERT`,
    /// `UPDATE` and `DELETE` on the cache table; `SELECT`, `INSERT` and `UPDATE` on
    /// `<table>_epochs`. `LISTEN`/`NOTIFY` (cross-process invalidation) and the advisory lock
    /// taken while creating the tables need none.
    ///
    /// ```sql
    /// GRANT USAGE ON SCHEMA public TO app;
    /// GRANT SELECT, INSERT, UPDATE, DELETE ON tiered_cache, tiered_cache_epochs TO app;
    /// ```
    pub fn create_schema(mut self, create: bool) -> Self {
        self.create_schema = create;
        self
    }

    /// The DDL that install runs with [`create_schema(true)`](Self::create_schema), for this
    /// builder's table and options ([`unlogged`](Self::unlogged),
    /// [`l2_max_rows`](Self::l2_max_rows)): for a migration tool (sqlx, refinery, Flyway).
    /// Every statement is idempotent (`IF NOT EXISTS`); none alters an existing table.
    ///
    /// ```
    /// let ddl = tiered::Runtime::builder().table("app_cache").schema_sql();
    /// assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS app_cache ("));
    /// assert!(ddl.contains("CREATE TABLE IF NOT EXISTS app_cache_epochs ("));
    /// ```
    ///
    /// # Panics
    /// If the table name is not allowed (see [`table`](Self::table)); `install` reports the
    /// same as [`BackendError::InvalidConfig`].
    pub fn schema_sql(&self) -> String {
        validate_table(&self.table).unwrap_or_else(|err| panic!("{err}"));
        self.schema().sql()
    }

    /// Whether the cache table is created `UNLOGGED` (default `false`): its writes skip the
    /// write-ahead log, so they cost less, and a server crash (not a clean restart) empties
    /// the table; it is not replicated either, so after a failover to a standby it is empty.
    ///
    /// A cache can lose its rows: they are misses, recomputed and written again. What must
    /// survive a crash stays logged: `<table>_epochs`, so an invalidate-all epoch never goes
    /// back (a value computed under an old epoch could otherwise be stored as current once
    /// the counter climbed back to that number). Other processes' L1s: a crash ends every
    /// connection, so each process's invalidation listener reconnects, and a reconnection
    /// clears the L1 of every `backend = "pg"` function and forgets the L2 epochs the process
    /// had learned, since notices sent just before the crash may never have arrived. A crash
    /// also takes the tombstones of recent invalidations, which is why a computation that read
    /// L2 before the listener lost its connection writes nothing to L2.
    ///
    /// Applies when install creates the table; an existing table keeps its persistence (a
    /// `warn` at install says when it differs: `ALTER TABLE … SET UNLOGGED` rewrites the
    /// table under an exclusive lock).
    pub fn unlogged(mut self, unlogged: bool) -> Self {
        self.unlogged = unlogged;
        self
    }

    /// Keeps this namespace's rows in L2 to about `rows` (default: no bound): every
    /// `sweep_interval`, the sweeper deletes the rows written before the `rows` most recently
    /// written, oldest first, 1,000 per statement with `SKIP LOCKED`, so reads are never
    /// blocked. It is "about": rows written since the last sweep and tombstones (which expire
    /// within 10 minutes) come on top, and rows written at the same instant (one transaction)
    /// are kept or evicted together. Writes set the order; reads do not.
    ///
    /// Cost: an index on `(namespace, updated_at)` (in [`schema_sql`](Self::schema_sql)),
    /// maintained by every write. No sweep counts the table: while the planner's estimate of
    /// the whole table is under half of `rows`, a sweep costs one catalog lookup; past that,
    /// it reads `rows` entries of that index, newest first and 100,000 per statement, to find
    /// the cutoff, so its cost grows with `rows`, not with the table; every process sweeps.
    /// Evictions are counted by [`l2_evictions`](crate::l2_evictions) and by the sweep's
    /// `debug` event.
    ///
    /// On a large existing table, create the index first
    /// (`CREATE INDEX CONCURRENTLY IF NOT EXISTS <table>_updated_at ON <table> (namespace, updated_at)`):
    /// install would build it while blocking writes. Install fails with
    /// [`BackendError::InvalidConfig`] for `0`.
    pub fn l2_max_rows(mut self, rows: u64) -> Self {
        self.max_rows = Some(rows);
        self
    }

    fn schema(&self) -> Schema {
        Schema {
            table: self.table.clone(),
            unlogged: self.unlogged,
            evicting: self.max_rows.is_some(),
        }
    }

    /// Whether the pool goes through a transaction-mode pooler such as pgbouncer or Supavisor
    /// (default `false`): then no L2 statement leaves anything in the server session past its
    /// transaction (statements are unnamed, parsed each time, which makes an L2 read slower).
    ///
    /// Without it, L2 statements are prepared once per connection; if the server's answers
    /// show such a pooler, the runtime switches to unnamed statements for the rest of the
    /// process and warns once. Either way the invalidation listener cannot go through the
    /// pooler, which drops notifications: give [`listen_url`](Self::listen_url) the server's
    /// own address (install fails if notifications do not arrive).
    pub fn transaction_pooler(mut self, enabled: bool) -> Self {
        self.transaction_pooler = enabled;
        self
    }

    /// Connects, creates the tables if they are missing (see
    /// [`create_schema`](Self::create_schema)), checks them, and makes L2 available to every
    /// `backend = "pg"` function of the process.
    ///
    /// # Errors
    /// [`BackendError::InvalidConfig`] for a bad URL, table or namespace, tables that lack
    /// something tiered needs (the message names it), or a listener that receives no
    /// notifications (a transaction pooler's URL, where the server's is needed),
    /// [`BackendError::Connect`] / [`BackendError::Timeout`] if the server cannot be reached
    /// (the message says where, and for a failed TLS handshake what failed), [`BackendError::AlreadyInstalled`] if a runtime is installed.
    pub async fn install(self) -> Result<(), BackendError> {
        validate_table(&self.table)?;
        let max_rows = self
            .max_rows
            .map(|rows| match rows {
                0 => Err(BackendError::InvalidConfig(
                    "l2_max_rows(0) would keep nothing in L2: give at least 1, or use backend = \"none\""
                        .into(),
                )),
                rows => Ok(i64::try_from(rows).unwrap_or(i64::MAX)),
            })
            .transpose()?;
        let schema = self.schema();
        let listen_config = self.listen_url.as_deref().map(parse_url).transpose()?;
        let (pool, target, url_config) = match self.source {
            None => {
                return Err(BackendError::InvalidConfig(
                    "no server given: call .postgres_url(..) or .postgres_pool(..)".into(),
                ))
            }
            Some(Source::Url(url)) => {
                let config = parse_url(&url)?;
                let (pool, target) = pool_from_config(config.clone(), self.max_connections)?;
                (pool, target, Some(config))
            }
            Some(Source::Pool(pool)) => (pool, "the pool given to postgres_pool".to_owned(), None),
        };
        if PROCESS.installed().is_some() {
            return Err(BackendError::AlreadyInstalled);
        }
        let origin = fastrand::u64(..);
        let connect_timeout = self.connect_timeout.max(self.l2_timeout);
        let settings = PgSettings {
            schema,
            create_schema: self.create_schema,
            namespace: self.namespace.clone(),
            target: target.clone(),
            connect_timeout,
            origin,
            transaction_pooler: self.transaction_pooler,
        };
        let backend = PgBackend::connect(pool, settings)
            .await
            .map_err(|err| match &url_config {
                Some(config) => config.explain(err),
                None => err,
            })?;
        let backend = Arc::new(backend);
        let listener = listen_config.or(url_config).map(|mut config| ListenerSettings {
            // Named, so operators (and tests) can tell it from pooled connections.
            config: config
                .application_name(format!("tiered-listener-{}", std::process::id()))
                .to_owned(),
            channel: backend.channel().to_owned(),
            origin,
            heartbeat: Duration::from_secs(1),
            timeout: connect_timeout,
            staleness_bound: self.staleness_bound,
            prober: Arc::downgrade(&backend),
        });
        let l2: Arc<dyn L2> = backend.clone();
        let breaker = Breaker::new(self.breaker, PROCESS.clock.clone(), target.clone());
        let installed = Arc::new(Installed::new(
            Guarded::new(l2, breaker, self.l2_timeout, target),
            self.namespace,
            self.backoff,
        ));
        PROCESS.install(installed.clone())?;
        tracing::info!(target = installed.l2.target(), "tiered: PostgreSQL L2 installed");
        installed.tasks.spawn(sweeper::run(
            Arc::downgrade(&backend),
            self.sweep_interval,
            max_rows,
            installed.stop.clone(),
        ));
        match listener {
            Some(settings) => {
                let (verdict, first) = oneshot::channel();
                installed
                    .tasks
                    .spawn(listener::run(settings, &PROCESS, installed.stop.clone(), verdict));
                // Connecting, then a probe's round trip: each within the connect timeout.
                match tokio::time::timeout(2 * connect_timeout, first).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(undelivered))) => {
                        shutdown().await;
                        return Err(BackendError::InvalidConfig(undelivered));
                    }
                    Ok(Err(_)) | Err(_) => tracing::warn!(
                        "tiered: the invalidation listener is not connected yet; it keeps trying"
                    ),
                }
            }
            None => tracing::warn!(
                "tiered: no listen_url for the pool given to postgres_pool: cross-process \
                 invalidation is off (other processes' invalidations reach this L1 only through \
                 its TTL); give .listen_url(\"postgres://…\") to turn it on"
            ),
        }
        Ok(())
    }
}

fn validate_table(table: &str) -> Result<(), BackendError> {
    let mut chars = table.chars();
    let valid = table.len() <= 48
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(BackendError::InvalidConfig(format!(
            "table name {table:?} is not allowed: use 1 to 48 characters of a-z, 0-9 and _, not starting with a digit"
        )))
    }
}

/// Stops the runtime: stops the invalidation listener and the sweeper, waits for
/// write-behind work to finish, then closes the pool.
/// `backend = "pg"` functions keep working L1-only (as if never installed) until the next
/// `install`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// tiered::shutdown().await; // harmless when nothing is installed
/// # }
/// ```
pub async fn shutdown() {
    if let Some(installed) = PROCESS.uninstall() {
        installed.stop.cancel();
        installed.tasks.close();
        installed.tasks.wait().await;
        installed.l2.close();
        tracing::info!("tiered: runtime shut down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(validate_table("tiered_cache").is_ok());
        for bad in ["", "1abc", "Cache", "a;drop table x", "a.b", &"x".repeat(49)] {
            assert!(validate_table(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[tokio::test]
    async fn l2_max_rows_of_zero_is_refused_before_connecting() {
        let err = Runtime::builder()
            .postgres_url("postgres://nobody@127.0.0.1:1/nowhere")
            .l2_max_rows(0)
            .install()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, BackendError::InvalidConfig(m) if m.contains("l2_max_rows(0)")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_connect_error_that_says_where() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = Runtime::builder()
            .postgres_url(format!("postgres://nobody@127.0.0.1:{port}/nowhere"))
            .install()
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Connect { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}/nowhere")),
            "{err}"
        );
        assert!(PROCESS.installed().is_none());
    }
}
