//! Executors as k6 defines them, reduced to pure schedule arithmetic: when each VU is active
//! (ramping/constant VUs) and when each iteration is meant to start (arrival rates). The runner
//! turns these into tasks; keeping the math here makes it testable without a clock.

pub mod segment;

use std::collections::BTreeMap;
use std::time::Duration;

/// One stage of a ramp: move linearly to `target` over `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// How a scenario schedules work.
#[derive(Debug, Clone, PartialEq)]
pub enum Executor {
    RampingVus {
        start_vus: u64,
        stages: Vec<Stage>,
        graceful_ramp_down: Duration,
    },
    ConstantVus {
        vus: u64,
        duration: Duration,
    },
    PerVuIterations {
        vus: u64,
        iterations: u64,
        max_duration: Duration,
    },
    SharedIterations {
        vus: u64,
        iterations: u64,
        max_duration: Duration,
    },
    ConstantArrivalRate {
        rate: f64,
        time_unit: Duration,
        duration: Duration,
        pre_allocated_vus: u64,
        max_vus: u64,
    },
    RampingArrivalRate {
        start_rate: f64,
        time_unit: Duration,
        stages: Vec<Stage>,
        pre_allocated_vus: u64,
        max_vus: u64,
    },
}

/// A named scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub start_time: Duration,
    pub graceful_stop: Duration,
    pub executor: Executor,
    pub tags: BTreeMap<String, String>,
}

impl Scenario {
    /// A scenario starting at once, with k6's default gracefulStop (30 s) and no tags.
    pub fn new(name: &str, executor: Executor) -> Self {
        Self {
            name: name.into(),
            start_time: Duration::ZERO,
            graceful_stop: Duration::from_secs(30),
            executor,
            tags: BTreeMap::new(),
        }
    }
}

impl Executor {
    pub fn name(&self) -> &'static str {
        match self {
            Executor::RampingVus { .. } => "ramping-vus",
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::PerVuIterations { .. } => "per-vu-iterations",
            Executor::SharedIterations { .. } => "shared-iterations",
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
        }
    }

    /// Scheduled duration, not counting graceful stop.
    pub fn duration(&self) -> Duration {
        match self {
            Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. } => {
                stages.iter().map(|s| s.duration).sum()
            }
            Executor::ConstantVus { duration, .. }
            | Executor::ConstantArrivalRate { duration, .. } => *duration,
            Executor::PerVuIterations { max_duration, .. }
            | Executor::SharedIterations { max_duration, .. } => *max_duration,
        }
    }

    /// Most VUs this executor can use at once.
    pub fn max_vus(&self) -> u64 {
        match self {
            Executor::RampingVus {
                start_vus, stages, ..
            } => stages
                .iter()
                .map(|s| s.target.floor() as u64)
                .max()
                .unwrap_or(0)
                .max(*start_vus),
            Executor::ConstantVus { vus, .. }
            | Executor::PerVuIterations { vus, .. }
            | Executor::SharedIterations { vus, .. } => *vus,
            Executor::ConstantArrivalRate { max_vus, .. }
            | Executor::RampingArrivalRate { max_vus, .. } => *max_vus,
        }
    }

    /// Is this an open model (iterations started on a clock, not by VUs finishing)?
    pub fn is_arrival_rate(&self) -> bool {
        matches!(
            self,
            Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. }
        )
    }

    /// Planned VUs (or, for arrival rates, iterations per second) at `t`, for progress display.
    pub fn target_at(&self, t: Duration) -> f64 {
        match self {
            Executor::RampingVus {
                start_vus, stages, ..
            } => piecewise(*start_vus as f64, stages, t),
            Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages,
                ..
            } => piecewise(*start_rate, stages, t) / time_unit.as_secs_f64(),
            Executor::ConstantArrivalRate {
                rate, time_unit, ..
            } => rate / time_unit.as_secs_f64(),
            other => other.max_vus() as f64,
        }
    }
}

