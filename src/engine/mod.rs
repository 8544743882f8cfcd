//! Runs one flow over one input document: steps in order, variables, branches,
//! loops, the response and a trace of what happened. Knows nothing of HTTP,
//! queues or stores; a test of a step needs none of them.
//!
//! Every execution runs under its budgets ([`budget`]): at its deadline it is
//! stopped wherever it is (the step in flight is dropped, a jq worker running
//! for it is killed), and what its values and evaluations may take is bounded.
//! Expressions the native evaluator covers run here under fuel; the others run
//! in the [`sandbox`]'s worker processes.

mod answer;
pub mod budget;
mod error;
mod eval;
mod http_step;
mod local;
pub mod sandbox;
mod sql_step;
mod steps;
mod stop;
mod trace;
mod tx;

use std::sync::Arc;
use std::time::Instant;

use jaq_json::Val;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::domain::{Emitted, RunMeta, StoredResponse};
use crate::flow::fast::Fuel;
use crate::flow::value::{Bound, TooBig, from_json, string, to_json};
use crate::flow::{Expr, Step, Trigger};

pub use answer::{FailedAnswer, errors_body, input_errors_body, rejection_response};
pub use budget::{BudgetKind, Limits};
pub use error::{EvalError, ExecError};
pub use local::{Local, Mock};
pub use sandbox::{EvalInput, Failure, Sandbox, SandboxOptions};
pub use steps::prefers_xml;
pub use stop::{Stop, StopReason};
pub use trace::TraceEntry;

use budget::Budget;

/// Upper bound on `for_each` iterations, against runaway input.
pub const MAX_ITERATIONS: usize = 100_000;

/// What executions run on: the jq workers and the default budgets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor {
    sandbox: Sandbox,
    defaults: Limits,
}

/// The result of one execution.
#[derive(Debug)]
pub struct Execution {
    pub result: Result<(), ExecError>,
    /// The first `respond` of the flow, if any.
    pub response: Option<StoredResponse>,
    pub trace: Vec<TraceEntry>,
    /// The business events its `emit` steps made, in order (delivered only
    /// when it succeeded).
    pub emitted: Vec<Emitted>,
    vars: jaq_json::Map<Val, Val>,
    /// The budgets it ran under.
    pub limits: Limits,
}

impl Execution {
    pub fn trace_json(&self) -> Value {
        Value::Array(self.trace.iter().map(TraceEntry::to_json).collect())
    }

    /// The trace as JSON text, written directly (the hot path stores it).
    pub fn trace_text(&self) -> String {
        let mut out = Vec::with_capacity(64 + self.trace.len() * 96);
        out.push(b'[');
        for (i, entry) in self.trace.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            entry.write_json(&mut out);
        }
        out.push(b']');
        // serde_json writes UTF-8 only.
        String::from_utf8(out).unwrap_or_default()
    }

    /// The variables at the end of the execution (converted on demand: they may
    /// hold large lookup tables), within its memory budget.
    pub fn vars(&self) -> Value {
        let mut bound = Bound::new(self.limits.memory, None);
        shown(&Val::obj(self.vars.clone()), &mut bound)
    }
}

/// A value for a trace or a report: its JSON, or what kept it from being shown.
fn shown(v: &Val, bound: &mut Bound) -> Value {
    to_json(v, bound).unwrap_or_else(|why| Value::String(format!("({why})")))
}

/// Where a `respond` step sends the answer while the flow goes on.
pub type Responder = oneshot::Sender<StoredResponse>;

struct Run<'a> {
    exec: &'a Executor,
    /// The input document's fields the steps read (all of it when unknown).
    base: jaq_json::Map<Val, Val>,
    /// `base` as one value (made for the first evaluation in a worker), and the
    /// execution's number under which workers keep it.
    base_val: Option<Val>,
    token: u64,
    input: &'a Value,
    /// The message's id from `.meta` (else the document's).
    message_id: Option<String>,
    vars: jaq_json::Map<Val, Val>,
    /// `base` with `vars`, brought up to date only after `vars` changed.
    context: Option<Val>,
    /// Whether `context` holds the current `vars`.
    context_current: bool,
    trace: Vec<TraceEntry>,
    response: Option<StoredResponse>,
    responder: Option<Responder>,
    last_yield: Instant,
    started: Instant,
    budget: Budget<'a>,
    /// Indices of the enclosing `for_each` items (part of idempotency keys).
    iteration: Vec<usize>,
    /// The label of the step running now (named in a stop's error).
    current: Option<Arc<str>>,
    trigger: &'a Trigger,
    /// How a run in this process differs (`flowgate run`, `flowgate test`).
    local: Option<&'a Local>,
    /// The database transactions open now.
    sessions: Vec<tx::Session>,
    /// What `emit` steps made so far, and their data's size as JSON text.
    emitted: Vec<Emitted>,
    emitted_bytes: usize,
}

