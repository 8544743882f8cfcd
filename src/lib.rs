//! flowgate: a webhook trigger runtime.
//!
//! Map of the crate (dependencies point one way: http -> queue -> engine, store -> flow -> domain):
//! - [`domain`]: plain types — names, message ids, statuses, times.
//! - [`flow`]: flow files -> validated model (raw serde structs, compile, loader, jq expressions).
//! - [`engine`]: runs one flow over one input document; knows nothing of HTTP or queues.
//! - [`store`]: the only place with SQL; the durable record of every message.
//! - [`pgtls`]: PostgreSQL connection strings and their TLS (libpq's `sslmode`s), for the
//!   store and for `sql` steps' connections.
//! - [`queue`]: group commit of accepted messages, lanes, concurrency, retries, recovery.
//! - [`auth::admin`]: admin tokens for `/_admin` (global or tenant-scoped), verified once, cached.
//! - [`events`]: outbound event webhooks: deliveries stored, signed, sent on a schedule.
//! - [`ops::metrics`]: per-trigger atomics rendered for `/_metrics`.
//! - [`auth::key_cache`]: API key verification with a bounded cache.
//! - [`auth::gate`]: admits argon2 work: a fixed pool, turns per client address, failure budgets.
//! - [`codec::input`]: request -> input document (shared by HTTP and `flowgate run`).
//! - [`auth::keys`]: generating and hashing API keys.
//! - [`http`]: actix routes, request -> input document, errors -> responses.
//! - [`config`]: settings from defaults, `flowgate.toml` and `FLOWGATE_*`.
//! - [`startup`]: builds the application from settings; the one place that picks backends.

pub mod auth;
pub mod cli;
pub mod codec;
pub mod config;
pub mod connect;
pub mod domain;
pub mod engine;
pub mod events;
pub mod flow;
pub mod http;
pub mod ops;
pub mod pgtls;
pub mod queue;
pub mod startup;
pub mod store;
