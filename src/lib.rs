//! novaload: an observability-native load tester for NovaCron.
//!
//! `main.rs` only parses the command line and maps the outcome to an exit code; everything
//! else is reachable from [`run`], which integration tests call in-process.
pub(crate) mod capacity;
pub mod cli;
pub mod compare;
pub mod config;
pub(crate) mod distributed;
pub(crate) mod duration;
pub mod error;
pub mod logging;
pub mod merge;
pub mod metrics;
pub mod net;
pub mod novacron;
pub mod plan;
pub(crate) mod progress;
pub mod report;
pub mod results;
pub mod runner;
pub mod session;
pub(crate) mod shard;
pub mod telemetry;
pub mod thresholds;
pub(crate) mod vu_threads;
pub mod workload;

use report::Verdict;

/// Exit codes (documented in the README).
pub mod exit {
    pub const PASS: i32 = 0;
    /// Unexpected runtime failure (results may be missing).
    pub const ERROR: i32 = 1;
    /// Bad command line or configuration: nothing was run.
    pub const CONFIG: i32 = 2;
    /// Only warning-severity thresholds missed.
    pub const WARNING: i32 = 3;
    /// A critical threshold missed, a threshold abort, or a run error (as k6's 99).
    pub const FAIL: i32 = 99;
    /// Stopped by Ctrl-C/SIGTERM; partial results were written (as k6's 105).
    pub const INTERRUPTED: i32 = 105;
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: cli::Cli) -> i32 {
    match cli.command {
        cli::Command::Run(args) => {
            let cfg = match config::resolve(*args) {
                Ok(c) => c,
                Err(e) => return report_error(&anyhow::Error::new(e)),
            };
            outcome_code(execute(cfg, session::Stops::from_signals()).await)
        }
        cli::Command::Worker => {
            let cfg = match read_worker_config() {
                Ok(c) => c,
                Err(e) => return report_error(&e),
            };
            outcome_code(session::run_config(cfg, session::Stops::from_signals()).await)
        }
        cli::Command::Target(args) => match novacron::run(*args).await {
            Ok(()) => exit::PASS,
            Err(e) => report_error(&e),
        },
        cli::Command::Report(a) => match results::report_with(&a.dir, a.html) {
            Ok(v) => {
                eprintln!(
                    "novaload: rewrote SUMMARY.md, junit.xml{} in {}",
                    if a.html { ", report.html" } else { "" },
                    a.dir.display()
                );
                verdict_code(v)
            }
            Err(e) => report_error(&e),
        },
        cli::Command::Merge(m) => {
            let opts = merge::MergeOptions {
                allow_partial: m.allow_partial,
            };
            match merge::merge_dirs(&m.dirs, &m.out, opts) {
                Ok(r) => {
                    eprintln!(
                        "novaload: merged {} shards into {} — verdict {}",
                        m.dirs.len(),
                        r.out.display(),
                        r.verdict.emoji()
                    );
                    verdict_code(r.verdict)
                }
                Err(e) => report_error(&e),
            }
        }
        cli::Command::Compare(a) => match compare_command(&a) {
            Ok((text, code)) => {
                print!("{text}");
                code
            }
            Err(e) => report_error(&e),
        },
        cli::Command::MetricsReference => {
            print!("{}", telemetry::metrics_reference_markdown());
            exit::PASS
        }
    }
}

/// Runs a resolved configuration: in this process, or split over local worker processes.
pub async fn execute(
    cfg: config::RunConfig,
    stops: session::Stops,
) -> anyhow::Result<session::Outcome> {
    match cfg.resolved.local_workers {
        Some(n) => distributed::run_local(cfg, n, stops).await,
        None => session::run_config(cfg, stops).await,
    }
}

