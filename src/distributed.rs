//! Distributed runs on one machine or many: the segment flags, the coordinated start
//! (`--start-at`), and `--local-workers N`, which runs N child processes of novaload (segments
//! 1/N..N/N) and merges their results with the same code as `novaload merge`.
//!
//! Local workers, precisely:
//! - children are `current_exe() run <the same arguments>` minus `--local-workers`, `--out`,
//!   `--run-id`, `--results-dir`, `--metrics-listen`, `--quiet`, plus `--segment i/N`, the
//!   parent's run id, `--results-dir <results>/shards/<i>`, `--quiet`, and, when the parent
//!   serves metrics on ADDR:PORT, `--metrics-listen ADDR:PORT+i` (one /metrics per worker; every
//!   series carries `segment`, so `sum by (run_id)` aggregates them). Without `--start-at` the
//!   parent picks one 2 s ahead, so all shards start on the same instant.
//! - without `--api-url` (and without `--url`) the parent starts the built-in target once and
//!   hands its URL to every child, so all shards load one target. When the run's WebSockets
//!   exceed what one process may open, that target is itself several processes on one port
//!   (`novaload target --workers N`, SO_REUSEPORT), sharing a temporary SQLite file.
//! - each child runs in its own process group, so a terminal's Ctrl-C reaches only the parent,
//!   which forwards it: first Ctrl-C/SIGTERM → `kill -INT` to every child (graceful stop, partial
//!   results written), second → the children are killed. A child's console goes to
//!   `<results>/shards/<i>.console.log`.
//! - progress: the parent tails every shard's per-second NDJSON and prints one combined line.

use crate::cli::{RunArgs, TestName};
use crate::config::Options;
use crate::error::ConfigError;
use crate::merge::{self, MergeOptions};
use crate::plan::segment::SegmentPlan;
use crate::session::{self, Outcome, Stops};
use anyhow::Context;
use std::ffi::OsString;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// This process's segment from `--segment i/N`, `--segment-count N` + `JOB_COMPLETION_INDEX`,
/// or k6's `--execution-segment` (+ `--execution-segment-sequence`).
pub fn segment_from_args(a: &RunArgs) -> Result<Option<SegmentPlan>, ConfigError> {
    let fix = "write --segment i/N (1-based, e.g. --segment 2/4), or k6's --execution-segment 1/4:2/4 with --execution-segment-sequence 0,1/4,2/4,3/4,1";
    let from_index = match a.segment_count {
        Some(n) => {
            let v = std::env::var("JOB_COMPLETION_INDEX").map_err(|_| {
                ConfigError::new(
                    "--segment-count",
                    "needs the environment variable JOB_COMPLETION_INDEX (set by Kubernetes Indexed Jobs)",
                    "run it in an Indexed Job, or use --segment i/N",
                )
            })?;
            let i: u64 = v.trim().parse().map_err(|_| {
                ConfigError::new(
                    "JOB_COMPLETION_INDEX",
                    format!("'{v}' is not an index"),
                    "set a 0-based index",
                )
            })?;
            Some(format!("{}/{n}", i + 1))
        }
        None => None,
    };
    let segment = from_index.as_deref().or(a.segment.as_deref());
    if a.local_workers.is_some() && (segment.is_some() || a.execution_segment.is_some()) {
        return Err(ConfigError::new(
            "--local-workers",
            "splits the whole run itself and cannot be combined with a segment",
            "drop --segment/--execution-segment, or drop --local-workers",
        ));
    }
    SegmentPlan::from_flags(
        segment,
        a.execution_segment.as_deref(),
        a.execution_segment_sequence.as_deref(),
    )
    .map_err(|e| ConfigError::new("--segment", e, fix))
}

/// How far in the past `--start-at` may be (clock skew between machines) before it is an error.
const START_AT_SLACK: Duration = Duration::from_secs(5);

/// Parses `--start-at`; rejects a malformed instant or one more than a few seconds past.
pub fn parse_start_at(
    s: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ConfigError> {
    let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let at = chrono::DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| {
            ConfigError::new(
                "--start-at",
                format!("'{s}' is not an RFC 3339 time ({e})"),
                "write e.g. --start-at 2025-06-01T12:00:00Z (or with an offset, +02:00)",
            )
        })?
        .with_timezone(&chrono::Utc);
    let late = chrono::Utc::now() - at;
    if late > chrono::Duration::from_std(START_AT_SLACK).expect("small") {
        return Err(ConfigError::new(
            "--start-at",
            format!("{s} is {}s in the past", late.num_seconds()),
            "pick a start time a little in the future (all shards must be started before it)",
        ));
    }
    Ok(Some(at))
}

