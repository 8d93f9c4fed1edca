//! A session: runs one resolved [`RunConfig`] in this process. Starts telemetry (and the
//! built-in target when no URL is given), runs each test plan, writes the results folder, and
//! returns the overall verdict. Results are written even when a run is interrupted.
//!
//! Everything a run needs is decided by [`crate::config::resolve`] before a session starts;
//! a session only orchestrates.

use crate::cli::RunArgs;
use crate::config::{self, RunConfig, TestPlan, WorkloadKind};
use crate::error::ConfigError;
use crate::metrics::SecondSink;
use crate::progress::{Console, Progress};
use crate::report::summary::{ScenarioInfo, SummaryMeta};
use crate::report::{Summary, Verdict, markdown, timeseries::TimeseriesWriter};
use crate::results;
use crate::runner::{self, RunOutcome, TestRun};
use crate::telemetry::{RunLabels, Telemetry};
use crate::workload::ClientSettings;
use crate::workload::endpoints::Endpoints;
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

/// How long the direct-mode database pre-flight may take to connect.
const DB_PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Resolves `a` and runs it in this process (tests and embedding; the CLI resolves first and
/// may split the run over local workers, see [`crate::execute`]).
pub async fn run(a: RunArgs, stops: Stops) -> anyhow::Result<Outcome> {
    run_config(config::resolve(a)?, stops).await
}

/// Runs a resolved configuration in this process.
pub async fn run_config(mut cfg: RunConfig, stops: Stops) -> anyhow::Result<Outcome> {
    let mut embedded: Option<crate::novacron::Embedded> = None;
    if let Some(t) = cfg.resolved.builtin_target.clone() {
        let handle = start_builtin_target(&t, true).await?;
        if !cfg.resolved.quiet {
            eprintln!(
                "novaload: no --api-url given; started the built-in NovaCron target on {}{} ({} VMs seeded)",
                handle.base_url(),
                handle.describe(),
                t.seed_vms
            );
        }
        let ep = Endpoints::new(&handle.base_url(), None, None, cfg.args.token.as_deref());
        embedded = Some(handle);
        cfg.bind_plans(&ep);
    } else if let Some(u) = &cfg.args.url {
        preflight("--url", u).await?;
    } else if let Some(ep) = &cfg.resolved.endpoints {
        preflight("--api-url (API_URL)", &ep.api_url).await?;
    }
    let r = &cfg.resolved;
    // direct mode talks to the database: an unreachable one is bad input (exit 2) with the
    // driver's reason, as an unreachable API is, not a run of pool timeouts
    if r.plans
        .iter()
        .any(|p| matches!(p.workload, WorkloadKind::DbDirect(_)))
        && let Some(db) = cfg.args.database_url.as_deref()
    {
        crate::workload::db_direct::preflight(db, DB_PREFLIGHT_TIMEOUT).await?;
    }
    let results_dir = r.results.create()?;
    let telemetry = if r.telemetry_on {
        Telemetry::start(r.telemetry.clone())
            .await
            .context("starting telemetry")?
    } else {
        Telemetry::disabled()
    };
    if let Some(addr) = telemetry.metrics_addr()
        && !r.quiet
    {
        eprintln!("novaload: live metrics on http://{addr}/metrics");
    }
    let mut summaries: Vec<Summary> = Vec::new();
    let mut stems: Vec<String> = Vec::new();
    let mut interrupted = false;
    let ctx = PlanContext {
        results_dir: results_dir.clone(),
        run_id: r.run_id.clone(),
        run_id_generated: r.run_id_generated,
        profile: r.profile.clone(),
        quiet: r.quiet,
        telemetry: telemetry.clone(),
        settings: r.client.clone(),
        vu_threads: r.vu_threads,
        stops: stops.clone(),
        segment: r.segment.clone(),
        segment_label: r.telemetry.segment.clone(),
    };
    if let Some(at) = r.start_at {
        wait_until(at, &stops.interrupt, r.quiet).await;
    }
    let (html, junit) = (r.write_html, r.write_junit);
    let plans = &r.plans;
    if r.parallel {
        let outcomes =
            futures_util::future::join_all(plans.iter().map(|p| run_plan(p, &ctx))).await;
        for (p, (summary, was_interrupted)) in plans.iter().zip(outcomes) {
            interrupted |= was_interrupted;
            results::write_summary(&results_dir, &p.file_stem, &summary)?;
            summaries.push(summary);
            stems.push(p.file_stem.clone());
        }
        results::write_overview(&results_dir, &summaries, &stems, html, junit)?;
    } else {
        for p in plans {
            if stops.interrupt.is_cancelled() {
                break;
            }
            let (summary, was_interrupted) = run_plan(p, &ctx).await;
            interrupted |= was_interrupted;
            // written after every test, so a crash later still leaves the finished ones
            results::write_summary(&results_dir, &p.file_stem, &summary)?;
            summaries.push(summary);
            stems.push(p.file_stem.clone());
            results::write_overview(&results_dir, &summaries, &stems, html, junit)?;
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
        results::write_overview(&results_dir, &summaries, &stems, html, junit)?;
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

/// Starts the built-in target for a run. `client_in_process`: the load runs in this process
/// too, so each WebSocket costs two descriptors here and the target moves out of the process
/// sooner (see [`crate::novacron::embedded_workers`]).
pub(crate) async fn start_builtin_target(
    t: &config::BuiltinTarget,
    client_in_process: bool,
) -> anyhow::Result<crate::novacron::Embedded> {
    let mut targs = crate::novacron::TargetArgs::embedded();
    targs.seed_vms = t.seed_vms;
    if let Some(m) = t.migration_time {
        targs.migration_time = m;
    }
    let workers = crate::novacron::embedded_workers(
        t.ws_peak,
        client_in_process,
        crate::capacity::max_connections_per_process(),
    );
    crate::novacron::Embedded::start(targs, workers)
        .await
        .context("starting the built-in target")
}

/// Sleeps until `at` (`--start-at`, or the instant a parent gave its local workers), or an
/// interrupt.
pub(crate) async fn wait_until(
    at: chrono::DateTime<chrono::Utc>,
    interrupt: &CancellationToken,
    quiet: bool,
) {
    let Ok(wait) = (at - chrono::Utc::now()).to_std() else {
        return;
    };
    if !quiet {
        eprintln!(
            "novaload: waiting {:.1}s to start at {}",
            wait.as_secs_f64(),
            at.to_rfc3339()
        );
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = interrupt.cancelled() => {}
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
