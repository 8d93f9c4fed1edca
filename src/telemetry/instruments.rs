//! The live instruments: one prometheus-client family per metric in [`names`](super::names),
//! mirrored into OpenTelemetry instruments when OTLP export is on.
//!
//! Hot path: a record call hashes the label *values* it was given (borrowed `&str`s) and finds
//! the already-registered series handle in a small per-metric cache, so steady state allocates
//! nothing and takes only read locks. A new label combination is registered once (allocating
//! its owned labels and the cached OTel attribute slice) under the cache's write lock.

use super::names::{self, Kind, MetricName};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// Latency buckets (seconds) shared by Prometheus and OTLP histograms: 1 ms .. 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0, 30.0, 60.0,
];

/// Owned label set as registered in a family (built once per series).
pub type Labels = Vec<(&'static str, String)>;

/// The exemplar label set: `{trace_id="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabel {
    pub trace_id: String,
}

#[derive(Clone)]
pub struct HistogramCtor;
impl MetricConstructor<HistogramWithExemplars<TraceLabel>> for HistogramCtor {
    fn new_metric(&self) -> HistogramWithExemplars<TraceLabel> {
        HistogramWithExemplars::new(LATENCY_BUCKETS.iter().copied())
    }
}

/// FNV-1a: short label values, no DoS concern (labels come from our own code).
struct Fnv(u64);
impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
}

fn hash_values(values: &[&str]) -> u64 {
    let mut h = Fnv(0xcbf29ce484222325);
    for v in values {
        h.write(v.as_bytes());
        h.write(&[0xff]); // separator: ("ab","c") != ("a","bc")
    }
    h.finish()
}

/// label values (borrowed on lookup, owned once stored) → series handle.
struct SeriesCache<V> {
    map: RwLock<HashMap<u64, Bucket<V>>>,
}

/// Series whose label values share a hash (almost always one).
type Bucket<V> = Vec<(Box<[Box<str>]>, V)>;

impl<V: Clone> SeriesCache<V> {
    fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, values: &[&str], make: impl FnOnce() -> V) -> V {
        let h = hash_values(values);
        let eq = |k: &[Box<str>]| {
            k.len() == values.len() && k.iter().zip(values).all(|(a, b)| **a == **b)
        };
        if let Ok(map) = self.map.read()
            && let Some(bucket) = map.get(&h)
            && let Some((_, v)) = bucket.iter().find(|(k, _)| eq(k))
        {
            return v.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let bucket = map.entry(h).or_default();
        if let Some((_, v)) = bucket.iter().find(|(k, _)| eq(k)) {
            return v.clone();
        }
        let v = make();
        let key: Box<[Box<str>]> = values.iter().map(|s| Box::<str>::from(*s)).collect();
        bucket.push((key, v.clone()));
        v
    }
}

/// OTel attribute key for a Prometheus label (semconv keys where the label is a semconv one).
fn otel_key(label: &'static str) -> &'static str {
    match label {
        names::L_METHOD => "http.request.method",
        names::L_URL_TEMPLATE => "url.template",
        names::L_STATUS_CODE => "http.response.status_code",
        names::L_ERROR_KIND => "error.type",
        names::L_DB_SYSTEM => "db.system.name",
        names::L_DB_OPERATION => "db.operation.name",
        names::L_DB_COLLECTION => "db.collection.name",
        other => other,
    }
}

fn owned_labels(m: &MetricName, values: &[&str]) -> Labels {
    m.labels
        .iter()
        .zip(values)
        // An empty value is an absent label in Prometheus; leave it out of the set.
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect()
}

fn otel_attrs(m: &MetricName, values: &[&str]) -> Arc<[KeyValue]> {
    m.labels
        .iter()
        .zip(values)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| KeyValue::new(otel_key(k), (*v).to_owned()))
        .collect()
}

/// Help text without its final period: prometheus-client appends one.
fn help(m: &MetricName) -> &'static str {
    m.help.trim_end_matches('.')
}

