//! Flows run in this process, without HTTP or a store: the request `flowgate run`
//! and `flowgate test` make, and the flow tests.
//!
//! `flowgate test`: the cases of `<tenant>/<Trigger>.test.yaml`, each a request
//! to the trigger's flow, run in this process as `flowgate run` runs one, and
//! what its answer must be. The answer is what a caller of the trigger would get
//! were it synchronous: the `respond` step's status and body, a `fail` step's
//! status and message, 500 for a step that failed, 400 for input the trigger's
//! `params` refuse. For an asynchronous trigger it is what its message records.
//! A case may `mock:` the flow's `http` and `sql` steps by name, and
//! `flowgate test --rollback` rolls back the statements it runs.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::codec::input::InputError;
use crate::domain::{MessageId, now_micros};
use crate::engine::{ExecError, Local, Mock, input_errors_body};
use crate::flow::{Catalog, Method, TestFile, Trigger};

/// One case of a test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// GET or POST; the trigger's first method when not given.
    pub method: Option<String>,
    /// Query parameters, as a caller would put them in the URL.
    #[serde(default)]
    pub params: indexmap::IndexMap<String, Value>,
    #[serde(default)]
    pub headers: indexmap::IndexMap<String, String>,
    /// The request body, sent as JSON.
    pub body: Option<Value>,
    /// `http` and `sql` steps, by name, that do not run: what each gives instead.
    #[serde(default)]
    pub mock: indexmap::IndexMap<String, CaseMock>,
    pub expect: Expect,
}

/// What a mocked step gives: `result` (what its `into` gets) or `error` (the
/// message it fails with).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseMock {
    /// Present (`Some`) even when it is `null`.
    #[serde(default, deserialize_with = "present")]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// What a case's answer must be. `body` and `vars` name the fields that must be
/// there with these values (an object's other fields are not compared; arrays
/// and other values must be equal); `error` is the whole message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Option<u16>,
    pub body: Option<Value>,
    pub error: Option<String>,
    pub vars: Option<Value>,
    /// The events the flow emitted, in order: `[{event, data}]`, each `data`
    /// compared as `body` is (the fields named).
    pub emitted: Option<Vec<Value>>,
}

/// A case's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub error: Option<String>,
    pub vars: Value,
    /// What the flow emitted (`[{event, data}]`), delivered only on success.
    pub emitted: Vec<Value>,
    /// How a `respond` answer with a 2xx status does not match the trigger's
    /// `response_schema` (what the consumer document promises callers).
    pub off_schema: Vec<String>,
}

/// Emitted events as `flowgate run` and `flowgate test` show them.
pub fn emitted_json(emitted: &[crate::domain::Emitted]) -> Vec<Value> {
    emitted
        .iter()
        .map(|e| json!({"event": e.event, "data": e.data}))
        .collect()
}

/// Why a test file, or one of its cases, cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Yaml(#[from] serde_saphyr::Error),
    #[error("no cases: the file is a list of cases, each with `name` and `expect`")]
    NoCases,
    /// The case named has nothing under `expect`.
    #[error("case `{0}`: `expect` names nothing to check (status, body, error, vars, emitted)")]
    NothingExpected(String),
    #[error("no trigger {tenant}/{trigger} for this test file")]
    NoTrigger { tenant: String, trigger: String },
    #[error("method {0}: use GET or POST")]
    Method(String),
    #[error("{0}")]
    Body(#[from] serde_json::Error),
    #[error(
        "case `{case}`: `mock` names `{step}`, which is no http or sql step of the flow (named ones: {known})"
    )]
    UnknownMock {
        case: String,
        step: String,
        known: String,
    },
    #[error("case `{case}`: the mock of `{step}` needs exactly one of `result` or `error`")]
    MockShape { case: String, step: String },
}

/// Reads a test file: its cases, or what is wrong with it.
pub fn parse(source: &str) -> Result<Vec<Case>, TestFileError> {
    let cases: Vec<Case> =
        serde_saphyr::from_str_with_options(source, crate::flow::compile::yaml_options())?;
    if cases.is_empty() {
        return Err(TestFileError::NoCases);
    }
    for c in &cases {
        let e = &c.expect;
        if e.status.is_none()
            && e.body.is_none()
            && e.error.is_none()
            && e.vars.is_none()
            && e.emitted.is_none()
        {
            return Err(TestFileError::NothingExpected(c.name.clone()));
        }
    }
    Ok(cases)
}

/// The trigger a test file tests.
pub fn trigger<'a>(catalog: &'a Catalog, file: &TestFile) -> Result<&'a Trigger, TestFileError> {
    catalog
        .trigger(file.tenant.as_str(), &file.trigger)
        .map(|t| t.as_ref())
        .ok_or_else(|| TestFileError::NoTrigger {
            tenant: file.tenant.to_string(),
            trigger: file.trigger.to_string(),
        })
}

