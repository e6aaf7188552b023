//! How L2 statements reach the server: named prepared statements, or unnamed ones that a transaction-mode pooler can carry.
//!
//! A named prepared statement lives in the server session it was prepared in. A pooler in
//! transaction mode (pgbouncer, Supavisor) hands that session to another client at the end of
//! every transaction, so the next statement may find its name missing (SQLSTATE 26000), taken
//! (42P05), or, worse, bound to another client's statement. An unnamed statement is parsed,
//! bound and run in one message sequence that the pooler keeps on one server connection.
//! Named statements are the default: they are parsed once per connection, which makes an L2
//! hit much cheaper.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use deadpool_postgres::ClientWrapper;
use smallvec::SmallVec;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row};

use crate::error::describe;

/// A statement parameter with its type, which an unnamed statement must state.
pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// The protocol of one backend's statements: named and prepared once per connection, until
/// a transaction-mode pooler shows itself or is declared, then unnamed for good.
#[derive(Debug)]
pub(crate) struct Protocol {
    pooler_safe: AtomicBool,
}

impl Protocol {
    /// `transaction_pooler`: the builder's promise that the pool goes through such a pooler.
    pub(crate) fn new(transaction_pooler: bool) -> Self {
        Protocol {
            pooler_safe: AtomicBool::new(transaction_pooler),
        }
    }

    /// Whether statements are unnamed.
    pub(crate) fn pooler_safe(&self) -> bool {
        self.pooler_safe.load(Relaxed)
    }

    /// Runs `sql`, which returns at most one row.
    pub(crate) async fn query_opt(
        &self,
        client: &ClientWrapper,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, Error> {
        self.run(|pooler_safe| async move {
            if pooler_safe {
                client.query_typed_opt(sql, params).await
            } else {
                let statement = client.prepare_cached(sql).await?;
                client.query_opt(&statement, &values(params)).await
            }
        })
        .await
    }

    /// Runs `sql`, which returns exactly one row.
    pub(crate) async fn query_one(
        &self,
        client: &ClientWrapper,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Row, Error> {
        self.run(|pooler_safe| async move {
            if pooler_safe {
                client.query_typed_one(sql, params).await
            } else {
                let statement = client.prepare_cached(sql).await?;
                client.query_one(&statement, &values(params)).await
            }
        })
        .await
    }

    /// Runs `sql`; returns the rows it affected.
    pub(crate) async fn execute(
        &self,
        client: &ClientWrapper,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64, Error> {
        self.run(|pooler_safe| async move {
            if pooler_safe {
                client.execute_typed(sql, params).await
            } else {
                let statement = client.prepare_cached(sql).await?;
                client.execute(&statement, &values(params)).await
            }
        })
        .await
    }

    /// Runs `attempt` (given whether to be pooler-safe); if its named statement failed as only
    /// a transaction-mode pooler makes it fail, switches for good and runs it once more,
    /// unnamed. The failed attempt ran nothing: a statement that is missing or could not be
    /// prepared was never executed.
    async fn run<T, E, F, Fut>(&self, attempt: F) -> Result<T, E>
    where
        E: ServerError,
        F: Fn(bool) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if self.pooler_safe() {
            return attempt(true).await;
        }
        match attempt(false).await {
            Err(err) if self.switch_on(&err) => attempt(true).await,
            outcome => outcome,
        }
    }

    /// Whether `err` shows a transaction-mode pooler; at the first such error of the process,
    /// switches to unnamed statements and says so once.
    fn switch_on(&self, err: &impl ServerError) -> bool {
        if !err.sqlstate().is_some_and(shows_pooler) {
            return false;
        }
        if self.switch() {
            tracing::warn!(
                error = err.describe(),
                "tiered: L2 statements are going through a transaction-mode pooler (pgbouncer, \
                 Supavisor, ...), where named prepared statements do not survive a transaction: \
                 switching to unnamed statements for good. Set .transaction_pooler(true) on the \
                 runtime builder to start that way"
            );
        }
        true
    }

    /// Switches to unnamed statements; returns whether this call did (the one to say so).
    fn switch(&self) -> bool {
        !self.pooler_safe.swap(true, Relaxed)
    }
}

/// Whether a server's error is what a transaction-mode pooler does to a named prepared
/// statement: the session that prepared it is gone (26000), or the one that got the statement
/// has one of that name already (42P05). A direct connection never answers so: tokio-postgres
/// names each statement once per process.
fn shows_pooler(state: &SqlState) -> bool {
    *state == SqlState::INVALID_SQL_STATEMENT_NAME || *state == SqlState::DUPLICATE_PSTATEMENT
}

/// The values of `params`, for a prepared statement, which knows their types.
fn values<'a>(params: &[Param<'a>]) -> SmallVec<[&'a (dyn ToSql + Sync); 8]> {
    params.iter().map(|(value, _)| *value).collect()
}

