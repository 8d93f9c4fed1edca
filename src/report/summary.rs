//! The Summary: everything a run measured, in a serializable, mergeable form
//! (`<test>_summary.json`, schema_version 1). Percentiles are derived from serialized HDR
//! histograms, so summaries of shards merge exactly.
//!
//! One file: building the Summary and answering questions about it are one job (about 490
//! lines), with its unit tests below.

use crate::metrics::{
    Agg, Contains, ErrorReasons, MetricKind, MetricValues, Snapshot, Tags, Trend,
};
use crate::telemetry::TelemetryReport;
use crate::thresholds::{Threshold, ThresholdResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA_VERSION: u32 = 1;

/// The counters where a failed workload operation leaves one sample carrying its `error_kind`
/// tag: `http_reqs` (every HTTP request), `db_queries_total` (direct-mode SQL statements;
/// api-mode database operations are HTTP requests) and `ws_connections_failed` (a WebSocket
/// handshake refused or a session ended by an error; the handshake is not an `http_reqs`
/// sample, so nothing is counted twice). The summary's errors-by-kind table sums them.
pub const OPERATION_COUNTERS: [&str; 3] =
    ["http_reqs", "db_queries_total", "ws_connections_failed"];

/// The error Rates of the four tests. A failure that no operation counter counted (a check
/// failed on a good response, a DWCP stream broke, a WebSocket frame was not JSON) leaves its
/// `true` sample on one of these tagged with an `error_kind`; the errors-by-kind table counts
/// those samples too. Samples of failures an operation counter already counted (a failed HTTP
/// request, a refused WebSocket handshake, a failed SQL statement) stay untagged, so nothing is
/// counted twice.
pub const ERROR_RATES: [&str; 4] = ["errors", "dwcp_errors", "ws_errors", "db_errors"];

/// What a run must have a sample on to have measured anything: a completed iteration, or one
/// operation attempted (an HTTP request, a database statement, a WebSocket connection opened or
/// failed, a finished migration). A ws run whose sessions outlast it completes no iteration but
/// opens connections: that measured something.
pub const MEASURED_OPERATIONS: [&str; 6] = [
    "iterations",
    "http_reqs",
    "db_queries_total",
    "ws_connections_established",
    "ws_connections_failed",
    "vm_migrations_total",
];

/// Why a run that measured nothing is a FAIL (SUMMARY.md, report.html, junit.xml, console).
pub const MEASURED_NOTHING: &str = "measured nothing: no iteration completed and no request was made \
     (no HTTP request, database statement, WebSocket connection or migration)";

/// PASS: all thresholds met. WARNING: only non-critical thresholds missed. FAIL: a critical
/// threshold missed, an abort, a run error, or nothing measured ([`MEASURED_NOTHING`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Warning,
    Fail,
}

impl Verdict {
    pub fn emoji(self) -> &'static str {
        match self {
            Verdict::Pass => "✅ PASS",
            Verdict::Warning => "⚠️ WARNING",
            Verdict::Fail => "❌ FAIL",
        }
    }
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warning => "WARNING",
            Verdict::Fail => "FAIL",
        }
    }
}

/// A serialized aggregate of one series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SeriesData {
    Counter {
        sum: f64,
    },
    Gauge {
        last: f64,
        last_at_ns: u64,
        min: f64,
        max: f64,
        seen: bool,
    },
    Rate {
        passes: u64,
        fails: u64,
    },
    Trend {
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
        hdr: String,
    },
}

impl SeriesData {
    pub fn from_agg(a: &Agg) -> Self {
        match a {
            Agg::Counter { sum } => SeriesData::Counter { sum: *sum },
            Agg::Gauge {
                last,
                last_at,
                min,
                max,
                seen,
            } => SeriesData::Gauge {
                last: *last,
                last_at_ns: *last_at,
                min: *min,
                max: *max,
                seen: *seen,
            },
            Agg::Rate { passes, fails } => SeriesData::Rate {
                passes: *passes,
                fails: *fails,
            },
            Agg::Trend(t) => SeriesData::Trend {
                count: t.count,
                sum: t.sum,
                min: t.min_or_zero(),
                max: t.max_or_zero(),
                hdr: t.histogram_base64(),
            },
        }
    }

