//! The settings checked as a whole: every problem is reported, not the first.

use std::time::Duration;

use super::Settings;

impl Settings {
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
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => errors.push(
                "tls_cert is set but tls_key is not: HTTPS needs the certificate and its key"
                    .into(),
            ),
            (None, Some(_)) => errors.push(
                "tls_key is set but tls_cert is not: HTTPS needs the certificate and its key"
                    .into(),
            ),
            _ => {}
        }
        if self.tls_reload_interval.is_zero() {
            errors.push("tls_reload_interval must be greater than 0".into());
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
                    "admin_tokens[{i}] ({}): `hash` is not an argon2id PHC string; make one with `flowgate token new --label {}`",
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
