//! The options of `novaload target`: [`TargetArgs`] (every flag with its environment variable
//! and default), [`TargetArgs::embedded`] (the same defaults for the in-process target of
//! `novaload run` and the tests), the cross-flag checks clap cannot make, and the value types
//! behind single flags. How these options reach worker processes is in `workers.rs`.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::bail;

use super::faults::Faults;
use super::store::StoreConfig;

/// The longest --header-read-timeout / --idle-timeout accepted: beyond a day a connection
/// timeout protects nothing, and the watchdog's deadline arithmetic stays far from overflow.
const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How many server processes share the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// `ceil(--ws-capacity / per-process capacity)`, the capacity being
    /// `capacity::max_connections_per_process` (19,736 with this machine's 20,000 files).
    Auto,
    /// Exactly this many (1 = this process only).
    Count(u32),
}

impl FromStr for Workers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Workers::Auto);
        }
        match s.parse::<u32>() {
            Ok(n) if (1..=64).contains(&n) => Ok(Workers::Count(n)),
            _ => Err(format!(
                "expected a process count 1..=64 or `auto`, got `{s}`"
            )),
        }
    }
}

/// How often a realtime WebSocket connection gets a frame per subscribed channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsPushInterval {
    /// `ws_push::BASE` (2 s), stretched so one process pushes at most
    /// `ws_push::FRAMES_PER_SECOND_PER_PROCESS` frames/s however many connections it holds.
    Auto,
    /// Exactly this period, whatever the load.
    Fixed(Duration),
}

impl FromStr for WsPushInterval {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(WsPushInterval::Auto);
        }
        let d = crate::duration::parse_flag(s)?;
        if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
            return Err(format!(
                "`{s}` is outside 100ms..1h; give e.g. 2s or 30s, or `auto`"
            ));
        }
        Ok(WsPushInterval::Fixed(d))
    }
}

