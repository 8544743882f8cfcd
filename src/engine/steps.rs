//! What each kind of step does (one `match` over the closed set of steps).

use jaq_json::Val;
use serde_json::Value;

use super::budget::BudgetKind;
use super::{ExecError, MAX_ITERATIONS, Run, http_step, sql_step};
use crate::connect::effects::OnceKey;
use crate::domain::{Emitted, MAX_EMITS, MAX_EMITTED_BYTES, StoredResponse};
use crate::flow::model::SetValue;
use crate::flow::value::{VALUE_BYTES, measure, string, truthy};
use crate::flow::{Step, StepKind};

impl<'a> Run<'a> {
    /// Runs one step; the `Ok` value is a note for the trace.
    pub(super) async fn step(&mut self, step: &'a Step) -> Result<Option<String>, ExecError> {
        if let Some(mock) = self.mock_of(step) {
            return self.mocked(step, mock);
        }
        match &step.kind {
            StepKind::Set(pairs) => {
                for (name, value) in pairs {
                    let (v, size) = match value {
                        SetValue::Expr(expr) => self.eval_sized(step, expr).await?,
                        // Data from the file is shared, not made per execution.
                        SetValue::Data(data) => (data.clone(), 0),
                    };
                    self.set_var(step, name, v, size)?;
                }
                Ok(None)
            }
            StepKind::If {
                cond,
                then,
                otherwise,
            } => {
                let taken = truthy(&self.eval(step, cond).await?);
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
                let (outputs, more) = self.outputs(step, items, MAX_ITERATIONS as u32).await?;
                let too_many = |n: String| {
                    Self::failed(
                        step,
                        format!("{n} items exceed the limit of {MAX_ITERATIONS}"),
                    )
                };
                if more {
                    return Err(too_many(format!("more than {MAX_ITERATIONS}")));
                }
                let items: Vec<(Val, u64)> = match outputs.as_slice() {
                    [(Val::Arr(a), size)] => {
                        let each = size / (a.len().max(1) as u64);
                        a.iter().map(|v| (v.clone(), each)).collect()
                    }
                    [(Val::Null, _)] => Vec::new(),
                    _ => outputs,
                };
                if items.len() > MAX_ITERATIONS {
                    return Err(too_many(items.len().to_string()));
                }
                let mut collected =
                    Vec::with_capacity(if into.is_some() { items.len() } else { 0 });
                let mut collected_size = 0u64;
                let count = items.len();
                for (i, (item, size)) in items.into_iter().enumerate() {
                    self.set_var(step, var, item, size)?;
                    self.iteration.push(i);
                    let done = Box::pin(self.steps(body)).await;
                    self.iteration.pop();
                    done?;
                    if into.is_some() {
                        let (v, size) = match collect {
                            Some(c) => self.eval_sized(step, c).await?,
                            None => (
                                self.vars.get(&string(var)).cloned().unwrap_or(Val::Null),
                                size,
                            ),
                        };
                        // An item may be a variable's value, counted there until
                        // the next iteration replaces it: measure what it holds.
                        let mut fuel = self.budget.limits.memory / VALUE_BYTES + 1;
                        collected_size += match measure(&v, &mut fuel) {
                            Some(m) => m.bytes.max(size),
                            None => u64::MAX / 2,
                        };
                        if !self.budget.fits(collected_size) {
                            return Err(self.over(step, BudgetKind::Memory));
                        }
                        collected.push(v);
                    }
                }
                if let Some(into) = into {
                    self.set_var(step, into, collected.into_iter().collect(), collected_size)?;
                }
                Ok(Some(format!("{count} items")))
            }
            StepKind::Respond {
                status,
                headers,
                body,
                xml,
            } => {
                let mut rendered = Vec::with_capacity(headers.len());
                for (name, tpl) in headers {
                    let value = self
                        .render(step, tpl)
                        .await
                        .map_err(|e| e.prefixed(&format!("header {name}")))?;
                    rendered.push((name.clone(), value));
                }
                let body = match xml {
                    Some(x) if self.wants_xml() => {
                        let v = self.eval(step, x).await?;
                        let text = match self.json(step, &v)? {
                            Value::String(s) => s,
                            other => crate::codec::xml::to_xml(&other)
                                .map_err(|e| Self::failed(step, format!("xml: {e}")))?,
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
                            Some(b) => {
                                let v = self.eval(step, b).await?;
                                self.json(step, &v)?
                            }
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
                let v = self.eval(step, message).await?;
                Err(ExecError::Fail {
                    step: step.label().to_owned(),
                    status: *status,
                    message: self.text(step, &v)?,
                })
            }
            StepKind::Log(expr) => {
                let v = self.eval(step, expr).await?;
                Ok(Some(self.text(step, &v)?))
            }
            StepKind::Http(http) => {
                let redacted = |e: ExecError| match e {
                    ExecError::Step { step, message } => ExecError::Step {
                        step,
                        message: http.secrets.redact(&message).into_owned(),
                    },
                    other => other,
                };
                let url = self
                    .render(step, &http.url)
                    .await
                    .map_err(|e| redacted(e.prefixed("url")))?;
                let mut headers = Vec::with_capacity(http.headers.len());
                for (name, tpl) in &http.headers {
                    let value = self
                        .render(step, tpl)
                        .await
                        .map_err(|e| redacted(e.prefixed(&format!("header {name}"))))?;
                    headers.push((name.clone(), value));
                }
                let body = match &http.body {
                    Some(b) => {
                        let v = self.eval(step, b).await?;
                        Some(self.json(step, &v)?)
                    }
                    None => None,
                };
                let prepared = http_step::Prepared {
                    url,
                    headers,
                    body,
                    idempotency_key: self.idempotency_key(step),
                };
                let outcome = http_step::run(http, prepared).await.map_err(|f| {
                    let message = http.secrets.redact(&f.message).into_owned();
                    if f.retryable {
                        Self::failed(step, message)
                    } else {
                        ExecError::Refused {
                            step: step.label().to_owned(),
                            message,
                        }
                    }
                })?;
                if let Some(into) = &http.into {
                    let (v, size) = Self::from_call(step, &outcome.result)?;
                    self.set_var(step, into, v, size)?;
                }
                Ok(Some(outcome.detail))
            }
            StepKind::Sql(sql) => {
                let mut params = Vec::with_capacity(sql.params.len());
                for p in &sql.params {
                    let v = self.eval(step, p).await?;
                    params.push(self.json(step, &v)?);
                }
                let secrets = sql.connection.secrets();
                let once = match sql.once {
                    true => Some(self.once_key(step)?),
                    false => None,
                };
                let failed = |e: String| Self::failed(step, secrets.redact(&e).into_owned());
                let tx = match self.session(&sql.connection, sql.timeout).await {
                    Some(Ok(tx)) => Some(tx),
                    Some(Err(e)) => {
                        let name = &sql.connection.name;
                        return Err(failed(format!("connection `{name}`: {e}")));
                    }
                    None => None,
                };
                let outcome = sql_step::run(sql, params, once.as_ref(), tx)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if let Some(into) = &sql.into {
                    let (v, size) = Self::from_call(step, &outcome.result)?;
                    self.set_var(step, into, v, size)?;
                }
                Ok(Some(outcome.detail))
            }
            StepKind::Transaction { connection, steps } => {
                self.transaction(step, connection, steps).await
            }
            StepKind::Emit { event, data } => {
                if self.emitted.len() >= MAX_EMITS {
                    return Err(ExecError::Refused {
                        step: step.label().to_owned(),
                        message: format!("more than {MAX_EMITS} events emitted by one execution"),
                    });
                }
                let data = match data {
                    Some(expr) => {
                        let v = self.eval(step, expr).await?;
                        self.json(step, &v)?
                    }
                    None => Value::Null,
                };
                let size = data.to_string().len();
                self.emitted_bytes += size;
                if self.emitted_bytes > MAX_EMITTED_BYTES {
                    return Err(ExecError::Refused {
                        step: step.label().to_owned(),
                        message: format!(
                            "the events emitted by one execution hold more than {}",
                            super::budget::show_size(MAX_EMITTED_BYTES as u64)
                        ),
                    });
                }
                // Held until the execution ends: counted in its memory budget.
                if !self.budget.hold("(emitted)", self.emitted_bytes as u64, 0) {
                    return Err(self.over(step, BudgetKind::Memory));
                }
                self.emitted.push(Emitted {
                    event: event.to_string(),
                    data,
                });
                Ok(Some(event.to_string()))
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
            .ok_or_else(|| {
                Self::failed(
                    step,
                    "`once: true` needs the message's id, and this run has none",
                )
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