    pub fn to_agg(&self) -> Result<Agg, String> {
        Ok(match self {
            SeriesData::Counter { sum } => Agg::Counter { sum: *sum },
            SeriesData::Gauge {
                last,
                last_at_ns,
                min,
                max,
                seen,
            } => Agg::Gauge {
                last: *last,
                last_at: *last_at_ns,
                min: *min,
                max: *max,
                seen: *seen,
            },
            SeriesData::Rate { passes, fails } => Agg::Rate {
                passes: *passes,
                fails: *fails,
            },
            SeriesData::Trend {
                count,
                sum,
                min,
                max,
                hdr,
            } => Agg::Trend(Box::new(Trend::from_parts(hdr, *count, *sum, *min, *max)?)),
        })
    }
}

/// One series: metric, tags and its aggregate. The source of truth for merges.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    pub metric: String,
    pub tags: Tags,
    pub data: SeriesData,
}

/// Reported values of one metric (all series merged).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricSummary {
    #[serde(rename = "type")]
    pub kind: MetricKind,
    pub contains: Contains,
    pub values: MetricValues,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckSummary {
    pub name: String,
    pub passes: u64,
    pub fails: u64,
}

impl CheckSummary {
    /// Passes as a percentage of all evaluations (0 when never evaluated).
    pub fn pass_rate_percent(&self) -> f64 {
        let total = self.passes + self.fails;
        if total == 0 {
            0.0
        } else {
            self.passes as f64 / total as f64 * 100.0
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub executor: String,
    pub description: String,
}

/// The summary of one test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub novaload_version: String,
    pub run_id: String,
    /// True when novaload made the run id up (no `--run-id`/`NOVALOAD_RUN_ID`): shards of one
    /// distributed run started without a shared id then differ only in it.
    #[serde(default)]
    pub run_id_generated: bool,
    pub test: String,
    pub profile: String,
    /// Where the load went (base URL or URL), never with credentials.
    pub target: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_s: f64,
    /// True when the run stopped early (Ctrl-C, abort, error): the numbers cover what ran.
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_reason: Option<String>,
    #[serde(default)]
    pub segment: String,
    #[serde(default)]
    pub shards: Vec<String>,
    pub scenarios: Vec<ScenarioInfo>,
    pub metrics: BTreeMap<String, MetricSummary>,
    pub checks: Vec<CheckSummary>,
    pub thresholds: Vec<ThresholdResult>,
    /// The declared thresholds, so a merge can re-evaluate them.
    pub threshold_defs: Vec<Threshold>,
    /// Failed operations by error kind: HTTP requests, direct-mode database statements and
    /// WebSocket connections (the samples of [`OPERATION_COUNTERS`] tagged with an
    /// `error_kind`), and the other failures of the error Rates ([`ERROR_RATES`]).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Why they failed: per error kind, the distinct messages with counts (bounded, redacted).
    #[serde(default, skip_serializing_if = "ErrorReasons::is_empty")]
    pub error_reasons: ErrorReasons,
    pub interrupted_iterations: u64,
    pub run_errors: Vec<String>,
    pub notes: Vec<String>,
    pub telemetry: TelemetryReport,
    pub verdict: Verdict,
    pub series: Vec<Series>,
}

/// Inputs a summary is built from besides the snapshot.
pub struct SummaryMeta {
    pub run_id: String,
    pub run_id_generated: bool,
    pub test: String,
    pub profile: String,
    pub target: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_s: f64,
    pub partial_reason: Option<String>,
    pub segment: String,
    pub scenarios: Vec<ScenarioInfo>,
    pub thresholds: Vec<Threshold>,
    pub interrupted_iterations: u64,
    pub run_errors: Vec<String>,
    pub notes: Vec<String>,
    pub telemetry: TelemetryReport,
}

#[cfg(test)]
impl SummaryMeta {
    /// A one-second run of `test` with nothing else set (unit-test fixtures).
    pub(crate) fn for_test(test: &str) -> Self {
        SummaryMeta {
            run_id: "t".into(),
            run_id_generated: false,
            test: test.into(),
            profile: "smoke".into(),
            target: String::new(),
            started_at: chrono::Utc::now(),
            duration_s: 1.0,
            partial_reason: None,
            segment: String::new(),
            scenarios: Vec::new(),
            thresholds: Vec::new(),
            interrupted_iterations: 0,
            run_errors: Vec::new(),
            notes: Vec::new(),
            telemetry: Default::default(),
        }
    }
}

impl Summary {
    pub fn build(snap: &Snapshot, meta: SummaryMeta) -> Self {
        let series = snap
            .series
            .iter()
            .map(|((id, tags), agg)| Series {
                metric: snap.registry.def(*id).name.clone(),
                tags: tags.clone(),
                data: SeriesData::from_agg(agg),
            })
            .collect();
        let declared = declared(snap);
        let mut s = Summary {
            schema_version: SCHEMA_VERSION,
            novaload_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: meta.run_id,
            run_id_generated: meta.run_id_generated,
            test: meta.test,
            profile: meta.profile,
            target: meta.target,
            started_at: meta.started_at,
            duration_s: meta.duration_s,
            partial: meta.partial_reason.is_some(),
            partial_reason: meta.partial_reason,
            segment: meta.segment,
            shards: Vec::new(),
            scenarios: meta.scenarios,
            metrics: BTreeMap::new(),
            checks: Vec::new(),
            thresholds: Vec::new(),
            threshold_defs: meta.thresholds,
            errors_by_kind: BTreeMap::new(),
            error_reasons: snap.reasons.clone(),
            interrupted_iterations: meta.interrupted_iterations,
            run_errors: meta.run_errors,
            notes: meta.notes,
            telemetry: meta.telemetry,
            verdict: Verdict::Pass,
            series,
        };
        s.derive(&declared);
        s
    }

