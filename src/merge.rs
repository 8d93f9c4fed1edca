//! `novaload merge DIR... -o DIR`: merges the results folders of distributed shards (one per
//! execution segment) into one results folder, exactly.
//!
//! - Summaries: series with the same metric and tags are merged as aggregates (counters summed,
//!   rates by passes/fails, trends by adding HDR histograms), so merged percentiles equal those
//!   of one histogram over every sample. Gauges are per-process totals (6 workers holding
//!   ~16,700 WebSockets each hold 100,000 together): the merged value is the sum of the shards'
//!   last values, and `max`/`min` are the peak/trough of the per-second sum over shards (when
//!   every shard has its time series). Metrics, checks, thresholds and the verdict are then
//!   re-derived from the merged series ([`Summary::derive`]); duration is the span from the
//!   earliest shard start to the latest end. Failure messages (`error_reasons`) are merged with
//!   [`crate::metrics::reasons::ErrorReasons::merge`]. Shards are merged in segment order, so
//!   the result does not depend on argument order.
//! - Run ids: shards normally share `--run-id`. Shards started without one (k6's habit: each
//!   generates its own id, `Summary::run_id_generated`) are merged as one run when everything
//!   else fits; the merge keeps the first shard's id (in segment order) and says so in a note.
//! - Refused with a [`ConfigError`] (exit 2) naming the fix: shards with different given run ids,
//!   different tests, profiles, scenarios or thresholds, a segment given twice or overlapping.
//!   Segments that do not cover 0..1 are a missing shard: an error, unless `allow_partial`
//!   (then the merge is marked partial, naming what is missing).
//! - `<test>.json` (per-second NDJSON): the n-th second of every shard is merged into the n-th
//!   second of the output (shards start together with `--start-at`/local workers). Counters and
//!   rate passes/fails are summed; gauges are summed too (the built-in gauges — `vus`, `vus_max`,
//!   `*_per_second` — are per-process totals); trend lines cannot be merged from their
//!   percentiles, so each shard's trend line is kept, tagged `"shard": "<segment>"`.
//! - `<test>.log` of each shard is copied to `<test>.<segment>.log`; SUMMARY.md lists the shards.

use crate::error::ConfigError;
use crate::metrics::reasons::ErrorReasons;
use crate::metrics::{Agg, Contains, MetricKind, Tags};
use crate::plan::segment::{Rational, Segment};
use crate::report::summary::{Series, SeriesData};
use crate::report::{Summary, Verdict, json};
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// What a merge wrote.
#[derive(Debug)]
pub struct Merged {
    pub out: PathBuf,
    pub summaries: Vec<Summary>,
    pub verdict: Verdict,
}

/// Options of a merge.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Merge even when segments do not cover the whole run (marked partial).
    pub allow_partial: bool,
}

/// One shard's summary with where it came from.
#[derive(Debug, Clone)]
pub struct Shard {
    pub dir: PathBuf,
    pub summary: Summary,
}

impl Shard {
    fn segment(&self) -> Result<Segment, String> {
        parse_segment_label(&self.summary.segment)
    }
    fn label(&self) -> String {
        if self.summary.segment.is_empty() {
            "0:1".into()
        } else {
            self.summary.segment.clone()
        }
    }
}

/// Reads a summary's segment label back: `i/N`, k6's `from:to`, or empty (the whole run).
pub(crate) fn parse_segment_label(s: &str) -> Result<Segment, String> {
    if s.is_empty() {
        return Ok(Segment::WHOLE);
    }
    if s.contains(':') {
        return Segment::parse_k6(s);
    }
    let (i, n) = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)))
        .ok_or_else(|| format!("segment '{s}' is neither i/N nor FROM:TO"))?;
    Segment::nth(i, n)
}

