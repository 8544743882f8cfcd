//! Settings: defaults -> `flowgate.toml` -> `FLOWGATE_*` environment -> command line.
//! `validate` reports every problem at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::domain::Cidr;

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
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Largest request body in bytes.
    pub body_limit: usize,
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
    /// Proxies whose `X-Forwarded-For` names the caller (for `allow_ips`).
    pub trusted_proxies: Vec<Cidr>,
    /// Hosts `http` steps may call (`api.example.com`, `*.example.com`); empty: any.
    pub outbound_allow_hosts: Vec<String>,
    /// Refuse `http` steps to loopback, private and link-local addresses.
    pub outbound_deny_private: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            flows: PathBuf::from("./flows"),
            store: "sqlite://flowgate.db".into(),
            pool_size: 16,
            store_timeout: Duration::from_secs(2),
            lease: Duration::from_secs(15),
            workers: 0,
            body_limit: 10 * 1024 * 1024,
            max_backlog: 10_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            reload_interval: Duration::from_millis(250),
            key_cache_size: 10_000,
            key_verify_parallel: 2,
            trusted_proxies: Vec::new(),
            outbound_allow_hosts: Vec::new(),
            outbound_deny_private: false,
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

impl Settings {
    /// How the PostgreSQL store is reached.
    pub fn pg_options(&self) -> crate::store::PgOptions {
        crate::store::PgOptions {
            pool_size: self.pool_size,
            connect_timeout: self.store_timeout,
            lease: self.lease,
        }
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
                "FLOWGATE_WORKERS" => match v.parse() {
                    Ok(n) => self.workers = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_BODY_LIMIT" => match v.parse() {
                    Ok(n) => self.body_limit = n,
                    Err(_) => errors.push(bad("not a number of bytes")),
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
                "FLOWGATE_KEY_CACHE_SIZE" => match v.parse() {
                    Ok(n) => self.key_cache_size = n,
                    Err(_) => errors.push(bad("not a number")),
                },
                "FLOWGATE_TRUSTED_PROXIES" => {
                    match list(v).map(|s| s.parse()).collect::<Result<Vec<Cidr>, _>>() {
                        Ok(c) => self.trusted_proxies = c,
                        Err(e) => errors.push(bad(&e)),
                    }
                }
                "FLOWGATE_OUTBOUND_ALLOW_HOSTS" => {
                    self.outbound_allow_hosts = list(v).map(str::to_owned).collect()
                }
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
        if self.body_limit == 0 {
            errors.push("body_limit must be greater than 0".into());
        }
        if self.max_backlog == 0 {
            errors.push("max_backlog must be greater than 0".into());
        }
        if self.reload_interval.is_zero() {
            errors.push("reload_interval must be greater than 0".into());
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
}
