//! Log events (`tracing::warn!` and friends) on stderr.
//!
//! Warnings are always shown; `-v` adds debug events and `-vv` trace events, and `RUST_LOG`
//! (a list of `target=level`, e.g. `RUST_LOG=novaload=debug,sqlx=warn`) overrides both. On a
//! terminal an event first clears the line, so it never lands inside the live progress line
//! (which is redrawn on its next tick), and its level is coloured; piped to a file, events are
//! plain lines.
//!
//! A subscriber of our own rather than tracing-subscriber's: novaload logs a handful of events
//! and no spans, and tracing-subscriber's registry and formatter cost every run about 0.5 MB of
//! resident memory at start-up (its `EnvFilter`, with regex, ~1.8 MB): measured with
//! `/usr/bin/time -f %M novaload metrics-reference`.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Installs the stderr subscriber for the binary (once; a second call does nothing).
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "warn,novaload=debug",
        _ => "info,novaload=trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => Filter::parse(&v).unwrap_or_else(|e| {
            eprintln!(
                "novaload: RUST_LOG '{v}' is not a list of target=level ({e}); using '{default}'"
            );
            Filter::parse(default).expect("valid")
        }),
        _ => Filter::parse(default).expect("valid"),
    };
    let log = StderrLog {
        filter,
        terminal: std::io::stderr().is_terminal(),
        show_target: verbose > 0,
    };
    let _ = tracing::subscriber::set_global_default(log);
}

/// Levels by target: the longest matching `target=level` wins, else the default.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    default: LevelFilter,
    targets: Vec<(String, LevelFilter)>,
}

impl Filter {
    fn parse(spec: &str) -> Result<Filter, String> {
        let mut f = Filter {
            default: LevelFilter::ERROR,
            targets: Vec::new(),
        };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some((target, level)) => {
                    f.targets.push((target.trim().to_owned(), level_of(level)?))
                }
                None => f.default = level_of(item)?,
            }
        }
        // longest first, so the first match is the most specific
        f.targets.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        Ok(f)
    }

    fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(t, _)| {
                target == t
                    || (target.starts_with(t.as_str()) && target[t.len()..].starts_with("::"))
            })
            .map_or(self.default, |(_, l)| *l)
    }

    fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, LevelFilter::max)
    }
}

fn level_of(s: &str) -> Result<LevelFilter, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "'{}' is not off, error, warn, info, debug or trace",
            s.trim()
        )
    })
}

struct StderrLog {
    filter: Filter,
    terminal: bool,
    show_target: bool,
}

/// An event's message and fields as one line: `message key=value ...`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl Subscriber for StderrLog {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        // spans carry nothing novaload shows; only events are written
        meta.is_event() && *meta.level() <= self.filter.level_for(meta.target())
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.filter.max())
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = Line::default();
        event.record(&mut line);
        let level = match *meta.level() {
            Level::ERROR => ("ERROR", "\x1b[31m"),
            Level::WARN => (" WARN", "\x1b[33m"),
            Level::INFO => (" INFO", "\x1b[32m"),
            Level::DEBUG => ("DEBUG", "\x1b[34m"),
            Level::TRACE => ("TRACE", "\x1b[35m"),
        };
        let mut out = String::new();
        if self.terminal {
            // carriage return + erase line: the progress line is redrawn on its next tick
            let _ = write!(out, "\r\x1b[2K{}{}\x1b[0m ", level.1, level.0);
        } else {
            let _ = write!(out, "{} ", level.0);
        }
        if self.show_target {
            let _ = write!(out, "{}: ", meta.target());
        }
        let _ = writeln!(out, "{}{}", line.message, line.fields);
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_target_wins_and_a_bare_level_is_the_default() {
        let f = Filter::parse("warn,novaload=debug,novaload::novacron=trace").unwrap();
        assert_eq!(f.level_for("sqlx::query"), LevelFilter::WARN);
        assert_eq!(f.level_for("novaload::workload::db"), LevelFilter::DEBUG);
        assert_eq!(f.level_for("novaload::novacron::store"), LevelFilter::TRACE);
        assert_eq!(
            f.level_for("novaloader"),
            LevelFilter::WARN,
            "a prefix is not a target"
        );
        assert_eq!(f.max(), LevelFilter::TRACE);
        assert!(Filter::parse("novaload=loud").unwrap_err().contains("loud"));
        assert_eq!(Filter::parse("").unwrap().default, LevelFilter::ERROR);
    }
}
