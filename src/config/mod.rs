//! Configuration: everything a run needs, resolved once, before anything starts.
//!
//! `novaload run` flags ([`RunArgs`], environment applied by clap) + the `OTEL_*` /
//! `JOB_COMPLETION_INDEX` environment + the `--scenario` file + the named profile →
//! [`resolve`] → a validated [`RunConfig`]: typed settings (run id, segment, start time,
//! client limits, telemetry, results folder, local workers) and the [`TestPlan`]s. The session
//! only runs it. Every rejection is a [`ConfigError`] naming the field and the fix.
//!
//! - `options`: k6 `options` objects (scenario files) → typed scenarios and thresholds.
//! - [`profile`]: the named stage sets (smoke, full, 1k, ...) and their targets.
//! - `overrides`: the flags that replace the scenarios (`--vus`, `--stage`, ...) or add thresholds.
//! - [`plans`]: one [`TestPlan`] per test: the workload, its scenarios, thresholds and notes.
//! - [`limits`]: what one process can hold (VUs, memory) and when local workers are needed.
//!
//! A local worker (`--local-workers`) receives the parent's [`RunConfig`] as JSON on stdin:
//! its inputs (`args`, `env`, the scenario file's contents) with the worker's own segment,
//! results folder, run id and start time set, and resolves the rest itself with the same
//! code (`RunConfig::from_worker_json`); no argv is edited, so a new flag reaches workers
//! without anyone listing it.

pub mod limits;
mod options;
mod overrides;
pub mod plans;
pub mod profile;

pub use options::*;
pub use plans::{TestPlan, WorkloadKind};

use crate::cli::{RunArgs, TestName};
use crate::error::ConfigError;
use crate::plan::segment::SegmentPlan;
use crate::telemetry::TelemetryConfig;
use crate::workload::endpoints::Endpoints;
use crate::workload::{ClientSettings, TlsSettings};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A run, resolved and validated: what a session runs.
///
/// A local worker receives only the inputs (`args`, `env`, `scenario_file`: see
/// [`WorkerConfig`]); `resolved` is derived from them by the same code in the parent and in a
/// worker.
pub struct RunConfig {
    /// The flags as given (environment applied), with the run id filled in.
    pub args: RunArgs,
    /// The environment variables novaload reads itself, read once.
    pub env: RunEnv,
    /// The `--scenario` file's contents, read once (a worker does not read it again).
    pub scenario_file: Option<Options>,
    pub resolved: Resolved,
}

/// Environment variables that are not flags (clap reads those), captured by [`resolve`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunEnv {
    pub otel_traces_sampler: Option<String>,
    pub otel_traces_sampler_arg: Option<String>,
    pub otel_resource_attributes: Option<String>,
    /// Kubernetes Indexed Jobs: this pod's 0-based index (`--segment-count`).
    pub job_completion_index: Option<String>,
}

impl RunEnv {
    fn read() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        Self {
            otel_traces_sampler: var("OTEL_TRACES_SAMPLER"),
            otel_traces_sampler_arg: var("OTEL_TRACES_SAMPLER_ARG"),
            otel_resource_attributes: var("OTEL_RESOURCE_ATTRIBUTES"),
            job_completion_index: var("JOB_COMPLETION_INDEX"),
        }
    }
}

/// Where the results go.
#[derive(Debug, Clone)]
pub enum ResultsDir {
    /// `--out BASE`: a new `BASE/<UTC timestamp>/`.
    Under(PathBuf),
    /// `--results-dir DIR`: exactly this folder, which must not hold results yet.
    Exact(PathBuf),
}

impl ResultsDir {
    /// Creates the folder (the first file a run writes) and returns its path.
    pub(crate) fn create(&self) -> Result<PathBuf, ConfigError> {
        match self {
            ResultsDir::Exact(d) => crate::results::exact_results_dir(d),
            ResultsDir::Under(out) => crate::results::create_results_dir(out),
        }
    }
}

/// The built-in target a run starts when no URL is given.
#[derive(Debug, Clone)]
pub struct BuiltinTarget {
    /// VMs seeded: the largest the chosen profile asks for.
    pub seed_vms: u64,
    /// Mean simulated migration time (the `full` profile's is longer; see [`profile`]).
    pub migration_time: Option<Duration>,
    /// Most WebSocket connections the run holds at once (the target's processes follow it).
    pub ws_peak: u64,
}