/// Sleeps until `at` (or an interrupt).
pub async fn wait_until(
    at: chrono::DateTime<chrono::Utc>,
    interrupt: &CancellationToken,
    quiet: bool,
) {
    let Ok(wait) = (at - chrono::Utc::now()).to_std() else {
        return;
    };
    if !quiet {
        eprintln!(
            "novaload: waiting {:.1}s to start at {}",
            wait.as_secs_f64(),
            at.to_rfc3339()
        );
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = interrupt.cancelled() => {}
    }
}

/// `--results-dir`: exactly this folder (created), which must not hold results yet.
pub fn exact_results_dir(d: &Path) -> Result<PathBuf, ConfigError> {
    let fix = "give an empty or new folder";
    std::fs::create_dir_all(d).map_err(|e| {
        ConfigError::new(
            "--results-dir",
            format!("cannot create {}: {e}", d.display()),
            fix,
        )
    })?;
    let used = std::fs::read_dir(d)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with("_summary.json"))
        })
        .unwrap_or(false);
    if used {
        return Err(ConfigError::new(
            "--results-dir",
            format!("{} already holds results", d.display()),
            fix,
        ));
    }
    Ok(d.to_path_buf())
}

/// Peak concurrent connections a ws run would open (its most VUs), if the run includes ws.
pub fn ws_peak_connections(a: &RunArgs) -> Option<u64> {
    if a.url.is_some() || !matches!(a.test, Some(TestName::Ws) | Some(TestName::All)) {
        return None;
    }
    let prof = crate::profile::plan(TestName::Ws, a.profile.as_deref().unwrap_or("smoke")).ok()?;
    let mut options = Options {
        stages: Some(prof.stages),
        vus: Some(1),
        ..Options::default()
    };
    if let Some(p) = &a.scenario {
        let file = Options::from_file(p).ok()?;
        if file.scenarios.is_some() || file.stages.is_some() || file.duration.is_some() {
            options = file;
        }
    }
    let options = session::apply_overrides(options, a).ok()?;
    let scenarios = options.scenarios().ok()?;
    Some(scenarios.iter().map(|s| s.executor.max_vus()).sum())
}

/// How many local workers to run: `--local-workers N`, or automatically enough for a ws run
/// whose peak connections exceed one process's limit. None: run in this process.
pub fn local_workers(a: &RunArgs) -> Option<u64> {
    if let Some(n) = a.local_workers {
        return Some(n);
    }
    let (n, peak) = automatic_local_workers(a)?;
    let per = crate::capacity::max_connections_per_process();
    eprintln!(
        "novaload: the ws run peaks at {peak} connections, above the {per} one process may open (its open-files limit less a reserve for other files); running {n} local workers"
    );
    Some(n)
}

/// The local workers a run without `--local-workers` starts by itself, with the ws peak that
/// asks for them: none for a shard, or when the peak fits one process.
pub fn automatic_local_workers(a: &RunArgs) -> Option<(u64, u64)> {
    if a.segment.is_some() || a.segment_count.is_some() || a.execution_segment.is_some() {
        return None; // already a shard
    }
    let peak = ws_peak_connections(a)?;
    let per = crate::capacity::max_connections_per_process();
    (peak > per).then(|| (peak.div_ceil(per), peak))
}

/// Flags the parent sets itself for each child (value-taking unless listed in `BOOL_FLAGS`).
const DROP_FLAGS: &[&str] = &[
    "--local-workers",
    "--out",
    "--run-id",
    "--results-dir",
    "--metrics-listen",
    "--quiet",
    "-q",
    "--start-at",
];
const BOOL_FLAGS: &[&str] = &["--quiet", "-q"];

/// The parent's `run` arguments minus the flags the parent sets per child.
fn child_base_args(argv: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in argv {
        if skip_value {
            skip_value = false;
            continue;
        }
        let s = arg.to_string_lossy();
        let name = s.split_once('=').map_or(s.as_ref(), |(n, _)| n);
        if DROP_FLAGS.contains(&name) {
            skip_value = !s.contains('=') && !BOOL_FLAGS.contains(&name);
            continue;
        }
        out.push(arg.clone());
    }
    out
}

