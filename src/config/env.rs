//! `FLOWGATE_*` environment variables over the settings read from the file.

use std::path::PathBuf;
use std::time::Duration;

use crate::domain::Cidr;

use super::Settings;

/// A value parsed, or why it was refused.
type Parsed<T> = Result<T, Box<dyn std::error::Error>>;

impl Settings {
    /// Applies `FLOWGATE_*` variables; every bad value is reported.
    pub fn apply_env(&mut self, vars: &[(String, String)]) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for (k, v) in vars {
            let applied: Parsed<()> = match k.as_str() {
                "FLOWGATE_LISTEN" => {
                    self.listen = v.clone();
                    Ok(())
                }
                "FLOWGATE_FLOWS" => {
                    self.flows = PathBuf::from(v);
                    Ok(())
                }
                "FLOWGATE_STORE" => {
                    self.store = v.clone();
                    Ok(())
                }
                "FLOWGATE_POOL_SIZE" => number(v).map(|n| self.pool_size = n),
                "FLOWGATE_STORE_TIMEOUT" => duration(v).map(|d| self.store_timeout = d),
                "FLOWGATE_LEASE" => duration(v).map(|d| self.lease = d),
                "FLOWGATE_STORE_LOCK_TIMEOUT" => {
                    duration(v).map(|d| self.store_lock_timeout = Some(d))
                }
                "FLOWGATE_STORE_IDLE_IN_TRANSACTION_TIMEOUT" => {
                    duration(v).map(|d| self.store_idle_in_transaction_timeout = Some(d))
                }
                "FLOWGATE_WORKERS" => number(v).map(|n| self.workers = n),
                "FLOWGATE_BODY_LIMIT" => number(v)
                    .map(|n| self.body_limit = n)
                    .map_err(|_| "not a number of bytes".into()),
                "FLOWGATE_BODY_TIMEOUT" => duration(v).map(|d| self.body_timeout = d),
                "FLOWGATE_MAX_INPUT_DEPTH" => number(v).map(|n| self.max_input_depth = n),
                "FLOWGATE_AUTH_FAILURE_BUDGET" => number(v).map(|n| self.auth_failure_budget = n),
                "FLOWGATE_SUBSCRIPTIONS_DENY_PRIVATE" => {
                    flag(v).map(|b| self.subscriptions_deny_private = b)
                }
                "FLOWGATE_MAX_BACKLOG" => number(v).map(|n| self.max_backlog = n),
                "FLOWGATE_RETENTION" => duration(v).map(|d| self.retention = d),
                "FLOWGATE_RELOAD_INTERVAL" => duration(v).map(|d| self.reload_interval = d),
                "FLOWGATE_SUBSCRIPTIONS_ALLOW_HTTP" => {
                    flag(v).map(|b| self.subscriptions_allow_http = b)
                }
                "FLOWGATE_SUBSCRIPTIONS_RETRY" => v
                    .split(',')
                    .map(|d| duration(d.trim()))
                    .collect::<Parsed<Vec<_>>>()
                    .map(|d| self.subscriptions_retry = d),
                "FLOWGATE_KEY_CACHE_SIZE" => number(v).map(|n| self.key_cache_size = n),
                "FLOWGATE_TRUSTED_PROXIES" => list(v)
                    .map(str::parse)
                    .collect::<Result<Vec<Cidr>, _>>()
                    .map(|c| self.trusted_proxies = c)
                    .map_err(Into::into),
                "FLOWGATE_OUTBOUND_ALLOW_HOSTS" => {
                    self.outbound_allow_hosts = list(v).map(str::to_owned).collect();
                    Ok(())
                }
                "FLOWGATE_FLOW_TIME_LIMIT" => duration(v).map(|d| self.flow_time_limit = d),
                "FLOWGATE_FLOW_MEMORY_LIMIT" => crate::domain::parse_size(v)
                    .map(|n| self.flow_memory_limit = n)
                    .map_err(Into::into),
                "FLOWGATE_EXECUTOR_THREADS" => number(v).map(|n| self.executor_threads = n),
                "FLOWGATE_TENANT_MAX_RUNNING" => number(v).map(|n| self.tenant_max_running = n),
                "FLOWGATE_EXECUTOR_BINARY" => {
                    self.executor_binary = Some(PathBuf::from(v));
                    Ok(())
                }
                "FLOWGATE_TLS_CERT" => {
                    self.tls_cert = Some(PathBuf::from(v));
                    Ok(())
                }
                "FLOWGATE_TLS_KEY" => {
                    self.tls_key = Some(PathBuf::from(v));
                    Ok(())
                }
                "FLOWGATE_TLS_RELOAD_INTERVAL" => duration(v).map(|d| self.tls_reload_interval = d),
                "FLOWGATE_OUTBOUND_DENY_PRIVATE" => flag(v).map(|b| self.outbound_deny_private = b),
                _ => Ok(()),
            };
            if let Err(why) = applied {
                errors.push(format!("{k}={v}: {why}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn number<T: std::str::FromStr>(v: &str) -> Parsed<T> {
    v.parse().map_err(|_| "not a number".into())
}

fn duration(v: &str) -> Parsed<Duration> {
    Ok(humantime::parse_duration(v)?)
}

/// `true`/`1` or `false`/`0`.
fn flag(v: &str) -> Parsed<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("not true or false".into()),
    }
}

/// A comma-separated list, blanks dropped.
fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}