/// Registry name: prometheus-client appends `_total` to counters itself.
fn registry_name(m: &MetricName) -> &'static str {
    match m.kind {
        Kind::Counter => m.prometheus.strip_suffix("_total").unwrap_or(m.prometheus),
        _ => m.prometheus,
    }
}

// ---------------------------------------------------------------- counters

#[derive(Clone)]
struct CounterSeries {
    prom: Counter,
    attrs: Arc<[KeyValue]>,
}

pub struct LabeledCounter {
    name: MetricName,
    family: Family<Labels, Counter>,
    otel: Option<opentelemetry::metrics::Counter<u64>>,
    cache: SeriesCache<CounterSeries>,
}

impl LabeledCounter {
    fn new(name: MetricName, reg: &mut Registry, meter: Option<&Meter>) -> Self {
        let family = Family::<Labels, Counter>::default();
        reg.register(registry_name(&name), help(&name), family.clone());
        let otel = meter.map(|m| {
            m.u64_counter(name.otel)
                .with_unit(name.unit)
                .with_description(name.help)
                .build()
        });
        Self {
            name,
            family,
            otel,
            cache: SeriesCache::new(),
        }
    }

    pub fn inc_by(&self, values: &[&str], by: u64) {
        debug_assert_eq!(
            values.len(),
            self.name.labels.len(),
            "{}",
            self.name.prometheus
        );
        let s = self.cache.get(values, || CounterSeries {
            prom: self
                .family
                .get_or_create_owned(&owned_labels(&self.name, values)),
            attrs: otel_attrs(&self.name, values),
        });
        s.prom.inc_by(by);
        if let Some(o) = &self.otel {
            o.add(by, &s.attrs);
        }
    }
}

// ---------------------------------------------------------------- gauges

#[derive(Clone)]
struct GaugeSeries {
    prom: Gauge,
    attrs: Arc<[KeyValue]>,
}

enum OtelGauge {
    Gauge(opentelemetry::metrics::Gauge<i64>),
    UpDown(opentelemetry::metrics::UpDownCounter<i64>),
}

pub struct LabeledGauge {
    name: MetricName,
    family: Family<Labels, Gauge>,
    otel: Option<OtelGauge>,
    cache: SeriesCache<GaugeSeries>,
}

impl LabeledGauge {
    /// `up_down`: the gauge is driven by deltas (an OTel UpDownCounter), else by absolute sets.
    fn new(name: MetricName, reg: &mut Registry, meter: Option<&Meter>, up_down: bool) -> Self {
        let family = Family::<Labels, Gauge>::default();
        reg.register(registry_name(&name), help(&name), family.clone());
        let otel = meter.map(|m| {
            if up_down {
                OtelGauge::UpDown(
                    m.i64_up_down_counter(name.otel)
                        .with_unit(name.unit)
                        .with_description(name.help)
                        .build(),
                )
            } else {
                OtelGauge::Gauge(
                    m.i64_gauge(name.otel)
                        .with_unit(name.unit)
                        .with_description(name.help)
                        .build(),
                )
            }
        });
        Self {
            name,
            family,
            otel,
            cache: SeriesCache::new(),
        }
    }

    fn series(&self, values: &[&str]) -> GaugeSeries {
        debug_assert_eq!(
            values.len(),
            self.name.labels.len(),
            "{}",
            self.name.prometheus
        );
        self.cache.get(values, || GaugeSeries {
            prom: self
                .family
                .get_or_create_owned(&owned_labels(&self.name, values)),
            attrs: otel_attrs(&self.name, values),
        })
    }

    pub fn set(&self, values: &[&str], v: i64) {
        let s = self.series(values);
        s.prom.set(v);
        match &self.otel {
            Some(OtelGauge::Gauge(g)) => g.record(v, &s.attrs),
            Some(OtelGauge::UpDown(_)) | None => {}
        }
    }

