//! What can go wrong in a store, and which of it is worth a retry.
//!
//! A database that is away, busy or restarting is an outage: callers are told
//! to come back (`503` with `Retry-After`). A statement the database refuses
//! for what it says (a constraint, a syntax error, a table that is not there)
//! fails the same way every time: it is a bug, answered `500` and logged with
//! every cause, so that well-behaved clients do not retry it for ever.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use crate::domain::{TenantName, TriggerName};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take writes right now (disk, database away, a lock or
    /// serialization conflict): callers get 503 and come back.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The database refused a statement for a reason a retry does not change
    /// (a constraint, a syntax error, a missing table): a bug, callers get 500.
    #[error("store statement failed: {0}")]
    Statement(#[source] Cause),
    #[error("store configuration: {0}")]
    Config(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A message whose stored input, trace or response cannot be read back
    /// (deeper than `domain::depth::MAX_STORED_DEPTH`, or not JSON). Its names
    /// say who may be told.
    #[error("{why}")]
    Unreadable {
        tenant: TenantName,
        trigger: TriggerName,
        why: String,
    },
}

impl StoreError {
    /// Whether the same call may succeed later: the store was away or busy.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What a store error says happened: words of the store's own, or the error
/// of the driver or the file system underneath, kept whole as the next link of
/// the chain (for the logs, and for code that looks into it).
#[derive(Debug, Clone)]
pub struct Cause {
    /// What is shown; `None`: the error underneath, with its causes.
    what: Option<String>,
    source: Option<Arc<dyn Error + Send + Sync + 'static>>,
}

impl Cause {
    /// An error underneath, shown as it says itself (with its causes).
    pub fn of(e: impl Error + Send + Sync + 'static) -> Self {
        Self {
            what: None,
            source: Some(Arc::new(e)),
        }
    }

    /// An error underneath, shown as `what`.
    pub fn new(what: impl Into<String>, e: impl Error + Send + Sync + 'static) -> Self {
        Self {
            what: Some(what.into()),
            source: Some(Arc::new(e)),
        }
    }
}

impl From<String> for Cause {
    fn from(what: String) -> Self {
        Self {
            what: Some(what),
            source: None,
        }
    }
}

impl From<&str> for Cause {
    fn from(what: &str) -> Self {
        what.to_owned().into()
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.what, &self.source) {
            (Some(what), _) => f.write_str(what),
            (None, Some(e)) => crate::domain::chain::Chain(&**e).fmt(f),
            (None, None) => Ok(()),
        }
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Whether a PostgreSQL error code (SQLSTATE) says the database was away or
/// busy rather than that the statement is wrong: connection exceptions (08),
/// insufficient resources (53), operator intervention (57P: shut down,
/// restarting, terminated), system errors (58: I/O), a serialization failure
/// or deadlock (40001, 40P01: the transaction may simply run again), a lock
/// not had within `lock_timeout` (55P03) or a statement cancelled (57014),
/// a session ended for idling in a transaction (25P03), a server that has
/// become a read-only standby (25006), and refused credentials (28), which
/// an operator mends without a new flowgate.
pub fn retryable_sqlstate(code: &str) -> bool {
    ["08", "53", "57P", "58", "28"]
        .iter()
        .any(|class| code.starts_with(class))
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57014" | "25P03" | "25006"
        )
}

/// A PostgreSQL error, classified: one carrying a SQLSTATE by its code (see
/// `retryable_sqlstate`), one without by whether a statement or the
/// connection is at fault. Shown as `CODE: message`, or with its causes.
pub fn postgres(e: tokio_postgres::Error) -> StoreError {
    if let Some(d) = e.as_db_error() {
        let what = format!("{}: {}", d.code().code(), d.message());
        let retryable = retryable_sqlstate(d.code().code());
        let cause = Cause::new(what, e);
        return if retryable {
            StoreError::Unavailable(cause)
        } else {
            StoreError::Statement(cause)
        };
    }
    if statement_at_fault(&e) {
        StoreError::Statement(Cause::of(e))
    } else {
        StoreError::Unavailable(Cause::of(e))
    }
}

/// A driver error without a SQLSTATE that a statement caused: its parameters
/// or its rows did not fit. Every other (a connection closed or broken, TLS,
/// a timeout) is the database being away.
fn statement_at_fault(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return false;
    }
    let said = e.to_string();
    [
        "error serializing parameter",
        "error deserializing column",
        "invalid column",
        "query returned an unexpected number of",
        "expected ",
    ]
    .iter()
    .any(|p| said.starts_with(p))
}

/// An SQLite error, classified: the file busy or locked by another process,
/// or the disk failing or full, is an outage; a constraint, a misuse of the
/// API or a value of the wrong type is a bug. Shown as SQLite says it.
pub fn sqlite(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    let away = match &e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            C::DatabaseBusy
                | C::DatabaseLocked
                | C::SystemIoFailure
                | C::DiskFull
                | C::CannotOpen
                | C::OutOfMemory
                | C::FileLockingProtocolFailed
                | C::ReadOnly
        ),
        _ => false,
    };
    let cause = Cause::new(e.to_string(), e);
    if away {
        StoreError::Unavailable(cause)
    } else {
        StoreError::Statement(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_resource_and_conflict_states_are_retried_and_the_rest_are_bugs() {
        for code in [
            "08000", "08003", "08006", "08001", "08P01", "53000", "53100", "53200", "53300",
            "57P01", "57P02", "57P03", "58030", "40001", "40P01", "55P03", "57014", "25P03",
            "25006", "28P01",
        ] {
            assert!(retryable_sqlstate(code), "{code} is retried");
        }
        for code in [
            "23505", "23503", "23502", "23514", "42601", "42P01", "42703", "22P02", "22001",
            "XX000", "0A000", "40002", "P0001", "42501",
        ] {
            assert!(!retryable_sqlstate(code), "{code} is a bug");
        }
    }

    fn sqlite_failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_busy_locked_and_io_errors_are_outages_and_the_rest_bugs() {
        use rusqlite::ffi;
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_FULL,
            ffi::SQLITE_CANTOPEN,
        ] {
            assert!(sqlite(sqlite_failure(code)).is_unavailable(), "{code}");
        }
        for code in [
            ffi::SQLITE_CONSTRAINT,
            ffi::SQLITE_MISUSE,
            ffi::SQLITE_MISMATCH,
            ffi::SQLITE_ERROR,
        ] {
            assert!(
                matches!(sqlite(sqlite_failure(code)), StoreError::Statement(_)),
                "{code}"
            );
        }
        assert!(matches!(
            sqlite(rusqlite::Error::QueryReturnedNoRows),
            StoreError::Statement(_)
        ));
    }

    /// Against real SQLite: a second writer finds the file busy, a repeated
    /// key breaks a constraint.
    #[test]
    fn real_sqlite_errors_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classes.db");
        let a = rusqlite::Connection::open(&path).unwrap();
        a.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1)")
            .unwrap();
        let e = a.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        assert!(matches!(sqlite(e), StoreError::Statement(_)));
        let e = a.execute("INSERT INTO nowhere VALUES (1)", []).unwrap_err();
        assert!(matches!(sqlite(e), StoreError::Statement(_)));
        a.execute_batch("BEGIN IMMEDIATE").unwrap();
        let b = rusqlite::Connection::open(&path).unwrap();
        b.busy_timeout(std::time::Duration::ZERO).unwrap();
        let e = b.execute("INSERT INTO t VALUES (2)", []).unwrap_err();
        let e = sqlite(e);
        assert!(e.is_unavailable(), "{e}");
        a.execute_batch("COMMIT").unwrap();
    }

    /// A connection to the test database, or `None` without one (outside CI).
    async fn test_database() -> Option<tokio_postgres::Client> {
        let Ok(url) = std::env::var("FLOWGATE_TEST_DATABASE_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but FLOWGATE_TEST_DATABASE_URL is not set"
            );
            eprintln!("skipped: FLOWGATE_TEST_DATABASE_URL is not set");
            return None;
        };
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("the test database answers");
        tokio::spawn(conn);
        Some(client)
    }

    /// The classifier over errors the real server and driver give.
    #[tokio::test]
    async fn real_postgres_errors_are_classified() {
        let Some(client) = test_database().await else {
            return;
        };
        let is_bug = |e: &StoreError| matches!(e, StoreError::Statement(_));
        // A syntax error (42601).
        let e = postgres(client.batch_execute("SELEC 1").await.unwrap_err());
        assert!(is_bug(&e) && e.to_string().contains("42601"), "{e}");
        // A parameter of the wrong type: the driver refuses it, no SQLSTATE.
        let e = client.query("SELECT $1::int4", &[&"seven"]).await;
        let e = postgres(e.unwrap_err());
        assert!(is_bug(&e), "{e}");
        // A real serialization failure (40001): two serializable transactions
        // that each read what the other writes.
        let table = format!("fg_serial_{}", std::process::id());
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v int)"
            ))
            .await
            .unwrap();
        let Some(other) = test_database().await else {
            return;
        };
        let begin = "BEGIN ISOLATION LEVEL SERIALIZABLE";
        let read = format!("SELECT count(*) FROM {table}");
        for c in [&client, &other] {
            c.batch_execute(begin).await.unwrap();
            c.batch_execute(&read).await.unwrap();
        }
        let write = format!("INSERT INTO {table} VALUES (1)");
        other.batch_execute(&write).await.unwrap();
        other.batch_execute("COMMIT").await.unwrap();
        let failed = match client.batch_execute(&write).await {
            Err(e) => e,
            Ok(()) => client.batch_execute("COMMIT").await.unwrap_err(),
        };
        let e = postgres(failed);
        assert!(e.is_unavailable() && e.to_string().contains("40001"), "{e}");
        let _ = client.batch_execute("ROLLBACK").await;
        client
            .batch_execute(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
        // The session terminated (57P01), then the connection closed.
        let e = client
            .batch_execute("SELECT pg_terminate_backend(pg_backend_pid())")
            .await
            .unwrap_err();
        assert!(postgres(e).is_unavailable());
        let e = client.batch_execute("SELECT 1").await.unwrap_err();
        assert!(e.is_closed());
        assert!(postgres(e).is_unavailable());
    }

    #[test]
    fn a_cause_is_shown_as_said_and_keeps_its_source() {
        let io = std::io::Error::other("disk on fire");
        let e = StoreError::Unavailable(Cause::of(io));
        assert_eq!(e.to_string(), "store unavailable: disk on fire");
        let cause = e.source().unwrap();
        assert_eq!(cause.to_string(), "disk on fire");
        assert!(cause.source().is_some(), "the I/O error is the next link");
        let e = StoreError::Unavailable("the store is closed".into());
        assert_eq!(e.to_string(), "store unavailable: the store is closed");
        assert!(e.source().unwrap().source().is_none());
    }
}