/// Runs the session as `workers` local child processes and merges their results.
pub async fn run_local(a: RunArgs, workers: u64, stops: Stops) -> anyhow::Result<Outcome> {
    if workers == 0 || workers > 1024 {
        return Err(ConfigError::new(
            "--local-workers",
            format!("{workers} is not a worker count"),
            "use 1 to 1024",
        )
        .into());
    }
    segment_from_args(&a)?; // rejects --local-workers with a segment
    let start_at = parse_start_at(a.start_at.as_deref())?
        .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::seconds(2));
    // validate the whole plan before any process starts
    let given = session::endpoints_from_args(&a)?;
    session::plan(&a, given.as_ref())?;
    let run_id = a
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    let results_dir = match &a.results_dir {
        Some(d) => exact_results_dir(d)?,
        None => crate::results::create_results_dir(&a.out)?,
    };
    let shards_dir = results_dir.join("shards");
    std::fs::create_dir_all(&shards_dir)
        .with_context(|| format!("creating {}", shards_dir.display()))?;

    // one built-in target for every shard
    let mut embedded = None;
    let mut target_args: Vec<String> = Vec::new();
    if a.url.is_none() && given.is_none() {
        let mut targs = crate::novacron::TargetArgs::embedded();
        targs.seed_vms = session::plan_seed(&a);
        // the clients run in the workers; this process holds only the server's sockets, and
        // past one process's descriptors the target spreads over processes on one port too
        let target_workers = crate::novacron::embedded_workers(
            ws_peak_connections(&a).unwrap_or(0),
            false,
            crate::capacity::max_connections_per_process(),
        );
        let handle = crate::novacron::Embedded::start(targs, target_workers)
            .await
            .context("starting the built-in target")?;
        let ep = crate::workload::endpoints::Endpoints::new(
            &handle.base_url(),
            None,
            None,
            a.token.as_deref(),
        );
        if !a.quiet {
            eprintln!(
                "novaload: started the built-in NovaCron target on {}{} for {workers} workers",
                handle.base_url(),
                handle.describe()
            );
        }
        target_args = vec![
            "--api-url".into(),
            ep.api_url.clone(),
            "--ws-url".into(),
            ep.ws_url.clone(),
            "--dwcp-ws-url".into(),
            ep.dwcp_ws_url.clone(),
        ];
        embedded = Some(handle);
    }

    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let base = child_base_args(&argv);
    let exe = std::env::current_exe().context("finding the novaload executable")?;
    let mut children = Vec::new();
    let mut shard_dirs = Vec::new();
    for i in 1..=workers {
        let dir = shards_dir.join(i.to_string());
        let console = std::fs::File::create(shards_dir.join(format!("{i}.console.log")))
            .context("creating a worker console log")?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(&base)
            .arg("--segment")
            .arg(format!("{i}/{workers}"))
            .arg("--run-id")
            .arg(&run_id)
            .arg("--results-dir")
            .arg(&dir)
            .arg("--start-at")
            .arg(start_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .arg("--quiet")
            .args(&target_args);
        if let Some(addr) = a.metrics_listen {
            let port = if addr.port() == 0 {
                0
            } else {
                addr.port().saturating_add(i as u16)
            };
            cmd.arg("--metrics-listen")
                .arg(std::net::SocketAddr::new(addr.ip(), port).to_string());
        }
        // flags win over env, but a segment or run id from the environment must not leak in
        for v in [
            "NOVALOAD_SEGMENT",
            "NOVALOAD_RUN_ID",
            "NOVALOAD_METRICS_LISTEN",
            "NOVALOAD_START_AT",
        ] {
            cmd.env_remove(v);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting worker {i} ({})", exe.display()))?;
        children.push(child);
        shard_dirs.push(dir);
    }
    if !a.quiet {
        eprintln!(
            "novaload: {workers} local workers (run id {run_id}), starting at {}; shards in {}",
            start_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            shards_dir.display()
        );
    }

    // wait, forwarding stops and showing one combined progress line
    let mut progress = CombinedProgress::new(&shard_dirs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut codes: Vec<Option<i32>> = vec![None; children.len()];
    let (mut forwarded_int, mut forwarded_kill) = (false, false);
    let mut interrupted = false;
    while codes.iter().any(Option::is_none) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stops.interrupt.cancelled(), if !forwarded_int => {}
            _ = stops.kill.cancelled(), if !forwarded_kill => {}
        }
        if stops.interrupt.is_cancelled() && !forwarded_int {
            forwarded_int = true;
            interrupted = true;
            for c in &children {
                if let Some(pid) = c.id() {
                    let _ = std::process::Command::new("kill")
                        .args(["-INT", &pid.to_string()])
                        .status();
                }
            }
        }
        if stops.kill.is_cancelled() && !forwarded_kill {
            forwarded_kill = true;
            for c in &mut children {
                let _ = c.start_kill();
            }
        }
        for (c, code) in children.iter_mut().zip(codes.iter_mut()) {
            if code.is_none()
                && let Ok(Some(st)) = c.try_wait()
            {
                *code = Some(st.code().unwrap_or(crate::exit::ERROR));
            }
        }
        if !a.quiet {
            progress.print(start_at, codes.iter().filter(|c| c.is_none()).count());
        }
    }
    if !a.quiet {
        eprintln!();
    }
    if let Some(t) = embedded
        && let Err(e) = t.shutdown().await
    {
        tracing::warn!("built-in target did not shut down cleanly: {e:#}");
    }
    let failed: Vec<String> = codes
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Some(crate::exit::ERROR) | Some(crate::exit::CONFIG)))
        .map(|(i, c)| {
            format!(
                "worker {} exited {} (see {})",
                i + 1,
                c.unwrap_or(-1),
                shards_dir.join(format!("{}.console.log", i + 1)).display()
            )
        })
        .collect();
    let present: Vec<PathBuf> = shard_dirs.iter().filter(|d| d.is_dir()).cloned().collect();
    let merged = merge::merge_dirs(
        &present,
        &results_dir,
        MergeOptions {
            allow_partial: interrupted,
        },
    )
    .map_err(|e| {
        let what = if failed.is_empty() {
            "merging the workers' results".to_string()
        } else {
            format!("merging the workers' results ({})", failed.join("; "))
        };
        // A merge refusal is a ConfigError (exit 2, bad input) for `novaload merge`; here the
        // shards are this process's own workers, so a refusal means a worker failed: exit 1.
        match e.downcast_ref::<ConfigError>() {
            Some(c) => anyhow::anyhow!("{what}: {}", c.problem),
            None => e.context(what),
        }
    })?;
    if !a.quiet {
        eprintln!("{}", crate::report::markdown::render(&merged.summaries));
    }
    Ok(Outcome {
        verdict: merged.verdict,
        results_dir,
        summaries: merged.summaries,
        interrupted,
    })
}