/// The method a local run sends: `named` (GET or POST, in any case), or the
/// trigger's first.
pub fn method(trigger: &Trigger, named: Option<&str>) -> Result<Method, TestFileError> {
    match named.map(str::to_ascii_uppercase).as_deref() {
        None => Ok(trigger.methods[0]),
        Some("GET") => Ok(Method::Get),
        Some("POST") => Ok(Method::Post),
        Some(other) => Err(TestFileError::Method(other.to_owned())),
    }
}

/// The input document of a request made in this process (`flowgate run`,
/// `flowgate test`): no caller, no key; `params` go in the query string, and
/// `content_type`, when given, is also sent as the header unless `headers` has one.
pub fn local_input(
    trigger: &Trigger,
    method: Method,
    params: &[(String, String)],
    mut headers: Vec<(String, String)>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Value, Vec<InputError>> {
    // Pairs of strings always encode.
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    if let Some(ct) = content_type
        && !headers.iter().any(|(k, _)| k == "content-type")
    {
        headers.push(("content-type".into(), ct.into()));
    }
    crate::codec::input::document(
        trigger,
        crate::codec::input::Request {
            id: MessageId::new(),
            received_at: now_micros(),
            method,
            query: &query,
            headers,
            content_type,
            body,
            auth: json!({"method": "local"}),
            max_depth: crate::config::Settings::default().max_input_depth,
        },
    )
    .map(|d| d.input)
}

/// What `case` replaces or rolls back when it runs the trigger's flow.
pub fn local(trigger: &Trigger, case: &Case, rollback: bool) -> Result<Local, TestFileError> {
    let known = Local::mockable(&trigger.steps);
    let mut mocks = std::collections::HashMap::new();
    for (step, m) in &case.mock {
        if !known.contains(&step.as_str()) {
            return Err(TestFileError::UnknownMock {
                case: case.name.clone(),
                step: step.clone(),
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            });
        }
        let mock = match (&m.result, &m.error) {
            (Some(r), None) => Mock::Result(r.clone()),
            (None, Some(e)) => Mock::Error(e.clone()),
            _ => {
                return Err(TestFileError::MockShape {
                    case: case.name.clone(),
                    step: step.clone(),
                });
            }
        };
        mocks.insert(step.clone(), mock);
    }
    Ok(Local { mocks, rollback })
}

/// Runs the trigger's flow over a document made by `local_input`, as `flowgate
/// run` and `flowgate test` do: no store, so `.meta` says a first attempt, and
/// on an ordered trigger its lane at epoch 0 (below any a store gives out).
pub async fn run_local(
    executor: &crate::engine::Executor,
    trigger: &Trigger,
    document: &Value,
    local: &Local,
) -> crate::engine::Execution {
    let lane = executor.lane(trigger, document).await.ok().flatten();
    let meta = document["message_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .map(|message_id| crate::domain::RunMeta {
            message_id,
            attempt: 1,
            lane: lane.map(|lane| (lane, 0)),
        });
    executor
        .execute(
            trigger,
            document,
            meta.as_ref(),
            None,
            &crate::engine::Stop::new(),
            Some(local),
        )
        .await
}

