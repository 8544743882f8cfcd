use std::path::Path;

use serde_json::json;

use super::*;
use crate::domain::{TenantName, TriggerName};
use crate::flow::Tenant;
use crate::flow::loader::compile_trigger_source;

/// Runs like `Executor::execute`, with jq evaluated in this process (the test
/// binary cannot be a worker; tests/api run real workers).
async fn execute(
    trigger: &Trigger,
    input: &serde_json::Value,
    responder: Option<Responder>,
    stop: &Stop,
) -> Execution {
    Executor::new(Sandbox::inline(), Limits::default())
        .execute(trigger, input, None, responder, stop, None)
        .await
}

/// Runs `t` to its end with no caller waiting and nothing stopping it.
async fn run(t: &Trigger, input: &serde_json::Value) -> Execution {
    execute(t, input, None, &Stop::new()).await
}

fn trigger(yaml: &str) -> Trigger {
    let tenant = Tenant::empty(TenantName::parse("t").unwrap());
    let src = format!("auth: {{ none: true }}\n{yaml}");
    compile_trigger_source(
        &tenant,
        TriggerName::parse("x").unwrap(),
        Path::new("x.yaml"),
        &src,
    )
    .unwrap_or_else(|d| panic!("{d:?}"))
}

#[tokio::test]
async fn set_if_and_respond() {
    let t = trigger(
        r#"
steps:
  - set: { n: '.params.qty * 2' }
  - if: .vars.n > 5
    then: [ { set: { size: '"big"' } } ]
    else: [ { set: { size: '"small"' } } ]
  - respond: { status: 201, headers: { x-size: '{{ .vars.size }}' }, body: '{n: .vars.n, size: .vars.size}' }
"#,
    );
    let ex = run(&t, &json!({"params": {"qty": 3}})).await;
    assert!(ex.result.is_ok());
    let r = ex.response.unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.body, json!({"n": 6, "size": "big"}));
    assert_eq!(r.headers, vec![("x-size".to_owned(), "big".to_owned())]);
    assert_eq!(ex.trace.len(), 4, "if, its then-step, set, respond");
}

#[tokio::test]
async fn for_each_collects() {
    let t = trigger(
        r#"
steps:
  - for_each: .body.lines
    as: line
    do: [ { set: { amount: '.vars.line.qty * .vars.line.price' } } ]
    collect: .vars.amount
    into: amounts
  - set: { total: '.vars.amounts | add' }
"#,
    );
    let lines = json!({"body": {"lines": [{"qty": 2, "price": 5}, {"qty": 1, "price": 3}]}});
    let ex = run(&t, &lines).await;
    assert!(ex.result.is_ok());
    assert_eq!(ex.vars()["amounts"], json!([10, 3]));
    assert_eq!(ex.vars()["total"], json!(13));
}

#[tokio::test]
async fn fail_ends_the_execution_and_names_the_step() {
    let t = trigger(
        r#"
steps:
  - name: check
    fail: { status: 422, message: '"no \(.params.x)"' }
  - set: { never: 1 }
"#,
    );
    let ex = run(&t, &json!({"params": {"x": "A"}})).await;
    let err = ex.result.clone().unwrap_err();
    assert_eq!(
        err,
        ExecError::Fail {
            step: "check".into(),
            status: 422,
            message: "no A".into()
        }
    );
    assert!(!err.retryable());
    assert_eq!(ex.vars(), json!({}));
}

#[tokio::test]
async fn expression_errors_are_retryable_failures() {
    let t = trigger("steps:\n  - set: { x: '.body + 1' }\n");
    let ex = run(&t, &json!({"body": "text"})).await;
    let err = ex.result.unwrap_err();
    assert!(err.retryable());
    assert_eq!(err.step(), "steps[0]");
    assert!(!ex.trace[0].ok);
}

