//! OTLP endpoints and the metric exporter (gRPC via tonic or HTTP/protobuf via hyper); spans
//! have their own encoder and transports in [`super::spans`].
//!
//! Endpoint rules, as the OTel exporter spec gives them for the *generic*
//! `OTEL_EXPORTER_OTLP_ENDPOINT`: gRPC uses the endpoint as is; HTTP appends the signal path
//! (`/v1/traces`, `/v1/metrics`) to it. A bare `host` or `host:port` gets `http://`, and a bare
//! host gets the protocol's default port (4317 gRPC, 4318 HTTP).
//!
//! The SDK's periodic metric reader polls exports from its own thread with a plain executor;
//! [`RtMetricExporter`] enters the caller's Tokio runtime around every poll (tonic and hyper
//! need it) and bounds each export with a timeout, recording failures instead of raising them.

use super::spans::ErrorLog;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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

pub fn metric_exporter(
    endpoint: &str,
    t: Transport,
    timeout: Duration,
) -> anyhow::Result<opentelemetry_otlp::MetricExporter> {
    let url = signal_url(endpoint, t, "/v1/metrics");
    let e = match t {
        Transport::Grpc => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .with_timeout(timeout)
            .build()?,
        Transport::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(timeout)
            .build()?,
    };
    Ok(e)
}

/// Polls `fut` with the Tokio runtime entered (so tonic/hyper find their reactor and timers).
struct InRuntime<F> {
    rt: tokio::runtime::Handle,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _enter = self.rt.enter();
        self.fut.as_mut().poll(cx)
    }
}

/// A metric exporter run on the caller's runtime, each export bounded by `timeout`.
pub struct RtMetricExporter<E> {
    pub inner: E,
    pub rt: tokio::runtime::Handle,
    pub timeout: Duration,
    pub errors: Arc<ErrorLog>,
}

impl<E: PushMetricExporter> PushMetricExporter for RtMetricExporter<E> {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        let timeout = self.timeout;
        let errors = self.errors.clone();
        let inner = &self.inner;
        InRuntime {
            rt: self.rt.clone(),
            fut: Box::pin(async move {
                let r = match tokio::time::timeout(timeout, inner.export(metrics)).await {
                    Ok(r) => r,
                    Err(_) => Err(OTelSdkError::Timeout(timeout)),
                };
                if let Err(e) = &r {
                    errors.push(format!("metric export failed: {e}"));
                }
                r
            }),
        }
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _enter = self.rt.enter();
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
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