/// An error as [`Protocol`] needs to see it.
trait ServerError {
    /// The server's SQLSTATE, if the server answered.
    fn sqlstate(&self) -> Option<&SqlState>;
    /// For the log.
    fn describe(&self) -> String;
}

impl ServerError for Error {
    fn sqlstate(&self) -> Option<&SqlState> {
        self.code()
    }

    fn describe(&self) -> String {
        describe(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Failed(Option<SqlState>);

    impl ServerError for Failed {
        fn sqlstate(&self) -> Option<&SqlState> {
            self.0.as_ref()
        }

        fn describe(&self) -> String {
            format!("{:?}", self.0)
        }
    }

    type Answer = Result<u32, Failed>;

    fn failed(state: SqlState) -> Answer {
        Err(Failed(Some(state)))
    }

    /// Runs one operation whose attempts answer from `answers` in turn; returns its outcome
    /// and, per attempt, whether it was pooler-safe.
    async fn operation(protocol: &Protocol, answers: &[Answer]) -> (Answer, Vec<bool>) {
        let attempts = Mutex::new(Vec::new());
        let outcome = protocol
            .run(|pooler_safe| {
                let mut attempts = attempts.lock().unwrap();
                let answer = answers[attempts.len()].clone();
                attempts.push(pooler_safe);
                async move { answer }
            })
            .await;
        (outcome, attempts.into_inner().unwrap())
    }

    #[test]
    fn only_a_missing_or_taken_statement_name_shows_a_pooler() {
        assert!(shows_pooler(&SqlState::from_code("26000")));
        assert!(shows_pooler(&SqlState::from_code("42P05")));
        for other in ["42P01", "42501", "08P01", "08006", "40001", "57P01"] {
            assert!(!shows_pooler(&SqlState::from_code(other)), "{other}");
        }
    }

    #[tokio::test]
    async fn named_statements_are_the_default_and_a_declared_pooler_never_uses_them() {
        let default = Protocol::new(false);
        assert_eq!(operation(&default, &[Ok(1)]).await, (Ok(1), vec![false]));
        assert!(!default.pooler_safe());

        let declared = Protocol::new(true);
        assert_eq!(operation(&declared, &[Ok(1)]).await, (Ok(1), vec![true]));
        let symptom = failed(SqlState::INVALID_SQL_STATEMENT_NAME);
        assert_eq!(
            operation(&declared, std::slice::from_ref(&symptom)).await,
            (symptom, vec![true]),
            "an unnamed statement's error is not retried"
        );
    }

    #[tokio::test]
    async fn the_first_sign_of_a_pooler_switches_for_good_and_the_operation_succeeds_unnamed() {
        for symptom in [
            SqlState::INVALID_SQL_STATEMENT_NAME,
            SqlState::DUPLICATE_PSTATEMENT,
        ] {
            let protocol = Protocol::new(false);
            assert_eq!(
                operation(&protocol, &[failed(symptom), Ok(7)]).await,
                (Ok(7), vec![false, true]),
                "retried once, unnamed"
            );
            assert!(protocol.pooler_safe());
            assert_eq!(
                operation(&protocol, &[Ok(8)]).await,
                (Ok(8), vec![true]),
                "for good"
            );
        }
    }

    #[tokio::test]
    async fn the_retry_is_the_last_attempt() {
        let protocol = Protocol::new(false);
        let answers = [
            failed(SqlState::INVALID_SQL_STATEMENT_NAME),
            failed(SqlState::DUPLICATE_PSTATEMENT),
        ];
        assert_eq!(
            operation(&protocol, &answers).await,
            (failed(SqlState::DUPLICATE_PSTATEMENT), vec![false, true])
        );
    }

    #[tokio::test]
    async fn other_errors_neither_switch_nor_retry() {
        let protocol = Protocol::new(false);
        for state in [
            Some(SqlState::UNDEFINED_TABLE),
            Some(SqlState::PROTOCOL_VIOLATION),
            None,
        ] {
            let answer = Err(Failed(state));
            assert_eq!(
                operation(&protocol, std::slice::from_ref(&answer)).await,
                (answer, vec![false])
            );
        }
        assert!(!protocol.pooler_safe());
    }

    #[test]
    fn the_switch_is_announced_once() {
        let protocol = Protocol::new(false);
        assert!(protocol.switch(), "the first switch");
        assert!(!protocol.switch());
        assert!(!Protocol::new(true).switch(), "a declared pooler needs no switch");
    }
}