impl std::fmt::Display for WsPushInterval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsPushInterval::Auto => f.write_str("auto"),
            WsPushInterval::Fixed(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// The realtime push budget behind `--ws-push-interval auto`.
pub(crate) mod ws_push {
    use std::time::Duration;

    /// The period while the process is lightly loaded (what small runs and the tests see).
    pub const BASE: Duration = Duration::from_secs(2);
    /// Push frames one server process sends per second at most in `auto`. A frame costs the
    /// target a JSON encode and a write and the client a read, a parse and four checks: 10–15 µs
    /// of CPU on each side with the kernel's loopback TCP, measured on the 2-core reference
    /// machine (16,000 connections: ~0.14 cores per side). At 100,000 connections the upstream
    /// pings and queries alone are 30,000 requests and 30,000 replies a second; six processes
    /// at this budget add at most 6,000 pushes (one per connection every ~50 s), while a run of
    /// up to ~660 connections per process still gets a push every 2 s.
    pub const FRAMES_PER_SECOND_PER_PROCESS: u64 = 1_000;

    /// The period for a connection subscribed to `channels` while the process holds `open`
    /// realtime connections: [`BASE`], or longer so `open × channels / period` stays within the
    /// budget (assuming the others subscribe to as many channels as this one).
    pub fn auto(open: u64, channels: usize) -> Duration {
        let frames_per_period = open.saturating_mul(channels as u64);
        let needed_ms = frames_per_period.saturating_mul(1000) / FRAMES_PER_SECOND_PER_PROCESS;
        BASE.max(Duration::from_millis(needed_ms))
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a fraction between 0 and 1, got `{s}`")),
    }
}

/// Options of `novaload target`.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// Address to listen on; port 0 picks a free port (printed at startup).
    #[arg(long, env = "NOVALOAD_TARGET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PostgreSQL URL (postgres://user:pass@host/db). Default: embedded SQLite, in memory
    /// unless --sqlite-file is given.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Keep the embedded SQLite database in this file (WAL mode) instead of in memory.
    #[arg(
        long,
        env = "NOVALOAD_TARGET_SQLITE_FILE",
        conflicts_with = "database_url"
    )]
    pub sqlite_file: Option<PathBuf>,

    /// Maximum PostgreSQL pool connections per process.
    #[arg(long, env = "NOVALOAD_TARGET_DB_MAX_CONNECTIONS", default_value_t = 32)]
    pub db_max_connections: u32,

    /// Seed VMs with ids "1".."N" (idempotent), so the upstream tests' random ids 1..1000 hit.
    #[arg(long, env = "NOVALOAD_TARGET_SEED_VMS", default_value_t = 1000)]
    pub seed_vms: u64,

    /// Require HS256 JWT bearer tokens signed with this secret (401 otherwise).
    #[arg(long, env = "NOVALOAD_TARGET_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Latency added to every REST response (fault injection), e.g. 20ms.
    #[arg(long, env = "NOVALOAD_TARGET_LATENCY", default_value = "0s", value_parser = crate::duration::parse_flag)]
    pub latency: Duration,

    /// Uniform jitter (±) around --latency.
    #[arg(long, env = "NOVALOAD_TARGET_LATENCY_JITTER", default_value = "0s", value_parser = crate::duration::parse_flag)]
    pub latency_jitter: Duration,

    /// Fraction of REST requests answered with an injected 500 (0..1).
    #[arg(long, env = "NOVALOAD_TARGET_ERROR_RATE", default_value = "0", value_parser = parse_rate)]
    pub error_rate: f64,

    /// Stall the whole server every this long (requests wait until the stall ends).
    #[arg(long, env = "NOVALOAD_TARGET_STALL_EVERY", value_parser = crate::duration::parse_flag)]
    pub stall_every: Option<Duration>,

    /// How long each stall lasts (with --stall-every).
    #[arg(long, env = "NOVALOAD_TARGET_STALL_FOR", default_value = "1s", value_parser = crate::duration::parse_flag)]
    pub stall_for: Duration,

    /// Fraction of WebSocket connections dropped abruptly (no close frame) at a random time.
    #[arg(long, env = "NOVALOAD_TARGET_WS_DROP_RATE", default_value = "0", value_parser = parse_rate)]
    pub ws_drop_rate: f64,

    /// Fraction of DWCP migrations that end `failed`.
    #[arg(long, env = "NOVALOAD_TARGET_MIGRATION_FAILURE_RATE", default_value = "0", value_parser = parse_rate)]
    pub migration_failure_rate: f64,

    /// Mean simulated migration time (each job draws ±20 %).
    #[arg(long, env = "NOVALOAD_TARGET_MIGRATION_TIME", default_value = "3s", value_parser = crate::duration::parse_flag)]
    pub migration_time: Duration,

    /// Period of the realtime WebSocket pushes (one frame per subscribed channel): a duration
    /// (100ms..1h), or `auto` = 2s, stretched so each process pushes at most 1,000 frames/s
    /// (at 100,000 connections over 6 processes with 3 channels each: ~50 s).
    #[arg(long, env = "NOVALOAD_TARGET_WS_PUSH_INTERVAL", default_value = "auto")]
    pub ws_push_interval: WsPushInterval,

    /// Server processes on one port via SO_REUSEPORT: N, or `auto` (sized from
    /// --ws-capacity and the file-descriptor limit: one process holds ~19,700 WebSockets
    /// here). Every process sees the same data: the --database-url, the --sqlite-file, or
    /// without either a temporary SQLite file (WAL) removed at exit.
    #[arg(long, env = "NOVALOAD_TARGET_WORKERS", default_value = "1")]
    pub workers: Workers,

    /// WebSocket connections `--workers auto` should make room for.
    #[arg(long, env = "NOVALOAD_TARGET_WS_CAPACITY", default_value_t = 100_000)]
    pub ws_capacity: u64,

    /// Close an HTTP connection whose request head is not complete this long after its first
    /// byte (on a new connection: after accept), so clients that connect and send nothing, or
    /// send half a head and stop (slowloris), do not hold connections forever.
    #[arg(long, env = "NOVALOAD_TARGET_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = crate::duration::parse_flag)]
    pub header_read_timeout: Duration,

    /// Close a keep-alive HTTP connection that sends no new request for this long after its
    /// last response. WebSocket connections are not affected.
    #[arg(long, env = "NOVALOAD_TARGET_IDLE_TIMEOUT", default_value = "60s", value_parser = crate::duration::parse_flag)]
    pub idle_timeout: Duration,
}

