//! `--vu-threads N`: VUs on N threads with one single-threaded tokio runtime (event loop) each,
//! dealt out in turn — the model of wrk's `-t` and pgbench's `-j` threads. A VU, its
//! connections and their timers then stay on one thread: a response wakes the VU on the thread
//! already polling its socket, with none of the work-stealing scheduler's hand-offs between
//! threads. Measured (docs/PERFORMANCE.md): that is cheaper for VUs that each keep a database
//! connection; with an HTTP server on the same cores the shared runtime is faster, because it
//! moves VUs off a thread the server has preempted. Everything else (the schedule, the
//! per-second sweep, telemetry, the Prometheus endpoint) stays on the main runtime.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct VuThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Cancelled on drop: each thread's runtime returns from its `block_on` and drops the
    /// tasks it still has (the run is over by then).
    done: CancellationToken,
}

impl VuThreads {
    /// `n` threads (at least one). When the OS refuses a thread, the VUs run on the calling
    /// runtime instead (slower, but the run goes on). Call from within a runtime.
    pub fn start(n: usize) -> Self {
        let mut threads = Self::on(Vec::with_capacity(n.max(1)));
        for i in 0..n.max(1) {
            if let Err(e) = threads.start_one(i) {
                tracing::warn!(error = %e, "cannot start the VU threads; VUs share the main runtime");
                // the threads already started end when `threads` is dropped
                return Self::on(vec![Handle::current()]);
            }
        }
        threads
    }

    fn on(handles: Vec<Handle>) -> Self {
        Self {
            handles,
            next: AtomicUsize::new(0),
            done: CancellationToken::new(),
        }
    }

    fn start_one(&mut self, i: usize) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let done = self.done.clone();
        std::thread::Builder::new()
            .name(format!("novaload-vu-{i}"))
            .spawn(move || runtime.block_on(done.cancelled()))?;
        self.handles.push(handle);
        Ok(())
    }

    /// Runs a VU's task on the next thread in turn.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(task)
    }
}

impl Drop for VuThreads {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[tokio::test]
    async fn vus_are_dealt_out_to_their_threads_in_turn_and_end_with_them() {
        let threads = VuThreads::start(2);
        let mut names = Vec::new();
        for _ in 0..4 {
            let name = threads
                .spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .unwrap();
            names.push(name.unwrap_or_default());
        }
        assert_eq!(names[0], names[2], "{names:?}");
        assert_eq!(names[1], names[3], "{names:?}");
        let distinct: BTreeSet<_> = names.iter().cloned().collect();
        assert_eq!(
            distinct,
            BTreeSet::from(["novaload-vu-0".to_owned(), "novaload-vu-1".to_owned()])
        );
        // a VU still running when the threads end is dropped, not left behind
        let forever = threads.spawn(std::future::pending::<()>());
        drop(threads);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), forever).await;
        assert!(ended.expect("thread ended").unwrap_err().is_cancelled());
    }
}
