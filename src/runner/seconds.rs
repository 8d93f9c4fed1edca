//! The once-a-second sweep of a run: VU gauges, the `*_per_second` gauges, the second's
//! snapshot to every [`SecondSink`] (time series, live progress) and the abortOnFail thresholds,
//! which stop the run when one fails. One last sweep runs when the run ends.

use super::shared::Shared;
use crate::metrics::{Agg, MetricId, Registry, Sample, SecondSink, Tags, builtin};
use crate::telemetry::RunLabels;
use crate::thresholds::Threshold;
use crate::workload::Workload;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the sweep is given by the run.
pub(super) struct Sweep<'a> {
    pub(super) registry: Arc<Registry>,
    pub(super) sinks: Vec<Box<dyn SecondSink>>,
    /// Every threshold of the test; the sweep evaluates those with abortOnFail.
    pub(super) thresholds: &'a [Threshold],
    /// (counter, gauge) pairs: each second the gauge gets the counter's increase in that second.
    pub(super) per_second: Vec<(MetricId, MetricId)>,
    /// Set to the failed abortOnFail threshold, if one fails.
    pub(super) aborted_by: Arc<Mutex<Option<String>>>,
    /// Cancelled when an abortOnFail threshold fails, as Ctrl-C would.
    pub(super) interrupt: CancellationToken,
    /// Cancelled at the end of the run: one last sweep, then the task ends.
    pub(super) stop: CancellationToken,
    pub(super) run_start: tokio::time::Instant,
}

/// Starts the sweep's task: first tick one second after `run_start`.
pub(super) fn spawn<W: Workload>(shared: Arc<Shared<W>>, sweep: Sweep<'_>) -> JoinHandle<()> {
    let Sweep {
        registry,
        mut sinks,
        thresholds,
        mut per_second,
        aborted_by,
        interrupt,
        stop,
        run_start,
    } = sweep;
    let rec = shared.rec.clone();
    let abort_thresholds: Vec<Threshold> = thresholds
        .iter()
        .filter(|t| t.abort_on_fail)
        .cloned()
        .collect();
    per_second.push((builtin::HTTP_REQS, builtin::HTTP_REQS_PER_SECOND));
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval_at(run_start + Duration::from_secs(1), Duration::from_secs(1));
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
}
