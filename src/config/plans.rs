//! Test plans: what each test of a run does — its workload, scenarios, thresholds and notes —
//! built from the flags, the scenario file and the profile (precedence: flag > file >
//! profile > default).

use super::options::Options;
use super::overrides::{apply_overrides, build_thresholds};
use super::profile;
use crate::cli::{RunArgs, TestName};
use crate::error::ConfigError;
use crate::metrics::Registry;
use crate::plan::Scenario;
use crate::thresholds::{self, Threshold, ThresholdSpec};
use crate::workload::TlsSettings;
use crate::workload::api::ApiWorkload;
use crate::workload::db::DbWorkload;
use crate::workload::db_direct::{DbDirectWorkload, DbMix};
use crate::workload::dwcp::DwcpWorkload;
use crate::workload::endpoints::Endpoints;
use crate::workload::url::UrlWorkload;
use crate::workload::ws::{WsConfig, WsWorkload};
use std::sync::Arc;
use std::time::Duration;

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
#[derive(Clone)]
pub enum WorkloadKind {
    Url(Arc<UrlWorkload>),
    Api(Arc<ApiWorkload>),
    Dwcp(Arc<DwcpWorkload>),
    Db(Arc<DbWorkload>),
    DbDirect(Arc<DbDirectWorkload>),
    Ws(Arc<WsWorkload>),
}

impl WorkloadKind {
    /// The same workload against other endpoints (the built-in target's, known once it
    /// listens). Its metrics are declared again in a copy of the plan's `registry`, which
    /// hands back the ids they already have (`Registry::declare` is idempotent), so the
    /// plan's thresholds and everything else stay as validated.
    fn bind(&self, ep: &Endpoints, registry: &Registry) -> WorkloadKind {
        let mut reg = registry.clone();
        let bound = match self {
            WorkloadKind::Url(_) | WorkloadKind::DbDirect(_) => return self.clone(),
            WorkloadKind::Api(_) => {
                WorkloadKind::Api(Arc::new(ApiWorkload::new(ep.clone(), &mut reg)))
            }
            WorkloadKind::Dwcp(w) => {
                let mut b = DwcpWorkload::new(ep.clone(), &mut reg);
                (b.poll_every, b.max_polls, b.stream_for) =
                    (w.poll_every, w.max_polls, w.stream_for);
                WorkloadKind::Dwcp(Arc::new(b))
            }
            WorkloadKind::Db(w) => {
                let mut b = DbWorkload::new(ep.clone(), &mut reg);
                b.seed_vms = w.seed_vms;
                WorkloadKind::Db(Arc::new(b))
            }
            WorkloadKind::Ws(w) => {
                let cfg = WsConfig {
                    ws_url: ep.ws_url.clone(),
                    token: ep.token().to_string(),
                    ..w.config().clone()
                };
                WorkloadKind::Ws(Arc::new(WsWorkload::new(cfg, &mut reg)))
            }
        };
        debug_assert_eq!(reg.len(), registry.len(), "binding declared a new metric");
        bound
    }

    /// Whether the workload talks to the REST endpoints (everything but direct SQL).
    fn uses_endpoints(&self) -> bool {
        !matches!(self, WorkloadKind::Url(_) | WorkloadKind::DbDirect(_))
    }
}

impl TestPlan {
    /// Points the plan at `ep` (see [`WorkloadKind::bind`]).
    pub(crate) fn bind(&mut self, ep: &Endpoints) {
        if self.workload.uses_endpoints() {
            self.workload = self.workload.bind(ep, &self.registry);
            self.target = ep.api_url.clone();
        }
    }
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

/// Quick mode's default critical threshold on `http_req_failed` (README: Quick mode).
pub(crate) const QUICK_MODE_FAILED_THRESHOLD: &str = "rate<0.01";

/// The quick-mode plan (`--url`).
fn url_plan(a: &RunArgs, file: Option<&Options>, url_s: &str) -> Result<TestPlan, ConfigError> {
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
    let mut options = file.cloned().unwrap_or_default();
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

/// The plans of a run, validated as far as anything can be before load is sent. `endpoints`
/// is None when the built-in target will be started (its URL is not known yet).
pub fn build(
    a: &RunArgs,
    file: Option<&Options>,
    endpoints: Option<&Endpoints>,
) -> Result<Vec<TestPlan>, ConfigError> {
    if let Some(u) = &a.url {
        return Ok(vec![url_plan(a, file, u)?]);
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
    tests
        .into_iter()
        .map(|t| workload_plan(a, file, t, ep))
        .collect()
}

fn workload_plan(
    a: &RunArgs,
    file: Option<&Options>,
    test: TestName,
    ep: &Endpoints,
) -> Result<TestPlan, ConfigError> {
    let profile_name = a.profile.as_deref().unwrap_or("smoke");
    let mut prof = profile::plan(test, profile_name)?;
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
    if let Some(file) = file {
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
        let full = profile::is_full_scale(test, profile_name, planned_peak);
        for (metric, list) in profile::targets(test, planned_peak, full) {
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
pub(crate) fn options_peak(a: &RunArgs, prof: &profile::ProfilePlan) -> u64 {
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
