//! Raw file structs -> the validated model. Every problem in a file is collected
//! (not just the first) with its position; `flowgate check` and `serve` both come here.

pub mod io;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use crate::connect::{EnvLookup, Registry, Secrets};
use crate::domain::{Mode, TenantName, TriggerKey, TriggerName};

use super::diagnostic::Diagnostic;
use super::expr::{Expr, ExprError, Template};
use super::model::{
    Auth, Delivery, Method, OnExhausted, Param, ParamType, ResponseSettings, SetValue, Step,
    StepKind, Tenant, Trigger,
};
use super::raw::{
    ExprText, RawDelivery, RawParam, RawResponse, RawStep, RawTenant, RawTrigger,
    SetValue as RawSetValue,
};
use io::{
    compile_allow_ips, compile_connections, compile_hmac, compile_http_step, compile_retry,
    compile_sql_step, is_header_name,
};

pub const DEFAULT_RETRY: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];
pub const DEFAULT_CONCURRENCY: usize = 16;
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const STEP_KEYS: &str = "set, if, for_each, respond, fail, log, http, sql";

/// Collects the diagnostics of one file and maps positions inside expressions
/// back to the file.
pub struct FileCx<'a> {
    pub file: &'a Path,
    lines: Vec<&'a str>,
    pub diagnostics: Vec<Diagnostic>,
    /// Names of the file's `once: true` steps: each records its effect under its
    /// name, so two may not share one.
    pub once_steps: std::collections::HashSet<String>,
}

impl<'a> FileCx<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Self {
            file,
            lines: source.lines().collect(),
            diagnostics: Vec::new(),
            once_steps: std::collections::HashSet::new(),
        }
    }

    pub fn error_at(&mut self, line: u64, column: u64, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: line.max(1),
            column: column.max(1),
            message: message.into(),
        });
    }

    pub fn error(&mut self, loc: Location, message: impl Into<String>) {
        self.error_at(loc.line(), loc.column(), message)
    }

    /// Where byte `offset` of a scalar that starts at `loc` lies in the file.
    fn position_in_scalar(&self, loc: Location, text: &str, offset: usize) -> (u64, u64) {
        let line_idx = loc.line().saturating_sub(1) as usize;
        let col_idx = loc.column().saturating_sub(1) as usize;
        let first = self
            .lines
            .get(line_idx)
            .and_then(|l| l.get(col_idx..))
            .and_then(|l| l.chars().next());
        let before = &text[..offset.min(text.len())];
        let newlines = before.matches('\n').count() as u64;
        let col_in_line = before.rsplit('\n').next().map_or(0, str::len) as u64;
        match first {
            Some('|') | Some('>') => {
                let line = loc.line() + 1 + newlines;
                let indent =
                    self.lines
                        .get(line as usize - 1)
                        .map_or(0, |l| l.len() - l.trim_start().len()) as u64;
                (line, indent + col_in_line + 1)
            }
            Some('\'') | Some('"') if newlines == 0 => (loc.line(), loc.column() + 1 + col_in_line),
            _ if newlines == 0 => (loc.line(), loc.column() + col_in_line),
            // Later lines of a block or multi-line scalar: the text lost the
            // line's indentation, the file did not.
            _ => {
                let line = loc.line() + newlines;
                let indent =
                    self.lines
                        .get(line as usize - 1)
                        .map_or(0, |l| l.len() - l.trim_start().len()) as u64;
                (line, indent + col_in_line + 1)
            }
        }
    }

    fn expr_errors(&mut self, loc: Location, text: &str, what: &str, errs: Vec<ExprError>) {
        for e in errs {
            let (line, column) = self.position_in_scalar(loc, text, e.offset);
            self.error_at(line, column, format!("{what}: {}", e.message));
        }
    }

    /// Compiles a jq expression; a failure becomes a diagnostic at its position.
    pub fn expr(&mut self, s: &Spanned<ExprText>, what: &str) -> Option<Expr> {
        match Expr::compile(&s.value.0) {
            Ok(e) => Some(e),
            Err(errs) => {
                self.expr_errors(s.referenced, &s.value.0, what, errs);
                None
            }
        }
    }

    pub fn template(&mut self, s: &Spanned<String>, what: &str) -> Option<Template> {
        match Template::compile(&s.value) {
            Ok(t) => Some(t),
            Err(errs) => {
                self.expr_errors(s.referenced, &s.value, what, errs);
                None
            }
        }
    }

    pub fn duration(&mut self, s: &Spanned<String>, what: &str) -> Option<Duration> {
        match humantime::parse_duration(s.value.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    s.referenced,
                    format!(
                        "{what}: `{}` is not a duration like 500ms, 5s, 2m or 1h ({e})",
                        s.value
                    ),
                );
                None
            }
        }
    }
}

