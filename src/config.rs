//! Settings: defaults -> `flowgate.toml` -> `FLOWGATE_*` environment -> command line.
//! `validate` reports every problem at once.

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
}

/// One admin token: `flowgate key new --label NAME` makes the hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    pub label: String,
    pub hash: String,
    /// The tenants it may see; absent means every tenant.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
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
        }
    }
}

/// A comma-separated list, blanks dropped.
fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
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

    /// Applies `FLOWGATE_*` variables; every bad value is reported.
    pub fn apply_env(&mut self, vars: &[(String, String)]) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for (k, v) in vars {
            let bad = |what: &str| format!("{k}={v}: {what}");
            match k.as_str() {
                "FLOWGATE_LISTEN" => self.listen = v.clone(),
                "FLOWGATE_FLOWS" => self.flows = PathBuf::from(v),
                "FLOWGATE_STORE" => self.store = v.clone(),
                "FLOWGATE_POOL_SIZE" => match v.parse() {
                    Ok(n) => self.pool_size = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_STORE_TIMEOUT" => match humantime::parse_duration(v) {
                    Ok(d) => self.store_timeout = d,
                    Err(e) => errors.push(bad(&e.to_string())),
                },
                "FLOWGATE_LEASE" => match humantime::parse_duration(v) {
                    Ok(d) => self.lease = d,
                    Err(e) => errors.push(bad(&e.to_string())),
                },
                "FLOWGATE_STORE_LOCK_TIMEOUT" => match humantime::parse_duration(v) {
                    Ok(d) => self.store_lock_timeout = Some(d),
                    Err(e) => errors.push(bad(&e.to_string())),
                },
                "FLOWGATE_STORE_IDLE_IN_TRANSACTION_TIMEOUT" => {
                    match humantime::parse_duration(v) {
                        Ok(d) => self.store_idle_in_transaction_timeout = Some(d),
                        Err(e) => errors.push(bad(&e.to_string())),
                    }
                }
                "FLOWGATE_WORKERS" => match v.parse() {
                    Ok(n) => self.workers = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_BODY_LIMIT" => match v.parse() {
                    Ok(n) => self.body_limit = n,
                    Err(_) => errors.push(bad("not a number of bytes")),
                },
                "FLOWGATE_BODY_TIMEOUT" => match humantime::parse_duration(v) {
                    Ok(d) => self.body_timeout = d,
                    Err(e) => errors.push(bad(&e.to_string())),
                },
                "FLOWGATE_MAX_INPUT_DEPTH" => match v.parse() {
                    Ok(n) => self.max_input_depth = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_AUTH_FAILURE_BUDGET" => match v.parse() {
                    Ok(n) => self.auth_failure_budget = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_SUBSCRIPTIONS_DENY_PRIVATE" => match v.as_str() {
                    "true" | "1" => self.subscriptions_deny_private = true,
                    "false" | "0" => self.subscriptions_deny_private = false,
                    _ => errors.push(bad("not true or false")),
                },
                "FLOWGATE_MAX_BACKLOG" => match v.parse() {
                    Ok(n) => self.max_backlog = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_RETENTION" => match humantime::parse_duration(v) {
                    Ok(d) => self.retention = d,
                    Err(e) => errors.push(bad(&e.to_string())),
                },
                "FLOWGATE_RELOAD_INTERVAL" => match humantime::parse_duration(v) {
                    Ok(d) => self.reload_interval = d,
                    Err(e) => errors.push(bad(&e.to_string())),
                },
                "FLOWGATE_SUBSCRIPTIONS_ALLOW_HTTP" => match v.as_str() {
                    "true" | "1" => self.subscriptions_allow_http = true,
                    "false" | "0" => self.subscriptions_allow_http = false,
                    _ => errors.push(bad("not true or false")),
                },
                "FLOWGATE_SUBSCRIPTIONS_RETRY" => match v
                    .split(',')
                    .map(|d| humantime::parse_duration(d.trim()))
                    .collect::<Result<Vec<_>, _>>()
                {
                    Ok(d) => self.subscriptions_retry = d,
                    Err(e) => errors.push(bad(&e.to_string())),
                },
                "FLOWGATE_KEY_CACHE_SIZE" => match v.parse() {
                    Ok(n) => self.key_cache_size = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_TRUSTED_PROXIES" => {
                    match list(v).map(|s| s.parse()).collect::<Result<Vec<Cidr>, _>>() {
                        Ok(c) => self.trusted_proxies = c,
                        Err(e) => errors.push(bad(&e.to_string())),
                    }
                }
                "FLOWGATE_OUTBOUND_ALLOW_HOSTS" => {
                    self.outbound_allow_hosts = list(v).map(str::to_owned).collect()
                }
                "FLOWGATE_FLOW_TIME_LIMIT" => match humantime::parse_duration(v) {
                    Ok(d) => self.flow_time_limit = d,
                    Err(e) => errors.push(bad(&e.to_string())),
                },
                "FLOWGATE_FLOW_MEMORY_LIMIT" => match crate::domain::parse_size(v) {
                    Ok(n) => self.flow_memory_limit = n,
                    Err(e) => errors.push(bad(&e.to_string())),
                },
                "FLOWGATE_EXECUTOR_THREADS" => match v.parse() {
                    Ok(n) => self.executor_threads = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_TENANT_MAX_RUNNING" => match v.parse() {
                    Ok(n) => self.tenant_max_running = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_EXECUTOR_BINARY" => self.executor_binary = Some(PathBuf::from(v)),
                "FLOWGATE_OUTBOUND_DENY_PRIVATE" => match v.as_str() {
                    "true" | "1" => self.outbound_deny_private = true,
                    "false" | "0" => self.outbound_deny_private = false,
                    _ => errors.push(bad("not true or false")),
                },
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The outbound policy of `http` steps.
    pub fn outbound_policy(&self) -> crate::connect::OutboundPolicy {
        crate::connect::OutboundPolicy {
            allow_hosts: self.outbound_allow_hosts.clone(),
            deny_private: self.outbound_deny_private,
        }
    }

    /// Every problem with the settings.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err()
            && std::net::ToSocketAddrs::to_socket_addrs(self.listen.as_str()).is_err()
        {
            errors.push(format!(
                "listen: `{}` is not an address like 0.0.0.0:8080",
                self.listen
            ));
        }
        if !self.store.starts_with("sqlite://") && !crate::store::is_postgres(&self.store) {
            errors.push(format!(
                "store: `{}` is not sqlite://PATH or postgres://...",
                self.store
            ));
        }
        if self.pool_size < 2 {
            errors.push("pool_size must be at least 2".into());
        }
        if self.lease < Duration::from_secs(1) {
            errors.push("lease must be at least 1s".into());
        }
        if self.store_timeout.is_zero() {
            errors.push("store_timeout must be greater than 0".into());
        }
        for (name, value) in [
            ("store_lock_timeout", self.store_lock_timeout),
            (
                "store_idle_in_transaction_timeout",
                self.store_idle_in_transaction_timeout,
            ),
        ] {
            match value {
                Some(d) if d.is_zero() || d >= self.lease => errors.push(format!(
                    "{name} must be greater than 0 and below the lease ({}), not {}",
                    humantime::format_duration(self.lease),
                    humantime::format_duration(d)
                )),
                _ => {}
            }
        }
        if self.body_limit == 0 {
            errors.push("body_limit must be greater than 0".into());
        }
        if self.body_timeout.is_zero() {
            errors.push("body_timeout must be greater than 0".into());
        }
        let deepest = crate::domain::depth::MAX_INPUT_DEPTH;
        if !(1..=deepest).contains(&self.max_input_depth) {
            errors.push(format!("max_input_depth must be between 1 and {deepest}"));
        }
        if self.auth_failure_budget == 0 {
            errors.push("auth_failure_budget must be at least 1 (failed verifications per minute and address)".into());
        }
        if self.max_backlog == 0 {
            errors.push("max_backlog must be greater than 0".into());
        }
        if self.reload_interval.is_zero() {
            errors.push("reload_interval must be greater than 0".into());
        }
        if self.flow_time_limit.is_zero() {
            errors.push("flow_time_limit must be greater than 0".into());
        }
        if self.flow_memory_limit == 0 {
            errors.push("flow_memory_limit must be greater than 0".into());
        }
        if let Some(b) = &self.executor_binary
            && !b.is_file()
        {
            errors.push(format!("executor_binary: `{}` is not a file", b.display()));
        }
        if self.subscriptions_poll.is_zero() {
            errors.push("subscriptions_poll must be greater than 0".into());
        }
        for (i, t) in self.admin_tokens.iter().enumerate() {
            if t.label.is_empty() {
                errors.push(format!("admin_tokens[{i}]: `label` is empty"));
            }
            if !t.hash.starts_with("$argon2id$")
                || argon2::password_hash::phc::PasswordHash::new(&t.hash).is_err()
            {
                errors.push(format!(
                    "admin_tokens[{i}] ({}): `hash` is not an argon2id PHC string; make one with `flowgate key new --label {}`",
                    t.label, t.label
                ));
            }
            for tenant in t.tenants.iter().flatten() {
                if let Err(e) = crate::domain::TenantName::parse(tenant) {
                    errors.push(format!("admin_tokens[{i}] ({}): tenant {e}", t.label));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env() {
        let s: Settings =
            toml::from_str("listen = \"127.0.0.1:9000\"\nretention = \"2d\"\n").unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.retention, Duration::from_secs(2 * 86400));
        assert_eq!(s.max_backlog, 10_000);
        let mut s = s;
        let errs = s
            .apply_env(&[
                ("FLOWGATE_STORE".into(), "sqlite:///tmp/x.db".into()),
                ("FLOWGATE_MAX_BACKLOG".into(), "lots".into()),
            ])
            .unwrap_err();
        assert_eq!(s.store, "sqlite:///tmp/x.db");
        assert_eq!(
            errs,
            vec!["FLOWGATE_MAX_BACKLOG=lots: not a number".to_owned()]
        );
        assert!(toml::from_str::<Settings>("nope = 1").is_err());
    }

    #[test]
    fn store_session_timeouts_default_below_the_lease() {
        let mut s = Settings::default();
        let o = s.pg_options();
        assert_eq!(o.lock_timeout, Duration::from_secs(5));
        assert_eq!(o.idle_in_transaction_timeout, Duration::from_secs(5));
        s.apply_env(&[("FLOWGATE_LEASE".into(), "2s".into())])
            .unwrap();
        assert_eq!(s.pg_options().lock_timeout, Duration::from_secs(1));
        s.apply_env(&[
            ("FLOWGATE_STORE_LOCK_TIMEOUT".into(), "300ms".into()),
            (
                "FLOWGATE_STORE_IDLE_IN_TRANSACTION_TIMEOUT".into(),
                "2s".into(),
            ),
        ])
        .unwrap();
        assert_eq!(s.pg_options().lock_timeout, Duration::from_millis(300));
        let errs = s.validate().unwrap_err();
        assert_eq!(
            errs,
            vec!["store_idle_in_transaction_timeout must be greater than 0 and below the lease (2s), not 2s".to_owned()]
        );
        let file: Settings = toml::from_str("store_lock_timeout = \"1s\"").unwrap();
        assert_eq!(file.store_lock_timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn budgets_and_executors() {
        let s = Settings::default();
        assert_eq!(s.flow_time_limit, Duration::from_secs(30));
        assert_eq!(s.flow_memory_limit, 256 << 20);
        assert_eq!(s.tenant_max_running(), 2 * s.executor_threads());
        let s: Settings = toml::from_str(
            "flow_time_limit = \"2s\"\nflow_memory_limit = \"64MiB\"\nexecutor_threads = 3\n",
        )
        .unwrap();
        assert_eq!(s.flow_limits().time, Duration::from_secs(2));
        assert_eq!(s.flow_limits().memory, 64 << 20);
        assert_eq!(s.tenant_max_running(), 6);
        assert_eq!(s.sandbox_options().unwrap().max_workers, 12);
        let mut s = Settings::default();
        let errs = s
            .apply_env(&[
                ("FLOWGATE_FLOW_MEMORY_LIMIT".into(), "1GiB".into()),
                ("FLOWGATE_TENANT_MAX_RUNNING".into(), "5".into()),
                ("FLOWGATE_FLOW_TIME_LIMIT".into(), "soon".into()),
            ])
            .unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((s.flow_memory_limit, s.tenant_max_running()), (1 << 30, 5));
        assert!(toml::from_str::<Settings>("flow_memory_limit = \"lots\"").is_err());
        let zero: Settings =
            toml::from_str("flow_memory_limit = 0\nflow_time_limit = \"0s\"").unwrap();
        assert_eq!(zero.validate().unwrap_err().len(), 2);
    }

    #[test]
    fn admin_tokens_and_subscription_settings() {
        let s: Settings = toml::from_str(
            "subscriptions_retry = [\"1s\", \"2m\"]\n[[admin_tokens]]\nlabel = \"ops\"\nhash = \"nope\"\ntenants = [\"acme\", \"_x\"]\n",
        )
        .unwrap();
        assert_eq!(
            s.subscriptions_retry,
            vec![Duration::from_secs(1), Duration::from_secs(120)]
        );
        let errs = s.validate().unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("flowgate key new"));
        assert!(errs[1].contains("reserved"));
        assert_eq!(Settings::default().subscriptions_retry.len(), 8);
        let mut s = Settings::default();
        s.apply_env(&[("FLOWGATE_SUBSCRIPTIONS_RETRY".into(), "5s, 30s".into())])
            .unwrap();
        assert_eq!(
            s.subscriptions_retry,
            vec![Duration::from_secs(5), Duration::from_secs(30)]
        );
    }
}
