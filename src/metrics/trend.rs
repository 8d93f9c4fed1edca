//! Trend: an HDR histogram (3 significant digits) plus exact count, sum, min and max.
//!
//! Values are stored in thousandths of the metric's unit (microseconds for time trends), so
//! sub-millisecond latencies keep three significant digits. Memory is fixed per series however
//! many samples arrive; two trends merge exactly, which is what makes distributed shards exact.

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

/// Scale between recorded values and histogram units.
const SCALE: f64 = 1000.0;

#[derive(Debug, Clone)]
pub struct Trend {
    hist: Histogram<u64>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Trend {
    fn default() -> Self {
        Self::new()
    }
}

impl Trend {
    pub fn new() -> Self {
        Self::with_sigfig(3)
    }

    /// Per-second series use fewer digits: they are many and short-lived.
    pub fn with_sigfig(sigfig: u8) -> Self {
        let mut hist = Histogram::new(sigfig).expect("sigfig in 0..=5");
        hist.auto(true);
        Self {
            hist,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    #[inline]
    pub fn record(&mut self, value: f64) {
        let v = if value.is_finite() { value } else { return };
        self.count += 1;
        self.sum += v;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        let scaled = (v.max(0.0) * SCALE).round() as u64;
        // auto-resize makes recording infallible for any u64
        let _ = self.hist.record(scaled);
    }

    pub fn merge(&mut self, other: &Trend) {
        if other.count == 0 {
            return;
        }
        let _ = self.hist.add(&other.hist);
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// Percentile `p` in 0..=100. Exact min/max at the extremes; HDR in between.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        if p <= 0.0 {
            return self.min;
        }
        if p >= 100.0 {
            return self.max;
        }
        let v = self.hist.value_at_quantile(p / 100.0) as f64 / SCALE;
        v.clamp(self.min, self.max)
    }

    pub fn min_or_zero(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.min }
    }

    pub fn max_or_zero(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.max }
    }

    /// The HDR histogram as base64 of its V2+DEFLATE encoding (the standard HdrHistogram log form).
    pub fn histogram_base64(&self) -> String {
        let mut buf = Vec::new();
        if V2DeflateSerializer::new()
            .serialize(&self.hist, &mut buf)
            .is_err()
        {
            return String::new();
        }
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    /// Rebuilds a trend from its serialized histogram and exact moments.
    pub fn from_parts(
        hist_b64: &str,
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
    ) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(hist_b64)
            .map_err(|e| format!("histogram is not base64: {e}"))?;
        let mut hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("histogram does not decode: {e:?}"))?;
        hist.auto(true);
        Ok(Self {
            hist,
            count,
            sum,
            min: if count == 0 { f64::INFINITY } else { min },
            max: if count == 0 { f64::NEG_INFINITY } else { max },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_three_significant_digits() {
        let mut t = Trend::new();
        for i in 1..=10_000 {
            t.record(i as f64 / 10.0); // 0.1 .. 1000 ms
        }
        assert_eq!(t.count, 10_000);
        assert!(
            (t.percentile(50.0) - 500.0).abs() / 500.0 < 0.001,
            "{}",
            t.percentile(50.0)
        );
        assert!((t.percentile(99.0) - 990.0).abs() / 990.0 < 0.001);
        assert_eq!(t.min, 0.1);
        assert_eq!(t.max, 1000.0);
        assert!((t.avg() - 500.05).abs() < 1e-9);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Trend::new();
        let mut b = Trend::new();
        let mut all = Trend::new();
        for i in 0..5000u64 {
            let v = ((i * 7919) % 3000) as f64 * 0.37;
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        for p in [50.0, 90.0, 95.0, 99.0, 99.9] {
            assert_eq!(a.percentile(p), all.percentile(p));
        }
        assert_eq!(a.count, all.count);
    }

    #[test]
    fn serialization_round_trips_exactly() {
        let mut t = Trend::new();
        for i in 0..1000 {
            t.record(i as f64 * 1.5);
        }
        let b = t.histogram_base64();
        let back = Trend::from_parts(&b, t.count, t.sum, t.min, t.max).unwrap();
        for p in [1.0, 50.0, 95.0, 99.0, 99.9] {
            assert_eq!(back.percentile(p), t.percentile(p));
        }
    }
}