/// Merges the shard folders `dirs` into `out` (created). Every test present in any shard is
/// merged; a shard lacking a test another shard has is a missing shard.
pub fn merge_dirs(dirs: &[PathBuf], out: &Path, opts: MergeOptions) -> anyhow::Result<Merged> {
    if dirs.is_empty() {
        return Err(ConfigError::new(
            "DIR",
            "no shard results folder given",
            "name every shard's results folder: novaload merge results/shard1 results/shard2 -o results/merged",
        )
        .into());
    }
    let mut stems: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for d in dirs {
        let entries =
            std::fs::read_dir(d).with_context(|| format!("reading shard {}", d.display()))?;
        let mut found = false;
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix("_summary.json")
                && !name.starts_with('.')
            {
                stems.entry(stem.to_string()).or_default().push(d.clone());
                found = true;
            }
        }
        if !found {
            return Err(ConfigError::new(
                "DIR",
                format!("{} holds no *_summary.json", d.display()),
                "give the results folder of each shard (the one holding <test>_summary.json)",
            )
            .into());
        }
    }
    for (stem, have) in &stems {
        if have.len() != dirs.len() {
            let missing: Vec<String> = dirs
                .iter()
                .filter(|d| !have.contains(d))
                .map(|d| d.display().to_string())
                .collect();
            if !opts.allow_partial {
                return Err(ConfigError::new(
                    "DIR",
                    format!(
                        "missing shard: test '{stem}' has no {stem}_summary.json in {} (the shard failed or was stopped early)",
                        missing.join(", ")
                    ),
                    "rerun that shard, or pass --allow-partial to merge what exists",
                )
                .into());
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut summaries = Vec::new();
    for (stem, have) in &stems {
        let mut shards = Vec::new();
        for d in have {
            let summary = json::read_summary(&d.join(format!("{stem}_summary.json")))?;
            shards.push(Shard {
                dir: d.clone(),
                summary,
            });
        }
        let mut merged = merge_summaries(shards.clone(), opts)?;
        raise_summed_gauge_peaks(&mut merged, &shards, stem);
        let text = json::summary_file(&merged)?;
        std::fs::write(out.join(format!("{stem}_summary.json")), text)
            .with_context(|| format!("writing {}", out.display()))?;
        merge_timeseries(&shards, stem, out)?;
        for s in &shards {
            let log = s.dir.join(format!("{stem}.log"));
            if log.exists() {
                let to = out.join(format!("{stem}.{}.log", file_label(&s.label())));
                std::fs::copy(&log, &to)
                    .with_context(|| format!("copying {} to {}", log.display(), to.display()))?;
            }
        }
        summaries.push(merged);
    }
    let verdict = crate::results::report(out)?;
    Ok(Merged {
        out: out.to_path_buf(),
        summaries,
        verdict,
    })
}

/// `1/3` → `1of3`, `1/4:1/2` → `1_4-1_2`: a segment label fit for a file name.
fn file_label(label: &str) -> String {
    if !label.contains(':')
        && let Some((i, n)) = label.split_once('/')
    {
        return format!("{i}of{n}");
    }
    label.replace('/', "_").replace(':', "-")
}

fn describe_scenarios(s: &Summary) -> String {
    s.scenarios
        .iter()
        .map(|sc| format!("{} ({}: {})", sc.name, sc.executor, sc.description))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_thresholds(s: &Summary) -> String {
    s.threshold_defs
        .iter()
        .map(|t| format!("{}: {}", t.metric_key, t.source))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Merges shard summaries of one test (see the module docs for the rules). Refusals are
/// [`ConfigError`]s (bad input: exit 2) that say how to fix the command or the shards.
pub fn merge_summaries(mut shards: Vec<Shard>, opts: MergeOptions) -> anyhow::Result<Summary> {
    if shards.is_empty() {
        return Err(ConfigError::new(
            "DIR",
            "nothing to merge",
            "name the shards' results folders",
        )
        .into());
    }
    // the same test, profile, scenarios and thresholds: the same plan, split in segments
    type Field = (&'static str, fn(&Summary) -> String);
    let fields: [Field; 4] = [
        ("test", |s| s.test.clone()),
        ("profile", |s| s.profile.clone()),
        ("scenarios", describe_scenarios),
        ("thresholds", describe_thresholds),
    ];
    for (name, get) in fields {
        let first = get(&shards[0].summary);
        if let Some(other) = shards.iter().find(|s| get(&s.summary) != first) {
            return Err(ConfigError::new(
                "DIR",
                format!(
                    "cannot merge: the shards are not one run — {name} differs: {} has '{}', {} has '{}'",
                    shards[0].dir.display(),
                    first,
                    other.dir.display(),
                    get(&other.summary)
                ),
                "merge only shards started with the same test, profile, scenario file and thresholds (one command line with a different --segment each)",
            )
            .into());
        }
    }
    let run_ids = check_run_ids(&shards)?;
    // segments: no repeats, no overlaps, and (unless allowed) full coverage
    let mut segs = Vec::new();
    for s in &shards {
        let seg = s
            .segment()
            .map_err(|e| anyhow::anyhow!("{}: unreadable segment: {e}", s.dir.display()))?;
        segs.push(seg);
    }
    let mut order: Vec<usize> = (0..shards.len()).collect();
    order.sort_by(|a, b| {
        (segs[*a].from, segs[*a].to, &shards[*a].dir).cmp(&(
            segs[*b].from,
            segs[*b].to,
            &shards[*b].dir,
        ))
    });
    let mut missing: Vec<String> = Vec::new();
    let mut at = Rational::ZERO;
    for w in 0..order.len() {
        let (i, seg) = (order[w], segs[order[w]]);
        if w > 0 {
            let prev = order[w - 1];
            if segs[prev] == seg {
                return Err(ConfigError::new(
                    "--segment",
                    format!(
                        "cannot merge: segment {} appears twice ({} and {}): the same shard given twice?",
                        shards[i].label(),
                        shards[prev].dir.display(),
                        shards[i].dir.display()
                    ),
                    "give each shard's folder once; shards of one run have distinct segments (--segment 1/N … N/N)",
                )
                .into());
            }
            if seg.from < at {
                return Err(ConfigError::new(
                    "--segment",
                    format!(
                        "cannot merge: segments overlap: {} ({}) and {} ({})",
                        shards[prev].label(),
                        shards[prev].dir.display(),
                        shards[i].label(),
                        shards[i].dir.display()
                    ),
                    "merge shards of one split only: --segment 1/N … N/N with the same N (or k6 segments from one --execution-segment-sequence)",
                )
                .into());
            }
        }
        if seg.from > at {
            missing.push(
                Segment {
                    from: at,
                    to: seg.from,
                }
                .k6(),
            );
        }
        at = seg.to;
    }
    if at < Rational::ONE {
        missing.push(
            Segment {
                from: at,
                to: Rational::ONE,
            }
            .k6(),
        );
    }
    if !missing.is_empty() && !opts.allow_partial {
        return Err(ConfigError::new(
            "--segment",
            format!(
                "missing shard: the segments given ({}) do not cover the whole run; missing {}",
                order
                    .iter()
                    .map(|i| shards[*i].label())
                    .collect::<Vec<_>>()
                    .join(", "),
                missing.join(", ")
            ),
            "pass every shard's folder, or --allow-partial to merge what exists",
        )
        .into());
    }
    let sorted: Vec<Shard> = order.iter().map(|i| shards[*i].clone()).collect();
    shards = sorted;

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

/// How the shards' run ids relate.
enum RunIds {
    /// One id: an ordinary distributed run.
    Shared,
    /// Every shard generated its own id (no `--run-id` given): merged as one run, with a note.
    Generated,
}

/// Shards of one run share a run id, or (none given) each generated its own. Ids that were
/// given and differ are shards of different runs, or a run whose shards were not all given the
/// id: refused, naming the fix.
fn check_run_ids(shards: &[Shard]) -> anyhow::Result<RunIds> {
    let first = &shards[0];
    let Some(other) = shards
        .iter()
        .find(|s| s.summary.run_id != first.summary.run_id)
    else {
        return Ok(RunIds::Shared);
    };
    if shards.iter().all(|s| s.summary.run_id_generated) {
        return Ok(RunIds::Generated);
    }
    let how = |s: &Shard| {
        if s.summary.run_id_generated {
            "generated"
        } else {
            "given"
        }
    };
    Err(ConfigError::new(
        "--run-id",
        format!(
            "cannot merge: the shards are not one run — run id differs: {} has '{}' ({}), {} has '{}' ({})",
            first.dir.display(),
            first.summary.run_id,
            how(first),
            other.dir.display(),
            other.summary.run_id,
            how(other)
        ),
        "start every shard of a run with the same --run-id (e.g. --run-id nightly-42), and merge only that run's shards",
    )
    .into())
}

/// Gauges here are per-process totals (VUs, open WebSockets, migrations in flight, per-second
/// rates), so the whole run's peak is the peak of their sum over shards at one instant, not the
/// largest shard's own peak (which is all the shard summaries hold). This reads every shard's
/// per-second NDJSON, sums each gauge second by second (a gauge has a line only in the seconds
/// it was set, so a shard's last value carries over), and raises the merged `max` to that peak
/// and sets `min` to the trough of the sum (the sum of each second's minimums); thresholds such
/// as `ws_connections_active max>=80000` are then judged on the whole run. The merged value
/// (the sum of the shards' last values) is kept within them. Metrics with several tagged
/// series, or shards without a time series, are left as they are.
fn raise_summed_gauge_peaks(summary: &mut Summary, shards: &[Shard], stem: &str) {
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
fn merge_timeseries(shards: &[Shard], stem: &str, out: &Path) -> anyhow::Result<()> {
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
    fn segment_labels_read_back() {
        assert_eq!(parse_segment_label("").unwrap(), Segment::WHOLE);
        let s = parse_segment_label("2/3").unwrap();
        assert_eq!(s.from, Rational::new(1, 3).unwrap());
        assert_eq!(parse_segment_label("1/3:2/3").unwrap(), s);
        assert!(parse_segment_label("x").is_err());
        assert_eq!(file_label("2/3"), "2of3");
        assert_eq!(file_label("1/4:1/2"), "1_4-1_2");
    }

    #[test]
    fn per_second_values_sum_and_rates_recompute() {
        let mut a = json!({"passes": 3.0, "fails": 1.0, "rate": 0.75});
        add_values(&mut a, &json!({"passes": 1.0, "fails": 3.0, "rate": 0.25}));
        assert_eq!(a["rate"], json!(0.5));
        assert_eq!(a["passes"], json!(4.0));
    }
}
