//! A session: one `novaload run` invocation. Resolves the config, starts telemetry (and the
//! built-in target when no URL is given), runs each test, writes the results folder, and
//! returns the overall verdict. Results are written even when a run is interrupted.

use crate::cli::RunArgs;
use crate::cli::TestName;
use crate::config::{self, Options, StageSpec};
use crate::error::ConfigError;
use crate::metrics::Registry;
use crate::metrics::SecondSink;
use crate::plan::Scenario;
use crate::progress::{Console, Progress};
use crate::report::summary::{ScenarioInfo, SummaryMeta};
use crate::report::{Summary, Verdict, markdown, timeseries::TimeseriesWriter};
use crate::results;
use crate::runner::{self, RunOutcome, TestRun};
use crate::telemetry::{RunLabels, Telemetry, TelemetryConfig};
use crate::thresholds::{self, Threshold, ThresholdSpec};
use crate::workload::api::ApiWorkload;
use crate::workload::db::DbWorkload;
use crate::workload::db_direct::{DbDirectWorkload, DbMix};
use crate::workload::dwcp::DwcpWorkload;
use crate::workload::endpoints::Endpoints;
use crate::workload::url::UrlWorkload;
use crate::workload::ws::{WsConfig, WsWorkload};
use crate::workload::{ClientSettings, TlsSettings};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a session produced.
#[derive(Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    pub results_dir: PathBuf,
    pub summaries: Vec<Summary>,
    pub interrupted: bool,
}

/// A test ready to run.
pub struct TestPlan {
    /// Test label (`api`, `url`, ...).
    pub test: String,
    /// File stem in the results folder (`api`, `websocket`, `database`, ...).
    pub file_stem: String,
    pub target: String,
    pub scenarios: Vec<Scenario>,
    pub registry: Arc<Registry>,
    pub thresholds: Vec<Threshold>,
    pub notes: Vec<String>,
    pub workload: WorkloadKind,
    /// (counter, per-second gauge) pairs the runner samples.
    pub per_second: Vec<(crate::metrics::MetricId, crate::metrics::MetricId)>,
}

/// The workload behind a plan.
pub enum WorkloadKind {
    Url(Arc<UrlWorkload>),
    Api(Arc<ApiWorkload>),
    Dwcp(Arc<DwcpWorkload>),
    Db(Arc<DbWorkload>),
    DbDirect(Arc<DbDirectWorkload>),
    Ws(Arc<WsWorkload>),
}

/// Stops: `interrupt` starts a graceful stop, `kill` stops at once.
#[derive(Clone, Default)]
pub struct Stops {
    pub interrupt: CancellationToken,
    pub kill: CancellationToken,
}

