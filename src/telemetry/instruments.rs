//! The live instruments: one Prometheus family per metric in [`names`](super::names),
//! mirrored into OpenTelemetry instruments when OTLP export is on.
//!
//! Hot path (every request records a histogram and a few counters): a record call hashes the
//! label *values* it was given (borrowed `&str`s, FxHash a word at a time) and finds the
//! series in the calling thread's own cache shard, so steady state allocates nothing and
//! touches no cache line another thread writes. Counters and histograms keep one cell per
//! thread shard and are summed when scraped; a new label combination is registered once
//! (allocating its owned labels and OTel attribute slice) under a global lock.
//!
//! Histograms with exemplars are rendered by [`render_histograms`] rather than by
//! prometheus-client: its `HistogramWithExemplars` takes a write lock shared by all threads
//! on every observation, and its exemplar type cannot be built outside the crate.

use super::names::{self, Kind, MetricName};
use crate::metrics::FxHasher;
use crate::shard::Sharded;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// Latency buckets (seconds) shared by Prometheus and OTLP histograms: 1 ms .. 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0, 30.0, 60.0,
];
/// Buckets including +Inf.
const N_BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// Owned label set as registered in a family (built once per series).
pub type Labels = Vec<(&'static str, String)>;

fn hash_values(values: &[&str]) -> u64 {
    let mut h = FxHasher::default();
    for v in values {
        h.write(v.as_bytes());
        h.write_u8(0xff); // separator: ("ab","c") != ("a","bc")
    }
    h.finish()
}

/// Series whose label values share a hash (almost always one).
type Bucket<V> = Vec<(Box<[Box<str>]>, V)>;
type SeriesMap<V> = HashMap<u64, Bucket<V>>;

/// label values (borrowed on lookup, owned once stored) → series handle.
struct SeriesCache<V> {
    /// One map per thread shard: a lookup takes only the calling thread's uncontended lock.
    local: Sharded<RwLock<SeriesMap<V>>>,
    /// Every series: the registration authority (a series is created once, under this lock).
    all: Mutex<SeriesMap<V>>,
}

fn find<'a, V>(map: &'a HashMap<u64, Bucket<V>>, h: u64, values: &[&str]) -> Option<&'a V> {
    map.get(&h)?
        .iter()
        .find(|(k, _)| k.len() == values.len() && k.iter().zip(values).all(|(a, b)| **a == **b))
        .map(|(_, v)| v)
}