#[tokio::test]
async fn respond_reaches_the_caller_before_the_flow_ends() {
    let t = trigger(
        r#"
steps:
  - respond: { body: '"early"' }
  - log: '"after"'
  - fail: { message: '"later failure"' }
"#,
    );
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let ex = execute(&t, &json!({}), Some(tx), &Stop::new()).await;
    assert_eq!(rx.try_recv().unwrap().body, json!("early"));
    assert!(ex.result.is_err());
    assert_eq!(ex.trace[1].detail.as_deref(), Some("after"));
}

#[tokio::test]
async fn set_takes_yaml_mappings_and_lists_as_data() {
    let t = trigger(
        r#"
steps:
  - set:
      table: { A: { price: 2 }, B: { price: 3 } }
      codes: [x, y]
      n: 1
  - set: { price: '.vars.table[.params.id].price * .vars.n' }
"#,
    );
    let ex = run(&t, &json!({"params": {"id": "B"}})).await;
    assert!(ex.result.is_ok());
    assert_eq!(ex.vars()["price"], json!(3));
    assert_eq!(ex.vars()["codes"], json!(["x", "y"]));
}

#[tokio::test]
async fn full_trace_keeps_variables_before_and_after_each_step() {
    let yaml = "steps:\n  - set: { a: 1 }\n  - set: { b: '.vars.a + 1' }\n";
    let t = trigger(&format!("trace: full\n{yaml}"));
    let ex = run(&t, &json!({})).await;
    let trace = ex.trace_json();
    assert_eq!(trace[1]["vars_before"], json!({"a": 1}));
    assert_eq!(trace[1]["vars_after"], json!({"a": 1, "b": 2}));
    let text: serde_json::Value = serde_json::from_str(&ex.trace_text()).unwrap();
    assert_eq!(text, trace, "the stored text is the same document");
    let plain = run(&trigger(yaml), &json!({})).await;
    assert!(plain.trace_json()[1].get("vars_before").is_none());
}

#[tokio::test]
async fn an_execution_converts_only_the_fields_its_steps_read() {
    let t = trigger(
        r#"
steps:
  - set: { n: '.params.qty * 2' }
  - if: .vars.n > 5
    then: [ { log: '"big order \(.params.qty)"' } ]
  - respond: { body: '{n: .vars.n, id: .message_id}' }
"#,
    );
    assert_eq!(
        t.reads.as_deref(),
        Some(&["message_id".to_owned(), "params".to_owned()][..])
    );
    let doc = json!({"message_id": "m-1", "params": {"qty": 3}, "headers": {"host": "x"}});
    let ex = run(&t, &doc).await;
    assert_eq!(ex.response.unwrap().body, json!({"n": 6, "id": "m-1"}));

    // A step that reads the whole document (or leaves the reading to jaq) gets it all.
    for step in ["log: .", "log: '[.headers[]]'", "log: 'keys'"] {
        let t = trigger(&format!(
            "steps:\n  - {step}\n  - respond: {{ body: '.headers.host' }}\n"
        ));
        assert_eq!(t.reads, None, "{step}");
        let ex = run(&t, &doc).await;
        assert_eq!(ex.response.unwrap().body, json!("x"), "{step}");
    }
}

#[tokio::test]
async fn a_stop_from_outside_ends_the_execution_inside_a_long_loop() {
    let t = trigger(
        r#"
steps:
  - for_each: '[range(100000)]'
    as: i
    do:
      - set: { j: '.vars.i + 1' }
      - log: '.vars.j'
  - respond: { body: '"done"' }
"#,
    );
    let stop = Stop::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        stopper.stop(StopReason::LeaseLost);
    });
    let ex = execute(&t, &json!({}), None, &stop).await;
    match ex.result {
        Err(ExecError::Stopped { reason, step }) => {
            assert_eq!(reason, StopReason::LeaseLost);
            assert_ne!(step, "-", "the step in flight is named");
        }
        other => panic!("expected a stop, got {other:?}"),
    }
    assert!(ex.response.is_none(), "the flow never reached its respond");
}

