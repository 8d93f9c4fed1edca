//! Configuration: a k6 `options` object (JSON, YAML or TOML) plus command-line overrides,
//! validated into typed [`crate::plan::Scenario`]s and thresholds. Every rejection names the
//! field and the fix.
//!
//! One file: the options schema and its validation are one job (about 520 lines), with their
//! unit tests below.

use crate::duration;
use crate::error::ConfigError;
use crate::plan::{Executor, Scenario, Stage};
use crate::thresholds::ThresholdSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Parses a byte size: `4MiB`, `512KiB`, `1MB`, `1000`, `0` (units B, KB/MB/GB = 1000^n,
/// KiB/MiB/GiB = 1024^n, case-insensitive).
pub(crate) fn parse_size(s: &str, field: &str) -> Result<usize, ConfigError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        ConfigError::new(
            field,
            format!("'{s}' is not a size"),
            "write a size like 4MiB, 512KiB, 1MB or 0",
        )
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > (1u64 << 40) as f64 {
        return Err(ConfigError::new(
            field,
            format!("'{s}' is out of range"),
            "give at most 1TiB (bodies are kept in memory per VU)",
        ));
    }
    Ok(bytes as usize)
}

/// A k6 stage: `{duration, target}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageSpec {
    pub duration: String,
    pub target: f64,
}

/// One k6 scenario as written in `options.scenarios`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioSpec {
    pub executor: String,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub graceful_stop: Option<String>,
    #[serde(default)]
    pub graceful_ramp_down: Option<String>,
    #[serde(default)]
    pub exec: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub vus: Option<u64>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub iterations: Option<u64>,
    #[serde(default)]
    pub max_duration: Option<String>,
    #[serde(default, rename = "startVUs")]
    pub start_vus: Option<u64>,
    #[serde(default)]
    pub stages: Option<Vec<StageSpec>>,
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub start_rate: Option<f64>,
    #[serde(default)]
    pub time_unit: Option<String>,
    #[serde(default, rename = "preAllocatedVUs")]
    pub pre_allocated_vus: Option<u64>,
    #[serde(default, rename = "maxVUs")]
    pub max_vus: Option<u64>,
}

/// Thresholds for one metric: one expression or a list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ThresholdList {
    One(ThresholdSpec),
    Many(Vec<ThresholdSpec>),
}

impl ThresholdList {
    pub fn specs(&self) -> Vec<ThresholdSpec> {
        match self {
            ThresholdList::One(s) => vec![s.clone()],
            ThresholdList::Many(v) => v.clone(),
        }
    }
}

