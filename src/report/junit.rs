//! `junit.xml`: thresholds and checks as JUnit test results for CI systems (GitLab
//! `reports: junit`, GitHub test reporters, Jenkins).
//!
//! One `<testsuite name="novaload.<test>">` per test; in it one `<testcase>` per threshold
//! (classname `thresholds`, name `metric: expression`), one per check (classname `checks`) and
//! one `run` case (classname `run`) that fails when the run aborted, had a run error or measured
//! nothing — so a FAIL verdict is always visible as a failed test case. A missed
//! warning-severity threshold is still a `<failure type="warning">` (JUnit has no "warning"
//! outcome); a missed critical threshold is `<failure type="critical">`. Failure messages carry
//! the measured value, the limit and the test's most frequent failure message; bodies carry the
//! console's reason lines.

use super::Summary;
use super::markdown::{console_reasons, format_value, top_reason, unit_of};
use super::summary::MEASURED_NOTHING;
use std::fmt::Write;

struct Case {
    classname: &'static str,
    name: String,
    /// (type, message, body)
    failure: Option<(&'static str, String, String)>,
}

fn cases(s: &Summary) -> Vec<Case> {
    let mut out = Vec::new();
    // why operations failed, once per suite: the top message goes into each failure message
    // (what CI shows inline), the console lines into each failure body
    let top = top_reason(s).map(|r| format!("; top reason: {r}"));
    let top = top.as_deref().unwrap_or("");
    let reasons = console_reasons(s);
    let reasons_body = if reasons.is_empty() {
        String::new()
    } else {
        format!("reasons:\n  {}\n", reasons.join("\n  "))
    };
    for t in &s.thresholds {
        let unit = unit_of(s, &t.metric);
        let measured = t
            .measured
            .map(|v| format_value(v, &t.aggregation, unit))
            .unwrap_or_else(|| "no samples".into());
        let failure = (!t.ok).then(|| {
            let kind = if t.critical { "critical" } else { "warning" };
            (
                kind,
                format!(
                    "{}: {} missed: measured {measured}, limit {} ({kind}){top}",
                    t.metric,
                    t.threshold,
                    format_value(t.limit, &t.aggregation, unit)
                ),
                format!(
                    "metric: {}\nthreshold: {}\naggregation: {}\nmeasured: {}\nlimit: {}\nseverity: {kind}\n{reasons_body}",
                    t.metric,
                    t.threshold,
                    t.aggregation,
                    t.measured
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "no samples".into()),
                    t.limit
                ),
            )
        });
        out.push(Case {
            classname: "thresholds",
            name: format!("{}: {}", t.metric, t.threshold),
            failure,
        });
    }
    for c in &s.checks {
        let total = c.passes + c.fails;
        let failure = (c.fails > 0).then(|| {
            (
                "check",
                format!(
                    "check failed {} of {total} times ({} passed){top}",
                    c.fails, c.passes
                ),
                format!("passes: {}\nfails: {}\n{reasons_body}", c.passes, c.fails),
            )
        });
        out.push(Case {
            classname: "checks",
            name: c.name.clone(),
            failure,
        });
    }
    let aborted = s
        .partial_reason
        .as_deref()
        .filter(|r| r.starts_with("aborted"));
    let nothing = s.measured_nothing().then_some(MEASURED_NOTHING);
    let failure = if !s.run_errors.is_empty() || aborted.is_some() || nothing.is_some() {
        let mut lines: Vec<String> = nothing
            .into_iter()
            .chain(aborted)
            .map(str::to_string)
            .collect();
        lines.extend(s.run_errors.iter().cloned());
        Some(("run", lines.join("; "), lines.join("\n")))
    } else {
        None
    };
    out.push(Case {
        classname: "run",
        name: "run completed without errors".into(),
        failure,
    });
    out
}

/// Renders junit.xml for all tests of a run.
pub fn render(summaries: &[Summary]) -> String {
    let all: Vec<(&Summary, Vec<Case>)> = summaries.iter().map(|s| (s, cases(s))).collect();
    let tests: usize = all.iter().map(|(_, c)| c.len()).sum();
    let failures: usize = all
        .iter()
        .map(|(_, c)| c.iter().filter(|c| c.failure.is_some()).count())
        .sum();
    let time: f64 = summaries.iter().map(|s| s.duration_s).sum();
    let mut o = String::new();
    let _ = writeln!(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        o,
        "<testsuites name=\"novaload\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">"
    );
    for (i, (s, cases)) in all.iter().enumerate() {
        let f = cases.iter().filter(|c| c.failure.is_some()).count();
        let _ = writeln!(
            o,
            "  <testsuite name=\"novaload.{}\" id=\"{i}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\" timestamp=\"{}\">",
            xml(&s.test),
            cases.len(),
            s.duration_s,
            s.started_at.format("%Y-%m-%dT%H:%M:%S")
        );
        let _ = writeln!(o, "    <properties>");
        for (k, v) in [
            ("run_id", s.run_id.as_str()),
            ("profile", s.profile.as_str()),
            ("target", s.target.as_str()),
            ("verdict", s.verdict.word()),
            ("segment", s.segment.as_str()),
            ("novaload_version", s.novaload_version.as_str()),
        ] {
            let _ = writeln!(o, "      <property name=\"{k}\" value=\"{}\"/>", xml(v));
        }
        let _ = writeln!(o, "    </properties>");
        for c in cases {
            let open = format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                c.classname,
                xml(&c.name)
            );
            match &c.failure {
                None => {
                    let _ = writeln!(o, "{open}/>");
                }
                Some((kind, msg, body)) => {
                    let _ = writeln!(
                        o,
                        "{open}>\n      <failure type=\"{kind}\" message=\"{}\">{}</failure>\n    </testcase>",
                        xml(msg),
                        xml(body)
                    );
                }
            }
        }
        let _ = writeln!(o, "  </testsuite>");
    }
    let _ = writeln!(o, "</testsuites>");
    o
}

/// Escapes text for XML content and attributes; drops characters XML 1.0 forbids.
pub fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\n' => o.push_str("&#10;"),
            '\t' => o.push_str("&#9;"),
            '\r' => o.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_and_drops_forbidden_chars() {
        assert_eq!(
            xml("a<b>&\"c\"'\u{1}\n"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;&#10;"
        );
    }
}
