//! Effects once per message (`once: true`): the effect's record lives in the
//! table `flowgate_effects` of the database the effect is written to, keyed by
//! the message id and the step's name, and is written in the same transaction
//! as the effect. A rerun of the message (a retry, a restart, another node
//! taking the message over) finds the record and gets the stored result instead
//! of running the statement again; two runs at once are serialised by the
//! record's key, and the second gets the first's result.
//!
//! `claim` and `record` take any transaction, so that a step of several
//! statements can be made once as a whole: claim, run them, record, commit.

use deadpool_postgres::GenericClient;
use serde_json::Value;

/// The table's name, in the connection's first schema (`search_path`).
pub const TABLE: &str = "flowgate_effects";

/// Made on first use by each connection that runs a `once: true` step.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS flowgate_effects (
    message_id UUID        NOT NULL,
    step       TEXT        NOT NULL,
    result     JSONB,
    done_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, step))";

/// Whose effect: a message and a step (its name, with the item index of each
/// enclosing `for_each`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceKey {
    pub message_id: uuid::Uuid,
    pub step: String,
}

/// Creates the table unless it exists. Two sessions creating it at once can
/// both pass the existence check; the loser's error means it is there now.
/// PostgreSQL reports that loss as a duplicate table (42P07), a duplicate of
/// the table's row type (42710) or a unique violation in its catalogs (23505),
/// depending on where the two sessions met.
pub async fn create_table<C: GenericClient>(client: &C) -> Result<(), tokio_postgres::Error> {
    match client.batch_execute(CREATE_TABLE).await {
        Err(e) if lost_race(&e) => Ok(()),
        other => other,
    }
}

/// Whether `e`, from [`CREATE_TABLE`], means another session made the table first.
pub fn lost_race(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        [
            SqlState::UNIQUE_VIOLATION,
            SqlState::DUPLICATE_TABLE,
            SqlState::DUPLICATE_OBJECT,
        ]
        .contains(c)
    })
}

/// Inside a transaction: takes the record for `key`, or, when the effect was
/// made before, returns its stored result (the caller rolls back and skips the
/// effect). A record of a transaction still open elsewhere is waited for.
pub async fn claim<C: GenericClient>(
    tx: &C,
    key: &OnceKey,
) -> Result<Option<Value>, tokio_postgres::Error> {
    // Served by the primary key.
    let taken = tx
        .execute(
            "INSERT INTO flowgate_effects (message_id, step) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&key.message_id, &key.step],
        )
        .await?;
    if taken == 1 {
        return Ok(None);
    }
    // The statement above waited for the other transaction and saw its commit;
    // this one reads it afresh.
    let row = tx
        .query_one(
            "SELECT result FROM flowgate_effects WHERE message_id = $1 AND step = $2",
            &[&key.message_id, &key.step],
        )
        .await?;
    Ok(Some(row.get::<_, Option<Value>>(0).unwrap_or(Value::Null)))
}

/// Inside the transaction that claimed `key`: stores the effect's result.
pub async fn record<C: GenericClient>(
    tx: &C,
    key: &OnceKey,
    result: &Value,
) -> Result<(), tokio_postgres::Error> {
    // Served by the primary key.
    tx.execute(
        "UPDATE flowgate_effects SET result = $3 WHERE message_id = $1 AND step = $2",
        &[&key.message_id, &key.step, result],
    )
    .await?;
    Ok(())
}
