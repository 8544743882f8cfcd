//! `flowgate check`: every problem in every file at once, as `file:line:column:
//! message`, against a folder of broken fixtures (tests/fixtures/broken). Its
//! `mistakes/` tenant is a corpus of one mistake a file, each file's expected
//! diagnostics beside it in `<Name>.expected`.

use std::path::Path;
use std::process::Command;

pub(crate) fn check(dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .arg("check")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn broken_fixtures_report_every_problem_with_its_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let (ok, stdout, stderr) = check(&dir);
    assert!(!ok, "check must fail");
    let d = dir.display().to_string();
    let expected: Vec<String> = [
        "{D}/bad name:1:1: tenant folder: name `bad name` may only contain letters, digits, `_` and `-`, and must start with a letter or digit",
        "{D}/io/Basic.yaml:1:7: `auth` has api_keys and basic; choose one",
        "{D}/io/Basic.yaml:1:37: unknown api key label `x` (labels in io/_tenant.yaml: none)",
        "{D}/io/Once.yaml:3:69: `once: true` needs the step to have a `name:`: its effect is recorded under the message id and that name, which must not change when the file is edited",
        "{D}/io/Once.yaml:7:69: another `once: true` step is named `ship`: each records its effect under its own name",
        "{D}/io/Signed.yaml:2:19: unknown preset `gitlab` (duro, github or stripe)",
        "{D}/io/Signed.yaml:2:35: secret: environment variable `FLOWGATE_CHECK_SURELY_UNSET` is not set (use `${FLOWGATE_CHECK_SURELY_UNSET:-default}` for a default)",
        "{D}/io/Signed.yaml:2:80: `tolerance` needs `timestamp_header` (or the stripe preset)",
        "{D}/io/Signed.yaml:3:15: `allow_ips`: `10.0.0.0/33`: the prefix length must be 0 to 32",
        "{D}/io/Signed.yaml:3:28: `allow_ips`: `not-an-ip` is not an IP address or CIDR block like 10.0.0.0/8",
        "{D}/io/Steps.yaml:3:18: `url` is relative: give an absolute http(s):// URL or a `connection:` with a base_url",
        "{D}/io/Steps.yaml:4:44: `url`: the part in {{ }} is a jq expression: expected term, found end of expression",
        "{D}/io/Steps.yaml:4:58: unknown method `FETCH`: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
        "{D}/io/Steps.yaml:4:77: unknown connection `nosuch` (http connections in io/_tenant.yaml: api)",
        "{D}/io/Steps.yaml:5:36: connection `db` is a postgres connection; an `http` step needs an http one (api)",
        "{D}/io/Steps.yaml:5:56: `accept_status`: 700 is not an HTTP status",
        "{D}/io/Steps.yaml:6:24: connection `api` is an http connection; a `sql` step needs a postgres one (sized, db)",
        "{D}/io/Steps.yaml:7:35: the query uses $2 as its highest parameter but `params` has 1 expression(s); bind every value with `$n` and one `params` entry each",
        "{D}/io/Steps.yaml:8:53: `into`: `not a name` is not a variable name",
        "{D}/io/Steps.yaml:10:12: `retry` on a step applies to `http` and `sql` steps only",
        "{D}/io/Steps.yaml:11:48: `timeout` must be greater than zero",
        "{D}/io/Steps.yaml:12:13: retry: `later` is not a duration like 500ms, 5s, 2m or 1h (expected number at 0)",
        "{D}/io/_tenant.yaml:2:20: connection `erp`: environment variable `FLOWGATE_CHECK_SURELY_UNSET` is not set (use `${FLOWGATE_CHECK_SURELY_UNSET:-default}` for a default)",
        "{D}/io/_tenant.yaml:3:28: connection `crm`: `base_url` must be an absolute http:// or https:// URL",
        "{D}/io/_tenant.yaml:3:62: timeout: `soon` is not a duration like 500ms, 5s, 2m or 1h (expected number at 0)",
        "{D}/io/_tenant.yaml:4:9: connection `both` has both `postgres` and `http`; choose one",
        "{D}/io/_tenant.yaml:5:52: `pool_size` must be between 1 and 1000, not 0",
        "{D}/io/_tenant.yaml:6:135: `pool_size` belongs to `postgres` connections",
        "{D}/io/_tenant.yaml:8:22: connection `vault`: sslmode `verify-full` needs `sslrootcert`: a PEM file of the CA certificates to trust",
        "{D}/io/_tenant.yaml:10:12: basic user `partner`: give an argon2id PHC hash of the password (`flowgate key new --label partner --key PASSWORD` prints one)",
        "{D}/shop/AsyncTimeout.yaml:2:35: `timeout` applies to `mode: sync` only",
        "{D}/shop/Delivery.yaml:3:17: `ordering_key` needs `ordered: true`",
        "{D}/shop/Delivery.yaml:4:16: `concurrency` must be between 1 and 1024, not 0",
        "{D}/shop/Delivery.yaml:5:15: retry: `soon` is not a duration like 500ms, 5s, 2m or 1h (expected number at 0)",
        "{D}/shop/Delivery.yaml:6:17: `on_exhausted` is `block` or `skip`, not `maybe`",
        "{D}/shop/Delivery.yaml:8:9: `mode` is `sync` or `async`, not `later`",
        "{D}/shop/Delivery.yaml:9:17: limits.time must be greater than 0",
        "{D}/shop/Delivery.yaml:9:29: limits.memory: `12 parsecs` is not a size like 256MiB, 64MB or 512KiB (unknown unit `parsecs`)",
        "{D}/shop/NoAuth.yaml:1:1: missing `auth`: list `api_keys` labels from _tenant.yaml, or set `none: true` to leave the trigger open",
        "{D}/shop/Params.yaml:4:14: parameter `a`: unknown type `text` (string, integer, number or boolean)",
        "{D}/shop/Params.yaml:5:31: parameter `b`: default \"GBP\" must be one of EUR, SEK",
        "{D}/shop/Params.yaml:6:32: parameter `c`: default 0 must be at least 1",
        "{D}/shop/Params.yaml:7:27: parameter `d`: `min` and `max` apply to integer and number parameters",
        "{D}/shop/Params.yaml:8:47: parameter `e` is required, so its `default` would never be used",
        "{D}/shop/Steps.yaml:3:21: `set.x` is a jq expression: expected term, found `|`",
        "{D}/shop/Steps.yaml:8:11: `set.y` is a jq expression: undefined filter `nosuch`",
        "{D}/shop/Steps.yaml:9:5: a step has exactly one of set, if, for_each, respond, fail, log, http, sql, transaction, emit; this one has set and log",
        "{D}/shop/Steps.yaml:11:5: a step needs one of: set, if, for_each, respond, fail, log, http, sql, transaction, emit",
        "{D}/shop/Steps.yaml:13:11: `then` belongs to `if` steps, not to `set`",
        "{D}/shop/Steps.yaml:14:5: a `for_each` step needs `as: name` for the current item",
        "{D}/shop/Steps.yaml:17:21: `status` must be between 400 and 599, not 200",
        "{D}/shop/Steps.yaml:19:5: unknown field `colour`, expected one of name, set, if, then, else, for_each, as, do, collect, into, respond, fail, log, http, sql, transaction, emit, retry",
        "{D}/shop/Syntax.yaml:2:5: illegal placement of ':' indicator",
        "{D}/shop/TopLevel.yaml:1:16: unknown method `PATCH`: use GET or POST",
        "{D}/shop/TopLevel.yaml:2:29: unknown api key label `partner` (labels in shop/_tenant.yaml: webshop, legacy)",
        "{D}/shop/TopLevel.yaml:3:1: unknown field `timeout`, expected one of description, methods, enabled, auth, params, body, response_schema, delivery, response, limits, trace, steps",
        "{D}/shop/_Hidden.yaml:1:1: trigger file name: name `_Hidden` starts with `_`, which is reserved for flowgate",
        "{D}/shop/_tenant.yaml:3:11: api key `legacy`: not a PHC hash string (password hash string missing field); make one with `flowgate key new --label legacy`",
    ]
    .iter()
    .map(|l| l.replace("{D}", &d))
    .collect();
    let mistakes = format!("{d}/mistakes/");
    let got: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with(&mistakes))
        .collect();
    assert_eq!(got, expected, "stdout:\n{stdout}");
    let all = stdout.lines().count();
    assert!(all > expected.len(), "the corpus is checked too");
    assert_eq!(stderr.trim(), format!("{all} problem(s)"));
}

