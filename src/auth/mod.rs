//! Who may call: API keys (generated, hashed, verified once and cached), HMAC
//! signatures over the raw body, admin tokens, and the gate that admits all
//! argon2 work.

pub mod admin;
pub mod gate;
pub mod key_cache;
pub mod keys;
pub mod signature;
