//! A VU's iteration timers: the runner bounds every iteration by a deadline (gracefulStop,
//! gracefulRampDown) and the hard stop. They live with the VU so one timer entry serves all of
//! its iterations instead of one registered per iteration.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A VU's iteration deadline timer and hard-stop waiter, reused across iterations.
pub struct IterationTimers {
    pub(crate) deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    current: Option<tokio::time::Instant>,
    pub(crate) stopped: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl IterationTimers {
    pub(crate) fn new(hard: &CancellationToken) -> Self {
        Self {
            deadline: Box::pin(tokio::time::sleep_until(far_future())),
            current: None,
            stopped: Box::pin(hard.clone().cancelled_owned()),
        }
    }

    pub(crate) fn set_deadline(&mut self, deadline: Option<tokio::time::Instant>) {
        if deadline != self.current {
            self.deadline
                .as_mut()
                .reset(deadline.unwrap_or_else(far_future));
            self.current = deadline;
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}
