//! What the shards' per-second NDJSON (`<test>.json`) gives a merge: the merged time series
//! (second n of every shard into second n of the output), and the gauges' whole-run peaks and
//! troughs, which only the sum over shards second by second can tell.

use super::shards::Shard;
use crate::metrics::{Contains, MetricKind};
use crate::report::Summary;
use crate::report::summary::SeriesData;
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

/// Gauges here are per-process totals (VUs, open WebSockets, migrations in flight, per-second
/// rates), so the whole run's peak is the peak of their sum over shards at one instant, not the
/// largest shard's own peak (which is all the shard summaries hold). This reads every shard's
/// per-second NDJSON, sums each gauge second by second (a gauge has a line only in the seconds
/// it was set, so a shard's last value carries over), and raises the merged `max` to that peak
/// and sets `min` to the trough of the sum (the sum of each second's minimums); thresholds such
/// as `ws_connections_active max>=80000` are then judged on the whole run. The merged value
/// (the sum of the shards' last values) is kept within them. Metrics with several tagged
/// series, or shards without a time series, are left as they are.
pub(super) fn raise_summed_gauge_peaks(summary: &mut Summary, shards: &[Shard], stem: &str) {
    if shards.len() < 2 {
        return;
    }
    let gauges: Vec<String> = summary
        .series
        .iter()
        .filter(|s| matches!(s.data, SeriesData::Gauge { .. }))
        .map(|s| s.metric.clone())
        .filter(|m| summary.series.iter().filter(|s| &s.metric == m).count() == 1)
        .collect();
    if gauges.is_empty() {
        return;
    }
    // per shard: metric -> second -> (min and max within that second, value at its end)
    type Seconds = BTreeMap<u64, (f64, f64, f64)>;
    let mut per_shard: Vec<BTreeMap<String, Seconds>> = Vec::new();
    for s in shards {
        let Ok(file) = std::fs::File::open(s.dir.join(format!("{stem}.json"))) else {
            return; // without every shard's time series the sum would be an undercount
        };
        let mut m: BTreeMap<String, Seconds> = BTreeMap::new();
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let metric = v["metric"].as_str().unwrap_or("");
            if v["type"].as_str() != Some("Second") || !gauges.iter().any(|g| g == metric) {
                continue;
            }
            let values = &v["data"]["values"];
            let (Some(max), Some(last), Some(t)) = (
                values["max"].as_f64(),
                values["value"].as_f64(),
                v["data"]["elapsed_s"].as_f64(),
            ) else {
                continue;
            };
            let min = values["min"].as_f64().unwrap_or(last).min(last);
            m.entry(metric.to_string())
                .or_default()
                .insert(t.round() as u64, (min, max, last));
        }
        per_shard.push(m);
    }
    let mut changed = false;
    for g in &gauges {
        let seconds: std::collections::BTreeSet<u64> = per_shard
            .iter()
            .filter_map(|m| m.get(g))
            .flat_map(|x| x.keys().copied())
            .collect();
        let mut carried = vec![0.0; per_shard.len()];
        let (mut peak, mut trough) = (f64::NEG_INFINITY, f64::INFINITY);
        for t in seconds {
            let (mut high, mut low) = (0.0, 0.0);
            for (i, m) in per_shard.iter().enumerate() {
                match m.get(g).and_then(|x| x.get(&t)) {
                    Some((min, max, last)) => {
                        high += max;
                        low += min;
                        carried[i] = *last;
                    }
                    None => {
                        high += carried[i];
                        low += carried[i];
                    }
                }
            }
            peak = peak.max(high);
            trough = trough.min(low);
        }
        if let Some(series) = summary.series.iter_mut().find(|s| &s.metric == g)
            && let SeriesData::Gauge { max, min, last, .. } = &mut series.data
            && peak.is_finite()
            && trough.is_finite()
        {
            // the merged value (the end's sum) stays within the whole run's range
            let (new_max, new_min) = (peak.max(*max), trough.min(*last));
            if new_max != *max || new_min != *min {
                *max = new_max;
                *min = new_min;
                changed = true;
            }
        }
    }
    if changed {
        let declared: Vec<(String, MetricKind, Contains)> = summary
            .metrics
            .iter()
            .map(|(n, m)| (n.clone(), m.kind, m.contains))
            .collect();
        summary.derive(&declared);
    }
}

