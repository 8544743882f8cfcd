//! The `flowgate` command: keys and admin tokens, local runs, and `serve` refusing
//! broken flows or a taken port.

use std::process::Command;

use serde_json::Value;

use crate::helpers::{repo_flows, write_flow};

fn flowgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
}

/// What a command that must succeed printed; its errors when it did not.
fn succeeded(out: std::process::Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn key_new_prints_the_key_once_and_its_argon2id_hash() {
    let out = flowgate()
        .args(["key", "new", "--label", "partner", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["label"], "partner");
    let (key, hash) = (v["key"].as_str().unwrap(), v["hash"].as_str().unwrap());
    assert!(hash.starts_with("$argon2id$"));
    assert!(flowgate::auth::keys::verify(key, hash));

    let out = flowgate()
        .args(["key", "new", "--label", "erp", "--key", "pasted-key"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("key: pasted-key"), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("erp: \"$argon2id$"))
        .unwrap();
    let hash = line.trim().trim_start_matches("erp: ").trim_matches('"');
    assert!(flowgate::auth::keys::verify("pasted-key", hash));

    let out = flowgate()
        .args(["key", "new", "--label", "bad label"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn run_executes_a_flow_locally_and_prints_result_and_trace() {
    let flows = repo_flows();
    let out = flowgate()
        .args([
            "run",
            "acme/ItemPrice",
            "--param",
            "itemId=C-300",
            "--param",
            "currency=USD",
            "--flows",
        ])
        .arg(&flows)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&succeeded(out)).unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["response"]["body"]["unit_price"], 212.0);
    let steps: Vec<&str> = v["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["set", "set", "if", "respond"]);

    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("order.json");
    std::fs::write(
        &body,
        r#"{"customer": "c1", "order": "o1", "lines": [{"qty": 2, "price": 3.5}]}"#,
    )
    .unwrap();
    let out = flowgate()
        .args(["run", "acme/WorkOrder", "--body"])
        .arg(&body)
        .arg("--flows")
        .arg(&flows)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["response"]["body"]["total"], 7.0);
    // A local run is a first attempt (`.meta`).
    let log = v["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "log")
        .unwrap();
    assert_eq!(
        log["detail"], "work order o1 for c1: 7.0 (attempt 1)",
        "{log}"
    );

    // A failing flow exits non-zero and names the error.
    let out = flowgate()
        .args(["run", "acme/ItemPrice", "--param", "itemId=none", "--flows"])
        .arg(&flows)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"], "unknown item none");
    // A bad parameter is reported like the HTTP 400.
    let out = flowgate()
        .args(["run", "acme/ItemPrice", "--flows"])
        .arg(&flows)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parameter `itemId` is required"));
}

#[test]
fn serve_refuses_to_start_on_broken_flows() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/Bad.yaml",
        "auth: { none: true }\nstepz: []\n",
    );
    let out = flowgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(format!("sqlite://{}", dir.path().join("x.db").display()))
        .arg("--flows")
        .arg(dir.path())
        .env("FLOWGATE_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Bad.yaml:2:1: unknown field `stepz`"), "{err}");
    assert!(err.contains("not starting"), "{err}");
}

#[test]
fn test_runs_the_repositorys_flow_tests() {
    let out = flowgate().arg("test").arg(repo_flows()).output().unwrap();
    let text = String::from_utf8_lossy(&succeeded(out)).into_owned();
    assert!(text.contains("  ok     an unknown item is a 404"), "{text}");
    assert!(text.ends_with(" passed, 0 failed\n"), "{text}");
}

#[test]
fn test_reports_each_case_and_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/Echo.yaml",
        "auth: { none: true }
params:
  n: { type: integer, required: true }
steps:
  - name: too big
    if: .params.n > 10
    then:
      - fail: { status: 422, message: '\"too big\"' }
  - respond:
      status: 201
      body: '{n: .params.n, doubled: (.params.n * 2), note: .body.note}'
",
    );
    write_flow(
        dir.path(),
        "t/Echo.test.yaml",
        "- name: doubles
  method: post
  params: { n: 2 }
  body: { note: hi }
  expect: { status: 201, body: { doubled: 4, note: hi } }
- name: wrong on purpose
  params: { n: 3 }
  expect: { status: 200, body: { doubled: 7, missing: 1 } }
- name: refused
  params: { n: 11 }
  expect: { status: 422, error: too big }
- name: a parameter missing
  expect: { status: 400, error: nope }
",
    );
    write_flow(
        dir.path(),
        "t/Gone.test.yaml",
        "- name: x\n  expect: { status: 200 }\n",
    );
    write_flow(dir.path(), "t/Echo.test.yml", "- name: x\n  expect: {}\n");
    let out = flowgate().arg("test").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let d = dir.path().display();
    let missing = "parameter `n` is required";
    assert_eq!(
        text,
        format!(
            "{d}/t/Echo.test.yaml
  ok     doubles
  FAIL   wrong on purpose
         status: expected 200, got 201
         body.doubled: expected 7, got 6
         body.missing: expected 1, missing
  ok     refused
  FAIL   a parameter missing
         error: expected \"nope\", got \"{missing}\"
{d}/t/Echo.test.yml
  BROKEN case `x`: `expect` names nothing to check (status, body, error, vars, emitted)
{d}/t/Gone.test.yaml
  BROKEN no trigger t/Gone for this test file
2 passed, 2 failed, 2 test file(s) broken
"
        )
    );
}

