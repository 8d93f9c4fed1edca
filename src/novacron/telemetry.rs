//! Server-side telemetry of the target: the `novacron_*` Prometheus metrics (names from
//! [`crate::telemetry::names`]), W3C trace-context extraction and server spans.
//!
//! `/metrics` answers OpenMetrics (with `trace_id` exemplars) when the scraper asks for
//! `application/openmetrics-text`, as Prometheus does; anyone else gets the classic text format
//! 0.0.4, made from the same encoding by dropping exemplars, `# UNIT` and `# EOF`.
use std::borrow::Cow;
use std::sync::atomic::AtomicI64;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::telemetry::names::{self, MetricName};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    method: Cow<'static, str>,
    endpoint: Cow<'static, str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiDurationLabels {
    method: Cow<'static, str>,
    endpoint: Cow<'static, str>,
}

/// Exemplar labels: the server span's trace id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    trace_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MigrationLabels {
    source: String,
    destination: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WsConnLabels {
    endpoint: &'static str,
    client_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WsMsgLabels {
    endpoint: &'static str,
    message_type: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    operation: &'static str,
    table: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbDurationLabels {
    operation: &'static str,
    table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

type ExemplarHistogram = HistogramWithExemplars<TraceExemplar>;

fn latency_histogram() -> ExemplarHistogram {
    // 0.5 ms .. ~16 s
    HistogramWithExemplars::new(exponential_buckets(0.0005, 2.0, 16))
}
fn db_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}
fn ws_duration_histogram() -> Histogram {
    // NovaCron's buckets: 1, 2, 4 … 512 s.
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// Every `novacron_*` instrument, registered once per server.
pub struct Metrics {
    registry: Registry,
    api_requests: Family<ApiLabels, Counter>,
    api_duration: Family<ApiDurationLabels, ExemplarHistogram, fn() -> ExemplarHistogram>,
    api_errors: Family<ApiLabels, Counter>,
    dwcp_migrations: Family<MigrationLabels, Counter>,
    dwcp_duration: Histogram,
    dwcp_active: Gauge,
    ws_active: Family<WsConnLabels, Gauge>,
    ws_sent: Family<WsMsgLabels, Counter>,
    ws_received: Family<WsMsgLabels, Counter>,
    ws_duration: Family<EndpointLabel, Histogram, fn() -> Histogram>,
    db_queries: Family<DbLabels, Counter>,
    db_duration: Family<DbDurationLabels, Histogram, fn() -> Histogram>,
    db_active: Gauge<i64, AtomicI64>,
    db_pool: Gauge<i64, AtomicI64>,
    vms: Family<StateLabel, Gauge>,
}

/// prometheus-client appends `_total` to counters itself (only counters: NovaCron's
/// `novacron_vms_total` is a gauge and keeps its name).
fn base(m: &MetricName) -> &'static str {
    if m.kind == names::Kind::Counter {
        m.prometheus.strip_suffix("_total").unwrap_or(m.prometheus)
    } else {
        m.prometheus
    }
}

impl Metrics {
    /// Builds and registers every instrument.
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(latency_histogram),
            api_errors: Family::default(),
            dwcp_migrations: Family::default(),
            dwcp_duration: Histogram::new(exponential_buckets(0.25, 2.0, 10)),
            dwcp_active: Gauge::default(),
            ws_active: Family::default(),
            ws_sent: Family::default(),
            ws_received: Family::default(),
            ws_duration: Family::new_with_constructor(ws_duration_histogram),
            db_queries: Family::default(),
            db_duration: Family::new_with_constructor(db_histogram),
            db_active: Gauge::default(),
            db_pool: Gauge::default(),
            vms: Family::default(),
        };
        let mut registry = Registry::default();
        macro_rules! reg {
            ($name:expr, $metric:expr) => {
                registry.register(
                    base(&$name),
                    $name.help.trim_end_matches('.'),
                    $metric.clone(),
                )
            };
        }
        reg!(names::NOVACRON_API_REQUESTS, m.api_requests);
        reg!(names::NOVACRON_API_REQUEST_DURATION, m.api_duration);
        reg!(names::NOVACRON_API_ERRORS, m.api_errors);
        reg!(names::NOVACRON_DWCP_MIGRATIONS, m.dwcp_migrations);
        reg!(names::NOVACRON_DWCP_MIGRATION_DURATION, m.dwcp_duration);
        reg!(names::NOVACRON_DWCP_MIGRATIONS_ACTIVE, m.dwcp_active);
        reg!(names::NOVACRON_WS_CONNECTIONS_ACTIVE, m.ws_active);
        reg!(names::NOVACRON_WS_MESSAGES_SENT, m.ws_sent);
        reg!(names::NOVACRON_WS_MESSAGES_RECEIVED, m.ws_received);
        reg!(names::NOVACRON_WS_CONNECTION_DURATION, m.ws_duration);
        reg!(names::NOVACRON_DB_QUERIES, m.db_queries);
        reg!(names::NOVACRON_DB_QUERY_DURATION, m.db_duration);
        reg!(names::NOVACRON_DB_CONNECTIONS_ACTIVE, m.db_active);
        reg!(names::NOVACRON_DB_POOL_SIZE, m.db_pool);
        reg!(names::NOVACRON_VMS, m.vms);
        Metrics { registry, ..m }
    }

    /// One finished HTTP request. `endpoint` is a route template, never a raw path.
    pub fn api_request(
        &self,
        method: &str,
        endpoint: &str,
        status: u16,
        seconds: f64,
        trace_id: Option<String>,
    ) {
        let method = method_label(method);
        let endpoint: Cow<'static, str> = Cow::Owned(endpoint.to_owned());
        let labels = ApiLabels {
            method: method.clone(),
            endpoint: endpoint.clone(),
            status,
        };
        self.api_requests.get_or_create(&labels).inc();
        if status >= 400 {
            self.api_errors.get_or_create(&labels).inc();
        }
        self.api_duration
            .get_or_create(&ApiDurationLabels { method, endpoint })
            .observe(
                seconds,
                trace_id.map(|trace_id| TraceExemplar { trace_id }),
                None,
            );
    }

    pub fn migration_started(&self, source: &str, destination: &str) {
        self.dwcp_migrations
            .get_or_create(&MigrationLabels {
                source: source.to_owned(),
                destination: destination.to_owned(),
                status: "started",
            })
            .inc();
    }

    pub fn migration_finished(&self, source: &str, destination: &str, failed: bool, secs: f64) {
        self.dwcp_migrations
            .get_or_create(&MigrationLabels {
                source: source.to_owned(),
                destination: destination.to_owned(),
                status: if failed { "failed" } else { "completed" },
            })
            .inc();
        if !failed {
            self.dwcp_duration.observe(secs);
        }
    }

    pub fn migrations_active(&self, n: i64) {
        self.dwcp_active.set(n);
    }

    pub fn ws_opened(&self, endpoint: &'static str) {
        self.ws_active
            .get_or_create(&WsConnLabels {
                endpoint,
                client_type: "client",
            })
            .inc();
    }

    pub fn ws_closed(&self, endpoint: &'static str, seconds: f64) {
        self.ws_active
            .get_or_create(&WsConnLabels {
                endpoint,
                client_type: "client",
            })
            .dec();
        self.ws_duration
            .get_or_create(&EndpointLabel { endpoint })
            .observe(seconds);
    }

    pub fn ws_sent(&self, endpoint: &'static str, message_type: &'static str) {
        self.ws_sent
            .get_or_create(&WsMsgLabels {
                endpoint,
                message_type: Cow::Borrowed(message_type),
            })
            .inc();
    }

    pub fn ws_received(&self, endpoint: &'static str, message_type: &'static str) {
        self.ws_received
            .get_or_create(&WsMsgLabels {
                endpoint,
                message_type: Cow::Borrowed(message_type),
            })
            .inc();
    }

    pub fn db_query(&self, operation: &'static str, table: &'static str, ok: bool, seconds: f64) {
        self.db_queries
            .get_or_create(&DbLabels {
                operation,
                table,
                status: if ok { "ok" } else { "error" },
            })
            .inc();
        self.db_duration
            .get_or_create(&DbDurationLabels { operation, table })
            .observe(seconds);
    }

    pub fn db_pool(&self, open: u32, in_use: u32) {
        self.db_pool.set(i64::from(open));
        self.db_active.set(i64::from(in_use));
    }

    pub fn vm_states(&self, counts: &[(String, i64)]) {
        self.vms.clear();
        for (state, n) in counts {
            self.vms
                .get_or_create(&StateLabel {
                    state: state.clone(),
                })
                .set(*n);
        }
    }

    /// Encodes the registry: OpenMetrics when `openmetrics`, else classic text 0.0.4.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut body = String::with_capacity(16 * 1024);
        if encode(&mut body, &self.registry).is_err() {
            return String::new();
        }
        if openmetrics {
            return body;
        }
        let mut classic = String::with_capacity(body.len());
        for line in body.lines() {
            if line == "# EOF" || line.starts_with("# UNIT") {
                continue;
            }
            let line = match line.find(" # {") {
                Some(i) if !line.starts_with('#') => &line[..i],
                _ => line,
            };
            classic.push_str(line);
            classic.push('\n');
        }
        classic
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

// Keeps the label closed: an unknown method never becomes a new series.
fn method_label(m: &str) -> Cow<'static, str> {
    Cow::Borrowed(match m {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    })
}

