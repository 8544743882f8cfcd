//! The transactions an execution holds open: one per `transaction` step while
//! its steps run, or, in a `--rollback` run, one per connection for the whole
//! execution (a `transaction` step is then a savepoint in it). A transaction is
//! begun at its first statement, so that one whose statements are all mocked
//! needs no database.
//!
//! Whatever ends the execution, its transactions end with it: committed when a
//! `transaction` step's steps all succeed, else rolled back; a transaction
//! whose statement is still in flight when the execution is stopped is closed
//! with its connection (see `connect::pgtx`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ExecError, Run};
use crate::connect::postgres::SqlError;
use crate::connect::{PgConnection, PgTx};
use crate::flow::Step;

/// One open (or about to be opened) transaction of an execution.
pub(super) struct Session {
    connection: Arc<PgConnection>,
    tx: Option<PgTx>,
}

impl<'a> Run<'a> {
    /// The execution's transaction on `connection`, begun now if it was not
    /// yet; `None` when statements on it run on their own.
    pub(super) async fn session(
        &mut self,
        connection: &Arc<PgConnection>,
        timeout: Duration,
    ) -> Option<Result<&mut PgTx, SqlError>> {
        let rollback = self.local.is_some_and(|l| l.rollback);
        let at = match self
            .sessions
            .iter()
            .position(|s| Arc::ptr_eq(&s.connection, connection))
        {
            Some(at) => at,
            None if rollback => {
                self.sessions.push(Session {
                    connection: connection.clone(),
                    tx: None,
                });
                self.sessions.len() - 1
            }
            None => return None,
        };
        // The server ends a session idle in the transaction once the execution
        // could no longer be using it.
        let idle = self
            .budget
            .deadline
            .saturating_duration_since(Instant::now());
        let session = &mut self.sessions[at];
        if session.tx.is_none() {
            match connection.begin(timeout, idle).await {
                Ok(tx) => session.tx = Some(tx),
                Err(e) => return Some(Err(e)),
            }
        }
        session.tx.as_mut().map(Ok)
    }

    /// A `transaction` step: `steps` with the statements on `connection` in one
    /// transaction, committed if they all succeed and rolled back otherwise.
    pub(super) async fn transaction(
        &mut self,
        step: &'a Step,
        connection: &Arc<PgConnection>,
        steps: &'a [Step],
    ) -> Result<Option<String>, ExecError> {
        let timeout = connection.statement_timeout();
        let sql_failed = |e: SqlError| {
            Self::failed(
                step,
                format!("connection `{}`: {}", connection.name, e.message),
            )
        };
        if self.local.is_some_and(|l| l.rollback) {
            let tx = match self.session(connection, timeout).await {
                Some(Ok(tx)) => tx,
                Some(Err(e)) => return Err(sql_failed(e)),
                None => return Err(Self::failed(step, "no transaction to run in")),
            };
            tx.savepoint(timeout).await.map_err(sql_failed)?;
            let done = Box::pin(self.steps(steps)).await;
            if let Some(Ok(tx)) = self.session(connection, timeout).await {
                let ended = tx.end_savepoint(done.is_ok(), timeout).await;
                if done.is_ok() {
                    ended.map_err(sql_failed)?;
                }
            }
            done?;
            return Ok(Some(
                "done in a savepoint (--rollback: undone at the end)".to_owned(),
            ));
        }
        self.sessions.push(Session {
            connection: connection.clone(),
            tx: None,
        });
        let done = Box::pin(self.steps(steps)).await;
        let tx = self.sessions.pop().and_then(|s| s.tx);
        match (done, tx) {
            (Ok(()), Some(tx)) => {
                tx.commit(timeout).await.map_err(sql_failed)?;
                Ok(Some("committed".to_owned()))
            }
            (Ok(()), None) => Ok(Some("no statement ran".to_owned())),
            (Err(e), Some(tx)) => {
                tx.rollback(timeout).await;
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Ends the transactions still open when the execution ends (it was
    /// stopped inside one, or this is a `--rollback` run): rolled back.
    pub(super) async fn end_sessions(&mut self) {
        for session in self.sessions.drain(..) {
            if let Some(tx) = session.tx {
                let timeout = session.connection.connect_timeout();
                tx.rollback(timeout).await;
            }
        }
    }
}
