//! Parts of tests skipped because something they need is not here (a database,
//! a browser), counted, and said in one line after the harness's summary: a
//! skipped part passes, so without that line nothing would tell that it did not
//! run. Under `CI=true` nothing is skipped: the callers fail instead.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, Once};

/// (what was skipped, why) -> how many times.
static SKIPPED: Mutex<BTreeMap<(&'static str, String), usize>> = Mutex::new(BTreeMap::new());
static AT_EXIT: Once = Once::new();

/// Whether the run is CI's, where whatever is missing is a failure.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Records that a part of `what` (e.g. "PostgreSQL") did not run, and `why`.
pub fn skipped(what: &'static str, why: impl Into<String>) {
    let why = why.into();
    eprintln!("skipped: {what}: {why}");
    if let Ok(mut map) = SKIPPED.lock() {
        *map.entry((what, why)).or_default() += 1;
    }
    AT_EXIT.call_once(|| {
        // SAFETY: `say` is an `extern "C" fn()` that does not unwind.
        unsafe { libc::atexit(say) };
    });
}

/// The line said at exit: each kind of skip with its count and reason.
pub fn summary(map: &BTreeMap<(&'static str, String), usize>) -> Option<String> {
    if map.is_empty() {
        return None;
    }
    let parts: Vec<String> = map
        .iter()
        .map(|((what, why), n)| {
            let noun = if *n == 1 { "part" } else { "parts" };
            format!("{n} {what} {noun} skipped: {why}")
        })
        .collect();
    Some(format!("flowgate: {}", parts.join("; ")))
}

extern "C" fn say() {
    let line = match SKIPPED.lock() {
        Ok(map) => summary(&map),
        Err(_) => None,
    };
    if let Some(line) = line {
        let _ = std::io::stdout().flush();
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

#[test]
fn the_summary_counts_each_reason() {
    let mut map = BTreeMap::new();
    assert_eq!(summary(&map), None);
    map.insert(("PostgreSQL", "no database".to_owned()), 33);
    map.insert(("browser", "no chromium".to_owned()), 1);
    assert_eq!(
        summary(&map).as_deref(),
        Some(
            "flowgate: 33 PostgreSQL parts skipped: no database; 1 browser part skipped: no chromium"
        )
    );
}