/// Renders a YAML error without its position (the position goes in front).
pub fn yaml_error(cx: &mut FileCx<'_>, err: &serde_saphyr::Error) {
    let err = err.without_snippet();
    let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
    let options = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let text = err.render_with_options(options);
    let suffix = format!(" at line {line}, column {column}");
    let text = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    cx.error_at(line, column, text);
}

/// Parses a file into its raw struct. An unknown key is reported and its entry
/// blanked out of a copy of the text, and parsing goes on, so that one stray key
/// does not hide the file's other problems. Any other error of shape stops here.
pub fn parse_recovering<T: serde::de::DeserializeOwned>(
    cx: &mut FileCx<'_>,
    source: &str,
) -> Option<T> {
    let mut text = source.to_owned();
    for _ in 0..50 {
        match serde_saphyr::from_str_with_options::<T>(&text, yaml_options()) {
            Ok(v) => return Some(v),
            Err(e) => {
                yaml_error(cx, &e);
                let unknown = cx
                    .diagnostics
                    .last()
                    .is_some_and(|d| d.message.starts_with("unknown field"));
                let blanked = e
                    .without_snippet()
                    .location()
                    .filter(|_| unknown)
                    .and_then(|l| blank_entry(&text, l.line() as usize, l.column() as usize));
                match blanked {
                    Some(t) => text = t,
                    None => return None,
                }
            }
        }
    }
    None
}

/// `text` with the mapping entry whose key starts at `line`:`column` replaced by
/// spaces (positions elsewhere stay where they were).
fn blank_entry(text: &str, line: usize, column: usize) -> Option<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let idx = line.checked_sub(1)?;
    let start = column.checked_sub(1)?;
    let current = lines.get(idx)?.clone();
    if start > current.len() || !current.is_char_boundary(start) {
        return None;
    }
    let blank = |s: &str| " ".repeat(s.len());
    if current[..start].contains('{') {
        // In a flow mapping: up to the next `,` or `}` at this depth.
        let rest = &current[start..];
        let mut depth = 0i32;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' if depth == 0 => {
                    end = i;
                    break;
                }
                '}' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        lines[idx] = format!(
            "{}{}{}",
            &current[..start],
            blank(&rest[..end]),
            &rest[end..]
        );
        return Some(lines.join("\n"));
    }
    lines[idx] = format!("{}{}", &current[..start], blank(&current[start..]));
    // The entry's value continues on lines indented deeper than the key.
    for l in lines.iter_mut().skip(idx + 1) {
        let indent = l.len() - l.trim_start().len();
        if !l.trim().is_empty() && indent <= start {
            break;
        }
        *l = blank(l);
    }
    Some(lines.join("\n"))
}

pub fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true }
}