/// Runs one case's request through the trigger's flow (its statements rolled
/// back at the end with `rollback`).
pub async fn answer(
    executor: &crate::engine::Executor,
    trigger: &Trigger,
    case: &Case,
    rollback: bool,
) -> Result<Answer, TestFileError> {
    let local = local(trigger, case, rollback)?;
    let method = method(trigger, case.method.as_deref())?;
    let params: Vec<(String, String)> = case
        .params
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    let body = match &case.body {
        Some(b) => serde_json::to_vec(b)?,
        None => Vec::new(),
    };
    let headers = case
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let content_type = case.body.as_ref().map(|_| "application/json");
    let document = match local_input(trigger, method, &params, headers, content_type, &body) {
        Ok(d) => d,
        Err(errors) => {
            let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
            return Ok(Answer {
                status: 400,
                body: input_errors_body(&errors),
                error: Some(messages.join("; ")),
                vars: json!({}),
                emitted: Vec::new(),
                off_schema: Vec::new(),
            });
        }
    };
    let ex = run_local(executor, trigger, &document, &local).await;
    let id = document["message_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| MessageId::at(now_micros()));
    // What a caller would be answered; the whole error is for the report.
    let answer = ex.answer(id);
    let off_schema = match (&trigger.response_schema, &ex.response) {
        (Some(schema), Some(r)) if (200..300).contains(&r.status) => {
            let v = schema.check(&r.body);
            let mut lines: Vec<String> = v.first.iter().map(ToString::to_string).collect();
            if v.more > 0 {
                lines.push(format!("{} more", v.more));
            }
            lines
        }
        _ => Vec::new(),
    };
    Ok(Answer {
        status: answer.status,
        body: answer.body,
        error: ex.result.as_ref().err().map(|e| match e {
            ExecError::Fail { message, .. } => message.clone(),
            other => other.to_string(),
        }),
        vars: ex.vars(),
        emitted: emitted_json(&ex.emitted),
        off_schema,
    })
}

/// What differs between a case's expectation and its answer, one line each.
pub fn differences(expect: &Expect, got: &Answer) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = expect.status
        && s != got.status
    {
        out.push(format!("status: expected {s}, got {}", got.status));
    }
    if let Some(e) = &expect.error {
        match &got.error {
            Some(g) if g == e => {}
            Some(g) => out.push(format!("error: expected {}, got {}", json!(e), json!(g))),
            None => out.push(format!("error: expected {}, got none", json!(e))),
        }
    }
    if let Some(b) = &expect.body {
        compare(b, &got.body, "body", &mut out);
    }
    if let Some(v) = &expect.vars {
        compare(v, &got.vars, "vars", &mut out);
    }
    for why in &got.off_schema {
        out.push(format!("body does not match `response_schema`: {why}"));
    }
    if let Some(expected) = &expect.emitted {
        if expected.len() != got.emitted.len() {
            let names = |l: &[Value]| {
                l.iter()
                    .map(|e| e["event"].as_str().unwrap_or("?").to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(format!(
                "emitted: expected {} event(s) [{}], got {} [{}]",
                expected.len(),
                names(expected),
                got.emitted.len(),
                names(&got.emitted)
            ));
        } else {
            for (i, (e, g)) in expected.iter().zip(&got.emitted).enumerate() {
                compare(e, g, &format!("emitted[{i}]"), &mut out);
            }
        }
    }
    out
}

/// `expected` against `actual`: an object's fields named in `expected` must be
/// there with those values; anything else must be equal.
fn compare(expected: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => compare(ev, av, &p, out),
                    None => out.push(format!("{p}: expected {ev}, missing")),
                }
            }
        }
        _ if expected == actual => {}
        _ => out.push(format!("{path}: expected {expected}, got {actual}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_of(body: Value) -> Answer {
        Answer {
            status: 201,
            body,
            error: None,
            vars: json!({}),
            emitted: Vec::new(),
            off_schema: Vec::new(),
        }
    }

    #[test]
    fn only_the_fields_named_are_compared() {
        let expect = Expect {
            status: Some(201),
            body: Some(json!({"id": "c-1", "address": {"city": "London"}})),
            ..Default::default()
        };
        let got = answer_of(
            json!({"id": "c-1", "name": "ada", "address": {"city": "London", "zip": "N1"}}),
        );
        assert!(differences(&expect, &got).is_empty());
        let got = answer_of(json!({"id": "c-2", "address": {"zip": "N1"}}));
        assert_eq!(
            differences(&expect, &got),
            [
                r#"body.id: expected "c-1", got "c-2""#,
                r#"body.address.city: expected "London", missing"#,
            ]
        );
    }

    #[test]
    fn arrays_status_and_errors_must_be_equal() {
        let expect = Expect {
            status: Some(422),
            body: Some(json!({"tags": ["a"]})),
            error: Some("a customer needs a name".into()),
            ..Default::default()
        };
        let got = answer_of(json!({"tags": ["a", "b"]}));
        assert_eq!(
            differences(&expect, &got),
            [
                "status: expected 422, got 201",
                r#"error: expected "a customer needs a name", got none"#,
                r#"body.tags: expected ["a"], got ["a","b"]"#,
            ]
        );
    }

    #[test]
    fn a_file_is_a_list_of_cases_each_checking_something() {
        let cases = parse("- name: one\n  body: {a: 1}\n  expect: {status: 200}\n").unwrap();
        assert_eq!(cases[0].body, Some(json!({"a": 1})));
        let err = parse("- name: one\n  expect: {}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "case `one`: `expect` names nothing to check (status, body, error, vars, emitted)"
        );
        let err = parse("- name: one\n  expect: {status: 200}\n  bdy: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bdy"), "{err}");
        assert!(parse("[]").unwrap_err().to_string().starts_with("no cases"));
    }

    #[test]
    fn emitted_events_are_compared_in_order_by_the_fields_named() {
        let expect = Expect {
            emitted: Some(vec![json!({"event": "order.created", "data": {"id": 7}})]),
            ..Default::default()
        };
        let mut got = answer_of(json!({}));
        got.emitted = vec![json!({"event": "order.created", "data": {"id": 7, "n": 1}})];
        assert!(differences(&expect, &got).is_empty());
        got.emitted = vec![json!({"event": "order.created", "data": {"id": 8}})];
        assert_eq!(
            differences(&expect, &got),
            ["emitted[0].data.id: expected 7, got 8"]
        );
        got.emitted.clear();
        assert_eq!(
            differences(&expect, &got),
            ["emitted: expected 1 event(s) [order.created], got 0 []"]
        );
    }

    #[test]
    fn a_mock_result_may_be_null_and_is_told_from_an_absent_one() {
        let cases = parse(
            "- name: one\n  mock: { a: { result: null }, b: { error: down } }\n  expect: {status: 200}\n",
        )
        .unwrap();
        let (a, b) = (&cases[0].mock["a"], &cases[0].mock["b"]);
        assert_eq!((&a.result, &a.error), (&Some(Value::Null), &None));
        assert_eq!((&b.result, b.error.as_deref()), (&None, Some("down")));
        let err = parse("- name: one\n  mock: { a: { reslt: 1 } }\n  expect: {status: 200}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reslt"), "{err}");
    }
}
