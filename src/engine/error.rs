//! How an execution can fail, and the code each failure is recorded and
//! answered with.

use super::budget::BudgetKind;
use super::stop::StopReason;
use crate::flow::value::TooBig;

/// Why an expression evaluated outside an execution (an ordering key, on a
/// request) gave no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The program failed (a jq error), its worker died, or none could start:
    /// as the sandbox says it.
    #[error("{0}")]
    Failed(String),
    #[error("time budget exceeded ({0:?})")]
    Time(std::time::Duration),
    #[error("memory budget exceeded")]
    Memory,
    /// The input or the value is larger or deeper than values may be.
    #[error("{0}")]
    TooBig(TooBig),
    /// An ordering key evaluated to something that names no lane (null, a
    /// boolean, an array or an object): the value as JSON, shortened.
    #[error("the ordering key evaluated to {0}; it must be a string or a number")]
    NotAKey(String),
}

/// Why an execution failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// A `fail` step: the flow decided. Statuses below 500 are not retried.
    #[error("{message}")]
    Fail {
        step: String,
        status: u16,
        message: String,
    },
    /// An expression failed at run time, or a step's call failed in a way that
    /// another run may not repeat (a timeout, a 5xx, a lost connection).
    #[error("step `{step}`: {message}")]
    Step { step: String, message: String },
    /// A step's call was refused in a way another run would only repeat: an
    /// `http` step answered with a 4xx (not 408 or 429) or its URL is refused.
    /// The step's own `retry:` does not apply, and neither does `delivery.retry`.
    #[error("step `{step}`: {message}")]
    Refused { step: String, message: String },
    /// The execution ran out of its time or memory budget and was stopped there.
    /// Not retried: another run would run out again.
    #[error("{kind} budget exceeded ({limit}) at step `{step}`")]
    Budget {
        step: String,
        kind: BudgetKind,
        /// The budget, as people write it (`2s`, `64 MiB`).
        limit: String,
    },
    /// Stopped from outside (see [`Stop`](super::Stop)): not an outcome of the
    /// flow. Whoever stopped it decides what becomes of the message; the result
    /// is not written.
    #[error("stopped at step `{step}`: {reason}")]
    Stopped { step: String, reason: StopReason },
}

impl ExecError {
    /// Whether running the message again could give another result.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Fail { status, .. } => *status >= 500,
            Self::Step { .. } => true,
            Self::Refused { .. } | Self::Budget { .. } => false,
            Self::Stopped { .. } => true,
        }
    }

    /// A `fail` step with a 4xx status: the flow turned the request down. Its
    /// message ends `rejected`: never retried, never holding its ordered lane.
    /// A 5xx `fail` and every other error are failures.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Fail { status, .. } if *status < 500)
    }

    pub fn step(&self) -> &str {
        match self {
            Self::Fail { step, .. }
            | Self::Step { step, .. }
            | Self::Refused { step, .. }
            | Self::Budget { step, .. }
            | Self::Stopped { step, .. } => step,
        }
    }

    /// The error code recorded with the attempt (beside its message) and, for a
    /// waiting caller, the code of the error answer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Fail { .. } => "rejected",
            Self::Step { .. } | Self::Refused { .. } => "flow_failed",
            Self::Budget { .. } => "budget_exceeded",
            Self::Stopped { .. } => "stopped",
        }
    }

    /// An attempt's failure as it was recorded (its error code, message and the
    /// `fail` step's status), as the error again: for a caller waiting on one
    /// node for a message that ran on another. The step is not recorded apart,
    /// except in a budget's message, which names it.
    pub fn recorded(code: Option<&str>, message: String, fail_status: Option<u16>) -> Self {
        if let Some(status) = fail_status {
            return Self::Fail {
                step: "-".into(),
                status,
                message,
            };
        }
        if code == Some("budget_exceeded") {
            let kind = if message.starts_with(BudgetKind::Memory.as_str()) {
                BudgetKind::Memory
            } else {
                BudgetKind::Time
            };
            let between = |open: char, close: char| {
                let start = message.find(open)? + open.len_utf8();
                let end = start + message[start..].find(close)?;
                Some(message[start..end].to_owned())
            };
            return Self::Budget {
                limit: between('(', ')').unwrap_or_default(),
                step: between('`', '`').unwrap_or_else(|| "-".into()),
                kind,
            };
        }
        Self::Step {
            step: "-".into(),
            message,
        }
    }

    /// With `prefix` in front of an evaluation's message (`url: ...`); budget
    /// and stop errors are left as they are.
    pub(crate) fn prefixed(self, prefix: &str) -> Self {
        match self {
            Self::Step { step, message } => Self::Step {
                step,
                message: format!("{prefix}: {message}"),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_failure_is_the_same_error_again() {
        for e in [
            ExecError::Budget {
                step: "price".into(),
                kind: BudgetKind::Memory,
                limit: "64 MiB".into(),
            },
            ExecError::Budget {
                step: "spin".into(),
                kind: BudgetKind::Time,
                limit: "2s".into(),
            },
        ] {
            assert_eq!(ExecError::recorded(Some(e.code()), e.to_string(), None), e);
        }
        let fail = ExecError::recorded(Some("rejected"), "no such item".into(), Some(404));
        assert_eq!(
            (fail.code(), fail.to_string()),
            ("rejected", "no such item".into())
        );
        let step = ExecError::recorded(Some("flow_failed"), "boom".into(), None);
        assert_eq!(step.code(), "flow_failed");
    }
}