/// `_tenant.yaml` -> Tenant. With problems, the tenant holds only its valid keys
/// (so its triggers can still be checked) and the diagnostics say what is wrong.
pub fn compile_tenant(
    cx: &mut FileCx<'_>,
    name: TenantName,
    raw: RawTenant,
    registry: &Registry,
) -> Tenant {
    let mut api_keys = Vec::new();
    for (label, hash) in raw.api_keys {
        if label.is_empty()
            || !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            cx.error(
                hash.referenced,
                format!("api key label `{label}` may only contain letters, digits, `_` and `-`"),
            );
        }
        if let Err(e) = argon2::password_hash::phc::PasswordHash::new(&hash.value) {
            cx.error(hash.referenced, format!("api key `{label}`: not a PHC hash string ({e}); make one with `flowgate key new --label {label}`"));
        } else if !hash.value.starts_with("$argon2id$") {
            cx.error(
                hash.referenced,
                format!("api key `{label}`: only argon2id hashes are accepted"),
            );
        }
        api_keys.push((label, hash.value));
    }
    let mut basic_users = Vec::new();
    for (user, hash) in raw.basic_users {
        if user.is_empty() || user.contains(':') {
            cx.error(
                hash.referenced,
                format!("basic user `{user}`: a user name cannot be empty or contain `:`"),
            );
        }
        if !hash.value.starts_with("$argon2id$")
            || argon2::password_hash::phc::PasswordHash::new(&hash.value).is_err()
        {
            cx.error(hash.referenced, format!("basic user `{user}`: give an argon2id PHC hash of the password (`flowgate key new --label {user} --key PASSWORD` prints one)"));
        }
        basic_users.push((user, hash.value));
    }
    let mut secret_headers = Vec::new();
    for h in raw.secret_headers {
        if is_header_name(&h.value) {
            secret_headers.push(h.value.to_ascii_lowercase());
        } else {
            cx.error(
                h.referenced,
                format!("`{}` is not a valid header name", h.value),
            );
        }
    }
    let mut secrets = Secrets::default();
    let connections =
        compile_connections(cx, raw.connections, &secret_headers, registry, &mut secrets);
    let subscriptions = super::subscriptions::compile(cx, raw.subscriptions);
    let mut tenant = Tenant::new(name, api_keys);
    tenant.basic_users = basic_users;
    tenant.connections = connections;
    tenant.secret_headers = secret_headers.into();
    tenant.secrets = Arc::new(secrets);
    tenant.outbound = registry.outbound().clone();
    tenant.with_subscriptions(subscriptions)
}

/// `<Trigger>.yaml` -> Trigger, checked against its tenant's key labels.
pub fn compile_trigger(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    name: TriggerName,
    raw: RawTrigger,
    env: &EnvLookup,
) -> Option<Trigger> {
    let before = cx.diagnostics.len();
    let methods = compile_methods(cx, raw.methods);
    let mut allow_ips = Vec::new();
    let auth = match raw.auth {
        None => {
            cx.error_at(1, 1, "missing `auth`: list `api_keys` labels from _tenant.yaml, or set `none: true` to leave the trigger open");
            Auth::None
        }
        Some(a) => {
            let loc = a.referenced;
            let a = a.value;
            allow_ips = compile_allow_ips(cx, a.allow_ips, loc);
            let chosen: Vec<&str> = [
                ("api_keys", a.api_keys.is_some()),
                ("none: true", a.none == Some(true)),
                ("basic", a.basic.is_some()),
                ("hmac", a.hmac.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, p)| p.then_some(k))
            .collect();
            if chosen.len() > 1 {
                cx.error(
                    loc,
                    format!("`auth` has {}; choose one", chosen.join(" and ")),
                );
            }
            if let Some(labels) = a.api_keys.filter(|l| !l.is_empty()) {
                for l in &labels {
                    if tenant.key_hash(&l.value).is_none() {
                        let known: Vec<&str> =
                            tenant.api_keys.iter().map(|(l, _)| l.as_str()).collect();
                        cx.error(
                            l.referenced,
                            format!(
                                "unknown api key label `{}` (labels in {}/_tenant.yaml: {})",
                                l.value,
                                tenant.name,
                                list_or_none(&known)
                            ),
                        );
                    }
                }
                Auth::ApiKeys(labels.into_iter().map(|l| l.value).collect())
            } else if let Some(users) = a.basic.filter(|u| !u.is_empty()) {
                for u in &users {
                    if tenant.basic_hash(&u.value).is_none() {
                        let known: Vec<&str> =
                            tenant.basic_users.iter().map(|(u, _)| u.as_str()).collect();
                        cx.error(
                            u.referenced,
                            format!(
                                "unknown basic user `{}` (basic_users in {}/_tenant.yaml: {})",
                                u.value,
                                tenant.name,
                                list_or_none(&known)
                            ),
                        );
                    }
                }
                Auth::Basic(users.into_iter().map(|u| u.value).collect())
            } else if let Some(h) = a.hmac {
                match compile_hmac(cx, h, env) {
                    Some(rule) => Auth::Hmac(Arc::new(rule)),
                    None => Auth::None,
                }
            } else if a.none == Some(true) {
                Auth::None
            } else {
                cx.error(
                    loc,
                    "`auth` needs `api_keys: [label, ...]`, `basic: [user, ...]`, `hmac: {...}` or `none: true`",
                );
                Auth::None
            }
        }
    };
    let params = raw
        .params
        .into_iter()
        .filter_map(|(n, p)| compile_param(cx, n, p))
        .collect();
    let delivery = compile_delivery(cx, raw.delivery);
    let response = compile_response(cx, raw.response);
    let limits = compile_limits(cx, raw.limits);
    if delivery.ordered && response.mode == Mode::Sync && delivery.ordering_key.is_none() {
        // Allowed: a sync caller waits for its turn in the lane.
    }
    if raw.steps.value.is_empty() {
        cx.error(
            raw.steps.referenced,
            "`steps` is empty: a flow needs at least one step",
        );
    }
    let steps = compile_steps(cx, tenant, raw.steps.value, "steps");
    let trace_full = match raw.trace {
        None => false,
        Some(t) if t.value == "full" => true,
        Some(t) if t.value == "steps" => false,
        Some(t) => {
            let msg = format!("unknown trace `{}`: use `steps` or `full`", t.value);
            cx.error(t.referenced, msg);
            false
        }
    };
    (cx.diagnostics.len() == before).then(|| Trigger {
        key: TriggerKey {
            tenant: tenant.name.clone(),
            trigger: name,
        },
        file: cx.file.to_path_buf(),
        description: raw.description,
        methods,
        enabled: raw.enabled.unwrap_or(true),
        auth,
        allow_ips,
        secret_headers: tenant.secret_headers.clone(),
        params,
        delivery,
        response,
        limits,
        trace_full,
        reads: super::model::input_reads(&steps),
        steps,
    })
}

