//! Runs and what they leave: arguments, summaries, results folders, in-process snapshots.

use novaload::cli::RunArgs;
use novaload::metrics::{Agg, MetricValues, Snapshot, builtin};
use novaload::report::Summary;
use novaload::runner::RunOutcome;
use std::path::{Path, PathBuf};

/// Quick mode (`--url url`) writing under `out`, with a 10 s request timeout.
pub fn quick_args(url: &str, out: &Path) -> RunArgs {
    RunArgs {
        timeout: "10s".into(),
        ..RunArgs::quick(url, out)
    }
}

/// Value `key` of metric `name` in a summary; panics, listing the metrics, when it is missing.
pub fn metric(s: &Summary, name: &str, key: &str) -> f64 {
    s.value(name, key).unwrap_or_else(|| {
        panic!(
            "{name}.{key} missing in {:?}",
            s.metrics.keys().collect::<Vec<_>>()
        )
    })
}

/// The `count` of metric `name` in a summary.
pub fn count(s: &Summary, name: &str) -> f64 {
    metric(s, name, "count")
}

/// The one results folder (`<out>/<UTC timestamp>/`) a run created under `out`.
pub fn results_folder(out: &Path) -> Result<PathBuf, String> {
    let folders: Vec<PathBuf> = std::fs::read_dir(out)
        .map_err(|e| format!("reading {}: {e}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match folders.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("expected one results folder, found {folders:?}")),
    }
}

/// An in-process run (`runner::run`): its final snapshot and its outcome.
pub struct Run {
    pub snap: Snapshot,
    pub outcome: RunOutcome,
}

impl From<RunOutcome> for Run {
    fn from(outcome: RunOutcome) -> Run {
        Run {
            snap: outcome.snapshot.clone(),
            outcome,
        }
    }
}

impl Run {
    /// Every value of metric `name`.
    pub fn values(&self, name: &str) -> MetricValues {
        let id = self.snap.registry.lookup(name).expect(name);
        self.snap.metric(id).values(1.0)
    }
    /// Value `key` of metric `name` (0 when it has none).
    pub fn get(&self, name: &str, key: &str) -> f64 {
        self.values(name).get(key).unwrap_or(0.0)
    }
    pub fn count(&self, name: &str) -> f64 {
        self.get(name, "count")
    }
    /// (passes, fails) of a Rate.
    pub fn rate(&self, name: &str) -> (f64, f64) {
        (self.get(name, "passes"), self.get(name, "fails"))
    }
    /// (passes, fails) of one check.
    pub fn check(&self, name: &str) -> (u64, u64) {
        let (mut p, mut f) = (0, 0);
        for (tags, agg) in self.snap.series_of(builtin::CHECKS) {
            if tags.check.as_deref() == Some(name)
                && let Agg::Rate { passes, fails } = agg
            {
                p += passes;
                f += fails;
            }
        }
        (p, f)
    }
}