#[tokio::test]
async fn an_execution_stopped_before_it_starts_runs_no_step() {
    let t = trigger("steps:\n  - log: '\"x\"'\n");
    let stop = Stop::new();
    stop.stop(StopReason::Shutdown);
    let ex = execute(&t, &json!({}), None, &stop).await;
    assert!(matches!(
        ex.result,
        Err(ExecError::Stopped {
            reason: StopReason::Shutdown,
            ..
        })
    ));
    assert!(ex.trace.is_empty());
}

/// An input whose body has forty items (for loops that double something).
fn forty_items() -> serde_json::Value {
    json!({"body": {"items": vec![0; 40]}})
}

/// The execution ended over its `kind` budget.
fn assert_over(ex: &Execution, kind: BudgetKind) {
    assert!(
        matches!(&ex.result, Err(ExecError::Budget { kind: k, .. }) if *k == kind),
        "{:?}",
        ex.result
    );
}

#[tokio::test]
async fn the_time_budget_stops_a_long_loop_promptly() {
    let t = trigger(
        r#"
limits: { time: 50ms }
steps:
  - name: loop
    for_each: .body.items
    as: i
    do:
      - set: { j: '.vars.i + 1' }
      - log: '"item \(.vars.j)"'
"#,
    );
    let items: Vec<u32> = (0..100_000).collect();
    let started = std::time::Instant::now();
    let ex = run(&t, &json!({"body": {"items": items}})).await;
    let took = started.elapsed();
    let err = ex.result.unwrap_err();
    assert!(
        matches!(&err, ExecError::Budget { kind: BudgetKind::Time, limit, .. } if limit == "50ms"),
        "{err:?}"
    );
    assert_eq!(err.code(), "budget_exceeded");
    assert!(!err.retryable(), "another run would run out again");
    assert!(
        err.to_string()
            .starts_with("time budget exceeded (50ms) at step `"),
        "{err}"
    );
    assert!(took < std::time::Duration::from_millis(150), "{took:?}");
}

#[tokio::test]
async fn the_memory_budget_bounds_what_variables_hold() {
    let t = trigger(
        r#"
limits: { memory: 1MiB }
steps:
  - set: { s: '"x"' }
  - name: double
    for_each: .body.items
    as: i
    do:
      - set: { s: '.vars.s + .vars.s' }
"#,
    );
    let ex = run(&t, &forty_items()).await;
    match ex.result {
        Err(ExecError::Budget {
            kind: BudgetKind::Memory,
            limit,
            step,
        }) => {
            assert_eq!(limit, "1 MiB");
            assert_eq!(step, "steps[1].do[0]", "the step in flight");
        }
        other => panic!("{other:?}"),
    }
    // Collected results count too.
    let t = trigger(
        r#"
limits: { memory: 64KiB }
steps:
  - for_each: .body.items
    as: i
    do: [ { set: { row: '{n: .vars.i, text: "\(.vars.i) \(.vars.i) \(.vars.i) \(.vars.i)"}' } } ]
    collect: .vars.row
    into: rows
"#,
    );
    let items: Vec<u32> = (0..10_000).collect();
    let ex = run(&t, &json!({"body": {"items": items}})).await;
    assert_over(&ex, BudgetKind::Memory);
}

#[tokio::test]
async fn values_shared_past_any_size_are_refused_where_they_would_be_written_out() {
    // Native construction shares values: 2^40 leaves after 40 doublings.
    let t = trigger(
        r#"
limits: { memory: 16MiB }
steps:
  - set: { d: '[1]' }
  - for_each: .body.items
    as: i
    do: [ { set: { d: '[.vars.d, .vars.d]' } } ]
  - respond: { body: .vars.d }
"#,
    );
    let ex = run(&t, &forty_items()).await;
    assert_over(&ex, BudgetKind::Memory);
    assert!(ex.response.is_none());
}