/// `limits:`: a positive duration and size each, when given.
fn compile_limits(
    cx: &mut FileCx<'_>,
    raw: Option<Spanned<super::raw::RawLimits>>,
) -> super::model::TriggerLimits {
    let Some(raw) = raw else {
        return Default::default();
    };
    let time = raw.value.time.and_then(|t| {
        let d = cx.duration(&t, "limits.time")?;
        if d.is_zero() {
            cx.error(t.referenced, "limits.time must be greater than 0");
            return None;
        }
        Some(d)
    });
    let memory = raw
        .value
        .memory
        .and_then(|m| match crate::domain::parse_size(&m.value) {
            Ok(0) => {
                cx.error(m.referenced, "limits.memory must be greater than 0");
                None
            }
            Ok(bytes) => Some(bytes),
            Err(e) => {
                cx.error(m.referenced, format!("limits.memory: {e}"));
                None
            }
        });
    super::model::TriggerLimits { time, memory }
}

fn compile_methods(cx: &mut FileCx<'_>, raw: Option<Vec<Spanned<String>>>) -> Vec<Method> {
    let Some(raw) = raw else {
        return vec![Method::Post];
    };
    let mut methods = Vec::new();
    for m in raw {
        let method = match m.value.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            _ => {
                cx.error(
                    m.referenced,
                    format!("unknown method `{}`: use GET or POST", m.value),
                );
                continue;
            }
        };
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    if methods.is_empty() {
        cx.error_at(1, 1, "`methods` is empty: use GET, POST or both");
    }
    methods
}

