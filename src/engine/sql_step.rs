//! The `sql` step: one statement on a tenant's PostgreSQL connection, its
//! parameters bound (never spliced into the text), retried on transient errors;
//! with `once: true`, run once per message (see `connect::effects`).

use serde_json::Value;

use crate::connect::PgTx;
use crate::connect::effects::OnceKey;
use crate::flow::model::SqlStep;

pub struct Outcome {
    pub result: Value,
    pub detail: String,
}

/// The statement failed for good (or after its retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection `{connection}`: {error} (after {attempts} attempt(s))")]
pub struct SqlStepError {
    pub connection: String,
    pub error: crate::connect::postgres::SqlError,
    pub attempts: usize,
}

/// Runs `step`'s statement with `params`; in `tx` when given (once: a failed
/// statement ends the transaction, so it is not tried again there).
pub async fn run(
    step: &SqlStep,
    params: Vec<Value>,
    once: Option<&OnceKey>,
    mut tx: Option<&mut PgTx>,
) -> Result<Outcome, SqlStepError> {
    let mut attempt = 0usize;
    loop {
        attempt += 1;
        let c = &step.connection;
        let ran = match (once, tx.as_deref_mut()) {
            (Some(key), Some(tx)) => {
                tx.run_once(key, &step.query, &params, step.timeout, step.single)
                    .await
            }
            (None, Some(tx)) => tx
                .run(&step.query, &params, step.timeout, step.single)
                .await
                .map(|r| (r, false)),
            (once, None) => match once {
                Some(key) => {
                    c.run_once(key, &step.query, &params, step.timeout, step.single)
                        .await
                }
                None => c
                    .run(&step.query, &params, step.timeout, step.single)
                    .await
                    .map(|r| (r, false)),
            },
        };
        match ran {
            Ok((result, before)) => {
                let detail = match &result {
                    Value::Array(rows) => format!("{} row(s)", rows.len()),
                    Value::Null => "no row".to_owned(),
                    Value::Object(o) if o.contains_key("rows_affected") && !step.single => {
                        format!("{} row(s) affected", o["rows_affected"])
                    }
                    _ => "1 row".to_owned(),
                };
                let detail = if before {
                    format!("done before by this message (once); its result: {detail}")
                } else {
                    detail
                };
                return Ok(Outcome { result, detail });
            }
            Err(e) => match step.retry.get(attempt - 1) {
                Some(wait) if e.transient && tx.is_none() => tokio::time::sleep(*wait).await,
                _ => {
                    return Err(SqlStepError {
                        connection: step.connection.name.clone(),
                        error: e,
                        attempts: attempt,
                    });
                }
            },
        }
    }
}
