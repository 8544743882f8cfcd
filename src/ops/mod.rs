//! Running the server: metrics kept for `/_metrics` and the log setup.

pub mod deliveries;
pub mod metrics;
pub mod telemetry;
