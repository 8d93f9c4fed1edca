//! The open-model executors (k6's `constant-arrival-rate`, `ramping-arrival-rate`): iterations
//! start on a clock whatever the system under test does, so a slow one shows as late and
//! dropped starts instead of fewer iterations, and latency is corrected for the wait
//! (coordinated omission).

use super::shared::Shared;
use crate::metrics::{Sample, Tags, builtin};
use crate::plan::{ArrivalSchedule, Executor};
use crate::telemetry::RunLabels;
use crate::workload::{Vu, Workload};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

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
pub(super) async fn arrival_rate<W: Workload>(
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
