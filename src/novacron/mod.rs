//! `novaload target`: the NovaCron-compatible reference server (issue 6, spec §6).
//!
//! It speaks what the upstream k6 suite sends (REST under `/api/v1`, the invented DWCP v3 REST
//! surface and stream, the realtime WebSocket and NovaCron's canonical `/ws/metrics`), keeps
//! VMs and migration jobs in SQLite or PostgreSQL, injects faults on request, and reports its
//! own `novacron_*` metrics and server spans. [`spawn`] runs it in-process; [`run`] is the CLI.
//!
//! Where to look:
//! - this file: [`spawn`] and its [`TargetHandle`], [`run`] (one process, a worker, or the
//!   parent of workers), `App` (the state every route shares) and the one periodic task.
//! - `args.rs`: [`TargetArgs`] (every flag, its defaults, [`TargetArgs::embedded`], the checks
//!   across flags) and the types of single flags ([`Workers`], [`WsPushInterval`]).
//! - `workers.rs`: several processes on one port (`--workers N`), and the built-in target of
//!   `novaload run` that moves out of the client's process when a run outgrows it.
//! - `server.rs`: the listening socket and the HTTP/1.1 accept loop with its header-read and
//!   idle timeouts.
//! - `routes/`: the router and its middlewares (`mod.rs`), VM REST and health (`rest.rs`),
//!   DWCP v3 migrations (`dwcp.rs`), the WebSocket endpoints (`ws.rs`).
//! - `store.rs` and `schema/`: VMs and migration jobs in SQLite or PostgreSQL, and their SQL.
//! - [`vm_migration`]: a migration's status, phase and progress computed from its row.
//! - `faults.rs`: injected latency, errors, stalls, WebSocket drops and failed migrations.
//! - [`auth`]: bearer tokens and HS256 JWTs.
//! - `telemetry.rs`: the `novacron_*` metrics, `/metrics` and server spans.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio_util::sync::CancellationToken;

mod args;
pub mod auth;
pub(crate) mod faults;
mod routes;
mod server;
pub(crate) mod store;
pub(crate) mod telemetry;
pub mod vm_migration;
mod workers;

pub(crate) use args::ws_push;
pub use args::{TargetArgs, Workers, WsPushInterval};
pub(crate) use workers::{Embedded, embedded_workers};

use auth::Auth;
use faults::Faults;
use store::Store;
use telemetry::{Metrics, Tracing};

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

/// In-process server (used by `novaload run` with no URL, and by tests). Returns once
/// listening. With `tracer_provider` the server spans go there; without it, an OTLP exporter
/// is built from `OTEL_*` when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else no spans.
pub async fn spawn(
    args: TargetArgs,
    tracer_provider: Option<SdkTracerProvider>,
) -> anyhow::Result<TargetHandle> {
    args.validate()?;
    let worker = workers::is_worker_process();
    if args.worker_count() > 1 && !worker {
        bail!("spawn runs one process: use `novaload target --workers N` for several");
    }
    // each WebSocket costs a descriptor
    let _ = crate::capacity::raise_nofile_limit();
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

    let socket = server::bind_listener(args.listen, worker, true)?;
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
    if workers::is_worker_process() {
        return workers::run_as_worker(args).await;
    }
    if workers > 1 {
        return workers::run_workers(args, workers).await;
    }
    let handle = spawn(args, None).await?;
    println!("novaload target listening on {}", handle.base_url());
    shutdown_signal().await;
    handle.shutdown().await
}
