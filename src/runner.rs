//! The runner: turns scenarios into VU tasks on tokio, owns cancellation (end of schedule,
//! graceful ramp-down/stop, Ctrl-C, threshold aborts), sweeps per-second metrics, and returns
//! the merged snapshot. It knows nothing of protocols: that is the [`Workload`]'s job.

use crate::metrics::{
    Agg, MetricId, Recorder, Registry, Sample, SecondSink, Snapshot, Tags, builtin,
};
use crate::plan::segment::SegmentPlan;
use crate::plan::{ArrivalSchedule, Executor, Scenario, vu_active_intervals};
use crate::telemetry::{LiveSeries, RunLabels, Telemetry};
use crate::thresholds::Threshold;
use crate::vu_threads::VuThreads;
use crate::workload::{ClientSettings, IterationTimers, Vu, Workload};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
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

struct Shared<W> {
    workload: Arc<W>,
    rec: Arc<Recorder>,
    tel: Telemetry,
    settings: ClientSettings,
    run_id: Arc<str>,
    test: Arc<str>,
    /// Stop starting iterations (interrupt or abort).
    stop_new: CancellationToken,
    /// `stop_new` mirrored into a flag for the per-iteration checks: the token's
    /// `is_cancelled` takes a mutex shared by every VU, which showed in profiles.
    stopping: Arc<AtomicBool>,
    /// Stop everything now.
    hard: CancellationToken,
    active_vus: AtomicI64,
    allocated_vus: AtomicU64,
    next_vu_id: AtomicU64,
    interrupted_iterations: AtomicU64,
    segment: Option<Arc<SegmentPlan>>,
    /// The threads VUs run on with `--vu-threads`; none: the calling runtime.
    vu_threads: Option<VuThreads>,
    /// Iterations (or VU tasks) that panicked, and the first distinct messages: a panic is a
    /// bug, so it is a run error (❌ FAIL) with its message, never a silently missing VU.
    panics: Panics,
}

/// Panics caught in VU code: counted, with the first few distinct messages kept.
#[derive(Default)]
pub(crate) struct Panics {
    count: AtomicU64,
    messages: std::sync::Mutex<Vec<String>>,
}

impl Panics {
    /// Distinct panic messages kept for the summary.
    const KEPT: usize = 5;

    fn record(&self, payload: &(dyn std::any::Any + Send)) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let message = panic_message(payload);
        let line = format!("a VU task panicked: {message}");
        let mut kept = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < Self::KEPT && !kept.contains(&line) {
            kept.push(line);
        }
    }

    /// The run errors to report: one line per kept message, and the total.
    fn run_errors(&self) -> Vec<String> {
        let n = self.count.load(Ordering::Relaxed);
        if n == 0 {
            return Vec::new();
        }
        let kept = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = vec![format!(
            "{n} VU panic(s): a bug in novaload, not in the system under test — please report it with the lines below"
        )];
        out.extend(kept.iter().cloned());
        out
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-text panic payload)".to_string()
    }
}

/// Runs `fut`, turning a panic inside it into `Err(payload)` instead of unwinding into the
/// caller (the runner's own task, or the main thread for setup and teardown).
async fn catch_panic<F: std::future::Future>(
    fut: F,
) -> Result<F::Output, Box<dyn std::any::Any + Send>> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(fut).catch_unwind().await
}

