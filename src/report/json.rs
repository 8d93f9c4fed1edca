//! `<test>_summary.json`: the Summary plus a k6 `--summary-export`-compatible view, so tools
//! that read k6 summaries keep working.

use super::Summary;
use serde_json::{Map, Value, json};

/// The k6 legacy `--summary-export` shape: metrics flattened to their values, Rate `rate`
/// renamed `value`, thresholds mapping each expression to true when it FAILED, checks keyed by name.
pub fn k6_summary_export(s: &Summary) -> Value {
    let mut metrics = Map::new();
    for (name, m) in &s.metrics {
        let mut obj = Map::new();
        for (k, v) in &m.values.0 {
            let key = if m.kind == crate::metrics::MetricKind::Rate && k == "rate" {
                "value"
            } else {
                k.as_str()
            };
            // k6's export has no count on trends
            if m.kind == crate::metrics::MetricKind::Trend && k == "count" {
                continue;
            }
            obj.insert(key.to_string(), json!(v));
        }
        let th: Map<String, Value> = s
            .thresholds
            .iter()
            .filter(|t| t.metric == *name)
            .map(|t| (t.threshold.clone(), json!(!t.ok)))
            .collect();
        if !th.is_empty() {
            obj.insert("thresholds".into(), Value::Object(th));
        }
        metrics.insert(name.clone(), Value::Object(obj));
    }
    let checks: Map<String, Value> = s
        .checks
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({"name": c.name, "path": format!("::{}", c.name), "id": check_id(&c.name), "passes": c.passes, "fails": c.fails}),
            )
        })
        .collect();
    json!({
        "root_group": {"name": "", "path": "", "id": "d41d8cd98f00b204e9800998ecf8427e", "groups": {}, "checks": checks},
        "metrics": metrics,
    })
}

/// A stable id per check name (k6 uses an md5 of the path; any stable hex id serves readers).
fn check_id(name: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("::{name}").as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The file content of `<test>_summary.json`.
pub fn summary_file(s: &Summary) -> anyhow::Result<String> {
    let mut v = serde_json::to_value(s)?;
    if let Value::Object(o) = &mut v {
        o.insert("k6_summary_export".into(), k6_summary_export(s));
    }
    Ok(serde_json::to_string_pretty(&v)?)
}

/// Reads a `<test>_summary.json` back.
pub fn read_summary(path: &std::path::Path) -> anyhow::Result<Summary> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let s: Summary = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a novaload summary", path.display()))?;
    anyhow::ensure!(
        s.schema_version == super::summary::SCHEMA_VERSION,
        "{}: schema_version {} is not supported (this novaload reads {})",
        path.display(),
        s.schema_version,
        super::summary::SCHEMA_VERSION
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::metrics::{Recorder, Registry, Tags, builtin};
    use crate::report::summary::SummaryMeta;
    use std::sync::Arc;

    /// The reasons travel in `error_reasons` (read back exactly, so merges keep them); the k6
    /// view has no place for them and keeps its shape.
    #[test]
    fn reasons_round_trip_and_leave_the_k6_view_alone() {
        let rec = Recorder::new(Arc::new(Registry::new()));
        let tags = Tags {
            error_kind: Some(ErrorKind::Tls),
            ..Tags::scenario(&Arc::from("default"))
        };
        rec.record(builtin::HTTP_REQS, 2.0, &tags);
        rec.record_reason(
            ErrorKind::Tls,
            "TLS handshake with 127.0.0.1:8443: UnknownIssuer",
        );
        rec.record_reason(
            ErrorKind::Tls,
            "TLS handshake with 127.0.0.1:8443: UnknownIssuer",
        );
        let s = Summary::build(&rec.snapshot(), SummaryMeta::for_test("url"));
        let text = summary_file(&s).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["error_reasons"]["tls"]["messages"]["TLS handshake with 127.0.0.1:8443: UnknownIssuer"],
            2
        );
        let k6 = v["k6_summary_export"].as_object().unwrap();
        assert_eq!(
            k6.keys().collect::<Vec<_>>(),
            ["metrics", "root_group"],
            "the k6 shape"
        );
        let back: Summary = serde_json::from_str(&text).unwrap();
        assert_eq!(back.error_reasons, s.error_reasons);
        assert_eq!(back.errors_by_kind, s.errors_by_kind);
    }
}
