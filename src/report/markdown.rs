//! `SUMMARY.md`: every test of the run, its verdict, targets vs measured, key metrics, checks,
//! errors and notes. One function per section; the same text is printed at the end of a run.

use super::summary::MEASURED_NOTHING;
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
    if s.measured_nothing() {
        let _ = writeln!(
            out,
            "> **Why {}:** {MEASURED_NOTHING}. Check that the target is reachable and that \
             the run lasted long enough for one iteration.\n",
            s.verdict.word()
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

/// Distinct messages shown per error kind in SUMMARY.md and report.html.
pub const TOP_REASONS: usize = 5;
/// Lines [`console_reasons`] returns at most.
pub const CONSOLE_REASON_LINES: usize = 5;

/// The error kinds a summary has something to say about, in name order: those with failures
/// counted (errors-by-kind) and those with recorded messages (the two normally coincide).
pub(crate) fn error_kinds(s: &Summary) -> Vec<&str> {
    let mut kinds: Vec<&str> = s
        .errors_by_kind
        .keys()
        .chain(s.error_reasons.kinds.keys())
        .map(String::as_str)
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

/// A kind's messages beyond the first `shown`: (occurrences, distinct messages, whether some
/// messages were not kept, so the count of distinct ones is a lower bound).
pub(crate) fn reasons_beyond(s: &Summary, kind: &str, shown: usize) -> Option<(u64, usize, bool)> {
    let k = s.error_reasons.kinds.get(kind)?;
    let mut counts: Vec<u64> = k.messages.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let rest = counts.get(shown..).unwrap_or(&[]);
    let occurrences = rest.iter().sum::<u64>() + k.other_messages;
    (occurrences > 0).then_some((occurrences, rest.len(), k.other_messages > 0))
}

/// "… 12 more in 3 other messages" (or "at least 4 other messages" when some were not kept).
pub(crate) fn more_text((occurrences, messages, unkept): (u64, usize, bool)) -> String {
    let (at_least, m) = if unkept {
        ("at least ", messages + 1)
    } else {
        ("", messages)
    };
    let plural = if m == 1 { "" } else { "s" };
    format!("… {occurrences} more in {at_least}{m} other message{plural}")
}

/// `text` as one Markdown code span: the fence is one backtick longer than the longest run of
/// backticks inside (CommonMark has no backslash escapes in code spans), padded with spaces
/// when the text starts or ends with a backtick. Pipes need no escape: messages are list items,
/// never table cells.
pub(crate) fn code_span(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    if text.starts_with('`') || text.ends_with('`') {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

/// "1 failed operation", "4 failed operations".
pub(crate) fn failed_operations(n: u64) -> String {
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} failed operation{plural}")
}

fn errors(out: &mut String, s: &Summary) {
    let kinds = error_kinds(s);
    if kinds.is_empty() && s.run_errors.is_empty() && s.interrupted_iterations == 0 {
        return;
    }
    let _ = writeln!(out, "### Errors\n");
    for kind in kinds {
        match s.errors_by_kind.get(kind) {
            Some(n) => {
                let _ = writeln!(out, "- `{kind}`: {}", failed_operations(*n));
            }
            None => {
                let _ = writeln!(out, "- `{kind}`:");
            }
        }
        for (message, n) in s.error_reasons.top(kind, TOP_REASONS) {
            let _ = writeln!(out, "  - {n} × {}", code_span(message));
        }
        if let Some(more) = reasons_beyond(s, kind, TOP_REASONS) {
            let _ = writeln!(out, "  - {}", more_text(more));
        }
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

/// The last lines of the console after a test's one-line verdict: why it failed, at most
/// [`CONSOLE_REASON_LINES`] lines such as `tls ×120: TLS handshake with 127.0.0.1:8443: invalid
/// peer certificate: UnknownIssuer` — the most frequent messages over all kinds, then kinds
/// that failed without a message (`status ×4`). "Measured nothing" comes first when it applies.
/// Empty for a run without failures.
pub fn console_reasons(s: &Summary) -> Vec<String> {
    let mut lines = Vec::new();
    if s.measured_nothing() {
        lines.push(MEASURED_NOTHING.to_string());
    }
    let mut messages: Vec<(&str, &str, u64)> = s
        .error_reasons
        .kinds
        .keys()
        .flat_map(|kind| {
            s.error_reasons
                .top(kind, CONSOLE_REASON_LINES)
                .into_iter()
                .map(move |(m, n)| (kind.as_str(), m, n))
        })
        .collect();
    messages.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1))));
    let silent = s
        .errors_by_kind
        .iter()
        .filter(|(kind, n)| **n > 0 && !s.error_reasons.kinds.contains_key(kind.as_str()));
    let room = CONSOLE_REASON_LINES.saturating_sub(lines.len());
    let mut reasons: Vec<String> = messages
        .into_iter()
        .map(|(kind, m, n)| format!("{kind} ×{n}: {m}"))
        .chain(silent.map(|(kind, n)| format!("{kind} ×{n}")))
        .take(room)
        .collect();
    lines.append(&mut reasons);
    lines
}

/// The most frequent failure message of a summary, as a console line (`kind ×n: message`).
pub fn top_reason(s: &Summary) -> Option<String> {
    let mut best: Option<(&str, &str, u64)> = None;
    for kind in s.error_reasons.kinds.keys() {
        if let Some(&(m, n)) = s.error_reasons.top(kind, 1).first()
            && best.is_none_or(|b| n > b.2)
        {
            best = Some((kind, m, n));
        }
    }
    best.map(|(kind, m, n)| format!("{kind} ×{n}: {m}"))
}

fn notes(out: &mut String, s: &Summary) {
    let mut notes = s.notes.clone();
    if s.telemetry.spans_dropped > 0 {
        notes.push(format!("{} spans were dropped because the trace export queue was full (collector slow or down; see docs/TROUBLESHOOTING.md#collector-unreachable)", s.telemetry.spans_dropped));
    }
    for e in &s.telemetry.errors {
        notes.push(format!("telemetry: {e}"));
    }
    if let Some(n) = s
        .value("http_resp_bodies_truncated", "count")
        .filter(|n| *n > 0.0)
    {
        notes.push(format!(
            "{n:.0} response bodies were longer than --response-body-limit: checks saw only their first bytes (every byte is counted in data_received; raise the limit if checks need more)"
        ));
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
        "---\nVerdicts: ✅ PASS — every threshold met; ⚠️ WARNING — only warning-severity targets (latency, throughput, concurrency) missed; ❌ FAIL — a critical threshold (error rates, success rates) missed, the run aborted, a run error, or nothing measured.\n\nGenerated by novaload {}.",
        env!("CARGO_PKG_VERSION")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::metrics::{Recorder, Registry, Tags, builtin};
    use crate::report::summary::SummaryMeta;
    use std::sync::Arc;

    /// A run with 4 failed HTTP requests (`status`), 7 TLS failures over 7 distinct messages,
    /// and one `timeout` failure without a recorded message.
    fn failing() -> Summary {
        let reg = Arc::new(Registry::new());
        let rec = Recorder::new(reg);
        let scenario: Arc<str> = Arc::from("default");
        let tagged = |k| Tags {
            error_kind: Some(k),
            ..Tags::scenario(&scenario)
        };
        rec.record(builtin::HTTP_REQS, 4.0, &tagged(ErrorKind::Status));
        rec.record(builtin::HTTP_REQS, 10.0, &tagged(ErrorKind::Tls));
        rec.record(builtin::HTTP_REQS, 1.0, &tagged(ErrorKind::Timeout));
        for _ in 0..4 {
            rec.record_reason(ErrorKind::Status, "GET /api/v1/vms: HTTP 500 | `boom`");
        }
        for i in 0..7 {
            for _ in 0..=i {
                rec.record_reason(ErrorKind::Tls, &format!("handshake {i}: UnknownIssuer"));
            }
        }
        Summary::build(&rec.snapshot(), meta())
    }

    fn meta() -> SummaryMeta {
        SummaryMeta::for_test("api")
    }

    #[test]
    fn truncated_bodies_are_noted_with_the_flag_that_changes_it() {
        let rec = Recorder::new(Arc::new(Registry::new()));
        rec.record(builtin::HTTP_REQS, 3.0, &Tags::default());
        assert!(!render(&[Summary::build(&rec.snapshot(), meta())]).contains("response bodies"));
        rec.record(builtin::HTTP_RESP_BODIES_TRUNCATED, 2.0, &Tags::default());
        let md = render(&[Summary::build(&rec.snapshot(), meta())]);
        assert!(
            md.contains("- 2 response bodies were longer than --response-body-limit"),
            "{md}"
        );
    }

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(code_span("plain | pipe"), "`plain | pipe`");
        assert_eq!(code_span("a `b` c"), "``a `b` c``");
        assert_eq!(code_span("``x"), "``` ``x ```");
    }

    #[test]
    fn errors_show_each_kinds_top_messages_and_what_is_left() {
        let md = render(&[failing()]);
        assert!(md.contains("- `status`: 4 failed operations\n"), "{md}");
        assert!(
            md.contains("  - 4 × `` GET /api/v1/vms: HTTP 500 | `boom` ``\n"),
            "{md}"
        );
        assert!(md.contains("- `tls`: 10 failed operations\n"), "{md}");
        // the five most frequent of seven, most frequent first, then the two left (1 + 2)
        let tls: Vec<&str> = md
            .lines()
            .skip_while(|l| !l.starts_with("- `tls`"))
            .skip(1)
            .take_while(|l| l.starts_with("  - "))
            .collect();
        assert_eq!(tls.len(), TOP_REASONS + 1, "{md}");
        assert_eq!(tls[0], "  - 7 × `handshake 6: UnknownIssuer`");
        assert_eq!(tls[TOP_REASONS], "  - … 3 more in 2 other messages");
        // a kind without messages still shows its count
        assert!(md.contains("- `timeout`: 1 failed operation\n"), "{md}");
    }

    #[test]
    fn console_reasons_are_the_most_frequent_messages_first() {
        let lines = console_reasons(&failing());
        assert_eq!(lines.len(), CONSOLE_REASON_LINES, "{lines:?}");
        assert_eq!(lines[0], "tls ×7: handshake 6: UnknownIssuer");
        assert_eq!(lines[1], "tls ×6: handshake 5: UnknownIssuer");
        assert!(lines.contains(&"status ×4: GET /api/v1/vms: HTTP 500 | `boom`".to_string()));
        assert_eq!(
            top_reason(&failing()).as_deref(),
            Some("tls ×7: handshake 6: UnknownIssuer")
        );
    }

    #[test]
    fn a_run_that_measured_nothing_says_so() {
        let empty = Recorder::new(Arc::new(Registry::new()));
        let s = Summary::build(&empty.snapshot(), meta());
        assert_eq!(s.verdict, Verdict::Fail);
        let md = render(std::slice::from_ref(&s));
        assert!(
            md.contains(&format!("> **Why FAIL:** {MEASURED_NOTHING}.")),
            "{md}"
        );
        assert_eq!(console_reasons(&s), vec![MEASURED_NOTHING.to_string()]);
        // a run with failures is not "measured nothing"
        assert!(!render(&[failing()]).contains("measured nothing"));
    }
}
