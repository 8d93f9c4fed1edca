//! Telemetry: the one module for OpenTelemetry spans, live metrics (Prometheus `/metrics` with
//! exemplars, OTLP push) and their names. Built once per process by [`Telemetry::start`], shut
//! down once by [`Telemetry::shutdown`] (traces flushed first, then metrics); errors are
//! collected into the [`TelemetryReport`], never panics, and a dead collector never slows load.
//!
//! Workloads never touch OTel types: they get [`Span`] handles, and their measurements reach
//! the live instruments as [`Sample`](crate::metrics::Sample)s of the one sample stream, which
//! [`Telemetry::consume`] (see `live.rs`) records. Every method is cheap when telemetry is off.

mod cutoff;
mod instruments;
mod live;
pub mod names;
mod otlp;
mod process;
mod prometheus;
mod reference;
mod spans;
mod trace;

pub use instruments::LATENCY_BUCKETS;
pub use live::LiveSeries;
pub use reference::metrics_reference_markdown;
pub use trace::FixedAttrs;

use instruments::Instruments;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SpanExporter;
use prometheus_client::registry::Registry;
use spans::{ErrorLog, OtlpSink, QueueConfig, SpanExport, SpanStats};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
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

impl From<SpanKind> for trace::Kind {
    fn from(k: SpanKind) -> Self {
        match k {
            SpanKind::Internal => trace::Kind::Internal,
            SpanKind::Client => trace::Kind::Client,
        }
    }
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
    tracer: Option<trace::Tracer>,
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

/// A span in progress. Dropping it without `end` ends it with status unset.
#[derive(Default)]
pub struct Span {
    inner: Option<trace::SpanRec>,
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(r) = self.inner.take() {
            r.finish(None);
        }
    }
}

/// A trace id in lower-case hex, kept on the stack (one per request when exemplars are on).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceHex([u8; 32]);

impl std::fmt::Debug for TraceHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Display for TraceHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl TraceHex {
    fn new(id: &[u8; 16]) -> Self {
        let mut out = [0u8; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(id) {
            pair.copy_from_slice(&trace::hex_pair(*b));
        }
        Self(out)
    }
}

impl std::ops::Deref for TraceHex {
    type Target = str;
    fn deref(&self) -> &str {
        // only ASCII hex digits are ever written
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Span {
    /// W3C `traceparent` header value of this span (None when tracing is off).
    pub fn traceparent(&self) -> Option<String> {
        let r = self.inner.as_ref()?;
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        trace::hex_into(&mut s, &r.trace_id);
        s.push('-');
        trace::hex_into(&mut s, &r.span_id);
        s.push_str(if r.sampled { "-01" } else { "-00" });
        Some(s)
    }
    /// W3C `tracestate` header value, if any. novaload starts every trace itself, so no
    /// vendor has put state in it yet: always None, kept so callers propagate it if that changes.
    pub fn tracestate(&self) -> Option<String> {
        None
    }
    /// W3C `baggage` header value carrying run id, test and scenario.
    pub fn baggage(&self) -> Option<&str> {
        self.inner.as_ref()?.baggage.as_deref()
    }
    /// The shared `baggage` value itself, for callers that cache what they derive from it.
    pub fn baggage_shared(&self) -> Option<&Arc<str>> {
        self.inner.as_ref()?.baggage.as_ref()
    }
    /// Hex trace id when this span is sampled (what an exemplar may point at).
    pub fn sampled_trace_id(&self) -> Option<TraceHex> {
        let r = self.inner.as_ref().filter(|r| r.sampled)?;
        Some(TraceHex::new(&r.trace_id))
    }
    pub fn set_attribute(&mut self, key: &'static str, value: AttrValue) {
        if let Some(r) = &mut self.inner {
            r.set_attribute(key, value);
        }
    }
    pub fn add_event(&mut self, name: &'static str, attrs: &[(&'static str, AttrValue)]) {
        if let Some(r) = &mut self.inner {
            r.add_event(name, attrs);
        }
    }
    /// Ends the span; `error` sets status Error with the message (never a secret or full URL).
    pub fn end(mut self, error: Option<&str>) {
        if let Some(r) = self.inner.take() {
            r.finish(error);
        }
    }
}

/// What every iteration span of a label set shares: its name, the attributes that do not
/// change (encoded once) and the `baggage` value.
#[derive(Clone)]
struct IterationShared {
    name: Arc<str>,
    fixed: trace::FixedAttrs,
    baggage: Option<Arc<str>>,
}

/// The [`IterationShared`] of a label set, built once per thread and label set (every
/// iteration of a VU asks for the same one; this thread's own copies keep their reference
/// counts off other threads' cache lines).
fn iteration_shared(l: &RunLabels) -> IterationShared {
    thread_local! {
        static LAST: RefCell<Option<(RunLabels, IterationShared)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((labels, shared)) = last.as_ref()
            && labels == l
        {
            return shared.clone();
        }
        let baggage =
            (!(l.run_id.is_empty() && l.test.is_empty() && l.scenario.is_empty())).then(|| {
                Arc::from(format!(
                    "novaload.run_id={},novaload.test={},novaload.scenario={}",
                    pct(&l.run_id),
                    pct(&l.test),
                    pct(&l.scenario)
                ))
            });
        let shared = IterationShared {
            name: Arc::from("iteration"),
            fixed: trace::FixedAttrs::new(&[
                ("novaload.test", AttrValue::Shared(l.test.clone())),
                ("novaload.scenario", AttrValue::Shared(l.scenario.clone())),
                ("novaload.run_id", AttrValue::Shared(l.run_id.clone())),
            ]),
            baggage,
        };
        *last = Some((l.clone(), shared.clone()));
        shared
    })
}

