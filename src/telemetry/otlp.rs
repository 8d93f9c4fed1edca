//! OTLP endpoints, and the hand-off of the SDK's counters and gauges to novaload's metric export
//! task; the transports (gRPC via tonic, HTTP/protobuf via the VU HTTP client) are the sinks in
//! [`super::spans`].
//!
//! Endpoint rules, as the OTel exporter spec gives them for the *generic*
//! `OTEL_EXPORTER_OTLP_ENDPOINT`: gRPC uses the endpoint as is; HTTP appends the signal path
//! (`/v1/traces`, `/v1/metrics`) to it. A bare `host` or `host:port` gets `http://`, and a bare
//! host gets the protocol's default port (4317 gRPC, 4318 HTTP).
//!
//! The SDK's periodic metric reader exports from its own thread: [`QueuedMetricExporter`] only
//! encodes and queues there; the sending happens on the runtime (see `MetricExport`).

use super::spans::ErrorLog;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use prost::Message as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;

/// Which OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    HttpProtobuf,
}

impl Transport {
    /// `grpc` | `http/protobuf`; empty picks gRPC unless the endpoint names port 4318.
    pub fn parse(protocol: &str, endpoint: &str) -> anyhow::Result<Self> {
        match protocol.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" | "http" => Ok(Self::HttpProtobuf),
            "" if endpoint.contains(":4318") => Ok(Self::HttpProtobuf),
            "" => Ok(Self::Grpc),
            other => anyhow::bail!(
                "invalid OTLP protocol {other:?}: use \"grpc\" or \"http/protobuf\" (OTEL_EXPORTER_OTLP_PROTOCOL)"
            ),
        }
    }
    fn default_port(self) -> u16 {
        match self {
            Self::Grpc => 4317,
            Self::HttpProtobuf => 4318,
        }
    }
}

/// Base URL: scheme added when missing, default port added to a bare host.
pub fn base_url(endpoint: &str, t: Transport) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.contains("://") {
        return e.to_owned();
    }
    let (authority, path) = match e.find('/') {
        Some(i) => (&e[..i], &e[i..]),
        None => (e, ""),
    };
    let has_port = if let Some(rest) = authority.strip_prefix('[') {
        rest.contains("]:")
    } else {
        authority.contains(':')
    };
    if has_port {
        format!("http://{authority}{path}")
    } else {
        format!("http://{authority}:{}{path}", t.default_port())
    }
}

/// The URL a signal is posted to.
pub fn signal_url(endpoint: &str, t: Transport, signal_path: &str) -> String {
    let base = base_url(endpoint, t);
    match t {
        Transport::Grpc => base,
        Transport::HttpProtobuf => format!("{base}{signal_path}"),
    }
}

/// The SDK's periodic metric reader calls this on its own thread: the counters and gauges it
/// collected are encoded to an OTLP `ExportMetricsServiceRequest` and queued for novaload's
/// metric export task, which sends them on the runtime with the same sinks, timeouts and
/// shutdown deadline as the histograms.
///
/// Why not the SDK's OTLP exporter on that thread: it polled tonic/hyper from outside the
/// runtime, so an export still waiting on a silent collector when the runtime shut down
/// panicked ("A Tokio 1.x context was found, but it is being shutdown"), and the reader's
/// shutdown waits up to a fixed 5 s for such an export. Here the reader thread never does
/// I/O or touches Tokio, and its exports and shutdown take microseconds.
pub struct QueuedMetricExporter {
    /// Encoded requests for the export task; bounded, so a dead collector holds no memory.
    pub queue: tokio::sync::mpsc::Sender<Bytes>,
    pub errors: Arc<ErrorLog>,
}

impl std::fmt::Debug for QueuedMetricExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueuedMetricExporter")
    }
}

impl PushMetricExporter for QueuedMetricExporter {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        let request = ExportMetricsServiceRequest::from(metrics).encode_to_vec();
        match self.queue.try_send(Bytes::from(request)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.errors.push(
                "metric export skipped: the previous exports have not finished (collector slow or down?)"
                    .to_owned(),
            ),
            // the export task has stopped (shutdown is over): nothing is sent any more
            Err(TrySendError::Closed(_)) => {}
        }
        // Failures are recorded in the telemetry report, not returned: the SDK would log them
        // on its own, outside the report.
        std::future::ready(Ok(()))
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        let g = Transport::Grpc;
        let h = Transport::HttpProtobuf;
        assert_eq!(
            signal_url("collector", g, "/v1/traces"),
            "http://collector:4317"
        );
        assert_eq!(
            signal_url("collector", h, "/v1/traces"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            signal_url("http://c:9000/", h, "/v1/metrics"),
            "http://c:9000/v1/metrics"
        );
        assert_eq!(
            signal_url("https://c/otlp", h, "/v1/traces"),
            "https://c/otlp/v1/traces"
        );
        assert_eq!(
            signal_url("127.0.0.1:5555", g, "/v1/traces"),
            "http://127.0.0.1:5555"
        );
        assert_eq!(signal_url("[::1]", g, ""), "http://[::1]:4317");
        assert_eq!(Transport::parse("", "http://x:4318").unwrap(), h);
        assert_eq!(Transport::parse("", "x").unwrap(), g);
        assert!(Transport::parse("http/json", "x").is_err());
    }
}
