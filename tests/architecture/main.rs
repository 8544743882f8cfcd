//! The architecture, checked rather than hoped for (docs/architecture.md).
//!
//! Reads every file under `src/`, collects the paths it names inside the crate
//! (`use` trees and inline `crate::`, `super::`, `self::` and child-module paths,
//! followed through `pub use` re-exports) and builds the graph of module
//! dependencies. Then:
//!
//! - no cycle among the top-level modules, nor among the sibling modules of any
//!   folder (a folder's own `mod.rs` is its facade: it declares, re-exports and
//!   may hold what its children share, so it is not one of the siblings);
//! - the top-level modules respect the layers of [`LAYERS`]: a module names only
//!   modules of lower layers (and none of [`FORBIDDEN`]);
//! - nothing outside `store/` and `startup.rs` names a store backend.
//!
//! Test code (`#[cfg(test)]` items and modules) is left out: a test may reach
//! wherever it needs to.

mod graph;
mod scan;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use graph::{Crate, Use, cycles, module_of};

/// The layers, top to bottom. A top-level module may depend only on modules of
/// a lower layer; modules of one layer do not name each other. Every top-level
/// module is listed, so a new one has to take a place here (and in
/// docs/architecture.md, which shows the same table).
const LAYERS: &[&[&str]] = &[
    // Entry points: subcommands, and the assembly of the server.
    &["cli", "startup"],
    // actix routes, extractors, errors -> responses.
    &["http"],
    // Who may call; accepted messages -> executions.
    &["auth", "queue"],
    // Settings; outbound event webhooks.
    &["config", "events"],
    // Runs one flow; the durable record.
    &["engine", "store"],
    // Request bodies -> input documents.
    &["codec"],
    // Flow files -> validated model.
    &["flow"],
    // Outbound connections (HTTP, PostgreSQL), secrets, environment.
    &["connect"],
    // Metrics and telemetry; TLS for PostgreSQL.
    &["ops", "pgtls"],
    // Plain types.
    &["domain"],
];

/// Top-level edges the layers allow but the design does not, each with why.
const FORBIDDEN: &[(&str, &str, &str)] = &[(
    "cli",
    "http",
    "the subcommands run without the server's HTTP layer; what they share with it lives below it",
)];

/// Sibling edges that break a rule today, one entry per violation as
/// (folder, from, to); `""` is the crate's top level. Each belongs to a change
/// under way elsewhere and goes when it lands: an entry no longer needed fails
/// the test, so this list only shrinks.
const ALLOWED_EDGES: &[(&str, &str, &str)] = &[];

/// Store backends by name: only `store/` and `startup.rs` may name them.
const BACKEND_NAMES: &[&str] = &["store::postgres", "store::sqlite", "PgStore", "SqliteStore"];

/// Files outside `store/` and `startup.rs` that still name a backend, one entry
/// per (file, name); emptied like [`ALLOWED_EDGES`].
const ALLOWED_BACKEND_NAMES: &[(&str, &str)] = &[];

