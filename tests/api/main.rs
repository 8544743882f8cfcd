//! Integration tests over real HTTP against servers on port 0; one module per area.

mod admin;
mod browser;
mod callers;
mod check;
mod cli;
mod contract;
mod crash;
mod helpers;
mod http_steps;
mod metrics;
mod multinode;
mod pg;
mod pg_admin;
mod pg_auth;
mod pg_http;
mod pg_outage;
mod pg_server;
mod pg_tls;
mod query_plans;
mod queue;
mod reload;
mod sql_steps;
mod store_admin_contract;
mod store_contract;
mod stub;
mod subscriptions;