    pub fn add(&self, values: &[&str], delta: i64) {
        let s = self.series(values);
        s.prom.inc_by(delta);
        match &self.otel {
            Some(OtelGauge::UpDown(c)) => c.add(delta, &s.attrs),
            Some(OtelGauge::Gauge(g)) => g.record(s.prom.get(), &s.attrs),
            None => {}
        }
    }

    /// Removes every series whose leading label values equal `prefix` (e.g.
    /// `novaload_run_info` of a test when it finishes); OTLP sees those gauges drop to 0.
    pub fn remove_matching(&self, prefix: &[&str]) {
        let mut removed: Vec<Box<[Box<str>]>> = Vec::new();
        {
            let mut map = self.cache.map.write().unwrap_or_else(|e| e.into_inner());
            for bucket in map.values_mut() {
                bucket.retain(|(k, _)| {
                    let hit =
                        k.len() >= prefix.len() && k.iter().zip(prefix).all(|(a, b)| **a == **b);
                    if hit {
                        removed.push(k.clone());
                    }
                    !hit
                });
            }
        }
        for k in removed {
            let values: Vec<&str> = k.iter().map(|s| &**s).collect();
            self.family.remove(&owned_labels(&self.name, &values));
            if let Some(OtelGauge::Gauge(g)) = &self.otel {
                g.record(0, &otel_attrs(&self.name, &values));
            }
        }
    }
}

// ---------------------------------------------------------------- histograms

#[derive(Clone)]
struct HistSeries {
    prom: HistogramWithExemplars<TraceLabel>,
    attrs: Arc<[KeyValue]>,
}

pub struct LabeledHistogram {
    name: MetricName,
    family: Family<Labels, HistogramWithExemplars<TraceLabel>, HistogramCtor>,
    otel: Option<opentelemetry::metrics::Histogram<f64>>,
    cache: SeriesCache<HistSeries>,
}

impl LabeledHistogram {
    fn new(name: MetricName, reg: &mut Registry, meter: Option<&Meter>) -> Self {
        let family = Family::new_with_constructor(HistogramCtor);
        reg.register(registry_name(&name), help(&name), family.clone());
        let otel = meter.map(|m| {
            m.f64_histogram(name.otel)
                .with_unit(name.unit)
                .with_description(name.help)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        });
        Self {
            name,
            family,
            otel,
            cache: SeriesCache::new(),
        }
    }

    /// Observes `v` seconds; `trace` (a *sampled* trace id) becomes the bucket's exemplar.
    pub fn observe(&self, values: &[&str], v: f64, trace: Option<&str>) {
        debug_assert_eq!(
            values.len(),
            self.name.labels.len(),
            "{}",
            self.name.prometheus
        );
        let s = self.cache.get(values, || HistSeries {
            prom: self
                .family
                .get_or_create_owned(&owned_labels(&self.name, values)),
            attrs: otel_attrs(&self.name, values),
        });
        match trace {
            Some(t) if !t.is_empty() => s.prom.observe(
                v,
                Some(TraceLabel {
                    trace_id: t.to_owned(),
                }),
                Some(SystemTime::now()),
            ),
            _ => s.prom.observe(v, None, None),
        }
        if let Some(o) = &self.otel {
            o.record(v, &s.attrs);
        }
    }
}

// ---------------------------------------------------------------- the set

/// Every client instrument of `names::CLIENT_METRICS` except the scrape-time ones
/// (spans dropped, process CPU/RSS), which are collectors (see `process.rs`, `mod.rs`).
pub struct Instruments {
    pub http_duration: LabeledHistogram,
    pub db_duration: LabeledHistogram,
    pub vus: LabeledGauge,
    pub vus_max: LabeledGauge,
    pub iterations: LabeledCounter,
    pub iteration_duration: LabeledHistogram,
    pub dropped_iterations: LabeledCounter,
    pub checks: LabeledCounter,
    pub errors: LabeledCounter,
    pub operations: LabeledCounter,
    pub data_sent: LabeledCounter,
    pub data_received: LabeledCounter,
    pub ws_active: LabeledGauge,
    pub ws_connections: LabeledCounter,
    pub ws_connect_duration: LabeledHistogram,
    pub ws_messages: LabeledCounter,
    pub ws_latency: LabeledHistogram,
    pub migrations_in_flight: LabeledGauge,
    pub migrations: LabeledCounter,
    pub migration_duration: LabeledHistogram,
    pub db_pool_acquire: LabeledHistogram,
    pub db_pool_connections: LabeledGauge,
    pub run_info: LabeledGauge,
}

