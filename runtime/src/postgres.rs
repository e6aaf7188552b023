//! The PostgreSQL L2: the cache table's SQL and the mapping of its rows.
//!
//! One row per entry, keyed by its [`EntryId`]; a tombstone is a row whose `value` is `NULL`.
//! `<table>_epochs` holds each function's invalidate-all epoch, each invalidated tag's and the
//! namespace's (`clear_all`). Only parameterised SQL
//! touches user data; the table name is validated before it is spliced in.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use crate::backend::{Entry, EntryId, Lease, Observed, Op, Row, L2, TOMBSTONE_LIFETIME};
use crate::error::{describe, BackendError};
use crate::notice::{Notice, Payload};
use crate::protocol::{Param, Protocol};
use crate::readers::{Reader, Readers};
use crate::resync::Server;
use crate::schema::Schema;
use crate::tags::{epoch_name, TagHash, NAMESPACE_EPOCH};

/// Index entries one statement of the eviction's walk reads at most: a fraction of a second,
/// so it stays far below the sweep's statement timeout however large `l2_max_rows` is.
const PROBE_STEP: i64 = 100_000;

/// The PostgreSQL backend.
pub(crate) struct PgBackend {
    pool: Pool,
    readers: Readers,
    table: String,
    namespace: String,
    target: String,
    sql: Statements,
    /// The NOTIFY channel of this table and namespace.
    channel: String,
    origin: u64,
    protocol: Protocol,
}

/// Where and how the backend connects, from the builder.
pub(crate) struct PgSettings {
    pub(crate) schema: Schema,
    /// Whether install runs the DDL, or only checks the tables.
    pub(crate) create_schema: bool,
    pub(crate) namespace: String,
    /// `host:port/database`, for error messages.
    pub(crate) target: String,
    /// The limit of the first connection and the schema's set-up and check at install.
    pub(crate) connect_timeout: Duration,
    /// This runtime's id in the notices it sends.
    pub(crate) origin: u64,
    /// Statements are unnamed from the start (see `protocol`).
    pub(crate) transaction_pooler: bool,
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
    /// Bumps one row of the epochs table: a function's, a tag's or the namespace's.
    bump_epoch: String,
    sweep_expired: String,
    sweep_dead_epochs: String,
    /// The table's rows as the planner estimates them (rows per page at the last VACUUM or
    /// ANALYZE, times its pages now); no row before either ran.
    estimate_rows: String,
    /// The `updated_at` of the namespace's row `$3` rows past the newest written before `$2`
    /// (or at all, for `NULL`), read backwards through the `(namespace, updated_at)` index.
    eviction_cutoff: String,
    /// Deletes up to `$1` of the namespace's values written at or before `$3`, oldest first
    /// (the order also keeps the planner on the index: the rows it wants may all sit at the
    /// end of a sequential scan). Tombstones are left to expire: one that went early could let
    /// a computation that started before its invalidation store its stale value.
    evict: String,
    /// Takes `$1`'s lease for `$2` unless an unexpired one is there (one row: taken). A lease
    /// lives in a table of its own: it must never shorten or replace a tombstone.
    take_lease: String,
    /// Lets go of `$1`'s lease if `$2` still holds it.
    release_lease: String,
    /// Sends the listener's probe `$2` on channel `$1` and reads the server as a reconnection
    /// needs it (see `resync`): its clock, start time, whether the cache table (`$3`) is
    /// UNLOGGED, and the namespace's (`$4`) epochs, read before the probe commits.
    probe: String,
    /// The namespace's rows an invalidation or a refresh changed after `$2` (a plain write of
    /// a fresh value keeps generation 0), `$3` at most. With `l2_max_rows` it walks the
    /// `(namespace, updated_at)` index; without, it scans the table.
    changed_since: String,
}

