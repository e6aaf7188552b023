//! Test harness for `tiered`: throwaway PostgreSQL servers (TLS-only if asked), a transaction-mode pgbouncer and a fault-injecting TCP proxy.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod pg;
mod pgbouncer;
mod process;
mod proxy;
mod tls;
mod url;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::{NoTls, Row};

pub use error::HarnessError;
pub use pg::PgServer;
pub use pgbouncer::PgBouncer;
pub use proxy::{FaultProxy, ProxyMode};
pub use tls::TlsFiles;

/// Longest identifier PostgreSQL keeps without truncating it.
const MAX_IDENTIFIER_LEN: usize = 63;

/// `<pid>_<counter>_<hex nanos>`: unique within this process (counter) and, in practice,
/// across processes and machines sharing one server (pid and clock).
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{}_{counter}_{nanos:x}", std::process::id())
}

/// A fresh lowercase SQL identifier `prefix_<pid>_<counter>_<hex nanos>` (at most 63 bytes),
/// for per-test table names and namespaces that never collide, even on a shared server.
///
/// Characters of `prefix` other than ASCII letters, digits and `_` become `_`, letters are
/// lowercased, a `t` is put in front when the result would not start with a letter or `_`,
/// and the prefix is shortened when needed to fit the length limit.
pub fn unique_name(prefix: &str) -> String {
    let suffix = unique_suffix();
    let mut name: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        name.insert(0, 't');
    }
    name.truncate(MAX_IDENTIFIER_LEN - suffix.len() - 1);
    format!("{name}_{suffix}")
}

/// Runs one statement on a fresh connection to `url` and returns its rows.
///
/// The connection is driven by a task spawned on the current tokio runtime and closes when
/// this returns. Parameters are not supported: this is for test setup and read-backs.
pub async fn sql(url: &str, statement: &str) -> Result<Vec<Row>, HarnessError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| HarnessError::new(format!("could not connect to {url}: {e}")))?;
    // The connection future does the socket I/O; it ends once `client` is dropped.
    tokio::spawn(connection);
    client
        .query(statement, &[])
        .await
        .map_err(|e| HarnessError::new(format!("`{statement}` failed: {e}")))
}
