//! The compiled, validated form of the flow files: what the engine and the HTTP
//! layer work with. Every expression here has compiled; every reference resolves.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::connect::{Connection, HttpConnection, Outbound, PgConnection, Secrets};
use crate::domain::{Cidr, EventKind, HmacRule, Limits, Mode, TenantName, TriggerKey};

use super::expr::Expr;
use super::schema::BodySchema;
use super::template::Template;

/// A tenant's settings from `_tenant.yaml`.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: TenantName,
    /// label -> argon2id PHC string: the keys without an id (pasted ones).
    pub api_keys: Vec<(String, String)>,
    /// SHA-256 over the key list: cached verifications are only trusted while
    /// it is unchanged.
    pub keys_fingerprint: [u8; 32],
    /// The keys with a public id (`keys:` of a label), by id.
    pub key_ids: IndexMap<String, KeyWithId>,
    /// label -> its `rate:`/`quota:`, for the labels that have any.
    pub limits: IndexMap<String, Limits>,
    /// user -> argon2id PHC string, for HTTP Basic callers
    pub basic_users: Vec<(String, String)>,
    /// Named connections, in file order.
    pub connections: IndexMap<String, Connection>,
    /// Request headers redacted besides the built-in ones (lower case).
    pub secret_headers: Arc<[String]>,
    /// Every secret of the tenant's files, removed from traces and step results.
    pub secrets: Arc<Secrets>,
    /// The server's outbound HTTP client, for `http` steps.
    pub outbound: Arc<Outbound>,
    /// Outbound event webhooks (`subscriptions:`).
    pub subscriptions: Vec<Subscription>,
    /// The events some enabled subscription wants (`EventKind::bit`).
    pub events_mask: u16,
    /// Whether some enabled subscription lists business events.
    pub wants_business: bool,
}

/// A key of `_tenant.yaml` with a public id: looked up by its id, so that only
/// its hash is verified.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyWithId {
    pub id: String,
    /// The consumer it belongs to (the label triggers list).
    pub label: String,
    /// argon2id PHC string
    pub hash: String,
    /// From then on the key is refused (`key_expired`).
    pub expires: Option<time::OffsetDateTime>,
    /// SHA-256 over label, id and hash: a cached verification of this key is
    /// trusted only while it is unchanged. Made once, here, not per request.
    pub fingerprint: [u8; 32],
}

impl KeyWithId {
    pub fn new(
        id: String,
        label: String,
        hash: String,
        expires: Option<time::OffsetDateTime>,
    ) -> Self {
        use sha2::{Digest, Sha256};
        let mut fp = Sha256::new();
        for part in [&label, &id, &hash] {
            fp.update(part.as_bytes());
            fp.update([0]);
        }
        Self {
            id,
            label,
            hash,
            expires,
            fingerprint: fp.finalize().into(),
        }
    }

    pub fn expired_at(&self, now: time::OffsetDateTime) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }
}

/// One outbound event webhook of a tenant (its type is the domain's, shared
/// with the subscriptions the admin API stores).
pub use crate::domain::Subscription;

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
            key_ids: IndexMap::new(),
            limits: IndexMap::new(),
            basic_users: Vec::new(),
            connections: IndexMap::new(),
            secret_headers: Arc::from(Vec::new()),
            secrets: Arc::new(Secrets::default()),
            outbound: Arc::new(Outbound::new(Default::default())),
            subscriptions: Vec::new(),
            events_mask: 0,
            wants_business: false,
        }
    }

    /// The hash of a Basic user.
    pub fn basic_hash(&self, user: &str) -> Option<&str> {
        self.basic_users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, h)| h.as_str())
    }

    pub fn with_subscriptions(mut self, subscriptions: Vec<Subscription>) -> Self {
        self.events_mask = EventKind::ALL
            .into_iter()
            .filter(|k| {
                subscriptions
                    .iter()
                    .any(|s| s.enabled && s.events.iter().any(|p| p.matches(k.as_str())))
            })
            .fold(0, |m, k| m | k.bit());
        self.wants_business = subscriptions
            .iter()
            .any(|s| s.enabled && s.events.iter().any(|p| p.may_match_business()));
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

    /// The same tenant with these keys with ids.
    pub fn with_key_ids(mut self, keys: Vec<KeyWithId>) -> Self {
        self.key_ids = keys.into_iter().map(|k| (k.id.clone(), k)).collect();
        self
    }

    /// Every consumer label, with or without ids, once each in file order.
    pub fn key_labels(&self) -> Vec<&str> {
        let mut labels: Vec<&str> = Vec::new();
        let all = self.api_keys.iter().map(|(l, _)| l.as_str());
        for l in all.chain(self.key_ids.values().map(|k| k.label.as_str())) {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        labels
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
    /// HTTP Basic: any of these users of the tenant's `basic_users`.
    Basic(Vec<String>),
    /// A signature of the raw body with a shared secret.
    Hmac(Arc<HmacRule>),
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
    /// For the consumer document: what the parameter means to a caller.
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    Block,
    Skip,
}

/// Waits between runs of a failed message when a trigger gives no `retry:`.
pub const DEFAULT_RETRY: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];
/// Executions of one trigger at a time when it gives no `concurrency:`.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// How long a sync caller waits when a trigger gives no `response.timeout`.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Delivery {
    pub ordered: bool,
    pub ordering_key: Option<Expr>,
    pub concurrency: usize,
    pub retry: Vec<Duration>,
    pub on_exhausted: OnExhausted,
}

/// What becomes of a sync message whose caller got `202` at the timeout
/// (`response.on_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// It runs (or keeps running) as if the caller still waited.
    Continue,
    /// If it has not started, it is not run: it ends `cancelled`.
    Cancel,
}

