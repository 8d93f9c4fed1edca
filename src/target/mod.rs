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
pub mod migration;
mod routes;
pub mod store;
pub mod telemetry;

use auth::Auth;
use faults::Faults;
use store::{Store, StoreConfig};
use telemetry::{Metrics, Tracing};

/// Environment marker set on worker processes started by `--workers N`.
const WORKER_ENV: &str = "NOVALOAD_TARGET_WORKER";
/// File descriptors kept back from WebSocket capacity (database, listener, logs).
const FD_RESERVE: u64 = 2_000;

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

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected a duration such as 20ms, 1s or 2m)"))
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
    #[arg(long, env = "NOVALOAD_TARGET_LATENCY", default_value = "0s", value_parser = parse_duration)]
    pub latency: Duration,

    /// Uniform jitter (±) around --latency.
    #[arg(long, env = "NOVALOAD_TARGET_LATENCY_JITTER", default_value = "0s", value_parser = parse_duration)]
    pub latency_jitter: Duration,

    /// Fraction of REST requests answered with an injected 500 (0..1).
    #[arg(long, env = "NOVALOAD_TARGET_ERROR_RATE", default_value = "0", value_parser = parse_rate)]
    pub error_rate: f64,

    /// Stall the whole server every this long (requests wait until the stall ends).
    #[arg(long, env = "NOVALOAD_TARGET_STALL_EVERY", value_parser = parse_duration)]
    pub stall_every: Option<Duration>,

    /// How long each stall lasts (with --stall-every).
    #[arg(long, env = "NOVALOAD_TARGET_STALL_FOR", default_value = "1s", value_parser = parse_duration)]
    pub stall_for: Duration,

    /// Fraction of WebSocket connections dropped abruptly (no close frame) at a random time.
    #[arg(long, env = "NOVALOAD_TARGET_WS_DROP_RATE", default_value = "0", value_parser = parse_rate)]
    pub ws_drop_rate: f64,

    /// Fraction of DWCP migrations that end `failed`.
    #[arg(long, env = "NOVALOAD_TARGET_MIGRATION_FAILURE_RATE", default_value = "0", value_parser = parse_rate)]
    pub migration_failure_rate: f64,

    /// Mean simulated migration time (each job draws ±20 %).
    #[arg(long, env = "NOVALOAD_TARGET_MIGRATION_TIME", default_value = "3s", value_parser = parse_duration)]
    pub migration_time: Duration,

    /// Server processes on one port via SO_REUSEPORT: N, or `auto` (sized from
    /// --ws-capacity and the file-descriptor limit). More than 1 needs --database-url or
    /// --sqlite-file, since every process must see the same data.
    #[arg(long, env = "NOVALOAD_TARGET_WORKERS", default_value = "1")]
    pub workers: Workers,

    /// WebSocket connections `--workers auto` should make room for.
    #[arg(long, env = "NOVALOAD_TARGET_WS_CAPACITY", default_value_t = 100_000)]
    pub ws_capacity: u64,
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
            workers: Workers::Count(1),
            ws_capacity: 100_000,
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
        if self.worker_count() > 1 && self.database_url.is_none() && self.sqlite_file.is_none() {
            bail!(
                "--workers {} needs a database every process can reach: pass --database-url postgres://... or --sqlite-file PATH (an in-memory database is private to one process)",
                self.worker_count()
            );
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
            Workers::Auto => {
                let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .map(|(_, hard)| hard)
                    .unwrap_or(20_000);
                let per_process = limit.saturating_sub(FD_RESERVE).max(1_000);
                self.ws_capacity.div_ceil(per_process).clamp(1, 64) as u32
            }
        }
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
}

/// A running in-process target.
pub struct TargetHandle {
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
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
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e).context("target server failed"),
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
    });

    let socket = bind_listener(args.listen, worker, true)?;
    let listener = tokio::net::TcpListener::from_std(std::net::TcpListener::from(socket))
        .context("registering the listener with tokio")?;
    let addr = listener.local_addr()?;
    let router = routes::router(app.clone());
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let token = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
    });
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
    let is_worker = std::env::var_os(WORKER_ENV).is_some();
    if workers > 1 && !is_worker {
        return run_workers(args, workers).await;
    }
    let handle = spawn(args, None).await?;
    if !is_worker {
        println!("novaload target listening on {}", handle.base_url());
    }
    shutdown_signal().await;
    handle.shutdown().await
}

/// Parent of `--workers N`: migrates and seeds once, reserves the port, starts N copies of
/// this executable on it (SO_REUSEPORT), forwards SIGTERM/Ctrl-C and waits for them.
async fn run_workers(args: TargetArgs, workers: u32) -> anyhow::Result<()> {
    raise_fd_limit();
    {
        let metrics = Arc::new(Metrics::new());
        let store = Store::open(&args.store_config(), metrics).await?;
        store
            .seed(args.seed_vms)
            .await
            .with_context(|| format!("seeding {} VMs (--seed-vms)", args.seed_vms))?;
        store.close().await;
    }
    // Bound but not listening: it pins the port (port 0 resolved once) without taking a
    // share of the connections.
    let reserve = bind_listener(args.listen, true, false)?;
    let addr = reserve
        .local_addr()?
        .as_socket()
        .context("listener address is not an IP socket")?;
    let exe = std::env::current_exe().context("locating the novaload executable")?;
    let mut child_args: Vec<std::ffi::OsString> = Vec::new();
    let mut skip = false;
    for a in std::env::args_os().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        let s = a.to_string_lossy();
        if ["--workers", "--listen", "--seed-vms"].contains(&s.as_ref()) {
            skip = true;
            continue;
        }
        if s.starts_with("--workers=") || s.starts_with("--listen=") || s.starts_with("--seed-vms=")
        {
            continue;
        }
        child_args.push(a);
    }
    for extra in [
        "--workers".to_string(),
        "1".to_string(),
        "--listen".to_string(),
        addr.to_string(),
        "--seed-vms".to_string(),
        "0".to_string(),
    ] {
        child_args.push(extra.into());
    }
    let mut children = Vec::new();
    for i in 0..workers {
        let child = tokio::process::Command::new(&exe)
            .args(&child_args)
            .env(WORKER_ENV, i.to_string())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting worker {i} ({})", exe.display()))?;
        children.push(child);
    }
    println!("novaload target listening on http://{addr} ({workers} worker processes)");
    let mut waits: Vec<_> = children.iter_mut().map(|c| Box::pin(c.wait())).collect();
    let first_exit = async {
        let (r, _, _) = futures_util::future::select_all(waits.iter_mut()).await;
        r
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        r = first_exit => {
            tracing::warn!(status = ?r, "a target worker exited; stopping the others");
        }
    }
    drop(waits);
    for c in &children {
        if let Some(pid) = c.id() {
            // SIGTERM lets each worker shut down gracefully; `kill` avoids unsafe libc calls.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for c in &mut children {
        if tokio::time::timeout(Duration::from_secs(15), c.wait())
            .await
            .is_err()
        {
            let _ = c.start_kill();
        }
    }
    drop(reserve);
    Ok(())
}
