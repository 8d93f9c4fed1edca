//! The shutdown deadline every OTLP export obeys.
//!
//! An export has its own timeout, but a collector that accepts connections and never answers
//! holds each export for that long; at shutdown an export already in flight must not outlive
//! the shutdown budget. Once [`CutoffSender::cut_at`] names the deadline, every export that is
//! in flight or started later ends by then (its result an error), so shutdown returns on time
//! and nothing of ours is still polling Tokio's timers or sockets when the runtime goes away
//! (which panics: "A Tokio 1.x context was found, but it is being shutdown").

use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Sets the deadline (once shutdown starts). Dropping it sets none: exports keep their timeouts.
pub struct CutoffSender(watch::Sender<Option<Instant>>);

/// Read side of the deadline, one per export loop.
#[derive(Clone)]
pub struct Cutoff(watch::Receiver<Option<Instant>>);

/// A new deadline pair, no deadline set yet.
pub fn cutoff() -> (CutoffSender, Cutoff) {
    let (tx, rx) = watch::channel(None);
    (CutoffSender(tx), Cutoff(rx))
}

impl CutoffSender {
    /// Every export in flight or started from now on ends by `deadline`.
    pub fn cut_at(&self, deadline: Instant) {
        // an earlier deadline wins: a second shutdown never extends the first
        self.0.send_if_modified(|d| match d {
            Some(old) if *old <= deadline => false,
            _ => {
                *d = Some(deadline);
                true
            }
        });
    }
}

impl Cutoff {
    /// The deadline, once shutdown has set one.
    pub fn deadline(&self) -> Option<Instant> {
        *self.0.borrow()
    }

    /// Runs `export` for at most `timeout`, and never past the shutdown deadline (also one set
    /// while it runs). Timing out or being cut off is an error naming which.
    pub async fn bound<F>(&mut self, timeout: Duration, export: F) -> Result<(), String>
    where
        F: Future<Output = Result<(), String>>,
    {
        let timed_out = || format!("timed out after {timeout:.1?}");
        let export = tokio::time::timeout(timeout, export);
        tokio::pin!(export);
        // Bounded: the loop only repeats when the deadline changes, and it is set at most a
        // few times (each shutdown call once).
        loop {
            let deadline = *self.0.borrow_and_update();
            if let Some(at) = deadline {
                let at = tokio::time::Instant::from_std(at);
                return match tokio::time::timeout_at(at, &mut export).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err(timed_out()),
                    Err(_) => Err("cut off at the telemetry shutdown deadline".to_owned()),
                };
            }
            tokio::select! {
                r = &mut export => return r.unwrap_or_else(|_| Err(timed_out())),
                changed = self.0.changed() => {
                    if changed.is_err() {
                        // the sender is gone: no deadline will come, the timeout still holds
                        return export.await.unwrap_or_else(|_| Err(timed_out()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_export_in_flight_ends_at_a_deadline_set_while_it_runs() {
        let (tx, mut rx) = cutoff();
        let started = Instant::now();
        let cut = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.cut_at(Instant::now() + Duration::from_millis(100));
        };
        let (r, ()) = tokio::join!(
            rx.bound(Duration::from_secs(30), std::future::pending()),
            cut
        );
        let took = started.elapsed();
        assert!(r.unwrap_err().contains("cut off"));
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }

    #[tokio::test]
    async fn the_export_timeout_holds_without_a_deadline_and_results_pass_through() {
        let (tx, mut rx) = cutoff();
        let r = rx
            .bound(Duration::from_millis(50), std::future::pending())
            .await;
        assert_eq!(r.unwrap_err(), "timed out after 50.0ms");
        assert_eq!(
            rx.bound(Duration::from_secs(1), async { Err("x".to_owned()) })
                .await,
            Err("x".to_owned())
        );
        drop(tx);
        assert_eq!(
            rx.bound(Duration::from_secs(1), async { Ok(()) }).await,
            Ok(())
        );
    }

    #[test]
    fn an_earlier_deadline_wins() {
        let (tx, rx) = cutoff();
        let now = Instant::now();
        tx.cut_at(now + Duration::from_secs(2));
        tx.cut_at(now + Duration::from_secs(5));
        assert_eq!(rx.deadline(), Some(now + Duration::from_secs(2)));
        tx.cut_at(now + Duration::from_secs(1));
        assert_eq!(rx.deadline(), Some(now + Duration::from_secs(1)));
    }
}
