//! A step's expressions evaluated: natively under fuel when the expression
//! allows it, else in the sandbox's workers; values turned into JSON and text
//! within the execution's budgets.

use jaq_json::Val;
use serde_json::Value;

use crate::flow::fast::Fuel;
use crate::flow::value::{Bound, TooBig, from_json_sized, to_json};
use crate::flow::{Expr, Step, Template, TemplatePart};

use super::{BudgetKind, EvalInput, ExecError, Failure, Run, sandbox};

impl Run<'_> {
    /// Every output of `expr` (at most `max`), each with what it took to make;
    /// and whether there were more.
    pub(super) async fn outputs(
        &mut self,
        step: &Step,
        expr: &Expr,
        max: u32,
    ) -> Result<sandbox::Outputs, ExecError> {
        let mut fuel = Fuel::default();
        if expr.is_native()
            && let Some(v) = expr.native(&self.context(), &mut fuel)
        {
            return Ok((vec![(v, fuel.built())], false));
        }
        let base = self
            .base_val
            .get_or_insert_with(|| Val::obj(self.base.clone()))
            .clone();
        let ctx = EvalInput::Context {
            token: self.token,
            base,
            vars: Val::obj(self.vars.clone()),
        };
        let tenant = self.trigger.key.tenant.as_str();
        self.exec
            .sandbox
            .eval(
                tenant,
                expr.source_arc(),
                ctx,
                max,
                self.budget.limits.memory,
                self.budget.deadline,
            )
            .await
            .map_err(|f| match f {
                Failure::Eval(m) | Failure::Crashed(m) => Self::failed(step, m),
                Failure::Unavailable(m) => Self::failed(step, format!("jq could not run: {m}")),
                Failure::Time => self.over(step, BudgetKind::Time),
                Failure::Memory => self.over(step, BudgetKind::Memory),
                Failure::TooDeep => Self::failed(step, TooBig::Depth.to_string()),
            })
    }

    /// The first output of `expr` (null when none) and what it took to make.
    pub(super) async fn eval_sized(
        &mut self,
        step: &Step,
        expr: &Expr,
    ) -> Result<(Val, u64), ExecError> {
        if expr.is_native() {
            let mut fuel = Fuel::default();
            if let Some(v) = expr.native(&self.context(), &mut fuel) {
                return Ok((v, fuel.built()));
            }
        }
        let (out, _) = self.outputs(step, expr, 1).await?;
        Ok(out.into_iter().next().unwrap_or((Val::Null, 0)))
    }

    pub(super) async fn eval(&mut self, step: &Step, expr: &Expr) -> Result<Val, ExecError> {
        Ok(self.eval_sized(step, expr).await?.0)
    }

    /// `v` as JSON, within the execution's memory budget and deadline.
    pub(super) fn json(&self, step: &Step, v: &Val) -> Result<Value, ExecError> {
        let mut bound = Bound::new(self.budget.limits.memory, Some(self.budget.deadline));
        to_json(v, &mut bound).map_err(|why| match why {
            TooBig::Size => self.over(step, BudgetKind::Memory),
            TooBig::Time => self.over(step, BudgetKind::Time),
            TooBig::Depth => Self::failed(step, why.to_string()),
        })
    }

    /// A value for text (a message, a header): strings as they are, others as JSON.
    pub(super) fn text(&self, step: &Step, v: &Val) -> Result<String, ExecError> {
        Ok(match v {
            Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
            other => self.json(step, other)?.to_string(),
        })
    }

    /// A JSON value from a step's call (an http answer, sql rows) for the
    /// flow, and its size.
    pub(super) fn from_call(step: &Step, v: &Value) -> Result<(Val, u64), ExecError> {
        from_json_sized(v).map_err(|why| Self::failed(step, why.to_string()))
    }

    pub(super) async fn render(
        &mut self,
        step: &Step,
        template: &Template,
    ) -> Result<String, ExecError> {
        let mut out = String::new();
        for part in template.parts() {
            match part {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Expr(e) => {
                    let v = self.eval(step, e).await?;
                    out.push_str(&self.text(step, &v)?);
                }
            }
        }
        Ok(out)
    }
}
