//! Telemetry: one module for names, instruments, spans, the Prometheus endpoint and OTLP.
pub mod names;
