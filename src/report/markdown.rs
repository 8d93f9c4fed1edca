//! `SUMMARY.md`: every test of the run, its verdict, targets vs measured, key metrics, checks,
//! errors and notes. One function per section; the same text is printed at the end of a run.

use super::{Summary, Verdict};
use crate::metrics::{Contains, MetricKind};
use std::fmt::Write;

/// Renders SUMMARY.md for all tests of a run.
pub fn render(summaries: &[Summary]) -> String {
    let mut out = String::new();
    header(&mut out, summaries);
    for (i, s) in summaries.iter().enumerate() {
        test_section(&mut out, i + 1, s);
    }
    footer(&mut out);
    out
}

/// The worst verdict of the run.
pub fn overall(summaries: &[Summary]) -> Verdict {
    summaries
        .iter()
        .map(|s| s.verdict)
        .max()
        .unwrap_or(Verdict::Fail)
}

fn header(out: &mut String, summaries: &[Summary]) {
    let _ = writeln!(out, "# novaload results\n");
    let v = overall(summaries);
    let _ = writeln!(out, "**Overall verdict: {}**\n", v.emoji());
    if let Some(first) = summaries.first() {
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| Run id | `{}` |", first.run_id);
        let _ = writeln!(
            out,
            "| Started | {} |",
            first.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let _ = writeln!(out, "| Profile | {} |", first.profile);
        let _ = writeln!(out, "| Target | {} |", first.target);
        let _ = writeln!(out, "| novaload | {} |", first.novaload_version);
        if !first.segment.is_empty() {
            let _ = writeln!(out, "| Segment | {} |", first.segment);
        }
        if !first.shards.is_empty() {
            let _ = writeln!(out, "| Merged shards | {} |", first.shards.join(", "));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "| Test | Verdict | Duration | Thresholds met |\n|---|---|---|---|"
    );
    for s in summaries {
        let met = s.thresholds.iter().filter(|t| t.ok).count();
        let partial = if s.partial { " (partial)" } else { "" };
        let _ = writeln!(
            out,
            "| {} | {}{} | {:.1} s | {}/{} |",
            s.test,
            s.verdict.emoji(),
            partial,
            s.duration_s,
            met,
            s.thresholds.len()
        );
    }
    let _ = writeln!(out);
}

fn test_section(out: &mut String, n: usize, s: &Summary) {
    let _ = writeln!(out, "## {n}. {} — {}\n", title(&s.test), s.verdict.emoji());
    if s.partial {
        let _ = writeln!(
            out,
            "> **Partial run**: {}. The figures cover what ran before the stop.\n",
            s.partial_reason.as_deref().unwrap_or("stopped early")
        );
    }
    for sc in &s.scenarios {
        let _ = writeln!(out, "- Scenario `{}`: {}", sc.name, sc.description);
    }
    let _ = writeln!(out, "- Duration: {:.1} s\n", s.duration_s);
    targets(out, s);
    key_metrics(out, s);
    checks(out, s);
    errors(out, s);
    notes(out, s);
}

pub(crate) fn title(test: &str) -> String {
    match test {
        "api" => "API load test".into(),
        "dwcp" => "DWCP v3 migration test".into(),
        "ws" | "websocket" => "WebSocket realtime test".into(),
        "db" | "database" => "Database test".into(),
        "url" => "HTTP endpoint".into(),
        other => other.to_string(),
    }
}

fn status(ok: bool, critical: bool) -> &'static str {
    match (ok, critical) {
        (true, _) => "✅",
        (false, true) => "❌",
        (false, false) => "⚠️",
    }
}

fn targets(out: &mut String, s: &Summary) {
    if s.thresholds.is_empty() {
        let _ = writeln!(out, "No thresholds were set.\n");
        return;
    }
    let _ = writeln!(
        out,
        "### Targets vs measured\n\n| Metric | Target | Measured | Severity | Status |\n|---|---|---|---|---|"
    );
    for t in &s.thresholds {
        let unit = unit_of(s, &t.metric);
        let measured = match t.measured {
            Some(v) => format_value(v, &t.aggregation, unit),
            None => "no samples".into(),
        };
        let sev = if t.critical { "critical" } else { "warning" };
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | {} | {} |",
            t.metric,
            t.threshold,
            measured,
            sev,
            status(t.ok, t.critical)
        );
    }
    let _ = writeln!(out);
}

pub(crate) fn unit_of(s: &Summary, metric_key: &str) -> Contains {
    let name = metric_key.split('{').next().unwrap_or(metric_key);
    s.metrics
        .get(name)
        .map(|m| m.contains)
        .unwrap_or(Contains::Default)
}

pub(crate) fn format_value(v: f64, aggregation: &str, contains: Contains) -> String {
    match (aggregation, contains) {
        ("rate", _) => format!("{:.2}%", v * 100.0),
        ("count", _) => format!("{v:.0}"),
        (_, Contains::Time) => format_ms(v),
        (_, Contains::Data) => format!("{v:.0} B"),
        _ => format!("{v:.2}"),
    }
}

