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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
const ALLOWED_EDGES: &[(&str, &str, &str)] = &[
    // The dispatcher holds a back-pointer to the claimer's wake-up
    // (`OnceLock<Arc<claimer::Wake>>`) while the claimer drives the dispatcher.
    ("queue", "dispatcher", "claimer"),
    // Leases and claims of the PostgreSQL store call each other.
    ("store/postgres", "leases", "claims"),
];

/// Store backends by name: only `store/` and `startup.rs` may name them.
const BACKEND_NAMES: &[&str] = &["store::postgres", "store::sqlite", "PgStore", "SqliteStore"];

/// Files outside `store/` and `startup.rs` that still name a backend, one entry
/// per (file, name); emptied like [`ALLOWED_EDGES`].
const ALLOWED_BACKEND_NAMES: &[(&str, &str)] = &[
    // The claimer takes the concrete PostgreSQL store.
    ("src/queue/claimer/mod.rs", "PgStore"),
];

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

/// The parser below on a few shapes it must get right.
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

/// One path named by a file, where.
#[derive(Clone, Debug)]
struct Use {
    file: String,
    line: usize,
    path: String,
}

/// Edges of one folder's sibling graph (`""` the top level), each with the uses behind it.
type Graph = BTreeMap<String, BTreeMap<(String, String), Vec<Use>>>;

struct File {
    rel: String,
    /// The module this file is, as path segments from the crate root.
    module: Vec<String>,
    tokens: Vec<Token>,
}

struct Crate {
    files: Vec<File>,
    /// Every module: files and inline modules (test modules left out).
    modules: BTreeSet<Vec<String>>,
    /// `pub use` re-exports: module -> name -> the absolute path it stands for.
    reexports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
    /// Paths named by non-test code: (scope module, absolute path, evidence).
    uses: Vec<(Vec<String>, Vec<String>, Use)>,
}