impl TargetArgs {
    /// The in-process default: loopback port 0, in-memory SQLite, 1,000 VMs, no faults,
    /// migrations of about 2 s.
    pub fn embedded() -> Self {
        TargetArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: None,
            sqlite_file: None,
            db_max_connections: 32,
            seed_vms: 1000,
            jwt_secret: None,
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            error_rate: 0.0,
            stall_every: None,
            stall_for: Duration::from_secs(1),
            ws_drop_rate: 0.0,
            migration_failure_rate: 0.0,
            migration_time: Duration::from_secs(2),
            ws_push_interval: WsPushInterval::Auto,
            workers: Workers::Count(1),
            ws_capacity: 100_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// Checks what clap cannot (cross-field rules); messages name the flag and the fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(every) = self.stall_every
            && self.stall_for >= every
        {
            bail!(
                "--stall-for ({}) must be shorter than --stall-every ({}): the server would never answer",
                humantime::format_duration(self.stall_for),
                humantime::format_duration(every)
            );
        }
        if self.migration_time.is_zero() {
            bail!("--migration-time must be greater than 0 (e.g. 3s)");
        }
        for (flag, timeout) in [
            ("--header-read-timeout", self.header_read_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if timeout.is_zero() || timeout > MAX_CONNECTION_TIMEOUT {
                bail!(
                    "{flag} must be greater than 0 and at most 24h, got {} (e.g. 10s or 2m)",
                    humantime::format_duration(timeout)
                );
            }
        }
        for (flag, rate) in [
            ("--error-rate", self.error_rate),
            ("--ws-drop-rate", self.ws_drop_rate),
            ("--migration-failure-rate", self.migration_failure_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                bail!("{flag} must be between 0 and 1, got {rate}");
            }
        }
        if self.db_max_connections == 0 {
            bail!("--db-max-connections must be at least 1");
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!(
                "--database-url must be a postgres:// URL (for SQLite use --sqlite-file PATH or omit both)"
            );
        }
        Ok(())
    }

    /// Resolved process count.
    pub(crate) fn worker_count(&self) -> u32 {
        match self.workers {
            Workers::Count(n) => n,
            Workers::Auto => super::workers::workers_for_connections(self.ws_capacity),
        }
    }

    pub(super) fn store_config(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) => StoreConfig::Postgres {
                url: url.clone(),
                max_connections: self.db_max_connections,
            },
            None => StoreConfig::Sqlite {
                file: self.sqlite_file.clone(),
            },
        }
    }

    pub(super) fn faults(&self) -> Faults {
        Faults::new(
            self.latency,
            self.latency_jitter,
            self.error_rate,
            self.stall_every,
            self.stall_for,
            self.ws_drop_rate,
            self.migration_failure_rate,
            self.migration_time,
        )
    }
}

/// `argv` parsed as the CLI parses `novaload target ...` (`argv[0]` is the program name).
#[cfg(test)]
pub(super) fn parse_as_cli<I, T>(argv: I) -> Result<TargetArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }
    #[derive(clap::Subcommand)]
    enum Cmd {
        Target(TargetArgs),
    }
    let Cmd::Target(args) = Cli::try_parse_from(argv)?.cmd;
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_timeouts_default_parse_and_validate() {
        let parsed = parse_as_cli(["novaload", "target"]).unwrap();
        let embedded = TargetArgs::embedded();
        // the embedded target of `novaload run` gets the CLI's defaults
        assert_eq!(parsed.header_read_timeout, Duration::from_secs(10));
        assert_eq!(parsed.idle_timeout, Duration::from_secs(60));
        assert_eq!(embedded.header_read_timeout, parsed.header_read_timeout);
        assert_eq!(embedded.idle_timeout, parsed.idle_timeout);
        let parsed = parse_as_cli([
            "novaload",
            "target",
            "--header-read-timeout",
            "300ms",
            "--idle-timeout",
            "2m",
        ])
        .unwrap();
        assert_eq!(parsed.header_read_timeout, Duration::from_millis(300));
        assert_eq!(parsed.idle_timeout, Duration::from_secs(120));
        assert!(parse_as_cli(["novaload", "target", "--idle-timeout", "soon"]).is_err());
        for (flag, field) in [
            ("--header-read-timeout", "header_read_timeout"),
            ("--idle-timeout", "idle_timeout"),
        ] {
            for bad in [Duration::ZERO, Duration::from_secs(2 * 24 * 3600)] {
                let mut a = TargetArgs::embedded();
                match field {
                    "header_read_timeout" => a.header_read_timeout = bad,
                    _ => a.idle_timeout = bad,
                }
                let e = a.validate().unwrap_err().to_string();
                assert!(e.contains(flag), "{e}");
            }
        }
        assert!(TargetArgs::embedded().validate().is_ok());
    }

    #[test]
    fn push_interval_auto_keeps_the_budget() {
        assert_eq!(ws_push::auto(0, 3), ws_push::BASE);
        assert_eq!(ws_push::auto(100, 3), ws_push::BASE);
        let per = ws_push::FRAMES_PER_SECOND_PER_PROCESS;
        // a full process: open × channels / period stays within the budget
        let open = 17_000;
        let p = ws_push::auto(open, 3);
        assert!(p > ws_push::BASE);
        assert!((open * 3) as f64 / p.as_secs_f64() <= per as f64 + 1.0);
        assert_eq!("auto".parse::<WsPushInterval>(), Ok(WsPushInterval::Auto));
        assert_eq!(
            "30s".parse::<WsPushInterval>(),
            Ok(WsPushInterval::Fixed(Duration::from_secs(30)))
        );
        assert!("10ms".parse::<WsPushInterval>().is_err());
        assert!("soon".parse::<WsPushInterval>().is_err());
    }
}
