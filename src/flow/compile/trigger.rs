//! `<Trigger>.yaml` -> Trigger: methods, params, delivery, response and limits
//! here; its `auth:` in `auth.rs`, its steps in `steps.rs`.

use serde_saphyr::Spanned;

use crate::connect::EnvLookup;
use crate::domain::{Mode, TriggerKey, TriggerName};
use crate::flow::model::{
    DEFAULT_CONCURRENCY, DEFAULT_RETRY, DEFAULT_SYNC_TIMEOUT, Delivery, Method, OnExhausted,
    OnTimeout, ResponseSettings, Tenant, Trigger, TriggerLimits, input_reads,
};
use crate::flow::raw::{RawDelivery, RawLimits, RawResponse, RawTrigger};
use crate::flow::schema::BodySchema;
use crate::flow::statuses::AnswerStatuses;

use super::auth::compile_auth;
use super::cx::FileCx;
use super::params::compile_param;
use super::steps::compile_steps;

/// `<Trigger>.yaml` -> Trigger, checked against its tenant's key labels.
pub fn compile_trigger(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    name: TriggerName,
    raw: RawTrigger,
    env: &EnvLookup,
) -> Option<Trigger> {
    let before = cx.diagnostics.len();
    let methods = compile_methods(cx, raw.methods);
    let (auth, allow_ips) = compile_auth(cx, tenant, raw.auth, env);
    let params = raw
        .params
        .into_iter()
        .filter_map(|(n, p)| compile_param(cx, n, p))
        .collect();
    let body_schema = raw.body.and_then(|s| compile_body_schema(cx, &methods, s));
    let response_schema = raw
        .response_schema
        .as_ref()
        .and_then(|s| compile_response_schema(cx, s));
    let delivery = compile_delivery(cx, raw.delivery);
    let response = compile_response(cx, raw.response);
    let limits = compile_limits(cx, raw.limits);
    if delivery.ordered && response.mode == Mode::Sync && delivery.ordering_key.is_none() {
        // Allowed: a sync caller waits for its turn in the lane.
    }
    if raw.steps.value.is_empty() {
        cx.error(
            raw.steps.referenced,
            "`steps` is empty: a flow needs at least one step",
        );
    }
    let steps = compile_steps(cx, tenant, raw.steps.value, "steps");
    if let Some(s) = &raw.response_schema
        && AnswerStatuses::of(&steps).respond.is_empty()
    {
        cx.error(
            s.referenced,
            "`response_schema` describes the body of the flow's `respond` answers, and this flow has no `respond` step",
        );
    }
    let trace_full = match raw.trace {
        None => false,
        Some(t) if t.value == "full" => true,
        Some(t) if t.value == "steps" => false,
        Some(t) => {
            let msg = format!("unknown trace `{}`: use `steps` or `full`", t.value);
            cx.error(t.referenced, msg);
            false
        }
    };
    (cx.diagnostics.len() == before).then(|| Trigger {
        key: TriggerKey {
            tenant: tenant.name.clone(),
            trigger: name,
        },
        file: cx.file.to_path_buf(),
        description: raw.description,
        methods,
        enabled: raw.enabled.unwrap_or(true),
        auth,
        allow_ips,
        secret_headers: tenant.secret_headers.clone(),
        params,
        body_schema,
        response_schema,
        delivery,
        response,
        limits,
        trace_full,
        reads: input_reads(&steps),
        steps,
    })
}

/// `body:`: a JSON Schema for the request body, on a trigger that takes one.
fn compile_body_schema(
    cx: &mut FileCx<'_>,
    methods: &[Method],
    raw: Spanned<serde_json::Value>,
) -> Option<BodySchema> {
    if !methods.contains(&Method::Post) {
        cx.error(
            raw.referenced,
            "`body` is a schema for request bodies; this trigger accepts GET only (check query parameters with `params`)",
        );
        return None;
    }
    match BodySchema::compile(&raw.value) {
        Ok(s) => Some(s),
        Err(e) => {
            cx.error(
                raw.referenced,
                format!("`body` is not a valid JSON Schema (2020-12): {e}"),
            );
            None
        }
    }
}

/// `response_schema:`: a JSON Schema of the flow's answers, for the consumer
/// document.
fn compile_response_schema(
    cx: &mut FileCx<'_>,
    raw: &Spanned<serde_json::Value>,
) -> Option<BodySchema> {
    match BodySchema::compile(&raw.value) {
        Ok(s) => Some(s),
        Err(e) => {
            cx.error(
                raw.referenced,
                format!("`response_schema` is not a valid JSON Schema (2020-12): {e}"),
            );
            None
        }
    }
}

