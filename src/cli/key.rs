//! `flowgate key new`: an API key for a tenant's callers (generated or given) and
//! the line of `_tenant.yaml` with its hash. `flowgate token new`: an admin
//! token and the `[[admin_tokens]]` entry of `flowgate.toml` with its hash.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::domain::TenantName;

pub fn new(label: &str, key: Option<String>, as_json: bool) -> Result<ExitCode> {
    let (key, hash) = secret(label, key, "--key")?;
    if as_json {
        println!("{}", json!({"label": label, "key": key, "hash": hash}));
    } else {
        println!("key: {key}");
        println!("(shown once: only its hash is kept)");
        println!();
        println!("add to the tenant's _tenant.yaml under api_keys:");
        println!("  {label}: \"{hash}\"");
        println!();
        println!(
            "(an API key for callers of the tenant's triggers; an admin token is `flowgate token new`)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// An admin token for `/_admin`, seeing `tenants` only when given.
pub fn new_token(
    label: &str,
    token: Option<String>,
    tenants: Option<Vec<String>>,
    as_json: bool,
) -> Result<ExitCode> {
    let tenants = tenants
        .map(|names| {
            names
                .into_iter()
                .map(|t| {
                    TenantName::parse(t.trim())
                        .with_context(|| format!("--tenants: `{t}`"))
                        .map(|n| n.as_str().to_owned())
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let (token, hash) = secret(label, token, "--token")?;
    if as_json {
        println!(
            "{}",
            json!({"label": label, "token": token, "hash": hash, "tenants": tenants})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("token: {token}");
    println!("(shown once: only its hash is kept)");
    println!();
    println!("add to flowgate.toml:");
    println!();
    print!("{}", admin_token_toml(label, &hash, tenants.as_deref()));
    Ok(ExitCode::SUCCESS)
}

/// The `[[admin_tokens]]` entry (labels, hashes and tenant names need no escaping:
/// all are checked to be plain).
fn admin_token_toml(label: &str, hash: &str, tenants: Option<&[String]>) -> String {
    let mut toml = format!("[[admin_tokens]]\nlabel = \"{label}\"\nhash = \"{hash}\"\n");
    match tenants {
        Some(names) => {
            let quoted: Vec<String> = names.iter().map(|t| format!("\"{t}\"")).collect();
            toml.push_str(&format!("tenants = [{}]\n", quoted.join(", ")));
        }
        None => toml.push_str("# no `tenants`: sees every tenant\n"),
    }
    toml
}

/// The secret (given as `flag`, or a new one) and its argon2id hash, for `label`.
fn secret(label: &str, given: Option<String>, flag: &str) -> Result<(String, String)> {
    if label.is_empty()
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("--label may only contain letters, digits, `_` and `-`");
    }
    let secret = match given {
        Some(k) if k.trim().is_empty() => bail!("{flag} is empty"),
        Some(k) => k,
        None => crate::auth::keys::generate(),
    };
    let hash = crate::auth::keys::hash(&secret)?;
    Ok((secret, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_entry_reads_back_as_settings() {
        for tenants in [None, Some(vec!["acme".to_owned(), "beta".to_owned()])] {
            let text = admin_token_toml("ops", "$argon2id$v=19$x", tenants.as_deref());
            #[derive(serde::Deserialize)]
            struct File {
                admin_tokens: Vec<crate::config::AdminToken>,
            }
            let file: File = toml::from_str(&text).unwrap();
            assert_eq!(file.admin_tokens[0].label, "ops");
            assert_eq!(file.admin_tokens[0].hash, "$argon2id$v=19$x");
            assert_eq!(file.admin_tokens[0].tenants, tenants);
        }
    }
}
