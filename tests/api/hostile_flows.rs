//! Hostile flows: expressions and steps that would run for ever, recurse without
//! end, build huge values or wait on a slow system, each run in a trigger of a
//! tenant of their own, async and sync, with small budgets. After each the
//! server is up, `/_health` answers, another tenant's lookup answers, and the
//! message's recorded error names the budget (or says what went wrong).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{Value, json};

use crate::admin::GLOBAL_TOKEN;
use crate::helpers::{TestApp, WEBSHOP_KEY, write_flow};
use crate::stub::{Reply, Stub};

/// How a hostile flow must end.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// `budget_exceeded`, naming this budget.
    Budget(&'static str),
    /// `flow_failed`, its error containing one of these.
    Failed(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    limits: &'static str,
    steps: String,
    body: Value,
    expect: Expect,
}

fn set(expr: &str) -> String {
    format!(
        "  - name: hostile\n    set: {{ x: '{}' }}\n",
        expr.replace('\'', "''")
    )
}

fn cases(slow_url: &str) -> Vec<Case> {
    let time = "{ time: 1s, memory: 64MiB }";
    let memory = "{ time: 60s, memory: 8MiB }";
    let deep_text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let dag = format!("[1] {}| tostring", "| [., .] ".repeat(40));
    vec![
        Case { name: "Spin", limits: time, steps: set("last(range(1e15))"), body: json!({}), expect: Expect::Budget("time") },
        Case { name: "While", limits: time, steps: set("last(0 | while(true; . + 1))"), body: json!({}), expect: Expect::Budget("time") },
        Case { name: "Until", limits: time, steps: set("0 | until(false; . + 1)"), body: json!({}), expect: Expect::Budget("time") },
        Case { name: "RepeatLast", limits: time, steps: set("last(repeat(1))"), body: json!({}), expect: Expect::Budget("time") },
        Case {
            name: "Recurse",
            limits: memory,
            steps: set("def f: 1 + f; f"),
            body: json!({}),
            expect: Expect::Failed(&["recursed too deep"]),
        },
        Case { name: "HugeArray", limits: memory, steps: set("[range(1e9)] | length"), body: json!({}), expect: Expect::Budget("memory") },
        Case { name: "Repeat", limits: memory, steps: set("[repeat(1)]"), body: json!({}), expect: Expect::Budget("memory") },
        Case { name: "LimitRepeat", limits: memory, steps: set("[limit(1e18; repeat(1))]"), body: json!({}), expect: Expect::Budget("memory") },
        Case {
            name: "StringBlowup",
            limits: memory,
            steps: set("reduce range(40) as $i (\"x\"; . + .)"),
            body: json!({}),
            expect: Expect::Budget("memory"),
        },
        Case { name: "DagToString", limits: memory, steps: set(&dag), body: json!({}), expect: Expect::Budget("memory") },
        Case {
            name: "DeepFromjson",
            limits: memory,
            steps: set(".body.s | fromjson"),
            body: json!({ "s": deep_text }),
            expect: Expect::Failed(&["nested deeper than 256", "recursed too deep"]),
        },
        Case {
            name: "NativeDag",
            limits: "{ time: 20s, memory: 4MiB }",
            steps: "  - set: { d: '[1]' }\n  - for_each: .body.items\n    as: i\n    do: [ { set: { d: '[.vars.d, .vars.d]' } } ]\n  - respond: { body: .vars.d }\n".into(),
            body: json!({ "items": vec![0; 40] }),
            expect: Expect::Budget("memory"),
        },
        Case {
            name: "SlowHttp",
            limits: time,
            steps: format!("  - name: slow\n    http: {{ url: \"{slow_url}/slow\", timeout: 60s }}\n"),
            body: json!({}),
            expect: Expect::Budget("time"),
        },
        Case {
            name: "ForEachGenerator",
            limits: memory,
            steps: "  - for_each: 'range(1e9)'\n    as: i\n    do: [ { log: .vars.i } ]\n".into(),
            body: json!({}),
            expect: Expect::Failed(&["more than 100000 items exceed the limit"]),
        },
        Case {
            name: "ForEachMany",
            limits: time,
            steps: "  - for_each: '[range(50000)]'\n    as: i\n    do: [ { set: { y: '.vars.i | tostring | explode | implode' } } ]\n".into(),
            body: json!({}),
            expect: Expect::Budget("time"),
        },
    ]
}

fn trigger_file(case: &Case, sync: bool) -> String {
    let response = if sync {
        "{ mode: sync, timeout: 30s }"
    } else {
        "{ mode: async }"
    };
    format!(
        "auth: {{ none: true }}\nlimits: {}\ndelivery: {{ retry: [50ms] }}\nresponse: {response}\nsteps:\n{}",
        case.limits, case.steps
    )
}

/// The error an attempt recorded, checked against the case.
fn check_attempts(case: &Case, doc: &Value, mode: &str) {
    let name = format!("{} ({mode})", case.name);
    let attempts = doc["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: {doc}"));
    let last = attempts.last().unwrap();
    let error = last["error"].as_str().unwrap_or_default();
    match case.expect {
        Expect::Budget(which) => {
            assert_eq!(doc["status"], "failed", "{name}: {doc}");
            assert_eq!(
                attempts.len(),
                1,
                "{name}: a budget failure is not retried: {doc}"
            );
            assert_eq!(last["error_code"], "budget_exceeded", "{name}: {doc}");
            assert!(
                error.starts_with(&format!("{which} budget exceeded")),
                "{name}: {error}"
            );
            if which == "time" {
                // Stopped at its limit (1s), whatever it was doing, not left
                // to run on: the bound above it is wide, as this suite runs
                // beside other work (how close to the limit it stops is a
                // question for the timing suite, not for a correctness test).
                let at = |k: &str| {
                    let t = last[k].as_str().unwrap();
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .unwrap()
                };
                let ran = at("finished_at") - at("started_at");
                assert!(
                    ran >= time::Duration::seconds(1) && ran < time::Duration::seconds(4),
                    "{name}: ran {ran}"
                );
            }
        }
        Expect::Failed(fragments) => {
            assert!(
                ["failed", "dead"].contains(&doc["status"].as_str().unwrap_or_default()),
                "{name}: {doc}"
            );
            assert_eq!(last["error_code"], "flow_failed", "{name}: {doc}");
            assert!(
                fragments.iter().any(|f| error.contains(f)),
                "{name}: {error}"
            );
        }
    }
}