/// The k6 `options` object, as pasted by a k6 user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    #[serde(default)]
    pub scenarios: Option<BTreeMap<String, ScenarioSpec>>,
    #[serde(default)]
    pub stages: Option<Vec<StageSpec>>,
    #[serde(default)]
    pub vus: Option<u64>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub iterations: Option<u64>,
    #[serde(default)]
    pub thresholds: BTreeMap<String, ThresholdList>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// k6's `maxRedirects` (default 10).
    #[serde(default)]
    pub max_redirects: Option<u32>,
    /// k6's `discardResponseBodies`: keep no body (as `--response-body-limit 0`).
    #[serde(default)]
    pub discard_response_bodies: Option<bool>,
    /// Keys k6 knows that novaload ignores (reported as warnings, never silently).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Options {
    /// Reads a scenario file; the format follows the extension (.json, .yaml/.yml, .toml).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let field = format!("--scenario {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                &field,
                format!("cannot read the file: {e}"),
                "check the path and permissions",
            )
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        // An empty file parses as "no options" in YAML and TOML, which would run k6's default
        // of one iteration and pass: a truncated or wrong file must not look like a test.
        let meaningful = text.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#') && !l.starts_with("//")
        });
        if !meaningful {
            return Err(ConfigError::new(
                field,
                "the file is empty (or holds only comments)",
                "give a k6 options object, e.g. {\"vus\": 10, \"duration\": \"30s\"} or a scenarios map",
            ));
        }
        let parsed: Result<Options, String> = match ext.as_str() {
            "json" => serde_json::from_str(&text).map_err(|e| e.to_string()),
            "yaml" | "yml" => serde_yaml::from_str(&text).map_err(|e| e.to_string()),
            "toml" => toml::from_str(&text).map_err(|e| e.to_string()),
            _ => {
                return Err(ConfigError::new(
                    field,
                    format!("unknown file extension '.{ext}'"),
                    "name the file .json, .yaml, .yml or .toml",
                ));
            }
        };
        parsed.map_err(|e| ConfigError::new(field, e, "the file must hold a k6 options object (scenarios, stages, thresholds, vus, duration, iterations, tags)"))
    }

    /// Keys that were present but are not used by novaload.
    pub fn ignored_keys(&self) -> Vec<String> {
        self.other.keys().cloned().collect()
    }

    /// Resolves the options into scenarios using k6's shortcut rules.
    pub fn scenarios(&self) -> Result<Vec<Scenario>, ConfigError> {
        if let Some(map) = &self.scenarios {
            if map.is_empty() {
                return Err(ConfigError::new(
                    "scenarios",
                    "no scenario defined",
                    "define at least one scenario or use stages/vus/duration",
                ));
            }
            return map
                .iter()
                .map(|(name, spec)| scenario_from_spec(name, spec))
                .collect();
        }
        let mut spec = ScenarioSpec::default();
        if let Some(stages) = &self.stages {
            spec.executor = "ramping-vus".into();
            spec.start_vus = Some(self.vus.unwrap_or(1));
            spec.stages = Some(stages.clone());
        } else if let Some(iterations) = self.iterations {
            spec.executor = "shared-iterations".into();
            spec.vus = Some(self.vus.unwrap_or(1));
            spec.iterations = Some(iterations);
            if let Some(d) = &self.duration {
                spec.max_duration = Some(d.clone());
            }
        } else if let Some(d) = &self.duration {
            spec.executor = "constant-vus".into();
            spec.vus = Some(self.vus.unwrap_or(1));
            spec.duration = Some(d.clone());
        } else {
            spec.executor = "per-vu-iterations".into();
            spec.vus = Some(self.vus.unwrap_or(1));
            spec.iterations = Some(1);
        }
        Ok(vec![scenario_from_spec("default", &spec)?])
    }
}

fn opt_duration(
    v: &Option<String>,
    field: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        Some(s) => duration::parse(s, field),
        None => Ok(default),
    }
}

fn require<T: Copy>(v: Option<T>, field: &str, what: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| ConfigError::new(field, format!("missing {what}"), format!("set {field}")))
}