fn format_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.2} ms")
    }
}

fn key_metrics(out: &mut String, s: &Summary) {
    let trends: Vec<_> = s
        .metrics
        .iter()
        .filter(|(_, m)| m.kind == MetricKind::Trend && m.values.get("count").unwrap_or(0.0) > 0.0)
        .collect();
    if !trends.is_empty() {
        let _ = writeln!(
            out,
            "### Latency and other trends\n\n| Metric | count | min | avg | med | p90 | p95 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for (name, m) in trends {
            let f = |k: &str| {
                let v = m.values.get(k).unwrap_or(0.0);
                if m.contains == Contains::Time {
                    format_ms(v)
                } else {
                    format!("{v:.2}")
                }
            };
            let _ = writeln!(
                out,
                "| `{name}` | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                m.values.get("count").unwrap_or(0.0),
                f("min"),
                f("avg"),
                f("med"),
                f("p(90)"),
                f("p(95)"),
                f("p(99)"),
                f("p(99.9)"),
                f("max")
            );
        }
        let _ = writeln!(out);
    }
    let others: Vec<_> = s
        .metrics
        .iter()
        .filter(|(_, m)| m.kind != MetricKind::Trend)
        .collect();
    if !others.is_empty() {
        let _ = writeln!(
            out,
            "### Counters, rates and gauges\n\n| Metric | Value |\n|---|---|"
        );
        for (name, m) in others {
            let v = &m.values;
            let text = match m.kind {
                MetricKind::Counter => {
                    let unit = if m.contains == Contains::Data {
                        " B"
                    } else {
                        ""
                    };
                    format!(
                        "{:.0}{unit} ({:.2}/s)",
                        v.get("count").unwrap_or(0.0),
                        v.get("rate").unwrap_or(0.0)
                    )
                }
                MetricKind::Rate => format!(
                    "{:.2}% ({:.0} of {:.0})",
                    v.get("rate").unwrap_or(0.0) * 100.0,
                    v.get("passes").unwrap_or(0.0),
                    v.get("passes").unwrap_or(0.0) + v.get("fails").unwrap_or(0.0)
                ),
                MetricKind::Gauge => format!(
                    "{:.0} (min {:.0}, max {:.0})",
                    v.get("value").unwrap_or(0.0),
                    v.get("min").unwrap_or(0.0),
                    v.get("max").unwrap_or(0.0)
                ),
                MetricKind::Trend => unreachable!("filtered above"),
            };
            let _ = writeln!(out, "| `{name}` | {text} |");
        }
        let _ = writeln!(out);
    }
}

fn checks(out: &mut String, s: &Summary) {
    if s.checks.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Checks\n\n| Check | Passes | Fails | Pass rate |\n|---|---|---|---|"
    );
    for c in &s.checks {
        let rate = c.pass_rate_percent();
        let mark = if c.fails == 0 { "✅" } else { "❌" };
        let _ = writeln!(
            out,
            "| {mark} {} | {} | {} | {rate:.2}% |",
            c.name, c.passes, c.fails
        );
    }
    let _ = writeln!(out);
}

fn errors(out: &mut String, s: &Summary) {
    if s.errors_by_kind.is_empty() && s.run_errors.is_empty() && s.interrupted_iterations == 0 {
        return;
    }
    let _ = writeln!(out, "### Errors\n");
    for (kind, n) in &s.errors_by_kind {
        let _ = writeln!(out, "- `{kind}`: {n} failed requests");
    }
    if s.interrupted_iterations > 0 {
        let _ = writeln!(
            out,
            "- {} iterations were cut short by the end of the run (graceful stop)",
            s.interrupted_iterations
        );
    }
    for e in &s.run_errors {
        let _ = writeln!(out, "- run error: {e}");
    }
    let _ = writeln!(out);
}

fn notes(out: &mut String, s: &Summary) {
    let mut notes = s.notes.clone();
    if s.telemetry.spans_dropped > 0 {
        notes.push(format!("{} spans were dropped because the trace export queue was full (collector slow or down; see docs/TROUBLESHOOTING.md#collector-unreachable)", s.telemetry.spans_dropped));
    }
    for e in &s.telemetry.errors {
        notes.push(format!("telemetry: {e}"));
    }
    if notes.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Notes\n");
    for n in notes {
        let _ = writeln!(out, "- {n}");
    }
    let _ = writeln!(out);
}

fn footer(out: &mut String) {
    let _ = writeln!(
        out,
        "---\nVerdicts: ✅ PASS — every threshold met; ⚠️ WARNING — only warning-severity targets (latency, throughput, concurrency) missed; ❌ FAIL — a critical threshold (error rates, success rates) missed, the run aborted, or a run error.\n\nGenerated by novaload {}.",
        env!("CARGO_PKG_VERSION")
    );
}