impl Statements {
    fn new(table: &str) -> Self {
        // An entry's epoch: the sum of its rows in the epochs table (see `Entry::epoch_names`),
        // whose names are parameter `$n`.
        let epoch = |n: u8| {
            format!(
                "COALESCE((SELECT sum(epoch) FROM {table}_epochs WHERE namespace = $2 AND function = ANY(${n}::text[])), 0)::int8"
            )
        };
        let (read_epoch, write_epoch) = (epoch(3), epoch(9));
        let columns = "(id, namespace, function, version, value, generation, epoch, expires_at)";
        Statements {
            read: format!(
                "SELECT e.epoch, c.value, c.generation, c.epoch, \
                        EXTRACT(EPOCH FROM c.expires_at - now())::float8 \
                 FROM (SELECT {read_epoch} AS epoch) e LEFT JOIN {table} c ON c.id = $1"
            ),
            read_row: format!(
                "SELECT value, generation, epoch, EXTRACT(EPOCH FROM expires_at - now())::float8 \
                 FROM {table} WHERE id = $1"
            ),
            write: format!(
                "INSERT INTO {table} AS c {columns} \
                 SELECT $1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8) WHERE {write_epoch} = $7 \
                 ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, epoch = EXCLUDED.epoch, \
                     expires_at = EXCLUDED.expires_at, updated_at = now() \
                 WHERE c.generation = EXCLUDED.generation"
            ),
            // The changes other processes must hear of notify in the same statement, hence the
            // same transaction: a notice is sent if and only if the change committed.
            overwrite: format!(
                "WITH changed AS (INSERT INTO {table} AS c {columns} \
                 VALUES ($1, $2, $3, $4, $5, 1, {write_epoch}, now() + make_interval(secs => $6)) \
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
            bump_epoch: format!(
                "WITH changed AS (INSERT INTO {table}_epochs AS e (namespace, function, epoch) \
                 VALUES ($1, $2, 1) ON CONFLICT (namespace, function) DO UPDATE SET epoch = e.epoch + 1 \
                 RETURNING 1) SELECT pg_notify($3, $4) FROM changed"
            ),
            sweep_expired: format!(
                "WITH deleted AS (DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
                 WHERE expires_at < now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING 1) \
                 SELECT count(*) FROM deleted"
            ),
            sweep_dead_epochs: format!(
                "WITH deleted AS (DELETE FROM {table} WHERE id IN (SELECT c.id FROM {table} c \
                 JOIN {table}_epochs e ON e.namespace = c.namespace AND e.function = c.function \
                 WHERE c.epoch < e.epoch AND c.value IS NOT NULL LIMIT $1 FOR UPDATE OF c SKIP LOCKED) \
                 RETURNING 1) SELECT count(*) FROM deleted"
            ),
            estimate_rows: format!(
                "SELECT c.reltuples::float8 / c.relpages \
                     * (pg_relation_size(c.oid) / current_setting('block_size')::int8) \
                 FROM pg_class c WHERE c.oid = '{table}'::regclass AND c.relpages > 0 AND c.reltuples >= 0"
            ),
            eviction_cutoff: format!(
                "SELECT updated_at FROM {table} \
                 WHERE namespace = $1 AND updated_at < COALESCE($2::timestamptz, 'infinity') \
                 ORDER BY updated_at DESC OFFSET $3 LIMIT 1"
            ),
            evict: format!(
                "WITH deleted AS (DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
                 WHERE namespace = $2 AND updated_at <= $3 AND value IS NOT NULL \
                 ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM deleted"
            ),
            take_lease: format!(
                "INSERT INTO {table}_leases AS l (id, holder, expires_at) \
                 VALUES ($1, $2, now() + make_interval(secs => $3)) \
                 ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                 WHERE l.expires_at <= now()"
            ),
            release_lease: format!("DELETE FROM {table}_leases WHERE id = $1 AND holder = $2"),
            probe: format!(
                "SELECT now(), pg_postmaster_start_time(), \
                        COALESCE((SELECT relpersistence = 'u' FROM pg_class WHERE oid = to_regclass($3)), false), \
                        ARRAY(SELECT function FROM {table}_epochs WHERE namespace = $4 ORDER BY function), \
                        ARRAY(SELECT epoch FROM {table}_epochs WHERE namespace = $4 ORDER BY function) \
                 FROM pg_notify($1, $2)"
            ),
            changed_since: format!(
                "SELECT function, id FROM {table} WHERE namespace = $1 AND updated_at > $2 \
                 AND (value IS NULL OR generation > 0) LIMIT $3"
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
    /// Checks out a connection, creates the tables if missing (unless told not to), checks
    /// them, and returns the backend.
    pub(crate) async fn connect(pool: Pool, settings: PgSettings) -> Result<Self, BackendError> {
        let backend = PgBackend {
            readers: Readers::for_pool(&pool),
            sql: Statements::new(&settings.schema.table),
            channel: channel(&settings.schema.table, &settings.namespace),
            origin: settings.origin,
            protocol: Protocol::new(settings.transaction_pooler),
            pool,
            table: settings.schema.table.clone(),
            namespace: settings.namespace,
            target: settings.target,
        };
        let timeout = settings.connect_timeout;
        tokio::time::timeout(
            timeout,
            backend.prepare_schema(&settings.schema, settings.create_schema),
        )
        .await
        .unwrap_or_else(|_| {
            Err(BackendError::Timeout {
                operation: "create table",
                target: backend.target.clone(),
                timeout,
            })
        })?;
        Ok(backend)
    }

    /// With `create`, runs the DDL; then checks that the tables have all that tiered needs.
    async fn prepare_schema(&self, schema: &Schema, create: bool) -> Result<(), BackendError> {
        let checked = self
            .with_client("check tables", |mut client| async move {
                if create {
                    // Kept apart: a refused DDL statement is explained below.
                    if let Err(refused) = schema.create(&mut client).await {
                        return Ok(Err(refused));
                    }
                }
                schema.check(&**client).await.map(Ok)
            })
            .await?;
        let findings = checked.map_err(|refused| {
            let mut error = BackendError::from_query("create tables", &self.table, &self.target, &refused);
            if let (BackendError::Query { message, .. }, Some(&SqlState::INSUFFICIENT_PRIVILEGE)) =
                (&mut error, refused.code())
            {
                message.push_str(
                    "; a role that may not create the tables installs with create_schema(false), \
                     once an owner has run the DDL of RuntimeBuilder::schema_sql()",
                );
            }
            error
        })?;
        for warning in &findings.warnings {
            tracing::warn!(target = self.target, "tiered: {warning}");
        }
        if findings.missing.is_empty() {
            return Ok(());
        }
        Err(BackendError::InvalidConfig(format!(
            "the tables at {} are not usable: {}; RuntimeBuilder::schema_sql() gives the DDL that creates them",
            self.target,
            findings.missing.join("; ")
        )))
    }

    /// Reads an entry's row: a primary-key lookup when the function's epoch is known, else
    /// joined with the function's current epoch.
    async fn read_row(&self, entry: &Entry<'_>, known_epoch: Option<i64>) -> Result<Row, BackendError> {
        let id = &entry.id;
        /// The row's columns, in the order both read statements select them.
        struct Columns {
            value: Option<Vec<u8>>,
            generation: Option<i64>,
            epoch: Option<i64>,
            seconds_left: Option<f64>,
        }
        let (current_epoch, columns) = self
            .with_reader("read", |client| async move {
                let id: Param = (&&id[..], Type::BYTEA);
                let (current_epoch, row, first) = match known_epoch {
                    Some(epoch) => {
                        let row = self
                            .protocol
                            .query_opt(&client, &self.sql.read_row, &[id])
                            .await?;
                        (epoch, row, 0)
                    }
                    None => {
                        let names = entry.epoch_names();
                        let params = [id, (&self.namespace, Type::TEXT), (&names, Type::TEXT_ARRAY)];
                        let row = self.protocol.query_one(&client, &self.sql.read, &params).await?;
                        (row.try_get::<_, i64>(0)?, Some(row), 1)
                    }
                };
                let columns = match row {
                    None => None,
                    Some(row) => Some(Columns {
                        value: row.try_get(first)?,
                        generation: row.try_get(first + 1)?,
                        epoch: row.try_get(first + 2)?,
                        seconds_left: row.try_get(first + 3)?,
                    }),
                };
                Ok((current_epoch, columns))
            })
            .await?;
        let Some(columns) = columns.filter(|columns| columns.generation.is_some()) else {
            return Ok(Row {
                value: None,
                remaining: None,
                observed: Observed {
                    generation: 0,
                    epoch: current_epoch,
                },
            });
        };
        let live = columns.epoch == Some(current_epoch) && columns.seconds_left.is_none_or(|left| left > 0.0);
        Ok(Row {
            value: columns.value.filter(|_| live),
            remaining: columns
                .seconds_left
                .map(|left| Duration::from_secs_f64(left.max(0.0))),
            observed: Observed {
                generation: columns.generation.unwrap_or(0),
                epoch: current_epoch,
            },
        })
    }

    /// Runs one statement; returns the rows it affected.
    async fn execute(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64, BackendError> {
        self.with_client(operation, |client| async move {
            self.protocol.execute(&client, sql, params).await
        })
        .await
    }

    /// Bumps the epoch named `name` (a function's, a tag's or the namespace's) and sends
    /// `notice`, in one statement.
    async fn bump_epoch(
        &self,
        operation: &'static str,
        name: String,
        notice: String,
    ) -> Result<(), BackendError> {
        self.execute(
            operation,
            &self.sql.bump_epoch,
            &[
                (&self.namespace, Type::TEXT),
                (&name, Type::TEXT),
                (&self.channel, Type::TEXT),
                (&notice, Type::TEXT),
            ],
        )
        .await
        .map(drop)
    }

    /// Sends the listener's probe `payload` on `channel` from one of L2's sessions, and
    /// returns the server as it was then (see `resync`).
    pub(crate) async fn probe(&self, channel: &str, payload: &str) -> Result<Server, BackendError> {
        let params: [Param; 4] = [
            (&channel, Type::TEXT),
            (&payload, Type::TEXT),
            (&self.table, Type::TEXT),
            (&self.namespace, Type::TEXT),
        ];
        self.with_client("probe", |client| async move {
            let row = self.protocol.query_one(&client, &self.sql.probe, &params).await?;
            let functions: Vec<String> = row.try_get(3)?;
            let epochs: Vec<i64> = row.try_get(4)?;
            Ok(Server {
                now: row.try_get(0)?,
                started: row.try_get(1)?,
                unlogged: row.try_get(2)?,
                epochs: functions.into_iter().zip(epochs).collect(),
            })
        })
        .await
    }

    /// The namespace's rows an invalidation or a refresh changed after `since` (see `resync`),
    /// `limit` at most, as (function, entry id).
    pub(crate) async fn changed_since(
        &self,
        since: SystemTime,
        limit: i64,
    ) -> Result<Vec<(String, EntryId)>, BackendError> {
        self.with_client("resync", |client| async move {
            let params: [Param; 3] = [
                (&self.namespace, Type::TEXT),
                (&since, Type::TIMESTAMPTZ),
                (&limit, Type::INT8),
            ];
            let rows = client.query_typed(&self.sql.changed_since, &params).await?;
            let mut changed = Vec::with_capacity(rows.len());
            for row in rows {
                // Every id tiered writes is 32 bytes; a row of another writer is not ours.
                if let Ok(id) = EntryId::try_from(row.try_get::<_, &[u8]>(1)?) {
                    changed.push((row.try_get(0)?, id));
                }
            }
            Ok(changed)
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
        let deleted = AtomicU64::new(0);
        for sql in [&self.sql.sweep_expired, &self.sql.sweep_dead_epochs] {
            self.delete_in_batches(sql, &[], batch, statement_timeout, &deleted)
                .await?;
        }
        Ok(deleted.into_inner())
    }

    /// Deletes the namespace's values written before its `keep` newest rows, oldest first, in
    /// batches of `batch` rows, each statement limited to `statement_timeout` on the server;
    /// `evicted` counts them as each batch commits. No statement counts the table: while the
    /// planner's estimate of the whole table is under half of `keep` rows, this is one catalog
    /// lookup; past that, `keep` entries of the `(namespace, updated_at)` index are read to
    /// find the cutoff, [`PROBE_STEP`] per statement.
    pub(crate) async fn evict(
        &self,
        keep: i64,
        batch: i64,
        statement_timeout: Duration,
        evicted: &AtomicU64,
    ) -> Result<(), BackendError> {
        let estimate = self
            .swept(&self.sql.estimate_rows, &[], statement_timeout, |rows| {
                rows.first().map(|row| row.try_get::<_, f64>(0)).transpose()
            })
            .await?;
        // Half: a margin for statistics gathered when the rows were packed differently.
        if estimate.is_some_and(|rows| rows < keep as f64 / 2.0) {
            return Ok(());
        }
        // The row at `position` (0-based, newest first) found so far; the walk starts above
        // them all. Rows tied with a step's cutoff are passed over uncounted: at worst it
        // keeps more.
        let (mut cutoff, mut position) = (None::<SystemTime>, -1_i64);
        while position < keep {
            let offset = (keep - position - 1).min(PROBE_STEP);
            let next = self
                .swept(
                    &self.sql.eviction_cutoff,
                    &[
                        (&self.namespace, Type::TEXT),
                        (&cutoff, Type::TIMESTAMPTZ),
                        (&offset, Type::INT8),
                    ],
                    statement_timeout,
                    |rows| rows.first().map(|row| row.try_get(0)).transpose(),
                )
                .await?;
            let Some(next) = next else {
                return Ok(()); // fewer than `keep` rows
            };
            cutoff = Some(next);
            position += offset + 1;
        }
        self.delete_in_batches(
            &self.sql.evict,
            &[(&self.namespace, Type::TEXT), (&cutoff, Type::TIMESTAMPTZ)],
            batch,
            statement_timeout,
            evicted,
        )
        .await
    }

    /// Runs `sql`, a `DELETE` of at most `$1` rows that returns its count, with `$1` =
    /// `batch` and `params` after it, until it deletes fewer than `batch`; adds each count to
    /// `deleted`.
    async fn delete_in_batches(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        batch: i64,
        statement_timeout: Duration,
        deleted: &AtomicU64,
    ) -> Result<(), BackendError> {
        let params: Vec<(&(dyn ToSql + Sync), Type)> = std::iter::once((&batch as _, Type::INT8))
            .chain(params.iter().cloned())
            .collect();
        loop {
            let rows = self
                .swept(sql, &params, statement_timeout, |rows| {
                    rows[0].try_get::<_, i64>(0)
                })
                .await?;
            deleted.fetch_add(rows as u64, Relaxed);
            if rows < batch {
                return Ok(());
            }
        }
    }

    /// Runs one sweeping statement in a transaction of its own, limited to `statement_timeout`
    /// on the server (a sweep must not hold locks for long), and maps its rows with `map`.
    async fn swept<T>(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        statement_timeout: Duration,
        map: impl FnOnce(Vec<tokio_postgres::Row>) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, BackendError> {
        self.with_client("sweep", |mut client| async move {
            let tx = client.transaction().await?;
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = {}",
                statement_timeout.as_millis()
            ))
            .await?;
            // Unnamed, as every statement a pooler may carry (see `protocol`).
            let rows = tx.query_typed(sql, params).await?;
            tx.commit().await?;
            map(rows)
        })
        .await
    }

    /// Runs `op` on a pooled connection, mapping every failure to a `BackendError` that says
    /// what and where. Bounds (timeout, breaker) are the caller's: see `guard`.
    async fn with_client<'a, T, F, Fut>(&'a self, operation: &'static str, op: F) -> Result<T, BackendError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut + 'a,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + 'a,
    {
        let client = self
            .pool
            .get()
            .await
            .map_err(|err| BackendError::from_pool(&self.target, err))?;
        op(client)
            .await
            .map_err(|err| BackendError::from_query(operation, &self.table, &self.target, &err))
    }

    /// [`PgBackend::with_client`] for reads: on a shared read connection ([`Readers`]). A read
    /// that fails retryably or is abandoned (timed out) drops the shared connections: the next
    /// reads take fresh ones rather than queue behind a stalled one.
    async fn with_reader<'a, T, F, Fut>(&'a self, operation: &'static str, op: F) -> Result<T, BackendError>
    where
        F: FnOnce(Reader) -> Fut + 'a,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + 'a,
    {
        let abandoned = ClearOnDrop(Some(&self.readers));
        let outcome = async {
            let (client, _in_flight) = match self.readers.get(&self.pool).await {
                Some(reader) => reader.map(|(client, in_flight)| (client, Some(in_flight))),
                None => self.pool.get().await.map(|client| (Arc::new(client), None)),
            }
            .map_err(|err| BackendError::from_pool(&self.target, err))?;
            op(client)
                .await
                .map_err(|err| BackendError::from_query(operation, &self.table, &self.target, &err))
        }
        .await;
        if !matches!(&outcome, Err(err) if err.is_retryable()) {
            abandoned.disarm();
        }
        outcome
    }
}

/// Drops the shared read connections when dropped armed.
struct ClearOnDrop<'a>(Option<&'a Readers>);

impl ClearOnDrop<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(readers) = self.0 {
            readers.clear();
        }
    }
}

impl L2 for PgBackend {
    fn read<'a>(&'a self, entry: &'a Entry<'a>, known_epoch: Option<i64>) -> Op<'a, Row> {
        Box::pin(self.read_row(entry, known_epoch))
    }

