//! Histograms with exemplars, rendered by [`render_histograms`] rather than by
//! prometheus-client (its `HistogramWithExemplars` takes a write lock shared by all threads on
//! every observation, and its exemplar type cannot be built outside the crate) and encoded for
//! OTLP by [`encode_otlp_histograms`].

use super::*;

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
    pub(super) family: Arc<HistFamily>,
    cache: SeriesCache<HistSeries>,
}

impl LabeledHistogram {
    pub(super) fn new(name: MetricName) -> Self {
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
    use crate::telemetry::pb;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