#[tokio::test]
async fn migrate_creates_the_postgres_tables_and_is_repeatable() {
    let Some(pg) = crate::pg::schema("cli_migrate").await else {
        return;
    };
    for _ in 0..2 {
        assert!(migrate_ok(&pg.url).contains("up to date"));
    }
    let rows = crate::pg::query(&pg.url, "SELECT count(*) FROM schema_migrations").await;
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    assert_eq!(
        rows[0].get::<_, i64>(0),
        files as i64,
        "one row per migration"
    );
}

/// Runs `flowgate migrate`, which must succeed; returns what it printed.
fn migrate_ok(store: &str) -> String {
    let out = flowgate()
        .args(["migrate", "--store", store])
        .output()
        .unwrap();
    String::from_utf8(succeeded(out)).unwrap()
}

/// Runs `flowgate migrate` on a store after a newer flowgate left migration 999
/// there; it must refuse, naming that migration, and apply nothing.
fn refuses_a_newer_database(store: &str) {
    let out = flowgate()
        .args(["migrate", "--store", store])
        .output()
        .unwrap();
    assert!(!out.status.success(), "migrated a newer database");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("migrated by a newer flowgate: migration 999 (from_the_future)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_flowgate_is_refused() {
    // The embedded store: `migrate`, and `serve`, which migrates as it starts.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let sqlite = format!("sqlite://{}", path.display());
    migrate_ok(&sqlite);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations VALUES (999, 'from_the_future', 0)",
            [],
        )
        .unwrap();
    refuses_a_newer_database(&sqlite);
    let mut serve = flowgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &sqlite])
        .arg("--flows")
        .arg(repo_flows())
        .env("FLOWGATE_LOG", "error")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while serve.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            panic!("serve started on a database a newer flowgate migrated");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = serve.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("migration 999 (from_the_future)"), "{err}");

    let Some(pg) = crate::pg::schema("cli_newer").await else {
        return;
    };
    migrate_ok(&pg.url);
    crate::pg::query(
        &pg.url,
        "INSERT INTO schema_migrations VALUES (999, 'from_the_future', 0)",
    )
    .await;
    refuses_a_newer_database(&pg.url);
}

#[test]
fn serve_names_a_store_it_cannot_reach_without_its_password() {
    let out = flowgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--flows"])
        .arg(repo_flows())
        .args(["--store", "postgres://flowgate:s3cret@127.0.0.1:1/flowgate"])
        .env("FLOWGATE_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open the store postgres://flowgate:***@127.0.0.1:1/flowgate"),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!err.contains("creating a new object"), "{err}");
}

