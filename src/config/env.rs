//! `FLOWGATE_*` environment variables over the settings read from the file.

use std::path::PathBuf;

use crate::domain::Cidr;

use super::Settings;

impl Settings {
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
}

/// A comma-separated list, blanks dropped.
fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}