/// Everything [`RunConfig`] derives from its inputs.
pub struct Resolved {
    pub run_id: String,
    /// The run id was generated, not given (the summary says so: shards need one given).
    pub run_id_generated: bool,
    /// The profile's name, `custom` when none was given.
    pub profile: String,
    pub segment: Option<Arc<SegmentPlan>>,
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Endpoints given by flags/env; None with `builtin_target` (or in quick mode / db direct).
    pub endpoints: Option<Endpoints>,
    pub builtin_target: Option<BuiltinTarget>,
    pub client: ClientSettings,
    pub telemetry: TelemetryConfig,
    /// Live telemetry is on: `/metrics` or OTLP is set and `--no-telemetry` is not.
    pub telemetry_on: bool,
    pub results: ResultsDir,
    /// Run the tests side by side (`--parallel`, and always for the smoke profile).
    pub parallel: bool,
    pub quiet: bool,
    pub write_html: bool,
    pub write_junit: bool,
    /// `--vu-threads` (0: the shared runtime).
    pub vu_threads: usize,
    /// Run as this many local child processes (`--local-workers`, or chosen for a ws peak
    /// above one process's open files). None: in this process.
    pub local_workers: Option<u64>,
    /// The tests, in order, built once. Against the given endpoints, or against a placeholder
    /// when the built-in target is started: the session binds them to its URL with
    /// `RunConfig::bind_plans`.
    pub plans: Vec<TestPlan>,
}

/// Resolves and validates a `novaload run`: reads the environment and the scenario file once,
/// builds every test plan, and checks the run fits this machine. Nothing is started, no file
/// is written.
pub fn resolve(mut args: RunArgs) -> Result<RunConfig, ConfigError> {
    let scenario_file = match &args.scenario {
        Some(p) => Some(Options::from_file(p)?),
        None => None,
    };
    if args.run_id.as_deref().is_none_or(str::is_empty) {
        args.run_id = None;
    }
    let env = RunEnv::read();
    let resolved = derive(&mut args, &env, scenario_file.as_ref())?;
    let cfg = RunConfig {
        args,
        env,
        scenario_file,
        resolved,
    };
    limits::check_capacity(&cfg)?;
    Ok(cfg)
}

impl RunConfig {
    /// A worker's configuration, as the local-workers runner sends it: the parent's inputs
    /// with the worker's own segment, run id, results folder, start time and endpoints.
    pub(crate) fn to_worker_json(&self, worker: WorkerOverrides) -> anyhow::Result<String> {
        let mut args = self.args.clone();
        args.segment = Some(worker.segment);
        args.segment_count = None;
        args.execution_segment = None;
        args.execution_segment_sequence = None;
        args.local_workers = None;
        args.run_id = Some(self.resolved.run_id.clone());
        args.results_dir = Some(worker.results_dir);
        args.start_at = Some(worker.start_at);
        args.quiet = true;
        args.metrics_listen = worker.metrics_listen;
        if let Some(ep) = worker.endpoints {
            args.api_url = Some(ep.api_url.clone());
            args.ws_url = Some(ep.ws_url.clone());
            args.dwcp_ws_url = Some(ep.dwcp_ws_url.clone());
        }
        let worker_cfg = WorkerConfig {
            args,
            env: self.env.clone(),
            scenario_file: self.scenario_file.clone(),
            run_id_generated: self.resolved.run_id_generated,
        };
        Ok(serde_json::to_string(&worker_cfg)?)
    }

    /// The configuration a local worker received on stdin, resolved as its parent's was.
    pub(crate) fn from_worker_json(json: &str) -> anyhow::Result<RunConfig> {
        let mut w: WorkerConfig = serde_json::from_str(json)?;
        let mut resolved = derive(&mut w.args, &w.env, w.scenario_file.as_ref())?;
        resolved.run_id_generated = w.run_id_generated;
        Ok(RunConfig {
            args: w.args,
            env: w.env,
            scenario_file: w.scenario_file,
            resolved,
        })
    }

    /// Points the plans at the built-in target once it listens (its port is only known
    /// then). The plans were built and validated once, in [`resolve`], against a placeholder
    /// URL; binding only swaps the URL inside each workload.
    pub(crate) fn bind_plans(&mut self, endpoints: &Endpoints) {
        for p in &mut self.resolved.plans {
            p.bind(endpoints);
        }
    }
}

