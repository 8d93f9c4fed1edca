//! Telemetry: the one module for OpenTelemetry spans, live metrics (Prometheus `/metrics` with
//! exemplars, OTLP push) and their names. Built once per process by [`Telemetry::start`], shut
//! down once by [`Telemetry::shutdown`] (traces flushed first, then metrics); errors are
//! collected into the [`TelemetryReport`], never panics, and a dead collector never slows load.
//!
//! Workloads never touch OTel types: they get [`Span`] handles, and their measurements reach
//! the live instruments as [`Sample`](crate::metrics::Sample)s of the one sample stream, which
//! [`Telemetry::consume`] (see `live.rs`) records. Every method is cheap when telemetry is off.

mod config;
mod cutoff;
mod instruments;
mod live;
mod metric_export;
pub mod names;
mod otlp;
mod pb;
mod process;
mod prometheus;
mod reference;
mod span;
mod span_export;
mod span_record;

pub use config::{DEFAULT_EXPORT_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, TelemetryConfig};
pub use instruments::LATENCY_BUCKETS;
pub use live::LiveSeries;
pub use reference::metrics_reference_markdown;
pub use span::{AttrValue, FixedAttrs, Span, SpanKind, TraceHex};

use config::{export_timeout, or_default};
use instruments::Instruments;
use metric_export::{
    MetricExport, MetricExportParts, SDK_METRIC_QUEUE, SpansDroppedCollector, bounded_blocking,
    otlp_sink, register_observables,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SpanExporter;
use otlp::OtlpSink;
use prometheus_client::registry::Registry;
use span_export::{ErrorLog, QueueConfig, SpanExport, SpanStats};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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

/// Handle of telemetry for the whole process; clone freely.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Option<Arc<Inner>>,
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Inner {
    segment: String,
    instruments: Instruments,
    registry: Arc<prometheus::Exposition>,
    tracer: Option<span_record::Tracer>,
    span_export: Mutex<Option<SpanExport>>,
    meter_provider: Mutex<Option<SdkMeterProvider>>,
    /// OTLP push of the histograms and of what `meter_provider`'s reader collects.
    metric_export: Mutex<Option<MetricExport>>,
    span_stats: Arc<SpanStats>,
    /// Metric export and other non-span errors.
    errors: Arc<ErrorLog>,
    server: Mutex<Option<prometheus::Server>>,
    metrics_addr: Option<SocketAddr>,
    shutdown_timeout: Duration,
}

/// Takes what a shutdown slot holds (a poisoned lock still gives it up).
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Builds the span sink once the resource is known.
type MakeSink = Box<dyn FnOnce(&Resource) -> Box<dyn OtlpSink> + Send>;

impl Telemetry {
    /// Telemetry that records nothing (tests, `--no-telemetry`).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Builds providers, starts `/metrics` if asked. Errors only for bad config (e.g. the
    /// listen address is taken); an unreachable collector is not an error here.
    pub async fn start(cfg: TelemetryConfig) -> anyhow::Result<Self> {
        let sink: Option<MakeSink> = match (&cfg.otlp_endpoint, cfg.traces) {
            (Some(ep), true) => {
                let t = otlp::Transport::parse(&cfg.otlp_protocol, ep)?;
                let url = otlp::signal_url(ep, t, "/v1/traces");
                let timeout = export_timeout(&cfg);
                let sink = otlp_sink(t, &url, otlp::GRPC_TRACES, timeout)?;
                Some(Box::new(move |_: &Resource| sink))
            }
            _ => None,
        };
        Self::build(cfg, sink).await
    }

    /// Like [`Telemetry::start`], with spans going to `exporter` (e.g. opentelemetry_sdk's
    /// `InMemorySpanExporter` in tests): the same queue and OTLP encoding, decoded back into
    /// `SpanData` for it. `cfg.traces` must be true for spans to be created. OTLP metrics still
    /// follow `cfg.otlp_endpoint`.
    pub async fn start_with_span_exporter<E: SpanExporter + 'static>(
        cfg: TelemetryConfig,
        exporter: E,
    ) -> anyhow::Result<Self> {
        let sink: MakeSink =
            Box::new(move |r: &Resource| Box::new(span_export::SdkSink::new(exporter, r)));
        Self::build(cfg, Some(sink)).await
    }

    async fn build(cfg: TelemetryConfig, make_sink: Option<MakeSink>) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Handle::current();
        let service = or_default(cfg.service_name.clone(), "novaload".to_owned());
        let mut attrs = vec![
            KeyValue::new("service.version", VERSION),
            KeyValue::new("novaload.run_id", cfg.run_id.clone()),
            KeyValue::new("novaload.profile", cfg.profile.clone()),
        ];
        if !cfg.segment.is_empty() {
            attrs.push(KeyValue::new("novaload.segment", cfg.segment.clone()));
        }
        attrs.extend(
            cfg.resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
        let resource = Resource::builder()
            .with_service_name(service)
            .with_attributes(attrs)
            .build();
        let span_stats = Arc::new(SpanStats::default());
        let errors = Arc::new(ErrorLog::default());
        let scope = InstrumentationScope::builder("novaload")
            .with_version(VERSION)
            .build();

        // Traces: only when there is somewhere to send them.
        let (tracer, span_export) = match make_sink {
            Some(make) if cfg.traces => {
                let ratio = if cfg.sample_ratio.is_finite() {
                    cfg.sample_ratio.clamp(0.0, 1.0)
                } else {
                    1.0
                };
                let q = QueueConfig {
                    max_queue: or_default(cfg.span_queue_size, 65_536),
                    max_batch: or_default(cfg.span_batch_size, 4_096),
                    delay: Duration::from_secs(1),
                    export_timeout: export_timeout(&cfg),
                };
                let queue = span_record::SpanQueue::leak(q.max_queue, span_stats.clone());
                let export = SpanExport::start(make(&resource), queue, &resource, q, rt.clone());
                (Some(span_record::Tracer::new(ratio, queue)), Some(export))
            }
            _ => (None, None),
        };

        // OTel metrics (OTLP only: Prometheus is served from prometheus-client directly). The
        // SDK's reader only collects and queues; `MetricExport` (below) sends.
        let metrics_interval = or_default(cfg.metrics_interval, Duration::from_secs(5));
        let (meter_provider, sdk_metrics) = match &cfg.otlp_endpoint {
            Some(_) => {
                let (queue, requests) = tokio::sync::mpsc::channel(SDK_METRIC_QUEUE);
                let exporter = otlp::QueuedMetricExporter {
                    queue,
                    errors: errors.clone(),
                };
                let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                    .with_interval(metrics_interval)
                    .build();
                let provider = SdkMeterProvider::builder()
                    .with_resource(resource.clone())
                    .with_reader(reader)
                    .build();
                (Some(provider), Some(requests))
            }
            None => (None, None),
        };
        let meter = meter_provider.as_ref().map(|p| {
            use opentelemetry::metrics::MeterProvider as _;
            p.meter_with_scope(scope)
        });

        let mut registry = Registry::default();
        let instruments = Instruments::new(&mut registry, meter.as_ref());
        registry.register_collector(Box::new(SpansDroppedCollector {
            run_id: cfg.run_id.clone(),
            stats: span_stats.clone(),
        }));
        registry.register_collector(Box::new(process::ProcessCollector));
        if let Some(m) = &meter {
            register_observables(m, &cfg.run_id, &span_stats);
        }
        let registry = Arc::new(prometheus::Exposition {
            registry,
            histograms: instruments.histogram_families(),
        });
        let metric_export = match (&cfg.otlp_endpoint, sdk_metrics) {
            (Some(ep), Some(sdk)) => {
                let t = otlp::Transport::parse(&cfg.otlp_protocol, ep)?;
                let url = otlp::signal_url(ep, t, "/v1/metrics");
                Some(MetricExport::start(
                    otlp_sink(t, &url, otlp::GRPC_METRICS, export_timeout(&cfg))?,
                    MetricExportParts {
                        framing: otlp::Framing::new(&resource, "novaload", VERSION),
                        families: instruments.histogram_families(),
                        sdk,
                        interval: metrics_interval,
                        timeout: export_timeout(&cfg),
                        errors: errors.clone(),
                    },
                ))
            }
            _ => None,
        };

        let server = match cfg.metrics_listen {
            Some(addr) => Some(prometheus::Server::start(addr, registry.clone()).await?),
            None => None,
        };
        Ok(Self {
            inner: Some(Arc::new(Inner {
                segment: cfg.segment.clone(),
                instruments,
                registry,
                tracer,
                span_export: Mutex::new(span_export),
                meter_provider: Mutex::new(meter_provider),
                metric_export: Mutex::new(metric_export),
                span_stats,
                errors,
                metrics_addr: server.as_ref().map(|s| s.addr),
                server: Mutex::new(server),
                shutdown_timeout: or_default(cfg.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT),
            })),
        })
    }

    /// Address `/metrics` is served on (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.inner.as_ref()?.metrics_addr
    }

    /// The current OpenMetrics exposition (with exemplars), as `/metrics` would serve it.
    pub fn render_metrics(&self) -> String {
        self.inner
            .as_ref()
            .map(|i| prometheus::render(&i.registry, true))
            .unwrap_or_default()
    }

    /// Spans dropped so far (queue full or unflushed at shutdown).
    pub fn spans_dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.span_stats.dropped.load(Ordering::Relaxed))
    }

    /// Flushes traces and metrics side by side within the shutdown budget; never panics;
    /// reports drops and errors. Whatever the collector does (down, silent, resetting), this
    /// returns a short grace after the budget, with nothing of telemetry's still using the
    /// runtime.
    pub async fn shutdown(self) -> TelemetryReport {
        let Some(inner) = self.inner else {
            return TelemetryReport::default();
        };
        let budget = inner.shutdown_timeout;
        let deadline = std::time::Instant::now() + budget;
        let mut report = TelemetryReport {
            metrics_addr: inner.metrics_addr.map(|a| a.to_string()),
            ..Default::default()
        };
        if let Some(s) = take(&inner.server) {
            s.stop().await;
        }
        let traces = async {
            match take(&inner.span_export) {
                Some(export) => export
                    .shutdown(deadline)
                    .await
                    .map_err(|e| format!("trace shutdown: {e}")),
                None => Ok(()),
            }
        };
        // OTLP metrics: the SDK reader's shutdown queues its final collection (it does no I/O,
        // so this is quick), then the export task sends it and the histograms.
        let metrics = async {
            let sdk = match take(&inner.meter_provider) {
                Some(mp) => bounded_blocking(deadline, move || mp.shutdown_with_timeout(budget))
                    .await
                    .map_err(|e| format!("metric shutdown: {e}")),
                None => Ok(()),
            };
            let sent = match take(&inner.metric_export) {
                Some(mx) => mx
                    .shutdown(deadline)
                    .await
                    .map_err(|e| format!("metric shutdown: {e}")),
                None => Ok(()),
            };
            (sdk, sent)
        };
        let (t, (m, h)) = tokio::join!(traces, metrics);
        report.errors.extend(t.err());
        report.errors.extend(m.err());
        report.errors.extend(h.err());
        let s = &inner.span_stats;
        report.spans_exported = s.exported.load(Ordering::Relaxed);
        report.spans_dropped = s.dropped.load(Ordering::Relaxed);
        let failed = s.failed.load(Ordering::Relaxed);
        if failed > 0 {
            report.errors.push(format!(
                "{failed} spans failed to export (collector down or slow?)"
            ));
        }
        if report.spans_dropped > 0 {
            report.errors.push(format!(
                "{} spans dropped: export queue full or not flushed in time",
                report.spans_dropped
            ));
        }
        report.errors.extend(s.errors.render());
        report.errors.extend(inner.errors.render());
        report
    }

    /// Marks a test as live (`novaload_run_info` = 1) or finished (series removed/0).
    pub fn test_started(&self, labels: &RunLabels, profile: &str) {
        if let Some(i) = &self.inner {
            i.instruments.run_info.set(
                &[&labels.run_id, &labels.test, profile, &i.segment, VERSION],
                1,
            );
        }
    }
    pub fn test_finished(&self, labels: &RunLabels) {
        if let Some(i) = &self.inner {
            // The profile label is not known here: remove every run_info series of this test.
            i.instruments
                .run_info
                .remove_matching(&[&labels.run_id, &labels.test]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_thread_safe_and_cheap() {
        fn send<T: Send>() {}
        fn shared<T: Clone + Send + Sync>() {}
        send::<Span>();
        shared::<Telemetry>();
        assert_eq!(
            std::mem::size_of::<Telemetry>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn disabled_is_inert() {
        let t = Telemetry::disabled();
        let l = RunLabels::default();
        let s = t.iteration_span(&l, 1, 1);
        assert!(s.traceparent().is_none() && s.baggage().is_none());
        let check = crate::metrics::Sample::Check {
            name: "ok",
            ok: true,
        };
        t.consume(&t.vu_series(&l), &check);
        assert!(t.render_metrics().is_empty());
        assert!(t.metrics_addr().is_none());
    }
}
