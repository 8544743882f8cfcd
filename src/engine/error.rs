//! How an execution can fail, and the code each failure is recorded and
//! answered with.

use super::budget::BudgetKind;
use super::stop::StopReason;

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
