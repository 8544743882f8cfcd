//! The answer a waiting caller gets for an execution that failed. The server
//! and `flowgate test` both build it here, so that a test's expected body is
//! exactly what a caller receives.

use serde_json::{Value, json};

use super::{ExecError, Execution};
use crate::codec::input::InputError;
use crate::domain::{MessageId, StoredResponse};

/// A failed execution's answer: its HTTP status, error code and message.
/// Callers learn the message id and, for a `fail` step, its message; for any
/// other failure only the step or the budget (details are in the message's
/// record, for operators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAnswer {
    pub id: MessageId,
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl FailedAnswer {
    /// The answer for message `id` whose execution ended with `e`; `None` for an
    /// execution stopped from outside, which has no answer of its own (the node
    /// is stopping and the caller is told to try again).
    pub fn of(id: MessageId, e: &ExecError) -> Option<Self> {
        let (status, message) = match e {
            ExecError::Fail {
                status, message, ..
            } => (*status, message.clone()),
            ExecError::Step { step, .. } | ExecError::Refused { step, .. } => (
                500,
                format!("the flow failed at step `{step}`; see message {id}"),
            ),
            ExecError::Budget { kind, .. } => (
                500,
                format!("the flow exceeded its {kind} budget; see message {id}"),
            ),
            ExecError::Stopped { .. } => return None,
        };
        Some(Self {
            id,
            status,
            code: e.code(),
            message,
        })
    }

    /// The answer's body: the error, and the message id to ask about it.
    pub fn body(&self) -> Value {
        let mut body = errors_body(self.code, &self.message);
        body["message_id"] = json!(self.id.to_string());
        body
    }
}

impl Execution {
    /// What a waiting caller of message `id` is answered for this execution:
    /// the `respond` step's answer (sent as soon as it ran, whatever came
    /// after), else `succeeded`, else the failure's answer (503 when the
    /// execution was stopped from outside and has none).
    pub fn answer(&self, id: MessageId) -> StoredResponse {
        if let Some(r) = &self.response {
            return r.clone();
        }
        let (status, body) = match &self.result {
            Ok(()) => (
                200,
                json!({"message_id": id.to_string(), "status": "succeeded"}),
            ),
            Err(e) => match FailedAnswer::of(id, e) {
                Some(a) => (a.status, a.body()),
                None => (503, errors_body(e.code(), &e.to_string())),
            },
        };
        StoredResponse {
            status,
            headers: Vec::new(),
            body,
        }
    }
}

/// What a rejected message answered its caller (a `fail` step with a 4xx
/// status), recorded as its response so that the log history shows the code;
/// `None` for anything but a rejection.
pub fn rejection_response(id: MessageId, e: &ExecError) -> Option<StoredResponse> {
    if !e.is_rejection() {
        return None;
    }
    let answer = FailedAnswer::of(id, e)?;
    Some(StoredResponse {
        status: answer.status,
        headers: Vec::new(),
        body: answer.body(),
    })
}

/// The body of an error answer: one error.
pub fn errors_body(code: &str, message: &str) -> Value {
    json!({"errors": [{"code": code, "message": message}]})
}

/// The body of a `400`: every problem of the request's input.
pub fn input_errors_body(errors: &[InputError]) -> Value {
    json!({"errors": errors
        .iter()
        .map(|e| match &e.pointer {
            Some(p) => json!({"code": e.code, "message": e.message, "pointer": p}),
            None => json!({"code": e.code, "message": e.message}),
        })
        .collect::<Vec<_>>()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::BudgetKind;

    #[test]
    fn each_failure_answers_with_its_status_code_and_message() {
        let id = MessageId::at(1);
        let answer = |e: ExecError| {
            let a = FailedAnswer::of(id, &e).unwrap();
            (a.status, a.code, a.body()["errors"][0]["message"].clone())
        };
        let fail = ExecError::Fail {
            step: "check".into(),
            status: 404,
            message: "no such item".into(),
        };
        assert_eq!(answer(fail), (404, "rejected", json!("no such item")));
        let step = ExecError::Step {
            step: "price".into(),
            message: "secret detail".into(),
        };
        let (status, code, message) = answer(step);
        assert_eq!((status, code), (500, "flow_failed"));
        assert!(!message.as_str().unwrap().contains("secret"), "{message}");
        let budget = ExecError::Budget {
            step: "spin".into(),
            kind: BudgetKind::Memory,
            limit: "1 MiB".into(),
        };
        let (status, code, message) = answer(budget);
        assert_eq!((status, code), (500, "budget_exceeded"));
        assert!(message.as_str().unwrap().contains("memory budget"));
        let stopped = ExecError::Stopped {
            step: "-".into(),
            reason: crate::engine::StopReason::Shutdown,
        };
        assert!(FailedAnswer::of(id, &stopped).is_none());
    }
}