/// A local worker's configuration, sent by its parent on stdin.
fn read_worker_config() -> anyhow::Result<config::RunConfig> {
    use anyhow::Context;
    use std::io::{IsTerminal, Read};
    if std::io::stdin().is_terminal() {
        return Err(error::ConfigError::new(
            "worker",
            "a local worker reads its configuration from a pipe, and stdin is a terminal",
            "run `novaload run --local-workers N …`, which starts its workers itself",
        )
        .into());
    }
    let mut json = String::new();
    std::io::stdin()
        .read_to_string(&mut json)
        .context("reading the worker configuration from stdin")?;
    config::RunConfig::from_worker_json(&json)
}

/// The exit code of a run, after saying where its results are.
fn outcome_code(outcome: anyhow::Result<session::Outcome>) -> i32 {
    match outcome {
        Ok(o) => {
            eprintln!(
                "novaload: results in {} — verdict {}",
                o.results_dir.display(),
                o.verdict.emoji()
            );
            if o.interrupted {
                exit::INTERRUPTED
            } else {
                verdict_code(o.verdict)
            }
        }
        Err(e) => report_error(&e),
    }
}

/// `novaload compare`: the rendered comparison and the exit code (0, or FAIL when
/// `--fail-on-regression` is exceeded).
pub fn compare_command(a: &cli::CompareArgs) -> anyhow::Result<(String, i32)> {
    for (flag, v) in [
        ("--tolerance", Some(a.tolerance)),
        ("--fail-on-regression", a.fail_on_regression),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(error::ConfigError::new(
                flag,
                format!("{v} is not a percentage"),
                "give a non-negative number of percent, e.g. 20",
            )
            .into());
        }
    }
    let c = compare::compare_dirs(&a.run_a, &a.run_b, a.tolerance)?;
    let text = match a.format {
        cli::CompareFormat::Text => compare::render_text(&c),
        cli::CompareFormat::Markdown => compare::render_markdown(&c),
    };
    let code = match a.fail_on_regression {
        Some(pct) if c.exceeds(pct) => exit::FAIL,
        _ => exit::PASS,
    };
    Ok((text, code))
}

pub fn verdict_code(v: Verdict) -> i32 {
    match v {
        Verdict::Pass => exit::PASS,
        Verdict::Warning => exit::WARNING,
        Verdict::Fail => exit::FAIL,
    }
}

/// Prints an error chain once; config errors exit 2.
fn report_error(e: &anyhow::Error) -> i32 {
    if let Some(c) = e.downcast_ref::<error::ConfigError>() {
        eprintln!("novaload: {c}");
        return exit::CONFIG;
    }
    eprintln!("novaload: error: {e:#}");
    exit::ERROR
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The top-level modules each top-level module names in code (`crate::x`, `use crate::{x, …}`).
    fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
        fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    files(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let module_of = |p: &Path| {
            let rel = p.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            first.trim_end_matches(".rs").to_string()
        };
        let modules: BTreeSet<String> = all.iter().map(|p| module_of(p)).collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in &all {
            let from = module_of(p);
            let text = std::fs::read_to_string(p).unwrap();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let mut named = BTreeSet::new();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    for item in group.split(',') {
                        named.insert(item.trim().split("::").next().unwrap_or("").to_string());
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    named.insert(name);
                }
            }
            let edges = graph.entry(from.clone()).or_default();
            edges.extend(
                named
                    .into_iter()
                    .filter(|n| modules.contains(n) && *n != from),
            );
        }
        graph
    }

    #[test]
    fn module_graph_has_no_cycles() {
        let graph = module_graph();
        assert!(graph.contains_key("session") && graph["session"].contains("runner"));
        // depth-first search; a module met again while still on the path closes a cycle
        fn visit(
            m: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == m) {
                let mut cycle = path[i..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            if !done.insert(m.to_string()) {
                return None;
            }
            path.push(m.to_string());
            for next in graph.get(m).into_iter().flatten() {
                if let Some(c) = visit(next, graph, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            let cycle = visit(m, &graph, &mut Vec::new(), &mut done);
            assert!(
                cycle.is_none(),
                "import cycle: {}",
                cycle.unwrap().join(" -> ")
            );
        }
    }
}