impl Stops {
    /// Wires Ctrl-C and SIGTERM: the first asks for a graceful stop, the second kills.
    pub fn from_signals() -> Self {
        let stops = Stops::default();
        let s = stops.clone();
        tokio::spawn(async move {
            let mut hits = 0;
            loop {
                wait_signal().await;
                hits += 1;
                if hits == 1 {
                    eprintln!(
                        "\nnovaload: stopping gracefully (press Ctrl-C again to stop now); results will be written"
                    );
                    s.interrupt.cancel();
                } else {
                    s.kill.cancel();
                    break;
                }
            }
        });
        stops
    }
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

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
pub fn apply_overrides(mut o: Options, a: &RunArgs) -> Result<Options, ConfigError> {
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
        let spec = config::ScenarioSpec {
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
pub fn build_thresholds(
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

fn parse_header(h: &str) -> Result<(http::HeaderName, http::HeaderValue), ConfigError> {
    let (k, v) = h.split_once(':').ok_or_else(|| {
        ConfigError::new(
            "--header",
            format!("'{h}' has no ':'"),
            "write -H 'Name: value'",
        )
    })?;
    let name = http::HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| {
        ConfigError::new(
            "--header",
            format!("bad header name '{}': {e}", k.trim()),
            "use a token like X-Request-Id",
        )
    })?;
    let value = http::HeaderValue::from_str(v.trim()).map_err(|e| {
        ConfigError::new(
            "--header",
            format!("bad value for {name}: {e}"),
            "use visible ASCII",
        )
    })?;
    Ok((name, value))
}

/// How long the direct-mode database pre-flight may take to connect.
const DB_PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

/// Quick mode's default critical threshold on `http_req_failed` (README: Quick mode).
pub const QUICK_MODE_FAILED_THRESHOLD: &str = "rate<0.01";

/// The quick-mode plan (`--url`).
fn url_plan(a: &RunArgs, url_s: &str) -> Result<TestPlan, ConfigError> {
    let url = url::Url::parse(url_s).map_err(|e| {
        ConfigError::new(
            "--url",
            format!("'{url_s}' is not a URL ({e})"),
            "give a full URL like http://127.0.0.1:8080/health",
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            "--url",
            format!("scheme '{}' is not supported", url.scheme()),
            "use http:// or https://",
        ));
    }
    let method =
        http::Method::from_bytes(a.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
            ConfigError::new(
                "--method",
                format!("'{}' is not an HTTP method", a.method),
                "use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
            )
        })?;
    let headers = a
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let body = match &a.body {
        Some(b) if b.starts_with('@') => {
            Some(bytes::Bytes::from(std::fs::read(&b[1..]).map_err(|e| {
                ConfigError::new(
                    "--body",
                    format!("cannot read {}: {e}", &b[1..]),
                    "check the path after @",
                )
            })?))
        }
        Some(b) => Some(bytes::Bytes::from(b.clone())),
        None => None,
    };
    let mut options = match &a.scenario {
        Some(p) => Options::from_file(p)?,
        None => Options::default(),
    };
    // Quick mode's default load: 10 VUs for 10 s (k6's 1 VU × 1 iteration is not a load test).
    let any_override = a.vus.is_some()
        || a.duration.is_some()
        || a.iterations.is_some()
        || !a.stages.is_empty()
        || a.rate.is_some();
    if a.scenario.is_none() && !any_override {
        options.vus = Some(10);
        options.duration = Some("10s".into());
    }
    let options = apply_overrides(options, a)?;
    let registry = Registry::new();
    let mut thresholds = build_thresholds(&options, &a.thresholds, &registry)?;
    let mut notes = Vec::new();
    // Like oha, quick mode has no script to say what "good" is; unlike a bare oha run, a
    // verdict must not be PASS when every request failed. The user's own threshold on
    // http_req_failed (flag or file) replaces this one.
    if !thresholds.iter().any(|t| t.metric == "http_req_failed") {
        thresholds.push(thresholds::build(
            "http_req_failed",
            &ThresholdSpec::plain(QUICK_MODE_FAILED_THRESHOLD),
            &registry,
        )?);
        notes.push(format!(
            "default threshold http_req_failed {QUICK_MODE_FAILED_THRESHOLD} (quick mode); \
             replace it with --threshold 'http_req_failed=…'"
        ));
    }
    for k in options.ignored_keys() {
        notes.push(format!(
            "option `{k}` in the scenario file is not used by novaload"
        ));
    }
    let target = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    );
    Ok(TestPlan {
        test: "url".into(),
        file_stem: "url".into(),
        target,
        scenarios: options.scenarios()?,
        registry: Arc::new(registry),
        thresholds,
        notes,
        workload: WorkloadKind::Url(Arc::new(UrlWorkload::new(method, url, headers, body))),
        per_second: Vec::new(),
    })
}

/// What one VU costs in memory, measured (docs/PERFORMANCE.md): a quick-mode or WebSocket VU
/// ~11 KiB, a REST workload VU up to ~240 KiB. Rounded up: the check refuses runs that cannot
/// fit, it does not promise that a run near the ceiling fits.
fn bytes_per_vu(test: &str) -> u64 {
    match test {
        "url" | "ws" => 16 * 1024,
        _ => 256 * 1024,
    }
}

/// Refuses, before anything starts, a run whose VUs cannot fit: more VUs in one process than
/// its open-files limit allows (each VU keeps a connection), or more VU memory than this
/// machine has available. Without this, `--vus 1000000000` allocated 15 GiB of task handles
/// before failing. Called for every `novaload run`, before local workers are chosen.
pub fn check_capacity(a: &RunArgs) -> Result<(), ConfigError> {
    let plans = plan(a, None)?;
    let segment = crate::distributed::segment_from_args(a)?;
    let parallel =
        plans.len() > 1 && (a.parallel || a.profile.as_deref().unwrap_or("smoke") == "smoke");
    // (VUs of this process, their memory) per test
    let peaks: Vec<(u64, u64)> = plans
        .iter()
        .map(|p| {
            let vus: u64 = p
                .scenarios
                .iter()
                .map(|s| s.executor.max_vus())
                .fold(0u64, u64::saturating_add);
            let vus = segment.as_ref().map_or(vus, |s| s.scale(vus));
            (vus, vus.saturating_mul(bytes_per_vu(&p.test)))
        })
        .collect();
    let field = vu_field(a);
    // memory: tests side by side add up; one after the other, the largest counts
    let (vus, bytes) = if parallel {
        peaks.iter().fold((0u64, 0u64), |(v, b), (pv, pb)| {
            (v.saturating_add(*pv), b.saturating_add(*pb))
        })
    } else {
        peaks
            .iter()
            .copied()
            .max_by_key(|(_, b)| *b)
            .unwrap_or((0, 0))
    };
    if let Some(available) = available_memory_bytes()
        && bytes > available
    {
        return Err(ConfigError::new(
            field,
            format!(
                "{vus} VUs need about {} of memory; this machine has {} available",
                human_bytes(bytes),
                human_bytes(available)
            ),
            "use fewer VUs, or spread the run over machines with --segment i/N (one per machine, then novaload merge)",
        ));
    }
    // open files: each VU keeps a connection. Local workers (asked for, or started by
    // themselves for a ws peak above one process's files) split every test.
    let per_process = crate::capacity::max_connections_per_process();
    let workers = a
        .local_workers
        .or_else(|| crate::distributed::automatic_local_workers(a).map(|(n, _)| n))
        .unwrap_or(1)
        .max(1);
    let vus_at_once = if parallel {
        peaks
            .iter()
            .map(|(v, _)| *v)
            .fold(0u64, u64::saturating_add)
    } else {
        peaks.iter().map(|(v, _)| *v).max().unwrap_or(0)
    };
    if vus_at_once.div_ceil(workers) > per_process {
        let needed = vus_at_once.div_ceil(per_process);
        return Err(ConfigError::new(
            field,
            format!(
                "{vus_at_once} VUs in {workers} process(es), but one process can hold about {per_process} (its open-files limit: each VU keeps a connection)"
            ),
            format!(
                "spread them with --local-workers {needed} (processes on this machine) or --segment i/N on several machines"
            ),
        ));
    }
    Ok(())
}

/// The flag a user would change to lower the VU count.
fn vu_field(a: &RunArgs) -> String {
    if a.rate.is_some() && (a.max_vus.is_some() || a.vus.is_some()) {
        "--vus/--max-vus".into()
    } else if a.vus.is_some() {
        "--vus".into()
    } else if !a.stages.is_empty() {
        "--stage".into()
    } else if let Some(p) = &a.scenario {
        format!("--scenario {}", p.display())
    } else {
        format!("--profile {}", a.profile.as_deref().unwrap_or("smoke"))
    }
}

/// `MemAvailable` of /proc/meminfo (None where there is none).
fn available_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

fn human_bytes(b: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    if b as f64 >= GIB {
        format!("{:.1} GiB", b as f64 / GIB)
    } else {
        format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
    }
}

/// Checks the target accepts TCP connections before any file is written, so a typo'd URL is
/// a clear config error rather than a run full of failed requests.
async fn preflight(field: &str, url_s: &str) -> Result<(), ConfigError> {
    let Ok(url) = url::Url::parse(url_s) else {
        return Ok(());
    };
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let fix =
        "start the server, or check the host and port (docs/TROUBLESHOOTING.md#connection-refused)";
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ConfigError::new(
            field,
            format!("cannot connect to {host}:{port}: {e}"),
            fix,
        )),
        Err(_) => Err(ConfigError::new(
            field,
            format!("no answer from {host}:{port} within 5s"),
            fix,
        )),
    }
}

