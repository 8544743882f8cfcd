//! The public id of an API key: `fg_<id>_<secret>`, `<id>` 8 characters of
//! lowercase base32, `<secret>` 32 bytes of URL-safe base64 without padding.

/// Characters of a key id: RFC 4648 base32, lower case.
pub const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters in a key id.
pub const ID_LEN: usize = 8;
/// Characters of a secret: 32 bytes in base64 without padding.
const SECRET_LEN: usize = 43;

/// Whether `id` is a key id: 8 characters of `a-z` and `2-7`.
pub fn is_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b))
}

/// The id of a key of the form `fg_<id>_<secret>` (the secret 43 characters
/// of URL-safe base64), or `None` for a key of another form.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("fg_")?;
    let id = rest.get(..ID_LEN)?;
    let secret = rest.get(ID_LEN..)?.strip_prefix('_')?;
    let secret_ok = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (is_id(id) && secret_ok).then_some(id)
}
