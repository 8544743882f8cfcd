//! The durable record of every message: the only place with SQL.
//!
//! `Store` is a closed enum over the backends, chosen once in `startup`. Writes that
//! a caller waits for (accepting a message) are group-committed; the record of an
//! execution (started, finished) is written behind, in batches: losing it in a crash
//! only means the message runs again, which at-least-once allows.

/// Calls the same method on whichever backend.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Self::Sqlite($s) => $e,
            Self::Postgres($s) => $e,
        }
    };
}

mod admin;
mod error;
mod outbox;
mod postgres;
mod shared;
mod sqlite;
mod subscriptions;
mod types;
mod usage;

pub use admin::{
    BlockedLane, DeliveryAttempt, DeliveryQuery, DeliveryStatus, DeliveryView, MessageQuery,
    MessageSummary, NewDelivery, Release, StatusCount,
};
pub use error::{Cause, retryable_sqlstate};
pub use outbox::{FanOut, OutboxEvent};
pub use postgres::{
    Claim, ClaimedMessage, Ended, LaneClaim, LaneMessage, PgOptions, PgStats, PgStore,
    TenantShares, Wakeup,
};
pub use shared::{Claimed, SharedStats, SharedStore};
pub use sqlite::SqliteStore;
pub use types::{
    Completion, EnqueueOutcome, PendingMessage, StoreError, StoredInput, Submitted, Unreadable,
    read_document, read_documents, read_input, read_response,
};
pub use usage::{KeyUse, UsageDelta, UsageRow};

use crate::domain::{AttemptRecord, MessageId, MessageView, Micros, NewMessage};

/// A message store backend.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the embedded store named by a URL: `sqlite://PATH`.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Self::Sqlite(SqliteStore::open(path)?));
        }
        if is_postgres(url) {
            return Err(StoreError::Config(
                "a PostgreSQL store is opened with Store::connect".into(),
            ));
        }
        Err(StoreError::Config(format!(
            "unknown store URL `{url}`: expected sqlite://PATH or postgres://..."
        )))
    }

    /// Opens the store named by a URL, `sqlite://PATH` or `postgres://...`, and
    /// brings its tables up to date. Call inside the runtime that will run it.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        if is_postgres(url) {
            return Ok(Self::Postgres(PgStore::connect(url, options).await?));
        }
        Self::open(url)
    }

    /// The shared store, whose work is claimed from the database.
    pub fn shared(&self) -> Option<&PgStore> {
        match self {
            Self::Postgres(p) => Some(p),
            Self::Sqlite(_) => None,
        }
    }

    /// Stores accepted messages in one transaction; returns once they are durable.
    pub async fn enqueue(&self, batch: &[NewMessage]) -> Result<Vec<EnqueueOutcome>, StoreError> {
        each!(self, s => s.enqueue(batch).await)
    }

    /// Hands accepted messages to the store in one transaction without waiting for
    /// them to be durable, so the next batch can follow at once. The embedded store
    /// writes in submission order. The shared one runs each batch's transaction on a
    /// connection of its own; a lane's order still holds, because every enqueue
    /// locks the lane's row before its messages take their `seq` (as batches from
    /// several nodes do).
    ///
    /// `mine` marks the messages this node will run itself (the shared store
    /// stores them claimed by it); the embedded store runs every message where it
    /// was accepted.
    pub async fn submit(&self, batch: &[NewMessage], mine: &[bool]) -> Submitted {
        match self {
            Self::Sqlite(s) => s.submit(batch).await,
            Self::Postgres(p) => Box::pin(p.enqueue_claiming(batch, mine)),
        }
    }

    /// Records an attempt's start (written behind).
    pub async fn started(&self, id: MessageId, attempt: AttemptRecord) {
        each!(self, s => s.started(id, attempt).await)
    }

    /// Records an attempt's end and the message's new state (written behind).
    pub async fn finished(&self, completion: Completion) {
        each!(self, s => s.finished(completion).await)
    }

    /// Records a message that was executed before it was stored (sync requests
    /// answered in time): one insert with its only attempt (written behind).
    pub async fn record_executed(&self, message: NewMessage, completion: Completion) {
        each!(self, s => s.record_executed(message, completion).await)
    }

    pub async fn get(&self, id: MessageId) -> Result<Option<MessageView>, StoreError> {
        each!(self, s => s.get(id).await)
    }

    /// After a restart: attempts that were running are marked interrupted and their
    /// messages queued again; returns every unfinished message in acceptance order.
    pub async fn recover(&self, now: Micros) -> Result<Vec<PendingMessage>, StoreError> {
        each!(self, s => s.recover(now).await)
    }

    /// Deletes finished messages received before `before`; returns how many.
    pub async fn purge(&self, before: Micros) -> Result<u64, StoreError> {
        each!(self, s => s.purge(before).await)
    }

    /// Waits until every write sent before it is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        each!(self, s => s.flush().await)
    }

    /// Commits what is pending and closes the store; later calls fail as unavailable.
    pub async fn close(&self) -> Result<(), StoreError> {
        each!(self, s => s.close().await)
    }

    /// The time attempts and retries are measured in: on a shared store the
    /// database's clock (as every node reads it), else this machine's.
    pub fn now(&self) -> Micros {
        match self {
            Self::Sqlite(_) => crate::domain::now_micros(),
            Self::Postgres(p) => p.now(),
        }
    }

    /// The embedded store's generation: one more at each start (see
    /// `SqliteStore::generation`). A shared store's lanes carry epochs of their own.
    pub fn generation(&self) -> i64 {
        match self {
            Self::Sqlite(s) => s.generation(),
            Self::Postgres(_) => 0,
        }
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.flush().await,
            Self::Postgres(p) => p.ping().await,
        }
    }
}