    /// Recomputes metrics, checks, errors, thresholds and the verdict from `series` (after a
    /// build or a merge). `declared` lists every metric of the test (with or without samples).
    pub fn derive(&mut self, declared: &[(String, MetricKind, Contains)]) {
        let mut merged: BTreeMap<String, Agg> = BTreeMap::new();
        let mut checks: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for s in &self.series {
            let Ok(agg) = s.data.to_agg() else { continue };
            if s.metric == "checks"
                && let (Some(name), Agg::Rate { passes, fails }) = (&s.tags.check, &agg)
            {
                let e = checks.entry(name.to_string()).or_default();
                e.0 += passes;
                e.1 += fails;
            }
            if let Some(kind) = s.tags.error_kind {
                let failed = match &agg {
                    Agg::Counter { sum } if OPERATION_COUNTERS.contains(&s.metric.as_str()) => {
                        *sum as u64
                    }
                    // a Rate's "passes" are its non-zero (`true`) samples: the failures
                    Agg::Rate { passes, .. } if ERROR_RATES.contains(&s.metric.as_str()) => *passes,
                    _ => 0,
                };
                if failed > 0 {
                    *errors.entry(kind.as_str().to_string()).or_default() += failed;
                }
            }
            match merged.get_mut(&s.metric) {
                Some(m) => m.merge(&agg),
                None => {
                    merged.insert(s.metric.clone(), agg);
                }
            }
        }
        let has_threshold = |name: &str| self.threshold_defs.iter().any(|t| t.metric == name);
        self.metrics.clear();
        for (name, kind, contains) in declared {
            let agg = merged.remove(name).unwrap_or_else(|| Agg::new(*kind));
            // k6: metrics with thresholds always appear; others only with samples
            if agg.samples() == 0 && !has_threshold(name) {
                continue;
            }
            self.metrics.insert(
                name.clone(),
                MetricSummary {
                    kind: *kind,
                    contains: *contains,
                    values: agg.values(self.duration_s),
                },
            );
        }
        self.checks = checks
            .into_iter()
            .map(|(name, (passes, fails))| CheckSummary {
                name,
                passes,
                fails,
            })
            .collect();
        self.errors_by_kind = errors;
        self.evaluate_thresholds();
    }

    /// Re-evaluates thresholds against `series` and sets the verdict.
    pub fn evaluate_thresholds(&mut self) {
        let mut results = Vec::new();
        for t in &self.threshold_defs {
            let mut agg: Option<Agg> = None;
            for s in self.series.iter().filter(|s| s.metric == t.metric) {
                if !t
                    .filter
                    .iter()
                    .all(|(k, v)| s.tags.get(k).as_deref() == Some(v.as_str()))
                {
                    continue;
                }
                let Ok(a) = s.data.to_agg() else { continue };
                match &mut agg {
                    Some(m) => m.merge(&a),
                    None => agg = Some(a),
                }
            }
            let kind = self
                .metrics
                .get(&t.metric)
                .map(|m| m.kind)
                .unwrap_or(MetricKind::Counter);
            let agg = agg.unwrap_or_else(|| Agg::new(kind));
            results.push(t.evaluate_agg(&agg, self.duration_s));
        }
        self.thresholds = results;
        self.verdict = verdict(
            &self.thresholds,
            !self.run_errors.is_empty(),
            self.measured_nothing(),
            self.partial_reason.as_deref(),
        );
    }

