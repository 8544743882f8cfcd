//! Integration tests over real HTTP against servers on port 0; one module per area.

mod admin;
mod browser;
mod check;
mod cli;
mod contract;
mod crash;
mod helpers;
mod metrics;
mod query_plans;
mod queue;
mod reload;
mod store_admin_contract;
mod store_contract;
mod subscriptions;
