//! `<test>.json`: the full metrics export as NDJSON, one line per metric per second, written
//! as the run goes (bounded memory, and a crash still leaves every finished second on disk).

use crate::metrics::SecondSink;
use crate::metrics::{Agg, Registry, SecondSnapshot};
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

/// One `Second` line of `<test>.json`: a metric's aggregate over one second of the run.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct SecondLine {
    pub metric: String,
    /// Seconds since the test started (end of the second this line covers).
    pub elapsed_s: f64,
    /// `count` (counter), `value`/`min`/`max` (gauge), `passes`/`fails`/`rate` (rate), or
    /// `count`/`avg`/`min`/`med`/`p(90)`/`p(95)`/`p(99)`/`max` (trend).
    pub values: std::collections::BTreeMap<String, f64>,
}

impl SecondLine {
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }
}

/// Reads the `Second` lines of a `<test>.json` time series. Declarations and lines that do not
/// parse (a run killed mid-write leaves half a line) are skipped, so a partial file still plots.
pub fn read(path: &std::path::Path) -> std::io::Result<Vec<SecondLine>> {
    read_metrics(path, &|_| true)
}

/// [`read`], keeping only the metrics `keep` accepts (streams the file: long runs stay cheap).
pub fn read_metrics(
    path: &std::path::Path,
    keep: &dyn Fn(&str) -> bool,
) -> std::io::Result<Vec<SecondLine>> {
    use std::io::BufRead;
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "type")]
        kind: String,
        metric: String,
        data: RawData,
    }
    #[derive(serde::Deserialize)]
    struct RawData {
        elapsed_s: Option<f64>,
        #[serde(default)]
        values: std::collections::BTreeMap<String, serde_json::Value>,
    }
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for line in file.lines() {
        let line = line?;
        // cheap pre-filter before parsing: declarations and unwanted metrics are skipped
        if !line.contains("\"Second\"") {
            continue;
        }
        let Ok(r) = serde_json::from_str::<Raw>(&line) else {
            continue;
        };
        let Some(elapsed_s) = r.data.elapsed_s else {
            continue;
        };
        if r.kind != "Second" || !keep(&r.metric) {
            continue;
        }
        out.push(SecondLine {
            metric: r.metric,
            elapsed_s,
            values: r
                .data
                .values
                .into_iter()
                .filter_map(|(k, v)| v.as_f64().map(|f| (k, f)))
                .collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_skips_declarations_and_broken_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(
            &p,
            concat!(
                r#"{"type":"Metric","metric":"vus","data":{"name":"vus","type":"gauge"}}"#,
                "\n",
                r#"{"type":"Second","metric":"vus","data":{"time":"x","elapsed_s":1.0,"values":{"value":3,"min":1,"max":3}}}"#,
                "\n",
                r#"{"type":"Second","metric":"http_reqs","data":{"time":"x","elapsed_s":1.0,"values":{"count":7.0}}}"#,
                "\n",
                r#"{"type":"Second","metric":"vus","data":{"elap"#,
            ),
        )
        .unwrap();
        let lines = read(&p).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].get("value"), Some(3.0));
        assert_eq!(lines[1].metric, "http_reqs");
        assert_eq!(lines[1].get("count"), Some(7.0));
    }
}