/// Each file of the corpus of mistakes gets exactly the diagnostics written in
/// its `.expected` file: which key, what it expects, and how to write it.
#[test]
fn each_mistake_of_the_corpus_is_reported_as_written_beside_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let (_, stdout, _) = check(&dir);
    let prefix = format!("{}/mistakes/", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(dir.join("mistakes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let expected = std::fs::read_to_string(file.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{name}: its .expected file: {e}"));
        let got: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter(|l| l.starts_with(&format!("{name}:")))
            .collect();
        assert!(!got.is_empty(), "{name}: no diagnostic");
        assert_eq!(got, expected.lines().collect::<Vec<_>>(), "{name}");
    }
}

#[test]
fn the_shipped_flows_check_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let (ok, stdout, _) = check(&dir);
    assert!(ok, "{stdout}");
    assert!(stdout.starts_with("ok: 8 trigger(s)"), "{stdout}");
}

#[test]
fn a_missing_directory_is_named() {
    let (ok, stdout, _) = check(Path::new("/nonexistent/flows"));
    assert!(!ok);
    assert_eq!(
        stdout.trim(),
        "/nonexistent/flows:1:1: flows directory not found"
    );
}

/// Sources jaq's parser would recurse too deep on are load errors with their
/// position; flows that merely could run without end are accepted (budgets are
/// their guard at run time).
#[test]
fn deep_sources_are_load_errors_and_unbounded_flows_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path();
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let long = vec!["1"; 5000].join(" + ");
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(flows.join("t")).unwrap();
        std::fs::write(flows.join("t").join(name), text).unwrap();
    };
    write("_tenant.yaml", "api_keys: {}\n");
    write(
        "Deep.yaml",
        &format!("auth: {{ none: true }}\nsteps:\n  - set: {{ x: '{deep}' }}\n  - log: '{long}'\n"),
    );
    write(
        "Unbounded.yaml",
        "auth: { none: true }\nsteps:\n  - set: { a: 'def f: 1 + f; f', b: '[range(1e9)] | length' }\n  - set: { c: 'last(range(1e15))', d: '.body.s | fromjson' }\n",
    );
    let (ok, stdout, stderr) = check(flows);
    assert!(!ok);
    let lines: Vec<&str> = stdout.lines().collect();
    let d = flows.display();
    assert_eq!(
        lines,
        vec![
            format!(
                "{d}/t/Deep.yaml:3:272: `set.x` is a jq expression: brackets are nested more than 256 deep; split the expression into steps"
            ),
            format!(
                "{d}/t/Deep.yaml:4:8203: `log` is a jq expression: the expression is longer than 4096 tokens; split it into steps, or put data under `set:`"
            ),
        ],
        "{stderr}"
    );
}

/// A value of the wrong type is replaced by a placeholder so that the rest of
/// the file is checked; the file itself is still refused, placeholder and all.
#[test]
fn a_file_read_on_past_a_wrong_type_is_never_compiled() {
    let tenant = flowgate::flow::Tenant::empty(flowgate::domain::TenantName::parse("t").unwrap());
    let text =
        "auth: { none: true }\nsteps:\n  - respond: { status: 201, body: {reserved: true} }\n";
    let diagnostics = flowgate::flow::loader::compile_trigger_source(
        &tenant,
        flowgate::domain::TriggerName::parse("T").unwrap(),
        Path::new("t/T.yaml"),
        text,
    )
    .unwrap_err();
    let messages: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "t/T.yaml:3:35: `body` is a jq expression, not a mapping; write an object in jq, in quotes: '{reserved: true}'"
        ]
    );
}