/// Percent-encodes a W3C baggage value (everything but unreserved URL characters).
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A span attribute value.
#[derive(Debug, Clone)]
pub enum AttrValue {
    Str(String),
    Static(&'static str),
    /// A string the caller already shares (labels, interned names): no copy per span.
    Shared(Arc<str>),
    I64(i64),
    F64(f64),
    Bool(bool),
}

fn otlp_sink(
    t: otlp::Transport,
    url: &str,
    grpc_method: &'static str,
    timeout: Duration,
) -> anyhow::Result<Box<dyn OtlpSink>> {
    Ok(match t {
        otlp::Transport::Grpc => Box::new(spans::GrpcSink::new(url, grpc_method, timeout)?),
        otlp::Transport::HttpProtobuf => Box::new(spans::HttpSink::new(url, timeout)?),
    })
}

/// Sends OTLP metrics from a task on the runtime: the histogram families, encoded here every
/// interval, and the SDK's counters and gauges, which its reader thread encodes and queues
/// (see [`otlp::QueuedMetricExporter`]); once more at shutdown. Every send is bounded by the
/// export timeout and by the shutdown deadline.
struct MetricExport {
    stop: tokio::sync::oneshot::Sender<()>,
    cutoff: cutoff::CutoffSender,
    task: tokio::task::JoinHandle<()>,
}

/// What the metric export task needs besides its sink.
struct MetricExportParts {
    framing: spans::Framing,
    families: Vec<Arc<instruments::HistFamily>>,
    /// Requests the SDK reader queued.
    sdk: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    interval: Duration,
    timeout: Duration,
    errors: Arc<ErrorLog>,
}

/// Requests of the SDK reader that may wait for the export task (each a few KiB); when full,
/// the reader's next collection is skipped and counted.
const SDK_METRIC_QUEUE: usize = 2;

impl MetricExport {
    fn start(mut sink: Box<dyn OtlpSink>, parts: MetricExportParts) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let (cut, mut cutoff) = cutoff::cutoff();
        let MetricExportParts {
            framing,
            families,
            mut sdk,
            interval,
            timeout,
            errors,
        } = parts;
        let start_ns = unix_nanos();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut buf = Vec::new();
            let mut sdk_open = true;
            // Bounded: ends when stopped (shutdown, or the handle dropped).
            loop {
                let request = tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    r = sdk.recv(), if sdk_open => match r {
                        Some(r) => Some(("metric", r)),
                        None => { sdk_open = false; None }
                    },
                    _ = tick.tick() => {
                        buf.clear();
                        instruments::encode_otlp_histograms(&mut buf, &families, start_ns, unix_nanos());
                        (!buf.is_empty()).then(|| ("histogram", framing.request(&buf)))
                    }
                };
                if let Some((what, r)) = request {
                    send(&mut *sink, &mut cutoff, timeout, &errors, what, r).await;
                }
            }
            // Final values: what the SDK reader queued at its shutdown, then the histograms.
            sdk.close();
            let mut fin = Vec::new();
            while let Ok(r) = sdk.try_recv() {
                fin.push(("metric", r));
            }
            buf.clear();
            instruments::encode_otlp_histograms(&mut buf, &families, start_ns, unix_nanos());
            if !buf.is_empty() {
                fin.push(("histogram", framing.request(&buf)));
            }
            for (what, r) in fin {
                send(&mut *sink, &mut cutoff, timeout, &errors, what, r).await;
            }
        });
        Self {
            stop,
            cutoff: cut,
            task,
        }
    }

    /// Stops the task after its final export; an export still running at `deadline` is cut
    /// off, and the task is given up (and aborted) a short grace after it.
    async fn shutdown(self, deadline: std::time::Instant) -> Result<(), String> {
        self.cutoff.cut_at(deadline);
        let _ = self.stop.send(());
        let mut task = self.task;
        let wait_until = tokio::time::Instant::from_std(deadline + STOP_GRACE);
        match tokio::time::timeout_at(wait_until, &mut task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the metric export task failed: {e}")),
            Err(_) => {
                task.abort();
                Err("the metric export task did not stop by the deadline".to_owned())
            }
        }
    }
}