/// Reads `traceparent`/`tracestate` from HTTP headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Reads `traceparent` from a JSON WebSocket message.
pub struct JsonExtractor<'a>(pub &'a serde_json::Value);

impl Extractor for JsonExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The tracer, when spans are wanted, plus the provider to flush at shutdown.
#[derive(Clone, Default)]
pub struct Tracing {
    tracer: Option<SdkTracer>,
    /// Set only when the target built the provider itself (so it owns its shutdown).
    owned: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Uses `given`, else an OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else none.
    pub fn new(given: Option<SdkTracerProvider>) -> anyhow::Result<Tracing> {
        if let Some(p) = given {
            return Ok(Tracing {
                tracer: Some(p.tracer("novacron-target")),
                owned: None,
            });
        }
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return Ok(Tracing::default());
        }
        let http = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
            .map(|p| p.starts_with("http"))
            .unwrap_or(false);
        let exporter = if http {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()?
        } else {
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("novacron-target")
                    .build(),
            )
            .build();
        Ok(Tracing {
            tracer: Some(provider.tracer("novacron-target")),
            owned: Some(provider),
        })
    }

    /// Starts a server span named `name` as a child of `parent` (no-op without a tracer).
    pub fn server_span(
        &self,
        name: String,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> Option<opentelemetry_sdk::trace::Span> {
        let tracer = self.tracer.as_ref()?;
        Some(
            tracer
                .span_builder(name)
                .with_kind(SpanKind::Server)
                .with_attributes(attributes)
                .start_with_context(tracer, parent),
        )
    }

    /// Flushes and shuts down a provider this module built.
    pub fn shutdown(&self) {
        if let Some(p) = &self.owned {
            let _ = p.shutdown();
        }
    }
}

/// Extracts the W3C trace context carried by `extractor`.
pub fn extract(extractor: &dyn Extractor) -> Context {
    // Only look when a traceparent is present: most requests carry none.
    if extractor.get("traceparent").is_none() {
        return Context::new();
    }
    TraceContextPropagator::new().extract(extractor)
}

/// Ends `span` with the response status; returns its trace id when sampled (for exemplars).
pub fn finish_span(mut span: opentelemetry_sdk::trace::Span, status: u16) -> Option<String> {
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_status(Status::error(format!("HTTP {status}")));
    }
    let sc = span.span_context().clone();
    span.end();
    sc.is_sampled().then(|| sc.trace_id().to_string())
}

/// Trace id of the current parent when it is sampled (exemplars without our own tracer).
pub fn sampled_parent(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}
