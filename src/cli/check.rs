//! `flowgate check` and `flowgate test`: every problem of a flows directory, and
//! the flow tests (`<tenant>/<Trigger>.test.yaml`) run against it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::flowtest;
use crate::config::Settings;
use crate::flow::check_dir_with;

/// `subscriptions_allow_http` of the settings (`flowgate.toml`, `FLOWGATE_*`):
/// files are checked as `serve` would load them.
fn allow_http() -> Result<bool> {
    let settings =
        Settings::load(None).map_err(|e| anyhow::anyhow!("settings: {}", e.join("; ")))?;
    Ok(settings.subscriptions_allow_http)
}

pub fn check(dir: &Path) -> Result<ExitCode> {
    let report = check_dir_with(dir, allow_http()?);
    for d in &report.diagnostics {
        println!("{d}");
    }
    if report.diagnostics.is_empty() {
        println!(
            "ok: {} trigger(s) in {}",
            report.catalog.trigger_count(),
            dir.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} problem(s)", report.diagnostics.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Runs the flow tests of `dir`; with `rollback`, each case's statements run in
/// transactions rolled back at its end.
pub fn test(dir: &Path, rollback: bool) -> Result<ExitCode> {
    let report = check_dir_with(dir, allow_http()?);
    if !report.diagnostics.is_empty() {
        for d in &report.diagnostics {
            eprintln!("{d}");
        }
        eprintln!(
            "flowgate: no tests run: {} problem(s) in the flow files",
            report.diagnostics.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let files = &report.tests;
    if files.is_empty() {
        println!("no flow tests in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = super::current_thread()?;
    let executor = super::local_executor()?;
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for file in files {
        println!("{}", file.path.display());
        let cases = std::fs::read_to_string(&file.path)
            .map_err(Into::into)
            .and_then(|text| flowtest::parse(&text));
        let (trigger, cases) = match (flowtest::trigger(&report.catalog, file), cases) {
            (Ok(t), Ok(c)) => (t, c),
            (Err(why), _) | (_, Err(why)) => {
                println!("  BROKEN {why}");
                broken += 1;
                continue;
            }
        };
        for case in &cases {
            match runtime.block_on(flowtest::answer(&executor, trigger, case, rollback)) {
                Ok(got) => {
                    let diffs = flowtest::differences(&case.expect, &got);
                    if diffs.is_empty() {
                        println!("  ok     {}", case.name);
                        passed += 1;
                    } else {
                        println!("  FAIL   {}", case.name);
                        for d in diffs {
                            println!("         {d}");
                        }
                        failed += 1;
                    }
                }
                Err(why) => {
                    println!("  FAIL   {}", case.name);
                    println!("         {why}");
                    failed += 1;
                }
            }
        }
    }
    let mut summary = format!("{passed} passed, {failed} failed");
    if broken > 0 {
        summary.push_str(&format!(", {broken} test file(s) broken"));
    }
    println!("{summary}");
    Ok(if failed == 0 && broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
