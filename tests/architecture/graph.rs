//! The module graph: files -> modules, paths resolved through re-exports,
//! edges between siblings, and the cycles among them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::scan::{Token, scan, tokenize};

/// One path named by a file, where.
#[derive(Clone, Debug)]
pub struct Use {
    pub file: String,
    pub line: usize,
    pub path: String,
}

/// Edges of one folder's sibling graph (`""` the top level), each with the uses behind it.
pub type Graph = BTreeMap<String, BTreeMap<(String, String), Vec<Use>>>;

pub struct File {
    pub rel: String,
    /// The module this file is, as path segments from the crate root.
    pub module: Vec<String>,
    pub tokens: Vec<Token>,
}

pub struct Crate {
    pub files: Vec<File>,
    /// Every module: files and inline modules (test modules left out).
    pub modules: BTreeSet<Vec<String>>,
    /// `pub use` re-exports: module -> name -> the absolute path it stands for.
    pub reexports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
    /// Paths named by non-test code: (scope module, absolute path, evidence).
    pub uses: Vec<(Vec<String>, Vec<String>, Use)>,
}

pub fn module_of(stem: &str) -> Vec<String> {
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

impl Crate {
    pub fn read(src: &Path) -> Crate {
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

    pub fn from_sources(sources: Vec<(String, Vec<String>, String)>) -> Crate {
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
            let scan = scan(&file.tokens, &file.module);
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

    pub fn top_level(&self) -> impl Iterator<Item = &str> {
        self.modules
            .iter()
            .filter(|m| m.len() == 1 && m[0] != "<main>")
            .map(|m| m[0].as_str())
    }

    /// A path as written in `scope` -> the absolute path it names, if inside the crate.
    pub fn absolute(&self, scope: &[String], segments: &[String]) -> Option<Vec<String>> {
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
    pub fn target(&self, path: &[String]) -> Vec<String> {
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

    pub fn graph(&self) -> Graph {
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
    pub fn code_lines_naming(&self, name: &str) -> Vec<usize> {
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

/// Cycles of a graph: its strongly connected components of more than one node (Tarjan).
pub fn cycles<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<String>> {
    struct State<'a, 'g> {
        graph: &'g BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    pub fn visit<'a>(s: &mut State<'a, '_>, v: &'a str) {
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
