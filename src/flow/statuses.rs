//! The statuses a flow may answer its caller with, read from its steps: those
//! of its `respond` steps (the flow's own answers) and of its `fail` steps
//! (error answers with code `rejected`). The consumer document lists them, and
//! `compile` checks that a `response_schema` has answers to describe.

use std::collections::BTreeSet;

use super::model::{Step, StepKind};

/// What a flow's steps may answer, each status once, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AnswerStatuses {
    /// Statuses of `respond` steps.
    pub respond: BTreeSet<u16>,
    /// Statuses of `respond` steps that also have an `xml` answer.
    pub respond_xml: BTreeSet<u16>,
    /// Statuses of `fail` steps.
    pub fail: BTreeSet<u16>,
    /// A `respond` at the top level: every execution that does not fail
    /// passes through it (no step ends a flow early but `fail`), so the flow
    /// never ends without answering.
    pub always_responds: bool,
}

impl AnswerStatuses {
    /// Every `respond` and `fail` of `steps`, at any depth.
    pub fn of(steps: &[Step]) -> Self {
        let mut out = Self::default();
        out.walk(steps);
        out.always_responds = steps
            .iter()
            .any(|s| matches!(s.kind, StepKind::Respond { .. }));
        out
    }

    fn walk(&mut self, steps: &[Step]) {
        for step in steps {
            match &step.kind {
                StepKind::Respond { status, xml, .. } => {
                    self.respond.insert(*status);
                    if xml.is_some() {
                        self.respond_xml.insert(*status);
                    }
                }
                StepKind::Fail { status, .. } => {
                    self.fail.insert(*status);
                }
                StepKind::If {
                    then, otherwise, ..
                } => {
                    self.walk(then);
                    self.walk(otherwise);
                }
                StepKind::ForEach { body, .. } => self.walk(body),
                StepKind::Transaction { steps, .. } => self.walk(steps),
                StepKind::Set(_)
                | StepKind::Log(_)
                | StepKind::Http(_)
                | StepKind::Sql(_)
                | StepKind::Emit { .. } => {}
            }
        }
    }
}