/// Derives every resolved field from the inputs, and fills in the run id (generated when none
/// was given) so that a worker carries the parent's.
fn derive(
    args: &mut RunArgs,
    env: &RunEnv,
    file: Option<&Options>,
) -> Result<Resolved, ConfigError> {
    let a = &*args;
    register_secrets(a);
    let segment = segment_from_args(a, env)?.map(Arc::new);
    let start_at = parse_start_at(a.start_at.as_deref())?;
    let endpoints = endpoints_from_args(a)?;
    let plans = plans::build(a, file, endpoints.as_ref())?;
    let db_direct_only = a.test == Some(TestName::Db) && plans::db_direct(a);
    let ws_peak = limits::ws_peak_connections(a, file);
    let builtin_target =
        (a.url.is_none() && endpoints.is_none() && !db_direct_only).then(|| BuiltinTarget {
            seed_vms: plan_seed(a),
            migration_time: (a.profile.as_deref() == Some("full"))
                .then_some(profile::FULL_PROFILE_MIGRATION_TIME),
            ws_peak: ws_peak.unwrap_or(0),
        });
    let needs_tls = plans.iter().any(|p| p.target.starts_with("https"));
    let tls = if needs_tls || a.cacert.is_some() || a.insecure_skip_tls_verify {
        Some(
            TlsSettings::new(a.cacert.as_deref(), a.insecure_skip_tls_verify).map_err(|e| {
                ConfigError::new(
                    "--cacert",
                    format!("{e:#}"),
                    "give a readable PEM file (docs/TROUBLESHOOTING.md#tls-errors)",
                )
            })?,
        )
    } else {
        None
    };
    let client = ClientSettings {
        tls,
        request_timeout: crate::duration::parse(&a.timeout, "--timeout")?,
        ..client_limits(a, file)?
    };
    let run_id_generated = a.run_id.is_none();
    let run_id = a
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    // the run id is an input from here on: a worker must carry the parent's
    args.run_id = Some(run_id.clone());
    let a = &*args;
    let profile = a.profile.clone().unwrap_or_else(|| "custom".into());
    let mut telemetry = telemetry_config(a, env, &run_id, &profile)?;
    telemetry.segment = segment
        .as_ref()
        .map(|s| s.label.clone())
        .unwrap_or_default();
    // Live series nobody can read (no /metrics, no OTLP) would cost every request a few
    // hundred nanoseconds for nothing: the summary comes from the recorder, not from them.
    let observed = telemetry.metrics_listen.is_some() || telemetry.otlp_endpoint.is_some();
    let results = match &a.results_dir {
        Some(d) => ResultsDir::Exact(d.clone()),
        None => ResultsDir::Under(a.out.clone()),
    };
    let parallel =
        plans.len() > 1 && (a.parallel || a.profile.as_deref().unwrap_or("smoke") == "smoke");
    let local_workers = limits::local_workers(a, ws_peak, &segment)?;
    Ok(Resolved {
        run_id,
        run_id_generated,
        profile,
        segment,
        start_at,
        endpoints,
        builtin_target,
        client,
        telemetry,
        telemetry_on: observed && !a.no_telemetry,
        results,
        parallel,
        quiet: a.quiet,
        write_html: !a.no_html,
        write_junit: !a.no_junit,
        vu_threads: a.vu_threads.map_or(0, usize::from),
        local_workers,
        plans,
    })
}

/// What a local worker gets that its parent's configuration does not say.
pub(crate) struct WorkerOverrides {
    /// `i/N`.
    pub segment: String,
    pub results_dir: PathBuf,
    /// RFC 3339.
    pub start_at: String,
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The parent's built-in target, shared by every worker.
    pub endpoints: Option<Endpoints>,
}

/// What a local worker receives on stdin: its parent's inputs, with its own segment, results
/// folder, start time and endpoints set in `args`.
#[derive(Serialize, Deserialize)]
struct WorkerConfig {
    args: RunArgs,
    env: RunEnv,
    scenario_file: Option<Options>,
    run_id_generated: bool,
}

/// This process's segment from `--segment i/N`, `--segment-count N` + `JOB_COMPLETION_INDEX`,
/// or k6's `--execution-segment` (+ `--execution-segment-sequence`).
pub(crate) fn segment_from_args(
    a: &RunArgs,
    env: &RunEnv,
) -> Result<Option<SegmentPlan>, ConfigError> {
    let fix = "write --segment i/N (1-based, e.g. --segment 2/4), or k6's --execution-segment 1/4:2/4 with --execution-segment-sequence 0,1/4,2/4,3/4,1";
    let from_index = match a.segment_count {
        Some(n) => {
            let v = env.job_completion_index.as_deref().ok_or_else(|| {
                ConfigError::new(
                    "--segment-count",
                    "needs the environment variable JOB_COMPLETION_INDEX (set by Kubernetes Indexed Jobs)",
                    "run it in an Indexed Job, or use --segment i/N",
                )
            })?;
            let i: u64 = v.trim().parse().map_err(|_| {
                ConfigError::new(
                    "JOB_COMPLETION_INDEX",
                    format!("'{v}' is not an index"),
                    "set a 0-based index",
                )
            })?;
            Some(format!("{}/{n}", i + 1))
        }
        None => None,
    };
    let segment = from_index.as_deref().or(a.segment.as_deref());
    if a.local_workers.is_some() && (segment.is_some() || a.execution_segment.is_some()) {
        return Err(ConfigError::new(
            "--local-workers",
            "splits the whole run itself and cannot be combined with a segment",
            "drop --segment/--execution-segment, or drop --local-workers",
        ));
    }
    SegmentPlan::from_flags(
        segment,
        a.execution_segment.as_deref(),
        a.execution_segment_sequence.as_deref(),
    )
    .map_err(|e| ConfigError::new("--segment", e, fix))
}