/// How long an execution may hold its thread before it yields between steps, so
/// that timeouts and other requests get their turn.
const YIELD_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

impl Executor {
    pub fn new(sandbox: Sandbox, defaults: Limits) -> Self {
        Self { sandbox, defaults }
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The budgets of `trigger`'s executions: its `limits:`, else the defaults.
    pub fn limits(&self, trigger: &Trigger) -> Limits {
        Limits {
            time: trigger.limits.time.unwrap_or(self.defaults.time),
            memory: trigger.limits.memory.unwrap_or(self.defaults.memory),
        }
    }

    /// Runs `trigger`'s steps over `input` (the input document object) within
    /// the trigger's budgets. `meta` (the run's message id, attempt and lane
    /// epoch) is `.meta` beside the input document: every run of a message
    /// executes with its own, while the stored document stays as it was
    /// accepted. `responder` hears the flow's answer as soon as it is known;
    /// `stop` ends the execution from outside at once, whatever step is in
    /// flight. `local`: a run in this process that mocks steps or rolls its
    /// statements back (`flowgate test`).
    pub async fn execute(
        &self,
        trigger: &Trigger,
        input: &Value,
        meta: Option<&RunMeta>,
        responder: Option<Responder>,
        stop: &Stop,
        local: Option<&Local>,
    ) -> Execution {
        let budget = Budget::start(self.limits(trigger));
        let deadline = tokio::time::Instant::from_std(budget.deadline);
        let mut run = Run {
            exec: self,
            base: jaq_json::Map::default(),
            base_val: None,
            token: self.sandbox.token(),
            input,
            message_id: meta.map(|m| m.message_id.to_string()),
            vars: jaq_json::Map::default(),
            context: None,
            context_current: false,
            trace: Vec::new(),
            response: None,
            responder,
            last_yield: Instant::now(),
            started: Instant::now(),
            budget,
            iteration: Vec::new(),
            current: None,
            trigger,
            local,
            sessions: Vec::new(),
            emitted: Vec::new(),
            emitted_bytes: 0,
        };
        let result = match base(trigger, input, meta) {
            Ok(base) => {
                run.base = base;
                let steps = run.steps(&trigger.steps);
                // The steps before the timer: a flow that finishes on its first
                // poll (a lookup) never registers it.
                tokio::select! {
                    biased;
                    reason = stop.stopped() => Err(ExecError::Stopped { step: String::new(), reason }),
                    r = steps => r,
                    () = tokio::time::sleep_until(deadline) => Err(ExecError::Budget {
                        step: String::new(),
                        kind: BudgetKind::Time,
                        limit: String::new(),
                    }),
                }
            }
            Err(why) => Err(ExecError::Step {
                step: "-".into(),
                message: format!("the input document cannot be read: {why}"),
            }),
        };
        // A transaction the execution was stopped in, or every statement of a
        // `--rollback` run.
        run.end_sessions().await;
        // The step in flight when the stop came is the one after the last traced.
        let in_flight = || {
            run.current
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".to_owned())
        };
        let result = match result {
            Err(ExecError::Stopped { step, reason }) if step.is_empty() => {
                Err(ExecError::Stopped {
                    step: in_flight(),
                    reason,
                })
            }
            Err(ExecError::Budget { step, kind, .. }) if step.is_empty() => {
                Err(ExecError::Budget {
                    step: in_flight(),
                    kind,
                    limit: run.budget.limit(kind),
                })
            }
            other => other,
        };
        Execution {
            result,
            response: run.response,
            trace: run.trace,
            emitted: run.emitted,
            vars: run.vars,
            limits: run.budget.limits,
        }
    }

    /// The lane of an ordered trigger's message: the ordering key's value over
    /// the input document (a string as it is, a number as JSON text), or `""`
    /// (the trigger's one lane) without a key; `None` for an unordered trigger.
    /// Any other value (null included) names no lane: `EvalError::NotAKey`.
    /// The key is evaluated as the flow's expressions are.
    pub async fn lane(
        &self,
        trigger: &Trigger,
        input: &Value,
    ) -> Result<Option<String>, EvalError> {
        if !trigger.delivery.ordered {
            return Ok(None);
        }
        let Some(expr) = &trigger.delivery.ordering_key else {
            return Ok(Some(String::new()));
        };
        match self.evaluate(trigger, expr, input).await? {
            Value::String(s) => Ok(Some(s)),
            Value::Number(n) => Ok(Some(n.to_string())),
            other => Err(EvalError::NotAKey(shortened(&other.to_string()))),
        }
    }

    /// Evaluates one of `trigger`'s expressions outside an execution (an
    /// ordering key, on a request), within the trigger's budgets.
    pub async fn evaluate(
        &self,
        trigger: &Trigger,
        expr: &Expr,
        input: &Value,
    ) -> Result<Value, EvalError> {
        let limits = self.limits(trigger);
        let deadline = Instant::now() + limits.time;
        let input = from_json(input).map_err(EvalError::TooBig)?;
        let value = match expr.native(&input, &mut Fuel::default()) {
            Some(v) => v,
            None => {
                let tenant = trigger.key.tenant.as_str();
                let out = self
                    .sandbox
                    .eval(
                        tenant,
                        expr.source_arc(),
                        EvalInput::Whole(input),
                        1,
                        limits.memory,
                        deadline,
                    )
                    .await
                    .map_err(|f| match f {
                        Failure::Eval(m) | Failure::Crashed(m) | Failure::Unavailable(m) => {
                            EvalError::Failed(m)
                        }
                        Failure::Time => EvalError::Time(limits.time),
                        Failure::Memory => EvalError::Memory,
                        Failure::TooDeep => EvalError::TooBig(TooBig::Depth),
                    })?;
                out.0.into_iter().next().map_or(Val::Null, |(v, _)| v)
            }
        };
        to_json(&value, &mut Bound::new(limits.memory, Some(deadline))).map_err(EvalError::TooBig)
    }
}

/// JSON text cut to a length fit for an error message.
fn shortened(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The input document's fields the trigger's steps read (all when unknown).
fn base(
    trigger: &Trigger,
    input: &Value,
    meta: Option<&RunMeta>,
) -> Result<jaq_json::Map<Val, Val>, TooBig> {
    // Converting the whole document (headers, query, body, ...) for flows that
    // read two of its fields was a fifth of a lookup request's work.
    let mut base = match (&trigger.reads, input) {
        (Some(keys), Value::Object(doc)) => {
            let mut m = jaq_json::Map::default();
            for k in keys.iter() {
                if let Some(v) = doc.get(k.as_str()) {
                    m.insert(string(k), from_json(v)?);
                }
            }
            m
        }
        _ => match from_json(input)? {
            Val::Obj(m) => (*m).clone(),
            _ => jaq_json::Map::default(),
        },
    };
    if let Some(meta) = meta
        && trigger
            .reads
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k == "meta"))
    {
        base.insert(string("meta"), from_json(&meta.to_json())?);
    }
    Ok(base)
}

