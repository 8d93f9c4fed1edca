//! OTLP endpoints and transports: where a signal goes, the request framing (resource and scope
//! encoded once), the sinks that send requests (gRPC via tonic, HTTP/protobuf via the VU HTTP
//! client), and the hand-off of the SDK's counters and gauges to novaload's metric export task.
//!
//! Endpoint rules, as the OTel exporter spec gives them for the *generic*
//! `OTEL_EXPORTER_OTLP_ENDPOINT`: gRPC uses the endpoint as is; HTTP appends the signal path
//! (`/v1/traces`, `/v1/metrics`) to it. A bare `host` or `host:port` gets `http://`, and a bare
//! host gets the protocol's default port (4317 gRPC, 4318 HTTP).
//!
//! The SDK's periodic metric reader exports from its own thread: [`QueuedMetricExporter`] only
//! encodes and queues there; the sending happens on the runtime (see `MetricExport`).

use super::pb;
use super::span_export::ErrorLog;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use prost::Message as _;
use std::future::Future;
use std::pin::Pin;
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

pub(super) type ExportFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where export requests go: a whole `ExportTraceServiceRequest` (or, for the histogram
/// exporter, `ExportMetricsServiceRequest`: the same framing, see [`Framing`]).
pub trait OtlpSink: Send + 'static {
    fn export(&mut self, request: Bytes) -> ExportFuture<'_>;
}

/// The resource and scope of every request, encoded once. Traces and metrics share the shape:
/// request{1: resource_x{1: resource, 2: scope_x{1: scope, 2: items...}}}.
pub struct Framing {
    /// `ResourceSpans.resource` field.
    resource: Vec<u8>,
    /// `ScopeSpans.scope` field.
    scope: Vec<u8>,
}

impl Framing {
    pub fn new(resource: &Resource, scope_name: &str, scope_version: &str) -> Self {
        let mut attrs = Vec::new();
        for (k, v) in resource.iter() {
            let v = match v {
                opentelemetry::Value::Bool(b) => super::AttrValue::Bool(*b),
                opentelemetry::Value::I64(i) => super::AttrValue::I64(*i),
                opentelemetry::Value::F64(f) => super::AttrValue::F64(*f),
                other => super::AttrValue::Str(other.to_string()),
            };
            pb::put_kv(&mut attrs, 1, k.as_str(), &v);
        }
        let mut resource = Vec::new();
        pb::put_bytes(&mut resource, 1, &attrs);
        let mut body = Vec::new();
        pb::put_bytes(&mut body, 1, scope_name.as_bytes());
        pb::put_bytes(&mut body, 2, scope_version.as_bytes());
        let mut scope = Vec::new();
        pb::put_bytes(&mut scope, 1, &body);
        Self { resource, scope }
    }

    /// `ExportTraceServiceRequest { resource_spans: [{ resource, scope_spans: [{ scope, spans }] }] }`
    /// (`spans` already encoded as field-2 entries; likewise for metrics).
    pub fn request(&self, spans: &[u8]) -> Bytes {
        let scope_spans = self.scope.len() + spans.len();
        let resource_spans = self.resource.len() + pb::msg_len(2, scope_spans);
        let mut out = Vec::with_capacity(pb::msg_len(1, resource_spans));
        pb::put_tag(&mut out, 1, pb::LEN);
        pb::put_varint(&mut out, resource_spans as u64);
        out.extend_from_slice(&self.resource);
        pb::put_tag(&mut out, 2, pb::LEN);
        pb::put_varint(&mut out, scope_spans as u64);
        out.extend_from_slice(&self.scope);
        out.extend_from_slice(spans);
        Bytes::from(out)
    }
}

/// gRPC method of OTLP trace export.
pub const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// gRPC method of OTLP metric export.
pub const GRPC_METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// OTLP over gRPC: the request bytes go out as they are (tonic frames them).
pub struct GrpcSink {
    client: tonic::client::Grpc<tonic::transport::Channel>,
    method: &'static str,
}

impl GrpcSink {
    pub fn new(url: &str, method: &'static str, timeout: Duration) -> anyhow::Result<Self> {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| anyhow::anyhow!("invalid OTLP endpoint {url:?}: {e}"))?
            .timeout(timeout)
            .connect_timeout(timeout);
        Ok(Self {
            client: tonic::client::Grpc::new(endpoint.connect_lazy()),
            method,
        })
    }
}

impl OtlpSink for GrpcSink {
    fn export(&mut self, request: Bytes) -> ExportFuture<'_> {
        Box::pin(async move {
            self.client
                .ready()
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            let path = http::uri::PathAndQuery::from_static(self.method);
            self.client
                .unary::<Bytes, Bytes, RawCodec>(tonic::Request::new(request), path, RawCodec)
                .await
                .map(|_| ())
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    }
}

/// A gRPC codec for bytes that are already a protobuf message.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// OTLP over HTTP/protobuf, POSTed with the VU HTTP client (keep-alive, one timeout).
pub struct HttpSink {
    url: url::Url,
    client: crate::net::http::HttpClient,
}

impl HttpSink {
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let url = url::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("invalid OTLP endpoint {url:?}: {e}"))?;
        let tls = if url.scheme() == "https" {
            Some(crate::net::http::TlsSettings::new(None, false)?)
        } else {
            None
        };
        Ok(Self {
            url,
            client: crate::net::http::HttpClient::new(tls, timeout),
        })
    }
}

impl OtlpSink for HttpSink {
    fn export(&mut self, request: Bytes) -> ExportFuture<'_> {
        Box::pin(async move {
            let headers = [(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-protobuf"),
            )];
            let r = self
                .client
                .send(http::Method::POST, &self.url, &headers, Some(request))
                .await;
            match (r.error, r.status) {
                (Some((_, e)), _) => Err(e),
                (None, 200..=299) => Ok(()),
                (None, s) => Err(format!("HTTP {s} from {}", self.url)),
            }
        })
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
