//! The runner: turns scenarios into VU tasks on tokio, owns cancellation (end of schedule,
//! graceful ramp-down/stop, Ctrl-C, threshold aborts), sweeps per-second metrics, and returns
//! the merged snapshot. It knows nothing of protocols: that is the [`Workload`]'s job.
//!
//! Files, by job:
//! - `mod.rs` (here): [`TestRun`], [`RunOutcome`], [`run`] (setup, the scenarios, teardown,
//!   the overall deadlines) and the choice of executor for a scenario.
//! - `shared.rs`: what every VU task of a run shares, and running one iteration.
//! - `closed.rs`: the VU-based executors (ramping-vus, constant-vus, per-vu-iterations,
//!   shared-iterations).
//! - `arrival.rs`: the arrival-rate executors (constant- and ramping-arrival-rate).
//! - `seconds.rs`: the once-a-second sweep (VU gauges, per-second gauges, sinks, abortOnFail).
//! - `panics.rs`: panics in VU code, setup and teardown become run errors.

mod arrival;
mod closed;
mod panics;
mod seconds;
mod shared;

use crate::metrics::{MetricId, Recorder, Registry, Sample, SecondSink, Snapshot, Tags};
use crate::plan::segment::SegmentPlan;
use crate::plan::{Executor, Scenario};
use crate::telemetry::{RunLabels, Telemetry};
use crate::thresholds::Threshold;
use crate::vu_threads::VuThreads;
use crate::workload::{ClientSettings, Vu, Workload};
use closed::Limit;
use panics::{Panics, catch_panic, panic_message};
use shared::Shared;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

/// Everything one test run needs.
pub struct TestRun {
    pub test: String,
    pub run_id: Arc<str>,
    pub scenarios: Vec<Scenario>,
    pub registry: Arc<Registry>,
    pub thresholds: Vec<Threshold>,
    pub telemetry: Telemetry,
    pub settings: ClientSettings,
    /// Cancelled on Ctrl-C/SIGTERM: stop starting iterations, finish within gracefulStop.
    pub interrupt: CancellationToken,
    /// Cancelled on a second Ctrl-C: stop now.
    pub kill: CancellationToken,
    pub sinks: Vec<Box<dyn SecondSink>>,
    pub setup_timeout: Duration,
    pub teardown_timeout: Duration,
    /// (counter, gauge) pairs: each second the gauge gets the counter's increase in that second.
    pub per_second: Vec<(MetricId, MetricId)>,
    /// Run only this execution segment's share of every scenario (distributed runs).
    pub segment: Option<Arc<SegmentPlan>>,
    /// VUs run on this many single-threaded event loops ([`VuThreads`]); 0: on the calling
    /// (work-stealing) runtime.
    pub vu_threads: usize,
}

impl TestRun {
    /// One test with k6's defaults (60 s setup/teardown and request timeout, no TLS) and
    /// nothing else attached: no thresholds, sinks, per-second gauges or segment. Override
    /// fields with struct update syntax.
    pub fn new(
        test: &str,
        run_id: &str,
        scenarios: Vec<Scenario>,
        registry: Registry,
        telemetry: Telemetry,
    ) -> Self {
        Self {
            test: test.into(),
            run_id: Arc::from(run_id),
            scenarios,
            registry: Arc::new(registry),
            thresholds: Vec::new(),
            telemetry,
            settings: ClientSettings {
                tls: None,
                request_timeout: Duration::from_secs(60),
                ..Default::default()
            },
            interrupt: CancellationToken::new(),
            kill: CancellationToken::new(),
            sinks: Vec::new(),
            setup_timeout: Duration::from_secs(60),
            teardown_timeout: Duration::from_secs(60),
            per_second: Vec::new(),
            segment: None,
            vu_threads: 0,
        }
    }
}

/// What happened.
pub struct RunOutcome {
    pub snapshot: Snapshot,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration: Duration,
    /// Stopped early by Ctrl-C/SIGTERM.
    pub interrupted: bool,
    /// A threshold with abortOnFail failed: which one.
    pub aborted_by: Option<String>,
    /// Setup/teardown failures and other run errors.
    pub errors: Vec<String>,
    pub vus_max: u64,
    /// Iterations cut short by a graceful deadline.
    pub interrupted_iterations: u64,
}