/// Merges the per-second NDJSON `<stem>.json` of every shard (rules in the module docs).
pub(super) fn merge_timeseries(shards: &[Shard], stem: &str, out: &Path) -> anyhow::Result<()> {
    let mut declared: Vec<Value> = Vec::new();
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    // seconds[n] = merged lines of the n-th second: metric -> (time, elapsed, values)
    let mut seconds: Vec<BTreeMap<String, (String, f64, Value)>> = Vec::new();
    let mut trend_lines: Vec<Vec<Value>> = Vec::new();
    let mut any = false;
    for s in shards {
        let path = s.dir.join(format!("{stem}.json"));
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        any = true;
        let mut n: usize = 0;
        let mut last_elapsed: Option<f64> = None;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let Ok(mut v) = serde_json::from_str::<Value>(&line) else {
                continue; // a torn last line of a killed shard
            };
            match v["type"].as_str() {
                Some("Metric") => {
                    let name = v["metric"].as_str().unwrap_or("").to_string();
                    if let std::collections::btree_map::Entry::Vacant(e) = kinds.entry(name) {
                        e.insert(v["data"]["type"].as_str().unwrap_or("").into());
                        declared.push(v);
                    }
                }
                Some("Second") => {
                    let elapsed = v["data"]["elapsed_s"].as_f64().unwrap_or(0.0);
                    if last_elapsed != Some(elapsed) {
                        last_elapsed = Some(elapsed);
                        n += 1;
                    }
                    while seconds.len() < n {
                        seconds.push(BTreeMap::new());
                        trend_lines.push(Vec::new());
                    }
                    let metric = v["metric"].as_str().unwrap_or("").to_string();
                    let time = v["data"]["time"].as_str().unwrap_or("").to_string();
                    let values = v["data"]["values"].clone();
                    if kinds.get(&metric).map(String::as_str) == Some("trend") {
                        v["shard"] = json!(s.label());
                        trend_lines[n - 1].push(v);
                        continue;
                    }
                    let slot = &mut seconds[n - 1];
                    match slot.get_mut(&metric) {
                        None => {
                            slot.insert(metric, (time, elapsed, values));
                        }
                        Some((t, e, acc)) => {
                            if time < *t {
                                *t = time;
                            }
                            *e = e.max(elapsed);
                            add_values(acc, &values);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if !any {
        return Ok(());
    }
    let path = out.join(format!("{stem}.json"));
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?,
    );
    for d in &declared {
        writeln!(w, "{d}")?;
    }
    for (sec, trends) in seconds.iter().zip(&trend_lines) {
        for (metric, (time, elapsed, values)) in sec {
            let line = json!({"type": "Second", "metric": metric, "data": {"time": time, "elapsed_s": elapsed, "values": values}});
            writeln!(w, "{line}")?;
        }
        for t in trends {
            writeln!(w, "{t}")?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Sums numeric values key by key; a rate's `rate` is recomputed from passes and fails.
fn add_values(acc: &mut Value, add: &Value) {
    if let (Value::Object(a), Value::Object(b)) = (acc, add) {
        for (k, v) in b {
            let sum = a.get(k).and_then(Value::as_f64).unwrap_or(0.0) + v.as_f64().unwrap_or(0.0);
            a.insert(k.clone(), json!(sum));
        }
        if let (Some(p), Some(f)) = (
            a.get("passes").and_then(Value::as_f64),
            a.get("fails").and_then(Value::as_f64),
        ) {
            let rate = if p + f == 0.0 { 0.0 } else { p / (p + f) };
            a.insert("rate".into(), json!(rate));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_values_sum_and_rates_recompute() {
        let mut a = json!({"passes": 3.0, "fails": 1.0, "rate": 0.75});
        add_values(&mut a, &json!({"passes": 1.0, "fails": 3.0, "rate": 0.25}));
        assert_eq!(a["rate"], json!(0.5));
        assert_eq!(a["passes"], json!(4.0));
    }
}