fn stages(v: &Option<Vec<StageSpec>>, field: &str) -> Result<Vec<Stage>, ConfigError> {
    let list = v.as_ref().ok_or_else(|| {
        ConfigError::new(
            field,
            "missing stages",
            format!("set {field} to a list of {{duration, target}}"),
        )
    })?;
    if list.is_empty() {
        return Err(ConfigError::new(
            field,
            "no stages",
            "give at least one {duration, target} stage",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let f = format!("{field}[{i}]");
            if s.target < 0.0 || !s.target.is_finite() {
                return Err(ConfigError::new(
                    format!("{f}.target"),
                    format!("{} is negative", s.target),
                    "targets must be >= 0",
                ));
            }
            Ok(Stage {
                duration: duration::parse(&s.duration, &format!("{f}.duration"))?,
                target: s.target,
            })
        })
        .collect()
}

const EXECUTORS: &str = "ramping-vus, constant-vus, per-vu-iterations, shared-iterations, constant-arrival-rate, ramping-arrival-rate";

/// Validates one scenario spec into a typed scenario.
pub(crate) fn scenario_from_spec(name: &str, s: &ScenarioSpec) -> Result<Scenario, ConfigError> {
    let f = |k: &str| format!("scenarios.{name}.{k}");
    let start_time = opt_duration(&s.start_time, &f("startTime"), Duration::ZERO)?;
    let graceful_stop = opt_duration(
        &s.graceful_stop,
        &f("gracefulStop"),
        Duration::from_secs(30),
    )?;
    let positive = |v: u64, k: &str| -> Result<u64, ConfigError> {
        if v == 0 {
            Err(ConfigError::new(
                f(k),
                "must be at least 1",
                format!("set {} to 1 or more", f(k)),
            ))
        } else {
            Ok(v)
        }
    };
    let executor = match s.executor.as_str() {
        "ramping-vus" => Executor::RampingVus {
            start_vus: s.start_vus.unwrap_or(1),
            stages: stages(&s.stages, &f("stages"))?,
            graceful_ramp_down: opt_duration(
                &s.graceful_ramp_down,
                &f("gracefulRampDown"),
                Duration::from_secs(30),
            )?,
        },
        "constant-vus" => Executor::ConstantVus {
            vus: positive(s.vus.unwrap_or(1), "vus")?,
            duration: duration::parse(
                s.duration.as_deref().ok_or_else(|| {
                    ConfigError::new(
                        f("duration"),
                        "missing duration",
                        format!("set {}", f("duration")),
                    )
                })?,
                &f("duration"),
            )?,
        },
        "per-vu-iterations" => Executor::PerVuIterations {
            vus: positive(s.vus.unwrap_or(1), "vus")?,
            iterations: positive(s.iterations.unwrap_or(1), "iterations")?,
            max_duration: opt_duration(
                &s.max_duration,
                &f("maxDuration"),
                Duration::from_secs(600),
            )?,
        },
        "shared-iterations" => {
            let vus = positive(s.vus.unwrap_or(1), "vus")?;
            let iterations = positive(s.iterations.unwrap_or(1), "iterations")?;
            if iterations < vus {
                return Err(ConfigError::new(
                    f("iterations"),
                    format!("{iterations} iterations for {vus} VUs"),
                    "iterations must be >= vus (k6 rule)",
                ));
            }
            Executor::SharedIterations {
                vus,
                iterations,
                max_duration: opt_duration(
                    &s.max_duration,
                    &f("maxDuration"),
                    Duration::from_secs(600),
                )?,
            }
        }
        "constant-arrival-rate" => {
            let rate = require(s.rate, &f("rate"), "rate")?;
            if rate <= 0.0 || !rate.is_finite() {
                return Err(ConfigError::new(
                    f("rate"),
                    format!("{rate} is not a positive rate"),
                    "set rate to iterations per timeUnit, > 0",
                ));
            }
            let pre = require(
                s.pre_allocated_vus,
                &f("preAllocatedVUs"),
                "preAllocatedVUs",
            )?;
            let pre = positive(pre, "preAllocatedVUs")?;
            Executor::ConstantArrivalRate {
                rate,
                time_unit: opt_duration(&s.time_unit, &f("timeUnit"), Duration::from_secs(1))?,
                duration: duration::parse(
                    s.duration.as_deref().ok_or_else(|| {
                        ConfigError::new(
                            f("duration"),
                            "missing duration",
                            format!("set {}", f("duration")),
                        )
                    })?,
                    &f("duration"),
                )?,
                pre_allocated_vus: pre,
                max_vus: s.max_vus.unwrap_or(pre).max(pre),
            }
        }
        "ramping-arrival-rate" => {
            let pre = require(
                s.pre_allocated_vus,
                &f("preAllocatedVUs"),
                "preAllocatedVUs",
            )?;
            let pre = positive(pre, "preAllocatedVUs")?;
            Executor::RampingArrivalRate {
                start_rate: s.start_rate.unwrap_or(0.0),
                time_unit: opt_duration(&s.time_unit, &f("timeUnit"), Duration::from_secs(1))?,
                stages: stages(&s.stages, &f("stages"))?,
                pre_allocated_vus: pre,
                max_vus: s.max_vus.unwrap_or(pre).max(pre),
            }
        }
        "externally-controlled" => {
            return Err(ConfigError::new(
                f("executor"),
                "externally-controlled is not supported",
                format!("use one of: {EXECUTORS}"),
            ));
        }
        other => {
            return Err(ConfigError::new(
                f("executor"),
                format!("unknown executor '{other}'"),
                format!("use one of: {EXECUTORS}"),
            ));
        }
    };
    reject_zero_length(&executor, &f)?;
    if let Executor::ConstantArrivalRate { time_unit, .. }
    | Executor::RampingArrivalRate { time_unit, .. } = &executor
        && time_unit.is_zero()
    {
        return Err(ConfigError::new(
            f("timeUnit"),
            "timeUnit is zero",
            "use a positive timeUnit like 1s",
        ));
    }
    Ok(Scenario {
        name: name.into(),
        start_time,
        graceful_stop,
        executor,
        tags: s.tags.clone(),
    })
}

/// A scenario whose schedule lasts no time would run nothing (or one iteration) and pass:
/// refuse it, naming the field that made it zero.
fn reject_zero_length(executor: &Executor, f: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let (field, fix) = match executor {
        Executor::ConstantVus { duration, .. } | Executor::ConstantArrivalRate { duration, .. }
            if duration.is_zero() =>
        {
            ("duration", "give a positive duration, e.g. 30s")
        }
        Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. }
            if stages.iter().all(|s| s.duration.is_zero()) =>
        {
            (
                "stages",
                "give at least one stage a positive duration, e.g. {duration: 30s, target: 10}",
            )
        }
        Executor::PerVuIterations { max_duration, .. }
        | Executor::SharedIterations { max_duration, .. }
            if max_duration.is_zero() =>
        {
            (
                "maxDuration",
                "give a positive maxDuration, or omit it (10m)",
            )
        }
        _ => return Ok(()),
    };
    Err(ConfigError::new(f(field), "the schedule lasts 0 s", fix))
}