/// Time past the shutdown deadline a cut-off export gets to return before it is given up.
const STOP_GRACE: Duration = Duration::from_millis(250);

/// One metric export request, bounded by `timeout` and the shutdown deadline; failures are
/// counted in `errors` (`what`: "metric" for the SDK's, "histogram" for novaload's own).
async fn send(
    sink: &mut dyn OtlpSink,
    cutoff: &mut cutoff::Cutoff,
    timeout: Duration,
    errors: &ErrorLog,
    what: &str,
    request: bytes::Bytes,
) {
    if cutoff
        .deadline()
        .is_some_and(|d| std::time::Instant::now() >= d)
    {
        errors.push(format!(
            "{what} export failed: not sent, the telemetry shutdown deadline had passed"
        ));
        return;
    }
    if let Err(e) = cutoff.bound(timeout, sink.export(request)).await {
        errors.push(format!("{what} export failed: {e}"));
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Takes what a shutdown slot holds (a poisoned lock still gives it up).
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Builds the span sink once the resource is known.
type MakeSink = Box<dyn FnOnce(&Resource) -> Box<dyn OtlpSink> + Send>;

fn or_default<T: PartialEq + Default>(v: T, d: T) -> T {
    if v == T::default() { d } else { v }
}

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
                let sink = otlp_sink(t, &url, spans::GRPC_TRACES, timeout)?;
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
            Box::new(move |r: &Resource| Box::new(spans::SdkSink::new(exporter, r)));
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
                let queue = trace::SpanQueue::leak(q.max_queue, span_stats.clone());
                let export = SpanExport::start(make(&resource), queue, &resource, q, rt.clone());
                (Some(trace::Tracer::new(ratio, queue)), Some(export))
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
                    otlp_sink(t, &url, spans::GRPC_METRICS, export_timeout(&cfg))?,
                    MetricExportParts {
                        framing: spans::Framing::new(&resource, "novaload", VERSION),
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

    /// The current classic Prometheus text exposition (0.0.4, no exemplars).
    pub fn render_metrics_text(&self) -> String {
        self.inner
            .as_ref()
            .map(|i| prometheus::render(&i.registry, false))
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

    // ---- spans ----
    /// Whether spans are being created (callers skip building attributes when not).
    pub fn tracing(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.tracer.is_some())
    }

    /// The root span of one VU iteration.
    pub fn iteration_span(&self, labels: &RunLabels, vu: u64, iteration: u64) -> Span {
        let Some(tracer) = self.inner.as_ref().and_then(|i| i.tracer.as_ref()) else {
            return Span::default();
        };
        let shared = iteration_shared(labels);
        let start = trace::SpanStart {
            name: trace::SpanName::Shared(&shared.name),
            kind: trace::Kind::Internal,
            fixed: Some(&shared.fixed),
            attrs: |a: &mut trace::SpanAttrs| {
                a.extend([
                    ("novaload.vu", AttrValue::I64(vu as i64)),
                    ("novaload.iteration", AttrValue::I64(iteration as i64)),
                ])
            },
        };
        Span {
            inner: Some(tracer.root(start, shared.baggage)),
        }
    }
    /// A child span of `parent` (an iteration span or another op span); a root when `parent`
    /// is not recording.
    pub fn child_span(
        &self,
        parent: &Span,
        name: &str,
        kind: SpanKind,
        attrs: &[(&'static str, AttrValue)],
    ) -> Span {
        self.start_child(
            parent,
            trace::SpanStart {
                name: trace::SpanName::Str(name),
                kind: kind.into(),
                fixed: None,
                attrs: |a: &mut trace::SpanAttrs| a.extend(attrs.iter().cloned()),
            },
        )
    }
    /// A child span whose name and attributes the caller keeps ready for many spans (a VU's
    /// request spans of one endpoint: see [`FixedAttrs`]).
    pub fn child_span_fixed(
        &self,
        parent: &Span,
        name: &Arc<str>,
        kind: SpanKind,
        fixed: &FixedAttrs,
    ) -> Span {
        self.start_child(
            parent,
            trace::SpanStart {
                name: trace::SpanName::Shared(name),
                kind: kind.into(),
                fixed: Some(fixed),
                attrs: |_: &mut trace::SpanAttrs| {},
            },
        )
    }
    fn start_child(
        &self,
        parent: &Span,
        start: trace::SpanStart<'_, impl FnOnce(&mut trace::SpanAttrs)>,
    ) -> Span {
        let Some(tracer) = self.inner.as_ref().and_then(|i| i.tracer.as_ref()) else {
            return Span::default();
        };
        let rec = match &parent.inner {
            Some(p) => tracer.child(p, start),
            None => tracer.root(start, None),
        };
        Span { inner: Some(rec) }
    }
}

fn export_timeout(cfg: &TelemetryConfig) -> Duration {
    or_default(cfg.export_timeout, DEFAULT_EXPORT_TIMEOUT)
}

/// Runs a blocking SDK shutdown off the runtime's workers, giving up at `deadline` (+ grace).
/// (The SDK reader's shutdown waits for its own thread, which only collects and queues: quick.)
async fn bounded_blocking<F>(deadline: std::time::Instant, f: F) -> Result<(), String>
where
    F: FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send + 'static,
{
    let task = tokio::task::spawn_blocking(f);
    let wait_until = tokio::time::Instant::from_std(deadline + STOP_GRACE);
    match tokio::time::timeout_at(wait_until, task).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(join)) => Err(format!("the SDK shutdown failed: {join}")),
        Err(_) => Err("the SDK reader did not stop by the deadline".to_owned()),
    }
}

/// `novaload_spans_dropped_total{run_id}`, read from the processor's atomic at scrape time.
#[derive(Debug)]
struct SpansDroppedCollector {
    run_id: String,
    stats: Arc<SpanStats>,
}

impl prometheus_client::collector::Collector for SpansDroppedCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let c = prometheus_client::metrics::counter::ConstCounter::new(
            self.stats.dropped.load(Ordering::Relaxed),
        );
        let m = names::SPANS_DROPPED;
        let mut desc = encoder.encode_descriptor(
            m.prometheus.trim_end_matches("_total"),
            m.help.trim_end_matches('.'),
            None,
            c.metric_type(),
        )?;
        let labels = [(names::L_RUN_ID, self.run_id.as_str())];
        let fam = desc.encode_family(&labels)?;
        c.encode(fam)
    }
}

