//! Helpers shared by the integration-test modules.

pub mod dead_collector;
pub mod hostile_server;
pub mod http_server;
pub mod target;
