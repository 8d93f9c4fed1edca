//! Thresholds in k6 syntax (`p(95)<500`, `rate<0.01`, `count>0`), on metrics and tagged
//! sub-metrics (`http_req_duration{status:200}`), with `abortOnFail`/`delayAbortEval`, plus
//! novaload's `critical` flag that separates FAIL from WARNING.

use crate::error::ConfigError;
use crate::metrics::{Agg, MetricKind, MetricValues, Registry, Snapshot};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            Op::Lt => lhs < rhs,
            Op::Le => lhs <= rhs,
            Op::Gt => lhs > rhs,
            Op::Ge => lhs >= rhs,
            Op::Eq => lhs == rhs,
            Op::Ne => lhs != rhs,
        }
    }
}

/// One parsed threshold expression, e.g. `p(95)<500`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    /// The value key in [`MetricValues`]: `count`, `rate`, `value`, `avg`, `min`, `max`, `med`, `p(95)`.
    pub aggregation: String,
    pub op: Op,
    pub limit: f64,
}

/// A threshold as declared: on which metric (and tag filter), the expression and its options.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Threshold {
    /// The metric key as written, e.g. `http_req_duration{status:200}`.
    pub metric_key: String,
    pub metric: String,
    pub filter: Vec<(String, String)>,
    /// The expression source, e.g. `p(95)<500`.
    pub source: String,
    pub expr: Expr,
    pub abort_on_fail: bool,
    #[serde(with = "humantime_serde_opt")]
    pub delay_abort_eval: Option<Duration>,
    /// Missing a critical threshold fails the run; missing only non-critical ones is a WARNING.
    pub critical: bool,
}

/// Result of evaluating one threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub metric: String,
    pub threshold: String,
    pub ok: bool,
    pub critical: bool,
    /// The measured value the expression compared (None when the metric had no samples).
    pub measured: Option<f64>,
    pub limit: f64,
    pub aggregation: String,
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v: Option<String> = Option::deserialize(d)?;
        v.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Splits `name{k:v,k2:v2}` into the name and its tag filter.
pub fn parse_metric_key(key: &str) -> Result<(String, Vec<(String, String)>), ConfigError> {
    let key = key.trim();
    let Some(open) = key.find('{') else {
        return Ok((key.to_string(), Vec::new()));
    };
    let field = format!("thresholds.{key}");
    if !key.ends_with('}') {
        return Err(ConfigError::new(
            field,
            "the tag filter is not closed with '}'",
            "write it as metric{tag:value}, e.g. http_req_duration{status:200}",
        ));
    }
    let name = key[..open].trim().to_string();
    let inner = &key[open + 1..key.len() - 1];
    let mut filter = Vec::new();
    for part in inner.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((k, v)) = part.split_once(':') else {
            return Err(ConfigError::new(
                field,
                format!("tag filter part '{part}' has no ':'"),
                "write each filter as tag:value, separated by commas",
            ));
        };
        let v = v.trim().trim_matches('"').trim_matches('\'');
        filter.push((k.trim().to_string(), v.to_string()));
    }
    Ok((name, filter))
}

