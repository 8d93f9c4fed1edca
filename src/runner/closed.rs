//! The closed-model executors: VUs that each run iterations one after another (k6's
//! `ramping-vus`, `constant-vus`, `per-vu-iterations`, `shared-iterations`). A new iteration
//! starts only when the VU's last one ends, so a slow system under test gets fewer iterations.

use super::shared::Shared;
use crate::plan::{Executor, vu_active_intervals};
use crate::workload::{Vu, Workload};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::sleep_until;

/// `ramping-vus`: VU i of the full plan is active in the intervals the stages give it; the
/// iteration running when an interval ends gets `graceful_ramp_down` (the last interval,
/// which ends with the scenario, gets gracefulStop).
pub(super) async fn ramping_vus<W: Workload>(
    shared: &Arc<Shared<W>>,
    name: &Arc<str>,
    executor: &Executor,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    stop_deadline: tokio::time::Instant,
) {
    let Executor::RampingVus {
        start_vus,
        stages,
        graceful_ramp_down,
    } = executor
    else {
        return;
    };
    let max = executor.max_vus();
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

/// How many iterations closed-model VUs may run.
#[derive(Clone)]
pub(super) enum Limit {
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
pub(super) async fn looping_vus<W: Workload>(
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