/// How far in the past `--start-at` may be (clock skew between machines) before it is an error.
const START_AT_SLACK: Duration = Duration::from_secs(5);

/// Parses `--start-at`; rejects a malformed instant or one more than a few seconds past.
pub(crate) fn parse_start_at(
    s: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ConfigError> {
    let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let at = chrono::DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| {
            ConfigError::new(
                "--start-at",
                format!("'{s}' is not an RFC 3339 time ({e})"),
                "write e.g. --start-at 2025-06-01T12:00:00Z (or with an offset, +02:00)",
            )
        })?
        .with_timezone(&chrono::Utc);
    let late = chrono::Utc::now() - at;
    if late > chrono::Duration::from_std(START_AT_SLACK).expect("small") {
        return Err(ConfigError::new(
            "--start-at",
            format!("{s} is {}s in the past", late.num_seconds()),
            "pick a start time a little in the future (all shards must be started before it)",
        ));
    }
    Ok(Some(at))
}

/// Telemetry settings: flags over `OTEL_*` variables over defaults.
fn telemetry_config(
    a: &RunArgs,
    env: &RunEnv,
    run_id: &str,
    profile: &str,
) -> Result<TelemetryConfig, ConfigError> {
    let sample_ratio = match a.trace_sample_ratio {
        Some(r) => r,
        None => match &env.otel_traces_sampler_arg {
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new(
                    "OTEL_TRACES_SAMPLER_ARG",
                    format!("'{v}' is not a number"),
                    "set a ratio between 0 and 1",
                )
            })?,
            None => match env.otel_traces_sampler.as_deref() {
                Some("always_off") | Some("parentbased_always_off") => 0.0,
                _ => 1.0,
            },
        },
    };
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(ConfigError::new(
            "--trace-sample-ratio",
            format!("{sample_ratio} is outside 0..1"),
            "use a ratio between 0 and 1, e.g. 0.1",
        ));
    }
    if !matches!(a.otlp_protocol.as_str(), "grpc" | "http/protobuf") {
        return Err(ConfigError::new(
            "--otlp-protocol",
            format!("'{}' is not supported", a.otlp_protocol),
            "use grpc or http/protobuf",
        ));
    }
    let resource_attributes = env
        .otel_resource_attributes
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(TelemetryConfig {
        run_id: run_id.to_string(),
        profile: profile.to_string(),
        segment: String::new(),
        metrics_listen: a.metrics_listen,
        otlp_endpoint: a.otlp_endpoint.clone().filter(|e| !e.is_empty()),
        otlp_protocol: a.otlp_protocol.clone(),
        service_name: a.service_name.clone(),
        resource_attributes,
        sample_ratio,
        metrics_interval: Duration::from_secs(5),
        // spans need somewhere to go: without an OTLP endpoint they are not created at all
        traces: !a.no_traces && a.otlp_endpoint.as_deref().is_some_and(|e| !e.is_empty()),
        ..TelemetryConfig::default()
    })
}

/// Endpoints from flags/env, validated. None means: start the built-in target.
pub(crate) fn endpoints_from_args(a: &RunArgs) -> Result<Option<Endpoints>, ConfigError> {
    let Some(api) = a.api_url.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    for (field, v) in [
        ("--api-url", Some(api)),
        ("--ws-url", a.ws_url.as_deref()),
        ("--dwcp-ws-url", a.dwcp_ws_url.as_deref()),
    ] {
        if let Some(v) = v {
            let u = url::Url::parse(v).map_err(|e| {
                ConfigError::new(
                    field,
                    format!("'{v}' is not a URL ({e})"),
                    "give a full URL like http://novacron:8080 or ws://novacron:8080/ws",
                )
            })?;
            let ok = if field == "--api-url" {
                matches!(u.scheme(), "http" | "https")
            } else {
                matches!(u.scheme(), "ws" | "wss")
            };
            if !ok {
                return Err(ConfigError::new(
                    field,
                    format!("scheme '{}' does not fit", u.scheme()),
                    if field == "--api-url" {
                        "use http:// or https://"
                    } else {
                        "use ws:// or wss://"
                    },
                ));
            }
        }
    }
    Ok(Some(Endpoints::new(
        api,
        a.ws_url.as_deref(),
        a.dwcp_ws_url.as_deref(),
        a.token.as_deref(),
    )))
}