impl<W: Workload> Shared<W> {
    /// Starts a VU's task on its thread.
    fn spawn_vu<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.vu_threads {
            Some(threads) => threads.spawn(task),
            None => tokio::spawn(task),
        }
    }

    /// Does index `j` of the full plan (a VU, an arrival) belong to this process's segment?
    fn mine(&self, j: u64) -> bool {
        self.segment.as_ref().is_none_or(|s| s.owns(j))
    }

    /// This segment's share of `n` (VUs, iterations); `n` without a segment.
    fn share(&self, n: u64) -> u64 {
        self.segment.as_ref().map_or(n, |s| s.scale(n))
    }

    fn new_vu(&self, scenario: &Arc<str>) -> Vu {
        let id = self.next_vu_id.fetch_add(1, Ordering::Relaxed);
        let labels = RunLabels {
            run_id: self.run_id.clone(),
            test: self.test.clone(),
            scenario: scenario.clone(),
        };
        Vu::new(
            id,
            labels,
            self.rec.clone(),
            self.tel.clone(),
            self.settings.clone(),
            self.hard.clone(),
        )
    }

    /// Records a sample of the runner's own (not a VU's) on the k6 recorder and the live
    /// instruments.
    fn record(&self, tags: &Tags, live: &LiveSeries, sample: Sample<'_>) {
        crate::workload::record(&self.rec, tags, &self.tel, live, &sample);
    }

    /// Whether new iterations must not start (see `stopping`).
    #[inline]
    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Runs one iteration until it ends, `deadline` passes, or the hard stop. Returns whether
    /// it completed. A panic in it unwinds the VU's task (the VU's state is unknown, so it
    /// stops), which [`Shared::record_task_panics`] turns into a run error: catching it here
    /// instead would move the whole iteration future once per iteration.
    async fn iteration(
        &self,
        vu: &mut Vu,
        deadline: Option<tokio::time::Instant>,
        intended: Option<Instant>,
    ) -> bool {
        vu.iteration += 1;
        vu.iteration_span = Some(self.tel.iteration_span(&vu.labels, vu.id, vu.iteration));
        vu.intended_start = intended;
        let start = Instant::now();
        // The deadline timer and the stop waiter live across iterations (taken out of the VU
        // while the iteration borrows it): one timer entry per VU, not one per iteration.
        let mut timers = vu
            .timers
            .take()
            .unwrap_or_else(|| IterationTimers::new(&self.hard));
        timers.set_deadline(deadline);
        let completed = {
            let fut = self.workload.iteration(vu);
            tokio::select! {
                _ = fut => true,
                _ = timers.deadline.as_mut() => false,
                _ = timers.stopped.as_mut() => false,
            }
        };
        vu.timers = Some(timers);
        let span = vu.iteration_span.take();
        if completed {
            let duration = start.elapsed();
            let trace = span.as_ref().and_then(|s| s.sampled_trace_id());
            vu.record(Sample::Iteration {
                duration,
                corrected: intended.map(|i| i.elapsed()),
                trace: trace.as_deref(),
            });
            if let Some(s) = span {
                s.end(None);
            }
        } else {
            self.interrupted_iterations.fetch_add(1, Ordering::Relaxed);
            // the connection may be mid-request: start clean next time
            vu.http.reset();
            if let Some(s) = span {
                s.end(Some("iteration interrupted by the end of the run"));
            }
        }
        vu.intended_start = None;
        completed
    }

    /// Counts VU tasks that died outside an iteration (a panic in the runner's own VU code).
    fn record_task_panics(&self, results: Vec<Result<(), tokio::task::JoinError>>) {
        for r in results {
            if let Err(e) = r
                && e.is_panic()
            {
                self.panics.record(e.into_panic().as_ref());
            }
        }
    }
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
    let sweep = {
        let shared = shared.clone();
        let rec = rec.clone();
        let registry = params.registry.clone();
        let mut sinks = std::mem::take(&mut params.sinks);
        let abort_thresholds: Vec<Threshold> = params
            .thresholds
            .iter()
            .filter(|t| t.abort_on_fail)
            .cloned()
            .collect();
        let stop = sweep_stop.clone();
        let mut per_second = std::mem::take(&mut params.per_second);
        per_second.push((builtin::HTTP_REQS, builtin::HTTP_REQS_PER_SECOND));
        let aborted_by = aborted_by.clone();
        let interrupt = params.interrupt.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                run_start + Duration::from_secs(1),
                Duration::from_secs(1),
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let labels = RunLabels {
                run_id: shared.run_id.clone(),
                test: shared.test.clone(),
                scenario: Arc::from("all"),
            };
            let live = shared.tel.run_series(&labels);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stop.cancelled() => true,
                };
                let vus = shared.active_vus.load(Ordering::Relaxed);
                let allocated = shared.allocated_vus.load(Ordering::Relaxed);
                let sample = Sample::Vus {
                    active: vus,
                    max: allocated,
                };
                shared.record(&Tags::default(), &live, sample);
                let snap = rec.take_second();
                if !last {
                    for (counter, gauge) in &per_second {
                        let n = snap
                            .metrics
                            .iter()
                            .find(|(m, _)| m == counter)
                            .map(|(_, a)| {
                                if let Agg::Counter { sum } = a {
                                    *sum
                                } else {
                                    0.0
                                }
                            })
                            .unwrap_or(0.0);
                        if n > 0.0 {
                            rec.record(*gauge, n, &Tags::default());
                        }
                    }
                }
                for s in sinks.iter_mut() {
                    s.second(&snap, &registry, vus, allocated);
                }
                if !abort_thresholds.is_empty() && !last {
                    let elapsed = run_start.elapsed();
                    let due: Vec<&Threshold> = abort_thresholds
                        .iter()
                        .filter(|t| t.delay_abort_eval.is_none_or(|d| elapsed >= d))
                        .collect();
                    if !due.is_empty() {
                        let full = rec.snapshot();
                        let secs = elapsed.as_secs_f64();
                        if let Some(t) = due.iter().find(|t| !t.evaluate(&full, secs).ok) {
                            *aborted_by.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(format!("{}: {}", t.metric_key, t.source));
                            shared.stop_new.cancel();
                            interrupt.cancel();
                        }
                    }
                }
                if last {
                    break;
                }
            }
        })
    };

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
        Executor::RampingVus {
            start_vus,
            stages,
            graceful_ramp_down,
        } => {
            let max = sc.executor.max_vus();
            shared
                .allocated_vus
                .fetch_add(shared.share(max), Ordering::Relaxed);
            let mut tasks = Vec::with_capacity(max as usize);
            // VU i of the full plan runs in exactly one segment
            for i in (0..max).filter(|i| shared.mine(*i)) {
                let intervals = vu_active_intervals(*start_vus, stages, i);
                if intervals.is_empty() {
                    continue;
                }
                let shared = shared.clone();
                let name = name.clone();
                let grd = *graceful_ramp_down;
                tasks.push(shared.clone().spawn_vu(async move {
                    let mut vu: Option<Vu> = None;
                    for (from, to) in intervals {
                        let (from, to) = (start + from, start + to);
                        tokio::select! {
                            _ = sleep_until(from) => {}
                            _ = shared.stop_new.cancelled() => return,
                        }
                        let vu = vu.get_or_insert_with(|| shared.new_vu(&name));
                        shared.active_vus.fetch_add(1, Ordering::Relaxed);
                        // the last interval ends with the scenario: gracefulStop applies, else gracefulRampDown
                        let deadline = if to >= end { stop_deadline } else { to + grd };
                        while tokio::time::Instant::now() < to && !shared.is_stopping() {
                            shared.iteration(vu, Some(deadline), None).await;
                        }
                        shared.active_vus.fetch_sub(1, Ordering::Relaxed);
                    }
                }));
            }
            shared.record_task_panics(futures_util::future::join_all(tasks).await);
        }
        Executor::ConstantVus { vus, .. } => {
            let vus = shared.share(*vus);
            looping_vus(&shared, &name, vus, end, stop_deadline, Limit::None).await;
        }
        Executor::PerVuIterations {
            vus, iterations, ..
        } => {
            looping_vus(
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
            looping_vus(&shared, &name, vus, end, stop_deadline, Limit::Shared(left)).await;
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
            arrival_rate(
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

/// How many iterations closed-model VUs may run.
#[derive(Clone)]
enum Limit {
    None,
    PerVu(u64),
    Shared(Arc<AtomicU64>),
}

impl Limit {
    fn take(&self, done: u64) -> bool {
        match self {
            Limit::None => true,
            Limit::PerVu(n) => done < *n,
            Limit::Shared(left) => left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// Closed-model VUs that loop until `end`, the stop, or their iteration limit.
async fn looping_vus<W: Workload>(
    shared: &Arc<Shared<W>>,
    name: &Arc<str>,
    vus: u64,
    end: tokio::time::Instant,
    deadline: tokio::time::Instant,
    limit: Limit,
) {
    shared.allocated_vus.fetch_add(vus, Ordering::Relaxed);
    let mut tasks = Vec::with_capacity(vus as usize);
    for _ in 0..vus {
        let shared = shared.clone();
        let name = name.clone();
        let limit = limit.clone();
        tasks.push(shared.clone().spawn_vu(async move {
            let mut vu = shared.new_vu(&name);
            shared.active_vus.fetch_add(1, Ordering::Relaxed);
            let mut done = 0;
            while tokio::time::Instant::now() < end && !shared.is_stopping() && limit.take(done) {
                shared.iteration(&mut vu, Some(deadline), None).await;
                done += 1;
            }
            shared.active_vus.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    shared.record_task_panics(futures_util::future::join_all(tasks).await);
}

/// How long a start may wait for a free VU before it is dropped.
const BACKLOG: Duration = Duration::from_secs(10);
/// A start picked up by a VU later than this after its intended time is late (waited for a VU).
const LATE_AFTER: Duration = Duration::from_millis(5);
/// tokio's timer fires on millisecond ticks, so the dispatcher wakes up to ~2 ms after an
/// intended start. Lateness up to this much is the dispatcher's timer, not the system under test.
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// Open model: a dispatcher starts iterations on a clock; VUs pick them up. A start that waits
/// for a free VU is late (counted, and its latency measured from the intended time, within the
/// timer's resolution: [`TIMER_SLACK`]); a start that would wait longer than [`BACKLOG`] worth of
/// arrivals is dropped (counted), as k6 drops them.
async fn arrival_rate<W: Workload>(
    shared: &Arc<Shared<W>>,
    name: &Arc<str>,
    executor: &Executor,
    start: tokio::time::Instant,
    stop_deadline: tokio::time::Instant,
    pre_allocated: u64,
    max_vus: u64,
) {
    let Some(mut schedule) = ArrivalSchedule::new(executor) else {
        return;
    };
    // Starts wait for a free VU for up to BACKLOG of arrivals (late, and measured from their
    // intended time: coordinated omission corrected); beyond that they are dropped, as k6 does.
    let peak_rate = ArrivalSchedule::peak_rate_per_s(executor)
        * shared.segment.as_ref().map_or(1.0, |s| s.width());
    let backlog =
        ((peak_rate * BACKLOG.as_secs_f64()).ceil() as u64).clamp(max_vus.max(1), 1_000_000);
    let (tx, rx) = mpsc::channel::<Instant>(backlog as usize);
    let end = start + executor.duration();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let idle = Arc::new(AtomicI64::new(0));
    let tags = Tags::scenario(name);
    let live = shared.tel.run_series(&RunLabels {
        run_id: shared.run_id.clone(),
        test: shared.test.clone(),
        scenario: name.clone(),
    });
    let spawn_vu = |shared: &Arc<Shared<W>>| {
        let shared = shared.clone();
        let name = name.clone();
        let rx = rx.clone();
        let idle = idle.clone();
        let tags = tags.clone();
        let live = live.clone();
        shared.allocated_vus.fetch_add(1, Ordering::Relaxed);
        shared.clone().spawn_vu(async move {
            let mut vu: Option<Vu> = None;
            loop {
                idle.fetch_add(1, Ordering::Relaxed);
                let next = { rx.lock().await.recv().await };
                idle.fetch_sub(1, Ordering::Relaxed);
                let Some(intended) = next else { break };
                if shared.is_stopping() {
                    break;
                }
                let late = intended.elapsed() > LATE_AFTER;
                if late && tokio::time::Instant::now() >= end {
                    // the schedule is over: a start still waiting for a VU is dropped, not run
                    // late (one picked up on time just after the end still runs)
                    shared.record(&tags, &live, Sample::DroppedIterations { n: 1 });
                    continue;
                }
                if late {
                    let values = &[(builtin::LATE_ITERATIONS, 1.0)];
                    shared.record(&tags, &live, Sample::Metrics { values, tags: None });
                }
                let vu = vu.get_or_insert_with(|| shared.new_vu(&name));
                shared.active_vus.fetch_add(1, Ordering::Relaxed);
                shared
                    .iteration(vu, Some(stop_deadline), Some(intended))
                    .await;
                shared.active_vus.fetch_sub(1, Ordering::Relaxed);
            }
        })
    };
    let mut tasks: Vec<_> = (0..pre_allocated).map(|_| spawn_vu(shared)).collect();
    let mut allocated = pre_allocated;
    let mut k = 0u64;
    while let Some(offset) = schedule.start_of(k) {
        k += 1;
        // arrival k-1 of the full schedule starts in exactly one segment
        if !shared.mine(k - 1) {
            continue;
        }
        let at = start + offset;
        tokio::select! {
            _ = sleep_until(at) => {}
            _ = shared.stop_new.cancelled() => break,
        }
        if idle.load(Ordering::Relaxed) <= 0 && allocated < max_vus {
            tasks.push(spawn_vu(shared));
            allocated += 1;
        }
        // The start's base for corrected latency: when it was dispatched, but never later than
        // TIMER_SLACK after `at`. Measuring from `at` itself put the timer's ~1 ms lateness into
        // every corrected sample (corrected p50 ~1 ms over raw on an idle server); a dispatcher
        // starved for longer is still charged.
        let at = at.into_std();
        let base = Instant::now().min(at + TIMER_SLACK).max(at);
        // The channel holds at most `backlog` waiting starts: beyond that a start is dropped.
        if tx.try_send(base).is_err() {
            shared.record(&tags, &live, Sample::DroppedIterations { n: 1 });
        }
    }
    drop(tx);
    // The scenario lasts its scheduled window, not until its last arrival: rates are over the
    // window (`--rate 0.5 --duration 2s` is 0.5/s, not one iteration over its own 2 ms).
    tokio::select! {
        _ = sleep_until(end) => {}
        _ = shared.stop_new.cancelled() => {}
    }
    shared.record_task_panics(futures_util::future::join_all(tasks).await);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Executor, Scenario};
    use crate::workload::Vu;

    /// Panics in VU 1's second iteration and, when asked, in setup; every other iteration
    /// completes at once.
    struct Panicky {
        in_setup: bool,
    }

    impl Workload for Panicky {
        async fn setup(&self, _vu: &mut Vu) -> anyhow::Result<()> {
            if self.in_setup {
                panic!("setup exploded");
            }
            Ok(())
        }
        async fn iteration(&self, vu: &mut Vu) {
            if vu.id == 1 && vu.iteration == 2 {
                panic!("chunk size overflow in VU {}", vu.id);
            }
            tokio::task::yield_now().await;
        }
    }

    fn two_vus_five_iterations() -> TestRun {
        let sc = Scenario::new(
            "default",
            Executor::PerVuIterations {
                vus: 2,
                iterations: 5,
                max_duration: Duration::from_secs(10),
            },
        );
        TestRun::new("t", "r", vec![sc], Registry::new(), Telemetry::disabled())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_iteration_is_a_run_error_with_its_message_and_stops_only_its_vu() {
        let o = run(
            Arc::new(Panicky { in_setup: false }),
            two_vus_five_iterations(),
        )
        .await;
        let iterations = o.snapshot.metric(builtin::ITERATIONS).values(1.0);
        // VU 2 runs its 5; VU 1 completes 1, then panics and stops
        assert_eq!(iterations.get("count"), Some(6.0));
        assert!(o.errors[0].starts_with("1 VU panic(s)"), "{:?}", o.errors);
        assert!(
            o.errors
                .iter()
                .any(|e| e == "a VU task panicked: chunk size overflow in VU 1"),
            "{:?}",
            o.errors
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_setup_is_a_run_error_not_the_callers_panic() {
        let o = run(
            Arc::new(Panicky { in_setup: true }),
            two_vus_five_iterations(),
        )
        .await;
        assert_eq!(
            o.errors,
            vec![
                "setup panicked: setup exploded (a bug in novaload; please report it)".to_string()
            ]
        );
        assert_eq!(o.snapshot.metric(builtin::ITERATIONS).samples(), 0);
    }
}