/// Triggers failing each way a flow can: a `fail` step, a step's error, a budget.
fn failing(flows: &std::path::Path) {
    write_flow(flows, "f/_tenant.yaml", "api_keys: {}\n");
    let sync = "auth: { none: true }\nresponse: { mode: sync, timeout: 20s }\n";
    write_flow(
        flows,
        "f/Refuses.yaml",
        &format!(
            "{sync}steps:\n  - name: check\n    fail: {{ status: 422, message: '\"no \\(.body.n)\"' }}\n"
        ),
    );
    write_flow(
        flows,
        "f/Breaks.yaml",
        &format!("{sync}steps:\n  - name: compute\n    set: {{ x: '.body.n | error' }}\n"),
    );
    write_flow(
        flows,
        "f/Spins.yaml",
        &format!(
            "{sync}limits: {{ time: 300ms }}\nsteps:\n  - name: spin\n    set: {{ x: 'last(range(1e15))' }}\n"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flow_is_answered_alike_by_the_server_and_by_flowgate_test() {
    let app = crate::helpers::TestApp::spawn_with(failing, |_| {}).await;
    let report = flowgate::flow::loader::check_dir(&app.flows_dir());
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    let executor = app.queue.dispatcher().executor();
    for (name, code) in [
        ("Refuses", "rejected"),
        ("Breaks", "flow_failed"),
        ("Spins", "budget_exceeded"),
    ] {
        let res = app
            .post_json(&format!("/f/{name}"), None, &serde_json::json!({"n": 7}))
            .await;
        let status = res.status().as_u16();
        let served: Value = res.json().await.unwrap();
        let trigger = report.catalog.trigger("f", name).unwrap();
        let case: Vec<flowgate::cli::flowtest::Case> = flowgate::cli::flowtest::parse(
            "- name: c\n  method: POST\n  body: { n: 7 }\n  expect: { status: 200 }\n",
        )
        .unwrap();
        let tested = flowgate::cli::flowtest::answer(executor, trigger, &case[0], false)
            .await
            .unwrap();
        // The same but for the message's id.
        let without_id = |body: &Value| {
            let id = body["message_id"].as_str().unwrap_or_default().to_owned();
            assert!(!id.is_empty(), "{name}: {body}");
            serde_json::from_str::<Value>(&body.to_string().replace(&id, "ID")).unwrap()
        };
        assert_eq!(served["errors"][0]["code"], code, "{name}: {served}");
        assert_eq!(
            (tested.status, without_id(&tested.body)),
            (status, without_id(&served)),
            "{name}"
        );
    }
}

#[test]
fn run_reads_the_body_from_standard_input() {
    use std::io::Write;
    let mut child = flowgate()
        .args(["run", "acme/WorkOrder", "--body", "-", "--flows"])
        .arg(repo_flows())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"customer": "c2", "order": "o2", "lines": [{"qty": 3, "price": 2.0}]}"#)
        .unwrap();
    let v: Value = serde_json::from_slice(&succeeded(child.wait_with_output().unwrap())).unwrap();
    assert_eq!(v["response"]["body"]["total"], 6.0, "{v}");
    assert_eq!(v["response"]["body"]["customer"], "c2", "{v}");
}

#[test]
fn run_help_names_each_default_once() {
    let help = String::from_utf8(succeeded(
        flowgate().args(["run", "--help"]).output().unwrap(),
    ))
    .unwrap();
    let line = help
        .lines()
        .skip_while(|l| !l.contains("--content-type"))
        .take_while(|l| !l.trim_start().starts_with("--method"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(line.matches("application/json").count(), 1, "{line}");
    assert!(help.contains("`-` reads it from standard input"), "{help}");
}

#[test]
fn token_new_prints_an_admin_token_entry_for_flowgate_toml() {
    let out = flowgate()
        .args([
            "token",
            "new",
            "--label",
            "support",
            "--tenants",
            "acme,beta",
            "--role",
            "read",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(succeeded(out)).unwrap();
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(text.contains("add to flowgate.toml:"), "{text}");
    assert!(!text.contains("_tenant.yaml"), "{text}");
    let entry = &text[text.find("[[admin_tokens]]").unwrap()..];
    // Pasted into a settings file, it is a valid admin token that opens for its tenants.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flowgate.toml");
    std::fs::write(&file, entry).unwrap();
    let settings = flowgate::config::Settings::load(Some(file.as_path())).unwrap();
    settings.validate().unwrap();
    let t = &settings.admin_tokens[0];
    assert_eq!(t.label, "support");
    assert_eq!(t.tenants, Some(vec!["acme".to_owned(), "beta".to_owned()]));
    assert_eq!(t.role, flowgate::config::AdminRole::Read);
    assert!(flowgate::auth::keys::verify(token, &t.hash));

    // Without --tenants it sees every tenant; --json for scripts.
    let out = flowgate()
        .args([
            "token", "new", "--label", "ops", "--json", "--token", "given",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&succeeded(out)).unwrap();
    assert_eq!(
        (&v["label"], &v["tenants"], &v["role"]),
        (&Value::from("ops"), &Value::Null, &Value::from("operate")),
        "operate unless told"
    );
    assert!(flowgate::auth::keys::verify(
        "given",
        v["hash"].as_str().unwrap()
    ));

    let out = flowgate()
        .args(["token", "new", "--label", "x", "--tenants", "acme,_bad"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenants: `_bad`"));

    // `key new` is for callers' keys and says where admin tokens come from.
    let out = flowgate()
        .args(["key", "new", "--label", "ops"])
        .output()
        .unwrap();
    let text = String::from_utf8(succeeded(out)).unwrap();
    assert!(text.contains("_tenant.yaml under api_keys:"), "{text}");
    assert!(
        text.contains("an admin token is `flowgate token new`"),
        "{text}"
    );
}

#[test]
fn a_taken_port_is_said_once_and_logs_to_a_file_have_no_colours() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = flowgate()
        .args(["serve", "--listen", &addr, "--store"])
        .arg(format!("sqlite://{}", dir.path().join("x.db").display()))
        .arg("--flows")
        .arg(repo_flows())
        .env("FLOWGATE_LOG", "info")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.starts_with(&format!("error: cannot listen on {addr}: ")),
        "{line}"
    );
    assert_eq!(line.matches("Address already in use").count(), 1, "{line}");
    // stderr is a pipe here: the log lines before it are plain text.
    assert!(err.contains("flows loaded"), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
    drop(taken);
}

#[test]
fn messages_names_why_the_server_cannot_be_reached_once() {
    let out = flowgate()
        .args([
            "messages",
            "lanes",
            "--url",
            "http://127.0.0.1:1",
            "--token",
            "t",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("flowgate messages: cannot reach flowgate at http://127.0.0.1:1: "),
        "{err}"
    );
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
}

#[test]
fn flow_tests_with_mocks_pass_with_the_database_and_http_target_down() {
    // Nothing listens there: a statement or call that ran would fail.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = flowgate()
        .arg("test")
        .arg(repo_flows())
        .env(
            "ACME_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/none"),
        )
        .env("DURO_API_URL", format!("http://127.0.0.1:{port}/api"))
        .output()
        .unwrap();
    let text = String::from_utf8(succeeded(out)).unwrap();
    assert!(text.contains("StockReservation.test.yaml"), "{text}");
    assert!(
        text.contains("ok     enough stock is reserved and taken off"),
        "{text}"
    );

    // A mock naming no step of the flow is an error of the case.
    let dir = tempfile::tempdir().unwrap();
    crate::helpers::copy_dir(&repo_flows(), dir.path());
    write_flow(
        dir.path(),
        "acme/StockReservation.test.yaml",
        "- name: misspelt\n  body: { item: C-300, qty: 1 }\n  mock: { stok: { result: { qty: 1 } } }\n  expect: { status: 201 }\n",
    );
    let out = flowgate().arg("test").arg(dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("`mock` names `stok`, which is no http or sql step of the flow (named ones: stock, take, record)"),
        "{text}"
    );
}

#[test]
fn run_prints_the_status_a_caller_would_get_for_a_fail() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("reservation.json");
    std::fs::write(&body, r#"{"item": "C-300", "qty": 0, "customer": "K-1"}"#).unwrap();
    let out = flowgate()
        .args(["run", "acme/StockReservation", "--body"])
        .arg(&body)
        .arg("--flows")
        .arg(repo_flows())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "rejected", "{v}");
    assert_eq!(v["response"]["status"], 422, "{v}");
    assert_eq!(
        v["response"]["body"]["errors"][0]["message"],
        "qty must be at least 1"
    );
}
