//! Who may call: API keys (generated, hashed, verified once and cached), HMAC
//! signatures over the raw body, admin tokens, the gate that admits all
//! argon2 work, and the consumers' limits and use of their keys.

pub mod admin;
pub mod gate;
pub mod key_cache;
pub mod keys;
pub mod limits;
pub mod signature;
pub mod upkeep;
pub mod usage;
