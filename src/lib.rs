//! novaload: an observability-native load tester for NovaCron.
//!
//! `main.rs` only parses the command line and maps the outcome to an exit code; everything
//! else is reachable from [`run`], which integration tests call in-process.
pub mod config;
pub mod error;
pub mod metrics;
pub mod plan;
pub mod target;
pub mod telemetry;
pub mod thresholds;
