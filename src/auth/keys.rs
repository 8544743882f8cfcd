//! API keys: generating them and hashing them for `_tenant.yaml` (`flowgate key new`).
//!
//! A key made today is `fg_<id>_<secret>`: `<id>` is 8 characters of lowercase
//! base32 (`a-z`, `2-7`), public, and names the one hash to verify; `<secret>` is
//! 32 random bytes in URL-safe base64 without padding (43 characters). A key of
//! exactly that shape is only ever looked up by its id; any other key (pasted
//! ones, and those made before ids) is searched among the labels without ids.

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use base64::Engine;

use crate::domain::key_id::{ID_ALPHABET, ID_LEN};
pub use crate::domain::key_id::{is_id, key_id};

/// A new random key with a new id: the id and the key `fg_<id>_<secret>`.
pub fn generate() -> (String, String) {
    let id = new_id();
    let bytes: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let key = format!("fg_{id}_{secret}");
    (id, key)
}

/// A random secret without an id: `fg_` and 32 random bytes (admin tokens).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "fg_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A new random key id. It starts with a letter, so that YAML never reads it
/// as a number.
fn new_id() -> String {
    let bytes: [u8; ID_LEN] = rand::random();
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let n = if i == 0 { 26 } else { 32 };
            char::from(ID_ALPHABET[usize::from(*b) % n])
        })
        .collect()
}

/// Why a key could not be hashed (no randomness for the salt, as argon2 says).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HashError(#[from] argon2::password_hash::Error);

/// The argon2id PHC string of `key`, with a random salt and the crate's default
/// parameters (m=19456, t=2, p=1).
pub fn hash(key: &str) -> Result<String, HashError> {
    Ok(Argon2::default()
        .hash_password(key.as_bytes())
        .map(|h| h.to_string())?)
}

/// Whether `key` matches the PHC string. Costs tens of milliseconds of CPU:
/// call it through [`crate::auth::key_cache::KeyVerifier`], never per request.
pub fn verify(key: &str, phc: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(key.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_keys_differ() {
        let (id, k) = generate();
        assert!(k.starts_with(&format!("fg_{id}_")) && k.len() == 3 + 8 + 1 + 43);
        assert_ne!(k, generate().1);
        let h = hash(&k).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&k, &h));
        assert!(!verify("wrong", &h));
        assert!(!verify(&k, "not a hash"));
    }

    #[test]
    fn only_keys_of_the_id_form_have_an_id() {
        for _ in 0..100 {
            let (id, k) = generate();
            assert!(is_id(&id), "{id}");
            assert!(id.as_bytes()[0].is_ascii_lowercase());
            assert_eq!(key_id(&k), Some(id.as_str()));
        }
        let secret = "A".repeat(43);
        assert_eq!(key_id(&format!("fg_k3q7x2ab_{secret}")), Some("k3q7x2ab"));
        // The example keys of the shipped tenant have the `fg_x_y` shape too.
        assert_eq!(key_id("fg_acme_webshop_example"), None);
        assert_eq!(key_id("fg_acme_erp_example"), None);
        // Keys made before ids: `fg_` and 43 characters.
        assert_eq!(key_id(&format!("fg_{secret}")), None);
        for bad in [
            format!("fg_k3q7x2a_{secret}"),
            format!("fg_k3q7x2a1_{secret}"),
            format!("fg_K3Q7X2AB_{secret}"),
            format!("fg_k3q7x2ab_{secret}A"),
            format!("fg_k3q7x2ab_{}", "A".repeat(42)),
            format!("fg_k3q7x2ab-{secret}"),
            format!("xx_k3q7x2ab_{secret}"),
            format!("fg_k3q7x2ab_{}=", "A".repeat(42)),
        ] {
            assert_eq!(key_id(&bad), None, "{bad}");
        }
    }
}