/// `limits:`: a positive duration and size each, when given.
fn compile_limits(cx: &mut FileCx<'_>, raw: Option<Spanned<RawLimits>>) -> TriggerLimits {
    let Some(raw) = raw else {
        return Default::default();
    };
    let time = raw.value.time.and_then(|t| {
        let d = cx.duration(&t, "limits.time")?;
        if d.is_zero() {
            cx.error(t.referenced, "limits.time must be greater than 0");
            return None;
        }
        Some(d)
    });
    let memory = raw
        .value
        .memory
        .and_then(|m| match crate::domain::parse_size(&m.value) {
            Ok(0) => {
                cx.error(m.referenced, "limits.memory must be greater than 0");
                None
            }
            Ok(bytes) => Some(bytes),
            Err(e) => {
                cx.error(m.referenced, format!("limits.memory: {e}"));
                None
            }
        });
    TriggerLimits { time, memory }
}

fn compile_methods(cx: &mut FileCx<'_>, raw: Option<Vec<Spanned<String>>>) -> Vec<Method> {
    let Some(raw) = raw else {
        return vec![Method::Post];
    };
    let mut methods = Vec::new();
    for m in raw {
        let method = match m.value.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            _ => {
                cx.error(
                    m.referenced,
                    format!("unknown method `{}`: use GET or POST", m.value),
                );
                continue;
            }
        };
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    if methods.is_empty() {
        cx.error_at(1, 1, "`methods` is empty: use GET, POST or both");
    }
    methods
}

fn compile_delivery(cx: &mut FileCx<'_>, raw: Option<RawDelivery>) -> Delivery {
    let Some(raw) = raw else {
        return Delivery {
            ordered: false,
            ordering_key: None,
            concurrency: DEFAULT_CONCURRENCY,
            retry: DEFAULT_RETRY.to_vec(),
            on_exhausted: OnExhausted::Block,
        };
    };
    let ordering_key = raw.ordering_key.as_ref().and_then(|k| {
        if !raw.ordered {
            cx.error(k.referenced, "`ordering_key` needs `ordered: true`");
        }
        cx.expr(k, "ordering_key")
    });
    let concurrency = match raw.concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(c) if (1..=1024).contains(&c.value) => c.value as usize,
        Some(c) => {
            cx.error(
                c.referenced,
                format!("`concurrency` must be between 1 and 1024, not {}", c.value),
            );
            DEFAULT_CONCURRENCY
        }
    };
    let retry = match raw.retry {
        None => DEFAULT_RETRY.to_vec(),
        Some(items) => items
            .iter()
            .filter_map(|d| cx.duration(d, "retry"))
            .collect(),
    };
    let on_exhausted = one_of(
        cx,
        raw.on_exhausted,
        "on_exhausted",
        [("block", OnExhausted::Block), ("skip", OnExhausted::Skip)],
    );
    Delivery {
        ordered: raw.ordered,
        ordering_key,
        concurrency,
        retry,
        on_exhausted,
    }
}

fn compile_response(cx: &mut FileCx<'_>, raw: Option<RawResponse>) -> ResponseSettings {
    let Some(raw) = raw else {
        return ResponseSettings {
            mode: Mode::Sync,
            timeout: DEFAULT_SYNC_TIMEOUT,
            on_timeout: OnTimeout::Continue,
        };
    };
    let mode = one_of(
        cx,
        raw.mode,
        "mode",
        [("sync", Mode::Sync), ("async", Mode::Async)],
    );
    let timeout = match raw.timeout {
        None => DEFAULT_SYNC_TIMEOUT,
        Some(t) => {
            if mode == Mode::Async {
                cx.error(t.referenced, "`timeout` applies to `mode: sync` only");
            }
            match cx.duration(&t, "timeout") {
                Some(d) if d.is_zero() => {
                    cx.error(t.referenced, "`timeout` must be greater than zero");
                    DEFAULT_SYNC_TIMEOUT
                }
                Some(d) => d,
                None => DEFAULT_SYNC_TIMEOUT,
            }
        }
    };
    if let (Some(w), Mode::Async) = (&raw.on_timeout, mode) {
        cx.error(w.referenced, "`on_timeout` applies to `mode: sync` only");
    }
    let on_timeout = one_of(
        cx,
        raw.on_timeout,
        "on_timeout",
        [
            ("continue", OnTimeout::Continue),
            ("cancel", OnTimeout::Cancel),
        ],
    );
    ResponseSettings {
        mode,
        timeout,
        on_timeout,
    }
}

/// A setting that takes one of two words; the first is its default, and what
/// stands when the word is another.
fn one_of<T: Copy>(
    cx: &mut FileCx<'_>,
    raw: Option<Spanned<String>>,
    key: &str,
    [(a, first), (b, second)]: [(&str, T); 2],
) -> T {
    let Some(word) = raw else {
        return first;
    };
    match word.value.as_str() {
        w if w == a => first,
        w if w == b => second,
        other => {
            cx.error(
                word.referenced,
                format!("`{key}` is `{a}` or `{b}`, not `{other}`"),
            );
            first
        }
    }
}
