//! `flowgate key new`: an API key for a tenant's callers (generated or given) and
//! the `api_keys:` entry of `_tenant.yaml` with its hash. `flowgate token new`: an admin
//! token and the `[[admin_tokens]]` entry of `flowgate.toml` with its hash.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::config::AdminRole;
use crate::domain::TenantName;

/// A key for consumer `label`: a new one `fg_<id>_<secret>`, or the one given
/// (`--key`; with an id when it has the id form). Prints the key once and the
/// `api_keys:` entry of `_tenant.yaml` with its hash.
pub fn new(label: &str, key: Option<String>, as_json: bool) -> Result<ExitCode> {
    let given = key.is_some();
    let (key, hash) = secret(label, key, "--key")?;
    let id = crate::auth::keys::key_id(&key).map(str::to_owned);
    let yaml = api_keys_entry(label, id.as_deref(), &hash);
    if as_json {
        println!(
            "{}",
            json!({"label": label, "id": id, "key": key, "hash": hash, "yaml": yaml})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("key: {key}");
    println!("(shown once: only its hash is kept)");
    println!();
    println!("add to the tenant's _tenant.yaml under api_keys:");
    println!();
    for line in yaml.lines() {
        println!("  {line}");
    }
    println!();
    if id.is_some() {
        println!(
            "(to rotate: add only the `- id:` item to the label's `keys`, and remove the old item once callers use the new key)"
        );
    } else if given {
        println!("(a key without an id: checked against each such label's hash)");
    }
    println!(
        "(an API key for callers of the tenant's triggers; an admin token is `flowgate token new`)"
    );
    Ok(ExitCode::SUCCESS)
}

/// The `api_keys:` entry for `label` (labels, ids and PHC strings need no
/// escaping: all are checked to be plain).
fn api_keys_entry(label: &str, id: Option<&str>, hash: &str) -> String {
    match id {
        Some(id) => format!("{label}:\n  keys:\n    - id: {id}\n      hash: \"{hash}\"\n"),
        None => format!("{label}: \"{hash}\"\n"),
    }
}

/// An admin token for `/_admin`, seeing `tenants` only when given, of `role`
/// (`read` or `operate`).
pub fn new_token(
    label: &str,
    token: Option<String>,
    tenants: Option<Vec<String>>,
    role: &str,
    as_json: bool,
) -> Result<ExitCode> {
    let Some(role) = AdminRole::parse(role) else {
        bail!("--role is `read` or `operate`, not `{role}`");
    };
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
            json!({"label": label, "token": token, "hash": hash, "tenants": tenants, "role": role.as_str()})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("token: {token}");
    println!("(shown once: only its hash is kept)");
    println!();
    println!("add to flowgate.toml:");
    println!();
    print!(
        "{}",
        admin_token_toml(label, &hash, tenants.as_deref(), role)
    );
    Ok(ExitCode::SUCCESS)
}

/// The `[[admin_tokens]]` entry (labels, hashes and tenant names need no escaping:
/// all are checked to be plain).
fn admin_token_toml(
    label: &str,
    hash: &str,
    tenants: Option<&[String]>,
    role: AdminRole,
) -> String {
    let mut toml = format!(
        "[[admin_tokens]]\nlabel = \"{label}\"\nhash = \"{hash}\"\nrole = \"{}\"\n",
        role.as_str()
    );
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
        None if flag == "--key" => crate::auth::keys::generate().1,
        None => crate::auth::keys::generate_token(),
    };
    let hash = crate::auth::keys::hash(&secret)?;
    Ok((secret, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_keys_entry_reads_back_as_a_tenant() {
        for id in [Some("k3q7x2ab"), None] {
            let entry = api_keys_entry("webshop", id, "$argon2id$v=19$x");
            let text = format!(
                "api_keys:\n{}",
                entry
                    .lines()
                    .map(|l| format!("  {l}\n"))
                    .collect::<String>()
            );
            let raw: crate::flow::raw::RawTenant = serde_saphyr::from_str(&text).unwrap();
            match (&raw.api_keys["webshop"].value, id) {
                (crate::flow::raw::RawApiKey::Consumer(c), Some(id)) => {
                    assert_eq!(c.keys.value[0].value.id.value, id);
                    assert_eq!(c.keys.value[0].value.hash.value, "$argon2id$v=19$x");
                }
                (crate::flow::raw::RawApiKey::Hash(h), None) => assert_eq!(h, "$argon2id$v=19$x"),
                (other, _) => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_admin_token_entry_reads_back_as_settings() {
        for (tenants, role) in [
            (None, AdminRole::Operate),
            (
                Some(vec!["acme".to_owned(), "beta".to_owned()]),
                AdminRole::Read,
            ),
        ] {
            let text = admin_token_toml("ops", "$argon2id$v=19$x", tenants.as_deref(), role);
            #[derive(serde::Deserialize)]
            struct File {
                admin_tokens: Vec<crate::config::AdminToken>,
            }
            let file: File = toml::from_str(&text).unwrap();
            assert_eq!(file.admin_tokens[0].label, "ops");
            assert_eq!(file.admin_tokens[0].hash, "$argon2id$v=19$x");
            assert_eq!(file.admin_tokens[0].tenants, tenants);
            assert_eq!(file.admin_tokens[0].role, role);
        }
    }
}
