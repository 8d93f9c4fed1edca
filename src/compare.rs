//! `novaload compare RUN_A RUN_B`: per-metric deltas between two results folders, with
//! regressions highlighted: latency up, error rate up, throughput down — each beyond a tolerance.
//!
//! What counts as worse, per metric:
//! - time trends (`http_req_duration`, `api_latency`, ...): p50/p95/p99/avg up;
//! - rates whose name says failure (`*_failed`, `*error*`): up; success rates (`checks`,
//!   `*_success`): down. Rates compare in percentage points too: a change smaller than 0.1
//!   point is never a regression (0 % → 0.01 % is noise, not an infinite regression), and a
//!   time change smaller than 1 ms is never one either (sub-millisecond jitter);
//! - counters: throughput (`http_reqs`, `iterations`, `*_total`) rate down; failure counters
//!   (`dropped_iterations`, `*fail*`, `*error*`) count up;
//! - gauges named `*_per_second`: max down.
//!
//! Everything else is listed with its delta and never flagged.

use crate::metrics::{Contains, MetricKind};
use crate::report::Summary;
use crate::report::summary::MetricSummary;
use std::fmt::Write;
use std::path::Path;

/// A rate change smaller than this (0.1 percentage point) is neither regression nor improvement.
pub const MIN_RATE_DELTA: f64 = 0.001;
/// A time change smaller than this (milliseconds) is neither regression nor improvement:
/// sub-millisecond phases (`http_req_connecting`, ...) jitter by far more than 10 %.
pub const MIN_TIME_DELTA_MS: f64 = 1.0;

/// Which direction is worse for a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worse {
    Up,
    Down,
    Neither,
}

/// One compared value.
#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    /// `p(95)`, `rate`, `count`, ...
    pub stat: String,
    pub a: f64,
    pub b: f64,
    pub contains: Contains,
    pub kind: MetricKind,
    pub worse: Worse,
    /// Change in the worse direction, percent of A (positive = worse; infinite when A is 0).
    pub worse_pct: Option<f64>,
    /// Worse by more than the tolerance.
    pub regression: bool,
    /// Better by more than the tolerance.
    pub improvement: bool,
}

impl Row {
    /// Relative change B vs A in percent (None when both are 0).
    pub fn delta_pct(&self) -> Option<f64> {
        if self.a == 0.0 {
            if self.b == 0.0 {
                None
            } else {
                Some(f64::INFINITY.copysign(self.b))
            }
        } else {
            Some((self.b - self.a) / self.a.abs() * 100.0)
        }
    }
}

/// A threshold present in both runs whose outcome changed.
#[derive(Debug, Clone)]
pub struct ThresholdChange {
    pub metric: String,
    pub threshold: String,
    pub ok_a: bool,
    pub ok_b: bool,
}

#[derive(Debug, Clone)]
pub struct TestComparison {
    pub test: String,
    pub verdict_a: crate::report::Verdict,
    pub verdict_b: crate::report::Verdict,
    pub rows: Vec<Row>,
    pub threshold_changes: Vec<ThresholdChange>,
}

/// The comparison of two runs.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub run_a: String,
    pub run_b: String,
    pub tolerance_pct: f64,
    pub tests: Vec<TestComparison>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

impl Comparison {
    pub fn regressions(&self) -> impl Iterator<Item = (&str, &Row)> {
        self.tests
            .iter()
            .flat_map(|t| t.rows.iter().map(move |r| (t.test.as_str(), r)))
            .filter(|(_, r)| r.regression)
    }

    /// The largest regression in percent (0 when none).
    pub fn worst_regression_pct(&self) -> f64 {
        self.regressions()
            .filter_map(|(_, r)| r.worse_pct)
            .fold(0.0, f64::max)
    }

    /// True when some regression is worse than `pct` percent (`--fail-on-regression`).
    pub fn exceeds(&self, pct: f64) -> bool {
        self.regressions()
            .any(|(_, r)| r.worse_pct.is_some_and(|w| w > pct))
    }
}

