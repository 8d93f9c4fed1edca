//! `novaload target`: the NovaCron-compatible reference server (issue 6, spec §6).
//!
//! It speaks what the upstream k6 suite sends (REST under `/api/v1`, the invented DWCP v3 REST
//! surface and stream, the realtime WebSocket and NovaCron's canonical `/ws/metrics`), keeps
//! VMs and migration jobs in SQLite or PostgreSQL, injects faults on request, and reports its
//! own `novacron_*` metrics and server spans. [`spawn`] runs it in-process; [`run`] is the CLI.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio_util::sync::CancellationToken;

pub mod auth;
pub mod faults;
mod routes;
mod server;
pub mod store;
pub mod telemetry;
pub mod vm_migration;

use auth::Auth;
use faults::Faults;
use store::{Store, StoreConfig};
use telemetry::{Metrics, Tracing};

/// Environment marker set on worker processes started by `--workers N`.
const WORKER_ENV: &str = "NOVALOAD_TARGET_WORKER";
/// The longest --header-read-timeout / --idle-timeout accepted: beyond a day a connection
/// timeout protects nothing, and the watchdog's deadline arithmetic stays far from overflow.
const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How many server processes share the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// `ceil(--ws-capacity / per-process capacity)`, where a process holds its file-descriptor
    /// limit minus a reserve (18,000 connections with this machine's 20,000 limit).
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
    /// [`ws_push::BASE`] (2 s), stretched so one process pushes at most
    /// [`ws_push::FRAMES_PER_SECOND_PER_PROCESS`] frames/s however many connections it holds.
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
pub mod ws_push {
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
    /// --ws-capacity and the file-descriptor limit: one process holds ~18,000 WebSockets
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
    pub fn worker_count(&self) -> u32 {
        match self.workers {
            Workers::Count(n) => n,
            Workers::Auto => workers_for_connections(self.ws_capacity),
        }
    }

    /// `target` arguments for a worker process on `addr`: every setting as a flag (so the
    /// parent's environment cannot change it), `--workers 1`, `--seed-vms 0` (the parent has
    /// seeded). Secrets are not here: see [`TargetArgs::worker_env`].
    fn worker_args(&self, addr: SocketAddr) -> Vec<String> {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let mut v: Vec<String> = vec![
            "target".into(),
            "--listen".into(),
            addr.to_string(),
            "--workers".into(),
            "1".into(),
            "--seed-vms".into(),
            "0".into(),
            "--db-max-connections".into(),
            self.db_max_connections.to_string(),
            "--latency".into(),
            d(self.latency),
            "--latency-jitter".into(),
            d(self.latency_jitter),
            "--error-rate".into(),
            self.error_rate.to_string(),
            "--stall-for".into(),
            d(self.stall_for),
            "--ws-drop-rate".into(),
            self.ws_drop_rate.to_string(),
            "--migration-failure-rate".into(),
            self.migration_failure_rate.to_string(),
            "--migration-time".into(),
            d(self.migration_time),
            "--ws-push-interval".into(),
            self.ws_push_interval.to_string(),
            "--header-read-timeout".into(),
            d(self.header_read_timeout),
            "--idle-timeout".into(),
            d(self.idle_timeout),
        ];
        if let Some(every) = self.stall_every {
            v.extend(["--stall-every".into(), d(every)]);
        }
        if let Some(f) = &self.sqlite_file {
            v.extend(["--sqlite-file".into(), f.display().to_string()]);
        }
        v
    }

    /// Environment of a worker process: the secrets (kept off command lines, which any user
    /// can read in `ps`), and the removal of every variable that could set a flag the parent
    /// left unset (e.g. a `DATABASE_URL` meant for `run db --db-mode direct`).
    fn worker_env(&self) -> (Vec<(&'static str, String)>, Vec<String>) {
        let mut remove: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with("NOVALOAD_TARGET_"))
            .collect();
        remove.push("DATABASE_URL".into());
        let mut set = Vec::new();
        if let Some(url) = &self.database_url {
            set.push(("DATABASE_URL", url.clone()));
        }
        if let Some(secret) = &self.jwt_secret {
            set.push(("NOVALOAD_TARGET_JWT_SECRET", secret.clone()));
        }
        remove.retain(|k| !set.iter().any(|(s, _)| s == k));
        (set, remove)
    }