/// The scrape-time values as OTel observable instruments (for OTLP).
fn register_observables(
    meter: &opentelemetry::metrics::Meter,
    run_id: &str,
    stats: &Arc<SpanStats>,
) {
    let m = names::SPANS_DROPPED;
    let s = stats.clone();
    let attrs = [KeyValue::new(names::L_RUN_ID, run_id.to_owned())];
    let _ = meter
        .u64_observable_counter(m.otel)
        .with_unit(m.unit)
        .with_description(m.help)
        .with_callback(move |o| o.observe(s.dropped.load(Ordering::Relaxed), &attrs))
        .build();
    let m = names::PROCESS_CPU;
    let _ = meter
        .f64_observable_counter(m.otel)
        .with_unit(m.unit)
        .with_description(m.help)
        .with_callback(|o| {
            if let Some(v) = process::cpu_seconds() {
                o.observe(v, &[]);
            }
        })
        .build();
    let m = names::PROCESS_RSS;
    let _ = meter
        .u64_observable_gauge(m.otel)
        .with_unit(m.unit)
        .with_description(m.help)
        .with_callback(|o| {
            if let Some(v) = process::resident_bytes() {
                o.observe(v, &[]);
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baggage_values_are_percent_encoded() {
        assert_eq!(pct("a b,c=d;é"), "a%20b%2Cc%3Dd%3B%C3%A9");
        assert_eq!(pct("run-1.x_y~"), "run-1.x_y~");
    }

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