/// Compares the results folders `a` and `b`.
pub fn compare_dirs(a: &Path, b: &Path, tolerance_pct: f64) -> anyhow::Result<Comparison> {
    let (sa, _) = crate::results::read_results(a)?;
    let (sb, _) = crate::results::read_results(b)?;
    let mut c = compare(&sa, &sb, tolerance_pct);
    c.run_a = a.display().to_string();
    c.run_b = b.display().to_string();
    Ok(c)
}

/// Compares two runs' summaries, test by test.
pub fn compare(a: &[Summary], b: &[Summary], tolerance_pct: f64) -> Comparison {
    let mut tests = Vec::new();
    for sa in a {
        let Some(sb) = b.iter().find(|s| s.test == sa.test) else {
            continue;
        };
        tests.push(compare_test(sa, sb, tolerance_pct));
    }
    Comparison {
        run_a: a.first().map(|s| s.run_id.clone()).unwrap_or_default(),
        run_b: b.first().map(|s| s.run_id.clone()).unwrap_or_default(),
        tolerance_pct,
        tests,
        only_in_a: a
            .iter()
            .filter(|s| !b.iter().any(|o| o.test == s.test))
            .map(|s| s.test.clone())
            .collect(),
        only_in_b: b
            .iter()
            .filter(|s| !a.iter().any(|o| o.test == s.test))
            .map(|s| s.test.clone())
            .collect(),
    }
}

fn compare_test(a: &Summary, b: &Summary, tol: f64) -> TestComparison {
    let mut rows = Vec::new();
    for (name, ma) in &a.metrics {
        let Some(mb) = b.metrics.get(name) else {
            continue;
        };
        for (stat, worse) in stats(name, ma) {
            let (Some(va), Some(vb)) = (ma.values.get(stat), mb.values.get(stat)) else {
                continue;
            };
            if va == 0.0 && vb == 0.0 {
                continue;
            }
            rows.push(row(name, stat, va, vb, ma, worse, tol));
        }
    }
    let threshold_changes = a
        .thresholds
        .iter()
        .filter_map(|ta| {
            let tb = b
                .thresholds
                .iter()
                .find(|t| t.metric == ta.metric && t.threshold == ta.threshold)?;
            (ta.ok != tb.ok).then(|| ThresholdChange {
                metric: ta.metric.clone(),
                threshold: ta.threshold.clone(),
                ok_a: ta.ok,
                ok_b: tb.ok,
            })
        })
        .collect();
    TestComparison {
        test: a.test.clone(),
        verdict_a: a.verdict,
        verdict_b: b.verdict,
        rows,
        threshold_changes,
    }
}