    fn store_config(&self) -> StoreConfig {
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

    fn faults(&self) -> Faults {
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

/// Shared state of one server process.
pub(crate) struct App {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub faults: Faults,
    pub auth: Auth,
    pub tracing: Tracing,
    pub shutdown: CancellationToken,
    pub ws_push: WsPushInterval,
    /// Realtime WebSocket connections open in this process (the `auto` push budget's input).
    pub ws_open: std::sync::atomic::AtomicU64,
}

impl App {
    /// The realtime push period for a connection subscribed to `channels`, now.
    pub fn push_interval(&self, channels: usize) -> Duration {
        match self.ws_push {
            WsPushInterval::Fixed(d) => d,
            WsPushInterval::Auto => ws_push::auto(
                self.ws_open.load(std::sync::atomic::Ordering::Relaxed),
                channels,
            ),
        }
    }
}

/// A running in-process target.
pub struct TargetHandle {
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    background: tokio::task::JoinHandle<()>,
    app: Arc<App>,
}

impl std::fmt::Debug for TargetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TargetHandle {
    /// `http://IP:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes WebSockets with 1001, waits (up to 10 s) for in-flight
    /// requests, flushes spans and closes the pool.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let served = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        self.background.abort();
        self.app.tracing.shutdown();
        self.app.store.close().await;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e).context("target server task panicked"),
            Err(_) => bail!("target did not shut down within 10 s"),
        }
    }
}

/// Raises the soft open-files limit to the hard one (each WebSocket costs a descriptor).
fn raise_fd_limit() {
    if let Ok((_, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        let _ = rlimit::increase_nofile_limit(hard);
    }
}

fn bind_listener(
    addr: SocketAddr,
    reuse_port: bool,
    listen: bool,
) -> anyhow::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .context("creating the listening socket")?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket
            .set_reuse_port(true)
            .context("SO_REUSEPORT (needed by --workers)")?;
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr} (--listen): is the port in use?"))?;
    if listen {
        socket.listen(4096)?;
    }
    Ok(socket)
}

/// In-process server (used by `novaload run` with no URL, and by tests). Returns once
/// listening. With `tracer_provider` the server spans go there; without it, an OTLP exporter
/// is built from `OTEL_*` when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else no spans.
pub async fn spawn(
    args: TargetArgs,
    tracer_provider: Option<SdkTracerProvider>,
) -> anyhow::Result<TargetHandle> {
    args.validate()?;
    let worker = std::env::var_os(WORKER_ENV).is_some();
    if args.worker_count() > 1 && !worker {
        bail!("spawn runs one process: use `novaload target --workers N` for several");
    }
    raise_fd_limit();
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(&args.store_config(), metrics.clone()).await?;
    let seeded = store
        .seed(args.seed_vms)
        .await
        .with_context(|| format!("seeding {} VMs (--seed-vms)", args.seed_vms))?;
    tracing::debug!(seeded, "seeded VMs");
    let tracing_ = Tracing::new(tracer_provider).context("building the OTLP span exporter")?;
    let shutdown = CancellationToken::new();
    let app = Arc::new(App {
        store,
        metrics,
        faults: args.faults(),
        auth: Auth::new(args.jwt_secret.as_deref()),
        tracing: tracing_,
        shutdown: shutdown.clone(),
        ws_push: args.ws_push_interval,
        ws_open: std::sync::atomic::AtomicU64::new(0),
    });

    let socket = bind_listener(args.listen, worker, true)?;
    let listener = tokio::net::TcpListener::from_std(std::net::TcpListener::from(socket))
        .context("registering the listener with tokio")?;
    let addr = listener.local_addr()?;
    let router = routes::router(app.clone());
    let timeouts = server::HttpTimeouts {
        header_read: args.header_read_timeout,
        idle: args.idle_timeout,
    };
    let server = tokio::spawn(server::serve(listener, router, timeouts, shutdown.clone()));
    let background = tokio::spawn(background_loop(app.clone()));
    Ok(TargetHandle {
        addr,
        shutdown,
        server,
        background,
        app,
    })
}

