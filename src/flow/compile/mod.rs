//! Raw file structs -> the validated model. Every problem in a file is collected
//! (not just the first) with its position; `flowgate check` and `serve` both come here.
//!
//! Split by what is compiled: [`cx`] holds the per-file context every part
//! reports to, [`yaml`] turns text into raw structs, [`tenant`] (with
//! [`connections`] and [`subscriptions`]) compiles `_tenant.yaml`, [`trigger`]
//! (with [`auth`], [`params`], [`steps`], [`io_steps`] and [`transaction`]) a
//! trigger's file.

pub mod auth;
pub mod connections;
pub mod cx;
pub mod io_steps;
pub mod keys;
pub mod params;
pub mod recover;
pub mod steps;
pub mod subscriptions;
pub mod tenant;
pub mod transaction;
pub mod trigger;
pub mod yaml;

pub use cx::FileCx;
pub use tenant::compile_tenant;
pub use trigger::compile_trigger;
pub use yaml::{parse_recovering, yaml_error, yaml_options};
