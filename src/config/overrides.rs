//! Command-line overrides of the options (k6's precedence: flag > scenario file > profile):
//! `--vus`, `--duration`, `--iterations`, `--stage`, `--rate` replace the scenarios, and
//! `--threshold` adds to the thresholds. Every rejection names the flag, not the scenario
//! field it becomes.

use super::options::{self, Options, StageSpec};
use crate::cli::RunArgs;
use crate::error::ConfigError;
use crate::metrics::Registry;
use crate::thresholds::{self, Threshold, ThresholdSpec};

/// Parses `30s:100`.
fn parse_stage(s: &str) -> Result<StageSpec, ConfigError> {
    let (d, t) = s.split_once(':').ok_or_else(|| {
        ConfigError::new(
            "--stage",
            format!("'{s}' has no ':'"),
            "write DURATION:TARGET, e.g. --stage 30s:100",
        )
    })?;
    crate::duration::parse(d, "--stage")?;
    let target: f64 = t.trim().parse().map_err(|_| {
        ConfigError::new(
            "--stage",
            format!("target '{t}' is not a number"),
            "write DURATION:TARGET, e.g. --stage 30s:100",
        )
    })?;
    Ok(StageSpec {
        duration: d.trim().to_string(),
        target,
    })
}

/// Applies k6-style CLI overrides (`--vus`, `--duration`, `--iterations`, `--stage`, `--rate`)
/// on top of file options. Any of them replaces the scenarios, as in k6.
pub(crate) fn apply_overrides(mut o: Options, a: &RunArgs) -> Result<Options, ConfigError> {
    // validate flags here so errors name the flag, not the scenario field it becomes
    if let Some(d) = &a.duration
        && crate::duration::parse(d, "--duration")?.is_zero()
    {
        return Err(ConfigError::new(
            "--duration",
            format!("'{d}' is 0 s: the run would measure nothing"),
            "give a positive duration, e.g. --duration 30s",
        ));
    }
    if a.vus == Some(0) {
        return Err(ConfigError::new(
            "--vus",
            "0 VUs",
            "give at least 1, e.g. --vus 10",
        ));
    }
    if a.iterations == Some(0) {
        return Err(ConfigError::new(
            "--iterations",
            "0 iterations",
            "give at least 1, or omit it",
        ));
    }
    let stages = a
        .stages
        .iter()
        .map(|s| parse_stage(s))
        .collect::<Result<Vec<_>, _>>()?;
    if !stages.is_empty()
        && stages
            .iter()
            .all(|s| crate::duration::parse(&s.duration, "--stage").is_ok_and(|d| d.is_zero()))
    {
        return Err(ConfigError::new(
            "--stage",
            "the stages add up to 0 s: the run would measure nothing",
            "give at least one stage a positive duration, e.g. --stage 30s:10",
        ));
    }
    if let Some(rate) = a.rate {
        if rate <= 0.0 || !rate.is_finite() {
            return Err(ConfigError::new(
                "--rate",
                format!("{rate} is not a positive rate"),
                "give iterations per second, e.g. --rate 5000",
            ));
        }
        let duration = a.duration.clone().or(o.duration.clone()).ok_or_else(|| {
            ConfigError::new(
                "--duration",
                "--rate needs a duration",
                "add --duration 30s",
            )
        })?;
        let pre = a.vus.unwrap_or(100);
        let spec = options::ScenarioSpec {
            executor: "constant-arrival-rate".into(),
            rate: Some(rate),
            time_unit: Some("1s".into()),
            duration: Some(duration),
            pre_allocated_vus: Some(pre),
            max_vus: Some(a.max_vus.unwrap_or(pre).max(pre)),
            ..Default::default()
        };
        o.scenarios = Some([("default".to_string(), spec)].into_iter().collect());
        return Ok(o);
    }
    if !stages.is_empty() {
        o.scenarios = None;
        o.stages = Some(stages);
        o.iterations = None;
        o.duration = None;
        if a.vus.is_some() {
            o.vus = a.vus;
        }
        return Ok(o);
    }
    if a.vus.is_some() || a.duration.is_some() || a.iterations.is_some() {
        o.scenarios = None;
        o.stages = None;
        if a.vus.is_some() {
            o.vus = a.vus;
        }
        if a.duration.is_some() {
            o.duration = a.duration.clone();
        }
        if a.iterations.is_some() {
            o.iterations = a.iterations;
        }
    }
    Ok(o)
}

/// Builds thresholds from options plus `--threshold` flags.
pub(crate) fn build_thresholds(
    o: &Options,
    extra: &[String],
    registry: &Registry,
) -> Result<Vec<Threshold>, ConfigError> {
    let mut out = Vec::new();
    for (metric, list) in &o.thresholds {
        for spec in list.specs() {
            out.push(thresholds::build(metric, &spec, registry)?);
        }
    }
    for e in extra {
        let (metric, expr) = e.split_once('=').ok_or_else(|| {
            ConfigError::new(
                "--threshold",
                format!("'{e}' has no '='"),
                "write METRIC=EXPR, e.g. --threshold 'http_req_duration=p(99)<250'",
            )
        })?;
        out.push(thresholds::build(
            metric.trim(),
            &ThresholdSpec::Plain(expr.trim().to_string()),
            registry,
        )?);
    }
    Ok(out)
}
