//! Integration tests over real HTTP against servers on port 0; one module per area.

mod check;
mod cli;
mod contract;
mod crash;
mod helpers;
mod multinode;
mod pg;
mod pg_http;
mod pg_outage;
mod queue;
mod reload;
mod store_contract;
