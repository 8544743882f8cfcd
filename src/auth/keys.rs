//! API keys: generating them and hashing them for `_tenant.yaml` (`flowgate key new`).

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use base64::Engine;

/// A new random key: `fg_` and 32 random bytes, URL-safe base64.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "fg_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
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
        let k = generate();
        assert!(k.starts_with("fg_") && k.len() > 40);
        assert_ne!(k, generate());
        let h = hash(&k).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&k, &h));
        assert!(!verify("wrong", &h));
        assert!(!verify(&k, "not a hash"));
    }
}