/// The one periodic task: finalizes due migrations (counting each exactly once across
/// processes) and refreshes the gauges. Per-job state never needs its own task.
async fn background_loop(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let now = store::now_ms();
        if let Ok(done) = app.store.finalize_due(now).await {
            for f in done {
                app.metrics.migration_finished(
                    &f.source_zone,
                    &f.target_zone,
                    f.fails,
                    (f.completes_at - f.started_at) as f64 / 1000.0,
                );
            }
        }
        let (open, in_use) = app.store.pool_usage();
        app.metrics.db_pool(open, in_use);
        if n % 4 == 1 {
            if let Ok(s) = app.store.migration_stats(now).await {
                app.metrics.migrations_active(s.pending + s.in_progress);
            }
            if let Ok(counts) = app.store.vm_state_counts().await {
                app.metrics.vm_states(&counts);
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// CLI entry for `novaload target`: serve until Ctrl-C/SIGTERM, then shut down gracefully.
pub async fn run(args: TargetArgs) -> anyhow::Result<()> {
    args.validate()?;
    let workers = args.worker_count();
    if std::env::var_os(WORKER_ENV).is_some() {
        return run_as_worker(args).await;
    }
    if workers > 1 {
        return run_workers(args, workers).await;
    }
    let handle = spawn(args, None).await?;
    println!("novaload target listening on {}", handle.base_url());
    shutdown_signal().await;
    handle.shutdown().await
}

/// A worker of `--workers N`: serves until SIGTERM/Ctrl-C or until its stdin closes. The
/// parent holds the write end of that pipe and never writes, so end-of-file means the parent
/// has exited or is stopping us; either way the worker must not outlive it.
async fn run_as_worker(args: TargetArgs) -> anyhow::Result<()> {
    let handle = spawn(args, None).await?;
    // The parent waits for this line before it hands the address to anyone.
    println!(
        "{READY_PREFIX} pid={} addr={}",
        std::process::id(),
        handle.addr
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let parent_gone = async {
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = parent_gone => {}
    }
    handle.shutdown().await
}

/// What a worker prints on stdout once it listens.
const READY_PREFIX: &str = "novaload-target-worker-ready";
/// How long a worker may take from start to listening (it does not seed; the parent did).
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long workers get to close their WebSockets and finish requests before being killed.
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Target processes needed to hold `connections` WebSockets (1..=64).
pub fn workers_for_connections(connections: u64) -> u32 {
    connections
        .div_ceil(crate::capacity::max_connections_per_process())
        .clamp(1, 64) as u32
}

/// Target processes the built-in target of `novaload run` needs for a run that peaks at
/// `ws_peak` WebSocket connections. 0 means: serve in the client's own process. When the client
/// shares the process (`client_in_process`), each connection costs two descriptors there (the
/// client's socket and the server's), so the target moves out at half the capacity.
pub fn embedded_workers(ws_peak: u64, client_in_process: bool, per_process: u64) -> u32 {
    let in_process_capacity = if client_in_process {
        per_process / 2
    } else {
        per_process
    };
    if ws_peak <= in_process_capacity {
        return 0;
    }
    ws_peak.div_ceil(per_process.max(1)).clamp(1, 64) as u32
}

/// `--workers N`: N processes of this executable serving one port through SO_REUSEPORT (the
/// kernel spreads new connections over them), sharing one database. Stopping it (or dropping
/// it, or the parent dying) stops every worker.
pub struct TargetWorkers {
    /// The port every worker listens on.
    pub addr: SocketAddr,
    /// The workers' process ids, in start order.
    pub pids: Vec<u32>,
    children: Vec<tokio::process::Child>,
    /// Write ends of the workers' stdin: closing them stops the workers (see `run_as_worker`).
    lifelines: Vec<tokio::process::ChildStdin>,
    /// Bound, never listening: keeps the port (port 0 resolved once) ours between starts.
    _reserve: socket2::Socket,
    /// A temporary SQLite file this handle created, removed with its WAL files on stop.
    temp_db: Option<PathBuf>,
}

impl std::fmt::Debug for TargetWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetWorkers")
            .field("addr", &self.addr)
            .field("pids", &self.pids)
            .finish_non_exhaustive()
    }
}

/// Starts `workers` target processes on `args.listen` and returns once all of them listen.
/// The parent migrates and seeds the database once; without `--database-url`/`--sqlite-file`
/// the workers share a temporary SQLite file (WAL), removed by [`TargetWorkers::stop`].
pub async fn spawn_workers(mut args: TargetArgs, workers: u32) -> anyhow::Result<TargetWorkers> {
    args.validate()?;
    if workers == 0 || workers > 64 {
        bail!("--workers {workers}: use 1 to 64 processes");
    }
    raise_fd_limit();
    let mut temp_db = None;
    if args.database_url.is_none() && args.sqlite_file.is_none() {
        // An in-memory database is private to one process; the workers need one file.
        let path = std::env::temp_dir().join(format!(
            "novaload-target-{}.sqlite",
            uuid::Uuid::new_v4().simple()
        ));
        args.sqlite_file = Some(path.clone());
        temp_db = Some(path);
    }
    let prepared = async {
        let store = Store::open(&args.store_config(), Arc::new(Metrics::new())).await?;
        let seeded = store
            .seed(args.seed_vms)
            .await
            .with_context(|| format!("seeding {} VMs (--seed-vms)", args.seed_vms));
        store.close().await;
        seeded.map(|_| ())
    }
    .await;
    if let Err(e) = prepared {
        remove_sqlite_files(temp_db.as_deref());
        return Err(e);
    }
    let reserve = match bind_listener(args.listen, true, false) {
        Ok(s) => s,
        Err(e) => {
            remove_sqlite_files(temp_db.as_deref());
            return Err(e);
        }
    };
    let addr = reserve
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .context("the listener address is not an IP socket")?;
    let mut handle = TargetWorkers {
        addr,
        pids: Vec::new(),
        children: Vec::new(),
        lifelines: Vec::new(),
        _reserve: reserve,
        temp_db,
    };
    if let Err(e) = handle.start_children(&args, workers).await {
        let _ = handle.stop().await;
        return Err(e);
    }
    Ok(handle)
}

impl TargetWorkers {
    async fn start_children(&mut self, args: &TargetArgs, workers: u32) -> anyhow::Result<()> {
        use tokio::io::AsyncBufReadExt;
        let exe = std::env::current_exe().context("locating the novaload executable")?;
        let worker_args = args.worker_args(self.addr);
        let (set_env, remove_env) = args.worker_env();
        let mut readers = Vec::new();
        for i in 0..workers {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.args(&worker_args)
                .env(WORKER_ENV, i.to_string())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true);
            for k in &remove_env {
                cmd.env_remove(k);
            }
            for (k, v) in &set_env {
                cmd.env(k, v);
            }
            // Own process group: a terminal's Ctrl-C reaches only the parent, which stops the
            // workers after whatever it is doing (a load run's graceful stop) has finished.
            #[cfg(unix)]
            cmd.process_group(0);
            let mut child = cmd
                .spawn()
                .with_context(|| format!("starting target worker {i} ({})", exe.display()))?;
            let stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            self.pids.push(child.id().unwrap_or(0));
            self.children.push(child);
            self.lifelines.push(stdin);
            readers.push(tokio::io::BufReader::new(stdout));
        }
        for (i, reader) in readers.into_iter().enumerate() {
            let mut lines = reader.lines();
            let line = tokio::time::timeout(WORKER_START_TIMEOUT, lines.next_line()).await;
            match line {
                Ok(Ok(Some(l))) if l.starts_with(READY_PREFIX) => {}
                Ok(Ok(Some(l))) => bail!("target worker {i} printed `{l}` instead of ready"),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = self.children[i].wait().await.ok();
                    bail!(
                        "target worker {i} exited before listening ({}); its error is above",
                        status.map_or("unknown status".into(), |s| s.to_string())
                    )
                }
                Err(_) => bail!(
                    "target worker {i} did not listen within {}s",
                    WORKER_START_TIMEOUT.as_secs()
                ),
            }
            // Keep draining: a worker must never block (or fail) writing to a full pipe.
            let mut rest = lines.into_inner();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
            });
        }
        Ok(())
    }

    /// `http://IP:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until any worker exits; returns its index and status.
    pub async fn any_exit(&mut self) -> (usize, std::io::Result<std::process::ExitStatus>) {
        if self.children.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.children.iter_mut().map(|c| Box::pin(c.wait()));
        let (status, i, _) = futures_util::future::select_all(waits).await;
        (i, status)
    }

    /// Stops every worker gracefully (they close their WebSockets with 1001 and finish
    /// requests), kills those still running after 15 s, frees the port and removes a
    /// temporary database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.lifelines.clear();
        let mut killed = 0;
        let deadline = tokio::time::Instant::now() + WORKER_STOP_TIMEOUT;
        for c in &mut self.children {
            if tokio::time::timeout_at(deadline, c.wait()).await.is_err() {
                let _ = c.kill().await;
                killed += 1;
            }
        }
        remove_sqlite_files(self.temp_db.take().as_deref());
        if killed > 0 {
            bail!(
                "{killed} target worker(s) did not stop within {}s and were killed",
                WORKER_STOP_TIMEOUT.as_secs()
            );
        }
        Ok(())
    }
}

