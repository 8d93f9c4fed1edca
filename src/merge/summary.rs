//! The exact merge of one test's shard summaries: series with the same metric and tags merged
//! as aggregates (HDR histograms added, so merged percentiles are exact), gauges summed, the
//! run's span, partial reasons, run errors, notes, failure reasons and telemetry counts
//! combined; then metrics, checks, thresholds and the verdict re-derived (rules in the module
//! docs of `merge`).

use super::MergeOptions;
use super::shards::{Checked, RunIds, Shard, check_one_run};
use crate::metrics::reasons::ErrorReasons;
use crate::metrics::{Agg, Contains, MetricKind, Tags};
use crate::report::Summary;
use crate::report::summary::{Series, SeriesData};
use std::collections::BTreeMap;

/// Merges shard summaries of one test (see the module docs for the rules). Refusals are
/// `ConfigError`s (bad input: exit 2) that say how to fix the command or the shards.
pub(super) fn merge_summaries(shards: Vec<Shard>, opts: MergeOptions) -> anyhow::Result<Summary> {
    let Checked {
        shards,
        missing,
        run_ids,
    } = check_one_run(shards, opts)?;

    // declared metrics: every metric any shard reports (metrics without samples or thresholds
    // are not reported by any shard, and would not be reported by the merge either)
    let mut declared: BTreeMap<String, (MetricKind, Contains)> = BTreeMap::new();
    for s in &shards {
        for (name, m) in &s.summary.metrics {
            declared.entry(name.clone()).or_insert((m.kind, m.contains));
        }
    }
    // series merged by (metric, tags), in segment order
    let mut merged: BTreeMap<(String, Tags), Agg> = BTreeMap::new();
    // gauges: the sum of every shard's last value (gauges are per-process totals)
    let mut gauge_totals: BTreeMap<(String, Tags), f64> = BTreeMap::new();
    for s in &shards {
        for series in &s.summary.series {
            if let SeriesData::Gauge {
                last, seen: true, ..
            } = series.data
            {
                *gauge_totals
                    .entry((series.metric.clone(), series.tags.clone()))
                    .or_default() += last;
            }
            let agg = series.data.to_agg().map_err(|e| {
                anyhow::anyhow!(
                    "{}: series {} has an unreadable histogram: {e}",
                    s.dir.display(),
                    series.metric
                )
            })?;
            match merged.get_mut(&(series.metric.clone(), series.tags.clone())) {
                Some(m) => m.merge(&agg),
                None => {
                    merged.insert((series.metric.clone(), series.tags.clone()), agg);
                }
            }
        }
    }
    for (key, total) in gauge_totals {
        if let Some(Agg::Gauge { last, min, max, .. }) = merged.get_mut(&key) {
            *last = total;
            *min = min.min(total);
            *max = max.max(total);
        }
    }
    let first = &shards[0].summary;
    let start = shards
        .iter()
        .map(|s| s.summary.started_at)
        .min()
        .expect("non-empty");
    let end = shards
        .iter()
        .map(|s| {
            s.summary.started_at
                + chrono::Duration::microseconds((s.summary.duration_s * 1e6) as i64)
        })
        .max()
        .expect("non-empty");
    let mut out = first.clone();
    out.started_at = start;
    out.duration_s = (end - start).num_microseconds().unwrap_or(0) as f64 / 1e6;
    out.segment = String::new();
    out.shards = shards
        .iter()
        .map(|s| format!("{} ({})", s.label(), s.dir.display()))
        .collect();
    out.series = merged
        .into_iter()
        .map(|((metric, tags), agg)| Series {
            metric,
            tags,
            data: SeriesData::from_agg(&agg),
        })
        .collect();
    let mut reasons: Vec<String> = shards
        .iter()
        .filter_map(|s| {
            s.summary
                .partial_reason
                .as_ref()
                .map(|r| format!("shard {}: {r}", s.label()))
        })
        .collect();
    if !missing.is_empty() {
        reasons.insert(0, format!("missing shards: {}", missing.join(", ")));
    }
    // an abort anywhere keeps the merged verdict a FAIL (derive reads the "aborted" prefix)
    if let Some(a) = shards.iter().find_map(|s| {
        s.summary
            .partial_reason
            .as_ref()
            .filter(|r| r.starts_with("aborted"))
    }) {
        reasons.insert(0, a.clone());
    }
    out.partial_reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    out.partial = out.partial_reason.is_some();
    out.interrupted_iterations = shards
        .iter()
        .map(|s| s.summary.interrupted_iterations)
        .sum();
    out.run_errors = shards
        .iter()
        .flat_map(|s| {
            s.summary
                .run_errors
                .iter()
                .map(move |e| format!("[shard {}] {e}", s.label()))
        })
        .collect();
    out.notes = Vec::new();
    for n in shards.iter().flat_map(|s| &s.summary.notes) {
        if !out.notes.contains(n) {
            out.notes.push(n.clone());
        }
    }
    if let RunIds::Generated = run_ids {
        // in segment order, the kept one first
        let mut ids: Vec<&str> = Vec::new();
        for s in &shards {
            if !ids.contains(&s.summary.run_id.as_str()) {
                ids.push(&s.summary.run_id);
            }
        }
        out.notes.push(format!(
            "shards had different generated run ids ({}) and were merged as one run under the first, {}; give every shard the same --run-id to name the run (and to find all its series and spans by one run_id)",
            ids.join(", "),
            out.run_id
        ));
    }
    out.error_reasons = ErrorReasons::default();
    for s in &shards {
        out.error_reasons.merge(&s.summary.error_reasons);
    }
    out.telemetry.spans_exported = shards
        .iter()
        .map(|s| s.summary.telemetry.spans_exported)
        .sum();
    out.telemetry.spans_dropped = shards
        .iter()
        .map(|s| s.summary.telemetry.spans_dropped)
        .sum();
    out.telemetry.errors = shards
        .iter()
        .flat_map(|s| s.summary.telemetry.errors.clone())
        .collect();
    out.telemetry.metrics_addr = None;
    let declared: Vec<(String, MetricKind, Contains)> =
        declared.into_iter().map(|(n, (k, c))| (n, k, c)).collect();
    out.derive(&declared);
    Ok(out)
}