fn compile_param(cx: &mut FileCx<'_>, name: String, raw: Spanned<RawParam>) -> Option<Param> {
    let loc = raw.referenced;
    let raw = raw.value;
    let ty = match raw.ty.value.as_str() {
        "string" => ParamType::String,
        "integer" => ParamType::Integer,
        "number" => ParamType::Number,
        "boolean" => ParamType::Boolean,
        other => {
            cx.error(raw.ty.referenced, format!("parameter `{name}`: unknown type `{other}` (string, integer, number or boolean)"));
            return None;
        }
    };
    let mut param = Param {
        name,
        ty,
        required: raw.required,
        default: None,
        allowed: raw.allowed.as_ref().map(|a| a.value.clone()),
        min: raw.min.as_ref().map(|m| m.value),
        max: raw.max.as_ref().map(|m| m.value),
    };
    if matches!(ty, ParamType::String | ParamType::Boolean) {
        for bound in [&raw.min, &raw.max].into_iter().flatten() {
            cx.error(
                bound.referenced,
                format!(
                    "parameter `{}`: `min` and `max` apply to integer and number parameters",
                    param.name
                ),
            );
        }
    }
    if let (Some(min), Some(max)) = (param.min, param.max)
        && min > max
    {
        cx.error(
            loc,
            format!(
                "parameter `{}`: `min` {min} is greater than `max` {max}",
                param.name
            ),
        );
    }
    if let Some(allowed) = &raw.allowed {
        for v in &allowed.value {
            if let Err(why) = super::params::check_value(&param, v) {
                cx.error(
                    allowed.referenced,
                    format!("parameter `{}`: enum value {v} {why}", param.name),
                );
            }
        }
    }
    if let Some(default) = raw.default {
        if raw.required {
            cx.error(
                default.referenced,
                format!(
                    "parameter `{}` is required, so its `default` would never be used",
                    param.name
                ),
            );
        }
        match super::params::coerce_default(&param, &default.value) {
            Ok(v) => param.default = Some(v),
            Err(why) => cx.error(
                default.referenced,
                format!("parameter `{}`: default {}", param.name, why),
            ),
        }
    }
    Some(param)
}

fn compile_delivery(cx: &mut FileCx<'_>, raw: Option<RawDelivery>) -> Delivery {
    let Some(raw) = raw else {
        return Delivery {
            ordered: false,
            ordering_key: None,
            concurrency: DEFAULT_CONCURRENCY,
            retry: DEFAULT_RETRY.to_vec(),
            on_exhausted: OnExhausted::Block,
        };
    };
    let ordering_key = raw.ordering_key.as_ref().and_then(|k| {
        if !raw.ordered {
            cx.error(k.referenced, "`ordering_key` needs `ordered: true`");
        }
        cx.expr(k, "ordering_key")
    });
    let concurrency = match raw.concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(c) if (1..=1024).contains(&c.value) => c.value as usize,
        Some(c) => {
            cx.error(
                c.referenced,
                format!("`concurrency` must be between 1 and 1024, not {}", c.value),
            );
            DEFAULT_CONCURRENCY
        }
    };
    let retry = match raw.retry {
        None => DEFAULT_RETRY.to_vec(),
        Some(items) => items
            .iter()
            .filter_map(|d| cx.duration(d, "retry"))
            .collect(),
    };
    let on_exhausted = match raw.on_exhausted {
        None => OnExhausted::Block,
        Some(s) => match s.value.as_str() {
            "block" => OnExhausted::Block,
            "skip" => OnExhausted::Skip,
            other => {
                cx.error(
                    s.referenced,
                    format!("`on_exhausted` is `block` or `skip`, not `{other}`"),
                );
                OnExhausted::Block
            }
        },
    };
    Delivery {
        ordered: raw.ordered,
        ordering_key,
        concurrency,
        retry,
        on_exhausted,
    }
}

