//! `steps:` of a trigger: one of set, if, for_each, respond, fail, log, http,
//! sql, transaction or emit each, nested steps by their path (`steps[2].then[0]`).
//! The http and sql steps, which reach other systems, are in `io_steps.rs`;
//! what a transaction may hold is checked in `transaction.rs`.

use indexmap::IndexMap;
use serde_saphyr::{Location, Spanned};

use crate::domain::business_event_name;
use crate::flow::model::{SetValue, Step, StepKind, Tenant};
use crate::flow::raw::{RawStep, SetValue as RawSetValue};
use crate::flow::template::Template;
use crate::flow::value::from_json;

use super::cx::{FileCx, is_variable_name};
use super::io_steps::{compile_http_step, compile_retry, compile_sql_step, pg_connection};
use super::transaction::refuse_inside;

const STEP_KEYS: &str = "set, if, for_each, respond, fail, log, http, sql, transaction, emit";

pub(super) fn compile_steps(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    raw: Vec<Spanned<RawStep>>,
    path: &str,
) -> Vec<Step> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, s)| compile_step(cx, tenant, s, format!("{path}[{i}]")))
        .collect()
}

fn compile_step(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    raw: Spanned<RawStep>,
    path: String,
) -> Option<Step> {
    let loc = raw.referenced;
    let s = raw.value;
    let present: Vec<&str> = [
        ("set", s.set.is_some()),
        ("if", s.if_.is_some()),
        ("for_each", s.for_each.is_some()),
        ("respond", s.respond.is_some()),
        ("fail", s.fail.is_some()),
        ("log", s.log.is_some()),
        ("http", s.http.is_some()),
        ("sql", s.sql.is_some()),
        ("transaction", s.transaction.is_some()),
        ("emit", s.emit.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.then_some(k))
    .collect();
    let kind = match present.as_slice() {
        [] => {
            cx.error(loc, format!("a step needs one of: {STEP_KEYS}"));
            return None;
        }
        [one] => *one,
        many => {
            cx.error(
                loc,
                format!(
                    "a step has exactly one of {STEP_KEYS}; this one has {}",
                    many.join(" and ")
                ),
            );
            return None;
        }
    };
    let misplaced = |cx: &mut FileCx<'_>, key: &str, l: Location, owner: &str| {
        cx.error(
            l,
            format!("`{key}` belongs to `{owner}` steps, not to `{kind}`"),
        );
    };
    if kind != "if" {
        if let Some(t) = &s.then {
            misplaced(cx, "then", t.referenced, "if")
        }
        if let Some(e) = &s.else_ {
            misplaced(cx, "else", e.referenced, "if")
        }
    }
    if kind != "for_each" {
        if let Some(a) = &s.as_ {
            misplaced(cx, "as", a.referenced, "for_each")
        }
        if let Some(d) = &s.do_ {
            misplaced(cx, "do", d.referenced, "for_each")
        }
        if let Some(c) = &s.collect {
            misplaced(cx, "collect", c.referenced, "for_each")
        }
        if let Some(i) = &s.into {
            misplaced(cx, "into", i.referenced, "for_each")
        }
    }
    if let Some(r) = &s.retry
        && kind != "http"
        && kind != "sql"
    {
        cx.error(
            r.referenced,
            "`retry` on a step applies to `http` and `sql` steps only",
        );
    }
    let retry = compile_retry(cx, s.retry);
    let before = cx.diagnostics.len();
    let step_kind = match kind {
        "set" => {
            let set = s.set?;
            if set.value.is_empty() {
                cx.error(
                    set.referenced,
                    "`set` is empty: give it `name: expression` pairs",
                );
            }
            let mut pairs = Vec::new();
            for (name, e) in set.value {
                if !is_variable_name(&name) {
                    cx.error(e.referenced, format!("`set`: `{name}` is not a variable name (letters, digits and `_`, not starting with a digit)"));
                }
                match e.value {
                    RawSetValue::Data(v) => match from_json(&v) {
                        Ok(data) => pairs.push((name, SetValue::Data(data))),
                        Err(why) => cx.error(e.referenced, format!("`set {name}`: {why}")),
                    },
                    RawSetValue::Expr(text) => {
                        let spanned = Spanned::new(text, e.referenced, e.defined);
                        if let Some(expr) = cx.expr(&spanned, &format!("set.{name}")) {
                            pairs.push((name, SetValue::Expr(expr)));
                        }
                    }
                }
            }
            StepKind::Set(pairs)
        }
        "if" => {
            let cond = s.if_.as_ref().and_then(|c| cx.expr(c, "if"));
            let then = match s.then {
                Some(t) => compile_steps(cx, tenant, t.value, &format!("{path}.then")),
                None => {
                    cx.error(loc, "an `if` step needs `then:` steps");
                    Vec::new()
                }
            };
            let otherwise = s
                .else_
                .map(|e| compile_steps(cx, tenant, e.value, &format!("{path}.else")))
                .unwrap_or_default();
            StepKind::If {
                cond: cond?,
                then,
                otherwise,
            }
        }
        "for_each" => {
            let items = s.for_each.as_ref().and_then(|e| cx.expr(e, "for_each"));
            let var = match &s.as_ {
                Some(a) if is_variable_name(&a.value) => a.value.clone(),
                Some(a) => {
                    cx.error(
                        a.referenced,
                        format!("`as`: `{}` is not a variable name", a.value),
                    );
                    String::new()
                }
                None => {
                    cx.error(
                        loc,
                        "a `for_each` step needs `as: name` for the current item",
                    );
                    String::new()
                }
            };
            let body = match s.do_ {
                Some(d) => compile_steps(cx, tenant, d.value, &format!("{path}.do")),
                None => {
                    cx.error(loc, "a `for_each` step needs `do:` steps");
                    Vec::new()
                }
            };
            let collect = s.collect.as_ref().and_then(|c| cx.expr(c, "collect"));
            let into = match &s.into {
                Some(i) if is_variable_name(&i.value) => Some(i.value.clone()),
                Some(i) => {
                    cx.error(
                        i.referenced,
                        format!("`into`: `{}` is not a variable name", i.value),
                    );
                    None
                }
                None => None,
            };
            if s.collect.is_some() && into.is_none() && s.into.is_none() {
                cx.error(
                    loc,
                    "`collect` needs `into: name` to store the collected results",
                );
            }
            StepKind::ForEach {
                items: items?,
                var,
                body,
                collect,
                into,
            }
        }
        "respond" => {
            let r = s.respond?.value;
            StepKind::Respond {
                status: status_code(cx, r.status.as_ref(), 200, 100..=599),
                headers: response_headers(cx, &r.headers),
                body: r.body.as_ref().and_then(|b| cx.expr(b, "body")),
                xml: r.xml.as_ref().and_then(|b| cx.expr(b, "xml")),
            }
        }
        "fail" => {
            let f = s.fail?.value;
            StepKind::Fail {
                status: status_code(cx, f.status.as_ref(), 500, 400..=599),
                message: cx.expr(&f.message, "message")?,
            }
        }
        "log" => StepKind::Log(cx.expr(s.log.as_ref()?, "log")?),
        "http" => StepKind::Http(Box::new(compile_http_step(cx, tenant, s.http?, retry)?)),
        "sql" => StepKind::Sql(Box::new(compile_sql_step(
            cx,
            tenant,
            s.sql?,
            retry,
            s.name.as_deref(),
        )?)),
        "transaction" => {
            let t = s.transaction?.value;
            let connection = pg_connection(cx, tenant, &t.connection, "a `transaction`");
            if t.steps.value.is_empty() {
                cx.error(t.steps.referenced, "the transaction has no `steps`");
            }
            refuse_inside(cx, &t.steps.value, &t.connection.value);
            let steps = compile_steps(cx, tenant, t.steps.value, &format!("{path}.steps"));
            StepKind::Transaction {
                connection: connection?,
                steps,
            }
        }
        "emit" => {
            let e = s.emit?.value;
            if let Err(why) = business_event_name(&e.event.value) {
                cx.error(e.event.referenced, format!("`emit`: {why}"));
            }
            StepKind::Emit {
                event: e.event.value.as_str().into(),
                data: e.data.as_ref().and_then(|d| cx.expr(d, "data")),
            }
        }
        _ => return None,
    };
    (cx.diagnostics.len() == before).then_some(Step {
        name: s.name.map(Into::into),
        path: path.into(),
        kind: step_kind,
    })
}

fn status_code(
    cx: &mut FileCx<'_>,
    raw: Option<&Spanned<i64>>,
    default: u16,
    range: std::ops::RangeInclusive<i64>,
) -> u16 {
    match raw {
        None => default,
        Some(s) if range.contains(&s.value) => s.value as u16,
        Some(s) => {
            cx.error(
                s.referenced,
                format!(
                    "`status` must be between {} and {}, not {}",
                    range.start(),
                    range.end(),
                    s.value
                ),
            );
            default
        }
    }
}

/// A `respond` step's headers, names lower-cased; a name that is not a token is
/// an error.
fn response_headers(
    cx: &mut FileCx<'_>,
    headers: &IndexMap<String, Spanned<String>>,
) -> Vec<(String, Template)> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                cx.error(v.referenced, format!("`{k}` is not a valid header name"));
                return None;
            }
            cx.template(v, &format!("header {k}"))
                .map(|t| (k.to_ascii_lowercase(), t))
        })
        .collect()
}
