//! Runs one flow over one input document: steps in order, variables, branches,
//! loops, the response and a trace of what happened. Knows nothing of HTTP,
//! queues or stores; a test of a step needs none of them.

mod http_step;
mod sql_step;
mod stop;
mod trace;

use std::time::Instant;

use jaq_json::Val;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::connect::effects::OnceKey;
use crate::domain::{RunMeta, StoredResponse};
use crate::flow::model::SetValue;
use crate::flow::value::{from_json, string, to_json, truthy};
use crate::flow::{Step, StepKind, Trigger};

pub use stop::{Stop, StopReason};
pub use trace::TraceEntry;

/// Upper bound on `for_each` iterations, against runaway input.
pub const MAX_ITERATIONS: usize = 100_000;

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
    /// Stopped from outside (see [`Stop`]): not an outcome of the flow. Whoever
    /// stopped it decides what becomes of the message; the result is not written.
    #[error("stopped at step `{step}`: {reason}")]
    Stopped { step: String, reason: StopReason },
}

impl ExecError {
    /// Whether running the message again could give another result.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Fail { status, .. } => *status >= 500,
            Self::Step { .. } => true,
            Self::Refused { .. } => false,
            Self::Stopped { .. } => true,
        }
    }

    pub fn step(&self) -> &str {
        match self {
            Self::Fail { step, .. }
            | Self::Step { step, .. }
            | Self::Refused { step, .. }
            | Self::Stopped { step, .. } => step,
        }
    }
}

/// The result of one execution.
#[derive(Debug)]
pub struct Execution {
    pub result: Result<(), ExecError>,
    /// The first `respond` of the flow, if any.
    pub response: Option<StoredResponse>,
    pub trace: Vec<TraceEntry>,
    vars: jaq_json::Map<Val, Val>,
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
    /// hold large lookup tables).
    pub fn vars(&self) -> Value {
        to_json(&Val::obj(self.vars.clone()))
    }
}

/// Where a `respond` step sends the answer while the flow goes on.
pub type Responder = oneshot::Sender<StoredResponse>;

struct Run<'a> {
    /// The input document's fields the steps read (all of it when unknown),
    /// and `.meta`.
    base: jaq_json::Map<Val, Val>,
    input: &'a Value,
    /// The message's id from `.meta` (else the document's).
    message_id: Option<String>,
    vars: jaq_json::Map<Val, Val>,
    /// `base` with `vars`, rebuilt only after `vars` changed.
    context: Option<Val>,
    trace: Vec<TraceEntry>,
    response: Option<StoredResponse>,
    responder: Option<Responder>,
    last_yield: Instant,
    started: Instant,
    /// Indices of the enclosing `for_each` items (part of idempotency keys).
    iteration: Vec<usize>,
    /// The label of the step running now (named in a stop's error).
    current: Option<std::sync::Arc<str>>,
    _trigger: &'a Trigger,
}

/// How long an execution may hold its thread before it yields between steps, so
/// that timeouts and other requests get their turn.
const YIELD_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

/// Runs `trigger`'s steps over `input` (the input document object), with no
/// `.meta`. `stop` ends the execution from outside at once, whatever step is in
/// flight.
pub async fn execute(
    trigger: &Trigger,
    input: &Value,
    responder: Option<Responder>,
    stop: &Stop,
) -> Execution {
    execute_with(trigger, input, None, responder, stop).await
}