/// Runs one test: setup, every scenario, teardown. Never panics on workload failures.
pub async fn run<W: Workload>(workload: Arc<W>, mut params: TestRun) -> RunOutcome {
    let started_at = chrono::Utc::now();
    let rec = Arc::new(Recorder::new(params.registry.clone()));
    let stop_new = params.interrupt.child_token();
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let (token, flag) = (stop_new.clone(), stopping.clone());
        tokio::spawn(async move {
            token.cancelled().await;
            flag.store(true, Ordering::Release);
        });
    }
    let shared = Arc::new(Shared {
        workload,
        rec: rec.clone(),
        tel: params.telemetry.clone(),
        settings: params.settings.clone(),
        run_id: params.run_id.clone(),
        test: Arc::from(params.test.as_str()),
        stop_new,
        stopping,
        hard: params.kill.child_token(),
        active_vus: AtomicI64::new(0),
        allocated_vus: AtomicU64::new(0),
        next_vu_id: AtomicU64::new(1),
        interrupted_iterations: AtomicU64::new(0),
        segment: params.segment.clone(),
        vu_threads: (params.vu_threads > 0).then(|| VuThreads::start(params.vu_threads)),
        panics: Panics::default(),
    });
    let mut errors = Vec::new();
    let setup_scenario: Arc<str> = Arc::from("setup");

    // setup() in VU 0
    let mut vu0 = Vu::new(
        0,
        RunLabels {
            run_id: shared.run_id.clone(),
            test: shared.test.clone(),
            scenario: setup_scenario.clone(),
        },
        rec.clone(),
        shared.tel.clone(),
        shared.settings.clone(),
        shared.hard.clone(),
    );
    let setup = catch_panic(shared.workload.setup(&mut vu0));
    let setup_ok = match tokio::time::timeout(params.setup_timeout, setup).await {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(e))) => {
            errors.push(format!("setup failed: {e:#}"));
            false
        }
        Ok(Err(payload)) => {
            errors.push(format!(
                "setup panicked: {} (a bug in novaload; please report it)",
                panic_message(payload.as_ref())
            ));
            false
        }
        Err(_) => {
            errors.push(format!(
                "setup timed out after {}",
                humantime::format_duration(params.setup_timeout)
            ));
            false
        }
    };

    let run_start = tokio::time::Instant::now();
    let max_vus: u64 = params
        .scenarios
        .iter()
        .map(|s| shared.share(s.executor.max_vus()))
        .sum();
    let total_planned = params
        .scenarios
        .iter()
        .map(|s| s.start_time + s.executor.duration() + s.graceful_stop)
        .max()
        .unwrap_or_default();

    // Per-second sweep: time series, live progress, VU gauges, abortOnFail thresholds.
    let sweep_stop = CancellationToken::new();
    let aborted_by = Arc::new(std::sync::Mutex::new(None::<String>));
    let sweep = seconds::spawn(
        shared.clone(),
        seconds::Sweep {
            registry: params.registry.clone(),
            sinks: std::mem::take(&mut params.sinks),
            thresholds: &params.thresholds,
            per_second: std::mem::take(&mut params.per_second),
            aborted_by: aborted_by.clone(),
            interrupt: params.interrupt.clone(),
            stop: sweep_stop.clone(),
            run_start,
        },
    );

    // Graceful deadline after an interrupt: iterations get the longest gracefulStop, then stop.
    let grace = params
        .scenarios
        .iter()
        .map(|s| s.graceful_stop)
        .max()
        .unwrap_or_default();
    let reaper = {
        let interrupt = params.interrupt.clone();
        let hard = shared.hard.clone();
        tokio::spawn(async move {
            interrupt.cancelled().await;
            tokio::time::sleep(grace).await;
            hard.cancel();
        })
    };

    if setup_ok {
        let mut tasks = Vec::new();
        for sc in params.scenarios.clone() {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let start = run_start + sc.start_time;
                tokio::select! {
                    _ = sleep_until(start) => {}
                    _ = shared.stop_new.cancelled() => return,
                }
                run_scenario(shared, sc, start).await;
            }));
        }
        // Bound the whole run by its plan: nothing outlives schedule + graceful stop.
        let all = futures_util::future::join_all(tasks);
        match tokio::time::timeout(total_planned + Duration::from_secs(5), all).await {
            Ok(results) => shared.record_task_panics(results),
            Err(_) => {
                shared.hard.cancel();
                errors.push("scenarios overran their schedule plus gracefulStop; stopped".into());
            }
        }
    }
    let duration = run_start.elapsed();
    reaper.abort();
    sweep_stop.cancel();
    let _ = sweep.await;

    if setup_ok {
        let mut vu0 = Vu::new(
            0,
            RunLabels {
                run_id: shared.run_id.clone(),
                test: shared.test.clone(),
                scenario: Arc::from("teardown"),
            },
            rec.clone(),
            shared.tel.clone(),
            shared.settings.clone(),
            params.kill.child_token(),
        );
        let teardown = catch_panic(shared.workload.teardown(&mut vu0));
        match tokio::time::timeout(params.teardown_timeout, teardown).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => errors.push(format!("teardown failed: {e:#}")),
            Ok(Err(payload)) => errors.push(format!(
                "teardown panicked: {} (a bug in novaload; please report it)",
                panic_message(payload.as_ref())
            )),
            Err(_) => errors.push(format!(
                "teardown timed out after {}",
                humantime::format_duration(params.teardown_timeout)
            )),
        }
    }

    errors.extend(shared.panics.run_errors());
    let aborted_by = aborted_by.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // the run is over: release the `stopping` watcher task
    shared.stop_new.cancel();
    RunOutcome {
        snapshot: rec.snapshot(),
        started_at,
        duration,
        interrupted: params.interrupt.is_cancelled() && aborted_by.is_none(),
        aborted_by,
        errors,
        vus_max: max_vus,
        interrupted_iterations: shared.interrupted_iterations.load(Ordering::Relaxed),
    }
}

