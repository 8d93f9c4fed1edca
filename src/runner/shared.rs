//! [`Shared`]: what every VU task of one test shares (the workload, the recorder, the stop
//! tokens, the VU counts, the segment, the VU threads), and the one way an iteration is run
//! ([`Shared::iteration`]), which every executor uses.

use super::panics::Panics;
use crate::metrics::{Recorder, Sample, Tags};
use crate::plan::segment::SegmentPlan;
use crate::telemetry::{LiveSeries, RunLabels, Telemetry};
use crate::vu_threads::VuThreads;
use crate::workload::{ClientSettings, IterationTimers, Vu, Workload};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

pub(super) struct Shared<W> {
    pub(super) workload: Arc<W>,
    pub(super) rec: Arc<Recorder>,
    pub(super) tel: Telemetry,
    pub(super) settings: ClientSettings,
    pub(super) run_id: Arc<str>,
    pub(super) test: Arc<str>,
    /// Stop starting iterations (interrupt or abort).
    pub(super) stop_new: CancellationToken,
    /// `stop_new` mirrored into a flag for the per-iteration checks: the token's
    /// `is_cancelled` takes a mutex shared by every VU, which showed in profiles.
    pub(super) stopping: Arc<AtomicBool>,
    /// Stop everything now.
    pub(super) hard: CancellationToken,
    pub(super) active_vus: AtomicI64,
    pub(super) allocated_vus: AtomicU64,
    pub(super) next_vu_id: AtomicU64,
    pub(super) interrupted_iterations: AtomicU64,
    pub(super) segment: Option<Arc<SegmentPlan>>,
    /// The threads VUs run on with `--vu-threads`; none: the calling runtime.
    pub(super) vu_threads: Option<VuThreads>,
    /// Iterations (or VU tasks) that panicked, and the first distinct messages: a panic is a
    /// bug, so it is a run error (❌ FAIL) with its message, never a silently missing VU.
    pub(super) panics: Panics,
}

impl<W: Workload> Shared<W> {
    /// Starts a VU's task on its thread.
    pub(super) fn spawn_vu<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
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
    pub(super) fn mine(&self, j: u64) -> bool {
        self.segment.as_ref().is_none_or(|s| s.owns(j))
    }

    /// This segment's share of `n` (VUs, iterations); `n` without a segment.
    pub(super) fn share(&self, n: u64) -> u64 {
        self.segment.as_ref().map_or(n, |s| s.scale(n))
    }

    pub(super) fn new_vu(&self, scenario: &Arc<str>) -> Vu {
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
    pub(super) fn record(&self, tags: &Tags, live: &LiveSeries, sample: Sample<'_>) {
        crate::workload::record(&self.rec, tags, &self.tel, live, &sample);
    }

    /// Whether new iterations must not start (see `stopping`).
    #[inline]
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Runs one iteration until it ends, `deadline` passes, or the hard stop. Returns whether
    /// it completed. A panic in it unwinds the VU's task (the VU's state is unknown, so it
    /// stops), which [`Shared::record_task_panics`] turns into a run error: catching it here
    /// instead would move the whole iteration future once per iteration.
    pub(super) async fn iteration(
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
    pub(super) fn record_task_panics(&self, results: Vec<Result<(), tokio::task::JoinError>>) {
        for r in results {
            if let Err(e) = r
                && e.is_panic()
            {
                self.panics.record(e.into_panic().as_ref());
            }
        }
    }
}