#[test]
fn modules_depend_one_way() {
    let crate_ = Crate::read(&src_dir());
    let mut report = String::new();
    let mut used_allowances = BTreeSet::new();

    let graph = crate_.graph();
    for (folder, edges) in &graph {
        let mut kept: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for ((from, to), _) in edges.iter() {
            let allowed = (folder.as_str(), from.as_str(), to.as_str());
            if ALLOWED_EDGES.contains(&allowed) {
                used_allowances.insert(allowed);
                continue;
            }
            kept.entry(from.as_str()).or_default().insert(to.as_str());
        }
        for cycle in cycles(&kept) {
            let place = if folder.is_empty() {
                "the crate's top level".to_owned()
            } else {
                format!("src/{folder}/")
            };
            let _ = writeln!(
                report,
                "cycle among the modules of {place}: {}",
                cycle.join(", ")
            );
            for from in &cycle {
                for to in kept.get(from.as_str()).into_iter().flatten() {
                    if cycle.iter().any(|c| c == to) {
                        let evidence = &edges[&(from.clone(), to.to_string())];
                        let _ = writeln!(report, "  {from} -> {to}{}", cite(evidence));
                    }
                }
            }
        }
    }

    let rank = layer_ranks();
    let top: BTreeSet<&str> = crate_.top_level().collect();
    for module in &top {
        if !rank.contains_key(module) {
            let _ = writeln!(
                report,
                "`{module}` has no layer: add it to LAYERS and docs/architecture.md"
            );
        }
    }
    for module in rank.keys() {
        if !top.contains(module) {
            let _ = writeln!(
                report,
                "LAYERS names `{module}`, which is not a module of src/"
            );
        }
    }
    if let Some(edges) = graph.get("") {
        for ((from, to), evidence) in edges {
            let allowed = ("", from.as_str(), to.as_str());
            if ALLOWED_EDGES.contains(&allowed) {
                continue;
            }
            if let Some((_, _, why)) = FORBIDDEN.iter().find(|(f, t, _)| from == f && to == t) {
                let _ = writeln!(
                    report,
                    "{from} -> {to} is not allowed: {why}{}",
                    cite(evidence)
                );
            }
            if let (Some(f), Some(t)) = (rank.get(from.as_str()), rank.get(to.as_str()))
                && f <= t
            {
                let how = if f == t {
                    "a module of its own layer"
                } else {
                    "up a layer"
                };
                let _ = writeln!(report, "{from} -> {to} reaches {how}{}", cite(evidence));
            }
        }
    }

    for file in &crate_.files {
        let rel = file.rel.as_str();
        if rel.starts_with("src/store/") || rel == "src/startup.rs" {
            continue;
        }
        for &name in BACKEND_NAMES {
            let lines = file.code_lines_naming(name);
            if lines.is_empty() {
                continue;
            }
            if ALLOWED_BACKEND_NAMES.contains(&(rel, name)) {
                used_allowances.insert(("backend", rel, name));
                continue;
            }
            let at: Vec<String> = lines.iter().map(|l| format!("{rel}:{l}")).collect();
            let _ = writeln!(
                report,
                "`{name}` is a store backend, named outside store/ at {}",
                at.join(", ")
            );
        }
    }

    for &(folder, from, to) in ALLOWED_EDGES {
        if !used_allowances.contains(&(folder, from, to)) {
            let _ = writeln!(
                report,
                "ALLOWED_EDGES entry ({folder:?}, {from:?}, {to:?}) is no longer needed: remove it"
            );
        }
    }
    for &(file, name) in ALLOWED_BACKEND_NAMES {
        if !used_allowances.contains(&("backend", file, name)) {
            let _ = writeln!(
                report,
                "ALLOWED_BACKEND_NAMES entry ({file:?}, {name:?}) is no longer needed: remove it"
            );
        }
    }

    assert!(
        report.is_empty(),
        "the architecture is broken (see docs/architecture.md):\n{report}"
    );
}

/// The scan and the graph on a few shapes they must get right.
#[test]
fn paths_are_collected_and_resolved() {
    let files = [
        ("lib", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a/mod", "mod x;\nmod y;\npub use x::Thing;\n"),
        (
            "a/x",
            "use super::y::{self, Other as O};\npub struct Thing;\n",
        ),
        (
            "a/y",
            "// crate::c::Commented\nconst S: &str = \"crate::c::Quoted\";\n\
             fn f<'a>(_: &'a str) -> char { let _ = crate::b::g(); 'x' }\n\
             #[cfg(test)]\nmod tests { use crate::c::Tested; }\n",
        ),
        ("b", "use crate::a::Thing;\npub fn g() {}\n"),
        (
            "c",
            "#[cfg(test)]\nconst X: [u8; 1] = [0];\n#[cfg(test)]\nuse crate::a::Thing;\n",
        ),
    ];
    let crate_ = Crate::from_sources(
        files
            .iter()
            .map(|(m, text)| (format!("src/{m}.rs"), module_of(m), text.to_string()))
            .collect(),
    );
    let graph = crate_.graph();
    let top: BTreeSet<_> = graph[""].keys().cloned().collect();
    let expected: BTreeSet<_> = [("a", "b"), ("b", "a")]
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    assert_eq!(
        top, expected,
        "b names a through the re-export of a::x::Thing"
    );
    let inner: BTreeSet<_> = graph["a"].keys().cloned().collect();
    assert_eq!(
        inner,
        [("x".to_owned(), "y".to_owned())].into_iter().collect()
    );
    let b_to_a = &graph[""][&("b".to_owned(), "a".to_owned())];
    assert_eq!(b_to_a[0].path, "crate::a::Thing");
    assert_eq!(
        cycles(&[("a", ["b"].into()), ("b", ["a"].into())].into()),
        vec![vec!["a", "b"]]
    );
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_ranks() -> BTreeMap<&'static str, usize> {
    let mut rank = BTreeMap::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        for module in *layer {
            assert!(
                rank.insert(*module, LAYERS.len() - i).is_none(),
                "`{module}` is in LAYERS twice"
            );
        }
    }
    rank
}

fn cite(evidence: &[Use]) -> String {
    let mut out = String::new();
    for u in evidence.iter().take(4) {
        let _ = write!(out, "\n      {}:{} names {}", u.file, u.line, u.path);
    }
    if evidence.len() > 4 {
        let _ = write!(out, "\n      and {} more", evidence.len() - 4);
    }
    out
}
