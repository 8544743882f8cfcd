//! `flowgate key new`: an API key (generated or given) and the line of
//! `_tenant.yaml` with its hash.

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::json;

pub fn new(label: &str, key: Option<String>, as_json: bool) -> Result<ExitCode> {
    if label.is_empty()
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("--label may only contain letters, digits, `_` and `-`");
    }
    let key = match key {
        Some(k) if k.trim().is_empty() => bail!("--key is empty"),
        Some(k) => k,
        None => crate::auth::keys::generate(),
    };
    let hash = crate::auth::keys::hash(&key).map_err(anyhow::Error::msg)?;
    if as_json {
        println!("{}", json!({"label": label, "key": key, "hash": hash}));
    } else {
        println!("key: {key}");
        println!("(shown once: only its hash is kept)");
        println!();
        println!("add to _tenant.yaml under api_keys:");
        println!("  {label}: \"{hash}\"");
    }
    Ok(ExitCode::SUCCESS)
}
