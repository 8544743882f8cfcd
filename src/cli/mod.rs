//! The subcommands other than `serve`: what they do, apart from argument parsing
//! (`main.rs` parses and calls in here). Like `main.rs` and `startup.rs`, this
//! is the top of the crate, so its functions answer with `anyhow` errors that
//! `main` prints.

pub mod check;
pub mod flowtest;
pub mod key;
pub mod messages;
pub mod migrate;
pub mod run;

use anyhow::{Context, Result};

use crate::config::Settings;

/// A runtime on this thread, for a subcommand's few awaits.
fn current_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Runs flows in this process (`run`, `test`) as `serve` does: budgets and jq
/// workers from the settings (`flowgate.toml`, `FLOWGATE_*`).
pub fn local_executor() -> Result<crate::engine::Executor> {
    let settings =
        Settings::load(None).map_err(|e| anyhow::anyhow!("settings: {}", e.join("; ")))?;
    let options = settings.sandbox_options().map_err(anyhow::Error::msg)?;
    Ok(crate::engine::Executor::new(
        crate::engine::Sandbox::new(options),
        settings.flow_limits(),
    ))
}
