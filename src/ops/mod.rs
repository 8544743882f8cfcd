//! Running the server: metrics kept for `/_metrics` and the log setup.

pub mod metrics;
pub mod telemetry;
