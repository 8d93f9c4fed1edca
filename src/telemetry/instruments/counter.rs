//! Counters: one cell per thread shard, summed when scraped; OTLP reads the totals.

use super::*;

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
    pub(super) fn new(name: MetricName, reg: &mut Registry, meter: Option<&Meter>) -> Self {
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
