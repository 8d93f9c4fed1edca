//! Telemetry settings and their defaults.

use std::net::SocketAddr;
use std::time::Duration;

/// Telemetry settings (CLI flags over `OTEL_*` env over defaults; resolved by config).
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// Unique id of this run (also a label on every series and a resource attribute).
    pub run_id: String,
    pub profile: String,
    /// `i/N` when running a segment, else empty.
    pub segment: String,
    /// `--metrics-listen`: serve `/metrics` here (loopback unless told otherwise).
    pub metrics_listen: Option<SocketAddr>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` / `--otlp-endpoint`; None disables OTLP export.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub otlp_protocol: String,
    /// `OTEL_SERVICE_NAME`, default `novaload`.
    pub service_name: String,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`), already parsed.
    pub resource_attributes: Vec<(String, String)>,
    /// Trace sampling ratio 0..=1 (`OTEL_TRACES_SAMPLER[_ARG]`, `--trace-sample-ratio`).
    pub sample_ratio: f64,
    /// OTLP metric export interval (default 5 s).
    pub metrics_interval: std::time::Duration,
    /// Create spans at all (`--no-traces` turns them off while keeping metrics).
    pub traces: bool,
    /// Span export queue capacity; a full queue drops (and counts) spans. 0 = 65,536.
    pub span_queue_size: usize,
    /// Spans per OTLP export request. 0 = 4,096.
    pub span_batch_size: usize,
    /// Timeout of one OTLP export request. Zero = [`DEFAULT_EXPORT_TIMEOUT`].
    pub export_timeout: std::time::Duration,
    /// Upper bound of [`Telemetry::shutdown`] (traces and metrics flush side by side; an export
    /// still in flight at the end is cut off). Zero = [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: std::time::Duration,
}

/// Default timeout of one OTLP export: no longer than the shutdown budget, so the final flush
/// has room for one whole attempt.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound of [`Telemetry::shutdown`]: a run with a dead collector ends at most this much
/// after its load (plus a short grace for the export thread to answer).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn or_default<T: PartialEq + Default>(v: T, d: T) -> T {
    if v == T::default() { d } else { v }
}

/// The timeout of one OTLP export request.
pub(super) fn export_timeout(cfg: &TelemetryConfig) -> Duration {
    or_default(cfg.export_timeout, DEFAULT_EXPORT_TIMEOUT)
}
