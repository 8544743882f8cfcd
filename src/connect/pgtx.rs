//! A transaction held open across several statements (a flow's `transaction:`
//! step, and every statement of `flowgate test --rollback`): one pooled
//! connection, `BEGIN` … `COMMIT` or `ROLLBACK`, savepoints inside.
//!
//! A connection never goes back to the pool with a transaction open: a
//! transaction that is dropped unfinished (its execution was stopped at its
//! budget, or stopped from outside) cancels the statement in flight and takes
//! its connection out of the pool, so that the server, seeing the connection
//! close, rolls back. The server also ends the session on its own once it has
//! sat idle in the transaction longer than the execution could still run
//! (`idle_in_transaction_session_timeout`, set for the transaction only).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Object};
use serde_json::Value;

use super::effects::{self, OnceKey};
use super::postgres::{PgConnection, SqlError};

/// An open transaction on one pooled connection of `connection`.
pub struct PgTx {
    connection: Arc<PgConnection>,
    /// `None` once committed or rolled back.
    client: Option<Object>,
    /// A statement was sent and its answer not read (the future awaiting it
    /// may have been dropped).
    busy: AtomicBool,
    /// Savepoints open now, innermost last.
    savepoints: usize,
}

impl std::fmt::Debug for PgTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTx")
            .field("connection", &self.connection.name)
            .field("savepoints", &self.savepoints)
            .finish_non_exhaustive()
    }
}

impl PgConnection {
    /// Takes a pooled connection (waiting at most `timeout`) and begins a
    /// transaction on it that the server ends after `idle` without a statement.
    pub async fn begin(
        self: &Arc<Self>,
        timeout: Duration,
        idle: Duration,
    ) -> Result<PgTx, SqlError> {
        let client = self.client(timeout).await?;
        let tx = PgTx {
            connection: self.clone(),
            client: Some(client),
            busy: AtomicBool::new(false),
            savepoints: 0,
        };
        let idle_ms = idle.as_millis().clamp(1_000, i32::MAX as u128);
        tx.batch(
            &format!("BEGIN; SET LOCAL idle_in_transaction_session_timeout = {idle_ms}"),
            timeout,
        )
        .await?;
        Ok(tx)
    }
}

impl PgTx {
    fn client(&self) -> Result<&Object, SqlError> {
        self.client
            .as_ref()
            .ok_or_else(|| SqlError::permanent("the transaction has ended"))
    }

    /// `work` on the connection, given up after `timeout`, marked busy
    /// until it has its answer.
    async fn within<T>(
        &self,
        timeout: Duration,
        work: impl std::future::Future<Output = Result<T, SqlError>>,
    ) -> Result<T, SqlError> {
        let cancel = self.client()?.cancel_token();
        self.busy.store(true, Ordering::Relaxed);
        let r = self.connection.cancel_past(cancel, timeout, work).await;
        // A statement past its time is being cancelled: its answer is still owed.
        let timed_out = r.as_ref().is_err_and(|e| e.timed_out);
        self.busy.store(timed_out, Ordering::Relaxed);
        r
    }

    async fn batch(&self, sql: &str, timeout: Duration) -> Result<(), SqlError> {
        let client = self.client()?;
        let c = &self.connection;
        self.within(timeout, async {
            client.batch_execute(sql).await.map_err(|e| c.describe(&e))
        })
        .await
    }

    /// One statement in the transaction (see `PgConnection::run`).
    pub async fn run(
        &mut self,
        query: &str,
        params: &[Value],
        timeout: Duration,
        single: bool,
    ) -> Result<Value, SqlError> {
        let client = self.client()?;
        let work = self.connection.statement(client, query, params, single);
        self.within(timeout, work).await
    }

    /// As `PgConnection::run_once`, in this transaction: the record of the
    /// effect commits or rolls back with the rest of it.
    pub async fn run_once(
        &mut self,
        key: &OnceKey,
        query: &str,
        params: &[Value],
        timeout: Duration,
        single: bool,
    ) -> Result<(Value, bool), SqlError> {
        if !self.connection.effects_table.load(Ordering::Acquire) {
            // Made in a savepoint: another session making it first must not
            // abort the transaction. Not remembered as made: this transaction
            // may yet roll it back.
            self.batch("SAVEPOINT flowgate_effects", timeout).await?;
            let client = self.client()?;
            let c = &self.connection;
            let made = self
                .within(timeout, async {
                    Ok(client
                        .batch_execute(effects::CREATE_TABLE)
                        .await
                        .map_err(|e| {
                            if effects::lost_race(&e) {
                                None
                            } else {
                                Some(c.effects_error(&e))
                            }
                        }))
                })
                .await?;
            match made {
                Ok(()) => {
                    self.batch("RELEASE SAVEPOINT flowgate_effects", timeout)
                        .await?
                }
                Err(None) => {
                    self.batch("ROLLBACK TO SAVEPOINT flowgate_effects", timeout)
                        .await?
                }
                Err(Some(e)) => return Err(e),
            }
        }
        let client = self.client()?;
        let work = self.connection.once_in(client, key, query, params, single);
        self.within(timeout, work).await
    }

    /// Opens a savepoint: what follows can be rolled back alone.
    pub async fn savepoint(&mut self, timeout: Duration) -> Result<(), SqlError> {
        let name = self.savepoints + 1;
        self.batch(&format!("SAVEPOINT flowgate_{name}"), timeout)
            .await?;
        self.savepoints = name;
        Ok(())
    }

    /// Ends the innermost savepoint, keeping (`keep`) or undoing its work.
    pub async fn end_savepoint(&mut self, keep: bool, timeout: Duration) -> Result<(), SqlError> {
        let name = self.savepoints;
        self.savepoints = name.saturating_sub(1);
        let sql = if keep {
            format!("RELEASE SAVEPOINT flowgate_{name}")
        } else {
            format!("ROLLBACK TO SAVEPOINT flowgate_{name}; RELEASE SAVEPOINT flowgate_{name}")
        };
        self.batch(&sql, timeout).await
    }

    /// Commits; the connection goes back to the pool.
    pub async fn commit(mut self, timeout: Duration) -> Result<(), SqlError> {
        let r = self.batch("COMMIT", timeout).await;
        if r.is_ok() {
            self.client = None;
        }
        r
    }

    /// Rolls back; the connection goes back to the pool if the server said so,
    /// else it is closed (see `Drop`).
    pub async fn rollback(mut self, timeout: Duration) {
        if !self.busy.load(Ordering::Relaxed) && self.batch("ROLLBACK", timeout).await.is_ok() {
            self.client = None;
        }
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if self.busy.load(Ordering::Relaxed)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let cancel = client.cancel_token();
            let tls = self.connection.tls();
            rt.spawn(async move {
                let _ = cancel.cancel_query(tls).await;
            });
        }
        // Out of the pool and closed: the server rolls back what was open.
        drop(Object::take(client));
    }
}
