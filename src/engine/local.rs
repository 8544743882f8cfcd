//! Runs made in this process (`flowgate run`, `flowgate test`) rather than for
//! a caller: steps replaced by what a test says they give (`mock:`), and every
//! statement in a transaction rolled back at the end (`--rollback`).

use std::collections::HashMap;

use serde_json::Value;

use super::{ExecError, Run};
use crate::flow::{Step, StepKind};

/// How a run in this process differs from a caller's.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// `http` and `sql` steps, by name, that do not run: they give this instead.
    pub mocks: HashMap<String, Mock>,
    /// Every `sql` statement runs in a transaction (one per connection) that
    /// is rolled back when the execution ends; a `transaction` step becomes a
    /// savepoint in it.
    pub rollback: bool,
}

/// What a mocked step gives: the result its `into` gets, or the error it fails with.
#[derive(Debug, Clone, PartialEq)]
pub enum Mock {
    Result(Value),
    Error(String),
}

impl Local {
    /// The names of `steps`' (and their nested steps') `http` and `sql` steps:
    /// those a mock may name.
    pub fn mockable(steps: &[Step]) -> Vec<&str> {
        let mut out = Vec::new();
        for step in steps {
            match &step.kind {
                StepKind::Http(_) | StepKind::Sql(_) => out.extend(step.name.as_deref()),
                StepKind::If {
                    then, otherwise, ..
                } => {
                    out.extend(Self::mockable(then));
                    out.extend(Self::mockable(otherwise));
                }
                StepKind::ForEach { body, .. } => out.extend(Self::mockable(body)),
                StepKind::Transaction { steps, .. } => out.extend(Self::mockable(steps)),
                _ => {}
            }
        }
        out
    }
}

impl<'a> Run<'a> {
    /// The mock for `step`, an `http` or `sql` step, when this run has one.
    pub(super) fn mock_of(&self, step: &Step) -> Option<&'a Mock> {
        let local = self.local?;
        if !matches!(step.kind, StepKind::Http(_) | StepKind::Sql(_)) {
            return None;
        }
        local.mocks.get(step.name.as_deref()?)
    }

    /// Runs a mocked step: its `into` gets the mock's result, or it fails with
    /// the mock's error.
    pub(super) fn mocked(
        &mut self,
        step: &'a Step,
        mock: &Mock,
    ) -> Result<Option<String>, ExecError> {
        let into = match &step.kind {
            StepKind::Http(h) => h.into.as_deref(),
            StepKind::Sql(q) => q.into.as_deref(),
            _ => None,
        };
        match mock {
            Mock::Error(message) => Err(Self::failed(step, message.clone())),
            Mock::Result(result) => {
                if let Some(into) = into {
                    let (v, size) = Self::from_call(step, result)?;
                    self.set_var(step, into, v, size)?;
                }
                Ok(Some("mocked".to_owned()))
            }
        }
    }
}