/// Parses an expression like `p(95)<500`, `rate < 0.01`, `count>0`.
pub fn parse_expr(src: &str, field: &str) -> Result<Expr, ConfigError> {
    let s: String = src.chars().filter(|c| !c.is_whitespace()).collect();
    let fix = "use AGG OP NUMBER with AGG one of count, rate, value, avg, min, max, med, p(N), e.g. p(95)<500";
    let ops = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("===", Op::Eq),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (pos, op_str, op) = ops
        .iter()
        .filter_map(|(o, op)| s.find(o).map(|p| (p, *o, *op)))
        .min_by_key(|(p, o, _)| (*p, std::cmp::Reverse(o.len())))
        .ok_or_else(|| {
            ConfigError::new(field, format!("'{src}' has no comparison operator"), fix)
        })?;
    let agg = &s[..pos];
    let rhs = &s[pos + op_str.len()..];
    let limit: f64 = rhs
        .parse()
        .map_err(|_| ConfigError::new(field, format!("'{rhs}' in '{src}' is not a number"), fix))?;
    let aggregation = match agg {
        "count" | "rate" | "value" | "avg" | "min" | "max" | "med" => agg.to_string(),
        a if a.starts_with("p(") && a.ends_with(')') => {
            let p: f64 = a[2..a.len() - 1].parse().map_err(|_| {
                ConfigError::new(field, format!("percentile '{a}' is not p(NUMBER)"), fix)
            })?;
            if !(0.0..=100.0).contains(&p) {
                return Err(ConfigError::new(
                    field,
                    format!("percentile {p} is outside 0..100"),
                    fix,
                ));
            }
            format!("p({})", trim_float(p))
        }
        other => {
            return Err(ConfigError::new(
                field,
                format!("unknown aggregation '{other}' in '{src}'"),
                fix,
            ));
        }
    };
    Ok(Expr {
        aggregation,
        op,
        limit,
    })
}

fn trim_float(p: f64) -> String {
    let s = format!("{p}");
    s.trim_end_matches(".0").to_string()
}

/// Which aggregations a metric type supports (k6's rules).
fn allowed(kind: MetricKind, agg: &str) -> bool {
    match kind {
        MetricKind::Counter => matches!(agg, "count" | "rate"),
        MetricKind::Gauge => matches!(agg, "value" | "min" | "max"),
        MetricKind::Rate => agg == "rate",
        MetricKind::Trend => agg != "count" && agg != "rate" && agg != "value",
    }
}

/// A threshold declaration as it appears in a k6 options object: a string or an object.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ThresholdSpec {
    Plain(String),
    Object {
        threshold: String,
        #[serde(default, rename = "abortOnFail")]
        abort_on_fail: bool,
        #[serde(default, rename = "delayAbortEval")]
        delay_abort_eval: Option<String>,
        #[serde(default)]
        critical: Option<bool>,
    },
}

impl ThresholdSpec {
    /// The expression as written (`p(95)<500`).
    pub fn source(&self) -> String {
        match self {
            ThresholdSpec::Plain(s) => s.clone(),
            ThresholdSpec::Object { threshold, .. } => threshold.clone(),
        }
    }
    pub fn plain(s: &str) -> Self {
        ThresholdSpec::Plain(s.to_string())
    }
    pub fn warning(s: &str) -> Self {
        ThresholdSpec::Object {
            threshold: s.to_string(),
            abort_on_fail: false,
            delay_abort_eval: None,
            critical: Some(false),
        }
    }
}

/// Builds a threshold, checking the metric exists and supports the aggregation.
pub fn build(
    metric_key: &str,
    spec: &ThresholdSpec,
    registry: &Registry,
) -> Result<Threshold, ConfigError> {
    let field = format!("thresholds.{metric_key}");
    let (metric, filter) = parse_metric_key(metric_key)?;
    let Some(id) = registry.lookup(&metric) else {
        let known: Vec<_> = registry.defs().map(|(_, d)| d.name.clone()).collect();
        return Err(ConfigError::new(
            field,
            format!("no metric named '{metric}' in this test"),
            format!("use one of: {}", known.join(", ")),
        ));
    };
    for (k, _) in &filter {
        if !crate::metrics::Tags::KNOWN.contains(&k.as_str()) {
            return Err(ConfigError::new(
                &field,
                format!("unknown tag '{k}' in the filter"),
                format!(
                    "filter on one of: {}",
                    crate::metrics::Tags::KNOWN.join(", ")
                ),
            ));
        }
    }
    let kind = registry.def(id).kind;
    let (source, abort_on_fail, delay, critical) = match spec {
        ThresholdSpec::Plain(s) => (s.clone(), false, None, None),
        ThresholdSpec::Object {
            threshold,
            abort_on_fail,
            delay_abort_eval,
            critical,
        } => {
            let delay = match delay_abort_eval {
                Some(d) => Some(crate::duration::parse(
                    d,
                    &format!("{field}.delayAbortEval"),
                )?),
                None => None,
            };
            (threshold.clone(), *abort_on_fail, delay, *critical)
        }
    };
    let expr = parse_expr(&source, &field)?;
    if !allowed(kind, &expr.aggregation) {
        return Err(ConfigError::new(
            field,
            format!(
                "'{}' does not apply to a {} metric",
                expr.aggregation,
                kind.as_str()
            ),
            match kind {
                MetricKind::Counter => "counters support count and rate",
                MetricKind::Gauge => "gauges support value, min and max",
                MetricKind::Rate => "rates support rate",
                MetricKind::Trend => "trends support avg, min, max, med and p(N)",
            },
        ));
    }
    // Error rates and "something happened at all" checks are what make a run FAIL; latency
    // and throughput targets are WARNING unless the user says otherwise.
    let default_critical = kind == MetricKind::Rate
        || (expr.aggregation == "count" && expr.op == Op::Gt && expr.limit == 0.0);
    Ok(Threshold {
        metric_key: metric_key.to_string(),
        metric,
        filter,
        source,
        expr,
        abort_on_fail,
        delay_abort_eval: delay,
        critical: critical.unwrap_or(default_critical),
    })
}

