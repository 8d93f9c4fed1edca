//! The live progress display on stderr: one line rewritten in place on a TTY, a plain line
//! every few seconds otherwise (CI logs). Also copies its lines into the test's `.log`.

use crate::metrics::SecondSink;
use crate::metrics::{Agg, Registry, SecondSnapshot, builtin};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

/// Console output for one test: stderr plus the test's log file.
#[derive(Clone)]
pub struct Console {
    log: Option<Arc<Mutex<std::fs::File>>>,
    quiet: bool,
}

impl Console {
    pub fn new(log: Option<std::fs::File>, quiet: bool) -> Self {
        Self {
            log: log.map(|f| Arc::new(Mutex::new(f))),
            quiet,
        }
    }

    /// Prints a line to stderr (unless quiet) and appends it to the log.
    pub fn line(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
        self.log_only(text);
    }

    pub fn log_only(&self, text: &str) {
        if let Some(f) = &self.log {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "{text}");
        }
    }
}

pub struct Progress {
    test: String,
    planned_s: f64,
    console: Console,
    tty: bool,
    quiet: bool,
    seconds: u64,
}

impl Progress {
    pub fn new(test: &str, planned_s: f64, console: Console, quiet: bool) -> Self {
        Self {
            test: test.into(),
            planned_s,
            console,
            tty: std::io::stderr().is_terminal(),
            quiet,
            seconds: 0,
        }
    }
}

fn count(snap: &SecondSnapshot, id: crate::metrics::MetricId) -> f64 {
    snap.metrics
        .iter()
        .find(|(m, _)| *m == id)
        .map(|(_, a)| match a {
            Agg::Counter { sum } => *sum,
            Agg::Rate { passes, .. } => *passes as f64,
            _ => 0.0,
        })
        .unwrap_or(0.0)
}

impl SecondSink for Progress {
    fn second(&mut self, snap: &SecondSnapshot, _registry: &Registry, vus: i64, vus_max: u64) {
        self.seconds += 1;
        let reqs = count(snap, builtin::HTTP_REQS);
        let failed = count(snap, builtin::HTTP_REQ_FAILED);
        let iters = count(snap, builtin::ITERATIONS);
        let p95 = snap
            .metrics
            .iter()
            .find(|(m, _)| *m == builtin::HTTP_REQ_DURATION)
            .and_then(|(_, a)| {
                if let Agg::Trend(t) = a {
                    Some(t.percentile(95.0))
                } else {
                    None
                }
            })
            .unwrap_or(0.0);
        let checks_failed = snap
            .metrics
            .iter()
            .find(|(m, _)| *m == builtin::CHECKS)
            .map(|(_, a)| {
                if let Agg::Rate { fails, .. } = a {
                    *fails
                } else {
                    0
                }
            })
            .unwrap_or(0);
        let elapsed = snap.elapsed_s;
        let left = (self.planned_s - elapsed).max(0.0);
        let err_pct = if reqs > 0.0 {
            failed / reqs * 100.0
        } else {
            0.0
        };
        let line = format!(
            "[{}] {:>5.0}s elapsed, {:>5.0}s left | VUs {vus}/{vus_max} | {reqs:.0} req/s | p95 {p95:.1} ms | http errors {err_pct:.2}% | checks failed {checks_failed} | {iters:.0} iters/s",
            self.test, elapsed, left
        );
        if self.quiet {
            if self.seconds.is_multiple_of(10) {
                self.console.log_only(&line);
            }
            return;
        }
        if self.tty {
            eprint!("\r\x1b[K{line}");
            let _ = std::io::stderr().flush();
            if self.seconds.is_multiple_of(10) {
                self.console.log_only(&line);
            }
        } else if self.seconds.is_multiple_of(5) {
            self.console.line(&line);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.tty && !self.quiet {
            eprint!("\r\x1b[K");
        }
    }
}