fn module_of(stem: &str) -> Vec<String> {
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut sources = Vec::new();
        let mut dirs = vec![src.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src/") {
                let path = entry.expect("read src/").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let stem = path.strip_prefix(src).unwrap().with_extension("");
                    let stem = stem.to_string_lossy().replace('\\', "/");
                    let text = std::fs::read_to_string(&path).expect("read a source file");
                    let module = if stem == "main" {
                        vec!["<main>".to_owned()]
                    } else {
                        module_of(&stem)
                    };
                    sources.push((format!("src/{stem}.rs"), module, text));
                }
            }
        }
        sources.sort();
        Crate::from_sources(sources)
    }

    fn from_sources(sources: Vec<(String, Vec<String>, String)>) -> Crate {
        let files: Vec<File> = sources
            .into_iter()
            .map(|(rel, module, text)| File {
                rel,
                module,
                tokens: tokenize(&text),
            })
            .collect();
        let mut crate_ = Crate {
            modules: files.iter().map(|f| f.module.clone()).collect(),
            files,
            reexports: BTreeMap::new(),
            uses: Vec::new(),
        };
        // Files declared `#[cfg(test)] mod x;` are test code; their modules and
        // every module below them go.
        let mut test_files = BTreeSet::new();
        let mut raw = Vec::new();
        for file in &crate_.files {
            let scan = scan(file);
            for name in &scan.test_children {
                let mut m = file.module.clone();
                m.push(name.clone());
                test_files.insert(m);
            }
            raw.push(scan);
        }
        let is_test = |m: &Vec<String>| test_files.iter().any(|t| m.starts_with(t));
        crate_.modules.retain(|m| !is_test(m));
        for scan in &raw {
            for m in &scan.inline_modules {
                crate_.modules.insert(m.clone());
            }
        }
        let mut collected = Vec::new();
        for (file, scan) in crate_.files.iter().zip(&raw) {
            if is_test(&file.module) || file.module == ["<main>"] {
                continue;
            }
            for item in &scan.paths {
                let Some(abs) = crate_.absolute(&item.scope, &item.segments) else {
                    continue;
                };
                let evidence = Use {
                    file: file.rel.clone(),
                    line: item.line,
                    path: item.segments.join("::"),
                };
                if let Some(alias) = &item.reexport_as {
                    let name = alias
                        .clone()
                        .unwrap_or_else(|| abs.last().cloned().unwrap_or_default());
                    crate_
                        .reexports
                        .entry(item.scope.clone())
                        .or_default()
                        .insert(name, abs.clone());
                }
                collected.push((item.scope.clone(), abs, evidence));
            }
        }
        crate_.uses = collected;
        crate_
    }

    fn top_level(&self) -> impl Iterator<Item = &str> {
        self.modules
            .iter()
            .filter(|m| m.len() == 1 && m[0] != "<main>")
            .map(|m| m[0].as_str())
    }

    /// A path as written in `scope` -> the absolute path it names, if inside the crate.
    fn absolute(&self, scope: &[String], segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        let (mut base, rest): (Vec<String>, &[String]) = match first.as_str() {
            "crate" | "$crate" => (Vec::new(), &segments[1..]),
            "self" => (scope.to_vec(), &segments[1..]),
            "super" => {
                let mut base = scope.to_vec();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                (base, rest)
            }
            child => {
                let mut m = scope.to_vec();
                m.push(child.to_owned());
                if !self.modules.contains(&m) {
                    return None;
                }
                (scope.to_vec(), segments)
            }
        };
        base.extend(rest.iter().filter(|s| *s != "self").cloned());
        Some(base)
    }

    /// The module an absolute path lands in, followed through re-exports.
    fn target(&self, path: &[String]) -> Vec<String> {
        let mut path = path.to_vec();
        for _ in 0..16 {
            let module = (0..=path.len())
                .rev()
                .map(|i| &path[..i])
                .find(|p| self.modules.contains(*p));
            let module = module.map(<[String]>::to_vec).unwrap_or_default();
            let next = path.get(module.len());
            match next.and_then(|n| self.reexports.get(&module)?.get(n)) {
                Some(source) if *source != path[..=module.len()] => {
                    let mut resolved = source.clone();
                    resolved.extend_from_slice(&path[module.len() + 1..]);
                    path = resolved;
                }
                _ => return module,
            }
        }
        path
    }

    fn graph(&self) -> Graph {
        let mut graph = Graph::new();
        for (scope, abs, evidence) in &self.uses {
            let target = self.target(abs);
            let common = scope
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common < scope.len() && common < target.len() {
                let folder = scope[..common].join("/");
                let edge = (scope[common].clone(), target[common].clone());
                graph
                    .entry(folder)
                    .or_default()
                    .entry(edge)
                    .or_default()
                    .push(evidence.clone());
            }
        }
        graph
    }
}

impl File {
    /// Lines where code (not comments or strings) names `name` (`a::b` or a single identifier).
    fn code_lines_naming(&self, name: &str) -> Vec<usize> {
        let want: Vec<&str> = name.split("::").collect();
        let mut lines = BTreeSet::new();
        for i in 0..self.tokens.len() {
            let mut j = i;
            let matched = want.iter().enumerate().all(|(n, w)| {
                if n > 0 {
                    if !self.tokens.get(j).is_some_and(|t| t.is("::")) {
                        return false;
                    }
                    j += 1;
                }
                let ok = self.tokens.get(j).is_some_and(|t| t.is(w));
                j += 1;
                ok
            });
            if matched {
                lines.insert(self.tokens[i].line);
            }
        }
        lines.into_iter().collect()
    }
}

#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
}

impl Token {
    fn is(&self, s: &str) -> bool {
        self.text == s
    }
    fn is_ident(&self) -> bool {
        self.text
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
    }
}

