//! `BackendError`: what went wrong with the L2 backend, and where.

use std::time::Duration;

use deadpool_postgres::PoolError;

/// An error from the L2 backend (PostgreSQL), saying what failed and where.
///
/// Under the default [`BackendFailureMode::L1Only`](crate::BackendFailureMode) these errors are
/// logged and the cached function carries on with L1 alone; under `Error` they reach the caller.
///
/// ```
/// let err = tiered::BackendError::NotConfigured;
/// assert!(!err.is_retryable());
/// assert!(err.to_string().contains("install"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No PostgreSQL backend was installed in this process.
    #[error(
        "no PostgreSQL backend is installed: call tiered::Runtime::builder().postgres_url(..).install().await \
         at start-up, or use backend = \"none\""
    )]
    NotConfigured,
    /// `install` was called while a runtime is already installed.
    #[error("a tiered runtime is already installed in this process; call tiered::shutdown().await first")]
    AlreadyInstalled,
    /// The builder was given an unusable setting (a bad URL, table name or namespace).
    #[error("invalid tiered configuration: {0}")]
    InvalidConfig(String),
    /// No connection to the server could be made.
    #[error("cannot connect to PostgreSQL at {target}: {message}")]
    Connect {
        /// Where: `host:port/database` (never the password).
        target: String,
        /// Why, as the driver said it.
        message: String,
        /// Whether trying again may succeed (refused or dropped connection, server starting up),
        /// as opposed to, say, a failed password.
        retryable: bool,
    },
    /// A statement failed on the server or its connection broke.
    #[error("{operation} on table {table} at {target} failed: {message}")]
    Query {
        /// What was being done, e.g. `"read"`, `"write"`, `"invalidate"`.
        operation: &'static str,
        /// The cache table.
        table: String,
        /// Where: `host:port/database`.
        target: String,
        /// Why, as the server said it, with its SQLSTATE when there is one.
        message: String,
        /// Whether trying again may succeed (connection loss, overload, serialization failure).
        retryable: bool,
    },
    /// An operation did not finish within `l2_timeout` (waiting for a pooled connection included).
    #[error("{operation} at {target} timed out after {timeout:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// Where: `host:port/database`.
        target: String,
        /// The limit that was reached.
        timeout: Duration,
    },
    /// L2 is being skipped after repeated failures (the circuit breaker is open); it is probed
    /// again after the cool-down.
    #[error("PostgreSQL at {target} is skipped after repeated failures (circuit breaker open; next probe in {retry_in:?})")]
    CircuitOpen {
        /// Where: `host:port/database`.
        target: String,
        /// How long until the next probe may be made.
        retry_in: Duration,
    },
    /// The arguments of a call could not be encoded into a cache key.
    #[error("cannot encode the cache key of {function}: {message}")]
    Key {
        /// The cache name of the function.
        function: String,
        /// The serializer's message.
        message: String,
    },
}

/// A cached function's body did not finish within its `hard_timeout`, and no stale value
/// could answer instead. A fn with `hard_timeout` returns `Result<T, E>` with
/// `E: From<TimedOut>`; the body still finishes in the background and its value is stored.
///
/// ```
/// let err = tiered::TimedOut { function: "app::profile".into(), after: std::time::Duration::from_millis(250) };
/// assert_eq!(err.to_string(), "app::profile did not finish within its hard_timeout of 250ms");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{function} did not finish within its hard_timeout of {after:?}")]
pub struct TimedOut {
    /// The cache's name.
    pub function: String,
    /// The `hard_timeout`.
    pub after: Duration,
}

/// What a `Result` fn with `hard_timeout` returns when it passes: the generated `Spec` holds it.
pub fn time_out<V, E: From<TimedOut>>(err: TimedOut) -> Result<V, E> {
    Err(E::from(err))
}

impl BackendError {
    /// Whether the same operation may succeed if tried again (used by `Retry { attempts }`).
    ///
    /// Lost connections, timeouts and transient server states are retryable; a missing
    /// backend, bad configuration or a permission error are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackendError::Timeout { .. } => true,
            BackendError::Connect { retryable, .. } | BackendError::Query { retryable, .. } => *retryable,
            BackendError::NotConfigured
            | BackendError::AlreadyInstalled
            | BackendError::InvalidConfig(_)
            | BackendError::CircuitOpen { .. }
            | BackendError::Key { .. } => false,
        }
    }
}

impl BackendError {
    /// A failure to get a pooled connection.
    pub(crate) fn from_pool(target: &str, err: PoolError) -> Self {
        match err {
            PoolError::Backend(err) => BackendError::Connect {
                target: target.to_owned(),
                message: describe(&err),
                retryable: is_transient(&err),
            },
            PoolError::Timeout(kind) => BackendError::Connect {
                target: target.to_owned(),
                message: format!("the pool timed out ({kind:?})"),
                retryable: true,
            },
            other => BackendError::Connect {
                target: target.to_owned(),
                message: other.to_string(),
                retryable: false,
            },
        }
    }

    /// A failed statement of `operation` on `table`.
    pub(crate) fn from_query(
        operation: &'static str,
        table: &str,
        target: &str,
        err: &tokio_postgres::Error,
    ) -> Self {
        BackendError::Query {
            operation,
            table: table.to_owned(),
            target: target.to_owned(),
            message: describe(err),
            retryable: is_transient(err),
        }
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
