//! L2: the shared PostgreSQL table, read on an L1 miss and written after computing.
//!
//! One row per entry, keyed by a SHA-256 of namespace, function name, version and key bytes
//! (length-prefixed, so no two entries share an id whatever their size). Writes are
//! conditional so that a computation which started before an invalidation cannot store its
//! result after it ("no stale write-back"):
//!
//! - every row has a `generation`; invalidating a key bumps it and leaves a tombstone
//!   (`value IS NULL`), and a write succeeds only if the generation is still the one its
//!   computation read;
//! - every function has an `epoch` in `<table>_epochs`; `invalidate_all` bumps it (O(1)), rows
//!   of older epochs are never read, and a write succeeds only in the epoch it read.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Pool, PoolError};
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

use crate::breaker::{Breaker, BreakerSettings};
use crate::error::BackendError;
use crate::readers::{Reader, Readers};

/// How long a tombstone stays in the table. A computation that took longer than half of it
/// does not write back, since the tombstone that should reject it may be gone.
pub(crate) const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(600);

/// The id of one entry: SHA-256 over namespace, function, version and key.
pub(crate) type EntryId = [u8; 32];

/// One entry of one function, as the statements that change it need it.
pub(crate) struct Entry<'a> {
    pub(crate) function: &'a str,
    pub(crate) version: u32,
    pub(crate) id: EntryId,
    /// The key's epoch stripe, for the notice to other processes.
    pub(crate) stripe: usize,
}

impl Entry<'_> {
    fn notice(&self) -> Notice {
        Notice::Key {
            stripe: self.stripe,
            id: self.id,
        }
    }
}

/// What a computation saw in L2 before computing; its write is conditional on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed {
    generation: i64,
    epoch: i64,
    at: Instant,
}

impl Observed {
    /// The function's invalidate-all epoch the read was made under.
    pub(crate) fn epoch(&self) -> i64 {
        self.epoch
    }
}

/// The answer of an L2 read.
pub(crate) struct L2Read {
    /// The encoded value if the row is live (present, not a tombstone, current epoch, not
    /// expired).
    pub(crate) value: Option<Vec<u8>>,
    /// The live row's lifetime left, when it has a TTL.
    pub(crate) remaining: Option<Duration>,
    pub(crate) observed: Observed,
}

/// What an invalidation notice asks other processes to drop from their L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// One entry: its id, and its epoch stripe (so in-flight computations of it cannot store).
    Key { stripe: usize, id: EntryId },
    /// Every entry of the function.
    All,
}

/// The payload of a NOTIFY: `origin|k|stripe|id|function` or `origin|a||function`. It names
/// the entry by its digest, never by its key or value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Payload<'a> {
    pub(crate) origin: u64,
    pub(crate) function: &'a str,
    pub(crate) notice: Notice,
}

impl<'a> Payload<'a> {
    pub(crate) fn encode(&self) -> String {
        use std::fmt::Write;
        let mut text = format!("{:x}|", self.origin);
        match &self.notice {
            Notice::Key { stripe, id } => {
                let _ = write!(text, "k|{stripe}|");
                for byte in id {
                    let _ = write!(text, "{byte:02x}");
                }
            }
            Notice::All => text.push_str("a||"),
        }
        text.push('|');
        text.push_str(self.function);
        text
    }

