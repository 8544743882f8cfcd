//! Tests that hold flowgate to latencies under load (a flood of wrong
//! credentials against valid callers). A test binary of their own: cargo runs
//! test binaries one after another, so nothing else in `cargo test` runs beside
//! them, and `ALONE` keeps them from running beside each other.

// Shared with the `api` tests, which use all of it.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod auth_flood;

/// Held by each test here for its whole run.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