#[derive(Debug, Clone)]
pub struct ResponseSettings {
    pub mode: Mode,
    pub timeout: Duration,
    pub on_timeout: OnTimeout,
}

/// A trigger's own execution budgets (`limits:`); what is absent comes from the
/// settings `flow_time_limit` and `flow_memory_limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TriggerLimits {
    pub time: Option<Duration>,
    /// Bytes.
    pub memory: Option<u64>,
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
    /// Caller addresses allowed (empty: any).
    pub allow_ips: Vec<Cidr>,
    /// The tenant's extra secret request headers, redacted from the input document.
    pub secret_headers: Arc<[String]>,
    pub params: Vec<Param>,
    /// `body:`: the schema a request's decoded body must match before it is queued.
    pub body_schema: Option<BodySchema>,
    /// `response_schema:`: the body of the flow's 2xx `respond` answers, for the
    /// consumer document (answers are not checked against it at run time;
    /// `flowgate test` checks them).
    pub response_schema: Option<BodySchema>,
    pub delivery: Delivery,
    pub response: ResponseSettings,
    pub limits: TriggerLimits,
    /// `trace: full`: the trace keeps the variables before and after each step.
    pub trace_full: bool,
    pub steps: Vec<Step>,
    /// The input document's top-level fields the steps can read, when that is
    /// known: an execution converts only those for its expressions.
    pub reads: Option<Arc<[String]>>,
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

    /// As [`Self::label`], shared.
    pub fn label_arc(&self) -> Arc<str> {
        self.name.clone().unwrap_or_else(|| self.path.clone())
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
        /// Sent instead of `body` when the caller's Accept prefers XML.
        xml: Option<Expr>,
    },
    Fail {
        status: u16,
        message: Expr,
    },
    Log(Expr),
    Http(Box<HttpStep>),
    Sql(Box<SqlStep>),
    /// `sql` steps on `connection` inside run in one database transaction.
    Transaction {
        connection: Arc<PgConnection>,
        steps: Vec<Step>,
    },
    /// A business event, delivered to the tenant's subscribers once the
    /// execution succeeds.
    Emit {
        event: Arc<str>,
        data: Option<Expr>,
    },
}

/// How an `http` step encodes its `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEncoding {
    Json,
    /// `application/x-www-form-urlencoded` from an object.
    Form,
    /// A string sent as it is, with this content type (`text/*`, XML, ...).
    Text(String),
}

#[derive(Debug, Clone)]
pub struct HttpStep {
    pub method: reqwest::Method,
    pub url: Template,
    pub connection: Option<Arc<HttpConnection>>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Expr>,
    pub encoding: BodyEncoding,
    pub timeout: Option<Duration>,
    pub into: Option<String>,
    /// Non-2xx statuses that do not fail the step.
    pub accept_status: Vec<u16>,
    /// Waits before each new try of a transient failure.
    pub retry: Vec<Duration>,
    pub outbound: Arc<Outbound>,
    pub secrets: Arc<Secrets>,
}

#[derive(Debug, Clone)]
pub struct SqlStep {
    pub connection: Arc<PgConnection>,
    pub query: Arc<str>,
    pub params: Vec<Expr>,
    pub into: Option<String>,
    pub single: bool,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    /// `once: true`: the statement's effect is recorded with the message id and
    /// the step's name in `flowgate_effects`, in its transaction; a rerun of the
    /// message skips it and gets the stored result.
    pub once: bool,
}

/// The top-level input fields `steps` read, or `None` when some expression reads
/// the input in a way not known before it runs.
pub fn input_reads(steps: &[Step]) -> Option<Arc<[String]>> {
    fn walk(steps: &[Step], keys: &mut BTreeSet<String>) -> bool {
        steps.iter().all(|step| match &step.kind {
            StepKind::Set(items) => items.iter().all(|(_, v)| match v {
                SetValue::Expr(e) => e.root_keys(keys),
                SetValue::Data(_) => true,
            }),
            StepKind::If {
                cond,
                then,
                otherwise,
            } => cond.root_keys(keys) && walk(then, keys) && walk(otherwise, keys),
            StepKind::ForEach {
                items,
                body,
                collect,
                ..
            } => {
                items.root_keys(keys)
                    && walk(body, keys)
                    && collect.as_ref().is_none_or(|c| c.root_keys(keys))
            }
            StepKind::Respond {
                headers, body, xml, ..
            } => {
                headers.iter().all(|(_, t)| t.root_keys(keys))
                    && body.as_ref().is_none_or(|e| e.root_keys(keys))
                    && xml.as_ref().is_none_or(|e| e.root_keys(keys))
            }
            StepKind::Fail { message, .. } => message.root_keys(keys),
            StepKind::Log(e) => e.root_keys(keys),
            StepKind::Http(h) => {
                h.url.root_keys(keys)
                    && h.headers.iter().all(|(_, t)| t.root_keys(keys))
                    && h.body.as_ref().is_none_or(|e| e.root_keys(keys))
            }
            StepKind::Sql(q) => q.params.iter().all(|e| e.root_keys(keys)),
            StepKind::Transaction { steps, .. } => walk(steps, keys),
            StepKind::Emit { data, .. } => data.as_ref().is_none_or(|e| e.root_keys(keys)),
        })
    }
    let mut keys = BTreeSet::new();
    // `.vars` is the execution's own, never the document's.
    walk(steps, &mut keys).then(|| keys.into_iter().filter(|k| k != "vars").collect())
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
            Self::Http(_) => "http",
            Self::Sql(_) => "sql",
            Self::Transaction { .. } => "transaction",
            Self::Emit { .. } => "emit",
        }
    }
}