impl Threshold {
    /// Evaluates against merged values. A metric with no samples compares as 0, as k6 does.
    pub fn evaluate_values(&self, values: &MetricValues, has_samples: bool) -> ThresholdResult {
        // an aggregation absent from the values (no samples) compares as 0, as k6 does
        let measured = values.get(&self.expr.aggregation).unwrap_or(0.0);
        let ok = self.expr.op.holds(measured, self.expr.limit);
        ThresholdResult {
            metric: self.metric_key.clone(),
            threshold: self.source.clone(),
            ok,
            critical: self.critical,
            measured: has_samples.then_some(measured),
            limit: self.expr.limit,
            aggregation: self.expr.aggregation.clone(),
        }
    }

    /// Evaluates against a snapshot of the run, `duration_s` seconds long.
    pub fn evaluate(&self, snap: &Snapshot, duration_s: f64) -> ThresholdResult {
        let Some(id) = snap.registry.lookup(&self.metric) else {
            return self.evaluate_values(&MetricValues::default(), false);
        };
        let agg = if self.filter.is_empty() {
            snap.metric(id)
        } else {
            snap.submetric(id, &self.filter)
        };
        self.evaluate_agg(&agg, duration_s)
    }

    pub fn evaluate_agg(&self, agg: &Agg, duration_s: f64) -> ThresholdResult {
        let mut values = agg.values(duration_s);
        if let Agg::Trend(t) = agg
            && let Some(p) = self
                .expr
                .aggregation
                .strip_prefix("p(")
                .and_then(|s| s.strip_suffix(')'))
                .and_then(|s| s.parse::<f64>().ok())
        {
            values
                .0
                .insert(self.expr.aggregation.clone(), t.percentile(p));
        }
        self.evaluate_values(&values, agg.samples() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{MetricKind, Recorder, Tags, builtin};
    use std::sync::Arc;

    #[test]
    fn parses_k6_expressions() {
        let e = parse_expr("p(95)<500", "f").unwrap();
        assert_eq!(e.aggregation, "p(95)");
        assert_eq!(e.op, Op::Lt);
        assert_eq!(e.limit, 500.0);
        let e = parse_expr("rate <= 0.01", "f").unwrap();
        assert_eq!(
            (e.aggregation.as_str(), e.op, e.limit),
            ("rate", Op::Le, 0.01)
        );
        let e = parse_expr("count>0", "f").unwrap();
        assert_eq!(e.op, Op::Gt);
        assert_eq!(
            parse_expr("p(99.9)<1500", "f").unwrap().aggregation,
            "p(99.9)"
        );
        assert_eq!(parse_expr("avg==3", "f").unwrap().op, Op::Eq);
    }

    #[test]
    fn rejects_malformed_expressions_naming_the_field() {
        for bad in [
            "p95<500",
            "p(95)<",
            "p(95)~500",
            "rate<abc",
            "p(150)<1",
            "wat>1",
        ] {
            let err = parse_expr(bad, "thresholds.http_req_duration").unwrap_err();
            assert_eq!(err.field, "thresholds.http_req_duration", "{bad}");
        }
    }

    #[test]
    fn parses_submetric_keys() {
        let (m, f) = parse_metric_key("http_req_duration{status:200, method:GET}").unwrap();
        assert_eq!(m, "http_req_duration");
        assert_eq!(
            f,
            vec![
                ("status".into(), "200".into()),
                ("method".into(), "GET".into())
            ]
        );
        assert!(parse_metric_key("http_req_duration{status:200").is_err());
    }

    #[test]
    fn checks_aggregation_against_metric_type() {
        let reg = Registry::new();
        assert!(build("http_req_failed", &ThresholdSpec::plain("p(95)<1"), &reg).is_err());
        assert!(build("http_reqs", &ThresholdSpec::plain("count>10"), &reg).is_ok());
        assert!(build("nope", &ThresholdSpec::plain("count>10"), &reg).is_err());
        assert!(
            build(
                "http_req_duration{color:red}",
                &ThresholdSpec::plain("p(95)<1"),
                &reg
            )
            .is_err()
        );
    }

    #[test]
    fn criticality_defaults_and_overrides() {
        let reg = Registry::new();
        assert!(
            build("http_req_failed", &ThresholdSpec::plain("rate<0.01"), &reg)
                .unwrap()
                .critical
        );
        assert!(
            !build(
                "http_req_duration",
                &ThresholdSpec::plain("p(95)<500"),
                &reg
            )
            .unwrap()
            .critical
        );
        assert!(
            build("iterations", &ThresholdSpec::plain("count>0"), &reg)
                .unwrap()
                .critical
        );
        let spec = ThresholdSpec::Object {
            threshold: "p(95)<500".into(),
            abort_on_fail: true,
            delay_abort_eval: Some("10s".into()),
            critical: Some(true),
        };
        let t = build("http_req_duration", &spec, &reg).unwrap();
        assert!(t.critical && t.abort_on_fail);
        assert_eq!(t.delay_abort_eval, Some(Duration::from_secs(10)));
    }

    #[test]
    fn evaluates_on_submetrics_and_arbitrary_percentiles() {
        let mut reg = Registry::new();
        let custom = reg.declare(
            "errors",
            MetricKind::Rate,
            crate::metrics::Contains::Default,
        );
        let rec = Recorder::new(Arc::new(reg));
        let ok = Tags {
            status: Some(200),
            ..Tags::default()
        };
        let slow = Tags {
            status: Some(500),
            ..Tags::default()
        };
        for i in 0..100 {
            rec.record(builtin::HTTP_REQ_DURATION, i as f64, &ok);
        }
        rec.record(builtin::HTTP_REQ_DURATION, 5000.0, &slow);
        rec.record(custom, 0.0, &Tags::default());
        rec.record(custom, 1.0, &Tags::default());
        let snap = rec.snapshot();
        let reg = snap.registry.clone();
        let t = build(
            "http_req_duration{status:200}",
            &ThresholdSpec::plain("max<100"),
            &reg,
        )
        .unwrap();
        assert!(t.evaluate(&snap, 1.0).ok);
        let t = build("http_req_duration", &ThresholdSpec::plain("max<100"), &reg).unwrap();
        assert!(!t.evaluate(&snap, 1.0).ok);
        let t = build(
            "http_req_duration",
            &ThresholdSpec::plain("p(97.5)<200"),
            &reg,
        )
        .unwrap();
        let r = t.evaluate(&snap, 1.0);
        assert!(r.ok, "{r:?}");
        let t = build("errors", &ThresholdSpec::plain("rate<0.4"), &reg).unwrap();
        let r = t.evaluate(&snap, 1.0);
        assert!(!r.ok);
        assert_eq!(r.measured, Some(0.5));
    }
}