fn piecewise(start: f64, stages: &[Stage], t: Duration) -> f64 {
    let mut from = start;
    let mut at = Duration::ZERO;
    for s in stages {
        if t < at + s.duration {
            let frac = (t - at).as_secs_f64() / s.duration.as_secs_f64().max(f64::MIN_POSITIVE);
            return from + (s.target - from) * frac;
        }
        at += s.duration;
        from = s.target;
    }
    from
}

/// The intervals (relative to scenario start) during which ramping VU number `index` (0-based)
/// is active: while the interpolated target is at least `index + 1`, as k6 does.
pub fn vu_active_intervals(
    start_vus: u64,
    stages: &[Stage],
    index: u64,
) -> Vec<(Duration, Duration)> {
    let need = index as f64 + 1.0;
    let mut out: Vec<(Duration, Duration)> = Vec::new();
    let mut active_since: Option<Duration> = (start_vus as f64 >= need).then_some(Duration::ZERO);
    let mut from = start_vus as f64;
    let mut at = Duration::ZERO;
    for s in stages {
        let to = s.target;
        let end = at + s.duration;
        if s.duration.is_zero() {
            // an instant jump
            match (active_since, to >= need) {
                (None, true) => active_since = Some(at),
                (Some(since), false) => {
                    out.push((since, at));
                    active_since = None;
                }
                _ => {}
            }
        } else if from < need && to >= need {
            // crosses upward inside this stage
            let frac = (need - from) / (to - from);
            active_since = Some(at + s.duration.mul_f64(frac));
        } else if from >= need && to < need {
            let frac = (from - need) / (from - to);
            let stop = at + s.duration.mul_f64(frac);
            if let Some(since) = active_since.take() {
                // a VU reaching the boundary exactly at the crossing still counts as active until it
                if stop > since {
                    out.push((since, stop));
                }
            }
        }
        from = to;
        at = end;
    }
    if let Some(since) = active_since
        && at > since
    {
        out.push((since, at));
    }
    out
}

/// Intended start offsets of iterations for arrival-rate executors, computed lazily.
pub struct ArrivalSchedule {
    /// (stage start, stage duration, rate at start per second, rate at end per second)
    segments: Vec<(f64, f64, f64, f64)>,
    total: f64,
    seg: usize,
    done_before: f64,
}