impl Instruments {
    pub fn new(reg: &mut Registry, meter: Option<&Meter>) -> Self {
        use names::*;
        Self {
            http_duration: LabeledHistogram::new(HTTP_CLIENT_REQUEST_DURATION, reg, meter),
            db_duration: LabeledHistogram::new(DB_CLIENT_OPERATION_DURATION, reg, meter),
            vus: LabeledGauge::new(VUS, reg, meter, false),
            vus_max: LabeledGauge::new(VUS_MAX, reg, meter, false),
            iterations: LabeledCounter::new(ITERATIONS, reg, meter),
            iteration_duration: LabeledHistogram::new(ITERATION_DURATION, reg, meter),
            dropped_iterations: LabeledCounter::new(DROPPED_ITERATIONS, reg, meter),
            checks: LabeledCounter::new(CHECKS, reg, meter),
            errors: LabeledCounter::new(ERRORS, reg, meter),
            operations: LabeledCounter::new(OPERATIONS, reg, meter),
            data_sent: LabeledCounter::new(DATA_SENT, reg, meter),
            data_received: LabeledCounter::new(DATA_RECEIVED, reg, meter),
            ws_active: LabeledGauge::new(WS_CONNECTIONS_ACTIVE, reg, meter, true),
            ws_connections: LabeledCounter::new(WS_CONNECTIONS, reg, meter),
            ws_connect_duration: LabeledHistogram::new(WS_CONNECT_DURATION, reg, meter),
            ws_messages: LabeledCounter::new(WS_MESSAGES, reg, meter),
            ws_latency: LabeledHistogram::new(WS_MESSAGE_LATENCY, reg, meter),
            migrations_in_flight: LabeledGauge::new(MIGRATIONS_IN_FLIGHT, reg, meter, true),
            migrations: LabeledCounter::new(MIGRATIONS, reg, meter),
            migration_duration: LabeledHistogram::new(MIGRATION_DURATION, reg, meter),
            db_pool_acquire: LabeledHistogram::new(DB_POOL_ACQUIRE_DURATION, reg, meter),
            db_pool_connections: LabeledGauge::new(DB_POOL_CONNECTIONS, reg, meter, false),
            run_info: LabeledGauge::new(RUN_INFO, reg, meter, false),
        }
    }
}

/// `"200"` etc. without allocating: a table of 0..=599 built once.
pub fn status_str(code: u16) -> &'static str {
    static TABLE: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| (0..600u16).map(|c| c.to_string()).collect());
    TABLE
        .get(usize::from(code))
        .map(String::as_str)
        .unwrap_or("other")
}

/// `2xx`..`5xx` (or `1xx`), `error` when there was no response (status 0).
pub fn status_class(code: u16) -> &'static str {
    match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_distinguishes_label_boundaries_and_reuses_series() {
        let c: SeriesCache<usize> = SeriesCache::new();
        let mut n = 0;
        let a = c.get(&["ab", "c"], || {
            n += 1;
            1
        });
        let b = c.get(&["a", "bc"], || {
            n += 1;
            2
        });
        let a2 = c.get(&["ab", "c"], || 99);
        assert_eq!((a, b, a2, n), (1, 2, 1, 2));
    }

    #[test]
    fn status_helpers() {
        assert_eq!(status_str(0), "0");
        assert_eq!(status_str(503), "503");
        assert_eq!(status_str(999), "other");
        assert_eq!(status_class(0), "error");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
    }
}