/// Whether a store URL names PostgreSQL.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A store URL without its password, whether in the user part or as a
/// `password=` parameter.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|s| s + 3) else {
        return url.to_owned();
    };
    // The user part ends at the last `@` before the path.
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |p| scheme_end + p);
    let at = url[scheme_end..authority_end]
        .rfind('@')
        .map(|a| scheme_end + a);
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..scheme_end]);
    let rest_start = match at {
        Some(at) => {
            match url[scheme_end..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(&url[scheme_end..at]),
            }
            at
        }
        None => scheme_end,
    };
    let rest = &url[rest_start..];
    match rest.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<&str> = query
                .split('&')
                .map(|p| {
                    if p.starts_with("password=") {
                        "password=***"
                    } else {
                        p
                    }
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(rest),
    }
    out
}

/// Refuses a database that a newer flowgate has migrated: its tables may no longer
/// mean what this version's statements assume. `applied` is what the database's
/// `schema_migrations` holds, `known` this version's migrations.
pub(super) fn check_migrations_known(
    applied: &[(i64, String)],
    known: &[(i64, &str, &str)],
) -> Result<(), StoreError> {
    let latest = known.iter().map(|m| m.0).max().unwrap_or(0);
    match applied
        .iter()
        .find(|(v, _)| !known.iter().any(|m| m.0 == *v))
    {
        None => Ok(()),
        Some((version, name)) => Err(StoreError::Config(format!(
            "the database was migrated by a newer flowgate: migration {version} ({name}) \
             is not one this version knows (its latest is {latest}); run a flowgate at \
             least as new as the one that migrated it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[(i64, &str, &str)] = &[(1, "messages", ""), (2, "more", "")];

    #[test]
    fn store_urls_are_shown_without_passwords() {
        assert_eq!(
            redact_url("postgres://fg:pw@db/x?sslmode=require"),
            "postgres://fg:***@db/x?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://fg@db/x?password=pw&application_name=a"),
            "postgres://fg@db/x?password=***&application_name=a"
        );
        assert_eq!(
            redact_url("sqlite://data/flowgate.db"),
            "sqlite://data/flowgate.db"
        );
    }

    #[test]
    fn a_migration_this_version_does_not_know_is_refused_by_name() {
        let applied = vec![(1, "messages".to_string()), (2, "more".to_string())];
        assert!(check_migrations_known(&applied, KNOWN).is_ok());
        assert!(check_migrations_known(&applied[..1], KNOWN).is_ok());
        let newer = [applied, vec![(3, "lanes_v2".to_string())]].concat();
        let err = check_migrations_known(&newer, KNOWN)
            .unwrap_err()
            .to_string();
        assert!(err.contains("migration 3 (lanes_v2)"), "{err}");
        assert!(err.contains("latest is 2"), "{err}");
    }
}
