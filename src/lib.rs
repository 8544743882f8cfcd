//! flowgate: a webhook trigger runtime.
//!
//! # Map of the crate
//!
//! Dependencies point one way, down this list; modules on one line do not name
//! each other. `tests/architecture/` fails on a cycle, on a module naming one
//! above it, and on a store backend named outside [`store`] and [`startup`]
//! (docs/architecture.md shows the same layers).
//!
//! ```text
//! cli, startup            entry points: subcommands; the server's assembly
//!   http                  actix routes -> auth -> input -> queue -> answer
//!     auth, queue         who may call; accepted messages -> executions
//!       config, events    settings; outbound event webhooks
//!         engine, store   runs one flow; the durable record (the only SQL)
//!           codec         request bodies -> input documents
//!             flow        flow files -> validated model
//!               connect   outbound HTTP and PostgreSQL, secrets, ${VAR}
//!                 ops, pgtls   metrics and logs; TLS for PostgreSQL
//!                   domain     plain types
//! ```
//!
//! - [`cli`]: every subcommand but `serve` (`check`, `test`, `run`, `key`,
//!   `messages`, `migrate`); `main.rs` only parses arguments and calls in here.
//! - [`startup`]: builds the application from settings; the one place that
//!   picks backends and spawns tasks.
//! - [`http`]: actix only: routes, extractors, errors -> responses.
//!   - [`http::body`]: reading request bodies within their size and time limits.
//!   - [`http::tls`]: HTTPS: the rustls configuration over `tls_cert` and
//!     `tls_key`, the pair swapped in when its files change.
//!   - `http/admin/`: the operators' API and web UI under `/_admin`; its
//!     answers are typed and its OpenAPI document generated from them.
//!   - `http/consumer_doc/`: each consumer's OpenAPI document of the triggers
//!     its key may call (`/<tenant>/_openapi.json`) and the page that renders
//!     it (`/<tenant>/_docs`).
//! - [`auth`]: who may call.
//!   - [`auth::keys`]: generating and hashing API keys.
//!   - [`auth::key_cache`]: API key and Basic verification with a bounded cache.
//!   - [`auth::gate`]: admits argon2 work: a fixed pool, turns per client address,
//!     failure budgets.
//!   - [`auth::signature`]: HMAC signatures over the raw body and status URLs.
//!   - [`auth::admin`]: admin tokens for `/_admin` (global or tenant-scoped).
//!   - [`auth::usage`], [`auth::limits`]: consumers' counts (requests, 429s,
//!     401s per UTC day, keys' last use) and their `rate`/`quota`, in atomics;
//!     [`auth::upkeep`]: their flush to the store and `key.expiring`.
//! - [`queue`]: group commit of accepted messages, lanes, concurrency, retries,
//!   sync waiters, recovery and retention (`queue/claimer/`: the shared store's
//!   claims).
//! - [`config`]: settings from defaults, `flowgate.toml` and `FLOWGATE_*`.
//! - [`events`]: outbound event webhooks: which events to write with a change
//!   (the store's outbox), the fan-out of outbox events into deliveries for the
//!   subscriptions that want them, bodies, and the signed sends on a schedule.
//! - [`engine`]: runs one flow over one input document under its budgets;
//!   knows nothing of HTTP or queues. [`engine::sandbox`]: jq in worker
//!   processes that can be killed. `engine/tx.rs`: the database transactions
//!   an execution holds; `engine/local.rs`: runs in this process (`mock:`,
//!   `--rollback`).
//! - [`store`]: the durable record of every message, SQLite or PostgreSQL
//!   (`store/postgres/`) behind one `Store`.
//! - [`codec`]: [`codec::input`] (request -> input document, shared by HTTP and
//!   `flowgate run`) and [`codec::xml`] (XML <-> JSON).
//! - [`flow`]: flow files -> validated model: [`flow::raw`] mirrors the YAML,
//!   [`flow::compile`] checks it (split by what it compiles), [`flow::loader`]
//!   walks `flows/` and reloads; [`flow::model`] is what the rest works with;
//!   [`flow::expr`], [`flow::fast`] and [`flow::template`] are jq expressions.
//! - [`connect`]: the systems a flow reaches: a tenant's connections, the
//!   outbound HTTP client and its policy, `${VAR}` expansion, secret redaction;
//!   [`connect::pgtx`]: a transaction held open across statements.
//! - [`ops`]: [`ops::metrics`] (per-trigger atomics for `/_metrics`) and
//!   [`ops::telemetry`] (log setup).
//! - [`pgtls`]: TLS for every PostgreSQL connection, read from libpq-style URLs
//!   (`pgtls/`: connection strings, the rustls configuration, its errors).
//! - [`domain`]: plain types: names, message ids, statuses, times, sizes,
//!   secret headers, signature rules.

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