impl<'a> Run<'a> {
    fn context(&mut self) -> Val {
        if self.context_current
            && let Some(c) = &self.context
        {
            return c.clone();
        }
        self.context_current = true;
        let vars = Val::obj(self.vars.clone());
        // The context of the last evaluation is held here alone by now: its
        // `vars` (the entry after `base`'s) is replaced in place instead of
        // copying `base` again after each assignment.
        let index = self.base.len();
        if let Some(Val::Obj(m)) = &mut self.context
            && let Some(m) = jaq_json::Rc::get_mut(m)
            && let Some((_, v)) = m.get_index_mut(index)
        {
            *v = vars;
        } else {
            let mut m = self.base.clone();
            m.insert(string("vars"), vars);
            self.context = Some(Val::obj(m));
        }
        self.context.clone().unwrap_or(Val::Null)
    }

    fn vars_json(&self) -> Value {
        let mut bound = Bound::new(self.budget.limits.memory, Some(self.budget.deadline));
        shown(&Val::obj(self.vars.clone()), &mut bound)
    }

    /// Assigns a variable whose value took `size` bytes to make; fails when the
    /// variables then hold more than the memory budget.
    fn set_var(&mut self, step: &Step, name: &'a str, v: Val, size: u64) -> Result<(), ExecError> {
        self.vars.insert(string(name), v);
        self.context_current = false;
        if self.budget.hold(name, size, 0) {
            Ok(())
        } else {
            Err(self.over(step, BudgetKind::Memory))
        }
    }

    fn over(&self, step: &Step, kind: BudgetKind) -> ExecError {
        ExecError::Budget {
            step: step.label().to_owned(),
            kind,
            limit: self.budget.limit(kind),
        }
    }

    fn failed(step: &Step, message: impl Into<String>) -> ExecError {
        ExecError::Step {
            step: step.label().to_owned(),
            message: message.into(),
        }
    }

    async fn steps(&mut self, steps: &'a [Step]) -> Result<(), ExecError> {
        for step in steps {
            let now = Instant::now();
            if now >= self.budget.deadline {
                return Err(self.over(step, BudgetKind::Time));
            }
            if now - self.last_yield > YIELD_AFTER {
                tokio::task::yield_now().await;
                self.last_yield = Instant::now();
            }
            let before = self.trigger.trace_full.then(|| self.vars_json());
            let started = Instant::now();
            self.current = Some(step.label_arc());
            let outcome = self.step(step).await;
            let mut entry = TraceEntry::new(step, started - self.started, started.elapsed());
            if let Some(before) = before {
                entry.vars = Some(Box::new((before, self.vars_json())));
            }
            match outcome {
                Ok(detail) => self.trace.push(entry.ok(detail)),
                Err(e) => {
                    self.trace.push(entry.failed(e.to_string()));
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
