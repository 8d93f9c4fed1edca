//! Several server processes on one port: `novaload target --workers N`, and the built-in target
//! of `novaload run` once a run's WebSockets would not fit in the client's process (`Embedded`,
//! sized by [`embedded_workers`]).
//!
//! The parent migrates and seeds the database once, then starts N copies of this executable as
//! `novaload target --workers 1` with `NOVALOAD_TARGET_WORKER` set; each binds the same port with
//! SO_REUSEPORT, so the kernel spreads new connections over them. A worker reports on stdout
//! when it listens and lives no longer than its stdin pipe from the parent, so no path (a stop,
//! an error, a parent killed with SIGKILL) leaves workers behind.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::TargetHandle;
use super::args::TargetArgs;
use super::server;
use super::shutdown_signal;
use super::store::Store;
use super::telemetry::Metrics;

/// Environment marker set on worker processes started by `--workers N`.
const WORKER_ENV: &str = "NOVALOAD_TARGET_WORKER";
/// What a worker prints on stdout once it listens.
const READY_PREFIX: &str = "novaload-target-worker-ready";
/// How long a worker may take from start to listening (it does not seed; the parent did).
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long workers get to close their WebSockets and finish requests before being killed.
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether this process is a worker of `--workers N` (which binds with SO_REUSEPORT and
/// reports readiness to its parent).
pub(super) fn is_worker_process() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// Target processes needed to hold `connections` WebSockets (1..=64).
pub(super) fn workers_for_connections(connections: u64) -> u32 {
    connections
        .div_ceil(crate::capacity::max_connections_per_process())
        .clamp(1, 64) as u32
}

/// Target processes the built-in target of `novaload run` needs for a run that peaks at
/// `ws_peak` WebSocket connections. 0 means: serve in the client's own process. When the client
/// shares the process (`client_in_process`), each connection costs two descriptors there (the
/// client's socket and the server's), so the target moves out at half the capacity.
pub(crate) fn embedded_workers(ws_peak: u64, client_in_process: bool, per_process: u64) -> u32 {
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

impl TargetArgs {
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
}

/// `--workers N`: N processes of this executable serving one port through SO_REUSEPORT (the
/// kernel spreads new connections over them), sharing one database. Stopping it (or dropping
/// it, or the parent dying) stops every worker.
pub(crate) struct TargetWorkers {
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
async fn spawn_workers(mut args: TargetArgs, workers: u32) -> anyhow::Result<TargetWorkers> {
    args.validate()?;
    if workers == 0 || workers > 64 {
        bail!("--workers {workers}: use 1 to 64 processes");
    }
    // each WebSocket costs a descriptor
    let _ = crate::capacity::raise_nofile_limit();
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
    let reserve = match server::bind_listener(args.listen, true, false) {
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
pub(super) async fn run_workers(args: TargetArgs, workers: u32) -> anyhow::Result<()> {
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

/// A worker of `--workers N`: serves until SIGTERM/Ctrl-C or until its stdin closes. The
/// parent holds the write end of that pipe and never writes, so end-of-file means the parent
/// has exited or is stopping us; either way the worker must not outlive it.
pub(super) async fn run_as_worker(args: TargetArgs) -> anyhow::Result<()> {
    let handle = super::spawn(args, None).await?;
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

/// The built-in target `novaload run` starts when no URL is given: in the client's process,
/// or as [`TargetWorkers`] when the run's WebSockets would not fit there.
#[derive(Debug)]
pub(crate) enum Embedded {
    InProcess(TargetHandle),
    Workers(TargetWorkers),
}

impl Embedded {
    /// Starts it: in-process when `workers` is 0, else that many worker processes.
    pub async fn start(args: TargetArgs, workers: u32) -> anyhow::Result<Embedded> {
        if workers == 0 {
            Ok(Embedded::InProcess(super::spawn(args, None).await?))
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
    use crate::novacron::args::parse_as_cli;
    use crate::novacron::{Workers, WsPushInterval};

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
        let back = parse_as_cli(&argv).unwrap();
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
}
