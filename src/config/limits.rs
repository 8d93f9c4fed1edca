//! What one process can hold: refuses, before anything starts, runs whose VUs cannot fit this
//! machine, and decides when a run needs local worker processes (`--local-workers`).

use super::{Options, RunConfig, profile};
use crate::cli::{RunArgs, TestName};
use crate::error::ConfigError;
use crate::plan::segment::SegmentPlan;
use std::sync::Arc;

/// What one VU costs in memory, measured (docs/PERFORMANCE.md): a quick-mode or WebSocket VU
/// ~11 KiB, a REST workload VU up to ~240 KiB. Rounded up: the check refuses runs that cannot
/// fit, it does not promise that a run near the ceiling fits.
fn bytes_per_vu(test: &str) -> u64 {
    match test {
        "url" | "ws" => 16 * 1024,
        _ => 256 * 1024,
    }
}

/// Refuses, before anything starts, a run whose VUs cannot fit: more VUs in one process than
/// its open-files limit allows (each VU keeps a connection), or more VU memory than this
/// machine has available. Without this, `--vus 1000000000` allocated 15 GiB of task handles
/// before failing. Part of [`super::resolve`], after local workers are chosen.
pub(crate) fn check_capacity(cfg: &RunConfig) -> Result<(), ConfigError> {
    let a = &cfg.args;
    let r = &cfg.resolved;
    let (plans, segment, parallel) = (&r.plans, &r.segment, r.parallel);
    // (VUs of this process, their memory) per test
    let peaks: Vec<(u64, u64)> = plans
        .iter()
        .map(|p| {
            let vus: u64 = p
                .scenarios
                .iter()
                .map(|s| s.executor.max_vus())
                .fold(0u64, u64::saturating_add);
            let vus = segment.as_ref().map_or(vus, |s| s.scale(vus));
            (vus, vus.saturating_mul(bytes_per_vu(&p.test)))
        })
        .collect();
    let field = vu_field(a);
    // memory: tests side by side add up; one after the other, the largest counts
    let (vus, bytes) = if parallel {
        peaks.iter().fold((0u64, 0u64), |(v, b), (pv, pb)| {
            (v.saturating_add(*pv), b.saturating_add(*pb))
        })
    } else {
        peaks
            .iter()
            .copied()
            .max_by_key(|(_, b)| *b)
            .unwrap_or((0, 0))
    };
    if let Some(available) = available_memory_bytes()
        && bytes > available
    {
        return Err(ConfigError::new(
            field,
            format!(
                "{vus} VUs need about {} of memory; this machine has {} available",
                human_bytes(bytes),
                human_bytes(available)
            ),
            "use fewer VUs, or spread the run over machines with --segment i/N (one per machine, then novaload merge)",
        ));
    }
    // open files: each VU keeps a connection. Local workers (asked for, or started by
    // themselves for a ws peak above one process's files) split every test.
    let per_process = crate::capacity::max_connections_per_process();
    let workers = r.local_workers.unwrap_or(1).max(1);
    let vus_at_once = if parallel {
        peaks
            .iter()
            .map(|(v, _)| *v)
            .fold(0u64, u64::saturating_add)
    } else {
        peaks.iter().map(|(v, _)| *v).max().unwrap_or(0)
    };
    if vus_at_once.div_ceil(workers) > per_process {
        let needed = vus_at_once.div_ceil(per_process);
        return Err(ConfigError::new(
            field,
            format!(
                "{vus_at_once} VUs in {workers} process(es), but one process can hold about {per_process} (its open-files limit: each VU keeps a connection)"
            ),
            format!(
                "spread them with --local-workers {needed} (processes on this machine) or --segment i/N on several machines"
            ),
        ));
    }
    Ok(())
}

/// The flag a user would change to lower the VU count.
fn vu_field(a: &RunArgs) -> String {
    if a.rate.is_some() && (a.max_vus.is_some() || a.vus.is_some()) {
        "--vus/--max-vus".into()
    } else if a.vus.is_some() {
        "--vus".into()
    } else if !a.stages.is_empty() {
        "--stage".into()
    } else if let Some(p) = &a.scenario {
        format!("--scenario {}", p.display())
    } else {
        format!("--profile {}", a.profile.as_deref().unwrap_or("smoke"))
    }
}

/// `MemAvailable` of /proc/meminfo (None where there is none).
fn available_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

fn human_bytes(b: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    if b as f64 >= GIB {
        format!("{:.1} GiB", b as f64 / GIB)
    } else {
        format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
    }
}

/// Peak concurrent connections a ws run would open (its most VUs), if the run includes ws.
pub(crate) fn ws_peak_connections(a: &RunArgs, file: Option<&Options>) -> Option<u64> {
    if a.url.is_some() || !matches!(a.test, Some(TestName::Ws) | Some(TestName::All)) {
        return None;
    }
    let prof = profile::plan(TestName::Ws, a.profile.as_deref().unwrap_or("smoke")).ok()?;
    let mut options = Options {
        stages: Some(prof.stages),
        vus: Some(1),
        ..Options::default()
    };
    if let Some(file) = file
        && (file.scenarios.is_some() || file.stages.is_some() || file.duration.is_some())
    {
        options = file.clone();
    }
    let options = super::overrides::apply_overrides(options, a).ok()?;
    let scenarios = options.scenarios().ok()?;
    Some(scenarios.iter().map(|s| s.executor.max_vus()).sum())
}

/// How many local workers to run: `--local-workers N` (1..=1024), or automatically enough for
/// a ws run whose peak connections exceed one process's limit. None: run in this process.
pub(crate) fn local_workers(
    a: &RunArgs,
    ws_peak: Option<u64>,
    segment: &Option<Arc<SegmentPlan>>,
) -> Result<Option<u64>, ConfigError> {
    if let Some(n) = a.local_workers {
        if n == 0 || n > 1024 {
            return Err(ConfigError::new(
                "--local-workers",
                format!("{n} is not a worker count"),
                "use 1 to 1024",
            ));
        }
        return Ok(Some(n));
    }
    if segment.is_some() {
        return Ok(None); // already a shard
    }
    let Some(peak) = ws_peak else {
        return Ok(None);
    };
    let per = crate::capacity::max_connections_per_process();
    if peak <= per {
        return Ok(None);
    }
    let n = peak.div_ceil(per);
    eprintln!(
        "novaload: the ws run peaks at {peak} connections, above the {per} one process may open (its open-files limit less a reserve for other files); running {n} local workers"
    );
    Ok(Some(n))
}