    pub(crate) fn parse(text: &'a str) -> Option<Payload<'a>> {
        let mut fields = text.splitn(5, '|');
        let origin = u64::from_str_radix(fields.next()?, 16).ok()?;
        let kind = fields.next()?;
        let stripe = fields.next()?;
        let id = fields.next()?;
        let function = fields.next()?;
        let notice = match kind {
            "a" => Notice::All,
            "k" if id.len() == 64 => {
                let mut bytes = [0u8; 32];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Notice::Key {
                    stripe: stripe.parse().ok()?,
                    id: bytes,
                }
            }
            _ => return None,
        };
        Some(Payload {
            origin,
            function,
            notice,
        })
    }
}

/// The installed PostgreSQL backend.
pub(crate) struct PgBackend {
    pool: Pool,
    readers: Readers,
    table: String,
    namespace: String,
    target: String,
    timeout: Duration,
    breaker: Breaker,
    sql: Statements,
    /// The NOTIFY channel of this table and namespace.
    channel: String,
    origin: u64,
}

/// Where and how the backend connects, from the builder.
pub(crate) struct L2Settings {
    pub(crate) table: String,
    pub(crate) namespace: String,
    /// `host:port/database`, for error messages.
    pub(crate) target: String,
    pub(crate) timeout: Duration,
    /// The timeout of the first connection and the schema check at install.
    pub(crate) connect_timeout: Duration,
    pub(crate) breaker: BreakerSettings,
    /// This runtime's id in the notices it sends.
    pub(crate) origin: u64,
}

/// The statements, with the validated table name spliced in; user data is always a parameter.
struct Statements {
    /// The row and the function's current epoch (a join), for when the process does not know
    /// that epoch.
    read: String,
    /// The row alone, a primary-key lookup: for when the process knows the function's epoch.
    read_row: String,
    write: String,
    overwrite: String,
    invalidate: String,
    invalidate_all: String,
    sweep_expired: String,
    sweep_dead_epochs: String,
}

impl Statements {
    fn new(table: &str) -> Self {
        let epoch =
            format!("COALESCE((SELECT epoch FROM {table}_epochs WHERE namespace = $2 AND function = $3), 0)");
        let columns = "(id, namespace, function, version, value, generation, epoch, expires_at)";
        Statements {
            read: format!(
                "SELECT e.epoch, c.value, c.generation, c.epoch, \
                        EXTRACT(EPOCH FROM c.expires_at - now())::float8 \
                 FROM (SELECT {epoch} AS epoch) e LEFT JOIN {table} c ON c.id = $1"
            ),
            read_row: format!(
                "SELECT value, generation, epoch, EXTRACT(EPOCH FROM expires_at - now())::float8 \
                 FROM {table} WHERE id = $1"
            ),
            write: format!(
                "INSERT INTO {table} AS c {columns} \
                 SELECT $1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8) WHERE {epoch} = $7 \
                 ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, epoch = EXCLUDED.epoch, \
                     expires_at = EXCLUDED.expires_at, updated_at = now() \
                 WHERE c.generation = EXCLUDED.generation"
            ),
            // The changes other processes must hear of notify in the same statement, hence the
            // same transaction: a notice is sent if and only if the change committed.
            overwrite: format!(
                "WITH changed AS (INSERT INTO {table} AS c {columns} \
                 VALUES ($1, $2, $3, $4, $5, 1, {epoch}, now() + make_interval(secs => $6)) \
                 ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, generation = c.generation + 1, \
                     epoch = EXCLUDED.epoch, expires_at = EXCLUDED.expires_at, updated_at = now() \
                 RETURNING 1) SELECT pg_notify($7, $8) FROM changed"
            ),
            invalidate: format!(
                "WITH changed AS (INSERT INTO {table} AS c {columns} \
                 VALUES ($1, $2, $3, $4, NULL, 1, 0, now() + make_interval(secs => $5)) \
                 ON CONFLICT (id) DO UPDATE SET value = NULL, generation = c.generation + 1, \
                     expires_at = EXCLUDED.expires_at, updated_at = now() \
                 RETURNING 1) SELECT pg_notify($6, $7) FROM changed"
            ),
            invalidate_all: format!(
                "WITH changed AS (INSERT INTO {table}_epochs AS e (namespace, function, epoch) \
                 VALUES ($1, $2, 1) ON CONFLICT (namespace, function) DO UPDATE SET epoch = e.epoch + 1 \
                 RETURNING 1) SELECT pg_notify($3, $4) FROM changed"
            ),
            sweep_expired: format!(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE expires_at < now() \
                 LIMIT $1 FOR UPDATE SKIP LOCKED)"
            ),
            sweep_dead_epochs: format!(
                "DELETE FROM {table} WHERE id IN (SELECT c.id FROM {table} c JOIN {table}_epochs e \
                 ON e.namespace = c.namespace AND e.function = c.function \
                 WHERE c.epoch < e.epoch AND c.value IS NOT NULL LIMIT $1 FOR UPDATE OF c SKIP LOCKED)"
            ),
        }
    }
}