impl<V: Clone> SeriesCache<V> {
    fn new() -> Self {
        Self {
            local: Sharded::default(),
            all: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the series of `values`, creating it with `make` the first time.
    #[inline]
    fn with<R>(&self, values: &[&str], make: impl FnOnce() -> V, f: impl FnOnce(&V) -> R) -> R {
        let h = hash_values(values);
        let local = self.local.mine();
        if let Ok(map) = local.read()
            && let Some(v) = find(&map, h, values)
        {
            return f(v);
        }
        let v = {
            let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
            match find(&all, h, values) {
                Some(v) => v.clone(),
                None => {
                    let v = make();
                    all.entry(h)
                        .or_default()
                        .push((owned_key(values), v.clone()));
                    v
                }
            }
        };
        let r = f(&v);
        let mut map = local.write().unwrap_or_else(|e| e.into_inner());
        if find(&map, h, values).is_none() {
            map.entry(h).or_default().push((owned_key(values), v));
        }
        r
    }

    /// Forgets every series whose leading label values equal `prefix`; returns their values.
    fn remove_matching(&self, prefix: &[&str]) -> Vec<Box<[Box<str>]>> {
        let hit = |k: &[Box<str>]| {
            k.len() >= prefix.len() && k.iter().zip(prefix).all(|(a, b)| **a == **b)
        };
        let mut removed = Vec::new();
        {
            let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
            for bucket in all.values_mut() {
                bucket.retain(|(k, _)| {
                    if hit(k) {
                        removed.push(k.clone());
                    }
                    !hit(k)
                });
            }
        }
        for local in self.local.iter() {
            let mut map = local.write().unwrap_or_else(|e| e.into_inner());
            for bucket in map.values_mut() {
                bucket.retain(|(k, _)| !hit(k));
            }
        }
        removed
    }
}

fn owned_key(values: &[&str]) -> Box<[Box<str>]> {
    values.iter().map(|s| Box::<str>::from(*s)).collect()
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

/// A counter with one cell per thread shard, summed when scraped.
#[derive(Clone, Default)]
pub struct ShardedCounter(Arc<Sharded<AtomicU64>>);

impl ShardedCounter {
    #[inline]
    pub fn inc_by(&self, by: u64) {
        self.0.mine().fetch_add(by, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl std::fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShardedCounter({})", self.get())
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, u64, u64>(&self.get(), None)
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Series as the OTLP callback reads them: attributes and the live counter.
type OtelCounterSeries = Arc<RwLock<Vec<(Arc<[KeyValue]>, ShardedCounter)>>>;

pub struct LabeledCounter {
    name: MetricName,
    family: Family<Labels, ShardedCounter>,
    /// Some when OTLP export is on: an observable counter's callback reports these totals at
    /// each export, so the hot path pays nothing for OTLP (an SDK `add` hashes every attribute
    /// with SipHash per call).
    otel_series: Option<OtelCounterSeries>,
    cache: SeriesCache<ShardedCounter>,
}

impl LabeledCounter {
    fn new(name: MetricName, reg: &mut Registry, meter: Option<&Meter>) -> Self {
        let family = Family::<Labels, ShardedCounter>::default();
        reg.register(registry_name(&name), help(&name), family.clone());
        let otel_series = meter.map(|m| {
            let series: OtelCounterSeries = Arc::default();
            let read = series.clone();
            let _ = m
                .u64_observable_counter(name.otel)
                .with_unit(name.unit)
                .with_description(name.help)
                .with_callback(move |o| {
                    for (attrs, c) in read.read().unwrap_or_else(|e| e.into_inner()).iter() {
                        o.observe(c.get(), attrs);
                    }
                })
                .build();
            series
        });
        Self {
            name,
            family,
            otel_series,
            cache: SeriesCache::new(),
        }
    }

    pub fn inc_by(&self, values: &[&str], by: u64) {
        self.cache
            .with(values, || self.create(values), |c| c.inc_by(by));
    }

    /// The series of `values`, for callers that record on it many times (a VU's own series).
    pub fn series(&self, values: &[&str]) -> ShardedCounter {
        self.cache
            .with(values, || self.create(values), ShardedCounter::clone)
    }

    fn create(&self, values: &[&str]) -> ShardedCounter {
        debug_assert_eq!(
            values.len(),
            self.name.labels.len(),
            "{}",
            self.name.prometheus
        );
        let prom = self
            .family
            .get_or_create_owned(&owned_labels(&self.name, values));
        if let Some(series) = &self.otel_series {
            series
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push((otel_attrs(&self.name, values), prom.clone()));
        }
        prom
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

    fn with_series(&self, values: &[&str], f: impl FnOnce(&GaugeSeries)) {
        debug_assert_eq!(
            values.len(),
            self.name.labels.len(),
            "{}",
            self.name.prometheus
        );
        self.cache.with(
            values,
            || GaugeSeries {
                prom: self
                    .family
                    .get_or_create_owned(&owned_labels(&self.name, values)),
                attrs: otel_attrs(&self.name, values),
            },
            f,
        )
    }

    pub fn set(&self, values: &[&str], v: i64) {
        self.with_series(values, |s| {
            s.prom.set(v);
            match &self.otel {
                Some(OtelGauge::Gauge(g)) => g.record(v, &s.attrs),
                Some(OtelGauge::UpDown(_)) | None => {}
            }
        });
    }

    pub fn add(&self, values: &[&str], delta: i64) {
        self.with_series(values, |s| {
            s.prom.inc_by(delta);
            match &self.otel {
                Some(OtelGauge::UpDown(c)) => c.add(delta, &s.attrs),
                Some(OtelGauge::Gauge(g)) => g.record(s.prom.get(), &s.attrs),
                None => {}
            }
        });
    }

    /// Removes every series whose leading label values equal `prefix` (e.g.
    /// `novaload_run_info` of a test when it finishes); OTLP sees those gauges drop to 0.
    pub fn remove_matching(&self, prefix: &[&str]) {
        for k in self.cache.remove_matching(prefix) {
            let values: Vec<&str> = k.iter().map(|s| &**s).collect();
            self.family.remove(&owned_labels(&self.name, &values));
            if let Some(OtelGauge::Gauge(g)) = &self.otel {
                g.record(0, &otel_attrs(&self.name, &values));
            }
        }
    }
}

// ---------------------------------------------------------------- histograms

/// A trace id kept as an exemplar: the hex id inline (no allocation per observation).
#[derive(Clone, Copy)]
struct Exemplar {
    value: f64,
    trace: [u8; 32],
    trace_len: u8,
    at: SystemTime,
}

impl Exemplar {
    fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.trace[..usize::from(self.trace_len)]).unwrap_or("")
    }
}

/// One thread shard of a histogram: per-bucket counts, the sum and each bucket's latest
/// exemplar.
#[derive(Clone, Copy)]
struct HistCell {
    counts: [u64; N_BUCKETS],
    sum: f64,
    exemplars: [Option<Exemplar>; N_BUCKETS],
}

impl Default for HistCell {
    fn default() -> Self {
        Self {
            counts: [0; N_BUCKETS],
            sum: 0.0,
            exemplars: [None; N_BUCKETS],
        }
    }
}

/// A histogram with one cell per thread shard, merged when scraped.
struct ShardedHistogram(Sharded<Mutex<HistCell>>);

impl ShardedHistogram {
    fn new() -> Self {
        Self(Sharded::default())
    }

    #[inline]
    fn observe(&self, v: f64, trace: Option<&str>) {
        let bucket = LATENCY_BUCKETS.partition_point(|le| *le < v);
        let exemplar = trace.filter(|t| !t.is_empty() && t.len() <= 32).map(|t| {
            let mut trace = [0u8; 32];
            trace[..t.len()].copy_from_slice(t.as_bytes());
            Exemplar {
                value: v,
                trace,
                trace_len: t.len() as u8,
                at: SystemTime::now(),
            }
        });
        let mut cell = self.0.mine().lock().unwrap_or_else(|e| e.into_inner());
        cell.counts[bucket] += 1;
        cell.sum += v;
        if exemplar.is_some() {
            cell.exemplars[bucket] = exemplar;
        }
    }

    /// All shards summed; each bucket's newest exemplar.
    fn merged(&self) -> HistCell {
        let mut out = HistCell::default();
        for shard in self.0.iter() {
            let c = *shard.lock().unwrap_or_else(|e| e.into_inner());
            for i in 0..N_BUCKETS {
                out.counts[i] += c.counts[i];
                if let Some(e) = c.exemplars[i]
                    && out.exemplars[i].is_none_or(|o| o.at < e.at)
                {
                    out.exemplars[i] = Some(e);
                }
            }
            out.sum += c.sum;
        }
        out
    }
}

#[derive(Clone)]
pub struct HistSeries {
    prom: Arc<ShardedHistogram>,
}

/// The series of one histogram metric, for [`render_histograms`].
pub struct HistFamily {
    name: MetricName,
    series: RwLock<Vec<(Labels, Arc<ShardedHistogram>)>>,
}

/// A histogram metric. Not mirrored into an OTel SDK instrument: the SDK's `record` hashes
/// every attribute on every sample (about as costly as the request); OTLP gets these
/// families from [`encode_otlp_histograms`] instead, exemplars included.
pub struct LabeledHistogram {
    family: Arc<HistFamily>,
    cache: SeriesCache<HistSeries>,
}

impl LabeledHistogram {
    fn new(name: MetricName) -> Self {
        Self {
            family: Arc::new(HistFamily {
                name,
                series: RwLock::new(Vec::new()),
            }),
            cache: SeriesCache::new(),
        }
    }

    /// Observes `v` seconds; `trace` (a *sampled* trace id) becomes the bucket's exemplar.
    pub fn observe(&self, values: &[&str], v: f64, trace: Option<&str>) {
        self.cache.with(
            values,
            || self.create(values),
            |s| self.observe_series(s, v, trace),
        );
    }

    /// The series of `values`, for callers that record on it many times (a VU's own series).
    pub fn series(&self, values: &[&str]) -> HistSeries {
        self.cache
            .with(values, || self.create(values), HistSeries::clone)
    }

    /// [`LabeledHistogram::observe`] on a series from [`LabeledHistogram::series`].
    #[inline]
    pub fn observe_series(&self, s: &HistSeries, v: f64, trace: Option<&str>) {
        s.prom.observe(v, trace);
    }

    fn create(&self, values: &[&str]) -> HistSeries {
        let name = &self.family.name;
        debug_assert_eq!(values.len(), name.labels.len(), "{}", name.prometheus);
        let prom = Arc::new(ShardedHistogram::new());
        self.family
            .series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((owned_labels(name, values), prom.clone()));
        HistSeries { prom }
    }
}

/// The histogram families as OTLP `Metric` messages, cumulative since `start_ns`, each
/// appended as one `ScopeMetrics.metrics` field, with each bucket's newest exemplar (its trace
/// id, so a collector's exemplars lead to the trace as Prometheus' do).
pub fn encode_otlp_histograms(
    out: &mut Vec<u8>,
    families: &[Arc<HistFamily>],
    start_ns: u64,
    now_ns: u64,
) {
    use super::trace::pb;
    let mut points = Vec::new();
    for f in families {
        points.clear();
        let series = f.series.read().unwrap_or_else(|e| e.into_inner());
        for (labels, h) in series.iter() {
            let cell = h.merged();
            let mut p = Vec::with_capacity(512);
            for (k, v) in labels {
                pb::put_str_kv(&mut p, 9, otel_key(k), v);
            }
            pb::put_fixed64(&mut p, 2, start_ns);
            pb::put_fixed64(&mut p, 3, now_ns);
            pb::put_fixed64(&mut p, 4, cell.counts.iter().sum());
            pb::put_fixed64(&mut p, 5, cell.sum.to_bits());
            pb::put_tag(&mut p, 6, pb::LEN);
            pb::put_varint(&mut p, (8 * N_BUCKETS) as u64);
            for c in cell.counts {
                p.extend_from_slice(&c.to_le_bytes());
            }
            pb::put_tag(&mut p, 7, pb::LEN);
            pb::put_varint(&mut p, (8 * LATENCY_BUCKETS.len()) as u64);
            for b in LATENCY_BUCKETS {
                p.extend_from_slice(&b.to_le_bytes());
            }
            for e in cell.exemplars.iter().flatten() {
                let Some(trace_id) = hex16(e.trace_id()) else {
                    continue;
                };
                let at =
                    e.at.duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                let mut x = Vec::with_capacity(40);
                pb::put_fixed64(&mut x, 2, at);
                pb::put_fixed64(&mut x, 3, e.value.to_bits());
                pb::put_bytes(&mut x, 5, &trace_id);
                pb::put_bytes(&mut p, 8, &x);
            }
            pb::put_bytes(&mut points, 1, &p);
        }
        drop(series);
        if points.is_empty() {
            continue;
        }
        // Histogram { data_points, aggregation_temporality = CUMULATIVE (2) }
        let hist_len = points.len() + 2;
        let mut metric = Vec::with_capacity(pb::msg_len(9, hist_len) + 128);
        pb::put_bytes(&mut metric, 1, f.name.otel.as_bytes());
        pb::put_bytes(&mut metric, 2, f.name.help.as_bytes());
        pb::put_bytes(&mut metric, 3, f.name.unit.as_bytes());
        pb::put_tag(&mut metric, 9, pb::LEN);
        pb::put_varint(&mut metric, hist_len as u64);
        metric.extend_from_slice(&points);
        pb::put_tag(&mut metric, 2, pb::VARINT);
        pb::put_varint(&mut metric, 2);
        pb::put_bytes(out, 2, &metric);
    }
}

/// 32 hex digits → 16 bytes.
fn hex16(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let b = s.as_bytes();
    if b.len() != 32 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Appends the histogram families in the Prometheus text format (0.0.4) or, with
/// `openmetrics`, in OpenMetrics 1.0 with each bucket's newest trace exemplar.
pub fn render_histograms(out: &mut String, families: &[Arc<HistFamily>], openmetrics: bool) {
    for f in families {
        let series = f.series.read().unwrap_or_else(|e| e.into_inner());
        if series.is_empty() {
            continue;
        }
        let name = f.name.prometheus;
        let help = if openmetrics {
            // prometheus-client's OpenMetrics text ends HELP with a period; match it
            format!("{}.", help(&f.name))
        } else {
            help(&f.name).to_owned()
        };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (labels, hist) in series.iter() {
            let h = hist.merged();
            let mut base = String::new();
            for (k, v) in labels {
                let _ = write!(base, "{k}=\"{}\",", escape_label(v));
            }
            let mut cumulative = 0u64;
            for i in 0..N_BUCKETS {
                cumulative += h.counts[i];
                let le = match LATENCY_BUCKETS.get(i) {
                    Some(b) => format!("{b:?}"),
                    None => "+Inf".to_owned(),
                };
                let _ = write!(out, "{name}_bucket{{{base}le=\"{le}\"}} {cumulative}");
                if openmetrics && let Some(e) = h.exemplars[i] {
                    let ts =
                        e.at.duration_since(SystemTime::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs_f64();
                    let _ = write!(
                        out,
                        " # {{trace_id=\"{}\"}} {:?} {ts:.3}",
                        e.trace_id(),
                        e.value
                    );
                }
                out.push('\n');
            }
            let plain = base.trim_end_matches(',');
            let _ = writeln!(out, "{name}_sum{{{plain}}} {:?}", h.sum);
            let _ = writeln!(out, "{name}_count{{{plain}}} {cumulative}");
        }
    }
}

fn escape_label(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
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
            http_duration: LabeledHistogram::new(HTTP_CLIENT_REQUEST_DURATION),
            db_duration: LabeledHistogram::new(DB_CLIENT_OPERATION_DURATION),
            vus: LabeledGauge::new(VUS, reg, meter, false),
            vus_max: LabeledGauge::new(VUS_MAX, reg, meter, false),
            iterations: LabeledCounter::new(ITERATIONS, reg, meter),
            iteration_duration: LabeledHistogram::new(ITERATION_DURATION),
            dropped_iterations: LabeledCounter::new(DROPPED_ITERATIONS, reg, meter),
            checks: LabeledCounter::new(CHECKS, reg, meter),
            errors: LabeledCounter::new(ERRORS, reg, meter),
            operations: LabeledCounter::new(OPERATIONS, reg, meter),
            data_sent: LabeledCounter::new(DATA_SENT, reg, meter),
            data_received: LabeledCounter::new(DATA_RECEIVED, reg, meter),
            ws_active: LabeledGauge::new(WS_CONNECTIONS_ACTIVE, reg, meter, true),
            ws_connections: LabeledCounter::new(WS_CONNECTIONS, reg, meter),
            ws_connect_duration: LabeledHistogram::new(WS_CONNECT_DURATION),
            ws_messages: LabeledCounter::new(WS_MESSAGES, reg, meter),
            ws_latency: LabeledHistogram::new(WS_MESSAGE_LATENCY),
            migrations_in_flight: LabeledGauge::new(MIGRATIONS_IN_FLIGHT, reg, meter, true),
            migrations: LabeledCounter::new(MIGRATIONS, reg, meter),
            migration_duration: LabeledHistogram::new(MIGRATION_DURATION),
            db_pool_acquire: LabeledHistogram::new(DB_POOL_ACQUIRE_DURATION),
            db_pool_connections: LabeledGauge::new(DB_POOL_CONNECTIONS, reg, meter, false),
            run_info: LabeledGauge::new(RUN_INFO, reg, meter, false),
        }
    }
}

impl Instruments {
    /// The histogram families, rendered next to the registry (see [`render_histograms`]).
    pub fn histogram_families(&self) -> Vec<Arc<HistFamily>> {
        [
            &self.http_duration,
            &self.db_duration,
            &self.iteration_duration,
            &self.ws_connect_duration,
            &self.ws_latency,
            &self.migration_duration,
            &self.db_pool_acquire,
        ]
        .into_iter()
        .map(|h| h.family.clone())
        .collect()
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
        let a = c.with(
            &["ab", "c"],
            || {
                n += 1;
                1
            },
            |v| *v,
        );
        let b = c.with(
            &["a", "bc"],
            || {
                n += 1;
                2
            },
            |v| *v,
        );
        let a2 = c.with(&["ab", "c"], || 99, |v| *v);
        // another thread finds the series registered by this one, not a new one
        let a3 =
            std::thread::scope(|s| s.spawn(|| c.with(&["ab", "c"], || 99, |v| *v)).join()).unwrap();
        assert_eq!((a, b, a2, a3, n), (1, 2, 1, 1, 2));
        assert_eq!(c.remove_matching(&["ab"]).len(), 1);
        assert_eq!(c.with(&["ab", "c"], || 7, |v| *v), 7);
    }

    #[test]
    fn sharded_histogram_merges_threads_and_renders_both_formats() {
        let h = LabeledHistogram::new(names::HTTP_CLIENT_REQUEST_DURATION);
        let values = ["run1", "api", "default", "GET", "/x", "200", "2xx", ""];
        let trace = "0123456789abcdef0123456789abcdef";
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        h.observe(&values, 0.002, None);
                    }
                });
            }
        });
        h.observe(&values, 0.7, Some(trace));
        let families = vec![h.family.clone()];
        let mut om = String::new();
        render_histograms(&mut om, &families, true);
        let name = names::HTTP_CLIENT_REQUEST_DURATION.prometheus;
        let labels = "run_id=\"run1\",test=\"api\",scenario=\"default\"";
        assert!(om.contains(&format!("{name}_count{{{labels}")), "{om}");
        assert!(om.contains("le=\"0.0025\"} 4000\n"), "{om}");
        assert!(om.contains("le=\"+Inf\"} 4001\n"), "{om}");
        assert!(
            om.contains(&format!(
                "le=\"0.75\"}} 4001 # {{trace_id=\"{trace}\"}} 0.7 "
            )),
            "{om}"
        );
        assert!(om.contains("} 4001\n") && om.contains("_sum{"), "{om}");
        let mut text = String::new();
        render_histograms(&mut text, &families, false);
        assert!(
            !text.contains("trace_id"),
            "classic text has no exemplars: {text}"
        );
        assert!(text.contains("le=\"1.0\"} 4001\n"), "{text}");
    }

    #[test]
    fn otlp_histograms_decode_with_counts_bounds_attributes_and_exemplars() {
        use opentelemetry_proto::tonic::metrics::v1::{ScopeMetrics, metric::Data};
        use prost::Message as _;
        let h = LabeledHistogram::new(names::HTTP_CLIENT_REQUEST_DURATION);
        let values = ["run", "api", "default", "GET", "/x", "200", "2xx", ""];
        let trace = "0123456789abcdef0123456789abcdef";
        h.observe(&values, 0.003, Some(trace));
        h.observe(&values, 0.2, None);
        let mut buf = Vec::new();
        encode_otlp_histograms(&mut buf, std::slice::from_ref(&h.family), 1, 2);
        // The encoder writes `ScopeMetrics.metrics` fields: decodable as a ScopeMetrics.
        let sm = ScopeMetrics::decode(buf.as_slice()).unwrap();
        assert_eq!(sm.metrics.len(), 1);
        let m = &sm.metrics[0];
        assert_eq!(m.name, names::HTTP_CLIENT_REQUEST_DURATION.otel);
        assert_eq!(m.unit, names::HTTP_CLIENT_REQUEST_DURATION.unit);
        let Some(Data::Histogram(hist)) = &m.data else {
            panic!("not a histogram: {m:?}");
        };
        assert_eq!(hist.aggregation_temporality, 2, "cumulative");
        let p = &hist.data_points[0];
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (1, 2));
        assert_eq!(p.count, 2);
        assert!((p.sum.unwrap() - 0.203).abs() < 1e-9);
        assert_eq!(p.explicit_bounds, LATENCY_BUCKETS);
        assert_eq!(p.bucket_counts.len(), N_BUCKETS);
        assert_eq!((p.bucket_counts[2], p.bucket_counts[9]), (1, 1));
        let attr = |k: &str| {
            p.attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
        };
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        assert_eq!(attr("url.template"), Some(Value::StringValue("/x".into())));
        assert_eq!(
            attr("http.response.status_code"),
            Some(Value::StringValue("200".into()))
        );
        assert_eq!(p.exemplars.len(), 1);
        assert_eq!(p.exemplars[0].trace_id, hex16(trace).unwrap().to_vec());
        assert!(p.exemplars[0].time_unix_nano > 0);
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
