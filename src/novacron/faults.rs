//! Fault injection for testing the tester: latency, errors, whole-server stalls, WebSocket
//! drops and migration outcomes. Nothing here spawns a task; stalls are windows computed from
//! the server's start instant, so a request just sleeps until the window it landed in ends.
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Validated fault settings (all off by default).
#[derive(Debug, Clone)]
pub struct Faults {
    pub latency: Duration,
    pub latency_jitter: Duration,
    pub error_rate: f64,
    /// Stall `stall_for` at every multiple of `stall_every` after start.
    pub stall_every: Option<Duration>,
    pub stall_for: Duration,
    pub ws_drop_rate: f64,
    pub migration_failure_rate: f64,
    /// Mean simulated migration time; each job draws ±20 % around it.
    pub migration_time: Duration,
    epoch: Instant,
}

impl Faults {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        latency: Duration,
        latency_jitter: Duration,
        error_rate: f64,
        stall_every: Option<Duration>,
        stall_for: Duration,
        ws_drop_rate: f64,
        migration_failure_rate: f64,
        migration_time: Duration,
    ) -> Faults {
        Faults {
            latency,
            latency_jitter,
            error_rate,
            stall_every,
            stall_for,
            ws_drop_rate,
            migration_failure_rate,
            migration_time,
            epoch: Instant::now(),
        }
    }

    /// When `now` falls inside a stall window, the instant that window ends.
    pub fn stall_end(&self, now: Instant) -> Option<Instant> {
        let every = self.stall_every?;
        if self.stall_for.is_zero() || every.is_zero() {
            return None;
        }
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let every_ns = every.as_nanos();
        let k = since / every_ns;
        if k == 0 {
            return None;
        }
        let into = since - k * every_ns;
        (into < self.stall_for.as_nanos())
            .then(|| now + Duration::from_nanos((self.stall_for.as_nanos() - into) as u64))
    }

    /// Holds the caller while the server is stalled.
    pub async fn wait_stall(&self) {
        while let Some(end) = self.stall_end(Instant::now()) {
            tokio::time::sleep_until(end).await;
        }
    }

    /// The injected latency plus jitter (uniform in ±jitter, never below zero).
    pub fn delay(&self) -> Duration {
        if self.latency_jitter.is_zero() {
            return self.latency;
        }
        let j = self.latency_jitter.as_secs_f64();
        let d = self.latency.as_secs_f64() + rand::rng().random_range(-j..=j);
        Duration::from_secs_f64(d.max(0.0))
    }

    /// Whether this request gets an injected 500.
    pub fn inject_error(&self) -> bool {
        chance(self.error_rate)
    }

    /// After how long this WebSocket connection is dropped abruptly, if it is.
    pub fn ws_drop_after(&self) -> Option<Duration> {
        chance(self.ws_drop_rate)
            .then(|| Duration::from_millis(rand::rng().random_range(100..10_000)))
    }

    /// A new migration's planned duration and whether it will fail.
    pub fn plan_migration(&self) -> (Duration, bool) {
        let mean = self.migration_time.as_secs_f64();
        let d = mean * rand::rng().random_range(0.8..=1.2);
        (
            Duration::from_secs_f64(d.max(0.001)),
            chance(self.migration_failure_rate),
        )
    }
}

fn chance(p: f64) -> bool {
    p >= 1.0 || (p > 0.0 && rand::rng().random_bool(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_windows() {
        let f = Faults::new(
            Duration::ZERO,
            Duration::ZERO,
            0.0,
            Some(Duration::from_secs(10)),
            Duration::from_secs(1),
            0.0,
            0.0,
            Duration::from_secs(1),
        );
        let e = f.epoch;
        assert_eq!(f.stall_end(e + Duration::from_secs(5)), None);
        assert_eq!(
            f.stall_end(e + Duration::from_millis(10_250)),
            Some(e + Duration::from_secs(11))
        );
        assert_eq!(f.stall_end(e + Duration::from_millis(11_001)), None);
    }
}
