//! Local workers (`--local-workers N`): N child processes of novaload (segments 1/N..N/N)
//! whose results are merged with the same code as `novaload merge`. (The segment flags and
//! `--start-at` of runs spread over machines are resolved in [`crate::config`].)
//!
//! Precisely:
//! - each child is `current_exe() worker`, and reads its [`RunConfig`] as JSON on stdin: the
//!   parent's inputs with its own segment `i/N`, the parent's run id, results folder
//!   `<results>/shards/<i>`, `--quiet`, and, when the parent serves metrics on ADDR:PORT,
//!   ADDR:PORT+i (one /metrics per worker; every series carries `segment`, so
//!   `sum by (run_id)` aggregates them). Without `--start-at` the parent picks one 2 s ahead,
//!   so all shards start on the same instant. Secrets travel only through that pipe.
//! - without `--api-url` (and without `--url`) the parent starts the built-in target once and
//!   hands its URL to every child, so all shards load one target. When the run's WebSockets
//!   exceed what one process may open, that target is itself several processes on one port
//!   (`novaload target --workers N`, SO_REUSEPORT), sharing a temporary SQLite file.
//! - each child runs in its own process group, so a terminal's Ctrl-C reaches only the parent,
//!   which forwards it: first Ctrl-C/SIGTERM → SIGINT to every child (graceful stop, partial
//!   results written), second → the children are killed. A child's console goes to
//!   `<results>/shards/<i>.console.log`.
//! - progress: the parent tails every shard's per-second NDJSON and prints one combined line.

use crate::config::{RunConfig, WorkerOverrides};
use crate::error::ConfigError;
use crate::merge::{self, MergeOptions};
use crate::session::{self, Outcome, Stops};
use crate::workload::endpoints::Endpoints;
use anyhow::Context;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Runs the session as `workers` local child processes and merges their results.
pub(crate) async fn run_local(
    cfg: RunConfig,
    workers: u64,
    stops: Stops,
) -> anyhow::Result<Outcome> {
    let r = &cfg.resolved;
    let quiet = r.quiet;
    let start_at = r
        .start_at
        .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::seconds(2));
    let start_at_s = start_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let run_id = r.run_id.clone();
    let results_dir = r.results.create()?;
    let shards_dir = results_dir.join("shards");
    std::fs::create_dir_all(&shards_dir)
        .with_context(|| format!("creating {}", shards_dir.display()))?;

    // one built-in target for every shard; the clients run in the workers, so this process
    // holds only the server's sockets
    let mut embedded = None;
    let mut endpoints = None;
    if let Some(t) = &r.builtin_target {
        let handle = session::start_builtin_target(t, false).await?;
        if !quiet {
            eprintln!(
                "novaload: started the built-in NovaCron target on {}{} for {workers} workers",
                handle.base_url(),
                handle.describe()
            );
        }
        endpoints = Some(Endpoints::new(
            &handle.base_url(),
            None,
            None,
            cfg.args.token.as_deref(),
        ));
        embedded = Some(handle);
    }

    let exe = std::env::current_exe().context("finding the novaload executable")?;
    let mut children = Vec::new();
    let mut shard_dirs = Vec::new();
    for i in 1..=workers {
        let dir = shards_dir.join(i.to_string());
        let console = std::fs::File::create(shards_dir.join(format!("{i}.console.log")))
            .context("creating a worker console log")?;
        // one /metrics per worker on the parent's port + i (each series carries `segment`)
        let metrics_listen = r.telemetry.metrics_listen.map(|addr| {
            let port = if addr.port() == 0 {
                0
            } else {
                addr.port().saturating_add(i as u16)
            };
            std::net::SocketAddr::new(addr.ip(), port)
        });
        let config = cfg.to_worker_json(WorkerOverrides {
            segment: format!("{i}/{workers}"),
            results_dir: dir.clone(),
            start_at: start_at_s.clone(),
            metrics_listen,
            endpoints: endpoints.clone(),
        })?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("worker")
            .stdin(std::process::Stdio::piped())
            .stdout(console.try_clone()?)
            .stderr(console)
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting worker {i} ({})", exe.display()))?;
        // the configuration (secrets included) goes through a pipe, never a file or argv
        let mut stdin = child.stdin.take().context("worker stdin")?;
        stdin
            .write_all(config.as_bytes())
            .await
            .with_context(|| format!("sending worker {i} its configuration"))?;
        drop(stdin);
        children.push(child);
        shard_dirs.push(dir);
    }
    if !quiet {
        eprintln!(
            "novaload: {workers} local workers (run id {run_id}), starting at {start_at_s}; shards in {}",
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
                interrupt_child(c);
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
        if !quiet {
            progress.print(start_at, codes.iter().filter(|c| c.is_none()).count());
        }
    }
    if !quiet {
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
    if !quiet {
        eprintln!("{}", crate::report::markdown::render(&merged.summaries));
    }
    Ok(Outcome {
        verdict: merged.verdict,
        results_dir,
        summaries: merged.summaries,
        interrupted,
    })
}

/// Asks a worker to stop gracefully (SIGINT: it writes its partial results), as a terminal's
/// Ctrl-C would; the worker runs in its own process group, so the terminal's does not reach it.
fn interrupt_child(c: &tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = c
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
    }
    #[cfg(not(unix))]
    let _ = c;
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
