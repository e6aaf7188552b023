//! `BackendError`: what went wrong with the L2 backend, and where.

use std::time::Duration;

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
