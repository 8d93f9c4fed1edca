//! The simulated DWCP v3 migration timeline: status, phase and progress as pure functions of the
//! stored start time, planned end and failure flag, so no task runs per job and any worker
//! process reading the row gives the same answer.
use serde_json::{Value, json};

use super::store::MigrationRow;

/// DWCP v3 orchestrator phases in order (spec §4.5), with their share of the planned time.
pub const PHASES: [(&str, f64); 8] = [
    ("initialization", 0.05),
    ("prefetch", 0.10),
    ("pre-copy", 0.35),
    ("convergence", 0.10),
    ("stop-and-copy", 0.10),
    ("post-copy", 0.10),
    ("verification", 0.10),
    ("cleanup", 0.10),
];
/// The phase a successful migration ends in.
pub const PHASE_COMPLETE: &str = "complete";

/// Status and phase at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub status: &'static str,
    pub phase: &'static str,
    /// 0..=100, one decimal.
    pub progress: f64,
}

/// Where `m` stands at `now` (epoch ms).
pub fn progress_at(m: &MigrationRow, now: i64) -> Progress {
    let span = (m.completes_at - m.started_at).max(1) as f64;
    if now >= m.completes_at {
        if m.fails {
            // A failing job stops in the phase it had reached when it failed.
            let (phase, _) = phase_for(1.0 - f64::EPSILON, m.fails_fraction());
            return Progress {
                status: "failed",
                phase,
                progress: round1(m.fails_fraction() * 100.0),
            };
        }
        return Progress {
            status: "completed",
            phase: PHASE_COMPLETE,
            progress: 100.0,
        };
    }
    let frac = ((now - m.started_at).max(0) as f64 / span).clamp(0.0, 1.0);
    let (phase, overall) = phase_for(frac, m.fails_fraction());
    Progress {
        status: if now < m.pending_until {
            "pending"
        } else {
            "in_progress"
        },
        phase,
        progress: round1(overall * 100.0),
    }
}

impl MigrationRow {
    /// Fraction of the full timeline this job covers: 1.0, or less when it fails midway
    /// (`completes_at` is then the failure instant).
    fn fails_fraction(&self) -> f64 {
        if self.fails { 0.6 } else { 1.0 }
    }
}

/// Phase name and overall progress for `frac` of this job's own span, which itself covers
/// `scale` of the full timeline.
fn phase_for(frac: f64, scale: f64) -> (&'static str, f64) {
    let overall = frac * scale;
    let mut acc = 0.0;
    for (name, share) in PHASES {
        acc += share;
        if overall < acc {
            return (name, overall);
        }
    }
    (PHASES[PHASES.len() - 1].0, overall)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn rfc3339(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// The JSON a poll returns.
pub fn to_json(m: &MigrationRow, now: i64) -> Value {
    let p = progress_at(m, now);
    let done = p.status == "completed" || p.status == "failed";
    json!({
        "job_id": m.job_id,
        "vm_id": m.vm_id,
        "source_zone": m.source_zone,
        "target_zone": m.target_zone,
        "protocol": m.protocol,
        "live_migration": m.live_migration,
        "status": p.status,
        "phase": p.phase,
        "progress": p.progress,
        "data_loss": m.data_loss,
        "started_at": rfc3339(m.started_at),
        "estimated_completion": rfc3339(m.completes_at),
        "completed_at": if done { rfc3339(m.completes_at) } else { Value::Null },
        "duration_ms": if done { json!(m.completes_at - m.started_at) } else { Value::Null },
        "error": if p.status == "failed" { json!(m.error_message) } else { Value::Null },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fails: bool) -> MigrationRow {
        MigrationRow {
            job_id: "j".into(),
            vm_id: "v".into(),
            source_zone: "a".into(),
            target_zone: "b".into(),
            protocol: "dwcp-v3".into(),
            live_migration: true,
            data_loss: false,
            started_at: 1000,
            pending_until: 1100,
            completes_at: 3000,
            fails,
            error_message: None,
        }
    }

    #[test]
    fn walks_every_phase_in_order_then_completes() {
        let m = row(false);
        let mut seen = vec![];
        for t in (1000..3000).step_by(10) {
            let p = progress_at(&m, t);
            if seen.last() != Some(&p.phase) {
                seen.push(p.phase);
            }
        }
        let names: Vec<&str> = PHASES.iter().map(|(n, _)| *n).collect();
        assert_eq!(seen, names);
        assert_eq!(progress_at(&m, 1050).status, "pending");
        assert_eq!(progress_at(&m, 2000).status, "in_progress");
        let end = progress_at(&m, 3000);
        assert_eq!(
            (end.status, end.phase, end.progress),
            ("completed", "complete", 100.0)
        );
    }

    #[test]
    fn failing_job_fails_midway() {
        let p = progress_at(&row(true), 5000);
        assert_eq!(p.status, "failed");
        assert!(p.progress < 100.0);
    }
}
