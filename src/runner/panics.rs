//! Panics in VU code, setup and teardown: a panic is a bug in novaload, so it becomes a run
//! error (❌ FAIL) with its message, never a silently missing VU or a crashed run. VU tasks that
//! panic are counted here ([`Panics`]); setup and teardown run under [`catch_panic`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Panics caught in VU code: counted, with the first few distinct messages kept.
#[derive(Default)]
pub(super) struct Panics {
    count: AtomicU64,
    messages: std::sync::Mutex<Vec<String>>,
}

impl Panics {
    /// Distinct panic messages kept for the summary.
    const KEPT: usize = 5;

    pub(super) fn record(&self, payload: &(dyn std::any::Any + Send)) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let message = panic_message(payload);
        let line = format!("a VU task panicked: {message}");
        let mut kept = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < Self::KEPT && !kept.contains(&line) {
            kept.push(line);
        }
    }

    /// The run errors to report: one line per kept message, and the total.
    pub(super) fn run_errors(&self) -> Vec<String> {
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
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
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
pub(super) async fn catch_panic<F: std::future::Future>(
    fut: F,
) -> Result<F::Output, Box<dyn std::any::Any + Send>> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(fut).catch_unwind().await
}

#[cfg(test)]
mod tests {
    use crate::metrics::{Registry, builtin};
    use crate::plan::{Executor, Scenario};
    use crate::runner::{TestRun, run};
    use crate::telemetry::Telemetry;
    use crate::workload::{Vu, Workload};
    use std::sync::Arc;
    use std::time::Duration;

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
