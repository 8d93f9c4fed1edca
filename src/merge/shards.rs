//! The shards of one merge: each shard's summary with its folder and segment, and the checks
//! that they are one run split once (same test, profile, scenarios and thresholds; one run id or
//! only generated ones; no segment twice, none overlapping; all of 0..1 unless partial is
//! allowed). Refusals are [`ConfigError`]s that name the fix.

use super::MergeOptions;
use crate::error::ConfigError;
use crate::plan::segment::{Rational, Segment};
use crate::report::Summary;
use std::path::PathBuf;

/// One shard's summary with where it came from.
#[derive(Debug, Clone)]
pub(super) struct Shard {
    pub(super) dir: PathBuf,
    pub(super) summary: Summary,
}

impl Shard {
    fn segment(&self) -> Result<Segment, String> {
        parse_segment_label(&self.summary.segment)
    }
    pub(super) fn label(&self) -> String {
        if self.summary.segment.is_empty() {
            "0:1".into()
        } else {
            self.summary.segment.clone()
        }
    }
}

/// Reads a summary's segment label back: `i/N`, k6's `from:to`, or empty (the whole run).
fn parse_segment_label(s: &str) -> Result<Segment, String> {
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

/// Shards that passed the checks.
pub(super) struct Checked {
    /// In segment order, so the merge does not depend on argument order.
    pub(super) shards: Vec<Shard>,
    /// The parts of 0..1 no shard covers (k6 `from:to`), when partial merges are allowed.
    pub(super) missing: Vec<String>,
    pub(super) run_ids: RunIds,
}

/// Checks the shards of one test are one run split once, and puts them in segment order.
pub(super) fn check_one_run(shards: Vec<Shard>, opts: MergeOptions) -> anyhow::Result<Checked> {
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
    let shards: Vec<Shard> = order.iter().map(|i| shards[*i].clone()).collect();
    Ok(Checked {
        shards,
        missing,
        run_ids,
    })
}

/// How the shards' run ids relate.
pub(super) enum RunIds {
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
    }
}
