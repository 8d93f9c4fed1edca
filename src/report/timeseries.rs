//! `<test>.json`: the full metrics export as NDJSON, one line per metric per second, written
//! as the run goes (bounded memory, and a crash still leaves every finished second on disk).

use crate::metrics::{Agg, Registry, SecondSnapshot};
use crate::runner::SecondSink;
use serde_json::json;
use std::io::Write;

pub struct TimeseriesWriter {
    out: std::io::BufWriter<std::fs::File>,
    started: chrono::DateTime<chrono::Utc>,
    declared: bool,
}

impl TimeseriesWriter {
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self {
            out: std::io::BufWriter::new(std::fs::File::create(path)?),
            started: chrono::Utc::now(),
            declared: false,
        })
    }
}

impl SecondSink for TimeseriesWriter {
    fn second(&mut self, snap: &SecondSnapshot, registry: &Registry, vus: i64, vus_max: u64) {
        if !self.declared {
            for (_, d) in registry.defs() {
                let line = json!({"type": "Metric", "metric": d.name, "data": {"name": d.name, "type": d.kind, "contains": d.contains}});
                let _ = writeln!(self.out, "{line}");
            }
            self.declared = true;
        }
        let time = self.started + chrono::Duration::milliseconds((snap.elapsed_s * 1000.0) as i64);
        let time = time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for (id, agg) in &snap.metrics {
            let def = registry.def(*id);
            let values = match agg {
                Agg::Trend(t) => {
                    json!({"count": t.count, "avg": t.avg(), "min": t.min_or_zero(), "med": t.percentile(50.0), "p(90)": t.percentile(90.0), "p(95)": t.percentile(95.0), "p(99)": t.percentile(99.0), "max": t.max_or_zero()})
                }
                Agg::Counter { sum } => json!({"count": sum}),
                Agg::Rate { passes, fails } => {
                    json!({"passes": passes, "fails": fails, "rate": if passes + fails == 0 { 0.0 } else { *passes as f64 / (*passes + *fails) as f64 }})
                }
                Agg::Gauge { last, min, max, .. } => json!({"value": last, "min": min, "max": max}),
            };
            let line = json!({"type": "Second", "metric": def.name, "data": {"time": time, "elapsed_s": (snap.elapsed_s * 1000.0).round() / 1000.0, "values": values}});
            let _ = writeln!(self.out, "{line}");
        }
        let _ = (vus, vus_max);
        let _ = self.out.flush();
    }
}
