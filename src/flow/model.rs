//! The compiled, validated form of the flow files: what the engine and the HTTP
//! layer work with. Every expression here has compiled; every reference resolves.

use std::path::PathBuf;
use std::time::Duration;

use crate::domain::{EventKind, Mode, TenantName, TriggerKey};

use super::expr::{Expr, Template};

/// A tenant's settings from `_tenant.yaml`.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: TenantName,
    /// label -> argon2id PHC string
    pub api_keys: Vec<(String, String)>,
    /// SHA-256 over the key list: cached verifications are only trusted while
    /// it is unchanged.
    pub keys_fingerprint: [u8; 32],
    /// Outbound event webhooks (`subscriptions:`).
    pub subscriptions: Vec<Subscription>,
    /// The events some enabled subscription wants (`EventKind::bit`).
    pub events_mask: u8,
}

/// One outbound event webhook of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub name: String,
    pub url: String,
    pub events: Vec<EventKind>,
    /// Basic auth user and password.
    pub basic_auth: Option<(String, String)>,
    /// The HMAC-SHA256 signing secret (from the environment).
    pub secret: Option<String>,
    pub enabled: bool,
}

impl Tenant {
    pub fn new(name: TenantName, api_keys: Vec<(String, String)>) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (label, phc) in &api_keys {
            h.update(label.as_bytes());
            h.update([0]);
            h.update(phc.as_bytes());
            h.update([0]);
        }
        Self {
            name,
            api_keys,
            keys_fingerprint: h.finalize().into(),
            subscriptions: Vec::new(),
            events_mask: 0,
        }
    }

    pub fn with_subscriptions(mut self, subscriptions: Vec<Subscription>) -> Self {
        self.events_mask = subscriptions
            .iter()
            .filter(|s| s.enabled)
            .flat_map(|s| s.events.iter())
            .fold(0, |m, e| m | e.bit());
        self.subscriptions = subscriptions;
        self
    }

    /// Whether an enabled subscription wants `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events_mask & kind.bit() != 0
    }

    pub fn empty(name: TenantName) -> Self {
        Self::new(name, Vec::new())
    }

    pub fn key_hash(&self, label: &str) -> Option<&str> {
        self.api_keys
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, h)| h.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Open to anyone (`none: true`).
    None,
    /// Any of these key labels of the tenant.
    ApiKeys(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }
}

/// A declared query parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub ty: ParamType,
    pub required: bool,
    pub default: Option<serde_json::Value>,
    pub allowed: Option<Vec<serde_json::Value>>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    Block,
    Skip,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub ordered: bool,
    pub ordering_key: Option<Expr>,
    pub concurrency: usize,
    pub retry: Vec<Duration>,
    pub on_exhausted: OnExhausted,
}

#[derive(Debug, Clone)]
pub struct ResponseSettings {
    pub mode: Mode,
    pub timeout: Duration,
}

/// One trigger and its flow.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub key: TriggerKey,
    pub file: PathBuf,
    pub description: Option<String>,
    pub methods: Vec<Method>,
    pub enabled: bool,
    pub auth: Auth,
    pub params: Vec<Param>,
    pub delivery: Delivery,
    pub response: ResponseSettings,
    /// `trace: full`: the trace keeps the variables before and after each step.
    pub trace_full: bool,
    pub steps: Vec<Step>,
}

impl Trigger {
    pub fn allows(&self, method: Method) -> bool {
        self.methods.contains(&method)
    }

    pub fn allow_header(&self) -> String {
        self.methods
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A step with what every step may carry.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: Option<std::sync::Arc<str>>,
    /// Where the step sits in the file, e.g. `steps[2].then[0]`.
    pub path: std::sync::Arc<str>,
    pub kind: StepKind,
}

impl Step {
    /// Shown in traces and error answers: the step's name, else its path.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.path)
    }
}

/// What a `set` assigns: an expression's value, or data from the file.
#[derive(Debug, Clone)]
pub enum SetValue {
    Expr(Expr),
    Data(jaq_json::Val),
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Set(Vec<(String, SetValue)>),
    If {
        cond: Expr,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
    ForEach {
        items: Expr,
        var: String,
        body: Vec<Step>,
        collect: Option<Expr>,
        into: Option<String>,
    },
    Respond {
        status: u16,
        headers: Vec<(String, Template)>,
        body: Option<Expr>,
    },
    Fail {
        status: u16,
        message: Expr,
    },
    Log(Expr),
}

impl StepKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Set(_) => "set",
            Self::If { .. } => "if",
            Self::ForEach { .. } => "for_each",
            Self::Respond { .. } => "respond",
            Self::Fail { .. } => "fail",
            Self::Log(_) => "log",
        }
    }
}