fn name_says_failure(name: &str) -> bool {
    [
        "fail",
        "error",
        "dropped",
        "late_",
        "timeout",
        "interrupted",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// The statistics compared for a metric, each with its worse direction.
fn stats(name: &str, m: &MetricSummary) -> Vec<(&'static str, Worse)> {
    match m.kind {
        MetricKind::Trend => {
            let w = if m.contains == Contains::Time {
                Worse::Up
            } else {
                Worse::Neither
            };
            vec![("med", w), ("p(95)", w), ("p(99)", w), ("avg", w)]
        }
        MetricKind::Rate => {
            let w = if name_says_failure(name) {
                Worse::Up
            } else if name == "checks" || name.contains("success") {
                Worse::Down
            } else {
                Worse::Neither
            };
            vec![("rate", w)]
        }
        MetricKind::Counter => {
            if name_says_failure(name) {
                vec![("count", Worse::Up), ("rate", Worse::Up)]
            } else if name == "http_reqs" || name == "iterations" || name.ends_with("_total") {
                vec![("count", Worse::Neither), ("rate", Worse::Down)]
            } else {
                vec![("count", Worse::Neither), ("rate", Worse::Neither)]
            }
        }
        MetricKind::Gauge => {
            let w = if name.ends_with("_per_second") {
                Worse::Down
            } else {
                Worse::Neither
            };
            vec![("max", w), ("value", Worse::Neither)]
        }
    }
}

fn row(name: &str, stat: &str, a: f64, b: f64, m: &MetricSummary, worse: Worse, tol: f64) -> Row {
    let signed = match worse {
        Worse::Up => b - a,
        Worse::Down => a - b,
        Worse::Neither => 0.0,
    };
    let worse_pct = (worse != Worse::Neither).then(|| {
        if a == 0.0 {
            if signed > 0.0 {
                f64::INFINITY
            } else if signed < 0.0 {
                f64::NEG_INFINITY
            } else {
                0.0
            }
        } else {
            signed / a.abs() * 100.0
        }
    });
    // noise floors: rates need a change of 0.1 percentage point, times one of 1 ms
    let big_enough = match (m.kind, m.contains) {
        (MetricKind::Rate, _) => (b - a).abs() >= MIN_RATE_DELTA,
        (MetricKind::Trend, Contains::Time) => (b - a).abs() >= MIN_TIME_DELTA_MS,
        _ => true,
    };
    let regression = big_enough && worse_pct.is_some_and(|w| w > tol);
    let improvement = big_enough && worse_pct.is_some_and(|w| w < -tol);
    Row {
        metric: name.to_string(),
        stat: stat.to_string(),
        a,
        b,
        contains: m.contains,
        kind: m.kind,
        worse,
        worse_pct,
        regression,
        improvement,
    }
}

fn fmt_value(r: &Row, v: f64) -> String {
    match (r.kind, r.stat.as_str(), r.contains) {
        (MetricKind::Rate, _, _) => format!("{:.2}%", v * 100.0),
        (MetricKind::Counter, "rate", _) => format!("{v:.2}/s"),
        (MetricKind::Counter, _, _) => format!("{v:.0}"),
        (_, _, Contains::Time) if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        (_, _, Contains::Time) => format!("{v:.2} ms"),
        _ => format!("{v:.2}"),
    }
}

fn fmt_delta(r: &Row) -> String {
    match r.kind {
        MetricKind::Rate => format!("{:+.2} pp", (r.b - r.a) * 100.0),
        _ => match r.delta_pct() {
            Some(d) if d.is_infinite() => "new".into(),
            Some(d) => format!("{d:+.1}%"),
            None => "=".into(),
        },
    }
}

fn mark(r: &Row) -> &'static str {
    if r.regression {
        "REGRESSION"
    } else if r.improvement {
        "improved"
    } else {
        ""
    }
}

fn ok_word(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

/// Plain-text rendering (terminal).
pub fn render_text(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "novaload compare");
    let _ = writeln!(o, "  A: {}", c.run_a);
    let _ = writeln!(o, "  B: {}", c.run_b);
    let _ = writeln!(o, "  tolerance: {}%", c.tolerance_pct);
    for t in &c.tests {
        let _ = writeln!(
            o,
            "\n== {} — verdict {} -> {}{}",
            t.test,
            t.verdict_a.word(),
            t.verdict_b.word(),
            if t.verdict_b > t.verdict_a {
                "  (WORSE)"
            } else if t.verdict_b < t.verdict_a {
                "  (better)"
            } else {
                ""
            }
        );
        let w = t
            .rows
            .iter()
            .map(|r| r.metric.len() + r.stat.len() + 1)
            .max()
            .unwrap_or(10)
            .max(10);
        let _ = writeln!(
            o,
            "  {:<w$}  {:>14}  {:>14}  {:>10}",
            "metric", "A", "B", "delta"
        );
        for r in &t.rows {
            let _ = writeln!(
                o,
                "{} {:<w$}  {:>14}  {:>14}  {:>10}  {}",
                if r.regression { "!" } else { " " },
                format!("{}.{}", r.metric, r.stat),
                fmt_value(r, r.a),
                fmt_value(r, r.b),
                fmt_delta(r),
                mark(r)
            );
        }
        for ch in &t.threshold_changes {
            let _ = writeln!(
                o,
                "  threshold {}: {} {} -> {}",
                ch.metric,
                ch.threshold,
                ok_word(ch.ok_a),
                ok_word(ch.ok_b)
            );
        }
    }
    footer(&mut o, c, false);
    o
}

/// Markdown rendering (PR comments, job summaries).
pub fn render_markdown(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# novaload compare\n");
    let _ = writeln!(
        o,
        "- A: `{}`\n- B: `{}`\n- Tolerance: {}%\n",
        c.run_a, c.run_b, c.tolerance_pct
    );
    for t in &c.tests {
        let _ = writeln!(
            o,
            "## {} — {} → {}\n",
            t.test,
            t.verdict_a.emoji(),
            t.verdict_b.emoji()
        );
        let _ = writeln!(o, "| Metric | A | B | Δ | |\n|---|---:|---:|---:|---|");
        for r in &t.rows {
            let flag = if r.regression {
                "❌ **regression**"
            } else if r.improvement {
                "✅ improved"
            } else {
                ""
            };
            let bold = if r.regression { "**" } else { "" };
            let _ = writeln!(
                o,
                "| `{}` {} | {} | {bold}{}{bold} | {bold}{}{bold} | {flag} |",
                r.metric,
                r.stat,
                fmt_value(r, r.a),
                fmt_value(r, r.b),
                fmt_delta(r)
            );
        }
        if !t.threshold_changes.is_empty() {
            let _ = writeln!(o, "\nThreshold changes:\n");
            for ch in &t.threshold_changes {
                let _ = writeln!(
                    o,
                    "- `{}` `{}`: {} → {}",
                    ch.metric,
                    ch.threshold,
                    ok_word(ch.ok_a),
                    ok_word(ch.ok_b)
                );
            }
        }
        let _ = writeln!(o);
    }
    footer(&mut o, c, true);
    o
}

fn footer(o: &mut String, c: &Comparison, md: bool) {
    let n = c.regressions().count();
    let nl = if md { "\n" } else { "" };
    let _ = writeln!(o);
    if !c.only_in_a.is_empty() {
        let _ = writeln!(o, "Only in A: {}{nl}", c.only_in_a.join(", "));
    }
    if !c.only_in_b.is_empty() {
        let _ = writeln!(o, "Only in B: {}{nl}", c.only_in_b.join(", "));
    }
    if c.tests.is_empty() {
        let _ = writeln!(o, "No test is present in both runs.");
    } else if n == 0 {
        let _ = writeln!(o, "No regressions beyond {}%.", c.tolerance_pct);
    } else {
        let worst = c.worst_regression_pct();
        let worst = if worst.is_infinite() {
            "from zero".to_string()
        } else {
            format!("{worst:.1}%")
        };
        let _ = writeln!(
            o,
            "{n} regression(s) beyond {}% (worst: {worst}).",
            c.tolerance_pct
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricValues;

    fn ms(kind: MetricKind, contains: Contains, vals: &[(&str, f64)]) -> MetricSummary {
        MetricSummary {
            kind,
            contains,
            values: MetricValues(vals.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
        }
    }

    #[test]
    fn directions_and_tolerance() {
        let lat = ms(MetricKind::Trend, Contains::Time, &[]);
        let r = row(
            "http_req_duration",
            "p(95)",
            10.0,
            12.0,
            &lat,
            Worse::Up,
            10.0,
        );
        assert!(r.regression && (r.worse_pct.unwrap() - 20.0).abs() < 1e-9);
        let r = row(
            "http_req_duration",
            "p(95)",
            10.0,
            10.5,
            &lat,
            Worse::Up,
            10.0,
        );
        assert!(!r.regression);
        let r = row(
            "http_req_duration",
            "p(95)",
            10.0,
            5.0,
            &lat,
            Worse::Up,
            10.0,
        );
        assert!(r.improvement && !r.regression);
        let cnt = ms(MetricKind::Counter, Contains::Default, &[]);
        let r = row("http_reqs", "rate", 100.0, 80.0, &cnt, Worse::Down, 10.0);
        assert!(r.regression);
        let rate = ms(MetricKind::Rate, Contains::Default, &[]);
        // 0 -> 0.05 pp is below the 0.1 pp floor
        let r = row(
            "http_req_failed",
            "rate",
            0.0,
            0.0005,
            &rate,
            Worse::Up,
            10.0,
        );
        assert!(!r.regression);
        let r = row("http_req_failed", "rate", 0.0, 0.02, &rate, Worse::Up, 10.0);
        assert!(r.regression && r.worse_pct == Some(f64::INFINITY));
        assert_eq!(stats("http_req_failed", &rate)[0].1, Worse::Up);
        assert_eq!(stats("checks", &rate)[0].1, Worse::Down);
        assert_eq!(stats("http_reqs", &cnt)[1], ("rate", Worse::Down));
    }
}
