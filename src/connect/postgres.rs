//! `postgres:` connections: pools created on first use, with timeouts on every
//! wait (a pool without them can wait forever), prepared statements cached per
//! pooled connection, and a statement timeout enforced both by the server
//! (`statement_timeout`, set once per connection at startup, never per query)
//! and by the step (a cancel request).
//!
//! A connection's task runs on the thread whose runtime opened it. Each thread
//! that runs queries (an HTTP worker, the background runtime) therefore gets a
//! pool of its own, a share of `pool_size`: a query then never waits for another
//! thread to be free to poll its connection, and needs no wake-up across threads.

use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, PoolBuilder, PoolError, RecyclingMethod, Runtime,
};
use serde_json::{Map, Value, json};
use tokio_postgres::types::ToSql;

use super::Secrets;
use super::effects::{self, OnceKey};
use super::pgtypes::{Cell, Param};

pub const DEFAULT_POOL_SIZE: usize = 16;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What `_tenant.yaml` says about one PostgreSQL connection.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The URL after `${VAR}` expansion (holds the password: never shown).
    pub url: String,
    pub config: tokio_postgres::Config,
    /// How connections are encrypted (`sslmode`, `sslrootcert`).
    pub tls: crate::pgtls::MakeRustls,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub secrets: Secrets,
}

impl PgOptions {
    /// Equal for connections that may share a pool.
    pub fn identity(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{:?}\u{0}{:?}",
            self.url, self.pool_size, self.connect_timeout, self.statement_timeout
        )
    }
}

/// A failed query, and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub message: String,
    pub transient: bool,
    /// The statement did not finish in time and is being cancelled.
    pub timed_out: bool,
}

impl SqlError {
    pub(super) fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
            timed_out: false,
        }
    }
}

pub struct PgConnection {
    pub name: String,
    options: PgOptions,
    /// How the pools connect (built once, on first use).
    manager: OnceLock<tokio_postgres::Config>,
    /// One pool per thread that has run a query; a handful of entries at most.
    pools: Mutex<Vec<(ThreadId, Pool)>>,
    /// The effects table of `once: true` steps exists.
    pub(super) effects_table: AtomicBool,
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("name", &self.name)
            .field("pool_size", &self.options.pool_size)
            .finish_non_exhaustive()
    }
}

/// A pool of at most `size` connections to `config` (the store's and the
/// `postgres:` connections' alike). Getting, creating and recycling a connection
/// each give up after `timeout`: without them `get()` waits for ever while the
/// database is away.
pub fn pool_builder(
    config: tokio_postgres::Config,
    tls: crate::pgtls::MakeRustls,
    size: usize,
    timeout: Duration,
) -> PoolBuilder {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
}

/// SQLSTATE classes worth another try: connection exceptions, serialization
/// failures and deadlocks, the server shutting down or short of resources.
fn transient_state(code: &str) -> bool {
    code.starts_with("08")
        || code == "40001"
        || code == "40P01"
        || code.starts_with("53")
        || code.starts_with("57P")
}

impl PgConnection {
    pub fn new(name: &str, options: PgOptions) -> Self {
        Self {
            name: name.to_owned(),
            options,
            manager: OnceLock::new(),
            pools: Mutex::new(Vec::new()),
            effects_table: AtomicBool::new(false),
        }
    }

    /// Connections a thread's pool may hold: `pool_size` shared out over the
    /// cores (the HTTP workers default to one per core), at least one.
    fn per_thread(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        self.options.pool_size.div_ceil(cores).max(1)
    }

    pub fn connect_timeout(&self) -> Duration {
        self.options.connect_timeout
    }

    pub(super) fn tls(&self) -> crate::pgtls::MakeRustls {
        self.options.tls.clone()
    }

    pub fn statement_timeout(&self) -> Duration {
        self.options.statement_timeout
    }

    pub fn secrets(&self) -> &Secrets {
        &self.options.secrets
    }

