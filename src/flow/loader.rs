//! Reads `flows/<tenant>/*.yaml` into a Catalog. A file that fails to compile keeps
//! its last good version (hot reload) and its problems are reported; nothing else
//! is affected.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::connect::Registry;
use crate::domain::{TenantName, TriggerName};

use super::catalog::Catalog;
use super::compile::{FileCx, compile_tenant, compile_trigger, parse_recovering};
use super::diagnostic::Diagnostic;
use super::model::{Tenant, Trigger};
use super::raw::{RawTenant, RawTrigger};

pub const TENANT_FILE: &str = "_tenant.yaml";

/// What one load produced.
#[derive(Debug)]
pub struct LoadReport {
    pub catalog: Catalog,
    pub diagnostics: Vec<Diagnostic>,
    /// The flow tests found beside the triggers, in path order (`flowgate test`).
    pub tests: Vec<TestFile>,
}

/// A `<tenant>/<Trigger>.test.yaml` (or `.test.yml`) file and the trigger it tests.
#[derive(Debug, Clone)]
pub struct TestFile {
    pub path: PathBuf,
    pub tenant: TenantName,
    pub trigger: String,
}

/// Remembers the last good version of every file between loads.
#[derive(Debug)]
pub struct Loader {
    dir: PathBuf,
    good_tenants: HashMap<PathBuf, Arc<Tenant>>,
    good_triggers: HashMap<PathBuf, Arc<Trigger>>,
    /// Environment, outbound client and open database pools.
    registry: Arc<Registry>,
}

/// A tenant file's outcome.
enum Loaded {
    Good(Arc<Tenant>),
    /// Broken now; its last good version keeps serving.
    LastGood(Arc<Tenant>),
    /// Broken and never good: its valid keys, for checking its triggers only.
    CheckOnly(Arc<Tenant>),
}

/// A cheap summary of the directory: a reload happens when it changes.
pub type Fingerprint = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