fn compile_response(cx: &mut FileCx<'_>, raw: Option<RawResponse>) -> ResponseSettings {
    let Some(raw) = raw else {
        return ResponseSettings {
            mode: Mode::Sync,
            timeout: DEFAULT_SYNC_TIMEOUT,
        };
    };
    let mode = match raw.mode {
        None => Mode::Sync,
        Some(m) => match m.value.as_str() {
            "sync" => Mode::Sync,
            "async" => Mode::Async,
            other => {
                cx.error(
                    m.referenced,
                    format!("`mode` is `sync` or `async`, not `{other}`"),
                );
                Mode::Sync
            }
        },
    };
    let timeout = match raw.timeout {
        None => DEFAULT_SYNC_TIMEOUT,
        Some(t) => {
            if mode == Mode::Async {
                cx.error(t.referenced, "`timeout` applies to `mode: sync` only");
            }
            match cx.duration(&t, "timeout") {
                Some(d) if d.is_zero() => {
                    cx.error(t.referenced, "`timeout` must be greater than zero");
                    DEFAULT_SYNC_TIMEOUT
                }
                Some(d) => d,
                None => DEFAULT_SYNC_TIMEOUT,
            }
        }
    };
    ResponseSettings { mode, timeout }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn compile_steps(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    raw: Vec<Spanned<RawStep>>,
    path: &str,
) -> Vec<Step> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, s)| compile_step(cx, tenant, s, format!("{path}[{i}]")))
        .collect()
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn compile_step(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    raw: Spanned<RawStep>,
    path: String,
) -> Option<Step> {
    let loc = raw.referenced;
    let s = raw.value;
    let present: Vec<&str> = [
        ("set", s.set.is_some()),
        ("if", s.if_.is_some()),
        ("for_each", s.for_each.is_some()),
        ("respond", s.respond.is_some()),
        ("fail", s.fail.is_some()),
        ("log", s.log.is_some()),
        ("http", s.http.is_some()),
        ("sql", s.sql.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.then_some(k))
    .collect();
    let kind = match present.as_slice() {
        [] => {
            cx.error(loc, format!("a step needs one of: {STEP_KEYS}"));
            return None;
        }
        [one] => *one,
        many => {
            cx.error(
                loc,
                format!(
                    "a step has exactly one of {STEP_KEYS}; this one has {}",
                    many.join(" and ")
                ),
            );
            return None;
        }
    };
    let misplaced = |cx: &mut FileCx<'_>, key: &str, l: Location, owner: &str| {
        cx.error(
            l,
            format!("`{key}` belongs to `{owner}` steps, not to `{kind}`"),
        );
    };
    if kind != "if" {
        if let Some(t) = &s.then {
            misplaced(cx, "then", t.referenced, "if")
        }
        if let Some(e) = &s.else_ {
            misplaced(cx, "else", e.referenced, "if")
        }
    }
    if kind != "for_each" {
        if let Some(a) = &s.as_ {
            misplaced(cx, "as", a.referenced, "for_each")
        }
        if let Some(d) = &s.do_ {
            misplaced(cx, "do", d.referenced, "for_each")
        }
        if let Some(c) = &s.collect {
            misplaced(cx, "collect", c.referenced, "for_each")
        }
        if let Some(i) = &s.into {
            misplaced(cx, "into", i.referenced, "for_each")
        }
    }
    if let Some(r) = &s.retry
        && kind != "http"
        && kind != "sql"
    {
        cx.error(
            r.referenced,
            "`retry` on a step applies to `http` and `sql` steps only",
        );
    }
    let retry = compile_retry(cx, s.retry);
    let before = cx.diagnostics.len();
    let step_kind = match kind {
        "set" => {
            let set = s.set?;
            if set.value.is_empty() {
                cx.error(
                    set.referenced,
                    "`set` is empty: give it `name: expression` pairs",
                );
            }
            let mut pairs = Vec::new();
            for (name, e) in set.value {
                if !is_identifier(&name) {
                    cx.error(e.referenced, format!("`set`: `{name}` is not a variable name (letters, digits and `_`, not starting with a digit)"));
                }
                match e.value {
                    RawSetValue::Data(v) => match super::value::from_json(&v) {
                        Ok(data) => pairs.push((name, SetValue::Data(data))),
                        Err(why) => cx.error(e.referenced, format!("`set {name}`: {why}")),
                    },
                    RawSetValue::Expr(text) => {
                        let spanned = Spanned::new(text, e.referenced, e.defined);
                        if let Some(expr) = cx.expr(&spanned, &format!("set {name}")) {
                            pairs.push((name, SetValue::Expr(expr)));
                        }
                    }
                }
            }
            StepKind::Set(pairs)
        }
        "if" => {
            let cond = s.if_.as_ref().and_then(|c| cx.expr(c, "if"));
            let then = match s.then {
                Some(t) => compile_steps(cx, tenant, t.value, &format!("{path}.then")),
                None => {
                    cx.error(loc, "an `if` step needs `then:` steps");
                    Vec::new()
                }
            };
            let otherwise = s
                .else_
                .map(|e| compile_steps(cx, tenant, e.value, &format!("{path}.else")))
                .unwrap_or_default();
            StepKind::If {
                cond: cond?,
                then,
                otherwise,
            }
        }
        "for_each" => {
            let items = s.for_each.as_ref().and_then(|e| cx.expr(e, "for_each"));
            let var = match &s.as_ {
                Some(a) if is_identifier(&a.value) => a.value.clone(),
                Some(a) => {
                    cx.error(
                        a.referenced,
                        format!("`as`: `{}` is not a variable name", a.value),
                    );
                    String::new()
                }
                None => {
                    cx.error(
                        loc,
                        "a `for_each` step needs `as: name` for the current item",
                    );
                    String::new()
                }
            };
            let body = match s.do_ {
                Some(d) => compile_steps(cx, tenant, d.value, &format!("{path}.do")),
                None => {
                    cx.error(loc, "a `for_each` step needs `do:` steps");
                    Vec::new()
                }
            };
            let collect = s.collect.as_ref().and_then(|c| cx.expr(c, "collect"));
            let into = match &s.into {
                Some(i) if is_identifier(&i.value) => Some(i.value.clone()),
                Some(i) => {
                    cx.error(
                        i.referenced,
                        format!("`into`: `{}` is not a variable name", i.value),
                    );
                    None
                }
                None => None,
            };
            if s.collect.is_some() && into.is_none() && s.into.is_none() {
                cx.error(
                    loc,
                    "`collect` needs `into: name` to store the collected results",
                );
            }
            StepKind::ForEach {
                items: items?,
                var,
                body,
                collect,
                into,
            }
        }
        "respond" => {
            let r = s.respond?;
            let status = status_code(cx, r.value.status.as_ref(), 200, 100..=599);
            let headers = r
                .value
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    if k.is_empty()
                        || !k
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        cx.error(v.referenced, format!("`{k}` is not a valid header name"));
                        return None;
                    }
                    cx.template(v, &format!("header {k}"))
                        .map(|t| (k.to_ascii_lowercase(), t))
                })
                .collect();
            let body = r.value.body.as_ref().and_then(|b| cx.expr(b, "body"));
            let xml = r.value.xml.as_ref().and_then(|b| cx.expr(b, "xml"));
            StepKind::Respond {
                status,
                headers,
                body,
                xml,
            }
        }
        "fail" => {
            let f = s.fail?;
            let status = status_code(cx, f.value.status.as_ref(), 500, 400..=599);
            let message = cx.expr(&f.value.message, "message");
            StepKind::Fail {
                status,
                message: message?,
            }
        }
        "log" => StepKind::Log(cx.expr(s.log.as_ref()?, "log")?),
        "http" => StepKind::Http(Box::new(compile_http_step(cx, tenant, s.http?, retry)?)),
        "sql" => StepKind::Sql(Box::new(compile_sql_step(
            cx,
            tenant,
            s.sql?,
            retry,
            s.name.as_deref(),
        )?)),
        _ => return None,
    };
    (cx.diagnostics.len() == before).then_some(Step {
        name: s.name.map(Into::into),
        path: path.into(),
        kind: step_kind,
    })
}

fn status_code(
    cx: &mut FileCx<'_>,
    raw: Option<&Spanned<i64>>,
    default: u16,
    range: std::ops::RangeInclusive<i64>,
) -> u16 {
    match raw {
        None => default,
        Some(s) if range.contains(&s.value) => s.value as u16,
        Some(s) => {
            cx.error(
                s.referenced,
                format!(
                    "`status` must be between {} and {}, not {}",
                    range.start(),
                    range.end(),
                    s.value
                ),
            );
            default
        }
    }
}