    fn write<'a>(
        &'a self,
        entry: &'a Entry<'a>,
        value: &'a [u8],
        ttl: Option<Duration>,
        observed: Observed,
    ) -> Op<'a, bool> {
        Box::pin(async move {
            let rows = self
                .execute(
                    "write",
                    &self.sql.write,
                    &[
                        (&&entry.id[..], Type::BYTEA),
                        (&self.namespace, Type::TEXT),
                        (&entry.function, Type::TEXT),
                        (&i64::from(entry.version), Type::INT8),
                        (&value, Type::BYTEA),
                        (&observed.generation, Type::INT8),
                        (&observed.epoch, Type::INT8),
                        (&seconds(ttl), Type::FLOAT8),
                        (&entry.epoch_names(), Type::TEXT_ARRAY),
                    ],
                )
                .await?;
            Ok(rows == 1)
        })
    }

    fn overwrite<'a>(&'a self, entry: &'a Entry<'a>, value: &'a [u8], ttl: Option<Duration>) -> Op<'a, ()> {
        Box::pin(async move {
            let notice = self.notice(entry.function, Notice::of(entry));
            self.execute(
                "refresh",
                &self.sql.overwrite,
                &[
                    (&&entry.id[..], Type::BYTEA),
                    (&self.namespace, Type::TEXT),
                    (&entry.function, Type::TEXT),
                    (&i64::from(entry.version), Type::INT8),
                    (&value, Type::BYTEA),
                    (&seconds(ttl), Type::FLOAT8),
                    (&self.channel, Type::TEXT),
                    (&notice, Type::TEXT),
                    (&entry.epoch_names(), Type::TEXT_ARRAY),
                ],
            )
            .await
            .map(drop)
        })
    }

    fn invalidate<'a>(&'a self, entry: &'a Entry<'a>) -> Op<'a, ()> {
        Box::pin(async move {
            let notice = self.notice(entry.function, Notice::of(entry));
            self.execute(
                "invalidate",
                &self.sql.invalidate,
                &[
                    (&&entry.id[..], Type::BYTEA),
                    (&self.namespace, Type::TEXT),
                    (&entry.function, Type::TEXT),
                    (&i64::from(entry.version), Type::INT8),
                    (&TOMBSTONE_LIFETIME.as_secs_f64(), Type::FLOAT8),
                    (&self.channel, Type::TEXT),
                    (&notice, Type::TEXT),
                ],
            )
            .await
            .map(drop)
        })
    }

    fn invalidate_all<'a>(&'a self, function: &'a str) -> Op<'a, ()> {
        Box::pin(self.bump_epoch(
            "invalidate all",
            function.to_owned(),
            self.notice(function, Notice::All),
        ))
    }

    fn invalidate_tag<'a>(&'a self, tag: &'a TagHash) -> Op<'a, ()> {
        Box::pin(self.bump_epoch(
            "invalidate tag",
            epoch_name(tag),
            self.notice("", Notice::Tag(*tag)),
        ))
    }

    fn clear_all(&self) -> Op<'_, ()> {
        Box::pin(self.bump_epoch(
            "clear all",
            NAMESPACE_EPOCH.to_owned(),
            self.notice("", Notice::Clear),
        ))
    }

    fn close(&self) {
        self.pool.close();
    }

    fn take_lease<'a>(&'a self, id: &'a EntryId, holder: i64, length: Duration) -> Op<'a, Lease> {
        Box::pin(async move {
            // One autocommit statement: no session state, nothing held while the body runs.
            self.with_client("take lease", |client| async move {
                let params: [Param; 3] = [
                    (&&id[..], Type::BYTEA),
                    (&holder, Type::INT8),
                    (&length.as_secs_f64(), Type::FLOAT8),
                ];
                match self
                    .protocol
                    .execute(&client, &self.sql.take_lease, &params)
                    .await
                {
                    Ok(1) => Ok(Lease::Taken),
                    Ok(_) => Ok(Lease::Held),
                    // Tables made before leases existed, or a role granted the others only:
                    // not an outage.
                    Err(err)
                        if matches!(
                            err.code(),
                            Some(&SqlState::UNDEFINED_TABLE | &SqlState::INSUFFICIENT_PRIVILEGE)
                        ) =>
                    {
                        Ok(Lease::Unusable(describe(&err)))
                    }
                    Err(err) => Err(err),
                }
            })
            .await
        })
    }

    fn release_lease<'a>(&'a self, id: &'a EntryId, holder: i64) -> Op<'a, ()> {
        Box::pin(async move {
            self.execute(
                "release lease",
                &self.sql.release_lease,
                &[(&&id[..], Type::BYTEA), (&holder, Type::INT8)],
            )
            .await
            .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_short_identifiers_distinct_per_namespace() {
        let a = channel(&"t".repeat(48), "billing");
        assert!(a.len() <= 57);
        assert_ne!(a, channel(&"t".repeat(48), "shipping"));
    }
}