/// Runs one scenario from `start` with its executor (`closed.rs` or `arrival.rs`).
async fn run_scenario<W: Workload>(
    shared: Arc<Shared<W>>,
    sc: Scenario,
    start: tokio::time::Instant,
) {
    // counters exist from the start (at 0), so "rate of drops" is 0 rather than absent
    let labels = RunLabels {
        run_id: shared.run_id.clone(),
        test: shared.test.clone(),
        scenario: Arc::from(sc.name.as_str()),
    };
    let live = shared.tel.run_series(&labels);
    shared.record(&Tags::default(), &live, Sample::DroppedIterations { n: 0 });
    let name: Arc<str> = Arc::from(sc.name.as_str());
    let end = start + sc.executor.duration();
    let stop_deadline = end + sc.graceful_stop;
    match &sc.executor {
        Executor::RampingVus { .. } => {
            closed::ramping_vus(&shared, &name, &sc.executor, start, end, stop_deadline).await;
        }
        Executor::ConstantVus { vus, .. } => {
            let vus = shared.share(*vus);
            closed::looping_vus(&shared, &name, vus, end, stop_deadline, Limit::None).await;
        }
        Executor::PerVuIterations {
            vus, iterations, ..
        } => {
            closed::looping_vus(
                &shared,
                &name,
                shared.share(*vus),
                end,
                stop_deadline,
                Limit::PerVu(*iterations),
            )
            .await;
        }
        Executor::SharedIterations {
            vus, iterations, ..
        } => {
            // iterations split exactly; a segment with iterations but no VU of its own gets one
            let iterations = shared.share(*iterations);
            let vus = shared.share(*vus).max(u64::from(iterations > 0));
            let left = Arc::new(AtomicU64::new(iterations));
            closed::looping_vus(&shared, &name, vus, end, stop_deadline, Limit::Shared(left)).await;
        }
        Executor::ConstantArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        }
        | Executor::RampingArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        } => {
            arrival::arrival_rate(
                &shared,
                &name,
                &sc.executor,
                start,
                stop_deadline,
                shared.share(*pre_allocated_vus).max(1),
                shared.share(*max_vus).max(1),
            )
            .await;
        }
    }
}
