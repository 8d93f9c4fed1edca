//! Helpers shared by the integration-test modules.

pub mod dead_collector;
pub mod hostile_server;
pub mod http_server;
pub mod ports;
pub mod postgres;
pub mod runs;
pub mod spans;
pub mod target;
pub mod telemetry;
pub mod tools;