async fn others_still_answer(app: &TestApp) {
    let health = app.get("/_health", None).await;
    assert_eq!(health.status(), 200);
    let price = app
        .get(
            "/acme/ItemPrice?itemId=A-100&currency=EUR",
            Some(WEBSHOP_KEY),
        )
        .await;
    assert_eq!(price.status(), 200);
    let body: Value = price.json().await.unwrap();
    assert_eq!(body["unit_price"], json!(12.5));
}

async fn run_async(app: &TestApp, case: &Case) {
    let path = format!("/evil/{}Async", case.name);
    let res = app.post_json(&path, None, &case.body).await;
    assert_eq!(res.status(), 202, "{}", case.name);
    let id = res.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = app
        .wait_final(
            &format!("evil/{}Async", case.name),
            &id,
            "",
            Duration::from_secs(60),
        )
        .await;
    check_attempts(case, &doc, "async");
    // Operators see the same in the admin API's message detail.
    let (_, detail) = app
        .admin("GET", &format!("/messages/{id}"), GLOBAL_TOKEN, None)
        .await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.last().unwrap()["error_code"],
        doc["attempts"].as_array().unwrap().last().unwrap()["error_code"],
        "{}: {detail}",
        case.name
    );
}

async fn run_sync(app: &TestApp, case: &Case) {
    let path = format!("/evil/{}Sync", case.name);
    let res = app.post_json(&path, None, &case.body).await;
    assert_eq!(res.status(), 500, "{}", case.name);
    let header_id = res
        .headers()
        .get("x-message-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.unwrap();
    let id = body["message_id"].as_str().unwrap().to_owned();
    assert_eq!(header_id.as_deref(), Some(id.as_str()));
    let error = &body["errors"][0];
    let message = error["message"].as_str().unwrap_or_default();
    match case.expect {
        Expect::Budget(which) => {
            assert_eq!(error["code"], "budget_exceeded", "{}: {body}", case.name);
            assert_eq!(
                message,
                format!("the flow exceeded its {which} budget; see message {id}"),
                "{}",
                case.name
            );
        }
        Expect::Failed(_) => assert_eq!(error["code"], "flow_failed", "{}: {body}", case.name),
    }
    let doc = app
        .wait_final(
            &format!("evil/{}Sync", case.name),
            &id,
            "",
            Duration::from_secs(10),
        )
        .await;
    check_attempts(case, &doc, "sync");
}

fn write_corpus(flows: &Path, cases: &[Case]) {
    write_flow(flows, "evil/_tenant.yaml", "api_keys: {}\n");
    for case in cases {
        write_flow(
            flows,
            &format!("evil/{}Async.yaml", case.name),
            &trigger_file(case, false),
        );
        write_flow(
            flows,
            &format!("evil/{}Sync.yaml", case.name),
            &trigger_file(case, true),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_flows_fail_on_their_budgets_and_hurt_no_one_else() {
    let slow = Stub::start(Reply::json(200, json!({})).delay(Duration::from_secs(30))).await;
    let corpus = cases(&slow.url());
    let app = crate::admin::admin_app_with(
        |flows| write_corpus(flows, &cases(&slow.url())),
        |s| {
            s.executor_threads = 4;
            s.tenant_max_running = 8;
        },
    )
    .await;
    // Four cases at a time, each async and sync: the tenant's share of workers
    // (8), so that none waits for one.
    for batch in corpus.chunks(4) {
        let mut runs: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> = Vec::new();
        for case in batch {
            runs.push(Box::pin(run_async(&app, case)));
            runs.push(Box::pin(run_sync(&app, case)));
        }
        futures_util::future::join_all(runs).await;
        others_still_answer(&app).await;
    }
}

/// A budget failure is final (not retried), the trigger's `on_exhausted`
/// applies to its lane, and after a restart the message does not run again.
/// An ordering key that loops is refused at the door, within the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_failure_is_final_blocks_or_skips_its_lane_and_stays_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::helpers::settings_in(dir.path());
    let lane = |on_exhausted: &str| {
        format!(
            "auth: {{ none: true }}\nlimits: {{ time: 500ms }}\ndelivery: {{ ordered: true, ordering_key: .body.k, retry: [50ms], on_exhausted: {on_exhausted} }}\nresponse: {{ mode: async }}\nsteps:\n  - if: .body.spin == true\n    then: [ {{ set: {{ x: 'last(range(1e15))' }} }} ]\n  - respond: {{ body: .body.n }}\n"
        )
    };
    write_flow(&settings.flows, "evil/_tenant.yaml", "api_keys: {}\n");
    write_flow(&settings.flows, "evil/Block.yaml", &lane("block"));
    write_flow(&settings.flows, "evil/Skip.yaml", &lane("skip"));
    write_flow(
        &settings.flows,
        "evil/KeyLoop.yaml",
        "auth: { none: true }\nlimits: { time: 300ms }\ndelivery: { ordered: true, ordering_key: 'last(range(1e15))' }\nresponse: { mode: async }\nsteps:\n  - log: '\"never\"'\n",
    );
    let start = |s: flowgate::config::Settings| async move {
        let app = flowgate::startup::Application::build(s).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let handle = app.handle();
        let running = tokio::spawn(app.run_until_stopped());
        (base, handle, running)
    };
    let client = reqwest::Client::new();
    let (base, handle, running) = start(settings.clone()).await;
    let post = |base: String, path: &'static str, body: Value| {
        let client = client.clone();
        async move {
            let res = client
                .post(format!("{base}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let status = |base: String, path: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let final_status = |base: String, path: String| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let doc = status(base.clone(), path.clone()).await;
            if ["failed", "succeeded", "dead", "skipped"]
                .contains(&doc["status"].as_str().unwrap_or(""))
            {
                return doc;
            }
            assert!(tokio::time::Instant::now() < deadline, "{doc}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };

    let (code, loop_key) = post(base.clone(), "/evil/KeyLoop", json!({})).await;
    assert_eq!(code, 400, "{loop_key}");
    assert_eq!(loop_key["errors"][0]["code"], "invalid_body");
    assert!(
        loop_key["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("time budget exceeded"),
        "{loop_key}"
    );

    let mut ids = Vec::new();
    for (path, body) in [
        ("/evil/Block", json!({"k": "a", "spin": true, "n": 1})),
        ("/evil/Block", json!({"k": "a", "n": 2})),
        ("/evil/Skip", json!({"k": "a", "spin": true, "n": 3})),
        ("/evil/Skip", json!({"k": "a", "n": 4})),
    ] {
        let (code, doc) = post(base.clone(), path, body).await;
        assert_eq!(code, 202, "{doc}");
        ids.push(format!(
            "{path}/messages/{}",
            doc["message_id"].as_str().unwrap()
        ));
    }
    for spun in [&ids[0], &ids[2]] {
        let doc = final_status(base.clone(), spun.clone()).await;
        assert_eq!(doc["status"], "failed", "{doc}");
        assert_eq!(
            doc["attempts"].as_array().unwrap().len(),
            1,
            "not retried: {doc}"
        );
        assert_eq!(doc["attempts"][0]["error_code"], "budget_exceeded", "{doc}");
    }
    // Whether the Block lane is reported held by a failed message.
    let blocked = |base: String| {
        let client = client.clone();
        async move {
            let text = client
                .get(format!("{base}/_metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .any(|l| l == r#"flowgate_lanes_blocked{tenant="evil",trigger="Block"} 1"#)
        }
    };
    // skip: the lane goes on; block: it waits for an operator (once it is
    // known blocked, its next message cannot start).
    let skipped_past = final_status(base.clone(), ids[3].clone()).await;
    assert_eq!(skipped_past["status"], "succeeded", "{skipped_past}");
    assert!(
        crate::helpers::eventually(Duration::from_secs(10), || blocked(base.clone())).await,
        "the lane was never reported blocked"
    );
    assert_eq!(
        status(base.clone(), ids[1].clone()).await["status"],
        "queued"
    );

    handle.stop(true).await;
    running.await.unwrap().unwrap();
    let (base, handle, running) = start(settings).await;
    // Recovery has run before the server answers: the lane is blocked again.
    assert!(
        crate::helpers::eventually(Duration::from_secs(10), || blocked(base.clone())).await,
        "the lane was not blocked after the restart"
    );
    let after = status(base.clone(), ids[0].clone()).await;
    assert_eq!(after["status"], "failed", "{after}");
    assert_eq!(
        after["attempts"].as_array().unwrap().len(),
        1,
        "not run again: {after}"
    );
    assert_eq!(
        status(base.clone(), ids[1].clone()).await["status"],
        "queued"
    );
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// `response.timeout` decides when a sync caller stops waiting (202 and the
/// status URL); the budget decides when the execution stops. A repeated
/// Idempotency-Key of a sync message that ran out of its budget gets the same
/// answer as the first call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_callers_see_the_budget_past_their_timeout_and_on_a_repeat() {
    let spin = "steps:\n  - name: spin\n    set: { x: 'last(range(1e15))' }\n";
    let app = TestApp::spawn_with(
        |flows| {
            write_flow(flows, "evil/_tenant.yaml", "api_keys: {}\n");
            write_flow(
                flows,
                "evil/Short.yaml",
                &format!("auth: {{ none: true }}\nlimits: {{ time: 1s }}\nresponse: {{ mode: sync, timeout: 200ms }}\n{spin}"),
            );
            write_flow(
                flows,
                "evil/Keyed.yaml",
                &format!("auth: {{ none: true }}\nlimits: {{ time: 1s }}\nresponse: {{ mode: sync, timeout: 10s }}\n{spin}"),
            );
        },
        |_| {},
    )
    .await;
    let started = std::time::Instant::now();
    let res = app.post_json("/evil/Short", None, &json!({})).await;
    assert_eq!(res.status(), 202);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let id = location.rsplit('/').next().unwrap().to_owned();
    let doc = app
        .wait_final("evil/Short", &id, "", Duration::from_secs(10))
        .await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["attempts"][0]["error_code"], "budget_exceeded");
    assert_eq!(
        doc["attempts"][0]["error"],
        "time budget exceeded (1s) at step `spin`"
    );

    let keyed = || {
        app.client
            .post(app.url("/evil/Keyed"))
            .header("idempotency-key", "k1")
            .json(&json!({}))
    };
    let first = keyed().send().await.unwrap();
    assert_eq!(first.status(), 500);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["errors"][0]["code"], "budget_exceeded", "{first}");
    let again = keyed().send().await.unwrap();
    assert_eq!(again.status(), 500);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
}