impl Drop for TargetWorkers {
    fn drop(&mut self) {
        // `stop` was not called (an error path): the children are killed by kill_on_drop;
        // the file must still go.
        remove_sqlite_files(self.temp_db.take().as_deref());
    }
}

fn remove_sqlite_files(path: Option<&std::path::Path>) {
    let Some(path) = path else { return };
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Parent of `--workers N`: starts the workers, then waits for Ctrl-C/SIGTERM (or a worker's
/// death, which stops the others: a port served by fewer processes than asked is a broken
/// benchmark, not a degraded one).
async fn run_workers(args: TargetArgs, workers: u32) -> anyhow::Result<()> {
    let temp = args.database_url.is_none() && args.sqlite_file.is_none();
    let mut handle = spawn_workers(args, workers).await?;
    println!(
        "novaload target listening on {} ({workers} worker processes, pids {:?}{})",
        handle.base_url(),
        handle.pids,
        if temp {
            "; a temporary SQLite file shared by the workers"
        } else {
            ""
        }
    );
    tokio::select! {
        _ = shutdown_signal() => {}
        (i, status) = handle.any_exit() => {
            eprintln!("novaload target: worker {i} exited ({status:?}); stopping the others");
        }
    }
    handle.stop().await
}

/// The built-in target `novaload run` starts when no URL is given: in the client's process,
/// or as [`TargetWorkers`] when the run's WebSockets would not fit there.
#[derive(Debug)]
pub enum Embedded {
    InProcess(TargetHandle),
    Workers(TargetWorkers),
}

impl Embedded {
    /// Starts it: in-process when `workers` is 0, else that many worker processes.
    pub async fn start(args: TargetArgs, workers: u32) -> anyhow::Result<Embedded> {
        if workers == 0 {
            Ok(Embedded::InProcess(spawn(args, None).await?))
        } else {
            Ok(Embedded::Workers(spawn_workers(args, workers).await?))
        }
    }

    /// `http://IP:PORT`.
    pub fn base_url(&self) -> String {
        match self {
            Embedded::InProcess(h) => h.base_url(),
            Embedded::Workers(w) => w.base_url(),
        }
    }

    /// " in N worker processes", or "" in-process (for the console line).
    pub fn describe(&self) -> String {
        match self {
            Embedded::InProcess(_) => String::new(),
            Embedded::Workers(w) => format!(" in {} worker processes", w.pids.len()),
        }
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        match self {
            Embedded::InProcess(h) => h.shutdown().await,
            Embedded::Workers(w) => w.stop().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn worker_args_carry_every_setting() {
        let mut a = TargetArgs::embedded();
        a.sqlite_file = Some(PathBuf::from("/tmp/x.sqlite"));
        a.db_max_connections = 7;
        a.seed_vms = 5000;
        a.latency = Duration::from_millis(20);
        a.latency_jitter = Duration::from_millis(5);
        a.error_rate = 0.25;
        a.stall_every = Some(Duration::from_secs(10));
        a.stall_for = Duration::from_millis(1500);
        a.ws_drop_rate = 0.125;
        a.migration_failure_rate = 0.5;
        a.migration_time = Duration::from_secs(20);
        a.ws_push_interval = WsPushInterval::Fixed(Duration::from_secs(30));
        a.workers = Workers::Count(4);
        a.header_read_timeout = Duration::from_millis(2500);
        a.idle_timeout = Duration::from_secs(90);
        let addr: SocketAddr = "127.0.0.1:4567".parse().unwrap();
        let mut argv = vec!["novaload".to_string()];
        argv.extend(a.worker_args(addr));
        let Cmd::Target(back) = Cli::try_parse_from(&argv).unwrap().cmd;
        // what a worker must differ in; everything else must round-trip
        let mut want = a.clone();
        want.listen = addr;
        want.seed_vms = 0;
        want.workers = Workers::Count(1);
        want.ws_capacity = back.ws_capacity;
        assert_eq!(format!("{back:?}"), format!("{want:?}"));
    }

    #[test]
    fn secrets_go_by_environment_not_argv() {
        let mut a = TargetArgs::embedded();
        a.database_url = Some("postgres://u:hunter2@localhost/db".into());
        a.jwt_secret = Some("s3cret".into());
        let argv = a.worker_args("127.0.0.1:1".parse().unwrap()).join(" ");
        assert!(
            !argv.contains("hunter2") && !argv.contains("s3cret"),
            "{argv}"
        );
        let (set, remove) = a.worker_env();
        assert!(
            set.iter()
                .any(|(k, v)| *k == "DATABASE_URL" && v.contains("hunter2"))
        );
        assert!(set.iter().any(|(k, _)| *k == "NOVALOAD_TARGET_JWT_SECRET"));
        assert!(!remove.iter().any(|k| k == "DATABASE_URL"));
        // without secrets, an inherited DATABASE_URL must not reach the workers
        let (set, remove) = TargetArgs::embedded().worker_env();
        assert!(set.is_empty());
        assert!(remove.iter().any(|k| k == "DATABASE_URL"));
    }

    #[test]
    fn connection_timeouts_default_parse_and_validate() {
        let Cmd::Target(parsed) = Cli::try_parse_from(["novaload", "target"]).unwrap().cmd;
        let embedded = TargetArgs::embedded();
        // the embedded target of `novaload run` gets the CLI's defaults
        assert_eq!(parsed.header_read_timeout, Duration::from_secs(10));
        assert_eq!(parsed.idle_timeout, Duration::from_secs(60));
        assert_eq!(embedded.header_read_timeout, parsed.header_read_timeout);
        assert_eq!(embedded.idle_timeout, parsed.idle_timeout);
        let Cmd::Target(parsed) = Cli::try_parse_from([
            "novaload",
            "target",
            "--header-read-timeout",
            "300ms",
            "--idle-timeout",
            "2m",
        ])
        .unwrap()
        .cmd;
        assert_eq!(parsed.header_read_timeout, Duration::from_millis(300));
        assert_eq!(parsed.idle_timeout, Duration::from_secs(120));
        assert!(Cli::try_parse_from(["novaload", "target", "--idle-timeout", "soon"]).is_err());
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
    fn embedded_target_moves_out_when_sockets_do_not_fit() {
        // 18,000 connections per target process (20,000 files minus the reserve)
        assert_eq!(embedded_workers(20, true, 18_000), 0);
        assert_eq!(embedded_workers(9_000, true, 18_000), 0);
        // the client shares the process: 10k client + 10k server sockets do not fit
        assert_eq!(embedded_workers(10_000, true, 18_000), 1);
        // local client workers: the parent holds only the server side
        assert_eq!(embedded_workers(18_000, false, 18_000), 0);
        assert_eq!(embedded_workers(18_001, false, 18_000), 2);
        assert_eq!(embedded_workers(100_000, false, 18_000), 6);
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
