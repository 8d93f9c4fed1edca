//! Log events (`tracing::warn!` and friends) on stderr.
//!
//! Warnings are always shown; `-v` adds debug events and `-vv` trace events, and `RUST_LOG`
//! (a list of `target=level`, e.g. `RUST_LOG=novaload=debug,sqlx=warn`) overrides both. On a terminal an event first
//! clears the line, so it never lands inside the live progress line (which is redrawn on its
//! next tick); piped to a file, events are plain lines without colour codes.

use std::io::{IsTerminal, Write};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// Installs the stderr subscriber for the binary (once; a second call does nothing).
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "warn,novaload=debug",
        _ => "info,novaload=trace",
    };
    // `Targets` (target=level lists) rather than `EnvFilter`: EnvFilter's regex engine and its
    // Unicode tables cost every run ~1.8 MB of resident memory at start-up (measured), for
    // span and field filters nobody uses here.
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => v.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!(
                "novaload: RUST_LOG '{v}' is not a list of target=level ({e}); using '{default}'"
            );
            default.parse().expect("valid")
        }),
        _ => default.parse().expect("valid"),
    };
    let terminal = std::io::stderr().is_terminal();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(Stderr { terminal })
        .with_ansi(terminal)
        .with_target(verbose > 0)
        .without_time()
        .with_filter(filter);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// stderr, clearing the terminal's current line before each event.
#[derive(Clone, Copy)]
struct Stderr {
    terminal: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Box<dyn Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            // carriage return + erase line: the progress line is redrawn on its next tick
            let _ = err.write_all(b"\r\x1b[2K");
        }
        Box::new(err)
    }
}
