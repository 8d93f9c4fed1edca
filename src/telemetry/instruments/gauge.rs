//! Gauges, set or moved by deltas (an OTel gauge or up-down counter when OTLP is on).

use super::*;

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
    pub(super) fn new(
        name: MetricName,
        reg: &mut Registry,
        meter: Option<&Meter>,
        up_down: bool,
    ) -> Self {
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
