//! Settings: defaults -> `flowgate.toml` -> `FLOWGATE_*` environment -> command line.
//! `validate` reports every problem at once.
//!
//! Here the settings, their defaults and what is derived from them; reading
//! `FLOWGATE_*` in `env.rs`, checking in `validate.rs`.

mod env;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::domain::Cidr;
use crate::engine::{Limits, SandboxOptions};

/// This binary could not be found to run jq workers (`executor_binary` unset).
#[derive(Debug, thiserror::Error)]
#[error("executor_binary: cannot find this binary: {0}")]
pub struct NoBinary(#[source] std::io::Error);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// The flows directory.
    pub flows: PathBuf,
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`
    pub store: String,
    /// PostgreSQL: connections per node.
    pub pool_size: usize,
    /// PostgreSQL: how long to wait for a connection (then 503).
    #[serde(deserialize_with = "duration")]
    pub store_timeout: Duration,
    /// PostgreSQL: a node's claim on a message or lane lapses this long after its
    /// last heartbeat, and another node takes the work over.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    /// PostgreSQL: the longest a store statement waits for a lock; default half
    /// the lease, at most 5 s.
    #[serde(deserialize_with = "opt_duration")]
    pub store_lock_timeout: Option<Duration>,
    /// PostgreSQL: a store session idle inside a transaction this long is ended
    /// by the server, and its locks released; default half the lease, at most 5 s.
    #[serde(deserialize_with = "opt_duration")]
    pub store_idle_in_transaction_timeout: Option<Duration>,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Time allowed to receive a request's body once its head has arrived (408 past it).
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// How deep a JSON or XML body may nest (400 `too_deep` past it).
    pub max_input_depth: usize,
    /// Messages per trigger queued or running on this node before 429.
    pub max_backlog: usize,
    /// How long finished messages are kept.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// How often the flows directory is checked for changes.
    #[serde(deserialize_with = "duration")]
    pub reload_interval: Duration,
    /// API keys whose verification result is cached.
    pub key_cache_size: usize,
    /// argon2 verifications that may run at once.
    pub key_verify_parallel: usize,
    /// Failed verifications (wrong keys, tokens, passwords) a client address may
    /// cause per minute before it gets 429 without any more being verified.
    pub auth_failure_budget: u32,
    /// Proxies whose `X-Forwarded-For` names the caller (for `allow_ips`).
    pub trusted_proxies: Vec<Cidr>,
    /// Hosts `http` steps may call (`api.example.com`, `*.example.com`); empty: any.
    pub outbound_allow_hosts: Vec<String>,
    /// Refuse `http` steps to loopback, private and link-local addresses.
    pub outbound_deny_private: bool,
    /// Tokens for `/_admin` (argon2id hashes), each global or for some tenants.
    pub admin_tokens: Vec<AdminToken>,
    /// Event subscriptions may use `http://` URLs (local use); otherwise https only.
    pub subscriptions_allow_http: bool,
    /// Refuse event deliveries to loopback, private and link-local addresses.
    pub subscriptions_deny_private: bool,
    /// Delays between attempts at an event delivery; after the last, it has failed.
    #[serde(deserialize_with = "durations")]
    pub subscriptions_retry: Vec<Duration>,
    /// How often due event deliveries are looked for.
    #[serde(deserialize_with = "duration")]
    pub subscriptions_poll: Duration,
    /// Time allowed for one event delivery request.
    #[serde(deserialize_with = "duration")]
    pub subscriptions_timeout: Duration,
    /// How long one execution may run (a trigger's `limits.time` overrides it).
    #[serde(deserialize_with = "duration")]
    pub flow_time_limit: Duration,
    /// Memory one execution's values and evaluations may take, in bytes
    /// (written like `256MiB`; a trigger's `limits.memory` overrides it).
    #[serde(deserialize_with = "size")]
    pub flow_memory_limit: u64,
    /// Executor threads: jq worker processes flowgate plans for; up to four
    /// per executor thread evaluate at once. 0 = one per core.
    pub executor_threads: usize,
    /// Executions of one tenant running at once on this node (from the queue),
    /// and its expressions evaluating at once in workers. 0 = twice the
    /// executor threads.
    pub tenant_max_running: usize,
    /// The program started as a jq worker; absent: this flowgate binary.
    pub executor_binary: Option<PathBuf>,
    /// HTTPS: the server's certificate chain (PEM), leaf first; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key (PEM: PKCS#8, RSA or SEC1).
    pub tls_key: Option<PathBuf>,
    /// How often the certificate and key files are checked for changes.
    #[serde(deserialize_with = "duration")]
    pub tls_reload_interval: Duration,
}