/// Rust source -> identifiers and punctuation (`::` as one token); comments,
/// strings, characters and lifetimes dropped.
fn tokenize(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '"' || (matches!(c, 'b' | 'c' | 'r') && is_string_start(&chars, i)) {
            // (b|c)?r#*"..."#* or (b|c)?"..."
            let mut j = i;
            if matches!(chars[j], 'b' | 'c') {
                j += 1;
            }
            let raw = chars[j] == 'r';
            let mut hashes = 0;
            if raw {
                j += 1;
                while chars[j] == '#' {
                    hashes += 1;
                    j += 1;
                }
            }
            j += 1; // the opening quote
            while let Some(&ch) = chars.get(j) {
                if ch == '\n' {
                    line += 1;
                }
                if !raw && ch == '\\' {
                    line += usize::from(at(j + 1) == '\n');
                    j += 2;
                    continue;
                }
                if ch == '"' && (0..hashes).all(|h| at(j + 1 + h) == '#') {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
        } else if c == '\'' {
            // A character literal, or a lifetime / label.
            if at(i + 1) == '\\' {
                let mut j = i + 3;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push(Token {
                text: "::".to_owned(),
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    tokens
}

fn is_string_start(chars: &[char], i: usize) -> bool {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return false;
    }
    let mut j = i;
    if matches!(chars[j], 'b' | 'c') {
        j += 1;
    }
    if chars.get(j) == Some(&'r') {
        j += 1;
        while chars.get(j) == Some(&'#') {
            j += 1;
        }
    }
    j > i && chars.get(j) == Some(&'"')
}

/// A path named in a file.
struct NamedPath {
    scope: Vec<String>,
    segments: Vec<String>,
    line: usize,
    /// `Some` for `pub use`: the name it is re-exported under (`None`: its own).
    reexport_as: Option<Option<String>>,
}

struct Scan {
    paths: Vec<NamedPath>,
    inline_modules: Vec<Vec<String>>,
    /// `#[cfg(test)] mod x;`: file modules that are test code.
    test_children: Vec<String>,
}

/// Walks a file's tokens: `use` trees, inline paths, inline modules, test code.
fn scan(file: &File) -> Scan {
    let t = &file.tokens;
    let mut out = Scan {
        paths: Vec::new(),
        inline_modules: Vec::new(),
        test_children: Vec::new(),
    };
    // Open braces: Some(module) for an inline module's body.
    let mut braces: Vec<bool> = Vec::new();
    let mut scope = file.module.clone();
    let mut i = 0;
    while i < t.len() {
        if is_cfg_test(t, i) {
            let after = skip_attributes(t, i);
            let item = skip_visibility(t, after);
            if t.get(item).is_some_and(|x| x.is("mod"))
                && t.get(item + 2).is_some_and(|x| x.is(";"))
            {
                out.test_children.push(t[item + 1].text.clone());
            }
            i = skip_item(t, after);
            continue;
        }
        let tok = &t[i];
        if tok.is("mod") && t.get(i + 2).is_some_and(|x| x.is("{")) {
            scope.push(t[i + 1].text.clone());
            out.inline_modules.push(scope.clone());
            braces.push(true);
            i += 3;
            continue;
        }
        if tok.is("{") {
            braces.push(false);
        } else if tok.is("}") {
            if braces.pop() == Some(true) {
                scope.pop();
            }
        } else if tok.is("use") {
            let public = i > 0
                && (t[i - 1].is("pub")
                    || (t[i - 1].is(")") && i >= 3 && visibility_open(t, i - 1)));
            let mut trees = Vec::new();
            let mut j = i + 1;
            parse_use_tree(t, &mut j, Vec::new(), &mut trees);
            for (segments, alias) in trees {
                let reexport_as = public.then(|| alias.clone());
                out.paths.push(NamedPath {
                    scope: scope.clone(),
                    segments,
                    line: tok.line,
                    reexport_as,
                });
            }
            while j < t.len() && !t[j].is(";") {
                j += 1;
            }
            i = j + 1;
            continue;
        } else if tok.is_ident()
            && t.get(i + 1).is_some_and(|x| x.is("::"))
            && !(i > 0 && t[i - 1].is("::"))
        {
            let mut segments = vec![tok.text.clone()];
            let mut j = i + 1;
            while t.get(j).is_some_and(|x| x.is("::")) && t.get(j + 1).is_some_and(Token::is_ident)
            {
                segments.push(t[j + 1].text.clone());
                j += 2;
            }
            out.paths.push(NamedPath {
                scope: scope.clone(),
                segments,
                line: tok.line,
                reexport_as: None,
            });
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// `pub(crate)`, `pub(super)`, `pub(in path)` ending at `close`.
fn visibility_open(t: &[Token], close: usize) -> bool {
    let mut j = close;
    while j > 0 && !t[j].is("(") {
        j -= 1;
    }
    j > 0 && t[j - 1].is("pub")
}

fn is_cfg_test(t: &[Token], i: usize) -> bool {
    let words: Vec<&str> = t[i..t.len().min(i + 7)]
        .iter()
        .map(|x| x.text.as_str())
        .collect();
    words == ["#", "[", "cfg", "(", "test", ")", "]"]
}

fn skip_attributes(t: &[Token], mut i: usize) -> usize {
    while t.get(i).is_some_and(|x| x.is("#")) && t.get(i + 1).is_some_and(|x| x.is("[")) {
        i = past_group(t, i + 1);
    }
    i
}

/// Past the bracket opening at `i` and its match.
fn past_group(t: &[Token], mut i: usize) -> usize {
    let open = t[i].text.clone();
    let close = match open.as_str() {
        "(" => ")",
        "[" => "]",
        _ => "}",
    };
    let mut depth = 0;
    while i < t.len() {
        if t[i].is(&open) {
            depth += 1;
        } else if t[i].is(close) {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

fn skip_visibility(t: &[Token], mut i: usize) -> usize {
    if t.get(i).is_some_and(|x| x.is("pub")) {
        i += 1;
        if t.get(i).is_some_and(|x| x.is("(")) {
            while i < t.len() && !t[i].is(")") {
                i += 1;
            }
            i += 1;
        }
    }
    i
}

/// Past one item: to its `;` or the end of its first `{ }` block.
fn skip_item(t: &[Token], mut i: usize) -> usize {
    while i < t.len() {
        match t[i].text.as_str() {
            "{" => return past_group(t, i),
            "(" | "[" => i = past_group(t, i),
            ";" => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// One `use` tree -> its leaves as (path, `as` alias).
fn parse_use_tree(
    t: &[Token],
    j: &mut usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    if t.get(*j).is_some_and(|x| x.is("::")) {
        *j += 1;
    }
    loop {
        let Some(tok) = t.get(*j) else { return };
        if tok.is("{") {
            *j += 1;
            loop {
                if t.get(*j).is_none_or(|x| x.is("}")) {
                    *j += 1;
                    return;
                }
                parse_use_tree(t, j, prefix.clone(), out);
                if t.get(*j).is_some_and(|x| x.is(",")) {
                    *j += 1;
                }
            }
        }
        if tok.is("*") {
            *j += 1;
            out.push((prefix, None));
            return;
        }
        if !tok.is_ident() {
            return;
        }
        prefix.push(tok.text.clone());
        *j += 1;
        if t.get(*j).is_some_and(|x| x.is("::")) {
            *j += 1;
            continue;
        }
        let mut alias = None;
        if t.get(*j).is_some_and(|x| x.is("as")) {
            alias = t.get(*j + 1).map(|x| x.text.clone());
            *j += 2;
        }
        out.push((prefix, alias));
        return;
    }
}

/// Cycles of a graph: its strongly connected components of more than one node (Tarjan).
fn cycles<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<String>> {
    struct State<'a, 'g> {
        graph: &'g BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a, '_>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found.sort();
    s.found
}