impl Loader {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            good_tenants: HashMap::new(),
            good_triggers: HashMap::new(),
            registry: Arc::new(Registry::default()),
        }
    }

    /// Uses `registry` (the server's environment, outbound policy and pools)
    /// instead of the process environment with default settings.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = registry;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paths, modification times and sizes of the flow files.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut out = BTreeMap::new();
        for (path, _) in self.files().into_iter().flat_map(|(_, f)| f) {
            if let Ok(meta) = std::fs::metadata(&path) {
                out.insert(path, (meta.modified().ok(), meta.len()));
            }
        }
        out
    }

    /// Tenant folders and their YAML files, sorted.
    fn files(&self) -> Vec<(PathBuf, Vec<(PathBuf, String)>)> {
        let mut tenants = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return tenants;
        };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            if !dir.is_dir() {
                continue;
            }
            let mut files = Vec::new();
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let path = e.path();
                    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    if path.is_file()
                        && (name.ends_with(".yaml") || name.ends_with(".yml"))
                        && !name.starts_with('.')
                    {
                        files.push((path.clone(), name.to_owned()));
                    }
                }
            }
            files.sort();
            tenants.push((dir, files));
        }
        tenants
    }

    /// Loads every file; broken files fall back to their last good version.
    pub fn load(&mut self) -> LoadReport {
        let mut catalog = Catalog::default();
        let mut diagnostics = Vec::new();
        if !self.dir.is_dir() {
            diagnostics.push(Diagnostic {
                file: self.dir.clone(),
                line: 1,
                column: 1,
                message: "flows directory not found".to_owned(),
            });
            return LoadReport {
                catalog,
                diagnostics,
                tests: Vec::new(),
            };
        }
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut tests = Vec::new();
        for (dir, files) in self.files() {
            let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if dir_name.starts_with('.') {
                continue;
            }
            let tenant_name = match TenantName::parse(dir_name) {
                Ok(n) => n,
                Err(e) => {
                    diagnostics.push(Diagnostic {
                        file: dir.clone(),
                        line: 1,
                        column: 1,
                        message: format!("tenant folder: {e}"),
                    });
                    continue;
                }
            };
            let tenant_file = dir.join(TENANT_FILE);
            seen.push(tenant_file.clone());
            // A broken tenant file without a last good version: its triggers are
            // still checked (against its valid keys) but nothing of it is served.
            let (tenant, serve) = if tenant_file.is_file() {
                match self.load_tenant(&tenant_file, tenant_name.clone(), &mut diagnostics) {
                    Loaded::Good(t) => (t, true),
                    Loaded::LastGood(t) => (t, true),
                    Loaded::CheckOnly(t) => (t, false),
                }
            } else {
                let mut empty = Tenant::empty(tenant_name.clone());
                empty.outbound = self.registry.outbound().clone();
                (Arc::new(empty), true)
            };
            if serve {
                catalog.insert_tenant(tenant.clone());
            }
            for (path, name) in files {
                if name == TENANT_FILE {
                    continue;
                }
                if let Some(trigger) = name
                    .strip_suffix(".test.yaml")
                    .or_else(|| name.strip_suffix(".test.yml"))
                {
                    tests.push(TestFile {
                        path,
                        tenant: tenant_name.clone(),
                        trigger: trigger.to_owned(),
                    });
                    continue;
                }
                seen.push(path.clone());
                let stem = name.trim_end_matches(".yaml").trim_end_matches(".yml");
                if let Some(t) = self.load_trigger(&path, &tenant, stem, &mut diagnostics)
                    && serve
                {
                    catalog.insert_trigger(t);
                }
            }
        }
        self.good_tenants.retain(|p, _| seen.contains(p));
        self.good_triggers.retain(|p, _| seen.contains(p));
        diagnostics.sort();
        LoadReport {
            catalog,
            diagnostics,
            tests,
        }
    }

    fn load_tenant(
        &mut self,
        path: &Path,
        name: TenantName,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Loaded {
        let Some(source) = read(path, diagnostics) else {
            return match self.good_tenants.get(path) {
                Some(t) => Loaded::LastGood(t.clone()),
                None => Loaded::CheckOnly(Arc::new(Tenant::empty(name))),
            };
        };
        let (tenant, mut problems) = compile_tenant_source(name, path, &source, &self.registry);
        let clean = problems.is_empty();
        diagnostics.append(&mut problems);
        if clean {
            let t = Arc::new(tenant);
            self.good_tenants.insert(path.to_path_buf(), t.clone());
            return Loaded::Good(t);
        }
        match self.good_tenants.get(path) {
            Some(t) => Loaded::LastGood(t.clone()),
            None => Loaded::CheckOnly(Arc::new(tenant)),
        }
    }

    fn load_trigger(
        &mut self,
        path: &Path,
        tenant: &Tenant,
        stem: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Arc<Trigger>> {
        let name = match TriggerName::parse(stem) {
            Ok(n) => n,
            Err(e) => {
                diagnostics.push(Diagnostic {
                    file: path.to_path_buf(),
                    line: 1,
                    column: 1,
                    message: format!("trigger file name: {e}"),
                });
                return None;
            }
        };
        let source = read(path, diagnostics)?;
        let mut cx = FileCx::new(path, &source);
        let compiled = parse_recovering::<RawTrigger>(&mut cx, &source)
            .and_then(|raw| compile_trigger(&mut cx, tenant, name, raw, self.registry.env()))
            .filter(|_| cx.diagnostics.is_empty());
        diagnostics.append(&mut cx.diagnostics);
        match compiled {
            Some(t) => {
                let t = Arc::new(t);
                self.good_triggers.insert(path.to_path_buf(), t.clone());
                Some(t)
            }
            None => self.good_triggers.get(path).cloned(),
        }
    }
}

fn read(path: &Path, diagnostics: &mut Vec<Diagnostic>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            diagnostics.push(Diagnostic {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!("cannot read file: {e}"),
            });
            None
        }
    }
}

/// `flowgate check`: every problem in every file, nothing remembered.
pub fn check_dir(dir: &Path) -> LoadReport {
    Loader::new(dir).load()
}

/// `check_dir` with the settings that change what is valid: `http://` event
/// receivers (`subscriptions_allow_http`).
pub fn check_dir_with(dir: &Path, subscriptions_allow_http: bool) -> LoadReport {
    let registry = Registry::default().with_subscriptions_allow_http(subscriptions_allow_http);
    Loader::new(dir).with_registry(Arc::new(registry)).load()
}

/// Compiles a `_tenant.yaml` from its text: the tenant (with what of it is
/// valid) and every problem.
pub fn compile_tenant_source(
    name: TenantName,
    path: &Path,
    source: &str,
    registry: &Registry,
) -> (Tenant, Vec<Diagnostic>) {
    let mut cx = FileCx::new(path, source);
    let tenant = match parse_recovering::<RawTenant>(&mut cx, source) {
        Some(raw) => compile_tenant(&mut cx, name, raw, registry),
        None => Tenant::empty(name),
    };
    (tenant, cx.diagnostics)
}

/// Compiles one trigger from its text (tests, `flowgate run` on a single file).
pub fn compile_trigger_source(
    tenant: &Tenant,
    name: TriggerName,
    path: &Path,
    source: &str,
) -> Result<Trigger, Vec<Diagnostic>> {
    let mut cx = FileCx::new(path, source);
    let compiled = parse_recovering::<RawTrigger>(&mut cx, source)
        .and_then(|raw| {
            compile_trigger(
                &mut cx,
                tenant,
                name,
                raw,
                &crate::connect::env::process_env(),
            )
        })
        .filter(|_| cx.diagnostics.is_empty());
    compiled.ok_or(cx.diagnostics)
}