/// One admin token: `flowgate token new --label NAME` makes the entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    pub label: String,
    pub hash: String,
    /// The tenants it may see; absent means every tenant.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// What it may do there: `operate` (the default) or only `read`.
    #[serde(default)]
    pub role: AdminRole,
}

/// What an admin token may do with what it sees. A `read` token sees everything
/// its tenants allow (the log history, messages, deliveries, lanes) but changes
/// nothing: no replay, skip, unblock or redelivery, no change to subscriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    Read,
    #[default]
    Operate,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "operate" => Some(Self::Operate),
            _ => None,
        }
    }
}

/// The default retry schedule of event deliveries.
pub const SUBSCRIPTIONS_RETRY: [u64; 8] = [5, 30, 120, 600, 1800, 3600, 7200, 14400];

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            flows: PathBuf::from("./flows"),
            store: "sqlite://flowgate.db".into(),
            pool_size: 16,
            store_timeout: Duration::from_secs(2),
            lease: Duration::from_secs(15),
            store_lock_timeout: None,
            store_idle_in_transaction_timeout: None,
            workers: 0,
            body_limit: 10 * 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            max_input_depth: 128,
            max_backlog: 10_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            reload_interval: Duration::from_millis(250),
            key_cache_size: 10_000,
            key_verify_parallel: 2,
            auth_failure_budget: 20,
            trusted_proxies: Vec::new(),
            outbound_allow_hosts: Vec::new(),
            outbound_deny_private: false,
            admin_tokens: Vec::new(),
            subscriptions_allow_http: false,
            subscriptions_deny_private: true,
            subscriptions_retry: SUBSCRIPTIONS_RETRY
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            subscriptions_poll: Duration::from_secs(1),
            subscriptions_timeout: Duration::from_secs(10),
            flow_time_limit: Limits::default().time,
            flow_memory_limit: Limits::default().memory,
            executor_threads: 0,
            tenant_max_running: 0,
            executor_binary: None,
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: Duration::from_secs(10),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(s) => crate::domain::parse_size(&s).map_err(serde::de::Error::custom),
    }
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
        .collect()
}

impl Settings {
    /// How the PostgreSQL store is reached.
    pub fn pg_options(&self) -> crate::store::PgOptions {
        let derived = crate::store::PgOptions::session_timeout(self.lease);
        crate::store::PgOptions {
            pool_size: self.pool_size,
            connect_timeout: self.store_timeout,
            lease: self.lease,
            lock_timeout: self.store_lock_timeout.unwrap_or(derived),
            idle_in_transaction_timeout: self.store_idle_in_transaction_timeout.unwrap_or(derived),
        }
    }

    /// The default budgets of every execution.
    pub fn flow_limits(&self) -> Limits {
        Limits {
            time: self.flow_time_limit,
            memory: self.flow_memory_limit,
        }
    }

    /// `executor_threads`, with 0 resolved to the number of cores.
    pub fn executor_threads(&self) -> usize {
        match self.executor_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// `tenant_max_running`, with 0 resolved to twice the executor threads.
    pub fn tenant_max_running(&self) -> usize {
        match self.tenant_max_running {
            0 => 2 * self.executor_threads(),
            n => n,
        }
    }

    /// Where jq runs: `executor_binary` (else this binary), four workers per
    /// executor thread, `tenant_max_running` of them for one tenant.
    pub fn sandbox_options(&self) -> Result<SandboxOptions, NoBinary> {
        let binary = match &self.executor_binary {
            Some(b) => b.clone(),
            None => std::env::current_exe().map_err(NoBinary)?,
        };
        Ok(SandboxOptions {
            binary,
            max_workers: 4 * self.executor_threads(),
            tenant_max: self.tenant_max_running(),
        })
    }

    /// Defaults, then the file (when given or when `flowgate.toml` exists), then
    /// the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Vec<String>> {
        let mut settings = match file {
            Some(path) => Self::from_file(path)?,
            None if Path::new("flowgate.toml").is_file() => {
                Self::from_file(Path::new("flowgate.toml"))?
            }
            None => Self::default(),
        };
        let vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("FLOWGATE_"))
            .collect();
        settings.apply_env(&vars)?;
        Ok(settings)
    }

    fn from_file(path: &Path) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
        toml::from_str(&text).map_err(|e| vec![format!("{}: {e}", path.display())])
    }

    /// The outbound policy of `http` steps.
    pub fn outbound_policy(&self) -> crate::connect::OutboundPolicy {
        crate::connect::OutboundPolicy {
            allow_hosts: self.outbound_allow_hosts.clone(),
            deny_private: self.outbound_deny_private,
        }
    }
}

#[cfg(test)]
mod tests;
