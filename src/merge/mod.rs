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
//!
//! Files, by job:
//! - `mod.rs` (here): [`merge_dirs`]: finding each test's shard summaries in the folders,
//!   writing the merged folder (summary, time series, logs, SUMMARY.md).
//! - `shards.rs`: reading a shard's segment and checking the shards are one run, split once
//!   (same plan, run ids, no repeated or overlapping segment, coverage).
//! - `summary.rs`: the exact merge of the summaries' series and the rest of the summary.
//! - `timeseries.rs`: the per-second NDJSON merge, and the gauges' whole-run peaks read from it.

mod shards;
mod summary;
mod timeseries;

use crate::error::ConfigError;
use crate::report::{Summary, Verdict, json};
use anyhow::Context;
use shards::Shard;
use std::collections::BTreeMap;
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
        let mut merged = summary::merge_summaries(shards.clone(), opts)?;
        timeseries::raise_summed_gauge_peaks(&mut merged, &shards, stem);
        let text = json::summary_file(&merged)?;
        std::fs::write(out.join(format!("{stem}_summary.json")), text)
            .with_context(|| format!("writing {}", out.display()))?;
        timeseries::merge_timeseries(&shards, stem, out)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_labels_become_file_names() {
        assert_eq!(file_label("2/3"), "2of3");
        assert_eq!(file_label("1/4:1/2"), "1_4-1_2");
    }
}