/// Renders a scenario back to a k6 spec (for the summary's metadata).
pub(crate) fn describe(s: &Scenario) -> String {
    match &s.executor {
        Executor::RampingVus {
            start_vus, stages, ..
        } => format!(
            "ramping-vus, startVUs {start_vus}, stages {}",
            stages
                .iter()
                .map(|st| format!("{}→{}", duration::format(st.duration), st.target))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Executor::ConstantVus { vus, duration } => {
            format!(
                "constant-vus, {vus} VUs for {}",
                duration::format(*duration)
            )
        }
        Executor::PerVuIterations {
            vus, iterations, ..
        } => format!("per-vu-iterations, {vus} VUs × {iterations} iterations"),
        Executor::SharedIterations {
            vus, iterations, ..
        } => format!("shared-iterations, {iterations} iterations over {vus} VUs"),
        Executor::ConstantArrivalRate {
            rate,
            time_unit,
            duration,
            pre_allocated_vus,
            max_vus,
        } => format!(
            "constant-arrival-rate, {rate}/{} for {}, VUs {pre_allocated_vus}..{max_vus}",
            duration::format(*time_unit),
            duration::format(*duration)
        ),
        Executor::RampingArrivalRate {
            start_rate,
            time_unit,
            stages,
            pre_allocated_vus,
            max_vus,
        } => format!(
            "ramping-arrival-rate from {start_rate}/{}, stages {}, VUs {pre_allocated_vus}..{max_vus}",
            duration::format(*time_unit),
            stages
                .iter()
                .map(|st| format!("{}→{}", duration::format(st.duration), st.target))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_spike_example_parses_in_all_three_formats() {
        let json = r#"{"scenarios":{"spike":{"executor":"ramping-vus","startVUs":0,
            "stages":[{"duration":"10s","target":100},{"duration":"1m","target":10000},{"duration":"10s","target":0}]}},
            "thresholds":{"http_req_duration":["p(95)<500"],"http_req_failed":"rate<0.01"}}"#;
        let yaml = "scenarios:\n  spike:\n    executor: ramping-vus\n    startVUs: 0\n    stages:\n      - {duration: 10s, target: 100}\n      - {duration: 1m, target: 10000}\n      - {duration: 10s, target: 0}\nthresholds:\n  http_req_duration: ['p(95)<500']\n  http_req_failed: 'rate<0.01'\n";
        let toml = "[scenarios.spike]\nexecutor = \"ramping-vus\"\nstartVUs = 0\nstages = [{duration = \"10s\", target = 100}, {duration = \"1m\", target = 10000}, {duration = \"10s\", target = 0}]\n[thresholds]\nhttp_req_duration = [\"p(95)<500\"]\nhttp_req_failed = \"rate<0.01\"\n";
        let dir = tempfile::tempdir().unwrap();
        let mut parsed = Vec::new();
        for (ext, text) in [("json", json), ("yaml", yaml), ("toml", toml)] {
            let p = dir.path().join(format!("spike.{ext}"));
            std::fs::write(&p, text).unwrap();
            parsed.push(Options::from_file(&p).unwrap());
        }
        assert_eq!(parsed[0], parsed[1]);
        assert_eq!(parsed[1], parsed[2]);
        let sc = parsed[0].scenarios().unwrap();
        assert_eq!(sc.len(), 1);
        match &sc[0].executor {
            Executor::RampingVus {
                start_vus, stages, ..
            } => {
                assert_eq!(*start_vus, 0);
                assert_eq!(stages.len(), 3);
                assert_eq!(stages[1].target, 10000.0);
                assert_eq!(stages[1].duration, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shortcuts_resolve_like_k6() {
        let o = Options {
            vus: Some(5),
            duration: Some("10s".into()),
            ..Options::default()
        };
        assert!(matches!(
            o.scenarios().unwrap()[0].executor,
            Executor::ConstantVus { vus: 5, .. }
        ));
        let o = Options {
            vus: Some(2),
            iterations: Some(10),
            ..Options::default()
        };
        assert!(matches!(
            o.scenarios().unwrap()[0].executor,
            Executor::SharedIterations {
                vus: 2,
                iterations: 10,
                ..
            }
        ));
        let o = Options::default();
        assert!(matches!(
            o.scenarios().unwrap()[0].executor,
            Executor::PerVuIterations {
                vus: 1,
                iterations: 1,
                ..
            }
        ));
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("4MiB", "f").unwrap(), 4 * 1024 * 1024);
        assert_eq!(parse_size("512 KiB", "f").unwrap(), 512 * 1024);
        assert_eq!(parse_size("1MB", "f").unwrap(), 1_000_000);
        assert_eq!(parse_size("0", "f").unwrap(), 0);
        assert_eq!(parse_size("10kb", "f").unwrap(), 10_000);
        for bad in ["", "MiB", "4 parsecs", "-1", "1e999"] {
            assert_eq!(
                parse_size(bad, "--response-body-limit").unwrap_err().field,
                "--response-body-limit",
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_files_and_zero_length_schedules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("e.yaml", "# nothing here\n"),
            ("e.toml", ""),
            ("e.json", "  \n"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            let e = Options::from_file(&p).unwrap_err();
            assert!(e.problem.contains("empty"), "{name}: {e}");
        }
        let zero = |spec: ScenarioSpec| scenario_from_spec("s", &spec).unwrap_err().field;
        assert_eq!(
            zero(ScenarioSpec {
                executor: "constant-vus".into(),
                duration: Some("0s".into()),
                ..Default::default()
            }),
            "scenarios.s.duration"
        );
        assert_eq!(
            zero(ScenarioSpec {
                executor: "ramping-vus".into(),
                stages: Some(vec![StageSpec {
                    duration: "0s".into(),
                    target: 10.0
                }]),
                ..Default::default()
            }),
            "scenarios.s.stages"
        );
    }

    #[test]
    fn bad_scenarios_name_the_field() {
        let spec = ScenarioSpec {
            executor: "warp-drive".into(),
            ..ScenarioSpec::default()
        };
        let e = scenario_from_spec("s1", &spec).unwrap_err();
        assert_eq!(e.field, "scenarios.s1.executor");
        assert!(e.fix.contains("ramping-vus"));
        let spec = ScenarioSpec {
            executor: "constant-arrival-rate".into(),
            rate: Some(10.0),
            duration: Some("5s".into()),
            ..ScenarioSpec::default()
        };
        assert_eq!(
            scenario_from_spec("s2", &spec).unwrap_err().field,
            "scenarios.s2.preAllocatedVUs"
        );
        let spec = ScenarioSpec {
            executor: "constant-vus".into(),
            vus: Some(2),
            duration: Some("5 lightyears".into()),
            ..ScenarioSpec::default()
        };
        assert_eq!(
            scenario_from_spec("s3", &spec).unwrap_err().field,
            "scenarios.s3.duration"
        );
    }
}