impl ArrivalSchedule {
    pub fn new(executor: &Executor) -> Option<Self> {
        let segments = match executor {
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration,
                ..
            } => {
                let r = rate / time_unit.as_secs_f64();
                vec![(0.0, duration.as_secs_f64(), r, r)]
            }
            Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages,
                ..
            } => {
                let unit = time_unit.as_secs_f64();
                let mut at = 0.0;
                let mut from = start_rate / unit;
                let mut v = Vec::new();
                for s in stages {
                    let to = s.target / unit;
                    v.push((at, s.duration.as_secs_f64(), from, to));
                    at += s.duration.as_secs_f64();
                    from = to;
                }
                v
            }
            _ => return None,
        };
        let total = segments.iter().map(|s| s.1).sum();
        Some(Self {
            segments,
            total,
            seg: 0,
            done_before: 0.0,
        })
    }

    /// Highest arrival rate of the executor, per second.
    pub fn peak_rate_per_s(executor: &Executor) -> f64 {
        match executor {
            Executor::ConstantArrivalRate {
                rate, time_unit, ..
            } => rate / time_unit.as_secs_f64(),
            Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages,
                ..
            } => {
                stages.iter().map(|s| s.target).fold(*start_rate, f64::max)
                    / time_unit.as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Offset of iteration `k` (0-based; the k-th arrival happens when the cumulative count
    /// reaches k), or None when the schedule ends before it. Call with increasing k.
    pub fn start_of(&mut self, k: u64) -> Option<Duration> {
        let n = k as f64;
        while self.seg < self.segments.len() {
            let (start, dur, r0, r1) = self.segments[self.seg];
            let in_seg = (r0 + r1) / 2.0 * dur;
            let local = n - self.done_before;
            if local < in_seg {
                // solve r0*t + (r1-r0)/(2*dur)*t^2 = local for t in [0, dur]
                let a = (r1 - r0) / (2.0 * dur);
                let t = if a.abs() < 1e-12 {
                    local / r0
                } else {
                    let disc = (r0 * r0 + 4.0 * a * local).max(0.0);
                    (-r0 + disc.sqrt()) / (2.0 * a)
                };
                let t = t.clamp(0.0, dur);
                let at = start + t;
                if at >= self.total {
                    return None;
                }
                return Some(Duration::from_secs_f64(at));
            }
            self.done_before += in_seg;
            self.seg += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(secs: u64, target: f64) -> Stage {
        Stage {
            duration: Duration::from_secs(secs),
            target,
        }
    }

    #[test]
    fn ramp_up_activates_vus_in_even_steps() {
        // 0 -> 10 over 10 s: VU i starts at (i+1) s and stays on to the end
        let stages = [st(10, 10.0), st(5, 10.0)];
        for i in 0..10 {
            let iv = vu_active_intervals(0, &stages, i);
            assert_eq!(iv.len(), 1, "vu {i}: {iv:?}");
            assert_eq!(iv[0].0, Duration::from_secs(i + 1));
            assert_eq!(iv[0].1, Duration::from_secs(15));
        }
        assert!(vu_active_intervals(0, &stages, 10).is_empty());
    }

    #[test]
    fn ramp_down_deactivates_highest_vus_first() {
        let stages = [st(10, 10.0), st(10, 0.0)];
        let top = vu_active_intervals(0, &stages, 9);
        assert_eq!(
            top,
            vec![(
                Duration::from_secs(10),
                Duration::from_secs(10) + Duration::from_nanos(0)
            )]
            .into_iter()
            .filter(|(a, b)| b > a)
            .collect::<Vec<_>>()
        );
        let first = vu_active_intervals(0, &stages, 0);
        assert_eq!(
            first,
            vec![(Duration::from_secs(1), Duration::from_secs(19))]
        );
    }

    #[test]
    fn vus_over_time_follow_the_stages() {
        // count active VUs at each half second and compare to floor(target)
        let stages = [st(4, 8.0), st(4, 8.0), st(4, 2.0)];
        let ivs: Vec<_> = (0..8).map(|i| vu_active_intervals(1, &stages, i)).collect();
        for half in 0..24 {
            let t = Duration::from_millis(half * 500 + 250);
            let active = ivs
                .iter()
                .filter(|iv| iv.iter().any(|(a, b)| *a <= t && t < *b))
                .count() as f64;
            let want = piecewise(1.0, &stages, t).floor();
            assert_eq!(active, want, "at {t:?}");
        }
    }

    #[test]
    fn constant_arrival_rate_spaces_starts_evenly() {
        let ex = Executor::ConstantArrivalRate {
            rate: 10.0,
            time_unit: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            pre_allocated_vus: 1,
            max_vus: 1,
        };
        let mut s = ArrivalSchedule::new(&ex).unwrap();
        let starts: Vec<_> = (0..25).map_while(|k| s.start_of(k)).collect();
        assert_eq!(starts.len(), 20);
        assert_eq!(starts[0], Duration::ZERO);
        assert!((starts[7].as_secs_f64() - 0.7).abs() < 1e-9);
    }

    #[test]
    fn ramping_arrival_rate_integrates_the_ramp() {
        // 0 -> 100/s over 10 s = 500 iterations, then 100/s for 1 s = 100 more
        let ex = Executor::RampingArrivalRate {
            start_rate: 0.0,
            time_unit: Duration::from_secs(1),
            stages: vec![st(10, 100.0), st(1, 100.0)],
            pre_allocated_vus: 1,
            max_vus: 1,
        };
        let mut s = ArrivalSchedule::new(&ex).unwrap();
        let starts: Vec<_> = (0..1000).map_while(|k| s.start_of(k)).collect();
        assert_eq!(starts.len(), 600);
        // half the ramp's iterations (250) happen by t = 10/sqrt(2)
        assert!((starts[250].as_secs_f64() - 10.0 / 2f64.sqrt()).abs() < 1e-6);
        assert!(starts.windows(2).all(|w| w[0] <= w[1]));
    }
}
