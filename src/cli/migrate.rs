//! `flowgate migrate`: the store's tables created or brought up to date.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::Settings;
use crate::store::{Store, redact_url};

pub fn migrate(store: &str) -> Result<ExitCode> {
    let runtime = super::current_thread()?;
    runtime.block_on(async {
        let options = Settings::default().pg_options();
        let opened = Store::connect(store, options)
            .await
            .with_context(|| format!("cannot migrate {}", redact_url(store)))?;
        opened.close().await.ok();
        println!("ok: {} is up to date", redact_url(store));
        Ok(ExitCode::SUCCESS)
    })
}
