//! Stopping an execution from outside: the node lost the lease it runs under, or
//! the process is shutting down. The engine stops at once, dropping whatever step
//! is in flight, and the execution ends with [`ExecError::Stopped`]; its result
//! is not a result of the flow and callers must not record it as one.
//!
//! [`ExecError::Stopped`]: super::ExecError::Stopped

use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

/// Why an execution was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The lease the execution ran under lapsed or could not be renewed: another
    /// node may already run the message.
    LeaseLost,
    /// The process is stopping and the execution's grace ran out.
    Shutdown,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::LeaseLost => "the lease was lost",
            Self::Shutdown => "the node is shutting down",
        })
    }
}

/// A cloneable handle: every clone sees the same stop. The first reason given wins.
#[derive(Clone, Default)]
pub struct Stop(Arc<Inner>);

#[derive(Default)]
struct Inner {
    reason: OnceLock<StopReason>,
    notify: Notify,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Stop").field(&self.reason()).finish()
    }
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells every execution holding this handle to stop.
    pub fn stop(&self, reason: StopReason) {
        if self.0.reason.set(reason).is_ok() {
            self.0.notify.notify_waiters();
        }
    }

    /// Why it was stopped, once it has been.
    pub fn reason(&self) -> Option<StopReason> {
        self.0.reason.get().copied()
    }

    /// Resolves when the handle is stopped (at once if it already is).
    pub async fn stopped(&self) -> StopReason {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.reason() {
                return r;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_hears_a_stop_given_before_or_after_it_waits() {
        let stop = Stop::new();
        let waiter = tokio::spawn({
            let s = stop.clone();
            async move { s.stopped().await }
        });
        tokio::task::yield_now().await;
        stop.stop(StopReason::LeaseLost);
        stop.stop(StopReason::Shutdown);
        assert_eq!(waiter.await.unwrap(), StopReason::LeaseLost);
        assert_eq!(stop.stopped().await, StopReason::LeaseLost);
    }
}
