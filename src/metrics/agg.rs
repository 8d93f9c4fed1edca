//! Aggregates of one series, by metric type, and the values k6 reports for each.

use super::{MetricKind, Trend};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The running aggregate of one series.
#[derive(Debug, Clone)]
pub enum Agg {
    Counter {
        sum: f64,
    },
    /// `last` is the value with the newest timestamp (nanoseconds since run start).
    Gauge {
        last: f64,
        last_at: u64,
        min: f64,
        max: f64,
        seen: bool,
    },
    Rate {
        passes: u64,
        fails: u64,
    },
    Trend(Box<Trend>),
}

impl Agg {
    pub fn new(kind: MetricKind) -> Self {
        Self::with_sigfig(kind, 3)
    }

    pub fn with_sigfig(kind: MetricKind, sigfig: u8) -> Self {
        match kind {
            MetricKind::Counter => Agg::Counter { sum: 0.0 },
            MetricKind::Gauge => Agg::Gauge {
                last: 0.0,
                last_at: 0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                seen: false,
            },
            MetricKind::Rate => Agg::Rate {
                passes: 0,
                fails: 0,
            },
            MetricKind::Trend => Agg::Trend(Box::new(Trend::with_sigfig(sigfig))),
        }
    }

    #[inline]
    pub fn record(&mut self, value: f64, at_nanos: u64) {
        match self {
            Agg::Counter { sum } => *sum += value,
            Agg::Gauge {
                last,
                last_at,
                min,
                max,
                seen,
            } => {
                if !*seen || at_nanos >= *last_at {
                    *last = value;
                    *last_at = at_nanos;
                }
                *seen = true;
                *min = min.min(value);
                *max = max.max(value);
            }
            Agg::Rate { passes, fails } => {
                if value != 0.0 {
                    *passes += 1
                } else {
                    *fails += 1
                }
            }
            Agg::Trend(t) => t.record(value),
        }
    }

    pub fn merge(&mut self, other: &Agg) {
        match (self, other) {
            (Agg::Counter { sum }, Agg::Counter { sum: o }) => *sum += o,
            (
                Agg::Gauge {
                    last,
                    last_at,
                    min,
                    max,
                    seen,
                },
                Agg::Gauge {
                    last: ol,
                    last_at: oa,
                    min: omin,
                    max: omax,
                    seen: true,
                },
            ) => {
                if !*seen || *oa >= *last_at {
                    *last = *ol;
                    *last_at = *oa;
                }
                *seen = true;
                *min = min.min(*omin);
                *max = max.max(*omax);
            }
            (
                Agg::Rate { passes, fails },
                Agg::Rate {
                    passes: p,
                    fails: f,
                },
            ) => {
                *passes += p;
                *fails += f;
            }
            (Agg::Trend(a), Agg::Trend(b)) => a.merge(b),
            _ => {}
        }
    }

    /// Number of samples (counter: not tracked, returns the sum's sign only for emptiness checks).
    pub fn samples(&self) -> u64 {
        match self {
            Agg::Counter { sum } => u64::from(*sum != 0.0),
            Agg::Gauge { seen, .. } => u64::from(*seen),
            Agg::Rate { passes, fails } => passes + fails,
            Agg::Trend(t) => t.count,
        }
    }

    /// The values k6 reports for this aggregate, with `duration_s` for counter rates.
    pub fn values(&self, duration_s: f64) -> MetricValues {
        let mut v = BTreeMap::new();
        match self {
            Agg::Counter { sum } => {
                v.insert("count".into(), *sum);
                v.insert(
                    "rate".into(),
                    if duration_s > 0.0 {
                        sum / duration_s
                    } else {
                        0.0
                    },
                );
            }
            Agg::Gauge {
                last,
                min,
                max,
                seen,
                ..
            } => {
                v.insert("value".into(), *last);
                v.insert("min".into(), if *seen { *min } else { 0.0 });
                v.insert("max".into(), if *seen { *max } else { 0.0 });
            }
            Agg::Rate { passes, fails } => {
                let total = passes + fails;
                v.insert(
                    "rate".into(),
                    if total == 0 {
                        0.0
                    } else {
                        *passes as f64 / total as f64
                    },
                );
                v.insert("passes".into(), *passes as f64);
                v.insert("fails".into(), *fails as f64);
            }
            Agg::Trend(t) => {
                v.insert("count".into(), t.count as f64);
                v.insert("avg".into(), t.avg());
                v.insert("min".into(), t.min_or_zero());
                v.insert("med".into(), t.percentile(50.0));
                v.insert("max".into(), t.max_or_zero());
                v.insert("p(90)".into(), t.percentile(90.0));
                v.insert("p(95)".into(), t.percentile(95.0));
                v.insert("p(99)".into(), t.percentile(99.0));
                v.insert("p(99.9)".into(), t.percentile(99.9));
            }
        }
        MetricValues(v)
    }
}

/// Reported values of one metric, keyed by k6's names (`count`, `rate`, `p(95)`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricValues(pub BTreeMap<String, f64>);

impl MetricValues {
    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_passes_and_fails() {
        let mut r = Agg::new(MetricKind::Rate);
        for i in 0..100 {
            r.record(if i < 3 { 1.0 } else { 0.0 }, 0);
        }
        let v = r.values(1.0);
        assert_eq!(v.get("rate"), Some(0.03));
        assert_eq!(v.get("passes"), Some(3.0));
        assert_eq!(v.get("fails"), Some(97.0));
    }

    #[test]
    fn gauge_keeps_newest_value_across_merges() {
        let mut a = Agg::new(MetricKind::Gauge);
        let mut b = Agg::new(MetricKind::Gauge);
        a.record(10.0, 5);
        b.record(3.0, 9);
        b.record(50.0, 2);
        a.merge(&b);
        let v = a.values(1.0);
        assert_eq!(v.get("value"), Some(3.0));
        assert_eq!(v.get("max"), Some(50.0));
        assert_eq!(v.get("min"), Some(3.0));
    }

    #[test]
    fn counter_rate_is_per_second_of_run() {
        let mut c = Agg::new(MetricKind::Counter);
        c.record(30.0, 0);
        c.record(30.0, 0);
        assert_eq!(c.values(6.0).get("rate"), Some(10.0));
    }
}