/// Tails each shard's per-second NDJSON files and sums requests and iterations.
struct CombinedProgress {
    dirs: Vec<PathBuf>,
    offsets: std::collections::HashMap<PathBuf, (u64, String)>,
    reqs: f64,
    iterations: f64,
    last_second_reqs: f64,
}

impl CombinedProgress {
    fn new(dirs: &[PathBuf]) -> Self {
        Self {
            dirs: dirs.to_vec(),
            offsets: Default::default(),
            reqs: 0.0,
            iterations: 0.0,
            last_second_reqs: 0.0,
        }
    }

    fn poll(&mut self) {
        let before = self.reqs;
        for d in &self.dirs {
            let Ok(rd) = std::fs::read_dir(d) else {
                continue;
            };
            for e in rd.filter_map(|e| e.ok()) {
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                if !name.ends_with(".json") || name.ends_with("_summary.json") {
                    continue;
                }
                let (off, partial) = self.offsets.entry(p.clone()).or_default();
                let Ok(mut f) = std::fs::File::open(&p) else {
                    continue;
                };
                if f.seek(std::io::SeekFrom::Start(*off)).is_err() {
                    continue;
                }
                let mut buf = String::new();
                let Ok(n) = f.read_to_string(&mut buf) else {
                    continue;
                };
                *off += n as u64;
                partial.push_str(&buf);
                let complete = match partial.rfind('\n') {
                    Some(i) => {
                        let rest = partial.split_off(i + 1);
                        std::mem::replace(partial, rest)
                    }
                    None => continue,
                };
                for line in complete.lines() {
                    if !line.contains("\"Second\"") {
                        continue;
                    }
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    let count = v["data"]["values"]["count"].as_f64().unwrap_or(0.0);
                    match v["metric"].as_str() {
                        Some("http_reqs") => self.reqs += count,
                        Some("iterations") => self.iterations += count,
                        _ => {}
                    }
                }
            }
        }
        self.last_second_reqs = self.reqs - before;
    }

    fn print(&mut self, start_at: chrono::DateTime<chrono::Utc>, running: usize) {
        self.poll();
        let elapsed = (chrono::Utc::now() - start_at).num_milliseconds() as f64 / 1000.0;
        let line = if elapsed < 0.0 {
            format!("starting in {:.0}s", -elapsed)
        } else {
            format!(
                "{:>5.0}s · {} reqs ({:.0}/s) · {} iterations",
                elapsed, self.reqs, self.last_second_reqs, self.iterations
            )
        };
        eprint!(
            "\r\x1b[2Knovaload: {running}/{} workers running · {line}",
            self.dirs.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn child_args_drop_what_the_parent_sets() {
        let got = child_base_args(&os(&[
            "run",
            "--url",
            "http://x/",
            "--local-workers",
            "3",
            "--out=r",
            "-q",
            "--run-id",
            "abc",
            "--iterations",
            "30",
        ]));
        assert_eq!(
            got,
            os(&["run", "--url", "http://x/", "--iterations", "30"])
        );
    }

    #[test]
    fn start_at_rejects_garbage_and_the_past() {
        assert!(parse_start_at(Some("tomorrow")).is_err());
        let past = (chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc3339();
        let e = parse_start_at(Some(&past)).unwrap_err().to_string();
        assert!(e.contains("in the past"), "{e}");
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
        assert!(parse_start_at(Some(&soon)).unwrap().is_some());
        assert!(parse_start_at(None).unwrap().is_none());
    }
}
