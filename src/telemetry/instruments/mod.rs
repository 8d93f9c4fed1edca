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
//! By kind: [`counter`], [`gauge`], [`histogram`] (rendered by novaload itself, exemplars
//! included); this file holds the series cache they share and the set of them all.

mod counter;
mod gauge;
mod histogram;

pub use counter::{LabeledCounter, ShardedCounter};
pub use gauge::LabeledGauge;
pub use histogram::{
    HistFamily, HistSeries, LabeledHistogram, encode_otlp_histograms, render_histograms,
};

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
    fn status_helpers() {
        assert_eq!(status_str(0), "0");
        assert_eq!(status_str(503), "503");
        assert_eq!(status_str(999), "other");
        assert_eq!(status_class(0), "error");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
    }
}