    /// True when no iteration completed and no operation was attempted (no sample on any of
    /// [`MEASURED_OPERATIONS`]): thresholds over no samples may all hold, yet the run tested
    /// nothing, so the verdict is FAIL with [`MEASURED_NOTHING`] as its reason. Read from
    /// `series`, so it holds after a merge too.
    pub fn measured_nothing(&self) -> bool {
        !self.series.iter().any(|s| {
            MEASURED_OPERATIONS.contains(&s.metric.as_str())
                && s.data.to_agg().is_ok_and(|a| a.samples() > 0)
        })
    }

    /// A trend's histogram over all series (for plots and merge checks).
    pub fn trend(&self, metric: &str) -> Option<Trend> {
        let mut out: Option<Trend> = None;
        for s in self.series.iter().filter(|s| s.metric == metric) {
            if let Ok(Agg::Trend(t)) = s.data.to_agg() {
                match &mut out {
                    Some(o) => o.merge(&t),
                    None => out = Some(*t),
                }
            }
        }
        out
    }

    pub fn value(&self, metric: &str, key: &str) -> Option<f64> {
        self.metrics.get(metric).and_then(|m| m.values.get(key))
    }
}

fn verdict(
    results: &[ThresholdResult],
    run_error: bool,
    measured_nothing: bool,
    partial: Option<&str>,
) -> Verdict {
    let aborted = partial.is_some_and(|p| p.starts_with("aborted"));
    if run_error || measured_nothing || aborted || results.iter().any(|r| !r.ok && r.critical) {
        Verdict::Fail
    } else if results.iter().any(|r| !r.ok) {
        Verdict::Warning
    } else {
        Verdict::Pass
    }
}

/// Metrics declared in a snapshot's registry, for [`Summary::derive`].
pub fn declared(snap: &Snapshot) -> Vec<(String, MetricKind, Contains)> {
    snap.registry
        .defs()
        .map(|(_, d)| (d.name.clone(), d.kind, d.contains))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::metrics::{Recorder, Registry, builtin};
    use std::sync::Arc;

    #[test]
    fn trend_moments_read_back_bit_exact_from_json() {
        // Shard merges promise the single run's exact min/max/sum; a best-effort float parser
        // returned 1.845751 for the 1.8457510000000001 a shard wrote (CI, 2026-11-25).
        let mut values = vec![1.8457510000000001, 0.1 + 0.2, f64::MIN_POSITIVE, 1e300];
        let mut x = 0.000_123_456_789_f64;
        for _ in 0..2000 {
            x = (x * 1.618_033_988_749_895 + 0.000_731) % 97.0;
            values.push(x);
        }
        for v in values {
            let data = SeriesData::Trend {
                count: 1,
                sum: v,
                min: v,
                max: v,
                hdr: String::new(),
            };
            let back: SeriesData =
                serde_json::from_str(&serde_json::to_string(&data).unwrap()).unwrap();
            let SeriesData::Trend { sum, min, max, .. } = back else {
                panic!("not a trend")
            };
            assert_eq!(
                (sum.to_bits(), min.to_bits(), max.to_bits()),
                (v.to_bits(), v.to_bits(), v.to_bits()),
                "{v:e}"
            );
        }
    }

    fn meta(test: &str, thresholds: Vec<Threshold>) -> SummaryMeta {
        SummaryMeta {
            thresholds,
            ..SummaryMeta::for_test(test)
        }
    }

    /// A ws-like registry (the error Rate and connection counters) and a threshold on the Rate
    /// that holds over no samples, so only "measured nothing" can make the verdict FAIL.
    fn ws_run(record: impl FnOnce(&Recorder, &Registry)) -> Summary {
        let mut reg = Registry::new();
        reg.declare("ws_errors", MetricKind::Rate, Contains::Default);
        reg.declare(
            "ws_connections_established",
            MetricKind::Counter,
            Contains::Default,
        );
        let reg = Arc::new(reg);
        let rec = Recorder::new(reg.clone());
        record(&rec, &reg);
        let th = crate::thresholds::build(
            "ws_errors",
            &crate::thresholds::ThresholdSpec::plain("rate<0.05"),
            &reg,
        )
        .unwrap();
        Summary::build(&rec.snapshot(), meta("ws", vec![th]))
    }

    #[test]
    fn a_run_that_measured_nothing_fails_also_after_a_merge() {
        let s = ws_run(|_, _| {});
        assert!(s.thresholds.iter().all(|t| t.ok), "{:?}", s.thresholds);
        assert!(s.measured_nothing());
        assert_eq!(s.verdict, Verdict::Fail);
        // a merge reads summaries back and re-derives them from their series
        let mut back: Summary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        back.verdict = Verdict::Pass;
        let declared: Vec<_> = back
            .metrics
            .iter()
            .map(|(n, m)| (n.clone(), m.kind, m.contains))
            .collect();
        back.derive(&declared);
        assert_eq!(back.verdict, Verdict::Fail);
    }

    #[test]
    fn connections_or_iterations_alone_are_a_measurement() {
        let scenario: Arc<str> = Arc::from("default");
        // ws sessions longer than the run: no iteration completed, connections were opened
        let ws = ws_run(|rec, reg| {
            let id = reg.lookup("ws_connections_established").unwrap();
            rec.record(id, 3.0, &Tags::scenario(&scenario));
        });
        assert!(!ws.measured_nothing());
        assert_eq!(ws.verdict, Verdict::Pass);
        let iterations = ws_run(|rec, _| {
            rec.record(builtin::ITERATIONS, 1.0, &Tags::scenario(&scenario));
        });
        assert_eq!(iterations.verdict, Verdict::Pass);
        // a sample on a metric that is not an operation (a gauge of VUs) measures nothing
        let vus_only = ws_run(|rec, _| {
            rec.record(builtin::VUS, 5.0, &Tags::scenario(&scenario));
        });
        assert_eq!(vus_only.verdict, Verdict::Fail);
    }

    #[test]
    fn errors_by_kind_counts_tagged_failures_of_the_error_rates() {
        let scenario: Arc<str> = Arc::from("default");
        let s = ws_run(|rec, reg| {
            let errors = reg.lookup("ws_errors").unwrap();
            let ok = Tags::scenario(&scenario);
            let body = Tags {
                error_kind: Some(ErrorKind::Body),
                ..ok.clone()
            };
            rec.record(builtin::ITERATIONS, 1.0, &ok);
            rec.record(errors, 0.0, &ok);
            // already counted by an operation counter: untagged, not in the table
            rec.record(errors, 1.0, &ok);
            rec.record(errors, 1.0, &body);
            rec.record(errors, 1.0, &body);
        });
        let want: BTreeMap<String, u64> = [("body".into(), 2)].into();
        assert_eq!(s.errors_by_kind, want);
        assert_eq!(s.metrics["ws_errors"].values.get("passes"), Some(3.0));
    }

    #[test]
    fn errors_by_kind_counts_failed_requests_statements_and_connections_only() {
        let mut reg = Registry::new();
        let queries = reg.declare("db_queries_total", MetricKind::Counter, Contains::Default);
        let ws_failed = reg.declare(
            "ws_connections_failed",
            MetricKind::Counter,
            Contains::Default,
        );
        let other = reg.declare("ws_messages_sent", MetricKind::Counter, Contains::Default);
        let reg = Arc::new(reg);
        let rec = Recorder::new(reg.clone());
        let ok = Tags::scenario(&Arc::from("default"));
        let tagged = |k| Tags {
            error_kind: Some(k),
            ..ok.clone()
        };
        rec.record(builtin::HTTP_REQS, 5.0, &ok);
        rec.record(builtin::HTTP_REQS, 2.0, &tagged(ErrorKind::Status));
        rec.record(queries, 7.0, &ok);
        rec.record(queries, 3.0, &tagged(ErrorKind::Database));
        rec.record(queries, 1.0, &tagged(ErrorKind::Status));
        rec.record(ws_failed, 2.0, &tagged(ErrorKind::Protocol));
        // not an operation counter: not in the table, even when tagged
        rec.record(other, 4.0, &tagged(ErrorKind::Protocol));
        let s = Summary::build(&rec.snapshot(), meta("database", Vec::new()));
        let want: BTreeMap<String, u64> = [
            ("database".into(), 3),
            ("protocol".into(), 2),
            ("status".into(), 3),
        ]
        .into();
        assert_eq!(s.errors_by_kind, want);
        // the error samples stay part of the totals
        assert_eq!(
            s.metrics["db_queries_total"].values.get("count"),
            Some(11.0)
        );
    }
}
