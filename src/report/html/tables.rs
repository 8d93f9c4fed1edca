//! The tables and lists of a test's section: targets vs measured, trends and the other
//! metrics, checks, and errors and notes. Values and error summaries come from the SUMMARY.md
//! helpers, so both reports show the same figures and wording.

use super::esc;
use crate::metrics::MetricKind;
use crate::report::Summary;
use crate::report::markdown::{
    TOP_REASONS, error_kinds, failed_operations, format_value, more_text, reasons_beyond, unit_of,
};
use std::fmt::Write;

/// "Targets vs measured": every threshold with its measured value; missed ones are shaded by
/// severity.
pub(super) fn targets(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "<h3>Targets vs measured</h3>");
    if s.thresholds.is_empty() {
        let _ = writeln!(out, "<p>No thresholds were set.</p>");
        return;
    }
    let _ = writeln!(
        out,
        "<table class=\"targets\"><tr><th>Metric</th><th>Target</th><th>Measured</th><th>Severity</th><th>Status</th></tr>"
    );
    for t in &s.thresholds {
        let measured = match t.measured {
            Some(v) => format_value(v, &t.aggregation, unit_of(s, &t.metric)),
            None => "no samples".into(),
        };
        let (class, mark) = match (t.ok, t.critical) {
            (true, _) => ("met", "✅ met"),
            (false, true) => ("miss-critical", "❌ missed"),
            (false, false) => ("miss-warning", "⚠️ missed"),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td><code>{}</code></td><td><code>{}</code></td><td class=\"num\">{}</td><td>{}</td><td>{mark}</td></tr>",
            esc(&t.metric),
            esc(&t.threshold),
            esc(&measured),
            if t.critical { "critical" } else { "warning" }
        );
    }
    let _ = writeln!(out, "</table>");
}

/// "Trends" (the percentiles of every trend that has samples) and "Counters, rates and gauges".
pub(super) fn key_metrics(out: &mut String, s: &Summary) {
    let trends: Vec<_> = s
        .metrics
        .iter()
        .filter(|(_, m)| m.kind == MetricKind::Trend && m.values.get("count").unwrap_or(0.0) > 0.0)
        .collect();
    if !trends.is_empty() {
        let _ = writeln!(
            out,
            "<h3>Trends</h3>\n<table class=\"trends\"><tr><th>Metric</th><th>count</th><th>min</th><th>avg</th><th>med</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>"
        );
        for (name, m) in trends {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td class=\"num\">{:.0}</td>",
                esc(name),
                m.values.get("count").unwrap_or(0.0)
            );
            for k in [
                "min", "avg", "med", "p(90)", "p(95)", "p(99)", "p(99.9)", "max",
            ] {
                let v = m.values.get(k).unwrap_or(0.0);
                let text = format_value(v, k, m.contains);
                let _ = write!(out, "<td class=\"num\">{}</td>", esc(&text));
            }
            let _ = writeln!(out, "</tr>");
        }
        let _ = writeln!(out, "</table>");
    }
    let others: Vec<_> = s
        .metrics
        .iter()
        .filter(|(_, m)| m.kind != MetricKind::Trend)
        .collect();
    if !others.is_empty() {
        let _ = writeln!(
            out,
            "<h3>Counters, rates and gauges</h3>\n<table class=\"others\"><tr><th>Metric</th><th>Value</th></tr>"
        );
        for (name, m) in others {
            let v = &m.values;
            let g = |k: &str| v.get(k).unwrap_or(0.0);
            let text = match m.kind {
                MetricKind::Counter => format!("{:.0} ({:.2}/s)", g("count"), g("rate")),
                MetricKind::Rate => format!(
                    "{:.2}% ({:.0} of {:.0})",
                    g("rate") * 100.0,
                    g("passes"),
                    g("passes") + g("fails")
                ),
                MetricKind::Gauge => {
                    format!(
                        "{:.0} (min {:.0}, max {:.0})",
                        g("value"),
                        g("min"),
                        g("max")
                    )
                }
                MetricKind::Trend => continue,
            };
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td class=\"num\">{}</td></tr>",
                esc(name),
                esc(&text)
            );
        }
        let _ = writeln!(out, "</table>");
    }
}

/// "Checks": passes and fails per check; nothing when the test has no checks.
pub(super) fn checks(out: &mut String, s: &Summary) {
    if s.checks.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h3>Checks</h3>\n<table class=\"checks\"><tr><th>Check</th><th>Passes</th><th>Fails</th><th>Pass rate</th></tr>"
    );
    for c in &s.checks {
        let rate = c.pass_rate_percent();
        let (class, mark) = if c.fails == 0 {
            ("met", "✅")
        } else {
            ("miss-critical", "❌")
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{mark} {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{rate:.2}%</td></tr>",
            esc(&c.name),
            c.passes,
            c.fails
        );
    }
    let _ = writeln!(out, "</table>");
}

/// "Errors" (failed operations by kind with their most frequent messages, interrupted
/// iterations, run errors) and "Notes" (the summary's notes and telemetry trouble); each only
/// when it has something to say.
pub(super) fn errors_and_notes(out: &mut String, s: &Summary) {
    let mut items: Vec<String> = Vec::new();
    for kind in error_kinds(s) {
        // the kind's count, then its most frequent messages (as in SUMMARY.md)
        let mut item = match s.errors_by_kind.get(kind) {
            Some(n) => format!("<code>{}</code>: {}", esc(kind), failed_operations(*n)),
            None => format!("<code>{}</code>:", esc(kind)),
        };
        let top = s.error_reasons.top(kind, TOP_REASONS);
        let more = reasons_beyond(s, kind, TOP_REASONS);
        if !top.is_empty() || more.is_some() {
            item.push_str("\n<ul class=\"reasons\">");
            for (message, n) in top {
                let _ = write!(item, "\n<li>{n} × <code>{}</code></li>", esc(message));
            }
            if let Some(more) = more {
                let _ = write!(item, "\n<li>{}</li>", esc(&more_text(more)));
            }
            item.push_str("\n</ul>");
        }
        items.push(item);
    }
    if s.interrupted_iterations > 0 {
        items.push(format!(
            "{} iterations were cut short by the end of the run (graceful stop)",
            s.interrupted_iterations
        ));
    }
    for e in &s.run_errors {
        items.push(format!("run error: {}", esc(e)));
    }
    if !items.is_empty() {
        let _ = writeln!(out, "<h3>Errors</h3>\n<ul>");
        for i in items {
            let _ = writeln!(out, "<li>{i}</li>");
        }
        let _ = writeln!(out, "</ul>");
    }
    let mut notes: Vec<String> = s.notes.clone();
    if s.telemetry.spans_dropped > 0 {
        notes.push(format!(
            "{} spans were dropped because the trace export queue was full (collector slow or down; see docs/TROUBLESHOOTING.md#collector-unreachable)",
            s.telemetry.spans_dropped
        ));
    }
    for e in &s.telemetry.errors {
        notes.push(format!("telemetry: {e}"));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "<h3>Notes</h3>\n<ul>");
        for n in notes {
            let _ = writeln!(out, "<li>{}</li>", esc(&n));
        }
        let _ = writeln!(out, "</ul>");
    }
}
