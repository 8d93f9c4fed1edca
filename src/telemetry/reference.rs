//! The README's metric reference, rendered from [`names`](super::names) so the two never drift.

use super::names::{CLIENT_METRICS, Kind, MetricName, TARGET_METRICS};

fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    }
}

fn table(out: &mut String, metrics: &[MetricName]) {
    out.push_str("| Prometheus name | OTel name | Type | Unit | Labels | Description |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for m in metrics {
        let labels = if m.labels.is_empty() {
            "—".to_owned()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | `{}` | {} | {} |\n",
            m.prometheus,
            m.otel,
            kind(m.kind),
            m.unit,
            labels,
            m.help.replace('|', "\\|")
        ));
    }
}

/// Markdown: one table of novaload's own metrics, one of the reference target's.
pub fn metrics_reference_markdown() -> String {
    let mut out = String::new();
    out.push_str("### novaload (client) metrics\n\n");
    out.push_str(
        "Histograms are exported with `_bucket`, `_sum` and `_count` series; latency histograms \
         carry `trace_id` exemplars in the OpenMetrics scrape.\n\n",
    );
    table(&mut out, CLIENT_METRICS);
    out.push_str("\n### Reference target (NovaCron) metrics\n\n");
    table(&mut out, TARGET_METRICS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_unique_and_well_formed() {
        let all: Vec<&MetricName> = CLIENT_METRICS.iter().chain(TARGET_METRICS).collect();
        let mut prom = HashSet::new();
        let mut otel = HashSet::new();
        for m in &all {
            assert!(prom.insert(m.prometheus), "duplicate {}", m.prometheus);
            assert!(otel.insert(m.otel), "duplicate {}", m.otel);
            // (Not "only counters": NovaCron's own `novacron_vms_total` is a gauge.)
            if m.kind == Kind::Counter {
                assert!(m.prometheus.ends_with("_total"), "{}", m.prometheus);
            }
            if m.unit == "s" {
                assert!(m.prometheus.contains("_seconds"), "{}", m.prometheus);
            }
            let mut l = HashSet::new();
            for label in m.labels {
                assert!(
                    !label.is_empty() && l.insert(*label),
                    "{}: bad label",
                    m.prometheus
                );
            }
            assert!(!m.help.is_empty());
        }
        // Every client series that is per-run carries run_id (dashboards filter on it).
        for m in CLIENT_METRICS {
            if !m.prometheus.starts_with("process_") {
                assert!(!m.labels.is_empty(), "{} has no labels", m.prometheus);
                assert_eq!(m.labels[0], "run_id", "{}", m.prometheus);
            }
        }
        let md = metrics_reference_markdown();
        for m in &all {
            assert!(md.contains(&format!("`{}`", m.prometheus)));
        }
    }
}