/// `<table>_<hash of namespace>`: one channel per table and namespace, a valid identifier of
/// at most 57 characters.
fn channel(table: &str, namespace: &str) -> String {
    let digest = Sha256::digest(namespace.as_bytes());
    format!(
        "{table}_{:02x}{:02x}{:02x}{:02x}",
        digest[0], digest[1], digest[2], digest[3]
    )
}

fn seconds(duration: Option<Duration>) -> Option<f64> {
    duration.map(|d| d.as_secs_f64())
}

impl PgBackend {
    /// Checks out a connection, creates the tables if missing, and returns the backend.
    pub(crate) async fn connect(pool: Pool, settings: L2Settings) -> Result<Self, BackendError> {
        let backend = PgBackend {
            readers: Readers::for_pool(&pool),
            sql: Statements::new(&settings.table),
            channel: channel(&settings.table, &settings.namespace),
            origin: settings.origin,
            pool,
            table: settings.table,
            namespace: settings.namespace,
            target: settings.target,
            timeout: settings.connect_timeout,
            breaker: Breaker::new(settings.breaker),
        };
        backend.create_schema().await?;
        Ok(PgBackend {
            timeout: settings.timeout,
            ..backend
        })
    }

    async fn create_schema(&self) -> Result<(), BackendError> {
        let table = &self.table;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 id bytea PRIMARY KEY,
                 namespace text NOT NULL,
                 function text NOT NULL,
                 version bigint NOT NULL,
                 value bytea,
                 generation bigint NOT NULL,
                 epoch bigint NOT NULL,
                 expires_at timestamptz,
                 updated_at timestamptz NOT NULL DEFAULT now()
             );
             COMMENT ON COLUMN {table}.value IS 'NULL: a tombstone left by an invalidation';
             CREATE INDEX IF NOT EXISTS {table}_expires_at ON {table} (expires_at) WHERE expires_at IS NOT NULL;
             CREATE TABLE IF NOT EXISTS {table}_epochs (
                 namespace text NOT NULL,
                 function text NOT NULL,
                 epoch bigint NOT NULL,
                 PRIMARY KEY (namespace, function)
             );"
        );
        self.with_client("create table", |mut client| async move {
            let tx = client.transaction().await?;
            // Serialise concurrent installs: CREATE ... IF NOT EXISTS races on the catalog.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!("tiered:{table}")],
            )
            .await?;
            tx.batch_execute(&ddl).await?;
            tx.commit().await
        })
        .await
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// The id of an entry: SHA-256 over length-prefixed namespace, function, version and key.
    pub(crate) fn entry_id(&self, function: &str, version: u32, key: &[u8]) -> EntryId {
        let mut digest = Sha256::new();
        for part in [self.namespace.as_bytes(), function.as_bytes()] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        digest.update(version.to_le_bytes());
        digest.update(key);
        digest.finalize().into()
    }

    /// Reads an entry's row. With `known_epoch` (the function's invalidate-all epoch as this
    /// process knows it), a plain primary-key lookup checked against it; without, a read that
    /// also returns the function's current epoch ([`Observed::epoch`]).
    pub(crate) async fn read(
        &self,
        function: &str,
        id: &EntryId,
        known_epoch: Option<i64>,
    ) -> Result<L2Read, BackendError> {
        let (current_epoch, value, generation, row_epoch, remaining) = self
            .with_reader("read", |client| async move {
                let (current_epoch, row, first) = match known_epoch {
                    Some(epoch) => {
                        let statement = client.prepare_cached(&self.sql.read_row).await?;
                        (epoch, client.query_opt(&statement, &[&&id[..]]).await?, 0)
                    }
                    None => {
                        let statement = client.prepare_cached(&self.sql.read).await?;
                        let row = client
                            .query_one(&statement, &[&&id[..], &self.namespace, &function])
                            .await?;
                        (row.try_get::<_, i64>(0)?, Some(row), 1)
                    }
                };
                let Some(row) = row else {
                    return Ok((current_epoch, None, None, None, None));
                };
                Ok((
                    current_epoch,
                    row.try_get::<_, Option<Vec<u8>>>(first)?,
                    row.try_get::<_, Option<i64>>(first + 1)?,
                    row.try_get::<_, Option<i64>>(first + 2)?,
                    row.try_get::<_, Option<f64>>(first + 3)?,
                ))
            })
            .await?;
        let live = row_epoch == Some(current_epoch) && remaining.is_none_or(|left| left > 0.0);
        Ok(L2Read {
            value: value.filter(|_| live),
            remaining: remaining.map(|left| Duration::from_secs_f64(left.max(0.0))),
            observed: Observed {
                generation: generation.unwrap_or(0),
                epoch: current_epoch,
                at: Instant::now(),
            },
        })
    }

    /// Stores a computed value unless the entry was invalidated since `observed`. Returns
    /// whether it was stored.
    pub(crate) async fn write(
        &self,
        entry: &Entry<'_>,
        value: &[u8],
        ttl: Option<Duration>,
        observed: Observed,
    ) -> Result<bool, BackendError> {
        if observed.at.elapsed() > TOMBSTONE_LIFETIME / 2 {
            return Ok(false);
        }
        let rows = self
            .execute(
                "write",
                &self.sql.write,
                &[
                    &&entry.id[..],
                    &self.namespace,
                    &entry.function,
                    &i64::from(entry.version),
                    &value,
                    &observed.generation,
                    &observed.epoch,
                    &seconds(ttl),
                ],
            )
            .await?;
        Ok(rows == 1)
    }

    /// Stores a value unconditionally and bumps the entry's generation, so computations that
    /// started earlier cannot overwrite it, and tells other processes (used by `refresh_*`).
    pub(crate) async fn overwrite(
        &self,
        entry: &Entry<'_>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        let notice = self.notice(entry.function, entry.notice());
        self.execute(
            "refresh",
            &self.sql.overwrite,
            &[
                &&entry.id[..],
                &self.namespace,
                &entry.function,
                &i64::from(entry.version),
                &value,
                &seconds(ttl),
                &self.channel,
                &notice,
            ],
        )
        .await
        .map(drop)
    }

    /// Replaces the entry with a tombstone of a newer generation and tells other processes.
    pub(crate) async fn invalidate(&self, entry: &Entry<'_>) -> Result<(), BackendError> {
        let notice = self.notice(entry.function, entry.notice());
        self.execute(
            "invalidate",
            &self.sql.invalidate,
            &[
                &&entry.id[..],
                &self.namespace,
                &entry.function,
                &i64::from(entry.version),
                &TOMBSTONE_LIFETIME.as_secs_f64(),
                &self.channel,
                &notice,
            ],
        )
        .await
        .map(drop)
    }

    /// Starts a new epoch for the function: every row it had becomes unreadable at once.
    pub(crate) async fn invalidate_all(&self, function: &str) -> Result<(), BackendError> {
        let notice = self.notice(function, Notice::All);
        self.execute(
            "invalidate all",
            &self.sql.invalidate_all,
            &[&self.namespace, &function, &self.channel, &notice],
        )
        .await
        .map(drop)
    }

    /// Runs one prepared statement; returns the rows it affected.
    async fn execute(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, BackendError> {
        self.with_client(operation, |client| async move {
            let statement = client.prepare_cached(sql).await?;
            client.execute(&statement, params).await
        })
        .await
    }

    fn notice(&self, function: &str, notice: Notice) -> String {
        Payload {
            origin: self.origin,
            function,
            notice,
        }
        .encode()
    }

    /// The channel other processes' notices arrive on.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// Deletes expired rows and rows of dead epochs, in batches of `batch` rows, each
    /// statement limited to `statement_timeout` on the server. Returns how many were deleted.
    pub(crate) async fn sweep(&self, batch: i64, statement_timeout: Duration) -> Result<u64, BackendError> {
        let mut deleted = 0;
        for sql in [&self.sql.sweep_expired, &self.sql.sweep_dead_epochs] {
            loop {
                let rows = self
                    .with_client("sweep", |mut client| async move {
                        let tx = client.transaction().await?;
                        tx.batch_execute(&format!(
                            "SET LOCAL statement_timeout = {}",
                            statement_timeout.as_millis()
                        ))
                        .await?;
                        let rows = tx.execute(sql.as_str(), &[&batch]).await?;
                        tx.commit().await?;
                        Ok(rows)
                    })
                    .await?;
                deleted += rows;
                if rows < batch as u64 {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Runs `op` on a pooled connection within the L2 timeout (waiting for the connection
    /// included) unless the circuit breaker is open, mapping every failure to a `BackendError`
    /// that says what and where.
    async fn with_client<'a, T, F, Fut>(&'a self, operation: &'static str, op: F) -> Result<T, BackendError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut + 'a,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + 'a,
    {
        self.guarded(operation, async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|err| self.pool_error(operation, err))?;
            op(client).await.map_err(|err| self.query_error(operation, &err))
        })
        .await
    }

    /// [`PgBackend::with_client`] for reads: on a shared read connection ([`Readers`]).
    async fn with_reader<'a, T, F, Fut>(&'a self, operation: &'static str, op: F) -> Result<T, BackendError>
    where
        F: FnOnce(Reader) -> Fut + 'a,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + 'a,
    {
        let outcome = self
            .guarded(operation, async {
                let (client, _in_flight) = match self.readers.get(&self.pool).await {
                    Some(reader) => reader.map(|(client, in_flight)| (client, Some(in_flight))),
                    None => self.pool.get().await.map(|client| (Arc::new(client), None)),
                }
                .map_err(|err| self.pool_error(operation, err))?;
                op(client).await.map_err(|err| self.query_error(operation, &err))
            })
            .await;
        if matches!(&outcome, Err(err) if err.is_retryable()) {
            self.readers.clear();
        }
        outcome
    }

    /// Runs `attempt` if the circuit breaker admits it, within the L2 timeout, and reports
    /// its outcome to the breaker.
    async fn guarded<T>(
        &self,
        operation: &'static str,
        attempt: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let admitted = self
            .breaker
            .admit()
            .map_err(|retry_in| BackendError::CircuitOpen {
                target: self.target.clone(),
                retry_in,
            })?;
        let outcome = tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(BackendError::Timeout {
                    operation,
                    target: self.target.clone(),
                    timeout: self.timeout,
                })
            });
        // A permanent error (bad SQL, permission) is still an answer from the server.
        admitted.finish(!matches!(&outcome, Err(err) if err.is_retryable()));
        outcome
    }

    fn pool_error(&self, operation: &'static str, err: PoolError) -> BackendError {
        match err {
            PoolError::Backend(err) => BackendError::Connect {
                target: self.target.clone(),
                message: describe(&err),
                retryable: is_transient(&err),
            },
            PoolError::Timeout(_) => BackendError::Timeout {
                operation,
                target: self.target.clone(),
                timeout: self.timeout,
            },
            other => BackendError::Connect {
                target: self.target.clone(),
                message: other.to_string(),
                retryable: false,
            },
        }
    }

    fn query_error(&self, operation: &'static str, err: &tokio_postgres::Error) -> BackendError {
        BackendError::Query {
            operation,
            table: self.table.clone(),
            target: self.target.clone(),
            message: describe(err),
            retryable: is_transient(err),
        }
    }

    /// Closes the pool: connections are dropped as they are returned.
    pub(crate) fn close(&self) {
        self.pool.close();
    }
}

/// The server's message with its SQLSTATE, or the driver's for connection-level failures.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

/// Whether trying again may help: connection failures, resource shortage, serialization
/// failures and server shutdown/startup are transient; a SQL or permission error is not.
fn is_transient(err: &tokio_postgres::Error) -> bool {
    match err.code() {
        None => true,
        Some(state) => {
            let code = state.code();
            ["08", "40", "53", "57P"]
                .iter()
                .any(|class| code.starts_with(class))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_garbage_is_rejected() {
        let key = Payload {
            origin: 0xfeed,
            function: "app::users|by id",
            notice: Notice::Key {
                stripe: 17,
                id: [7; 32],
            },
        };
        assert_eq!(Payload::parse(&key.encode()), Some(key));
        let all = Payload {
            origin: 1,
            function: "f",
            notice: Notice::All,
        };
        assert_eq!(Payload::parse(&all.encode()), Some(all));
        for garbage in ["", "x|k|1|00|f", "1|k|1|00|f", "1|z||f", "1|k|x|"] {
            assert_eq!(Payload::parse(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn channels_are_short_identifiers_distinct_per_namespace() {
        let a = channel(&"t".repeat(48), "billing");
        assert!(a.len() <= 57);
        assert_ne!(a, channel(&"t".repeat(48), "shipping"));
    }
}