    fn config(&self) -> &tokio_postgres::Config {
        self.manager.get_or_init(|| {
            let o = &self.options;
            let mut config = o.config.clone();
            config.connect_timeout(o.connect_timeout);
            // The server stops a statement past the timeout even if this
            // process is gone; the step's own timer cancels sooner.
            let options = format!(
                "{} -c statement_timeout={}",
                config.get_options().unwrap_or_default(),
                o.statement_timeout.as_millis()
            );
            config.options(options.trim());
            if config.get_application_name().is_none() {
                config.application_name("flowgate");
            }
            config
        })
    }

    /// This thread's pool (created on its first query).
    fn pool(&self) -> Result<Pool, SqlError> {
        let me = std::thread::current().id();
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, pool)) = pools.iter().find(|(t, _)| *t == me) {
            return Ok(pool.clone());
        }
        let pool = pool_builder(
            self.config().clone(),
            self.options.tls.clone(),
            self.per_thread(),
            self.options.connect_timeout,
        )
        .build()
        .map_err(|e| SqlError::permanent(format!("cannot create the pool: {e}")))?;
        pools.push((me, pool.clone()));
        Ok(pool)
    }

    pub(super) fn describe(&self, e: &tokio_postgres::Error) -> SqlError {
        let (message, transient) = match e.as_db_error() {
            Some(db) => {
                let mut m = format!("{} ({})", db.message(), db.code().code());
                if let Some(d) = db.detail() {
                    m.push_str(": ");
                    m.push_str(d);
                }
                (m, transient_state(db.code().code()))
            }
            None => {
                let m = crate::domain::chain::describe(e);
                // Serializing a parameter is the flow's problem, not the network's.
                let transient = e.is_closed() || (e.code().is_none() && !m.contains("serializing"));
                (m, transient)
            }
        };
        SqlError {
            message: self.options.secrets.redact(&message).into_owned(),
            transient,
            timed_out: false,
        }
    }

    /// Runs `query` with `params` bound to `$1..$n`. Rows become objects keyed by
    /// column name; a statement without result columns gives `{rows_affected}`;
    /// `single` gives the one row or null.
    pub async fn run(
        &self,
        query: &str,
        params: &[Value],
        timeout: Duration,
        single: bool,
    ) -> Result<Value, SqlError> {
        let client = self.client(timeout).await?;
        let work = self.statement(&client, query, params, single);
        self.within(&client, timeout, work).await
    }

    /// As `run`, once per `key` (see [`super::effects`]): the statement and the
    /// record of its effect commit together. Returns the result, and whether it
    /// is the one stored when the statement ran before (it did not run now).
    pub async fn run_once(
        &self,
        key: &OnceKey,
        query: &str,
        params: &[Value],
        timeout: Duration,
        single: bool,
    ) -> Result<(Value, bool), SqlError> {
        let mut client = self.client(timeout).await?;
        let cancel = client.cancel_token();
        let work = async {
            if !self.effects_table.load(Ordering::Acquire) {
                effects::create_table(&client)
                    .await
                    .map_err(|e| self.effects_error(&e))?;
                self.effects_table.store(true, Ordering::Release);
            }
            let tx = client.transaction().await.map_err(|e| self.describe(&e))?;
            let outcome = self.once_in(&tx, key, query, params, single).await?;
            // When the effect was made before, nothing was written: the commit
            // ends the transaction as a rollback would.
            tx.commit().await.map_err(|e| self.describe(&e))?;
            Ok(outcome)
        };
        self.cancel_past(cancel, timeout, work).await
    }

    /// In the open transaction `tx`: the stored result of `key`'s effect when it
    /// was made before (`true`), else the statement run now with its result
    /// recorded (`false`), to commit or roll back together.
    pub(super) async fn once_in<C: GenericClient>(
        &self,
        tx: &C,
        key: &OnceKey,
        query: &str,
        params: &[Value],
        single: bool,
    ) -> Result<(Value, bool), SqlError> {
        if let Some(stored) = effects::claim(tx, key)
            .await
            .map_err(|e| self.describe(&e))?
        {
            return Ok((stored, true));
        }
        let result = self.statement(tx, query, params, single).await?;
        effects::record(tx, key, &result)
            .await
            .map_err(|e| self.describe(&e))?;
        Ok((result, false))
    }

    /// A pooled connection of this thread's pool, waited for at most `timeout`.
    pub(super) async fn client(
        &self,
        timeout: Duration,
    ) -> Result<deadpool_postgres::Object, SqlError> {
        let pool = self.pool()?;
        match tokio::time::timeout(timeout, pool.get()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(PoolError::Backend(e))) => Err(self.describe(&e)),
            Ok(Err(PoolError::Timeout(_))) | Err(_) => Err(SqlError {
                message: format!("no connection to `{}` became available in time", self.name),
                transient: true,
                timed_out: false,
            }),
            Ok(Err(e)) => Err(SqlError {
                message: self.options.secrets.redact(&e.to_string()).into_owned(),
                transient: true,
                timed_out: false,
            }),
        }
    }

    /// One statement on `client` (a connection, or a transaction on one).
    pub(super) async fn statement<C: GenericClient>(
        &self,
        client: &C,
        query: &str,
        params: &[Value],
        single: bool,
    ) -> Result<Value, SqlError> {
        let stmt = client
            .prepare_cached(query)
            .await
            .map_err(|e| self.describe(&e))?;
        if stmt.params().len() != params.len() {
            return Err(SqlError::permanent(format!(
                "the query has {} parameter(s) but `params` gives {}",
                stmt.params().len(),
                params.len()
            )));
        }
        let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        if stmt.columns().is_empty() {
            let n = client
                .execute(&stmt, &refs)
                .await
                .map_err(|e| self.describe(&e))?;
            return Ok(json!({"rows_affected": n}));
        }
        let rows = client
            .query(&stmt, &refs)
            .await
            .map_err(|e| self.describe(&e))?;
        if single && rows.len() > 1 {
            return Err(SqlError::permanent(format!(
                "`single: true` expects at most one row; the query returned {}",
                rows.len()
            )));
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut obj = Map::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let cell: Cell = row.try_get(i).map_err(|e| {
                    SqlError::permanent(format!("column `{}`: {}", col.name(), source_text(&e)))
                })?;
                obj.insert(col.name().to_owned(), cell.0);
            }
            out.push(Value::Object(obj));
        }
        Ok(if single {
            out.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(out)
        })
    }

    /// `work` on `client`, given up after `timeout` (see `cancel_past`).
    async fn within<T>(
        &self,
        client: &deadpool_postgres::Object,
        timeout: Duration,
        work: impl std::future::Future<Output = Result<T, SqlError>>,
    ) -> Result<T, SqlError> {
        self.cancel_past(client.cancel_token(), timeout, work).await
    }

    /// `work`, given up after `timeout`: the statement is then cancelled on the
    /// server too (a transaction left open is rolled back as it is dropped), and
    /// the pooled connection stays usable once the server has answered.
    pub(super) async fn cancel_past<T>(
        &self,
        cancel: tokio_postgres::CancelToken,
        timeout: Duration,
        work: impl std::future::Future<Output = Result<T, SqlError>>,
    ) -> Result<T, SqlError> {
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                let tls = self.options.tls.clone();
                tokio::spawn(async move {
                    let _ = cancel.cancel_query(tls).await;
                });
                Err(SqlError {
                    message: format!("the statement did not finish within {timeout:?}"),
                    transient: true,
                    timed_out: true,
                })
            }
        }
    }

    /// Why the effects table could not be made, with what to do about it.
    pub(super) fn effects_error(&self, e: &tokio_postgres::Error) -> SqlError {
        let mut err = self.describe(e);
        err.message = format!(
            "`once: true` records effects in the table {} of connection `{}`, which could not be created ({}); create it with: {}",
            effects::TABLE,
            self.name,
            err.message,
            effects::CREATE_TABLE
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        err
    }
}

fn source_text(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(s) => s.to_string(),
        None => e.to_string(),
    }
}
