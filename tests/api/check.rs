//! `flowgate check`: every problem in every file at once, as `file:line:column:
//! message`, against a folder of broken fixtures (tests/fixtures/broken).

use std::path::Path;
use std::process::Command;

fn check(dir: &Path) -> (bool, String, String) {
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
        "{D}/shop/AsyncTimeout.yaml:2:35: `timeout` applies to `mode: sync` only",
        "{D}/shop/Delivery.yaml:3:17: `ordering_key` needs `ordered: true`",
        "{D}/shop/Delivery.yaml:4:16: `concurrency` must be between 1 and 1024, not 0",
        "{D}/shop/Delivery.yaml:5:15: retry: `soon` is not a duration like 500ms, 5s, 2m or 1h (expected number at 0)",
        "{D}/shop/Delivery.yaml:6:17: `on_exhausted` is `block` or `skip`, not `maybe`",
        "{D}/shop/Delivery.yaml:8:9: `mode` is `sync` or `async`, not `later`",
        "{D}/shop/NoAuth.yaml:1:1: missing `auth`: list `api_keys` labels from _tenant.yaml, or set `none: true` to leave the trigger open",
        "{D}/shop/Params.yaml:4:14: parameter `a`: unknown type `text` (string, integer, number or boolean)",
        "{D}/shop/Params.yaml:5:31: parameter `b`: default \"GBP\" must be one of EUR, SEK",
        "{D}/shop/Params.yaml:6:32: parameter `c`: default 0 must be at least 1",
        "{D}/shop/Params.yaml:7:27: parameter `d`: `min` and `max` apply to integer and number parameters",
        "{D}/shop/Params.yaml:8:47: parameter `e` is required, so its `default` would never be used",
        "{D}/shop/Steps.yaml:3:21: set x: expected term, found `|`",
        "{D}/shop/Steps.yaml:8:11: set y: undefined filter `nosuch`",
        "{D}/shop/Steps.yaml:9:5: a step has exactly one of set, if, for_each, respond, fail, log; this one has set and log",
        "{D}/shop/Steps.yaml:11:5: a step needs one of: set, if, for_each, respond, fail, log",
        "{D}/shop/Steps.yaml:13:11: `then` belongs to `if` steps, not to `set`",
        "{D}/shop/Steps.yaml:14:5: a `for_each` step needs `as: name` for the current item",
        "{D}/shop/Steps.yaml:16:11: the `http` step is not yet supported in this version",
        "{D}/shop/Steps.yaml:17:21: `status` must be between 400 and 599, not 200",
        "{D}/shop/Steps.yaml:19:5: unknown field `colour`, expected one of name, set, if, then, else, for_each, as, do, collect, into, respond, fail, log, http, sql, retry",
        "{D}/shop/Syntax.yaml:2:5: illegal placement of ':' indicator",
        "{D}/shop/TopLevel.yaml:1:16: unknown method `PATCH`: use GET or POST",
        "{D}/shop/TopLevel.yaml:2:29: unknown api key label `partner` (labels in shop/_tenant.yaml: webshop, legacy)",
        "{D}/shop/TopLevel.yaml:3:1: unknown field `timeout`, expected one of description, methods, enabled, auth, params, delivery, response, trace, steps",
        "{D}/shop/_Hidden.yaml:1:1: trigger file name: name `_Hidden` starts with `_`, which is reserved for flowgate",
        "{D}/shop/_tenant.yaml:3:11: api key `legacy`: not a PHC hash string (password hash string missing field); make one with `flowgate key new --label legacy`",
    ]
    .iter()
    .map(|l| l.replace("{D}", &d))
    .collect();
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got, expected, "stdout:\n{stdout}");
    assert_eq!(stderr.trim(), format!("{} problem(s)", expected.len()));
}

#[test]
fn the_shipped_flows_check_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let (ok, stdout, _) = check(&dir);
    assert!(ok, "{stdout}");
    assert!(stdout.starts_with("ok: 4 trigger(s)"), "{stdout}");
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