/// As [`execute`], with `.meta` (the run's message id, attempt and lane
/// epoch) beside the input document: every run of a message executes with its
/// own, while the stored document stays as it was accepted.
pub async fn execute_with(
    trigger: &Trigger,
    input: &Value,
    meta: Option<&RunMeta>,
    responder: Option<Responder>,
    stop: &Stop,
) -> Execution {
    // Converting the whole document (headers, query, body, ...) for flows that
    // read two of its fields was a fifth of a lookup request's work.
    let mut base = match (&trigger.reads, input) {
        (Some(keys), Value::Object(doc)) => keys
            .iter()
            .filter_map(|k| Some((string(k), from_json(doc.get(k.as_str())?))))
            .collect(),
        _ => match from_json(input) {
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
        base.insert(string("meta"), from_json(&meta.to_json()));
    }
    let mut run = Run {
        base,
        input,
        message_id: meta.map(|m| m.message_id.to_string()),
        vars: jaq_json::Map::default(),
        context: None,
        trace: Vec::new(),
        response: None,
        responder,
        last_yield: Instant::now(),
        started: Instant::now(),
        iteration: Vec::new(),
        current: None,
        _trigger: trigger,
    };
    let result = {
        let steps = run.steps(&trigger.steps);
        tokio::select! {
            biased;
            reason = stop.stopped() => Err(ExecError::Stopped { step: String::new(), reason }),
            r = steps => r,
        }
    };
    // The step in flight when the stop came is the one after the last traced.
    let result = match result {
        Err(ExecError::Stopped { reason, .. }) => {
            let step = run
                .current
                .take()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".to_owned());
            Err(ExecError::Stopped { step, reason })
        }
        other => other,
    };
    Execution {
        result,
        response: run.response,
        trace: run.trace,
        vars: run.vars,
    }
}

impl Run<'_> {
    fn context(&mut self) -> Val {
        if let Some(c) = &self.context {
            return c.clone();
        }
        let mut m = self.base.clone();
        m.insert(string("vars"), Val::obj(self.vars.clone()));
        let c = Val::obj(m);
        self.context = Some(c.clone());
        c
    }

    fn vars_json(&self) -> Value {
        to_json(&Val::obj(self.vars.clone()))
    }

    fn set_var(&mut self, name: &str, v: Val) {
        self.vars.insert(string(name), v);
        self.context = None;
    }

    async fn steps(&mut self, steps: &[Step]) -> Result<(), ExecError> {
        for step in steps {
            if self.last_yield.elapsed() > YIELD_AFTER {
                tokio::task::yield_now().await;
                self.last_yield = Instant::now();
            }
            let before = self._trigger.trace_full.then(|| self.vars_json());
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

    fn eval(&mut self, step: &Step, expr: &crate::flow::Expr) -> Result<Val, ExecError> {
        expr.eval(&self.context()).map_err(|e| ExecError::Step {
            step: step.label().to_owned(),
            message: e.0,
        })
    }

    /// Runs one step; the `Ok` value is a note for the trace.
    async fn step(&mut self, step: &Step) -> Result<Option<String>, ExecError> {
        match &step.kind {
            StepKind::Set(pairs) => {
                for (name, value) in pairs {
                    let v = match value {
                        SetValue::Expr(expr) => self.eval(step, expr)?,
                        SetValue::Data(data) => data.clone(),
                    };
                    self.set_var(name, v);
                }
                Ok(None)
            }
            StepKind::If {
                cond,
                then,
                otherwise,
            } => {
                let taken = truthy(&self.eval(step, cond)?);
                Box::pin(self.steps(if taken { then } else { otherwise })).await?;
                Ok(Some(if taken { "then" } else { "else" }.to_owned()))
            }
            StepKind::ForEach {
                items,
                var,
                body,
                collect,
                into,
            } => {
                let outputs = items
                    .eval_all(&self.context())
                    .map_err(|e| ExecError::Step {
                        step: step.label().to_owned(),
                        message: e.0,
                    })?;
                let items: Vec<Val> = match outputs.as_slice() {
                    [Val::Arr(a)] => a.iter().cloned().collect(),
                    [Val::Null] => Vec::new(),
                    _ => outputs,
                };
                if items.len() > MAX_ITERATIONS {
                    return Err(ExecError::Step {
                        step: step.label().to_owned(),
                        message: format!(
                            "{} items exceed the limit of {MAX_ITERATIONS}",
                            items.len()
                        ),
                    });
                }
                let mut collected = Vec::with_capacity(items.len());
                let count = items.len();
                for (i, item) in items.into_iter().enumerate() {
                    self.set_var(var, item);
                    self.iteration.push(i);
                    let done = Box::pin(self.steps(body)).await;
                    self.iteration.pop();
                    done?;
                    if into.is_some() {
                        let v = match collect {
                            Some(c) => self.eval(step, c)?,
                            None => self.vars.get(&string(var)).cloned().unwrap_or(Val::Null),
                        };
                        collected.push(v);
                    }
                }
                if let Some(into) = into {
                    self.set_var(into, collected.into_iter().collect());
                }
                Ok(Some(format!("{count} items")))
            }
            StepKind::Respond {
                status,
                headers,
                body,
                xml,
            } => {
                let ctx = self.context();
                let mut rendered = Vec::with_capacity(headers.len());
                for (name, tpl) in headers {
                    let value = tpl.render(&ctx).map_err(|e| ExecError::Step {
                        step: step.label().to_owned(),
                        message: format!("header {name}: {}", e.0),
                    })?;
                    rendered.push((name.clone(), value));
                }
                let body = match xml {
                    Some(x) if self.wants_xml() => {
                        let text = match to_json(&self.eval(step, x)?) {
                            Value::String(s) => s,
                            other => crate::xml::to_xml(&other).map_err(|e| ExecError::Step {
                                step: step.label().to_owned(),
                                message: format!("xml: {e}"),
                            })?,
                        };
                        rendered.retain(|(n, _)| n != "content-type");
                        rendered.push((
                            "content-type".to_owned(),
                            "application/xml; charset=utf-8".to_owned(),
                        ));
                        rendered.push(("vary".to_owned(), "Accept".to_owned()));
                        Value::String(text)
                    }
                    _ => {
                        if xml.is_some() {
                            rendered.push(("vary".to_owned(), "Accept".to_owned()));
                        }
                        match body {
                            Some(b) => to_json(&self.eval(step, b)?),
                            None => Value::Null,
                        }
                    }
                };
                let response = StoredResponse {
                    status: *status,
                    headers: rendered,
                    body,
                };
                if self.response.is_some() {
                    return Ok(Some(
                        "a response was already sent; this one is ignored".to_owned(),
                    ));
                }
                if let Some(tx) = self.responder.take() {
                    let _ = tx.send(response.clone());
                }
                self.response = Some(response);
                Ok(Some(format!("status {status}")))
            }
            StepKind::Fail { status, message } => {
                let message = match self.eval(step, message)? {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => to_json(&other).to_string(),
                };
                Err(ExecError::Fail {
                    step: step.label().to_owned(),
                    status: *status,
                    message,
                })
            }
            StepKind::Log(expr) => {
                let line = match self.eval(step, expr)? {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => to_json(&other).to_string(),
                };
                Ok(Some(line))
            }
            StepKind::Http(http) => {
                let ctx = self.context();
                let failed = |message: String| ExecError::Step {
                    step: step.label().to_owned(),
                    message: http.secrets.redact(&message).into_owned(),
                };
                let url = http
                    .url
                    .render(&ctx)
                    .map_err(|e| failed(format!("url: {}", e.0)))?;
                let mut headers = Vec::with_capacity(http.headers.len());
                for (name, tpl) in &http.headers {
                    let value = tpl
                        .render(&ctx)
                        .map_err(|e| failed(format!("header {name}: {}", e.0)))?;
                    headers.push((name.clone(), value));
                }
                let body = match &http.body {
                    Some(b) => Some(to_json(&self.eval(step, b)?)),
                    None => None,
                };
                let prepared = http_step::Prepared {
                    url,
                    headers,
                    body,
                    idempotency_key: self.idempotency_key(step),
                };
                drop(ctx);
                let outcome = http_step::run(http, prepared).await.map_err(|f| {
                    if f.retryable {
                        failed(f.message)
                    } else {
                        ExecError::Refused {
                            step: step.label().to_owned(),
                            message: http.secrets.redact(&f.message).into_owned(),
                        }
                    }
                })?;
                if let Some(into) = &http.into {
                    self.set_var(into, from_json(&outcome.result));
                }
                Ok(Some(outcome.detail))
            }
            StepKind::Sql(sql) => {
                let mut params = Vec::with_capacity(sql.params.len());
                for p in &sql.params {
                    params.push(to_json(&self.eval(step, p)?));
                }
                let secrets = sql.connection.secrets();
                let once = match sql.once {
                    true => Some(self.once_key(step)?),
                    false => None,
                };
                let outcome =
                    sql_step::run(sql, params, once.as_ref())
                        .await
                        .map_err(|message| ExecError::Step {
                            step: step.label().to_owned(),
                            message: secrets.redact(&message).into_owned(),
                        })?;
                if let Some(into) = &sql.into {
                    self.set_var(into, from_json(&outcome.result));
                }
                Ok(Some(outcome.detail))
            }
        }
    }

    /// `<message_id>-<step>`, plus the item index inside `for_each` loops: the
    /// same for every try and every re-run of this step of this message.
    fn idempotency_key(&self, step: &Step) -> String {
        let id = self
            .message_id
            .as_deref()
            .or_else(|| self.input["message_id"].as_str())
            .unwrap_or_default();
        let mut key = format!("{id}-{}", step.label());
        for i in &self.iteration {
            key.push('-');
            key.push_str(&i.to_string());
        }
        key
    }

    /// Where a `once: true` step's effect is recorded: the message id and the
    /// step's name, with `[i]` for each enclosing `for_each` item.
    fn once_key(&self, step: &Step) -> Result<OnceKey, ExecError> {
        let id = self
            .message_id
            .as_deref()
            .or_else(|| self.input["message_id"].as_str())
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .ok_or_else(|| ExecError::Step {
                step: step.label().to_owned(),
                message: "`once: true` needs the message's id, and this run has none".into(),
            })?;
        let mut name = step.label().to_owned();
        for i in &self.iteration {
            name.push_str(&format!("[{i}]"));
        }
        Ok(OnceKey {
            message_id: id,
            step: name,
        })
    }

    /// Whether the caller's `Accept` header ranks an XML type above JSON.
    fn wants_xml(&self) -> bool {
        self.input["headers"]["accept"]
            .as_str()
            .is_some_and(prefers_xml)
    }
}

/// Reads an Accept header: the highest-quality type that is XML or JSON (or
/// `*/*`) decides; ties go to the one listed first.
pub fn prefers_xml(accept: &str) -> bool {
    let mut best: Option<(f32, bool)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let ty = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let is_xml = ty == "application/xml" || ty == "text/xml" || ty.ends_with("+xml");
        let is_other = ty == "application/json" || ty.ends_with("+json") || ty == "*/*";
        if q <= 0.0 || !(is_xml || is_other) {
            continue;
        }
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, is_xml));
        }
    }
    best.is_some_and(|(_, xml)| xml)
}

#[cfg(test)]
mod tests;