fn telemetry_config(
    a: &RunArgs,
    run_id: &str,
    profile: &str,
) -> Result<TelemetryConfig, ConfigError> {
    let sample_ratio = match a.trace_sample_ratio {
        Some(r) => r,
        None => match std::env::var("OTEL_TRACES_SAMPLER_ARG") {
            Ok(v) => v.parse().map_err(|_| {
                ConfigError::new(
                    "OTEL_TRACES_SAMPLER_ARG",
                    format!("'{v}' is not a number"),
                    "set a ratio between 0 and 1",
                )
            })?,
            Err(_) => match std::env::var("OTEL_TRACES_SAMPLER").as_deref() {
                Ok("always_off") | Ok("parentbased_always_off") => 0.0,
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
    let resource_attributes = std::env::var("OTEL_RESOURCE_ATTRIBUTES")
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

/// Validates everything that can be validated before any file is written or load is sent.
/// `endpoints` is None when the built-in target will be started (its URL is not known yet).
pub fn plan(a: &RunArgs, endpoints: Option<&Endpoints>) -> Result<Vec<TestPlan>, ConfigError> {
    if let Some(u) = &a.url {
        return Ok(vec![url_plan(a, u)?]);
    }
    let tests: Vec<TestName> = match a.test {
        Some(TestName::All) => vec![TestName::Api, TestName::Dwcp, TestName::Ws, TestName::Db],
        Some(t) => vec![t],
        None if a.scenario.is_some() => vec![TestName::Api],
        None => {
            return Err(ConfigError::new(
                "TEST",
                "nothing to run",
                "name a test (api, dwcp, ws, db, all) or give --url URL",
            ));
        }
    };
    let placeholder = Endpoints::new("http://127.0.0.1:1", None, None, None);
    let ep = endpoints.unwrap_or(&placeholder);
    tests.into_iter().map(|t| workload_plan(a, t, ep)).collect()
}

/// Endpoints from flags/env, validated. None means: start the built-in target.
pub fn endpoints_from_args(a: &RunArgs) -> Result<Option<Endpoints>, ConfigError> {
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

fn workload_plan(a: &RunArgs, test: TestName, ep: &Endpoints) -> Result<TestPlan, ConfigError> {
    let profile_name = a.profile.as_deref().unwrap_or("smoke");
    let mut prof = crate::profile::plan(test, profile_name)?;
    let mut registry = Registry::new();
    let mut per_second = Vec::new();
    let mut ws_notes: Vec<String> = Vec::new();
    let mut target = ep.api_url.clone();
    let (stem, workload) = match test {
        TestName::Api => (
            "api",
            WorkloadKind::Api(Arc::new(ApiWorkload::new(ep.clone(), &mut registry))),
        ),
        TestName::Dwcp => {
            let mut w = DwcpWorkload::new(ep.clone(), &mut registry);
            if prof.short_sessions {
                w.stream_for = Duration::from_secs(2);
            }
            ("dwcp", WorkloadKind::Dwcp(Arc::new(w)))
        }
        TestName::Db => {
            let kind = if db_direct(a) {
                let url = a
                    .database_url
                    .as_deref()
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| {
                        ConfigError::new(
                            "--db-mode direct",
                            "no database URL",
                            "give --database-url postgres://USER:PASSWORD@HOST:5432/DB or set DATABASE_URL",
                        )
                    })?;
                let pool_size = a.pool_size.unwrap_or(20);
                if pool_size == 0 {
                    return Err(ConfigError::new(
                        "--pool-size",
                        "0 connections cannot run a statement",
                        "give --pool-size 1 or more (default 20; the pgbench comparison uses one per VU)",
                    ));
                }
                let mut w = DbDirectWorkload::new(url, pool_size, &mut registry).map_err(|e| {
                    ConfigError::new("--database-url", format!("{e:#}"), "give a postgres:// URL")
                })?;
                w.mix = match a.db_mix {
                    crate::cli::DbMixArg::Upstream => DbMix::Upstream,
                    crate::cli::DbMixArg::SelectOnly => DbMix::SelectOnly,
                    crate::cli::DbMixArg::ReadWrite => DbMix::ReadWrite,
                };
                target = w.target.clone();
                // no HTTP requests in direct mode: upstream's http_req_duration bound has no data
                prof.thresholds.remove("http_req_duration");
                WorkloadKind::DbDirect(Arc::new(w))
            } else {
                // the SQL mixes only exist as SQL: silently running the REST mix instead would
                // make a pgbench comparison meaningless
                if a.db_mix != crate::cli::DbMixArg::Upstream {
                    return Err(ConfigError::new(
                        "--db-mix",
                        "the select-only and read-write mixes run SQL, and this run goes through the REST API (--db-mode api)",
                        "add --db-mode direct --database-url postgres://USER:PASSWORD@HOST:5432/DB, or drop --db-mix",
                    ));
                }
                WorkloadKind::Db(Arc::new(DbWorkload::new(ep.clone(), &mut registry)))
            };
            let total = registry
                .lookup("db_queries_total")
                .expect("declared by the workload");
            let gauge = registry.declare(
                "db_queries_per_second",
                crate::metrics::MetricKind::Gauge,
                crate::metrics::Contains::Default,
            );
            per_second.push((total, gauge));
            ("database", kind)
        }
        TestName::Ws => {
            let mut cfg = WsConfig {
                ws_url: ep.ws_url.clone(),
                token: ep.token().to_string(),
                ..WsConfig::upstream()
            };
            if prof.short_sessions {
                // smoke: short sessions that still exercise pings and queries
                cfg.session_min = Duration::from_secs(3);
                cfg.session_max = Duration::from_secs(6);
                cfg.ping_every = Duration::from_secs(1);
                cfg.query_every = Duration::from_secs(2);
            }
            if let Some(spec) = &a.ws_session {
                (cfg.session_min, cfg.session_max) = parse_ws_session(spec)?;
            }
            // wss:// trusts --cacert / skips verification like every other request
            let secure = ep.ws_url.starts_with("wss://");
            if secure || a.cacert.is_some() || a.insecure_skip_tls_verify {
                let tls = TlsSettings::new(a.cacert.as_deref(), a.insecure_skip_tls_verify)
                    .map_err(|e| {
                        ConfigError::new(
                            "--cacert",
                            format!("{e:#}"),
                            "give a readable PEM file (docs/TROUBLESHOOTING.md#tls-errors)",
                        )
                    })?;
                cfg.tls = Some(tls.client_config());
            }
            cfg.validate()?;
            let peak = options_peak(a, &prof);
            let loopback = url::Url::parse(&ep.ws_url)
                .ok()
                .and_then(|u| u.host_str().map(is_loopback_host))
                .unwrap_or(false);
            let plan = crate::capacity::capacity_plan(
                peak,
                loopback,
                crate::capacity::max_connections_per_process(),
            );
            cfg.source_ips = if a.source_ips.is_empty() {
                plan.source_ips.clone()
            } else {
                a.source_ips.clone()
            };
            ws_notes = plan.notes;
            (
                "websocket",
                WorkloadKind::Ws(Arc::new(WsWorkload::new(cfg, &mut registry))),
            )
        }
        TestName::All => unreachable!("expanded by plan()"),
    };
    // profile first, then the scenario file, then CLI overrides
    let mut options = Options {
        stages: Some(prof.stages.clone()),
        vus: Some(1),
        thresholds: prof.thresholds.clone(),
        ..Options::default()
    };
    if let Some(p) = &a.scenario {
        let file = Options::from_file(p)?;
        if file.scenarios.is_some()
            || file.stages.is_some()
            || file.duration.is_some()
            || file.iterations.is_some()
        {
            options.stages = None;
            options.scenarios = file.scenarios.clone();
            options.stages = file.stages.clone();
            options.vus = file.vus;
            options.duration = file.duration.clone();
            options.iterations = file.iterations;
        }
        options.thresholds.extend(file.thresholds.clone());
        options.tags = file.tags.clone();
        options.other = file.other.clone();
    }
    let mut options = apply_overrides(options, a)?;
    let mut scenarios = options.scenarios()?;
    // The throughput/concurrency target follows the VUs actually planned (`--vus`, `--stage`,
    // a scenario file), unless the user set that threshold themselves.
    let planned_peak: u64 = scenarios.iter().map(|s| s.executor.max_vus()).sum();
    let mut target_note = None;
    if planned_peak != prof.peak {
        let full = crate::profile::is_full_scale(test, profile_name, planned_peak);
        for (metric, list) in crate::profile::targets(test, planned_peak, full) {
            if options.thresholds.get(&metric) == prof.thresholds.get(&metric) {
                target_note = Some(format!(
                    "target {metric} {} follows the {planned_peak} planned VUs (the profile's {} VUs would give {})",
                    list.specs()
                        .first()
                        .map(ThresholdSpec::source)
                        .unwrap_or_default(),
                    prof.peak,
                    prof.thresholds
                        .get(&metric)
                        .and_then(|l| l.specs().first().map(ThresholdSpec::source))
                        .unwrap_or_default()
                ));
                options.thresholds.insert(metric, list);
            }
        }
    }
    if a.scenario.is_none() {
        for sc in &mut scenarios {
            sc.graceful_stop = prof.graceful;
            if let crate::plan::Executor::RampingVus {
                start_vus,
                graceful_ramp_down,
                ..
            } = &mut sc.executor
            {
                *graceful_ramp_down = prof.graceful;
                // profiles ramp from zero; upstream's startVUs 1 only applies to `full`
                if profile_name != "full" {
                    *start_vus = 0;
                }
            }
        }
    }
    let thresholds = build_thresholds(&options, &a.thresholds, &registry)?;
    let mut notes = ws_notes;
    notes.extend(target_note);
    if let WorkloadKind::DbDirect(w) = &workload {
        // every scenario's VUs may be live at once: only then can each VU keep a connection
        w.plan_vus(scenarios.iter().map(|s| s.executor.max_vus()).sum());
        notes.extend(w.connection_note());
    }
    for k in options.ignored_keys() {
        notes.push(format!(
            "option `{k}` in the scenario file is not used by novaload"
        ));
    }
    Ok(TestPlan {
        test: test_label(test).into(),
        file_stem: stem.into(),
        target,
        scenarios,
        registry: Arc::new(registry),
        thresholds,
        notes,
        workload,
        per_second,
    })
}

/// `--ws-session MIN..MAX` or `--ws-session D` (MIN = MAX = D).
fn parse_ws_session(spec: &str) -> Result<(Duration, Duration), ConfigError> {
    let fix = "write e.g. --ws-session 30s..60s (upstream), or one duration such as 10m";
    let one = |s: &str| {
        crate::duration::parse(s.trim(), "--ws-session")
            .map_err(|_| ConfigError::new("--ws-session", format!("'{s}' is not a duration"), fix))
    };
    let (min, max) = match spec.split_once("..") {
        Some((a, b)) => (one(a)?, one(b)?),
        None => (one(spec)?, one(spec)?),
    };
    if min.is_zero() || min > max {
        return Err(ConfigError::new(
            "--ws-session",
            format!("'{spec}' is not a range of positive durations with MIN <= MAX"),
            fix,
        ));
    }
    Ok((min, max))
}

/// Peak VUs the run will reach: the CLI's --vus/--stage or the profile's.
fn options_peak(a: &RunArgs, prof: &crate::profile::ProfilePlan) -> u64 {
    let stage_peak = a
        .stages
        .iter()
        .filter_map(|s| s.split_once(':'))
        .filter_map(|(_, t)| t.trim().parse::<f64>().ok())
        .fold(0.0, f64::max) as u64;
    if a.vus.is_none() && a.stages.is_empty() {
        prof.peak
    } else {
        a.vus.unwrap_or(0).max(stage_peak)
    }
}

fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the db test runs as SQL: `--db-mode direct`, or a database URL without --db-mode.
pub fn db_direct(a: &RunArgs) -> bool {
    match a.db_mode {
        Some(crate::cli::DbMode::Direct) => true,
        Some(crate::cli::DbMode::Api) => false,
        None => a.database_url.as_deref().is_some_and(|u| !u.is_empty()),
    }
}

fn test_label(t: TestName) -> &'static str {
    match t {
        TestName::Api => "api",
        TestName::Dwcp => "dwcp",
        TestName::Ws => "ws",
        TestName::Db => "db",
        TestName::All => "all",
    }
}

/// Runs a session with the given stop tokens (tests pass their own; the CLI wires signals).
pub async fn run(a: RunArgs, stops: Stops) -> anyhow::Result<Outcome> {
    register_secrets(&a);
    let request_timeout = crate::duration::parse(&a.timeout, "--timeout")?;
    let client_limits = client_limits(&a)?;
    // distributed runs: this process's segment and the coordinated start
    let segment = crate::distributed::segment_from_args(&a)?.map(Arc::new);
    let segment_label = segment
        .as_ref()
        .map(|s| s.label.clone())
        .unwrap_or_default();
    let start_at = crate::distributed::parse_start_at(a.start_at.as_deref())?;
    let given = endpoints_from_args(&a)?;
    // validate everything before starting anything
    plan(&a, given.as_ref())?;
    // `run db` in direct mode talks to the database only
    let needs_target =
        a.url.is_none() && given.is_none() && !(a.test == Some(TestName::Db) && db_direct(&a));
    let mut embedded: Option<crate::novacron::Embedded> = None;
    let endpoints = if needs_target {
        let mut targs = crate::novacron::TargetArgs::embedded();
        let seed = plan_seed(&a);
        targs.seed_vms = seed;
        if a.profile.as_deref() == Some("full") {
            targs.migration_time = crate::profile::FULL_PROFILE_MIGRATION_TIME;
        }
        // client and server sockets of a ws run share this process's descriptors
        let workers = crate::novacron::embedded_workers(
            crate::distributed::ws_peak_connections(&a).unwrap_or(0),
            true,
            crate::capacity::max_connections_per_process(),
        );
        let handle = crate::novacron::Embedded::start(targs, workers)
            .await
            .context("starting the built-in target")?;
        if !a.quiet {
            eprintln!(
                "novaload: no --api-url given; started the built-in NovaCron target on {}{} ({seed} VMs seeded)",
                handle.base_url(),
                handle.describe()
            );
        }
        let ep = Endpoints::new(&handle.base_url(), None, None, a.token.as_deref());
        embedded = Some(handle);
        Some(ep)
    } else {
        given
    };
    let plans = plan(&a, endpoints.as_ref())?;
    if let Some(u) = &a.url {
        preflight("--url", u).await?;
    } else if !needs_target && let Some(ep) = &endpoints {
        preflight("--api-url (API_URL)", &ep.api_url).await?;
    }
    // direct mode talks to the database: an unreachable one is bad input (exit 2) with the
    // driver's reason, as an unreachable API is, not a run of pool timeouts
    if plans
        .iter()
        .any(|p| matches!(p.workload, WorkloadKind::DbDirect(_)))
        && let Some(db) = a.database_url.as_deref()
    {
        crate::workload::db_direct::preflight(db, DB_PREFLIGHT_TIMEOUT).await?;
    }
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
    let run_id_generated = a.run_id.is_none();
    let run_id = a
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    let profile = a.profile.clone().unwrap_or_else(|| "custom".into());
    let mut tel_cfg = telemetry_config(&a, &run_id, &profile)?;
    tel_cfg.segment = segment_label.clone();
    let results_dir = match &a.results_dir {
        Some(d) => crate::distributed::exact_results_dir(d)?,
        None => results::create_results_dir(&a.out)?,
    };
    // Live series nobody can read (no /metrics, no OTLP) would cost every request a few
    // hundred nanoseconds for nothing: the summary comes from the recorder, not from them.
    let observed = tel_cfg.metrics_listen.is_some() || tel_cfg.otlp_endpoint.is_some();
    let telemetry = if a.no_telemetry || !observed {
        Telemetry::disabled()
    } else {
        Telemetry::start(tel_cfg)
            .await
            .context("starting telemetry")?
    };
    if let Some(addr) = telemetry.metrics_addr()
        && !a.quiet
    {
        eprintln!("novaload: live metrics on http://{addr}/metrics");
    }
    let settings = ClientSettings {
        tls,
        request_timeout,
        ..client_limits
    };
    let mut summaries: Vec<Summary> = Vec::new();
    let mut stems: Vec<String> = Vec::new();
    let mut interrupted = false;
    let ctx = PlanContext {
        results_dir: results_dir.clone(),
        run_id: run_id.clone(),
        run_id_generated,
        profile: profile.clone(),
        quiet: a.quiet,
        telemetry: telemetry.clone(),
        settings: settings.clone(),
        vu_threads: a.vu_threads.map_or(0, usize::from),
        stops: stops.clone(),
        segment: segment.clone(),
        segment_label: segment_label.clone(),
    };
    if let Some(at) = start_at {
        crate::distributed::wait_until(at, &stops.interrupt, a.quiet).await;
    }
    // `run all --parallel` (and the smoke profile) runs the tests side by side
    let parallel =
        plans.len() > 1 && (a.parallel || a.profile.as_deref().unwrap_or("smoke") == "smoke");
    if parallel {
        let outcomes =
            futures_util::future::join_all(plans.iter().map(|p| run_plan(p, &ctx))).await;
        for (p, (summary, was_interrupted)) in plans.iter().zip(outcomes) {
            interrupted |= was_interrupted;
            results::write_summary(&results_dir, &p.file_stem, &summary)?;
            summaries.push(summary);
            stems.push(p.file_stem.clone());
        }
        results::write_overview(&results_dir, &summaries, &stems, !a.no_html, !a.no_junit)?;
    } else {
        for p in &plans {
            if stops.interrupt.is_cancelled() {
                break;
            }
            let (summary, was_interrupted) = run_plan(p, &ctx).await;
            interrupted |= was_interrupted;
            // written after every test, so a crash later still leaves the finished ones
            results::write_summary(&results_dir, &p.file_stem, &summary)?;
            summaries.push(summary);
            stems.push(p.file_stem.clone());
            results::write_overview(&results_dir, &summaries, &stems, !a.no_html, !a.no_junit)?;
        }
    }
    let report = telemetry.shutdown().await;
    // The summaries were written before telemetry was flushed: give them its final report
    // (spans exported and dropped, export errors, where /metrics was) whenever it has one.
    let has_report = report.spans_exported > 0
        || report.spans_dropped > 0
        || !report.errors.is_empty()
        || report.metrics_addr.is_some();
    if has_report {
        for (s, stem) in summaries.iter_mut().zip(&stems) {
            s.telemetry = report.clone();
            let _ = results::write_summary(&results_dir, stem, s);
        }
        results::write_overview(&results_dir, &summaries, &stems, !a.no_html, !a.no_junit)?;
    }
    if let Some(t) = embedded
        && let Err(e) = t.shutdown().await
    {
        tracing::warn!("built-in target did not shut down cleanly: {e:#}");
    }
    let verdict = markdown::overall(&summaries);
    Ok(Outcome {
        verdict,
        results_dir,
        summaries,
        interrupted,
    })
}

/// Redirects and body limit: flags win over the scenario file's `maxRedirects` and
/// `discardResponseBodies`, which win over k6's defaults.
fn client_limits(a: &RunArgs) -> Result<ClientSettings, ConfigError> {
    let file = match &a.scenario {
        Some(p) => Options::from_file(p)?,
        None => Options::default(),
    };
    let mut s = ClientSettings::default();
    if let Some(n) = a.max_redirects.or(file.max_redirects) {
        s.max_redirects = n;
    }
    if file.discard_response_bodies == Some(true) {
        s.response_body_limit = 0;
    }
    if let Some(limit) = &a.response_body_limit {
        s.response_body_limit = config::parse_size(limit, "--response-body-limit")?;
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

/// What every test of a session shares.
struct PlanContext {
    results_dir: PathBuf,
    run_id: String,
    run_id_generated: bool,
    profile: String,
    quiet: bool,
    telemetry: Telemetry,
    settings: ClientSettings,
    /// `--vu-threads` (0: the shared runtime).
    vu_threads: usize,
    stops: Stops,
    segment: Option<Arc<crate::plan::segment::SegmentPlan>>,
    segment_label: String,
}

/// Runs one test and returns its summary (and whether it was interrupted).
async fn run_plan(p: &TestPlan, ctx: &PlanContext) -> (Summary, bool) {
    let console = Console::new(
        std::fs::File::create(ctx.results_dir.join(format!("{}.log", p.file_stem))).ok(),
        ctx.quiet,
    );
    console.line(&format!(
        "novaload {}: running {} against {} (run id {})",
        env!("CARGO_PKG_VERSION"),
        p.test,
        p.target,
        ctx.run_id
    ));
    for sc in &p.scenarios {
        console.line(&format!("  scenario {}: {}", sc.name, config::describe(sc)));
    }
    for n in &p.notes {
        console.line(&format!("  note: {n}"));
    }
    let planned = p
        .scenarios
        .iter()
        .map(|s| s.start_time + s.executor.duration())
        .max()
        .unwrap_or_default();
    let mut sinks: Vec<Box<dyn SecondSink>> = vec![Box::new(Progress::new(
        &p.test,
        planned.as_secs_f64(),
        console.clone(),
        ctx.quiet,
    ))];
    match TimeseriesWriter::create(&ctx.results_dir.join(format!("{}.json", p.file_stem))) {
        Ok(w) => sinks.push(Box::new(w)),
        Err(e) => console.line(&format!("warning: cannot write the time series: {e}")),
    }
    let labels = RunLabels {
        run_id: Arc::from(ctx.run_id.as_str()),
        test: Arc::from(p.test.as_str()),
        scenario: Arc::from("all"),
    };
    ctx.telemetry.test_started(&labels, &ctx.profile);
    let params = TestRun {
        test: p.test.clone(),
        run_id: Arc::from(ctx.run_id.as_str()),
        scenarios: p.scenarios.clone(),
        registry: p.registry.clone(),
        thresholds: p.thresholds.clone(),
        telemetry: ctx.telemetry.clone(),
        settings: ctx.settings.clone(),
        interrupt: ctx.stops.interrupt.clone(),
        kill: ctx.stops.kill.clone(),
        sinks,
        setup_timeout: Duration::from_secs(60),
        teardown_timeout: Duration::from_secs(60),
        per_second: p.per_second.clone(),
        segment: ctx.segment.clone(),
        vu_threads: ctx.vu_threads,
    };
    let outcome: RunOutcome = match &p.workload {
        WorkloadKind::Url(w) => runner::run(w.clone(), params).await,
        WorkloadKind::Api(w) => runner::run(w.clone(), params).await,
        WorkloadKind::Dwcp(w) => runner::run(w.clone(), params).await,
        WorkloadKind::Db(w) => runner::run(w.clone(), params).await,
        WorkloadKind::DbDirect(w) => runner::run(w.clone(), params).await,
        WorkloadKind::Ws(w) => runner::run(w.clone(), params).await,
    };
    ctx.telemetry.test_finished(&labels);
    let mut summary = summarize(p, &outcome, &ctx.run_id, &ctx.profile);
    summary.segment = ctx.segment_label.clone();
    summary.run_id_generated = ctx.run_id_generated;
    console.log_only(&markdown::render(std::slice::from_ref(&summary)));
    if !ctx.quiet {
        eprintln!(
            "[{}] {} — {}",
            p.test,
            summary.verdict.emoji(),
            one_line(&summary)
        );
        // why it failed, in the console's last lines (the log has the whole SUMMARY.md)
        for line in markdown::console_reasons(&summary) {
            eprintln!("[{}]   {line}", p.test);
        }
    }
    (summary, outcome.interrupted)
}

/// A one-line result for the console.
fn one_line(s: &Summary) -> String {
    let met = s.thresholds.iter().filter(|t| t.ok).count();
    let reqs = s.value("http_reqs", "count").unwrap_or(0.0);
    let p95 = s.value("http_req_duration", "p(95)").unwrap_or(0.0);
    format!(
        "{met}/{} thresholds met, {reqs:.0} requests, http p95 {p95:.1} ms, {:.1} s",
        s.thresholds.len(),
        s.duration_s
    )
}

/// Seeded VMs for the built-in target: the largest the chosen profile asks for.
pub fn plan_seed(a: &RunArgs) -> u64 {
    let p = a.profile.as_deref().unwrap_or("smoke");
    [TestName::Api, TestName::Db]
        .iter()
        .filter_map(|t| crate::profile::plan(*t, p).ok())
        .map(|pp| pp.seed_vms)
        .max()
        .unwrap_or(1000)
}

fn summarize(p: &TestPlan, o: &RunOutcome, run_id: &str, profile: &str) -> Summary {
    let partial_reason = if let Some(t) = &o.aborted_by {
        Some(format!("aborted: threshold {t} failed (abortOnFail)"))
    } else if o.interrupted {
        Some("interrupted by Ctrl-C/SIGTERM".to_string())
    } else {
        None
    };
    let meta = SummaryMeta {
        run_id: run_id.to_string(),
        run_id_generated: false,
        test: p.test.clone(),
        profile: profile.to_string(),
        target: p.target.clone(),
        started_at: o.started_at,
        duration_s: o.duration.as_secs_f64(),
        partial_reason,
        segment: String::new(),
        scenarios: p
            .scenarios
            .iter()
            .map(|s| ScenarioInfo {
                name: s.name.clone(),
                executor: s.executor.name().into(),
                description: config::describe(s),
            })
            .collect(),
        thresholds: p.thresholds.clone(),
        interrupted_iterations: o.interrupted_iterations,
        run_errors: o.errors.clone(),
        notes: p.notes.clone(),
        telemetry: Default::default(),
    };
    Summary::build(&o.snapshot, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_session_takes_a_range_or_one_duration() {
        let s = Duration::from_secs;
        assert_eq!(parse_ws_session("30s..60s").unwrap(), (s(30), s(60)));
        assert_eq!(parse_ws_session("10m").unwrap(), (s(600), s(600)));
        for bad in ["60s..30s", "0s", "soon", "1s..", "..5s"] {
            let e = parse_ws_session(bad).unwrap_err().to_string();
            assert!(e.contains("--ws-session"), "{bad}: {e}");
        }
    }
}