/// Redirects and body limit: flags win over the scenario file's `maxRedirects` and
/// `discardResponseBodies`, which win over k6's defaults.
fn client_limits(a: &RunArgs, file: Option<&Options>) -> Result<ClientSettings, ConfigError> {
    let none = Options::default();
    let file = file.unwrap_or(&none);
    let mut s = ClientSettings::default();
    if let Some(n) = a.max_redirects.or(file.max_redirects) {
        s.max_redirects = n;
    }
    if file.discard_response_bodies == Some(true) {
        s.response_body_limit = 0;
    }
    if let Some(limit) = &a.response_body_limit {
        s.response_body_limit = parse_size(limit, "--response-body-limit")?;
    }
    Ok(s)
}

/// Failure messages go into results: the token and database passwords must never be among
/// them, whatever a driver or server echoes back.
fn register_secrets(a: &RunArgs) {
    use crate::metrics::reasons::register_secret;
    if let Some(t) = &a.token {
        register_secret(t);
    }
    for u in [
        a.database_url.as_deref(),
        a.url.as_deref(),
        a.api_url.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(u) = url::Url::parse(u)
            && let Some(p) = u.password()
        {
            register_secret(p);
            // the client sends it decoded (Basic auth), so a server may echo it decoded
            let mut decoded = Vec::new();
            crate::net::http::percent_decode_into(p.as_bytes(), &mut decoded);
            if let Ok(decoded) = String::from_utf8(decoded) {
                register_secret(&decoded);
            }
        }
    }
}

/// Seeded VMs for the built-in target: the largest the chosen profile asks for.
fn plan_seed(a: &RunArgs) -> u64 {
    let p = a.profile.as_deref().unwrap_or("smoke");
    [TestName::Api, TestName::Db]
        .iter()
        .filter_map(|t| profile::plan(*t, p).ok())
        .map(|pp| pp.seed_vms)
        .max()
        .unwrap_or(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_at_rejects_garbage_and_the_past() {
        assert!(parse_start_at(Some("tomorrow")).is_err());
        let past = (chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc3339();
        let e = parse_start_at(Some(&past)).unwrap_err().to_string();
        assert!(e.contains("in the past"), "{e}");
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
        assert!(parse_start_at(Some(&soon)).unwrap().is_some());
        assert!(parse_start_at(None).unwrap().is_none());
    }

    /// A worker resolves what its parent resolved, plus its own segment and folder: every
    /// flag reaches it without being listed anywhere (the old argv editing had to list them).
    #[test]
    fn a_worker_resolves_the_parents_run_with_its_own_segment() {
        let mut a = RunArgs::quick("http://127.0.0.1:9/x", std::path::Path::new("out"));
        a.iterations = Some(30);
        a.local_workers = Some(3);
        a.max_redirects = Some(2);
        a.token = Some("s3cret".into());
        let parent = resolve(a).unwrap();
        assert_eq!(parent.resolved.local_workers, Some(3));
        let json = parent
            .to_worker_json(WorkerOverrides {
                segment: "2/3".into(),
                results_dir: PathBuf::from("out/shards/2"),
                start_at: (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339(),
                metrics_listen: None,
                endpoints: None,
            })
            .unwrap();
        let w = RunConfig::from_worker_json(&json).unwrap();
        let r = &w.resolved;
        assert_eq!(r.run_id, parent.resolved.run_id);
        assert_eq!(r.run_id_generated, parent.resolved.run_id_generated);
        assert_eq!(r.segment.as_ref().map(|s| s.label.as_str()), Some("2/3"));
        assert_eq!(r.local_workers, None);
        assert!(r.quiet && r.start_at.is_some());
        assert!(matches!(&r.results, ResultsDir::Exact(d) if d.ends_with("shards/2")));
        assert_eq!(r.client.max_redirects, 2);
        assert_eq!(w.args.iterations, Some(30));
        assert_eq!(w.args.token.as_deref(), Some("s3cret"));
        assert_eq!(r.plans.len(), 1);
    }
}
